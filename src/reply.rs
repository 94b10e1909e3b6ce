//! reply (placeholder)
