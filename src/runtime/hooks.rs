//! Hooks: the runbook of `[hooks] on_role_change`, run after a change of role.
//!
//! A hook is a runbook of its own (journaled as its own run) with the parameters `node`,
//! `old_role`, `new_role`, `cluster` and `run_id` (those it declares). It runs on a thread of its
//! own with a fresh Host, so that it can neither see nor change the run that called it, and the
//! caller waits for it at most `[hooks] timeout_ms`: then the hook's cancel flag is set (a loop
//! stops at its next statement, a blocked `http_post` at its own time limit) and the caller goes
//! on. Its failure or timeout is printed as a warning and journaled in the caller's run
//! (`hook_<event>` in its metrics) and as a `hook` entry; it is never an error of the caller.

use crate::config::Config;
use crate::engine::{self, runbook::Runbook};
use crate::errln;
use crate::runtime::host::{now_rfc3339, Host};
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the hook of a role change is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleChange {
    pub node: String,
    pub old_role: String,
    pub new_role: String,
    pub cluster: String,
    pub run_id: String,
}

impl RoleChange {
    fn params(&self) -> [(&'static str, &str); 5] {
        [
            ("node", &self.node),
            ("old_role", &self.old_role),
            ("new_role", &self.new_role),
            ("cluster", &self.cluster),
            ("run_id", &self.run_id),
        ]
    }
}

/// How a hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No hook configured (or a dry run).
    None,
    Ok(u128),
    Failed(String),
    TimedOut(u64),
}

impl Outcome {
    pub fn text(&self) -> String {
        match self {
            Outcome::None => "none".into(),
            Outcome::Ok(ms) => format!("ok ({ms} ms)"),
            Outcome::Failed(e) => format!("failed: {e}"),
            Outcome::TimedOut(ms) => format!("stopped at its time limit of {ms} ms"),
        }
    }
}

/// Runs `config.hooks.on_role_change` for `change`, at most `config.hooks.timeout_ms`, and
/// says how it ended. Never fails: see the module's doc. `caller`'s run gets the outcome.
pub fn on_role_change(caller: &Host, change: &RoleChange) -> Outcome {
    let name = caller.config.hooks.on_role_change.trim().to_string();
    if name.is_empty() {
        return Outcome::None;
    }
    if caller.dry_run() {
        caller.say(&format!(
            "    [dry run] would run hook {name} ({} {} -> {})",
            change.node, change.old_role, change.new_role
        ));
        return Outcome::None;
    }
    let outcome = run_hook(&caller.config, &name, change, &caller.journal.cluster());
    let line = format!(
        "hook on_role_change {name} ({} {} -> {}): {}",
        change.node,
        change.old_role,
        change.new_role,
        outcome.text()
    );
    match &outcome {
        Outcome::Ok(_) => caller.say(&format!("    {line}")),
        _ => errln!("warning: {}", caller.mask(&line)),
    }
    caller.record(
        &format!("hook_{}_{}", change.node, change.new_role),
        caller.scrub(&outcome.text()),
    );
    let mut f = BTreeMap::new();
    f.insert("event".into(), "hook".into());
    f.insert("run_id".into(), change.run_id.clone());
    f.insert("hook".into(), name);
    f.insert("on".into(), "role_change".into());
    f.insert("node".into(), change.node.clone());
    f.insert("old_role".into(), change.old_role.clone());
    f.insert("new_role".into(), change.new_role.clone());
    f.insert(
        "outcome".into(),
        match &outcome {
            Outcome::Ok(_) => "ok",
            Outcome::TimedOut(_) => "timeout",
            _ => "failed",
        }
        .into(),
    );
    f.insert("detail".into(), caller.scrub(&outcome.text()));
    f.insert("ts".into(), now_rfc3339());
    caller.journal.append(crate::clients::redis::JOURNAL, f);
    outcome
}

fn run_hook(config: &Config, name: &str, change: &RoleChange, cluster_id: &str) -> Outcome {
    let rb = match Runbook::find(name) {
        Ok(rb) => rb,
        Err(f) => return Outcome::Failed(f.message),
    };
    let sets: Vec<(String, String)> = change
        .params()
        .iter()
        .filter(|(k, _)| rb.meta.params.iter().any(|p| p.name == *k))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let params = match engine::bind_params(&rb, &sets) {
        Ok(p) => p,
        Err(f) => return Outcome::Failed(f.message),
    };
    let limit_ms = config.hooks.timeout_ms.max(1);
    let mut cfg = config.clone();
    cfg.runbook.timeout_s = limit_ms.div_ceil(1000);
    let host = Arc::new(Host::new(cfg));
    // The caller knows the cluster: asking the nodes again could wait on one that is down.
    host.journal.set_cluster(Some(cluster_id.to_string()));
    let (tx, rx) = mpsc::channel();
    let h = host.clone();
    let started = Instant::now();
    std::thread::spawn(move || {
        let r = engine::run(&h, &rb, params);
        let _ = tx.send(r);
    });
    match rx.recv_timeout(Duration::from_millis(limit_ms)) {
        Ok(Ok(())) => Outcome::Ok(started.elapsed().as_millis()),
        Ok(Err(f)) => Outcome::Failed(f.one_line()),
        Err(_) => {
            // Stopped at its next statement; a blocked primitive ends at its own limit. The
            // thread journals its run as interrupted when it ends; nobody waits for it.
            host.cancel.cancel();
            host.pg.cancel_inflight();
            Outcome::TimedOut(limit_ms)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change() -> RoleChange {
        RoleChange {
            node: "pg-replica".into(),
            old_role: "standby".into(),
            new_role: "primary".into(),
            cluster: "7300000000000000000".into(),
            run_id: "1-1".into(),
        }
    }

    fn config(dir: &std::path::Path, hook: &str, timeout_ms: u64) -> Config {
        let mut c = Config::defaults();
        // No Redis here: the journal spools to a file of the test's own.
        c.redis.url = "redis://127.0.0.1:1".into();
        c.redis.connect_timeout_ms = 50;
        c.redis.spool = dir.join("spool.jsonl").display().to_string();
        c.hooks.on_role_change = hook.into();
        c.hooks.timeout_ms = timeout_ms;
        c
    }

    fn script(dir: &std::path::Path, name: &str, body: &str) -> String {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    }

    #[test]
    fn no_hook_configured_is_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(config(dir.path(), "", 1000));
        assert_eq!(on_role_change(&host, &change()), Outcome::None);
    }

    #[test]
    fn the_hook_gets_its_parameters_and_fails_or_loops_without_failing_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let ok = script(
            dir.path(),
            "seen.rhai",
            r#"//! Test hook.
//!
//! param node = ""  n
//! param old_role = ""  o
//! param new_role = ""  r
//! param cluster = ""  c
//! param run_id = ""  i
if `${node} ${old_role} ${new_role} ${cluster} ${run_id}` != "pg-replica standby primary 7300000000000000000 1-1" { throw "wrong parameters"; }
"#,
        );
        let host = Host::new(config(dir.path(), &ok, 5000));
        assert!(matches!(on_role_change(&host, &change()), Outcome::Ok(_)));
        let rec = host.run.lock().unwrap().metrics.clone();
        assert_eq!(
            rec.get("hook_pg-replica_primary")
                .map(|s| s.starts_with("ok")),
            Some(true),
            "{rec:?}"
        );

        let failing = script(
            dir.path(),
            "fail.rhai",
            "//! Fails.\nthrow \"webhook down\";\n",
        );
        let host = Host::new(config(dir.path(), &failing, 5000));
        match on_role_change(&host, &change()) {
            Outcome::Failed(e) => assert!(e.contains("webhook down"), "{e}"),
            o => panic!("{o:?}"),
        }

        // A hook that loops forever: stopped at its limit, and the caller goes on.
        let looping = script(
            dir.path(),
            "loop.rhai",
            "//! Loops.\nlet i = 0;\nloop { i += 1; }\n",
        );
        let host = Host::new(config(dir.path(), &looping, 300));
        let started = Instant::now();
        assert_eq!(on_role_change(&host, &change()), Outcome::TimedOut(300));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(3),
            "{took:?}"
        );
        let rec = host.run.lock().unwrap().metrics.clone();
        assert!(
            rec["hook_pg-replica_primary"].contains("time limit of 300 ms"),
            "{rec:?}"
        );
    }
}
