//! hostname (placeholder)
