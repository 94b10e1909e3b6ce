//! lineio (placeholder)
