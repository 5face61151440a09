//! One module per command of the command line (`cli.rs` parses the arguments and calls them).

pub mod journal;
pub mod lab;
pub mod reference;
pub mod repl;
pub mod status;
pub mod watch;
