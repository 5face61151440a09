//! Killing pgrunbook in the middle of a runbook, at a step named by its title (`tests/crash.rs`,
//! `tests/switchover.rs`): the step named must be the one under way when the kill lands.

use super::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The title in a step header, `==> [N] Title`.
pub fn header(line: &str) -> Option<&str> {
    line.strip_prefix("==> [")?.split_once("] ").map(|(_, t)| t)
}

/// Where a kill landed.
pub struct Kill {
    /// The full title of the step named.
    pub step: String,
    /// A step that started after it before the kill landed: the named step was over.
    pub later: Option<String>,
}

/// Runs `pgrunbook run <runbook>` and SIGKILLs it `delay_ms` after the first step whose title
/// contains `title` starts. Fails the test when the run ends without such a step (the runbook's
/// steps have changed: the kill point no longer exists).
pub fn kill_in_step(lab: &TestLab, runbook: &str, title: &str, delay_ms: u64) -> Kill {
    // Its stderr goes to a file, read only when the run ends before the step (why it ended).
    let stderr_path = lab.dir.path().join("killed-run.stderr");
    let mut child = Command::new(BIN)
        .args(["run", runbook])
        .current_dir(lab.dir.path())
        .env("PGRUNBOOK_CONFIG", &lab.config_path)
        .env("PGRUNBOOK_DATA_DIR", &lab.data_dir)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = vec![];
    let mut named = None;
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        if let Some(step) = header(&line).filter(|t| t.contains(title)) {
            std::thread::sleep(Duration::from_millis(delay_ms));
            unsafe {
                libc::kill(child.id() as i32, libc::SIGKILL);
            }
            named = Some(step.to_string());
            break;
        }
        printed.push(line);
    }
    let Some(step) = named else {
        let _ = child.wait();
        panic!(
            "{runbook} ended without a step titled \"...{title}...\"; it printed:\n{}\n--- stderr\n{}",
            printed.join("\n"),
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        );
    };
    // Whatever it printed before the kill landed is still in the pipe: a later step's header
    // means the named step was no longer under way.
    let later = lines
        .map_while(Result::ok)
        .find_map(|l| header(&l).map(str::to_string));
    let _ = child.wait();
    Kill { step, later }
}

pub struct Tally {
    pub runbook: &'static str,
    pub points: Vec<String>,
}

impl Drop for Tally {
    fn drop(&mut self) {
        eprintln!(
            "{}: killed at {} point(s), every re-run recovered:\n  {}",
            self.runbook,
            self.points.len(),
            self.points.join("\n  ")
        );
    }
}

/// Kill points: every step at its start, and the given long steps also half a second in. Steps
/// are named by a piece of their title, as the runbook prints it.
pub fn points(steps: &[&'static str], long_steps: &[&'static str]) -> Vec<(&'static str, u64)> {
    let mut p: Vec<(&str, u64)> = steps.iter().map(|t| (*t, 0)).collect();
    p.extend(long_steps.iter().map(|t| (*t, 500)));
    p
}

/// Kills `runbook` at each point in turn, each time after `before`, then calls `recover` (which
/// runs it again and checks the outcome) with the step killed. Every point must be reached, and
/// the step it names must be under way when the kill lands; a kill that lands after the step
/// ended (a step of a few milliseconds, a slow reader on a busy machine) is recovered from and
/// tried again, at most three times.
pub fn kill_at_each(
    lab: &TestLab,
    runbook: &'static str,
    points: &[(&'static str, u64)],
    mut before: impl FnMut(),
    mut recover: impl FnMut(&str),
) -> Tally {
    let mut tally = Tally {
        runbook,
        points: vec![],
    };
    for &(title, delay) in points {
        for attempt in 1..=3 {
            before();
            let kill = kill_in_step(lab, runbook, title, delay);
            recover(&kill.step);
            match kill.later {
                None => {
                    tally.points.push(format!("+{delay} ms in {}", kill.step));
                    break;
                }
                Some(later) if attempt < 3 => eprintln!(
                    "{runbook}: \"{}\" was over {delay} ms in ({later} had started); again",
                    kill.step
                ),
                Some(later) => panic!(
                    "{runbook}: \"{}\" was over {delay} ms in, three times ({later} had started)",
                    kill.step
                ),
            }
        }
    }
    assert_eq!(tally.points.len(), points.len(), "{:?}", tally.points);
    tally
}
