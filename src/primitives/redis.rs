//! Redis primitives: write to and read from the journal (Redis Streams). Writes never fail: when
//! Redis is down, entries are spooled and delivered later (see `src/journal.rs`); reads include
//! what is still spooled, so a runbook sees what it recorded while Redis was down. Each one first
//! makes sure the journal knows the cluster (a no-op after the first time: a run learns it when it
//! starts; a REPL session at its first journal call).

use super::def;
use crate::clients::redis::JOURNAL;
use crate::runtime::host::Host;
use rhai::{Dynamic, Map, Module};
use std::collections::BTreeMap;
use std::sync::Arc;

fn fields_of(h: &Host, event: &str, data: &Map) -> BTreeMap<String, String> {
    let mut f = BTreeMap::new();
    for (k, v) in data {
        f.insert(k.to_string(), v.to_string());
    }
    f.insert("event".into(), event.to_string());
    f.insert("run_id".into(), h.run.lock().unwrap().run_id.clone());
    f.insert("ts".into(), crate::runtime::host::now_rfc3339());
    f
}

pub fn create_module(host: Arc<Host>) -> Module {
    let mut m = Module::new();

    let h = host.clone();
    def!(
        &mut m,
        "hold_watchers",
        ["()"],
        "Tells every `pgrunbook watch` of this cluster to hold off until this run ends: a planned
        operation (a switchover shuts the primary down on purpose) must not be taken for a
        failure. Held in Redis (renewed while the run lives, gone 10 s after a killed run) and in
        a lock file on this machine (seen with Redis down). A run that cannot take it says why
        and goes on. Nothing is held in a dry run.",
        move || {
            if h.dry_run() {
                h.say("    [dry run] would hold watchers off until the run ends");
                return;
            }
            let mut held = h.hold.lock().unwrap();
            if held.is_some() {
                return;
            }
            let what = {
                let st = h.run.lock().unwrap();
                format!("{} run {}", st.runbook, st.run_id)
            };
            let (hold, problems) = crate::runtime::hold::Hold::take(&h.config, &what);
            *held = Some(hold);
            if problems.is_empty() {
                h.say("    watchers hold off until this run ends");
            } else {
                h.say(&format!(
                    "    warning: watchers may not see this run's hold ({}); a watcher that does not see it may act on what this run does",
                    problems.join("; ")
                ));
            }
        }
    );

    let h = host.clone();
    def!(
        &mut m,
        "record_backup",
        ["data: Map"],
        "Records a backup in the backups stream in Redis (what `pgrunbook backups` lists):
        pass #{type, label, repo, size, duration_s, node, timeline, ...}. Skipped in a dry run.",
        move |data: Map| {
            if h.dry_run() {
                h.say("    [dry run] would record the backup in Redis");
                return;
            }
            h.learn_cluster();
            let f = fields_of(&h, "backup", &data);
            h.journal.append(crate::clients::redis::BACKUPS, f);
        }
    );

    let h = host.clone();
    def!(
        &mut m,
        "record_restore_check",
        ["data: Map"],
        "Records the result of a restore drill next to the backup records, in the backups stream
        (event `restore_check`): pass #{label (the backup's), outcome (\"ok\" or \"failed\"),
        restore_s, size, wal_bytes, tables, error, ...}. `pgrunbook backups` shows the newest one
        beside its backup (\"verified ... in ... s\"). Skipped in a dry run.",
        move |data: Map| {
            if h.dry_run() {
                h.say("    [dry run] would record the restore check in Redis");
                return;
            }
            h.learn_cluster();
            let f = fields_of(&h, "restore_check", &data);
            h.journal.append(crate::clients::redis::BACKUPS, f);
        }
    );

    let h = host.clone();
    def!(
        &mut m,
        "unconfirmed_fence",
        ["node: &str", "Dynamic"],
        "The newest failover (in the journal's last 500 entries) that promoted a node while
        `node` could not be fenced (its host cut off, force=true): #{run_id, at, promoted,
        runbook, text}, `text` saying it in one sentence; `()` when there is none. When `node`
        is back and accepts writes beside the node promoted then, this is why.",
        move |node: &str| -> Dynamic {
            h.learn_cluster();
            match crate::runtime::unconfirmed::newest(&h.journal, node) {
                None => Dynamic::UNIT,
                Some(u) => {
                    let mut m = Map::new();
                    m.insert("text".into(), u.text().into());
                    m.insert("run_id".into(), u.run_id.into());
                    m.insert("at".into(), u.at.into());
                    m.insert("promoted".into(), u.promoted.into());
                    m.insert("runbook".into(), u.runbook.into());
                    Dynamic::from(m)
                }
            }
        }
    );

    let h = host.clone();
    def!(
        &mut m,
        "journal_last",
        ["stream: &str", "n: i64", "Array"],
        "The last `n` entries of a stream (\"journal\" or \"backups\"), newest first, as maps.
        Entries of this cluster still spooled because Redis was unreachable are included, marked
        spooled: \"true\" and with an empty id. Empty when Redis is unreachable and nothing is
        spooled.",
        move |stream: &str, n: i64| -> rhai::Array {
            h.learn_cluster();
            let (entries, _unreachable) = h.journal.last_with_spool(stream, n.max(0) as usize);
            entries
                .into_iter()
                .map(|e| {
                    let mut m: Map = e
                        .fields
                        .into_iter()
                        .map(|(k, v)| (k.into(), Dynamic::from(v)))
                        .collect();
                    m.insert("id".into(), e.id.into());
                    Dynamic::from(m)
                })
                .collect()
        }
    );

    let h = host;
    def!(
        &mut m,
        "redis_log",
        ["event: &str", "data: Map"],
        "Appends an entry `event` with the fields of `data` to the journal stream in Redis
        (spooled when Redis is down). In a dry run the entry is marked dry_run=true.",
        move |event: &str, data: Map| {
            h.learn_cluster();
            let mut f = fields_of(&h, event, &data);
            f.insert("dry_run".into(), h.dry_run().to_string());
            h.journal.append(JOURNAL, f);
        }
    );

    m
}
