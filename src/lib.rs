//! pgrunbook: runbooks in Rhai for a PostgreSQL primary/standby pair in Docker.
//!
//! The binary is `src/main.rs` (one line) over this library. The folders are the layers, and
//! each layer uses only the ones below it:
//!
//! ```text
//! cli.rs        the command line: arguments, exit codes, which command runs
//! commands/     one file per command: run, repl, check, status, journal, lab, reference, ...
//! engine/       Rhai: building the engine, runbooks and their headers, the static checker
//! primitives/   what scripts can call, one file (or folder) per backend (Docker, PostgreSQL,
//!               pgBackRest, Redis), `core` for the rest, `node` for what backends share; the
//!               only place that converts to Rhai values
//! runtime/      what a run carries: configuration, clients, the cancel flag, the journal run
//! clients/      one file per backend, in Rust types only: Docker (bollard), PostgreSQL
//!               (postgres), Redis (the journal and its spool)
//! ```
//!
//! Beside them, used by every layer: `config` (defaults, `pgrunbook.toml`, environment),
//! `error` (classes and exit codes, rendering with a caret), `output` (printing that never stops
//! a run: a closed pipe is not an error), `cancel`, `table` and `suggest`.
//! `docs/architecture.md` says why it is cut this way.

// `Failure` carries the source line and trace it is rendered with; it is built once per failed
// command, so its size on the error path does not matter.
#![allow(clippy::result_large_err)]

pub mod cli;
pub mod clients;
pub mod commands;
pub mod engine;
pub mod primitives;
pub mod runtime;

pub mod cancel;
pub mod config;
pub mod coordination;
pub mod error;
pub mod output;
pub mod secrets;
pub mod suggest;
pub mod table;

/// Runbooks, stdlib modules and lab files compiled into the binary (see `build.rs`).
pub mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}
