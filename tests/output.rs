//! A run never stops halfway because of its own output. `pgrunbook run failover | head -2`, a
//! pager that is quit, a log reader that goes away: stdout is then a pipe nobody reads, and every
//! write to it fails (EPIPE). The run must go on to its end anyway, journal it (with
//! `output_lost=true`), and exit with its usual code, never 101 (a Rust panic), which would stop
//! a failover between fencing the old primary and promoting the standby.

mod common;
use common::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The write end of a pipe whose read end is already closed, as after `| head -1` exits: every
/// write to it fails with EPIPE, from the first byte on.
fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    // Close-on-exec, so no other child spawned meanwhile keeps the read end open.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    unsafe { libc::close(fds[0]) };
    // SAFETY: fds[1] was just opened by pipe2 and nothing else owns it.
    Stdio::from(unsafe { OwnedFd::from_raw_fd(fds[1]) })
}

/// Waits for the child, killing it (and failing) after `limit`: a run that hangs on its output
/// must fail the test, not hang it.
fn wait_for(child: &mut Child, limit: Duration) -> ExitStatus {
    let end = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pgrunbook still runs after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The journal's entries of one event kind for a runbook, oldest first.
fn entries(lab: &TestLab, event: &str, runbook: &str) -> Vec<HashMap<String, String>> {
    lab.stream("journal")
        .into_iter()
        .filter(|e| e["event"] == event && e["runbook"] == runbook)
        .collect()
}

#[test]
fn failover_finishes_when_its_reader_goes_away() {
    let lab = TestLab::replicating("outfail");
    let err_path = lab.dir.path().join("failover.stderr");
    let mut child = lab
        .command(&["run", "failover"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    // Read up to the header of the step before fencing, then go away as `head -2` would.
    let mut seen = vec![];
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let Ok(line) = line else { break };
        let header = line.starts_with("==> ") && line.ends_with("Record LSNs before fencing");
        seen.push(line);
        if header {
            break;
        }
    } // The reader is dropped here: the pipe's read end is closed while failover goes on.
    let status = wait_for(&mut child, Duration::from_secs(180));
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    assert!(
        seen.last().is_some_and(|l| l.contains("Record LSNs")),
        "the run never printed the step's header: {seen:?}\n{stderr}"
    );
    assert_eq!(
        status.code(),
        Some(0),
        "failover must finish although nobody reads its output\n--- stderr\n{stderr}"
    );

    // The cluster, checked without pgrunbook: the standby is the primary, the old one is down.
    assert!(!lab.query_bool("pg-replica", "SELECT pg_is_in_recovery()"));
    assert_eq!(lab.container_state("pg-bases2"), "exited");

    // The journal has the whole run: its steps, and its end, which says output was lost.
    let end = entries(&lab, "end", "failover")
        .pop()
        .expect("an end entry");
    assert_eq!(end["outcome"], "ok", "{end:?}");
    assert_eq!(end["exit_code"], "0", "{end:?}");
    assert_eq!(
        end.get("output_lost").map(String::as_str),
        Some("true"),
        "{end:?}"
    );
    let metrics: serde_json::Value = serde_json::from_str(&end["metrics"]).unwrap();
    assert_eq!(metrics["promoted"], "pg-replica", "{metrics}");
    assert_eq!(metrics["fenced"], "pg-bases2", "{metrics}");
    let steps: Vec<(String, String)> = entries(&lab, "step", "failover")
        .into_iter()
        .filter(|e| e["run_id"] == end["run_id"])
        .map(|e| (e["step"].clone(), e["outcome"].clone()))
        .collect();
    for title in [
        "Fence the old primary",
        "Promote pg-replica",
        "Measure the data lost",
    ] {
        assert!(
            steps.iter().any(|(s, o)| s.starts_with(title) && o == "ok"),
            "step {title:?} is not journaled as done: {steps:?}"
        );
    }
}

#[test]
fn verify_with_its_output_closed_ends_with_its_usual_code() {
    let lab = TestLab::up("outverify");
    // The lab is not replicating: verify refuses, and prints its error on stderr.
    let usual = lab.pgrunbook(&["run", "verify"]);
    assert_ne!(usual.code, 101, "{}", usual.stderr);

    let mut child = lab
        .command(&["run", "verify"])
        .stdout(closed_pipe())
        .stderr(closed_pipe())
        .spawn()
        .unwrap();
    let status = wait_for(&mut child, Duration::from_secs(120));
    assert_eq!(
        status.code(),
        Some(usual.code),
        "with stdout and stderr closed, verify ends as it does with them open"
    );
    let ends = entries(&lab, "end", "verify");
    assert_eq!(
        ends.len(),
        2,
        "both runs are journaled to their end: {ends:?}"
    );
    assert_eq!(ends[1]["outcome"], ends[0]["outcome"], "{ends:?}");
    assert_eq!(ends[1]["exit_code"], usual.code.to_string(), "{ends:?}");
    assert_eq!(ends[0].get("output_lost"), None, "{ends:?}");
    assert_eq!(
        ends[1].get("output_lost").map(String::as_str),
        Some("true"),
        "{ends:?}"
    );

    // The commands that show what is in Redis and Docker end quietly too.
    for args in [
        &["journal"][..],
        &["journal", "--json"],
        &["backups"],
        &["status"],
        &["status", "--json"],
        &["lab", "status"],
    ] {
        let mut child = lab
            .command(args)
            .stdout(closed_pipe())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let status = wait_for(&mut child, Duration::from_secs(60));
        assert_eq!(status.code(), Some(0), "pgrunbook {}", args.join(" "));
    }
}

#[test]
fn commands_that_print_end_quietly_when_stdout_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let defs = dir.path().join("defs");
    let defs = defs.to_str().unwrap();
    for args in [
        &["list"][..],
        &["config"],
        &["reference"],
        &["check"],
        &["definitions", defs],
        &["--help"],
        &["run", "--help"],
        &["run", "failover", "--help"],
    ] {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(dir.path())
            .env_remove("PGRUNBOOK_CONFIG")
            .stdout(closed_pipe())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "pgrunbook {}\n--- stderr\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
