//! One module per command of the command line: `cli.rs` parses the arguments and calls the
//! command's `run` (for `lab`, one function per subcommand). Each returns `Result<(), Failure>`;
//! `cli::main` prints the failure and exits with its class's code.
//!
//! What several commands share is here: loading the configuration and turning an
//! infrastructure error into a failure.

pub mod backups;
pub mod check;
pub mod client_uri;
pub mod completions;
pub mod config;
pub mod definitions;
pub mod journal;
pub mod lab;
pub mod list;
pub mod man;
pub mod reference;
pub mod repl;
pub mod run;
pub mod status;
pub mod watch;

use crate::error::{Class, Failure};
use std::path::Path;

/// The configuration from `--config` (or `PGRUNBOOK_CONFIG`, `./pgrunbook.toml`, the defaults);
/// one that cannot be read is a usage error.
pub fn load_config(path: Option<&Path>) -> Result<crate::config::Config, Failure> {
    crate::config::Config::load(path).map_err(|e| Failure::usage(format!("{e:#}")))
}

/// An error of Docker, PostgreSQL or Redis as a failure: its class when it carries one
/// (infrastructure otherwise), its whole chain as the message.
pub fn infra(e: anyhow::Error) -> Failure {
    let class = crate::error::class_of(&e, Class::Infrastructure);
    let msg = e
        .chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    Failure::new(class, dedup_chain(&msg))
}

/// `a: b: b: c` as `a: b: c`. Not for our own errors (a `Failure` has no source, and our contexts
/// do not repeat what they wrap) but for library errors whose text already ends with their
/// source's, which the chain then gives again: bollard's `HyperLegacyError` ("Error in the hyper
/// legacy client: {err}", with `err` as its source) and its URL/URI/header/base64 errors.
fn dedup_chain(s: &str) -> String {
    let mut parts: Vec<&str> = vec![];
    for p in s.split(": ") {
        if parts.last() != Some(&p) {
            parts.push(p);
        }
    }
    parts.join(": ")
}
