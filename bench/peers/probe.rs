//! The independent write probe of `bench/peers` (built as the example `peers-probe`).
//!
//! `peers-probe write OUT LABEL=HOST:PORT...` writes one row every 50 ms to whichever target
//! accepts it and appends one line per attempt to OUT, flushed at once (the probe is ended with
//! SIGTERM, and every line written before is kept):
//!
//! ```text
//! ack <id> <epoch_ms> <label>          the commit was acknowledged by <label>
//! err <id> <epoch_ms> <label|-> <why>  no target acknowledged the write of this tick
//! ```
//!
//! It keeps one connection per target and tries the one that took the last write first, so a
//! tick costs one round trip while nothing fails. A standby answers "read-only transaction" at
//! once; a killed container's published port refuses or resets the connection; connects give up
//! after 1 s and a write after 2 s (`tcp_user_timeout`), so a tick cannot hang on a dead node.
//!
//! `peers-probe lost OUT HOST:PORT` prints how many acknowledged ids the table on HOST:PORT does
//! not hold (and the first few), the measure of acknowledged commits lost.
//!
//! The table is `bench_probe(id bigint primary key, at timestamptz)`, made by the driver.

use postgres::{Client, Config, NoTls};
use std::collections::BTreeSet;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

fn config(target: &str) -> Config {
    let (host, port) = target.rsplit_once(':').expect("HOST:PORT");
    let mut c = Config::new();
    c.host(host)
        .port(port.parse().expect("a port number"))
        .user(&std::env::var("PGUSER").unwrap_or_else(|_| "postgres".into()))
        .password(std::env::var("PGPASSWORD").unwrap_or_else(|_| "bench".into()))
        .dbname(&std::env::var("PGDATABASE").unwrap_or_else(|_| "bench".into()))
        .connect_timeout(Duration::from_secs(1))
        .tcp_user_timeout(Duration::from_secs(2))
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(1))
        .application_name("peers-probe");
    c
}

struct Target {
    label: String,
    config: Config,
    client: Option<Client>,
}

impl Target {
    fn write(&mut self, id: i64) -> Result<(), String> {
        if self.client.is_none() {
            self.client = Some(self.config.connect(NoTls).map_err(|e| e.to_string())?);
        }
        let c = self.client.as_mut().unwrap();
        match c.execute(
            "INSERT INTO bench_probe (id, at) VALUES ($1, now())",
            &[&id],
        ) {
            Ok(_) => Ok(()),
            Err(e) => {
                // A standby's refusal leaves the session usable; anything else drops it.
                let read_only = e.code().is_some_and(|c| c.code() == "25006");
                if !read_only || c.is_closed() {
                    self.client = None;
                }
                let text = match e.as_db_error() {
                    Some(db) => format!("{}: {}", db.code().code(), db.message()),
                    None => e.to_string(),
                };
                Err(text.replace('\n', " "))
            }
        }
    }
}

fn write(out: &str, targets: &[String]) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .expect("the probe's output file");
    let mut targets: Vec<Target> = targets
        .iter()
        .map(|t| {
            let (label, addr) = t.split_once('=').expect("LABEL=HOST:PORT");
            Target {
                label: label.to_string(),
                config: config(addr),
                client: None,
            }
        })
        .collect();
    let tick = Duration::from_millis(50);
    let mut next = Instant::now();
    let mut first = 0usize;
    // Ids are unique across probe runs on one table (a round's failover and switchover share
    // it): the start time in milliseconds, times a thousand, plus a counter.
    let mut id: i64 = now_ms() as i64 * 1000;
    loop {
        id += 1;
        let mut line = None;
        let mut why = String::new();
        for k in 0..targets.len() {
            let i = (first + k) % targets.len();
            match targets[i].write(id) {
                Ok(()) => {
                    first = i;
                    line = Some(format!("ack {id} {} {}\n", now_ms(), targets[i].label));
                    break;
                }
                Err(e) => {
                    why = format!("{}: {e}", targets[i].label);
                }
            }
        }
        let line = line.unwrap_or_else(|| format!("err {id} {} - {why}\n", now_ms()));
        let _ = file.write_all(line.as_bytes());
        next += tick;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

fn lost(out: &str, target: &str) {
    let acked: BTreeSet<i64> = std::fs::read_to_string(out)
        .expect("the probe's output file")
        .lines()
        .filter(|l| l.starts_with("ack "))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect();
    let mut c = config(target).connect(NoTls).unwrap_or_else(|e| {
        eprintln!("peers-probe lost: cannot connect to {target}: {e}");
        std::process::exit(2)
    });
    let present: BTreeSet<i64> = c
        .query("SELECT id FROM bench_probe", &[])
        .unwrap_or_else(|e| {
            eprintln!("peers-probe lost: cannot read bench_probe on {target}: {e}");
            std::process::exit(2)
        })
        .iter()
        .map(|r| r.get(0))
        .collect();
    let missing: Vec<i64> = acked.difference(&present).copied().collect();
    println!(
        "{} {} {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("write") if args.len() >= 3 => write(&args[1], &args[2..]),
        Some("lost") if args.len() == 3 => lost(&args[1], &args[2]),
        _ => {
            eprintln!(
                "usage: peers-probe write OUT LABEL=HOST:PORT... | peers-probe lost OUT HOST:PORT"
            );
            std::process::exit(2)
        }
    }
}
