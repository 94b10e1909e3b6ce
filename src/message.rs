//! message (placeholder)
