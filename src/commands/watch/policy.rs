//! The watcher's policy, in Rhai (`stdlib/watch.rhai` by default, `[watch] policy` to change it):
//! `settings()` and `decide(obs, s)`. This file only loads it, merges `[watch] settings` over
//! its settings, and calls it.

use crate::engine::{self, runbook, Sources};
use crate::error::{Class, Failure};
use crate::runtime::host::Host;
use rhai::{CallFnOptions, Dynamic, Engine, Map, Scope, AST};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct Policy {
    engine: Engine,
    ast: AST,
    host: Arc<Host>,
    sources: Sources,
    /// Where the policy was read from, for messages.
    pub name: String,
    /// `settings()` with `[watch] settings` on top.
    pub settings: Map,
}

/// What `decide` returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: String,
    pub reason: String,
}

pub const ACTIONS: [&str; 6] = [
    "none",
    "warn",
    "failover",
    "stop_then_failover",
    "rejoin",
    "forget",
];

/// A value of `[watch] settings` as the policy's default has it: a string for an integer
/// setting may carry a size (`"8MB"`), and the environment gives every value as a string.
fn setting_value(default: Option<&Dynamic>, v: &toml::Value) -> Result<Dynamic, String> {
    let int_default = default.is_some_and(|d| d.is_int());
    let bool_default = default.is_some_and(|d| d.is_bool());
    Ok(match v {
        toml::Value::Integer(i) => Dynamic::from_int(*i),
        toml::Value::Boolean(b) => Dynamic::from_bool(*b),
        toml::Value::Float(f) => Dynamic::from_float(*f),
        toml::Value::String(s) if int_default => Dynamic::from_int(
            runbook::parse_size(s)
                .ok_or_else(|| format!("takes a number (or a size like 8MB), not {s:?}"))?,
        ),
        toml::Value::String(s) if bool_default => Dynamic::from_bool(
            s.parse()
                .map_err(|_| format!("takes true or false, not {s:?}"))?,
        ),
        toml::Value::String(s) => s.clone().into(),
        other => return Err(format!("takes a number, true/false or text, not {other}")),
    })
}

impl Policy {
    /// Loads and checks the policy: it compiles, `settings()` gives a map, every
    /// `[watch] settings` key is one of its settings.
    pub fn load(host: &Arc<Host>) -> Result<Policy, Failure> {
        let wanted = &host.config.watch.policy;
        let (name, text) = runbook::find_import(wanted).ok_or_else(|| {
            Failure::usage(format!(
                "watch policy {wanted:?} not found (a stdlib module name, found in ./stdlib or shipped, or a path to a .rhai file)"
            ))
        })?;
        let sources: Sources = Arc::new(Mutex::new(HashMap::new()));
        sources.lock().unwrap().insert(name.clone(), text.clone());
        let engine = engine::build(host, &sources);
        let ast = engine::compile(&engine, &name, &text)?;
        let mut p = Policy {
            engine,
            ast,
            host: host.clone(),
            sources,
            name,
            settings: Map::new(),
        };
        let defaults = p.call("settings", ())?;
        let mut settings = defaults.try_cast::<Map>().ok_or_else(|| {
            Failure::new(
                Class::Runbook,
                format!("{}: settings() must return a map", p.name),
            )
        })?;
        for (k, v) in &host.config.watch.settings {
            let Some(default) = settings.get(k.as_str()) else {
                let known: Vec<String> = settings.keys().map(|k| k.to_string()).collect();
                return Err(Failure::usage(format!(
                    "[watch] settings: {k} is not a setting of the policy {} (its settings are {})",
                    p.name,
                    known.join(", ")
                )));
            };
            let v = setting_value(Some(default), v)
                .map_err(|e| Failure::usage(format!("[watch] settings: {k} {e}")))?;
            settings.insert(k.as_str().into(), v);
        }
        p.settings = settings;
        Ok(p)
    }

    fn call(&self, f: &str, args: impl rhai::FuncArgs) -> Result<Dynamic, Failure> {
        let mut scope = Scope::new();
        let opts = CallFnOptions::new().eval_ast(false).rewind_scope(true);
        self.engine
            .call_fn_with_options::<Dynamic>(opts, &mut scope, &self.ast, f, args)
            .map_err(|e| {
                engine::to_failure(&self.engine, &e, &self.name, &self.host, &self.sources)
            })
    }

    /// An integer setting (0 when missing or not an integer).
    pub fn int(&self, k: &str) -> i64 {
        self.settings
            .get(k)
            .and_then(|v| v.as_int().ok())
            .unwrap_or(0)
    }

    /// A true/false setting (false when missing).
    pub fn flag(&self, k: &str) -> bool {
        self.settings
            .get(k)
            .and_then(|v| v.as_bool().ok())
            .unwrap_or(false)
    }

    /// Calls `decide(obs, settings)`.
    pub fn decide(&self, obs: Map) -> Result<Decision, Failure> {
        let r = self.call("decide", (obs, self.settings.clone()))?;
        let m = r.try_cast::<Map>().ok_or_else(|| {
            Failure::new(
                Class::Runbook,
                format!("{}: decide() must return #{{ action, reason }}", self.name),
            )
        })?;
        let text = |k: &str| {
            m.get(k)
                .filter(|v| !v.is_unit())
                .map(|v| v.to_string())
                .unwrap_or_default()
        };
        let d = Decision {
            action: text("action"),
            reason: text("reason"),
        };
        if !ACTIONS.contains(&d.action.as_str()) {
            return Err(Failure::new(
                Class::Runbook,
                format!(
                    "{}: decide() returned action {:?}; it must be one of {}",
                    self.name,
                    d.action,
                    ACTIONS.join(", ")
                ),
            ));
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn node(container: &str, answers: bool, rec: bool) -> Dynamic {
        let mut m = Map::new();
        m.insert("container".into(), container.into());
        m.insert("answers".into(), answers.into());
        m.insert("in_recovery".into(), rec.into());
        m.insert("fenced".into(), false.into());
        m.insert("unanswered_ms".into(), Dynamic::from_int(0));
        m.insert("streamed_ms_ago".into(), Dynamic::from_int(100));
        m.insert("lag_bytes".into(), Dynamic::from_int(0));
        m.into()
    }

    fn obs(p: Dynamic, s: Dynamic) -> Map {
        let mut nodes = Map::new();
        nodes.insert("a".into(), p);
        nodes.insert("b".into(), s);
        let mut o = Map::new();
        o.insert("primary".into(), "a".into());
        o.insert("standby".into(), "b".into());
        o.insert("nodes".into(), nodes.into());
        o.insert("events".into(), rhai::Array::new().into());
        o
    }

    fn set(n: &mut Dynamic, k: &str, v: Dynamic) {
        n.write_lock::<Map>().unwrap().insert(k.into(), v);
    }

    #[test]
    fn the_shipped_policy_decides_as_documented() {
        let mut config = Config::defaults();
        config
            .watch
            .settings
            .insert("grace_ms".into(), toml::Value::String("3000".into()));
        let host = Arc::new(Host::new(config));
        let p = Policy::load(&host).unwrap();
        assert_eq!(p.int("grace_ms"), 3000, "[watch] settings override");
        assert_eq!(p.int("max_lag"), 16 << 20);
        assert!(!p.flag("auto_rejoin"), "auto_rejoin is off by default");

        let ok = || node("running", true, false);
        let sb = || node("running", true, true);
        let d = |o: Map| p.decide(o).unwrap();
        assert_eq!(d(obs(ok(), sb())).action, "none");

        // The engine says the primary's container is not running: fail over at once.
        let r = d(obs(node("exited", false, false), sb()));
        assert_eq!(r.action, "failover");
        assert!(r.reason.contains("exited"), "{r:?}");

        // Running (or paused, or restarting) but silent: a warning within the grace, then stop
        // and fail over.
        let mut silent = node("paused", false, false);
        set(&mut silent, "unanswered_ms", Dynamic::from_int(2999));
        let r = d(obs(silent.clone(), sb()));
        assert_eq!(r.action, "warn");
        assert!(r.reason.contains("primary a does not answer"), "{r:?}");
        set(&mut silent, "unanswered_ms", Dynamic::from_int(3000));
        assert_eq!(d(obs(silent, sb())).action, "stop_then_failover");

        // The standby down: a warning, no failover, primary out or not.
        let down = node("exited", false, false);
        let r = d(obs(ok(), down.clone()));
        assert_eq!(r.action, "warn");
        assert!(r.reason.contains("standby b"), "{r:?}");
        let r = d(obs(node("exited", false, false), down));
        assert_eq!(r.action, "warn");
        assert!(r.reason.contains("no failover"), "{r:?}");

        // Too far behind, or not streaming lately: no failover.
        let mut behind = sb();
        set(&mut behind, "lag_bytes", Dynamic::from_int(17 << 20));
        assert_eq!(d(obs(node("exited", false, false), behind)).action, "warn");
        let mut stale = sb();
        set(&mut stale, "streamed_ms_ago", Dynamic::from_int(60_000));
        assert_eq!(d(obs(node("exited", false, false), stale)).action, "warn");

        // A failover a killed watcher did not finish.
        let with = |mut o: Map| {
            let mut i = Map::new();
            for (k, v) in [
                ("watcher", "w1"),
                ("since", "t"),
                ("trigger", "primary a is out"),
                ("primary", "a"),
                ("standby", "b"),
                ("after_step", "Fence the old primary a"),
            ] {
                i.insert(k.into(), v.into());
            }
            o.insert("interrupted".into(), i.into());
            o.insert("primary".into(), Dynamic::UNIT);
            o.insert("standby".into(), Dynamic::UNIT);
            o
        };
        // No node accepts writes (fenced, not yet promoted): finish it.
        let r = d(with(obs(node("exited", false, false), sb())));
        assert_eq!(r.action, "failover", "{r:?}");
        assert!(r.reason.contains("Fence the old primary"), "{r:?}");
        // Promoted, the old one down: finish the last steps.
        let r = d(with(obs(node("exited", false, false), ok())));
        assert_eq!(r.action, "failover", "{r:?}");
        // The old primary still writable (never fenced), or a healthy pair again: forget it.
        assert_eq!(d(with(obs(ok(), sb()))).action, "forget");
        assert_eq!(d(with(obs(sb(), ok()))).action, "forget");
    }

    #[test]
    fn unknown_or_wrong_settings_are_refused() {
        let mut config = Config::defaults();
        config
            .watch
            .settings
            .insert("grace".into(), toml::Value::Integer(1));
        let e = Policy::load(&Arc::new(Host::new(config))).err().unwrap();
        assert!(e.message.contains("grace_ms"), "{}", e.message);

        let mut config = Config::defaults();
        config
            .watch
            .settings
            .insert("max_lag".into(), toml::Value::String("lots".into()));
        let e = Policy::load(&Arc::new(Host::new(config))).err().unwrap();
        assert!(e.message.contains("max_lag"), "{}", e.message);
        assert_eq!(
            setting_value(
                Some(&Dynamic::from_int(0)),
                &toml::Value::String("8MB".into())
            )
            .unwrap()
            .as_int()
            .unwrap(),
            8 << 20
        );
    }
}
