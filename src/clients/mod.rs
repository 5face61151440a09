//! The backends, one file each, speaking Rust types only (no Rhai here): Docker through bollard,
//! PostgreSQL through the `postgres` crate, Redis (the journal and its spool) through `redis`.

pub mod docker;
pub mod postgres;
pub mod redis;
