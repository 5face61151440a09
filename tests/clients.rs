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
        wait_until(&format!("the watcher to say {text:?}"), secs, || {
            self.output().contains(text)
        });
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
/// `[clients]` the alias forms too.
#[test]
fn status_prints_the_client_uri() {
    let lab = TestLab::new("cliu");
    let (p1, p2) = (lab.port("pg-bases2"), lab.port("pg-replica"));
    let want = format!(
        "postgresql://postgres@127.0.0.1:{p1},127.0.0.1:{p2}/bases2_proyectos?target_session_attrs=read-write"
    );
    lab.pgrunbook(&["status"])
        .succeeds()
        .stdout_has(&format!("clients: {want}"))
        .stdout_lacks("pg-primary");
    let r = lab.pgrunbook(&["status", "--json"]).succeeds();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["client_uri"], want.as_str());
    assert!(!r.stdout.contains(PASSWORD));

    let mut cfg = std::fs::read_to_string(&lab.config_path).unwrap();
    cfg.push_str("\n[clients]\nnetwork = \"app-net\"\nprimary_alias = \"db-rw\"\n");
    std::fs::write(&lab.config_path, cfg).unwrap();
    let r = lab.pgrunbook(&["status", "--json"]).succeeds();
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
