//! Issue 4: a dry run of every shipped runbook changes nothing that matters; it only adds a
//! journal entry for itself, marked as a dry run. Compared before and after on a real lab, in
//! two states: healthy, and after a failover (where failback and setup have real work to plan),
//! with the shared snapshot of everything a runbook can change (`common::snapshot`: fence
//! markers, postgresql.auto.conf, settings, pgbackrest.conf, the watchers' hold...). The list of
//! runbooks comes from the ones compiled into pgrunbook (`pgrunbook::embedded::RUNBOOKS`).

mod common;
use common::snapshot::snapshot;
use common::*;

/// Lines of a dry run's output that claim a change or a success that a dry run does not make:
/// a past-tense change ("created", "promoted", "streams from") not said as "would", "already" or
/// a fact read ("exists", "unchanged"), a check counted "ok" that was not checked, a run that
/// ends "ok". Tables of reads (status, checks) and the plan are facts and pass.
fn claims(stdout: &str) -> Vec<String> {
    const CHANGES: &[&str] = &[
        "created",
        "dropped",
        "promoted",
        "fenced",
        "rewound",
        "cloned",
        "removed",
        "written",
        "wrote",
        "started",
        "stopped",
        "restarted",
        "reset",
        "archived",
        "backed up",
        "backing up",
        "recorded",
        "streams from",
        "is now",
        "rejoined",
        "configured",
    ];
    const HONEST: &[&str] = &[
        "would",
        "[dry run]",
        "dry run",
        "already",
        "exists",
        "unchanged",
        "nothing to do",
        "plan:",
        "(now ",
    ];
    stdout
        .lines()
        .filter(|l| {
            let low = l.to_lowercase();
            let planned = l
                .trim_start()
                .split('.')
                .next()
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
            let unchecked_ok =
                low.contains("| ok ") && (low.contains("not checked") || low.contains("skipped"));
            if unchecked_ok {
                return true;
            }
            // A table row is what was read (the checks, a status), a step title what comes
            // next: neither says something was done.
            let table_row = l.contains(" | ") || l.starts_with("==> ");
            if planned || table_row || HONEST.iter().any(|h| low.contains(h)) {
                return false;
            }
            let change = CHANGES.iter().any(|c| low.contains(c));
            let ends_ok = low.trim_end().ends_with(": ok");
            change || ends_ok
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn the_claims_detector_finds_claims_and_passes_plans() {
    let out = "    stanza bases2-db created\n\
               pg-replica streams from pg-bases2 through slot replica1.\n\
               row replicated | pg-replica | ok     | not checked in a dry run\n\
               runbook setup: ok\n\
               \x20   [dry run] would create replication slot replica1 on pg-bases2\n\
               pg-replica would stream from pg-bases2\n\
               \x20 3. create replication slot replica1 on pg-bases2\n\
               pg-replica already streams from pg-bases2\n\
               \x20   slot replica1 exists\n";
    let found = claims(out);
    assert_eq!(found.len(), 4, "{found:#?}");
    assert!(found[0].contains("created") && found[2].contains("not checked"));
    assert!(found[3].contains("runbook setup: ok"));
}

fn dry_runs_change_nothing(lab: &TestLab, runs: &[&[&str]]) {
    let before = snapshot(lab);
    let journal_before = lab.stream("journal").len();
    for args in runs {
        let mut a: Vec<&str> = vec!["run"];
        a.extend_from_slice(args);
        a.push("--dry-run");
        let r = lab.pgrunbook(&a).succeeds().stdout_has("plan:");
        let claimed = claims(&r.stdout);
        assert!(
            claimed.is_empty(),
            "dry run of {args:?} claims what it did not do:\n{}\n--- whole output\n{}",
            claimed.join("\n"),
            r.stdout
        );
        assert_eq!(
            snapshot(lab),
            before,
            "dry run of {args:?} changed the cluster"
        );
    }
    let added: Vec<_> = lab
        .stream("journal")
        .into_iter()
        .skip(journal_before)
        .collect();
    assert!(!added.is_empty());
    for e in &added {
        assert_eq!(
            e["dry_run"], "true",
            "a dry run journals only dry-run entries: {e:?}"
        );
    }
    let ends = added.iter().filter(|e| e["event"] == "end").count();
    assert_eq!(ends, runs.len(), "one journal run per dry run");
}

#[test]
fn dry_run_of_every_shipped_runbook_changes_nothing() {
    let lab = TestLab::replicating("dry");
    lab.pgrunbook(&["run", "backup"]).succeeds();
    let all: &[&[&str]] = &[
        &["setup"],
        &["verify"],
        &["failover"],
        &["failback"],
        &["failback", "--set", "method=clone"],
        &["backup"],
        &["backup", "--set", "type=incr"],
        &["repair-replication-login"],
        &["restore-check"],
        &[
            "restore",
            "--set",
            "into=dry-run-restored",
            "--set",
            "port=15999",
            "--set",
            "target_name=pgrunbook-before-full-backup",
        ],
    ];
    // diagnose reads only, and exits 4 when it finds a problem (after a failover the old
    // primary is down, which it reports): it is dry-run only where the pair is healthy.
    // switchover and rotate-replication-password need a streaming pair, and refuse after a
    // failover: they too are dry-run where the pair is healthy. The new password comes from a
    // file in the lab's directory.
    lab.script("new-replication-password", "Dry-run-new-pw-1\n");
    let healthy: Vec<&[&str]> = all
        .iter()
        .copied()
        .chain([
            &["diagnose"][..],
            &["examples/replication_report"][..],
            &["examples/rolling-restart", "--set", "back=true"][..],
            &[
                "examples/notify",
                "--set",
                "node=pg-replica",
                "--set",
                "new_role=primary",
            ][..],
            &["switchover"][..],
            &[
                "rotate-replication-password",
                "--set",
                "password_file=new-replication-password",
            ][..],
        ])
        .collect();
    // Healthy: failover has a real plan (fence, shut down, promote).
    let r = lab.pgrunbook(&["run", "failover", "--dry-run"]).succeeds();
    assert!(
        r.stdout.contains("would fence") && r.stdout.contains("would promote"),
        "{}",
        r.stdout
    );
    dry_runs_change_nothing(&lab, &healthy);

    // After a failover: failback's plan is the whole rejoin.
    lab.pgrunbook(&["run", "failover"]).succeeds();
    let r = lab.pgrunbook(&["run", "failback", "--dry-run"]).succeeds();
    for planned in [
        "would stop container",
        "would create replication slot primary1",
        "pg_rewind it from pg-replica",
    ] {
        assert!(
            r.stdout.contains(planned),
            "failback plan lacks {planned:?}:\n{}",
            r.stdout
        );
    }
    let r = lab
        .pgrunbook(&["run", "failback", "--set", "method=clone", "--dry-run"])
        .succeeds();
    assert!(
        r.stdout.contains("pg_basebackup -X stream -R -S primary1"),
        "{}",
        r.stdout
    );
    dry_runs_change_nothing(&lab, all);

    // The snapshot sees each kind of change a runbook makes outside SQL (else the comparisons
    // above would prove nothing): the hold, pgbackrest.conf, the fence marker, ALTER SYSTEM.
    let mut seen = snapshot(&lab);
    let _: () = redis::cmd("SET")
        .arg(format!("{}:watch:hold", lab.id))
        .arg("by hand")
        .query(&mut lab.redis())
        .unwrap();
    let node = lab.container("pg-replica");
    for (what, cmd) in [
        ("the hold", None),
        (
            "pgbackrest.conf",
            Some("echo '# by hand' >> /etc/pgbackrest/pgbackrest.conf"),
        ),
        (
            "the fence marker",
            Some("echo by-hand > /var/lib/postgresql/data/pgrunbook.fenced"),
        ),
        (
            "postgresql.auto.conf",
            Some(
                "echo \"archive_timeout = '61s'\" >> /var/lib/postgresql/data/postgresql.auto.conf",
            ),
        ),
    ] {
        if let Some(cmd) = cmd {
            assert!(lab
                .docker(&["exec", "-u", "root", &node, "sh", "-c", cmd])
                .status
                .success());
        }
        let now = snapshot(&lab);
        assert_ne!(now, seen, "the snapshot does not see a change of {what}");
        seen = now;
    }

    // Every runbook compiled into pgrunbook (examples too) was dry-run.
    let shipped: Vec<String> = pgrunbook::embedded::RUNBOOKS
        .iter()
        .map(|(rel, _)| rel.trim_end_matches(".rhai").to_string())
        .collect();
    assert!(
        shipped.len() >= 10 && shipped.iter().any(|n| n.starts_with("examples/")),
        "{shipped:?}"
    );
    for name in &shipped {
        assert!(
            healthy.iter().any(|a| a[0] == name),
            "no dry-run test for shipped runbook {name}"
        );
    }
}
