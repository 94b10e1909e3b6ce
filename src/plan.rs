//! plan (placeholder)
