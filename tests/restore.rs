//! Issue 13, the restore half: `run restore-check` (a restore drill that touches nothing live)
//! and `run restore` (point-in-time restore into a new container), on real containers, checked
//! with direct SQL, the Docker CLI and the Redis streams, not by the runbooks' own word.

mod common;
use common::*;
use std::time::{Duration, Instant};

/// Containers and volumes a restore of this lab made (the restore label), by the Docker CLI.
fn restore_leftovers(lab: &TestLab) -> (String, String) {
    let filter = ["--filter", "label=org.pgrunbook.restore"];
    let lab_filter = format!("label=org.pgrunbook.lab={}", lab.id);
    let ps = lab.docker(&[
        "ps",
        "-a",
        "-q",
        filter[0],
        filter[1],
        "--filter",
        &lab_filter,
    ]);
    let vols = lab.docker(&[
        "volume",
        "ls",
        "-q",
        filter[0],
        filter[1],
        "--filter",
        &lab_filter,
    ]);
    (
        String::from_utf8_lossy(&ps.stdout).trim().to_string(),
        String::from_utf8_lossy(&vols.stdout).trim().to_string(),
    )
}

/// What must not change on the live pair: system identifiers, roles, streaming.
fn pair_state(lab: &TestLab) -> (String, String, bool, bool, i64) {
    (
        lab.system_identifier("pg-bases2"),
        lab.system_identifier("pg-replica"),
        lab.query_bool("pg-bases2", "SELECT pg_is_in_recovery()"),
        lab.query_bool("pg-replica", "SELECT pg_is_in_recovery()"),
        lab.query_i64(
            "pg-bases2",
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
        ),
    )
}

#[test]
fn restore_check_verifies_the_newest_backup_and_fails_on_a_corrupted_one() {
    let lab = TestLab::replicating("rcheck");
    lab.pgrunbook(&["run", "backup"])
        .succeeds()
        .stdout_has("restore point pgrunbook-before-full-backup-");
    let label = lab.pgbackrest_info("pg-bases2")[0]["backup"][0]["label"]
        .as_str()
        .unwrap()
        .to_string();
    let before = pair_state(&lab);

    // The dry run plans the drill and changes nothing.
    let r = lab
        .pgrunbook(&["run", "restore-check", "--dry-run"])
        .succeeds()
        .stdout_has("would create volume")
        .stdout_has("plan:");
    assert_eq!(
        restore_leftovers(&lab),
        (String::new(), String::new()),
        "{}",
        r.stdout
    );

    let r = lab
        .pgrunbook(&[
            "run",
            "restore-check",
            "--set",
            "queries=select count(*) as n from public.replica_test; select 1 as one",
        ])
        .succeeds()
        .stdout_has(&format!("Backup {label} restores"))
        .stdout_has("every table counted");
    eprintln!("{}", r.stdout);
    // The restore has no configuration file, and still runs with the shipped process count
    // (the CPU count plus one), not pgBackRest's default of one process.
    let out = lab.docker(&["exec", &lab.container("pg-bases2"), "nproc"]);
    let cpus: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(
        r.stdout
            .contains(&format!("({} pgBackRest processes)", cpus + 1)),
        "expected {} processes: {}",
        cpus + 1,
        r.stdout
    );
    assert_eq!(restore_leftovers(&lab), (String::new(), String::new()));
    assert_eq!(pair_state(&lab), before, "the drill changed the live pair");

    let checks: Vec<_> = lab
        .stream("backups")
        .into_iter()
        .filter(|e| e["event"] == "restore_check")
        .collect();
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert_eq!(checks[0]["label"], label);
    assert_eq!(checks[0]["outcome"], "ok");
    assert!(
        checks[0]["size"].parse::<i64>().unwrap() > 1_000_000,
        "{checks:?}"
    );
    assert!(
        checks[0]["wal_bytes"].parse::<i64>().unwrap() > 0,
        "{checks:?}"
    );
    lab.pgrunbook(&["backups"])
        .succeeds()
        .stdout_has("verified")
        .stdout_has(&label);
    // status still shows the backup as the last backup, not the drill.
    lab.pgrunbook(&["status"]).succeeds().stdout_has(&label);

    // keep=true leaves the scratch container; the next drill removes it first.
    lab.pgrunbook(&["run", "restore-check", "--set", "keep=true"])
        .succeeds()
        .stdout_has("kept");
    assert_ne!(restore_leftovers(&lab).0, "");

    // Corrupt one file of the newest backup in the repository: the largest file of the
    // database gets the (validly compressed, whatever the compression) content of the smallest,
    // so it decompresses but its checksum is wrong. pgBackRest checksums every file it
    // restores, and the drill must fail with its reason, which names the file.
    let node = lab.container("pg-bases2");
    let script = format!(
        "set -e; d=/var/lib/pgbackrest/backup/{stanza}/{label}/pg_data/base; \
         f=$(ls -S $d/*/* | head -1); g=$(ls -S $d/*/* | tail -1); \
         cp \"$g\" \"$f\"; echo \"$f\"",
        stanza = lab.stanza
    );
    let out = lab.docker(&["exec", "-u", "postgres", &node, "sh", "-c", &script]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let corrupted = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let r = lab.pgrunbook(&["run", "restore-check"]).fails_with(4);
    eprintln!("corrupted {corrupted}\n{}\n{}", r.stdout, r.stderr);
    let file = corrupted
        .rsplit('/')
        .next()
        .unwrap()
        .trim_end_matches(".gz")
        .trim_end_matches(".zst");
    assert!(
        r.stderr.contains("pgBackRest could not restore") && r.stderr.contains("ERROR: ["),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(file),
        "the reason names the file {file}: {}",
        r.stderr
    );
    assert_eq!(restore_leftovers(&lab), (String::new(), String::new()));
    let failed: Vec<_> = lab
        .stream("backups")
        .into_iter()
        .filter(|e| e["event"] == "restore_check" && e["outcome"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0]["error"].contains("ERROR: ["), "{failed:?}");
    assert_eq!(pair_state(&lab), before);
}

#[test]
fn restore_to_a_time_gets_a_dropped_table_back_in_a_new_container() {
    let lab = TestLab::replicating("pitr");
    lab.pgrunbook(&["run", "backup"]).succeeds();
    // pgBackRest picks the backup for a time target by its stop time in whole seconds: a target
    // in the very second the backup ended finds none ("unable to find backup set with stop time
    // less than ..."). A user's mistake comes later than that; so does this test's.
    std::thread::sleep(Duration::from_millis(1100));
    let mut c = lab.client("pg-bases2");
    c.batch_execute(
        "CREATE TABLE public.precious(id int PRIMARY KEY, v text); \
         INSERT INTO public.precious SELECT i, 'row ' || i FROM generate_series(1, 500) i;",
    )
    .unwrap();
    let noted: String = c.query_one("SELECT now()::text", &[]).unwrap().get(0);
    std::thread::sleep(Duration::from_millis(200));
    c.batch_execute("DROP TABLE public.precious").unwrap();
    let seg: String = c
        .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
        .unwrap()
        .get(0);
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let last: Option<String> = c
            .query_one("SELECT last_archived_wal FROM pg_stat_archiver", &[])
            .unwrap()
            .get(0);
        if last.is_some_and(|l| l >= seg) {
            break;
        }
        assert!(Instant::now() < end, "segment {seg} was not archived");
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = pair_state(&lab);
    let into = format!("{}-restored", lab.id);
    let port = free_port();
    let port_s = port.to_string();

    // Refusals, nothing changed: a node's container, an existing container, no target.
    let node_container = lab.container("pg-replica");
    let set = |k: &str, v: &str| ["--set".to_string(), format!("{k}={v}")];
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            [
                set("into", &node_container),
                set("port", &port_s),
                set("target_time", &noted),
            ]
            .concat(),
            "container of node pg-replica",
        ),
        (
            [
                set("into", &format!("{}-redis", lab.id)),
                set("port", &port_s),
                set("target_time", &noted),
            ]
            .concat(),
            "exists already",
        ),
        (
            [set("into", &into), set("port", &port_s)].concat(),
            "exactly one of",
        ),
    ];
    for (args, why) in &cases {
        let mut a = vec!["run", "restore"];
        a.extend(args.iter().map(String::as_str));
        lab.pgrunbook(&a).fails_with(4).stderr_has(why);
    }
    assert_eq!(restore_leftovers(&lab), (String::new(), String::new()));

    let t = Instant::now();
    let r = lab
        .pgrunbook(&[
            "run",
            "restore",
            "--set",
            &format!("into={into}"),
            "--set",
            &format!("port={port}"),
            "--set",
            &format!("target_time={noted}"),
        ])
        .succeeds()
        .stdout_has(&format!("Restored to time {noted} in {into}"));
    eprintln!("restore took {:?}\n{}", t.elapsed(), r.stdout);

    // The new container has the table and its rows; it is promoted and writable.
    let mut restored = pg_config(port).connect(postgres::NoTls).unwrap();
    let n: i64 = restored
        .query_one("SELECT count(*) FROM public.precious", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 500);
    let in_recovery: bool = restored
        .query_one("SELECT pg_is_in_recovery()", &[])
        .unwrap()
        .get(0);
    assert!(!in_recovery);
    // The seed's way of working answers in it: `docker exec NAME psql`, no `-h`.
    let out = lab.docker(&[
        "exec",
        &into,
        "psql",
        "-d",
        "bases2_proyectos",
        "-Atc",
        "SELECT count(*) FROM public.precious",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "500",
        "docker exec {into} psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The live pair is unchanged: same identifiers and roles, still streaming, table still gone.
    assert_eq!(pair_state(&lab), before);
    let gone: Option<String> = lab
        .client("pg-bases2")
        .query_one("SELECT to_regclass('public.precious')::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(gone, None, "the table came back on the live primary");
    // Restoring into the same name again is refused: it exists now.
    lab.pgrunbook(&[
        "run",
        "restore",
        "--set",
        &format!("into={into}"),
        "--set",
        &format!("port={}", free_port()),
        "--set",
        &format!("target_time={noted}"),
    ])
    .fails_with(4)
    .stderr_has("exists already");
    drop(restored);
    // lab down (the harness's Drop) removes the restored container and its volume with the lab.
    let r = lab.pgrunbook(&["lab", "down", "--volumes"]).succeeds();
    assert!(
        r.stdout.contains(&format!("removed container {into}"))
            || r.stderr.contains(&format!("removed container {into}")),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert_eq!(restore_leftovers(&lab), (String::new(), String::new()));
}

/// Two drills at once on one cluster share the scratch name: the second must not remove the
/// scratch of the first while it runs (it refuses, exit code 4, naming the run that owns it),
/// while the scratch of a drill that was killed is still cleaned up by the next one.
#[test]
fn a_drill_under_way_keeps_its_scratch_and_a_killed_ones_is_removed() {
    let lab = TestLab::replicating("rtwo");
    lab.pgrunbook(&["run", "backup"]).succeeds();
    let scratch_made = |lab: &TestLab| !restore_leftovers(lab).1.is_empty();
    let wait_scratch = |lab: &TestLab| {
        let end = Instant::now() + Duration::from_secs(60);
        while !scratch_made(lab) {
            assert!(Instant::now() < end, "no scratch volume appeared");
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    // A drill under way, and a second one started meanwhile.
    let first = lab
        .command(&["run", "restore-check"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_scratch(&lab);
    let second = lab.pgrunbook(&["run", "restore-check"]);
    assert_eq!(second.code, 4, "{}\n{}", second.stdout, second.stderr);
    assert!(
        second
            .stderr
            .contains("belongs to a restore under way: run "),
        "{}",
        second.stderr
    );
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the first drill failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(restore_leftovers(&lab), (String::new(), String::new()));

    // A drill killed with SIGKILL leaves its scratch; the next drill removes it and passes.
    let mut killed = lab
        .command(&["run", "restore-check"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_scratch(&lab);
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert!(scratch_made(&lab));
    lab.pgrunbook(&["run", "restore-check"])
        .succeeds()
        .stdout_has("an earlier run left");
    assert_eq!(restore_leftovers(&lab), (String::new(), String::new()));
}
