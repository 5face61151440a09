//! pgrunbook: runbooks in Rhai for a PostgreSQL primary/standby pair in Docker.
//!
//! The binary is `src/main.rs` (one line) over this library, which the tests use directly.
//! Where things are:
//! - `cli`: the commands and their exit codes;
//! - `config`: defaults, `pgrunbook.toml`, environment;
//! - `engine`, `runbook`, `check`: running and checking Rhai scripts;
//! - `primitives/`: what scripts can call, one file per backend;
//! - `docker`, `postgres`, `journal` (Redis): the backends the primitives use;
//! - `lab`: the containers of the lab;
//! - `output`: printing that never stops a run (a closed pipe is not an error).

// `Failure` carries the source line and trace it is rendered with; it is built once per failed
// command, so its size on the error path does not matter.
#![allow(clippy::result_large_err)]

pub mod cancel;
pub mod check;
pub mod cli;
pub mod config;
pub mod docker;
pub mod engine;
pub mod error;
pub mod history;
pub mod host;
pub mod journal;
pub mod lab;
pub mod output;
pub mod postgres;
pub mod primitives;
pub mod progress;
pub mod reference;
pub mod repl;
pub mod runbook;
pub mod status;
pub mod suggest;
pub mod table;

/// Runbooks, stdlib modules and lab files compiled into the binary (see `build.rs`).
pub mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}
