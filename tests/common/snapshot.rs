//! Everything a runbook can change on a lab, read independently of pgrunbook (SQL on the
//! published ports, the Docker CLI, Redis): for tests that check a run changed nothing, such as
//! a dry run. Files are read with `docker cp`, which works on a stopped container too.

use super::TestLab;

pub const NODES: [&str; 2] = ["pg-bases2", "pg-replica"];
const DATA: &str = "/var/lib/postgresql/data";

#[derive(Debug, PartialEq)]
pub struct ClusterSnapshot {
    pub containers: Vec<String>,
    /// Whether each node is in recovery (None: it does not answer).
    pub roles: Vec<Option<bool>>,
    /// The fence marker's content on each node (None: no marker).
    pub fence: Vec<Option<String>>,
    /// Each node's postgresql.auto.conf: primary_conninfo, primary_slot_name, archive settings,
    /// synchronous_standby_names and everything else ALTER SYSTEM writes.
    pub auto_conf: Vec<Option<String>>,
    /// The settings in effect on each node that answers: primary_conninfo, primary_slot_name,
    /// archive_mode, archive_command, synchronous_standby_names.
    pub settings: Vec<Vec<String>>,
    /// standby.signal / recovery.signal present on each node.
    pub signals: Vec<(bool, bool)>,
    /// Each node's pgbackrest.conf.
    pub pgbackrest_conf: Vec<Option<String>>,
    pub slots: Vec<Vec<String>>,
    pub rows: i64,
    pub backups: Vec<String>,
    pub backup_records: usize,
    /// The watchers' hold in Redis (`<prefix>:watch:hold`).
    pub hold: Option<String>,
    /// Containers and volumes a restore made.
    pub restored: (String, String),
}

/// A file of a container (running or not); None when it is not there.
pub fn container_file(lab: &TestLab, node: &str, path: &str) -> Option<String> {
    let out = lab.docker(&["cp", &format!("{}:{path}", lab.container(node)), "-"]);
    if !out.status.success() {
        return None;
    }
    // `docker cp ... -` writes a tar stream: a 512-byte header (size in octal at 124..136),
    // then the content.
    let tar = out.stdout;
    let size = std::str::from_utf8(tar.get(124..136)?)
        .ok()?
        .trim_matches(|c: char| c == '\0' || c == ' ');
    let size = usize::from_str_radix(size, 8).ok()?;
    Some(String::from_utf8_lossy(tar.get(512..512 + size)?).into_owned())
}

fn labelled(lab: &TestLab, what: &[&str]) -> String {
    let mut args = what.to_vec();
    let lab_filter = format!("label=org.pgrunbook.lab={}", lab.id);
    args.extend([
        "-q",
        "--filter",
        "label=org.pgrunbook.restore",
        "--filter",
        &lab_filter,
    ]);
    String::from_utf8_lossy(&lab.docker(&args).stdout)
        .trim()
        .to_string()
}

pub fn snapshot(lab: &TestLab) -> ClusterSnapshot {
    let up = |n: &str| lab.container_state(n) == "running" && lab.try_client(n).is_some();
    let primary = NODES
        .iter()
        .find(|n| up(n) && !lab.query_bool(n, "SELECT pg_is_in_recovery()"))
        .expect("a primary answers");
    let info = lab.pgbackrest_info(primary);
    let mut redis = lab.redis();
    let hold: Option<String> = redis::cmd("GET")
        .arg(format!("{}:watch:hold", lab.id))
        .query(&mut redis)
        .unwrap();
    ClusterSnapshot {
        containers: NODES.iter().map(|n| lab.container_state(n)).collect(),
        roles: NODES
            .iter()
            .map(|n| up(n).then(|| lab.query_bool(n, "SELECT pg_is_in_recovery()")))
            .collect(),
        fence: NODES
            .iter()
            .map(|n| container_file(lab, n, &format!("{DATA}/pgrunbook.fenced")))
            .collect(),
        auto_conf: NODES
            .iter()
            .map(|n| container_file(lab, n, &format!("{DATA}/postgresql.auto.conf")))
            .collect(),
        settings: NODES
            .iter()
            .map(|n| {
                if up(n) {
                    lab.query_strings(
                        n,
                        "SELECT name || '=' || setting FROM pg_settings WHERE name IN \
                         ('primary_conninfo', 'primary_slot_name', 'archive_mode', \
                          'archive_command', 'synchronous_standby_names') ORDER BY name",
                    )
                } else {
                    vec![]
                }
            })
            .collect(),
        signals: NODES
            .iter()
            .map(|n| {
                (
                    container_file(lab, n, &format!("{DATA}/standby.signal")).is_some(),
                    container_file(lab, n, &format!("{DATA}/recovery.signal")).is_some(),
                )
            })
            .collect(),
        pgbackrest_conf: NODES
            .iter()
            .map(|n| container_file(lab, n, "/etc/pgbackrest/pgbackrest.conf"))
            .collect(),
        slots: NODES
            .iter()
            .map(|n| {
                if up(n) {
                    lab.query_strings(
                        n,
                        "SELECT slot_name::text || ':' || active FROM pg_replication_slots ORDER BY 1",
                    )
                } else {
                    vec![]
                }
            })
            .collect(),
        rows: lab.query_i64(primary, "SELECT count(*) FROM public.replica_test"),
        backups: info[0]["backup"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|b| b["label"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default(),
        backup_records: lab.stream("backups").len(),
        hold,
        restored: (
            labelled(lab, &["ps", "-a"]),
            labelled(lab, &["volume", "ls"]),
        ),
    }
}
