//! Ctrl-C in the REPL. While a statement runs it stops that statement: the cancel flag is set
//! (Rhai stops at its next operation, the primitives at their next check) and the SQL query under
//! way is cancelled on the server; a second Ctrl-C before the statement stops leaves the REPL. At
//! the prompt nothing is done here: the line editor reads Ctrl-C as a key then (raw mode), and a
//! stray signal must not end the session.

use crate::errln;
use crate::runtime::host::Host;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Installs the handler; `running` says whether a statement is running. Call it after the line
/// editor is made, which installs a SIGINT handler of its own: this one replaces it.
pub fn install_interrupt(host: &Arc<Host>, running: &Arc<AtomicBool>) {
    let h = host.clone();
    let r = running.clone();
    let set = ctrlc::set_handler(move || {
        if !r.load(Ordering::SeqCst) {
            return;
        }
        if h.cancel.is_cancelled() {
            errln!("\ninterrupted again: leaving the REPL");
            std::process::exit(130);
        }
        h.cancel.cancel();
        h.pg.cancel_inflight();
        errln!();
        // A query may have started between the flag and its cancel token: cancel again a few
        // times while the statement is still running.
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(50));
            if !r.load(Ordering::SeqCst) {
                break;
            }
            h.pg.cancel_inflight();
        }
    });
    match set {
        // ctrlc also catches SIGTERM and SIGHUP (its `termination` feature); here they keep their
        // default, ending the process, or `kill` could not end an idle session.
        // SAFETY: setting a signal's disposition to its default has no other effect.
        Ok(()) => unsafe {
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            libc::signal(libc::SIGHUP, libc::SIG_DFL);
        },
        Err(e) => {
            errln!("warning: Ctrl-C cannot stop a running statement in this session: {e}")
        }
    }
}
