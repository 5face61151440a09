//! Clients follow the primary (issue 21): the health endpoint `pgrunbook watch` serves per node,
//! its metrics, and the hook of role changes, on real containers.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A webhook on 127.0.0.1 that keeps every body it is sent, and answers 200 while `answer` is
/// true (else it keeps the connection open and says nothing).
struct Webhook {
    url: String,
    bodies: Arc<Mutex<Vec<String>>>,
    answer: Arc<AtomicBool>,
}

impl Webhook {
    fn start() -> Webhook {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(vec![]));
        let answer = Arc::new(AtomicBool::new(true));
        let (b, a) = (bodies.clone(), answer.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                let (b, a) = (b.clone(), a.clone());
                std::thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut got = vec![];
                    let mut buf = [0u8; 4096];
                    let body = loop {
                        let n = s.read(&mut buf).unwrap_or(0);
                        got.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&got).to_string();
                        if let Some(i) = text.find("\r\n\r\n") {
                            let len = text[..i]
                                .lines()
                                .find_map(|l| {
                                    l.to_ascii_lowercase()
                                        .strip_prefix("content-length:")
                                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                                })
                                .unwrap_or(0);
                            if got.len() >= i + 4 + len {
                                break text[i + 4..].to_string();
                            }
                        }
                        if n == 0 {
                            return;
                        }
                    };
                    b.lock().unwrap().push(body);
                    if a.load(Ordering::SeqCst) {
                        let _ = write!(
                            s,
                            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                        );
                    } else {
                        std::thread::sleep(Duration::from_secs(30));
                    }
                });
            }
        });
        Webhook {
            url,
            bodies,
            answer,
        }
    }

    fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| serde_json::from_str(b).unwrap())
            .collect()
    }
}

/// `pgrunbook watch` of a lab, its output kept.
struct Watcher {
    child: Child,
    out: Arc<Mutex<String>>,
}

impl Watcher {
    fn start(lab: &TestLab) -> Watcher {
        let mut child = lab
            .command(&["watch"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let out = out.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { return };
                    out.lock().unwrap().push_str(&(line + "\n"));
                }
            });
        }
        Watcher { child, out }
    }

    fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    fn wait_for(&self, text: &str, secs: u64) {
        let end = Instant::now() + Duration::from_secs(secs);
        while !self.output().contains(text) {
            assert!(
                Instant::now() < end,
                "the watcher never said {text:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// GET `path` on `addr`: status and body (0 when nothing answers).
fn get(addr: &str, path: &str) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Gives each node a health address in the lab's configuration; returns them.
fn with_health(lab: &TestLab) -> (String, String) {
    let (a, b) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let text = std::fs::read_to_string(&lab.config_path).unwrap();
    let text = text
        .replacen(
            "init = \"primary\"\n",
            &format!("init = \"primary\"\nhealth = \"{a}\"\n"),
            1,
        )
        .replacen(
            "init = \"standby\"\n",
            &format!("init = \"standby\"\nhealth = \"{b}\"\n"),
            1,
        );
    std::fs::write(&lab.config_path, text).unwrap();
    (a, b)
}

/// The value of the sample `name` with `labels` in a scrape parsed by prometheus-parse.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

fn scrape(addr: &str) -> prometheus_parse::Scrape {
    let (code, body) = get(addr, "/metrics");
    assert_eq!(code, 200, "{body}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The whole path: a switchover and a failover under `pgrunbook watch`, each seen by the hook
/// (the shipped notify.rhai posting to a webhook here), the health endpoints following the
/// primary, and /metrics parsed with a Prometheus text parser after the failover. The webhook
/// stops answering before the failover: the hook times out, the failover is done all the same.
#[test]
fn health_metrics_and_hooks_follow_a_switchover_and_a_failover() {
    let hook = Webhook::start();
    let lab = TestLab::with_extra("cli", "");
    // The shipped example hook, with this webhook as its default url.
    let notify = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/runbooks/examples/notify.rhai"
    ))
    .unwrap()
    .replace("http://127.0.0.1:9000/pgrunbook", &hook.url);
    let notify_path = lab.script("notify.rhai", &notify);
    let mut cfg = std::fs::read_to_string(&lab.config_path).unwrap();
    cfg.push_str(&format!(
        "\n[hooks]\non_role_change = \"{notify_path}\"\ntimeout_ms = 6000\n"
    ));
    std::fs::write(&lab.config_path, cfg).unwrap();
    let (h_bases2, h_replica) = with_health(&lab);
    lab.ensure_image();
    lab.pgrunbook(&["lab", "up"]).succeeds();
    lab.pgrunbook(&["run", "setup"]).succeeds();

    // A switchover by hand: the hook sees pg-replica become the primary.
    lab.pgrunbook(&["run", "switchover"])
        .succeeds()
        .stdout_has("hook on_role_change");
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let b = &bodies[0];
    assert_eq!(
        (
            b["node"].as_str(),
            b["old_role"].as_str(),
            b["new_role"].as_str()
        ),
        (Some("pg-replica"), Some("standby"), Some("primary")),
        "{b}"
    );
    assert_eq!(
        b["cluster"].as_str().unwrap(),
        lab.system_identifier("pg-replica")
    );
    let journal = lab.stream("journal");
    let sw = journal
        .iter()
        .find(|e| e.get("runbook").map(String::as_str) == Some("switchover"))
        .unwrap();
    assert_eq!(b["run_id"].as_str(), sw.get("run_id").map(String::as_str));

    // The watcher serves each node's endpoint.
    let w = Watcher::start(&lab);
    w.wait_for("acting: holds the lease in Redis", 60);
    wait_until("pg-replica's /primary to answer 200", 30, || {
        get(&h_replica, "/primary").0 == 200
    });
    assert_eq!(get(&h_bases2, "/primary").0, 503);
    wait_until("pg-bases2's /replica to answer 200", 30, || {
        get(&h_bases2, "/replica?lag=16MB").0 == 200
    });
    assert_eq!(get(&h_replica, "/replica").0, 503);
    wait_until("/cluster to be read", 30, || {
        get(&h_bases2, "/cluster").0 == 200
    });
    let (_, cluster) = get(&h_bases2, "/cluster");
    let cluster: serde_json::Value = serde_json::from_str(&cluster).unwrap();
    assert_eq!(cluster["nodes"].as_array().unwrap().len(), 2, "{cluster}");
    let m = scrape(&h_replica);
    assert_eq!(sample(&m, "pgrunbook_switchovers_total", &[]), Some(1.0));
    assert_eq!(sample(&m, "pgrunbook_failovers_total", &[]), Some(0.0));

    // A backup and a restore drill in the journal (recorded by a script, not taken: what is
    // checked here is that /metrics reads their age).
    let rec = lab.script(
        "rec.rhai",
        "//! Records.\nrecord_backup(#{type: \"full\", label: \"x\"});\nrecord_restore_check(#{label: \"x\", outcome: \"ok\"});\n",
    );
    lab.pgrunbook(&["run", &rec]).succeeds();

    // The webhook goes silent, and the primary is killed: the failover is done by the watcher,
    // the hook times out (notify's own 3000 ms), journaled.
    hook.answer.store(false, Ordering::SeqCst);
    let out = lab.docker(&["kill", "-s", "KILL", &lab.container("pg-replica")]);
    assert!(out.status.success());
    wait_until("pg-bases2's /primary to answer 200", 60, || {
        get(&h_bases2, "/primary").0 == 200
    });
    assert_ne!(get(&h_replica, "/primary").0, 200);
    w.wait_for("failover done", 60);
    let journal = lab.stream("journal");
    let fo = journal
        .iter()
        .find(|e| {
            e.get("runbook").map(String::as_str) == Some("failover")
                && e.get("event").map(String::as_str) == Some("end")
        })
        .expect("a failover run");
    assert_eq!(fo["outcome"], "ok", "{fo:?}");
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(bodies[1]["node"], "pg-bases2");
    assert_eq!(bodies[1]["new_role"], "primary");
    assert_eq!(bodies[1]["run_id"].as_str(), Some(fo["run_id"].as_str()));
    let hooked = journal
        .iter()
        .filter(|e| e.get("event").map(String::as_str) == Some("hook"))
        .collect::<Vec<_>>();
    assert_eq!(hooked.len(), 2, "{hooked:?}");
    assert_eq!(hooked[0]["outcome"], "ok");
    assert_eq!(hooked[1]["outcome"], "failed", "{:?}", hooked[1]);
    assert!(
        hooked[1]["detail"].contains("time limit of 3000 ms"),
        "{:?}",
        hooked[1]
    );
    assert!(
        w.output().contains("warning: hook on_role_change"),
        "{}",
        w.output()
    );

    // /metrics after the failover, parsed.
    wait_until("the failover in /metrics", 30, || {
        sample(&scrape(&h_bases2), "pgrunbook_failovers_total", &[]) == Some(1.0)
    });
    let m = scrape(&h_bases2);
    let one = |name: &str, labels: &[(&str, &str)]| {
        sample(&m, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} missing"))
    };
    assert_eq!(
        one(
            "pgrunbook_node_role",
            &[("node", "pg-bases2"), ("role", "primary")]
        ),
        1.0
    );
    assert_eq!(
        one(
            "pgrunbook_node_role",
            &[("node", "pg-replica"), ("role", "down")]
        ),
        1.0
    );
    assert_eq!(
        one(
            "pgrunbook_node_role",
            &[("node", "pg-replica"), ("role", "primary")]
        ),
        0.0
    );
    assert_eq!(one("pgrunbook_failovers_total", &[]), 1.0);
    assert_eq!(one("pgrunbook_switchovers_total", &[]), 1.0);
    assert_eq!(one("pgrunbook_failbacks_total", &[]), 0.0);
    assert_eq!(one("pgrunbook_watcher_holds_lease", &[]), 1.0);
    let metrics: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&fo["metrics"]).unwrap();
    assert_eq!(
        one("pgrunbook_last_failover_duration_seconds", &[]),
        fo["duration_ms"].parse::<f64>().unwrap() / 1000.0
    );
    assert_eq!(
        one("pgrunbook_last_failover_data_lost_bytes", &[]),
        metrics["data_lost_bytes"].parse::<f64>().unwrap()
    );
    let backup_age = one("pgrunbook_last_backup_age_seconds", &[]);
    let drill_age = one("pgrunbook_last_restore_drill_age_seconds", &[]);
    assert!((0.0..600.0).contains(&backup_age), "{backup_age}");
    assert!((0.0..600.0).contains(&drill_age), "{drill_age}");
    // Lag is a standby's: with none streaming there is no lag sample.
    assert_eq!(
        sample(&m, "pgrunbook_node_lag_bytes", &[("node", "pg-replica")]),
        None
    );
}

/// A health address already in use: the watcher does not start, and names it.
#[test]
fn watch_refuses_a_health_port_in_use() {
    let lab = TestLab::new("clip");
    let (a, _) = with_health(&lab);
    let _taken = TcpListener::bind(&a).unwrap();
    lab.pgrunbook(&["watch"]).fails_with(2).stderr_has(&format!(
        "node pg-bases2: cannot serve its health endpoint on {a}"
    ));
}

/// `status` prints the URI applications connect with, and `status --json` carries it; with
/// `[clients]` the alias forms too. No lab runs, so status also says that no node accepts writes
/// (exit 4): the URI is printed all the same, since it comes from the configuration.
#[test]
fn status_prints_the_client_uri() {
    let lab = TestLab::new("cliu");
    let (p1, p2) = (lab.port("pg-bases2"), lab.port("pg-replica"));
    let want = format!(
        "postgresql://postgres@127.0.0.1:{p1},127.0.0.1:{p2}/bases2_proyectos?target_session_attrs=read-write"
    );
    lab.pgrunbook(&["status"])
        .fails_with(4)
        .stdout_has("ALERT: no node accepts writes")
        .stdout_has(&format!("clients: {want}"))
        .stdout_lacks("pg-primary");
    let r = lab.pgrunbook(&["status", "--json"]).fails_with(4);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["client_uri"], want.as_str());
    assert!(!r.stdout.contains(PASSWORD));

    let mut cfg = std::fs::read_to_string(&lab.config_path).unwrap();
    cfg.push_str("\n[clients]\nnetwork = \"app-net\"\nprimary_alias = \"db-rw\"\n");
    std::fs::write(&lab.config_path, cfg).unwrap();
    let r = lab.pgrunbook(&["status", "--json"]).fails_with(4);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        v["client_uri_primary_alias"],
        "postgresql://postgres@db-rw:5432/bases2_proyectos?target_session_attrs=read-write"
    );
    assert_eq!(
        v["client_uri_replica_alias"],
        "postgresql://postgres@pg-replicas:5432/bases2_proyectos?target_session_attrs=any"
    );
}

/// Removes what a test made by hand with the docker CLI (declared before the lab, so dropped
/// after it: a network is removed once its containers are gone).
struct Made {
    containers: Vec<String>,
    networks: Vec<String>,
}

impl Drop for Made {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", c])
                .output();
        }
        for n in &self.networks {
            let _ = std::process::Command::new("docker")
                .args(["network", "rm", n])
                .output();
        }
    }
}

fn docker_ok(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The aliases `container` has on `network`, or None when it is not on it.
fn aliases(container: &str, network: &str) -> Option<Vec<String>> {
    let out = docker_ok(&[
        "inspect",
        "-f",
        &format!("{{{{json (index .NetworkSettings.Networks \"{network}\")}}}}"),
        container,
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or(serde_json::Value::Null);
    if v.is_null() {
        return None;
    }
    // Older engines list the container's own name and short id among its aliases.
    let id = docker_ok(&["inspect", "-f", "{{.Id}}", container]);
    Some(
        v["Aliases"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x.as_str().unwrap().to_string())
                    .filter(|x| x != container && !(x.len() >= 12 && id.starts_with(x.as_str())))
                    .collect()
            })
            .unwrap_or_default(),
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The stable name: setup gives the primary pg-primary and the standby pg-replicas on the
/// applications' network; an application container writes through pg-primary in a loop,
/// reconnecting on error; the primary is killed under `pgrunbook watch`; the old primary leaves
/// the network, the new one takes the alias, the writes resume there, and every acknowledged row
/// is on the new primary. Prints the time from the kill to the first accepted write
/// (bench/clients.sh takes the median; no time is asserted here).
#[test]
fn the_primary_alias_follows_a_failover_and_the_application_writes_on() {
    let mut made = Made {
        containers: vec![],
        networks: vec![],
    };
    let lab = TestLab::with_extra("clia", "");
    let net = format!("{}-app", lab.id);
    let app = format!("{}-app", lab.id);
    made.networks.push(net.clone());
    made.containers.push(app.clone());
    let mut cfg = std::fs::read_to_string(&lab.config_path).unwrap();
    cfg.push_str(&format!("\n[clients]\nnetwork = \"{net}\"\n"));
    std::fs::write(&lab.config_path, cfg).unwrap();
    lab.ensure_image();
    lab.pgrunbook(&["lab", "up"]).succeeds();
    lab.pgrunbook(&["run", "setup"]).succeeds();
    let (b, r) = (lab.container("pg-bases2"), lab.container("pg-replica"));
    assert_eq!(aliases(&b, &net), Some(vec!["pg-primary".to_string()]));
    assert_eq!(aliases(&r, &net), Some(vec!["pg-replicas".to_string()]));
    lab.pgrunbook(&["run", "verify"])
        .succeeds()
        .stdout_has(&format!("pg-primary on {net}"));
    lab.pgrunbook(&["status"]).succeeds().stdout_has(
        "postgresql://postgres@pg-primary:5432/bases2_proyectos?target_session_attrs=read-write",
    );

    // The application: a new connection per write (libpq resolves pg-primary at each connect),
    // its value counted up only when acknowledged.
    lab.client("pg-bases2")
        .batch_execute("CREATE TABLE app_writes (n int PRIMARY KEY)")
        .unwrap();
    let image = "pgrunbook-lab:17";
    let script = format!(
        "i=0; while true; do \
           t0=$(date +%s%3N); if psql 'host=pg-primary port=5432 user=postgres password={PASSWORD} dbname=bases2_proyectos connect_timeout=2 target_session_attrs=read-write' \
              -qtAc \"INSERT INTO app_writes VALUES ($i)\" >/dev/null 2>&1; \
           then echo \"ok $i $t0 $(date +%s%3N)\"; i=$((i+1)); \
           else sleep 0.02; fi; \
         done"
    );
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &app,
        "--network",
        &net,
        "--entrypoint",
        "bash",
        image,
        "-c",
        &script,
    ]);
    // (value, started, acknowledged) of each write acknowledged, started after `after`.
    let acked = |after: i64| -> Vec<(i64, i64, i64)> {
        let out = std::process::Command::new("docker")
            .args(["logs", &app])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 4 && f[0] == "ok").then(|| {
                    (
                        f[1].parse().unwrap(),
                        f[2].parse().unwrap(),
                        f[3].parse().unwrap(),
                    )
                })
            })
            .filter(|(_, t, _)| *t > after)
            .collect()
    };
    wait_until("the application to write", 60, || !acked(0).is_empty());

    let w = Watcher::start(&lab);
    w.wait_for("acting: holds the lease in Redis", 60);
    std::thread::sleep(Duration::from_millis(1000));
    let killed_at = now_ms();
    docker_ok(&["kill", "-s", "KILL", &b]);
    wait_until("a write accepted after the kill", 90, || {
        !acked(killed_at).is_empty()
    });
    let first = acked(killed_at)[0].2;
    eprintln!(
        "RESUME_MS={} (kill to the first write accepted through pg-primary)",
        first - killed_at
    );
    w.wait_for("failover done", 60);
    std::thread::sleep(Duration::from_millis(500));
    docker_ok(&["stop", "-t", "1", &app]);

    // The old primary left the applications' network; the new one carries pg-primary alone.
    assert_eq!(aliases(&b, &net), None);
    assert_eq!(aliases(&r, &net), Some(vec!["pg-primary".to_string()]));
    // Every acknowledged write is on the new primary.
    let all = acked(0);
    let on_new: std::collections::BTreeSet<i64> = lab
        .client("pg-replica")
        .query("SELECT n FROM app_writes", &[])
        .unwrap()
        .iter()
        .map(|row| i64::from(row.get::<_, i32>(0)))
        .collect();
    // Writes acknowledged before the kill may be lost (asynchronous replication: the failover
    // measures it); none started after it may be anywhere but on the new primary.
    let missing: Vec<i64> = all
        .iter()
        .filter(|(_, t0, _)| *t0 > killed_at)
        .map(|(n, _, _)| *n)
        .filter(|n| !on_new.contains(n))
        .collect();
    assert!(all.len() > 2, "{all:?}");
    assert!(
        missing.is_empty(),
        "acknowledged but not on the new primary: {missing:?}"
    );
}

/// Bad input: a [clients] network on another driver, an alias held by a container pgrunbook
/// does not manage. setup fails naming both, and changes nothing.
#[test]
fn a_clients_network_on_another_driver_or_a_foreign_alias_is_refused() {
    let mut made = Made {
        containers: vec![],
        networks: vec![],
    };
    let lab = TestLab::with_extra("clib", "");
    let net = format!("{}-app", lab.id);
    made.networks.push(net.clone());
    lab.ensure_image();
    lab.pgrunbook(&["lab", "up"]).succeeds();
    let slots = || {
        lab.query_strings(
            "pg-bases2",
            "SELECT slot_name::text FROM pg_replication_slots",
        )
    };
    let before = slots();

    // Docker's own `host` network (driver host), on every engine.
    let cfg = std::fs::read_to_string(&lab.config_path).unwrap();
    std::fs::write(
        &lab.config_path,
        format!("{cfg}\n[clients]\nnetwork = \"host\"\n"),
    )
    .unwrap();
    lab.pgrunbook(&["run", "setup"])
        .fails_with(4)
        .stderr_has("network host")
        .stderr_has("driver host, not bridge");
    assert_eq!(aliases(&lab.container("pg-bases2"), "host"), None);
    assert_eq!(slots(), before, "setup changed nothing");
    std::fs::write(
        &lab.config_path,
        format!("{cfg}\n[clients]\nnetwork = \"{net}\"\n"),
    )
    .unwrap();

    // A bridge network where a container of someone else's is pg-primary.
    docker_ok(&["network", "create", &net]);
    let other = format!("{}-other", lab.id);
    made.containers.push(other.clone());
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &other,
        "--network",
        &net,
        "--network-alias",
        "pg-primary",
        "--entrypoint",
        "sleep",
        "pgrunbook-lab:17",
        "600",
    ]);
    lab.pgrunbook(&["run", "setup"])
        .fails_with(4)
        .stderr_has("alias pg-primary")
        .stderr_has(&other);
    assert_eq!(aliases(&lab.container("pg-bases2"), &net), None);
    assert!(lab
        .query_strings(
            "pg-bases2",
            "SELECT slot_name::text FROM pg_replication_slots"
        )
        .is_empty());
}

/// Runs `f` on a thread of its own and waits at most `limit` for it: `None` when it did not end
/// in time (the thread is left behind). The client's connect timeout bounds the TCP connect
/// only; through HAProxy the connect succeeds at once and a dead backend's silence would hang
/// the handshake for HAProxy's `timeout server`.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok()
}

/// A write loop through `port` on 127.0.0.1 (a new connection per write, reconnecting on error,
/// each attempt given up after 3 s), until `stop`: (value, started ms, acknowledged ms) of each
/// acknowledged write.
fn app_writes(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<(i64, i64, i64)>> {
    std::thread::spawn(move || {
        let mut acked = vec![];
        let mut i = 0i64;
        while !stop.load(Ordering::SeqCst) {
            let t0 = now_ms();
            let ok = within(Duration::from_secs(3), move || {
                let mut cfg = pg_config(port);
                cfg.connect_timeout(Duration::from_secs(2));
                cfg.connect(postgres::NoTls)
                    .and_then(|mut c| {
                        c.execute("INSERT INTO app_writes VALUES ($1)", &[&(i as i32)])
                    })
                    .is_ok()
            });
            if ok == Some(true) {
                acked.push((i, t0, now_ms()));
                i += 1;
            } else {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        acked
    })
}

/// contrib/haproxy.cfg with a real HAProxy (Debian's package, image built by
/// scripts/build-haproxy-image.sh): its primary port goes to the primary and its replica port to
/// the standby, through the watcher's health endpoints; after `docker kill -s KILL` of the
/// primary, writes through the primary port resume on the new primary, and every acknowledged
/// write is there. Prints the time from the kill to the first accepted write.
#[test]
fn haproxy_routes_through_the_health_endpoints_across_a_failover() {
    let out = std::process::Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/build-haproxy-image.sh"
    ))
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut made = Made {
        containers: vec![],
        networks: vec![],
    };
    let lab = TestLab::with_extra("clih", "");
    let (h1, h2) = with_health(&lab);
    let (p1, p2) = (lab.port("pg-bases2"), lab.port("pg-replica"));
    let (rw, ro) = (free_port(), free_port());
    let port_of = |a: &str| a.rsplit(':').next().unwrap().to_string();
    let cfg = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/haproxy.cfg"))
        .unwrap()
        .replace("bind *:5000", &format!("bind 127.0.0.1:{rw}"))
        .replace("bind *:5001", &format!("bind 127.0.0.1:{ro}"))
        .replace(
            "127.0.0.1:5432 check port 8008",
            &format!("127.0.0.1:{p1} check port {}", port_of(&h1)),
        )
        .replace(
            "127.0.0.1:5433 check port 8009",
            &format!("127.0.0.1:{p2} check port {}", port_of(&h2)),
        );
    assert!(
        cfg.contains(&format!("check port {}", port_of(&h2))),
        "{cfg}"
    );
    let cfg_path = lab.dir.path().join("haproxy.cfg");
    std::fs::write(&cfg_path, cfg).unwrap();
    lab.ensure_image();
    lab.pgrunbook(&["lab", "up"]).succeeds();
    lab.pgrunbook(&["run", "setup"]).succeeds();
    lab.client("pg-bases2")
        .batch_execute("CREATE TABLE app_writes (n int PRIMARY KEY)")
        .unwrap();
    let w = Watcher::start(&lab);
    w.wait_for("acting: holds the lease in Redis", 60);

    let ha = format!("{}-haproxy", lab.id);
    made.containers.push(ha.clone());
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &ha,
        "--network",
        "host",
        "-v",
        &format!(
            "{}:/usr/local/etc/haproxy/haproxy.cfg:ro",
            cfg_path.display()
        ),
        "pgrunbook-haproxy:trixie",
    ]);
    let in_recovery = |port: u16| -> Option<bool> {
        within(Duration::from_secs(3), move || {
            let mut c = pg_config(port);
            c.connect_timeout(Duration::from_secs(2));
            c.connect(postgres::NoTls)
                .ok()?
                .query_one("SELECT pg_is_in_recovery()", &[])
                .ok()
                .map(|r| r.get(0))
        })
        .flatten()
    };
    let ha_logs = || {
        let out = std::process::Command::new("docker")
            .args(["logs", &ha])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout)
    };
    let end = Instant::now() + Duration::from_secs(60);
    while in_recovery(rw) != Some(false) {
        assert!(
            Instant::now() < end,
            "HAProxy never routed its primary port to the primary:\n{}\nwatcher:\n{}\nhealth: {:?}",
            ha_logs(),
            w.output(),
            get(&h1, "/primary")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_until(
        "HAProxy to route its replica port to the standby",
        60,
        || in_recovery(ro) == Some(true),
    );

    let stop = Arc::new(AtomicBool::new(false));
    let writer = app_writes(rw, stop.clone());
    std::thread::sleep(Duration::from_millis(1500));
    let killed_at = now_ms();
    docker_ok(&["kill", "-s", "KILL", &lab.container("pg-bases2")]);
    w.wait_for("failover done", 60);
    std::thread::sleep(Duration::from_millis(3000));
    stop.store(true, Ordering::SeqCst);
    let acked = writer.join().unwrap();
    let first = acked
        .iter()
        .find(|(_, t0, _)| *t0 > killed_at)
        .expect("a write accepted after the kill");
    eprintln!(
        "HAPROXY_RESUME_MS={} (kill to the first write accepted through HAProxy)",
        first.2 - killed_at
    );
    assert_eq!(in_recovery(rw), Some(false));
    assert_eq!(
        in_recovery(ro),
        None,
        "no standby: nothing behind the replica port"
    );
    let on_new: std::collections::BTreeSet<i64> = lab
        .client("pg-replica")
        .query("SELECT n FROM app_writes", &[])
        .unwrap()
        .iter()
        .map(|row| i64::from(row.get::<_, i32>(0)))
        .collect();
    let missing: Vec<i64> = acked
        .iter()
        .filter(|(_, t0, _)| *t0 > killed_at)
        .map(|(n, _, _)| *n)
        .filter(|n| !on_new.contains(n))
        .collect();
    assert!(acked.len() > 2);
    assert!(
        missing.is_empty(),
        "acknowledged but not on the new primary: {missing:?}"
    );
}
