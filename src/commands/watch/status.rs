//! What `pgrunbook status` says of watchers: from their heartbeats in Redis (every watcher of
//! this cluster's journal, on any machine), or, when Redis does not answer, from this machine's
//! heartbeat file (the watcher that holds the local lock writes it).

use super::lease;
use crate::runtime::host::Host;
use serde::Serialize;

/// One watcher, as its last heartbeat says.
#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
pub struct Watcher {
    pub id: String,
    pub host: String,
    pub pid: u64,
    pub since: String,
    /// Whether it acts (holds the lease, or the local lock with Redis down).
    pub acting: bool,
    /// Why it acts or waits.
    pub standing: String,
    pub heartbeat_ms_ago: i64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct WatcherStatus {
    /// Live watchers (heartbeat not expired), the acting one first.
    pub watchers: Vec<Watcher>,
    /// `redis`, or `local file` when Redis did not answer.
    pub from: String,
}

fn parse(v: &str, now: i64) -> Option<Watcher> {
    let j: serde_json::Value = serde_json::from_str(v).ok()?;
    if j["expires_ms"].as_i64()? < now {
        return None;
    }
    Some(Watcher {
        id: j["id"].as_str()?.to_string(),
        host: j["host"].as_str().unwrap_or("?").to_string(),
        pid: j["pid"].as_u64().unwrap_or(0),
        since: j["since"].as_str().unwrap_or("?").to_string(),
        acting: j["acting"].as_bool().unwrap_or(false),
        standing: j["standing"].as_str().unwrap_or("").to_string(),
        heartbeat_ms_ago: now - j["ts_ms"].as_i64().unwrap_or(now),
    })
}

/// The live watchers of this cluster's journal.
pub fn collect(host: &Host) -> WatcherStatus {
    let now = chrono::Utc::now().timestamp_millis();
    let (values, from): (Vec<String>, &str) = match host.coord.map_all(lease::WATCHERS) {
        Ok(all) => (all.into_values().collect(), "redis"),
        Err(_) => (
            std::fs::read_to_string(lease::local_path(&host.config, "heartbeat.json"))
                .into_iter()
                .collect(),
            "local file",
        ),
    };
    let mut watchers: Vec<Watcher> = values.iter().filter_map(|v| parse(v, now)).collect();
    watchers.sort_by_key(|w| (!w.acting, w.since.clone()));
    WatcherStatus {
        watchers,
        from: from.into(),
    }
}

impl WatcherStatus {
    /// One line per watcher, or one saying there is none.
    pub fn render(&self) -> String {
        let src = if self.from == "redis" {
            String::new()
        } else {
            format!(" [from the {}: Redis does not answer]", self.from)
        };
        if self.watchers.is_empty() {
            return format!("watcher: none running (pgrunbook watch){src}\n");
        }
        self.watchers
            .iter()
            .map(|w| {
                format!(
                    "watcher: {} on {} pid {} since {} (heartbeat {} ms ago; {}){src}\n",
                    if w.acting { "acting" } else { "waiting" },
                    w.host,
                    w.pid,
                    w.since,
                    w.heartbeat_ms_ago,
                    w.standing
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_heartbeats_are_not_watchers() {
        let v = r#"{"id":"1-2","host":"h","pid":7,"since":"t","ts_ms":1000,"expires_ms":4000,"acting":true,"standing":"holds the lease in Redis"}"#;
        let w = parse(v, 1500).unwrap();
        assert_eq!((w.pid, w.acting, w.heartbeat_ms_ago), (7, true, 500));
        assert!(parse(v, 4001).is_none());
        let st = WatcherStatus {
            watchers: vec![w],
            from: "redis".into(),
        };
        assert!(st
            .render()
            .starts_with("watcher: acting on h pid 7 since t"));
        let none = WatcherStatus {
            watchers: vec![],
            from: "redis".into(),
        };
        assert_eq!(none.render(), "watcher: none running (pgrunbook watch)\n");
    }
}
