//! command (placeholder)
