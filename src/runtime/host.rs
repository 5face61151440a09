//! The host: what every primitive shares during a run. The configuration, one client per backend,
//! the cancel flag, the dry-run switch, and the run's record (steps, timings, measured values)
//! that goes to the journal.

use crate::cancel::Cancel;
use crate::clients::docker::Docker;
use crate::clients::postgres::Postgres;
use crate::clients::redis::{Journal, JOURNAL};
use crate::config::Config;
use crate::error::{Class, Failure, PrimitiveError};
use crate::outln;
use rhai::{Dynamic, EvalAltResult, Position};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// One finished step.
#[derive(Debug, Clone)]
pub struct StepRecord {
    pub name: String,
    pub ms: u128,
    pub outcome: String,
}

/// The record of the run under way.
#[derive(Debug)]
pub struct RunState {
    pub run_id: String,
    pub runbook: String,
    pub started: Instant,
    pub current: Option<(String, Instant)>,
    pub steps: Vec<StepRecord>,
    /// Changes a dry run would have made, in order.
    pub planned: Vec<String>,
    /// Changes a real run made (announced through `Host::change`), in order: what a refusal
    /// says was changed before it.
    pub made: Vec<String>,
    /// The last statement a dry run did not run (`sql`): what a use of its result stands for.
    pub last_skipped: Option<String>,
    /// What a dry run assumes done that it did not simulate (`plan_assume`): "the switchover to
    /// pg-replica above". Later steps that depend on it say so instead of checking the cluster.
    pub assumed: Vec<String>,
    /// Values a runbook measured (`record("data_lost_bytes", 0)`), journaled at the end.
    pub metrics: BTreeMap<String, String>,
    /// Failed writes to stdout/stderr before the run started (see `crate::output`): more at the
    /// end means some of this run's output was lost, and its end entry says so.
    lost_writes_at_start: u64,
}

impl RunState {
    fn new(runbook: &str) -> RunState {
        RunState {
            run_id: new_run_id(),
            runbook: runbook.to_string(),
            started: Instant::now(),
            current: None,
            steps: vec![],
            planned: vec![],
            made: vec![],
            last_skipped: None,
            assumed: vec![],
            metrics: BTreeMap::new(),
            lost_writes_at_start: crate::output::lost_writes(),
        }
    }
}

fn new_run_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}-{:05}", now.as_millis(), std::process::id() % 100000)
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub struct Host {
    pub config: Config,
    /// The default Docker engine (`DOCKER_HOST`, else the local socket): the lab's, one-off
    /// helpers', and every node's that names no engine of its own. `docker_of(node)` is a node's.
    pub docker: Docker,
    /// One client per other engine the nodes name (`[nodes.X] docker`), keyed by engine.
    engines: BTreeMap<crate::config::Engine, Docker>,
    pub pg: Postgres,
    pub journal: Journal,
    /// What watchers and runs agree on (lease, hold, heartbeats, small maps): `crate::coordination`.
    pub coord: std::sync::Arc<dyn crate::coordination::Coordination>,
    pub cancel: Cancel,
    dry_run: AtomicBool,
    pub run: Mutex<RunState>,
    /// Whether stdout is a terminal (progress bars) or not (plain lines).
    pub tty: bool,
    /// When the run under way must stop (`runbook.timeout_s`); waits check it, so a long
    /// `sleep_ms` or `wait_ready` ends at the limit, not long after it.
    pub deadline: Mutex<Option<Instant>>,
    /// Fields added to every run's start and end entries (`pgrunbook watch`: scheduled, late).
    pub run_marks: Mutex<BTreeMap<String, String>>,
    /// The replication password this run uses, when `load_replication_password` replaced the
    /// configured one (a rotation): `replication_password()` returns it.
    new_replication_password: Mutex<Option<String>>,
    /// The hold this run keeps on `pgrunbook watch` (`hold_watchers()`), released at its end.
    pub hold: Mutex<Option<crate::runtime::hold::Hold>>,
    /// The column orders of recent results (`sql`, `pg_log`), which `print_table` and the REPL
    /// put back on rows that reach them as maps (whose keys are sorted).
    pub column_orders: std::sync::Arc<crate::table::ColumnOrders>,
}

impl Host {
    pub fn new(config: Config) -> Host {
        let default = config.default_engine();
        let engines = config
            .nodes
            .values()
            .map(|n| config.engine(n))
            .filter(|e| *e != default)
            .map(|e| (e.clone(), Docker::for_engine(e)))
            .collect();
        Host {
            docker: Docker::for_engine(default),
            engines,
            pg: Postgres::new(config.clone()),
            journal: Journal::new(config.clone()),
            coord: crate::coordination::open(&config),
            cancel: Cancel::new(),
            dry_run: AtomicBool::new(false),
            run: Mutex::new(RunState::new("repl")),
            tty: std::io::IsTerminal::is_terminal(&std::io::stdout()),
            deadline: Mutex::new(None),
            run_marks: Mutex::new(BTreeMap::new()),
            new_replication_password: Mutex::new(None),
            hold: Mutex::new(None),
            column_orders: Default::default(),
            config,
        }
    }

    /// The client of the Docker engine node `name` runs on (the default engine for a name that
    /// is not a node: one-off helpers, the lab).
    pub fn docker_of(&self, name: &str) -> &Docker {
        match self.config.nodes.get(name) {
            Some(n) => self
                .engines
                .get(&self.config.engine(n))
                .unwrap_or(&self.docker),
            None => &self.docker,
        }
    }

    /// The replication role's password as this run uses it: the configured one, or the new one
    /// `load_replication_password` read (then masked by value like the configured ones).
    pub fn replication_password(&self) -> String {
        self.new_replication_password
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| self.config.cluster.replication_password.clone())
    }

    /// Whether `load_replication_password` replaced the configured replication password.
    pub fn replication_password_replaced(&self) -> bool {
        self.new_replication_password.lock().unwrap().is_some()
    }

    /// From now on this run uses `password` as the replication role's password.
    pub fn use_replication_password(&self, password: &str) {
        crate::secrets::learn(password);
        *self.new_replication_password.lock().unwrap() = Some(password.to_string());
    }

    pub fn dry_run(&self) -> bool {
        self.dry_run.load(Ordering::SeqCst)
    }

    pub fn set_dry_run(&self, on: bool) {
        self.dry_run.store(on, Ordering::SeqCst);
    }

    /// Prints a line to stdout with secrets masked by their shape (`crate::secrets`). A line
    /// that cannot be written (nobody reads stdout any more) is dropped and the run goes on: see
    /// `crate::output`.
    pub fn say(&self, text: &str) {
        outln!("{}", self.mask(text));
    }

    /// Masks secrets in text pgrunbook itself wrote (backend errors): by shape and by the
    /// configured passwords' values.
    pub fn scrub(&self, text: &str) -> String {
        crate::secrets::mask_shapes(&crate::secrets::mask_values(text, &self.config.secrets()))
    }

    /// Masks secrets in text a script or a user wrote (`print`, `debug`, `warn`, REPL values):
    /// by shape only, so that output never confirms a guessed password.
    pub fn mask(&self, text: &str) -> String {
        crate::secrets::mask_shapes(text)
    }

    /// A change a primitive is about to make. In a dry run it is printed and recorded, and the
    /// caller must not make it (returns false).
    pub fn change(&self, node: &str, action: &str) -> bool {
        let line = format!("{action} on {node}");
        if !self.dry_run() {
            self.run.lock().unwrap().made.push(line);
            return true;
        }
        self.say(&format!("    [dry run] would {line}"));
        self.run.lock().unwrap().planned.push(line);
        false
    }

    /// A Rhai error of class `class` whose text is `message` (which names the primitive, by
    /// convention). The class travels with the error, typed: see `PrimitiveError`.
    pub fn error(&self, class: Class, message: impl Into<String>) -> Box<EvalAltResult> {
        self.raise(PrimitiveError::new(class, message))
    }

    /// Converts a backend error into a Rhai error that names the primitive and node (`node`
    /// empty: none), with the class a `Failure` in the chain gives (else Runbook).
    pub fn fail(&self, primitive: &str, node: &str, err: anyhow::Error) -> Box<EvalAltResult> {
        self.raise(PrimitiveError {
            class: crate::error::class_of(&err, Class::Runbook),
            primitive: Some(primitive.to_string()),
            node: (!node.is_empty()).then(|| node.to_string()),
            cause: format!("{err:#}"),
            raised_at: None,
        })
    }

    /// Masks secrets in the error's text and wraps it for Rhai: the value a script catches, and
    /// the one `engine::to_failure` takes the class from.
    fn raise(&self, mut err: PrimitiveError) -> Box<EvalAltResult> {
        err.cause = self.scrub(&err.cause);
        err.node = err.node.map(|n| self.scrub(&n));
        Box::new(EvalAltResult::ErrorRuntime(
            Dynamic::from(err),
            Position::NONE,
        ))
    }

    /// The container of a node, or a clear error naming the known nodes.
    pub fn container(&self, primitive: &str, node: &str) -> Result<String, Box<EvalAltResult>> {
        self.config
            .node(node)
            .map(|n| n.container.clone())
            .map_err(|e| {
                self.raise(PrimitiveError {
                    class: Class::Runbook,
                    primitive: Some(primitive.to_string()),
                    node: None,
                    cause: e.to_string(),
                    raised_at: None,
                })
            })
    }

    /// Checks a node name.
    pub fn check_node(&self, primitive: &str, node: &str) -> Result<(), Box<EvalAltResult>> {
        self.container(primitive, node).map(|_| ())
    }

    /// Fails when Ctrl-C was pressed.
    pub fn check_cancel(&self) -> Result<(), Box<EvalAltResult>> {
        if self.cancel.is_cancelled() {
            let step = self
                .run
                .lock()
                .unwrap()
                .current
                .as_ref()
                .map(|(s, _)| s.clone());
            let msg = match step {
                Some(s) => format!("interrupted during step \"{s}\""),
                None => "interrupted".to_string(),
            };
            return Err(self.error(Class::Interrupted, msg));
        }
        if self
            .deadline
            .lock()
            .unwrap()
            .is_some_and(|d| Instant::now() >= d)
        {
            return Err(self.error(
                Class::Interrupted,
                format!(
                    "stopped after the run's time limit of {} s (runbook.timeout_s)",
                    self.config.runbook.timeout_s
                ),
            ));
        }
        Ok(())
    }

    /// Tells the journal which cluster this process works on, once per process: its
    /// PostgreSQL system identifier, from the first node that answers (primary and standby share
    /// it), or unknown when none does. The journal delivers spooled entries only to the cluster
    /// they were written for (see `src/journal.rs`). Cheap: the connection stays open for the
    /// run's own queries.
    pub fn learn_cluster(&self) {
        if self.journal.cluster_learned() {
            return;
        }
        let id = self
            .config
            .nodes
            .keys()
            .find_map(|n| self.pg.system_identifier(n).ok());
        self.journal.set_cluster(id);
    }

    // ---- the run's record -------------------------------------------------------------------

    /// Starts the record of a run and journals its start.
    pub fn begin_run(&self, runbook: &str, params: &BTreeMap<String, String>) {
        self.learn_cluster();
        let mut st = self.run.lock().unwrap();
        *st = RunState::new(runbook);
        let mut f = BTreeMap::new();
        f.insert("event".into(), "start".into());
        f.insert("run_id".into(), st.run_id.clone());
        f.insert("runbook".into(), runbook.to_string());
        f.insert("ts".into(), now_rfc3339());
        f.insert("dry_run".into(), self.dry_run().to_string());
        f.insert(
            "params".into(),
            serde_json::to_string(params).unwrap_or_default(),
        );
        drop(st);
        f.extend(self.run_marks.lock().unwrap().clone());
        self.journal.append(JOURNAL, f);
    }

    /// Ends the current step (if any) and starts a new one.
    pub fn step(&self, name: &str) -> Result<(), Box<EvalAltResult>> {
        self.check_cancel()?;
        self.close_step("ok");
        // Masked here once: the name is printed, journaled, and shown in errors.
        let name = self.scrub(name);
        let mut st = self.run.lock().unwrap();
        st.current = Some((name.clone(), Instant::now()));
        let n = st.steps.len() + 1;
        drop(st);
        self.say(&format!("==> [{n}] {name}"));
        Ok(())
    }

    /// The step under way.
    pub fn current_step(&self) -> Option<String> {
        self.run
            .lock()
            .unwrap()
            .current
            .as_ref()
            .map(|(s, _)| s.clone())
    }

    fn close_step(&self, outcome: &str) {
        let mut st = self.run.lock().unwrap();
        if let Some((name, t)) = st.current.take() {
            let rec = StepRecord {
                name: name.clone(),
                ms: t.elapsed().as_millis(),
                outcome: outcome.to_string(),
            };
            let mut f = BTreeMap::new();
            f.insert("event".into(), "step".into());
            f.insert("run_id".into(), st.run_id.clone());
            f.insert("runbook".into(), st.runbook.clone());
            f.insert("step".into(), name);
            f.insert("outcome".into(), outcome.to_string());
            f.insert("duration_ms".into(), rec.ms.to_string());
            f.insert("ts".into(), now_rfc3339());
            f.insert("dry_run".into(), self.dry_run().to_string());
            st.steps.push(rec);
            drop(st);
            self.journal.append(JOURNAL, f);
        }
    }

    /// Records a measured value for the end-of-run journal entry.
    pub fn record(&self, key: &str, value: String) {
        self.run
            .lock()
            .unwrap()
            .metrics
            .insert(key.to_string(), value);
    }

    /// Ends the run: closes the last step with the outcome and journals the end.
    pub fn end_run(&self, failure: Option<&Failure>) -> u128 {
        let outcome = match failure {
            None => "ok".to_string(),
            Some(f) if f.class == Class::Interrupted => "interrupted".into(),
            Some(_) => "failed".into(),
        };
        self.close_step(&outcome);
        // Watchers may act again: the operation that held them off is over.
        drop(self.hold.lock().unwrap().take());
        let st = self.run.lock().unwrap();
        let ms = st.started.elapsed().as_millis();
        let mut f = BTreeMap::new();
        f.insert("event".into(), "end".into());
        f.insert("run_id".into(), st.run_id.clone());
        f.insert("runbook".into(), st.runbook.clone());
        f.insert("outcome".into(), outcome);
        f.insert(
            "exit_code".into(),
            failure
                .map(|f| f.class.exit_code())
                .unwrap_or(0)
                .to_string(),
        );
        f.insert("duration_ms".into(), ms.to_string());
        f.insert("steps".into(), st.steps.len().to_string());
        f.insert("ts".into(), now_rfc3339());
        f.insert("dry_run".into(), self.dry_run().to_string());
        if let Some(fl) = failure {
            f.insert("error".into(), fl.one_line());
        }
        // The journal is the record of a run whose output nobody could read (`| head`, a quit
        // pager): it says so, so a short log is not mistaken for a short run.
        if crate::output::lost_writes() > st.lost_writes_at_start {
            f.insert("output_lost".into(), "true".into());
        }
        if !st.metrics.is_empty() {
            f.insert(
                "metrics".into(),
                serde_json::to_string(&st.metrics).unwrap_or_default(),
            );
        }
        if !st.planned.is_empty() {
            f.insert(
                "planned".into(),
                serde_json::to_string(&st.planned).unwrap_or_default(),
            );
        }
        drop(st);
        f.extend(self.run_marks.lock().unwrap().clone());
        self.journal.append(JOURNAL, f);
        ms
    }
}
