//! Printing that never stops a run.
//!
//! Rust ignores SIGPIPE, so a write to a pipe whose reader has gone (`pgrunbook run failover |
//! head -2`, a pager that is quit, a log collector that died) fails with EPIPE, and `println!`
//! panics on that. A panic in a runbook stops it between two steps: a failover could stop after
//! fencing the old primary and before promoting the standby, and the journal would get no end.
//!
//! So everything pgrunbook prints goes through [`out`] and [`err`] (or the [`outln!`],
//! [`errln!`], [`out!`] and [`err!`] macros): a write that fails is counted and otherwise
//! ignored, and the run goes on. The journal does not depend on anyone reading the output; the
//! run's end entry says `output_lost=true` when some of it could not be written (see
//! `Host::end_run`). Commands that only print (`list`, `journal`...) then simply end.
//!
//! indicatif's progress bars need no help: they draw only on a terminal and ignore their own
//! write errors.

use std::fmt::Arguments;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes that failed since the process started, on stdout and stderr together.
static LOST: AtomicU64 = AtomicU64::new(0);

/// Writes to stdout; a failed write is counted, never raised.
pub fn out(args: Arguments) {
    write_to(&mut std::io::stdout().lock(), args);
}

/// Writes to stderr; a failed write is counted, never raised.
pub fn err(args: Arguments) {
    write_to(&mut std::io::stderr().lock(), args);
}

fn write_to(w: &mut impl Write, args: Arguments) {
    if w.write_fmt(args).is_err() {
        LOST.fetch_add(1, Ordering::Relaxed);
    }
}

/// How many writes have failed so far. A run compares it at its start and end: a counter rather
/// than a flag, so the REPL's runs, one after the other, each report only their own losses.
pub fn lost_writes() -> u64 {
    LOST.load(Ordering::Relaxed)
}

/// `print!` that never panics (see the module).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::out(::std::format_args!($($arg)*)) };
}

/// `println!` that never panics (see the module).
#[macro_export]
macro_rules! outln {
    () => { $crate::output::out(::std::format_args!("\n")) };
    ($($arg:tt)+) => {
        $crate::output::out(::std::format_args!("{}\n", ::std::format_args!($($arg)+)))
    };
}

/// `eprint!` that never panics (see the module).
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => { $crate::output::err(::std::format_args!($($arg)*)) };
}

/// `eprintln!` that never panics (see the module).
#[macro_export]
macro_rules! errln {
    () => { $crate::output::err(::std::format_args!("\n")) };
    ($($arg:tt)+) => {
        $crate::output::err(::std::format_args!("{}\n", ::std::format_args!($($arg)+)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose reader has gone.
    struct Gone;

    impl Write for Gone {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn a_failed_write_is_counted_not_raised() {
        let before = lost_writes();
        write_to(&mut Gone, format_args!("==> [1] {}\n", "step"));
        assert!(lost_writes() > before);
        let after = lost_writes();
        write_to(&mut Vec::new(), format_args!("fine\n"));
        assert_eq!(lost_writes(), after);
    }
}
