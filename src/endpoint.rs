//! endpoint (placeholder)
