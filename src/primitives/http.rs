//! HTTP primitives: `http_post`, so that a hook (`[hooks] on_role_change`) can call a webhook.
//!
//! The client is ureq (blocking, rustls), with one time limit for the whole request: a webhook
//! that does not answer costs at most that long, and its timeout is an error of class
//! `unreachable` (exit 5), recorded in the run's journal entry (`http_post_error`).

use super::def;
use crate::error::Class;
use crate::runtime::host::Host;
use rhai::{Dynamic, Map, Module};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The time limit of `http_post(url, body)` without one.
pub const DEFAULT_TIMEOUT_MS: i64 = 5000;

/// What a POST gave: the status and the body's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// Why a POST failed, typed: no answer in time, no connection, or an error status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostError {
    Timeout(u64),
    Transport(String),
    Status(Answer),
}

impl std::fmt::Display for PostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PostError::Timeout(ms) => write!(f, "no answer within its time limit of {ms} ms"),
            PostError::Transport(e) => f.write_str(e),
            PostError::Status(a) => {
                let body: String = a.body.chars().take(200).collect();
                write!(f, "answered HTTP {}: {}", a.status, body.trim())
            }
        }
    }
}

/// POSTs `body` to `url` with `content_type`, within `timeout`. Status 400 and above is an error.
pub fn post(
    url: &str,
    body: &str,
    content_type: &str,
    timeout: Duration,
) -> Result<Answer, PostError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let started = Instant::now();
    let r = agent
        .post(url)
        .header("Content-Type", content_type)
        .header(
            "User-Agent",
            concat!("pgrunbook/", env!("CARGO_PKG_VERSION")),
        )
        .send(body);
    let mut resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Timeout(_)) => return Err(PostError::Timeout(timeout.as_millis() as u64)),
        Err(ureq::Error::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) || started.elapsed() >= timeout =>
        {
            return Err(PostError::Timeout(timeout.as_millis() as u64))
        }
        Err(e) => return Err(PostError::Transport(e.to_string())),
    };
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .unwrap_or_default();
    let answer = Answer { status, body: text };
    if status >= 400 {
        return Err(PostError::Status(answer));
    }
    Ok(answer)
}

pub fn create_module(host: Arc<Host>) -> Module {
    let mut m = Module::new();

    let h = host.clone();
    def!(
        &mut m,
        "http_post",
        ["url: &str", "body: Dynamic", "Map"],
        "POSTs `body` to `url` (a map is sent as JSON, anything else as text) within 5000 ms;
        returns #{status, body}. No answer in time, no connection or a status of 400 and above
        is an error (class unreachable), recorded in the run's journal entry as
        `http_post_error`. For webhooks: see runbooks/examples/notify.rhai.",
        move |url: &str, body: Dynamic| post_from_script(&h, url, body, DEFAULT_TIMEOUT_MS)
    );

    let h = host;
    def!(
        &mut m,
        "http_post",
        ["url: &str", "body: Dynamic", "timeout_ms: i64", "Map"],
        "`http_post(url, body)` with a time limit of `timeout_ms` for the whole request.",
        move |url: &str, body: Dynamic, timeout_ms: i64| post_from_script(
            &h, url, body, timeout_ms
        )
    );

    m
}

fn post_from_script(
    h: &Host,
    url: &str,
    body: Dynamic,
    timeout_ms: i64,
) -> Result<Map, Box<rhai::EvalAltResult>> {
    h.check_cancel()?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(h.error(
            Class::Runbook,
            format!("http_post: {url:?} is not an http:// or https:// URL"),
        ));
    }
    if timeout_ms <= 0 {
        return Err(h.error(
            Class::Runbook,
            format!("http_post: timeout_ms must be positive, not {timeout_ms}"),
        ));
    }
    let (text, content_type) = if body.is_map() {
        let json = serde_json::to_string(&body).map_err(|e| {
            h.error(
                Class::Runbook,
                format!("http_post: the body cannot be written as JSON: {e}"),
            )
        })?;
        (json, "application/json")
    } else {
        (body.to_string(), "text/plain; charset=utf-8")
    };
    if !h.change(url, "POST") {
        // Not an answer a script could mistake for the webhook's: using it stops the dry run.
        let skipped = || {
            Dynamic::from(crate::error::NotSimulated {
                what: format!("http_post to {url}, which the dry run did not send"),
            })
        };
        let mut m = Map::new();
        m.insert("status".into(), skipped());
        m.insert("body".into(), skipped());
        return Ok(m);
    }
    match post(
        url,
        &text,
        content_type,
        Duration::from_millis(timeout_ms as u64),
    ) {
        Ok(a) => {
            let mut m = Map::new();
            m.insert("status".into(), Dynamic::from_int(a.status as i64));
            m.insert("body".into(), a.body.into());
            Ok(m)
        }
        Err(e) => {
            let msg = format!("http_post to {url}: {e}");
            h.record("http_post_error", h.scrub(&msg));
            Err(h.error(Class::Infrastructure, msg))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A one-connection HTTP server on 127.0.0.1 that answers `status` after `delay`, and
    /// returns what it was sent.
    fn server(status: u16, delay: Duration) -> (String, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut got = vec![];
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).unwrap_or(0);
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some(i) = text.find("\r\n\r\n") {
                    let len = text[..i]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if got.len() >= i + 4 + len || n == 0 {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            std::thread::sleep(delay);
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
            String::from_utf8_lossy(&got).to_string()
        });
        (url, t)
    }

    fn host() -> Arc<Host> {
        Arc::new(Host::new(crate::config::Config::defaults()))
    }

    #[test]
    fn a_map_is_posted_as_json_and_the_answer_returned() {
        let (url, t) = server(200, Duration::ZERO);
        let h = host();
        let engine = crate::engine::build(&h, &Default::default());
        let m: Map = engine
            .eval(&format!(
                r#"http_post("{url}", #{{node: "pg-replica", new_role: "primary"}})"#
            ))
            .unwrap();
        assert_eq!(m["status"].as_int().unwrap(), 200);
        assert_eq!(m["body"].to_string(), "ok");
        let sent = t.join().unwrap();
        assert!(sent.starts_with("POST /hook HTTP/1.1"), "{sent}");
        assert!(
            sent.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{sent}"
        );
        assert!(
            sent.ends_with(r#"{"new_role":"primary","node":"pg-replica"}"#),
            "{sent}"
        );
    }

    #[test]
    fn an_error_status_and_a_silent_server_are_typed_errors_and_recorded() {
        let (url, t) = server(500, Duration::ZERO);
        let h = host();
        let engine = crate::engine::build(&h, &Default::default());
        let err = engine
            .eval::<Map>(&format!(r#"http_post("{url}", "x")"#))
            .unwrap_err();
        let f = crate::engine::to_failure(&engine, &err, "t", &h, &Default::default());
        assert_eq!(f.class, Class::Infrastructure);
        assert!(f.message.contains("answered HTTP 500"), "{}", f.message);
        t.join().unwrap();

        // A server that accepts and never answers: the time limit, then the error.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        let started = Instant::now();
        let err = engine
            .eval::<Map>(&format!(r#"http_post("{url}", "x", 300)"#))
            .unwrap_err();
        let took = started.elapsed();
        let f = crate::engine::to_failure(&engine, &err, "t", &h, &Default::default());
        assert_eq!(f.class, Class::Infrastructure);
        assert!(f.message.contains("time limit of 300 ms"), "{}", f.message);
        assert!(took < Duration::from_secs(3), "{took:?}");
        let rec = h
            .run
            .lock()
            .unwrap()
            .metrics
            .get("http_post_error")
            .cloned();
        assert!(rec.unwrap().contains("time limit of 300 ms"));
        drop(l);
    }
}
