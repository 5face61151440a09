//! The Docker backend: every call pgrunbook makes to the Docker Engine, through bollard. The
//! primitives and the `lab` commands see plain sync functions (inspect, start, stop, exec, run a
//! one-off container, ensure a network or volume, build or import an image); nothing above this
//! file knows bollard.
//!
//! Why it is shaped this way:
//!
//! - bollard is async; pgrunbook's primitives are sync (Rhai calls them one at a time). This file
//!   owns a small current-thread Tokio runtime and blocks on it (`Docker::block_on`). The sync
//!   `postgres` client runs its own runtime, so nothing here may call PostgreSQL while inside
//!   `block_on`: every function below returns before any SQL runs.
//! - Runbooks are idempotent, so many Docker answers that are errors to bollard are results here:
//!   404 on inspect means "missing", 404 on remove means "already gone", 304 on start or stop
//!   means "already so", 409 on kill means "not running". Each operation names the one answer it
//!   accepts (`ok_if_not_found`, `ok_if_not_modified`, `ok_if_conflict` from `Expected`) and
//!   names itself in the context of every other error ("cannot stop container 'x'"). Such errors
//!   carry no class of their own (the caller's default applies); only "unreachable" and
//!   "container missing / not running" are `Failure`s of class `Infrastructure`.
//! - A long operation (exec, a one-off container) watches the cancel flag (`crate::cancel`) while
//!   it streams output, so Ctrl-C or a timeout stops the wait.
//! - The engine here may be older than bollard's default API version (Debian's 20.10 speaks
//!   1.41), so the client negotiates the version on first use.

mod app_network;

use crate::cancel::Cancel;
use crate::config::Engine;
use crate::error::{Class, Failure};
use anyhow::{anyhow, bail, Context, Result};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, HostConfig, Mount, MountType,
    NetworkCreateRequest, NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
    VolumeCreateRequest,
};
use bollard::query_parameters as qp;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

/// Output of a command run in a container.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// What Docker says of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Missing,
    /// `running`, `exited`, `created`, `paused`, `restarting`, `dead`...
    Present(String),
}

impl State {
    pub fn as_str(&self) -> &str {
        match self {
            State::Missing => "missing",
            State::Present(s) => s,
        }
    }
    pub fn is_running(&self) -> bool {
        matches!(self, State::Present(s) if s == "running")
    }
}

/// A container to create (the lab, one-off helpers).
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub user: Option<String>,
    /// (volume name, path in the container)
    pub volumes: Vec<(String, String)>,
    /// Volumes mounted read-only: (volume name, path in the container).
    pub volumes_ro: Vec<(String, String)>,
    /// Bind mounts as `source:destination[:mode]`.
    pub binds: Vec<String>,
    /// The network to join; `"none"`: no network at all (loopback only).
    pub network: Option<String>,
    pub aliases: Vec<String>,
    /// (container port like "5432/tcp", host port); published on `publish_ip`.
    pub ports: Vec<(String, u16)>,
    /// The host address ports are published on; `None`: 127.0.0.1 (the multi-host lab
    /// publishes on each simulated host's own address).
    pub publish_ip: Option<String>,
    pub labels: HashMap<String, String>,
    pub restart_unless_stopped: bool,
}

/// Collects a container's output stream: stdout whole, stderr whole and line by line to
/// `on_line` (progress). Stops with an error when `cancel` is set.
async fn collect_output(
    mut stream: impl futures_util::Stream<
            Item = std::result::Result<bollard::container::LogOutput, bollard::errors::Error>,
        > + Unpin,
    cancel: &Cancel,
    what: &str,
    on_line: &mut dyn FnMut(&str),
) -> Result<ExecOutput> {
    let mut out = ExecOutput::default();
    let mut partial = String::new();
    loop {
        let next = tokio::select! {
            n = stream.next() => n,
            _ = cancel.wait_async() => bail!("cancelled while {what}"),
        };
        match next {
            None => return Ok(out),
            Some(Ok(bollard::container::LogOutput::StdOut { message })) => {
                out.stdout.push_str(&String::from_utf8_lossy(&message))
            }
            Some(Ok(bollard::container::LogOutput::StdErr { message })) => {
                let s = String::from_utf8_lossy(&message);
                out.stderr.push_str(&s);
                partial.push_str(&s);
                while let Some(i) = partial.find(['\n', '\r']) {
                    let line: String = partial.drain(..=i).collect();
                    let line = line.trim_end();
                    if !line.is_empty() {
                        on_line(line);
                    }
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(anyhow!(e).context(format!("output while {what}"))),
        }
    }
}

pub struct Docker {
    rt: tokio::runtime::Runtime,
    /// The engine this client speaks to (a node's `docker`, or Docker's environment).
    engine: Engine,
    client: OnceLock<std::result::Result<bollard::Docker, String>>,
}

/// The Engine API answers that some operations expect and take as done, by name, so that each
/// operation says which answer it accepts: `inspect(..).ok_if_not_found()` reads "missing is an
/// answer", `stop(..).ok_if_not_modified()` reads "already stopped is fine".
///
/// Each turns the expected answer into `Ok(None)` (the call returned its value: `Ok(Some(v))`)
/// and leaves every other error as it is, for `with_context` to name the operation. The error
/// stays a bollard error under that context, as before this helper: no `Failure` is added, so
/// `class_of` gives such errors the caller's default class.
trait Expected<T> {
    /// 404: no such container, image, network or volume.
    fn ok_if_not_found(self) -> Result<Option<T>, bollard::errors::Error>;
    /// 304: already in the state asked for (start a running container, stop a stopped one).
    fn ok_if_not_modified(self) -> Result<Option<T>, bollard::errors::Error>;
    /// 409: the object's state forbids the call (kill a container that is not running).
    fn ok_if_conflict(self) -> Result<Option<T>, bollard::errors::Error>;
}

impl<T> Expected<T> for Result<T, bollard::errors::Error> {
    fn ok_if_not_found(self) -> Result<Option<T>, bollard::errors::Error> {
        ok_if_status(self, 404)
    }
    fn ok_if_not_modified(self) -> Result<Option<T>, bollard::errors::Error> {
        ok_if_status(self, 304)
    }
    fn ok_if_conflict(self) -> Result<Option<T>, bollard::errors::Error> {
        ok_if_status(self, 409)
    }
}

fn ok_if_status<T>(
    r: Result<T, bollard::errors::Error>,
    expected: u16,
) -> Result<Option<T>, bollard::errors::Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(bollard::errors::Error::DockerResponseServerError { status_code, .. })
            if status_code == expected =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// A bollard client for `engine`: a unix socket, plain TCP, or TLS with the engine's CA and
/// this client's certificate.
fn connect(engine: &Engine) -> Result<bollard::Docker> {
    let v = bollard::API_DEFAULT_VERSION;
    if let Some(path) = engine.url.strip_prefix("unix://") {
        return Ok(bollard::Docker::connect_with_socket(path, 600, v)?);
    }
    match &engine.tls {
        Some((ca, cert, key)) => {
            for (what, f) in [("CA", ca), ("certificate", cert), ("key", key)] {
                if !f.is_file() {
                    bail!("the TLS {what} file {} does not exist", f.display());
                }
            }
            Ok(bollard::Docker::connect_with_ssl(
                &engine.url,
                key,
                cert,
                ca,
                600,
                v,
            )?)
        }
        None => Ok(bollard::Docker::connect_with_http(&engine.url, 600, v)?),
    }
}

/// How often a long Docker call checks that a TCP engine still answers (`Docker::engine_lost`).
const WATCHDOG: Duration = Duration::from_secs(5);

/// A connection error in words a user can act on: TLS failures say which side refused what.
fn explain(e: &bollard::errors::Error) -> String {
    let mut text = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        text = format!("{text}: {s}");
        src = s.source();
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("unknownissuer")
        || lower.contains("unknown issuer")
        || lower.contains("badsignature")
    {
        format!(
            "{text} (the engine's TLS certificate is not signed by the configured CA: check \
             tls.ca)"
        )
    } else if lower.contains("invalidcontenttype")
        || lower.contains("corrupt message")
        || lower.contains("invalid http version")
        || lower.contains("wrong version")
    {
        format!(
            "{text} (the engine does not speak TLS on this port: remove tls, or name its TLS \
             port)"
        )
    } else if lower.contains("http request to an https server")
        || lower.contains("connection closed before message completed")
        || lower.contains("peer closed")
        || lower.contains("incomplete message")
    {
        format!(
            "{text} (the engine closed the connection: an engine with TLS refuses plain \
             requests; set tls = {{ ca, cert, key }}, or check that its CA accepts this \
             client's certificate)"
        )
    } else {
        text
    }
}

/// Whether an error in a chain says the engine could not be reached (connection refused or
/// reset, timeout, missing socket): the engine went away, a class-5 error.
pub fn is_engine_unreachable(e: &(dyn std::error::Error + 'static)) -> bool {
    use bollard::errors::Error as B;
    matches!(
        e.downcast_ref::<B>(),
        Some(
            B::HyperResponseError { .. }
                | B::HyperLegacyError { .. }
                | B::IOError { .. }
                | B::RequestTimeoutError
                | B::SocketNotFoundError(_)
        )
    )
}

/// A failure of class `Infrastructure` (exit 5): the engine or a container is not there.
fn infrastructure(message: impl Into<String>) -> anyhow::Error {
    anyhow!(Failure::new(Class::Infrastructure, message))
}

impl Default for Docker {
    fn default() -> Self {
        Self::new()
    }
}

impl Docker {
    /// A client of Docker's default engine: `DOCKER_HOST` (with `DOCKER_TLS_VERIFY` and
    /// `DOCKER_CERT_PATH`), else the local socket.
    pub fn new() -> Docker {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let mut c = crate::config::Config::defaults();
        c.docker_env = crate::config::DockerEnv::from_env(&env);
        Docker::for_engine(c.default_engine())
    }

    /// A client of one engine. It connects on first use.
    pub fn for_engine(engine: Engine) -> Docker {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a Tokio runtime for Docker calls");
        Docker {
            rt,
            engine,
            client: OnceLock::new(),
        }
    }

    /// The engine this client speaks to.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The connected client; the first call connects and negotiates the API version.
    fn client(&self) -> Result<&bollard::Docker> {
        let r = self.client.get_or_init(|| {
            let shown = self.engine.shown();
            let c = connect(&self.engine)
                .map_err(|e| format!("Docker engine unreachable at {shown}: {e}"))?
                .with_timeout(Duration::from_secs(600));
            self.block_on(async {
                tokio::time::timeout(Duration::from_secs(5), c.negotiate_version()).await
            })
            .map_err(|_| format!("Docker engine unreachable at {shown}: no answer in 5 s"))?
            .map_err(|e| format!("Docker engine unreachable at {shown}: {}", explain(&e)))
        });
        r.as_ref().map_err(|e| infrastructure(e.clone()))
    }

    /// Runs one bollard future to completion on this client's runtime. Nothing inside may call
    /// the sync `postgres` client: it blocks on a runtime of its own, and Tokio refuses to start
    /// a runtime inside another (it panics).
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// `block_on` for one Docker call, which fails with bollard's `RequestTimeoutError` (an
    /// unreachable engine, class 5) when the engine stops answering under it: a host cut off
    /// mid-run leaves a TCP connection that neither answers nor closes, and the call would
    /// otherwise wait out the client's 600 s. See `engine_lost`.
    fn call<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, bollard::errors::Error> {
        self.block_on(async {
            tokio::select! {
                r = f => r,
                _ = self.engine_lost() => Err(bollard::errors::Error::RequestTimeoutError),
            }
        })
    }

    /// `call` for a sequence of Docker calls (an exec and its output, a one-off container): the
    /// error then says that the engine stopped answering, with the unreachable engine's class.
    fn call_all<T>(&self, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        self.block_on(async {
            tokio::select! {
                r = f => r,
                _ = self.engine_lost() => Err(anyhow::Error::new(bollard::errors::Error::RequestTimeoutError)
                    .context(format!("the Docker engine at {} stopped answering (no answer to a ping on a new connection, twice, {} s apart)", self.engine.shown(), WATCHDOG.as_secs()))),
            }
        })
    }

    /// Resolves when a TCP engine stops answering: every `WATCHDOG` a ping on a new connection
    /// (3 s at most); two misses in a row mean the engine is gone. Never resolves for a local
    /// socket, which cannot be cut off.
    async fn engine_lost(&self) {
        if self.engine.url.starts_with("unix://") {
            return std::future::pending().await;
        }
        let mut misses = 0;
        loop {
            tokio::time::sleep(WATCHDOG).await;
            let answered = match connect(&self.engine) {
                Ok(c) => matches!(
                    tokio::time::timeout(Duration::from_secs(3), c.ping()).await,
                    Ok(Ok(_))
                ),
                Err(_) => false,
            };
            misses = if answered { 0 } else { misses + 1 };
            if misses >= 2 {
                return;
            }
        }
    }

    /// Fails with a clear error when the engine cannot be reached.
    pub fn ping(&self) -> Result<()> {
        self.client().map(|_| ())
    }

    pub fn inspect(&self, container: &str) -> Result<Option<ContainerInspectResponse>> {
        let c = self.client()?;
        self.call(c.inspect_container(container, None::<qp::InspectContainerOptions>))
            .ok_if_not_found()
            .with_context(|| format!("cannot inspect container '{container}'"))
    }

    pub fn state(&self, container: &str) -> Result<State> {
        Ok(match self.inspect(container)? {
            None => State::Missing,
            Some(r) => State::Present(
                r.state
                    .and_then(|s| s.status)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "unknown".into()),
            ),
        })
    }

    fn must_exist(&self, container: &str) -> Result<ContainerInspectResponse> {
        self.inspect(container)?
            .ok_or_else(|| infrastructure(format!("container '{container}' does not exist")))
    }

    /// Stops a container (its stop signal, then SIGKILL after `timeout_s`). Stopping a stopped
    /// container is fine.
    pub fn stop(&self, container: &str, timeout_s: i32) -> Result<()> {
        let c = self.client()?;
        self.must_exist(container)?;
        let opts = qp::StopContainerOptions {
            t: Some(timeout_s),
            ..Default::default()
        };
        self.call(c.stop_container(container, Some(opts)))
            .ok_if_not_modified()
            .with_context(|| format!("cannot stop container '{container}'"))?;
        Ok(())
    }

    /// Sends a signal (SIGKILL by default) to a container's main process.
    pub fn kill(&self, container: &str, signal: &str) -> Result<()> {
        let c = self.client()?;
        self.must_exist(container)?;
        let opts = qp::KillContainerOptions {
            signal: signal.to_string(),
        };
        // A conflict here means the container is not running: nothing to kill.
        self.call(c.kill_container(container, Some(opts)))
            .ok_if_conflict()
            .with_context(|| format!("cannot kill container '{container}'"))?;
        Ok(())
    }

    /// Starts a container; starting a running one is fine.
    pub fn start(&self, container: &str) -> Result<()> {
        let c = self.client()?;
        self.must_exist(container)?;
        self.call(c.start_container(container, None::<qp::StartContainerOptions>))
            .ok_if_not_modified()
            .with_context(|| format!("cannot start container '{container}'"))?;
        Ok(())
    }

    pub fn remove(&self, container: &str) -> Result<()> {
        let c = self.client()?;
        let opts = qp::RemoveContainerOptions {
            force: true,
            v: false,
            link: false,
        };
        self.call(c.remove_container(container, Some(opts)))
            .ok_if_not_found()
            .with_context(|| format!("cannot remove container '{container}'"))?;
        Ok(())
    }

    /// Whether a container has ever been started (a created-only container has not).
    pub fn ever_started(&self, container: &str) -> Result<bool> {
        Ok(self
            .must_exist(container)?
            .state
            .and_then(|s| s.started_at)
            .is_some_and(|t| !t.starts_with("0001-")))
    }

    /// Copies one file into a container (running or not) through the archive endpoint, like
    /// `docker cp`: the file is owned by root with `mode`.
    pub fn upload_file(&self, container: &str, path: &str, data: &[u8], mode: u32) -> Result<()> {
        self.upload_file_owned(container, path, data, mode, (0, 0))
    }

    /// The owner (uid, gid) of a file in a container, running or not, through the engine's
    /// archive endpoint (no process is started); None when there is no such file.
    pub fn file_owner(&self, container: &str, path: &str) -> Result<Option<(u64, u64)>> {
        let c = self.client()?;
        let opts = qp::DownloadFromContainerOptions {
            path: path.to_string(),
        };
        let body = self.call(async {
            let mut stream = Box::pin(c.download_from_container(container, Some(opts)));
            let mut body = Vec::new();
            while let Some(chunk) = stream.next().await {
                body.extend_from_slice(&chunk?);
                // The first header (512 bytes) is all that is read.
                if body.len() >= 512 {
                    break;
                }
            }
            Ok::<_, bollard::errors::Error>(body)
        });
        let Some(body) = body
            .ok_if_not_found()
            .with_context(|| format!("cannot read {path} in container '{container}'"))?
        else {
            return Ok(None);
        };
        let mut archive = tar::Archive::new(body.as_slice());
        let mut entries = archive.entries()?;
        match entries.next() {
            Some(entry) => {
                let h = entry?.header().clone();
                Ok(Some((h.uid()?, h.gid()?)))
            }
            None => Ok(None),
        }
    }

    /// Writes one file into a container, running or not (the engine's archive endpoint), owned
    /// by `owner` (uid, gid) with `mode`.
    pub fn upload_file_owned(
        &self,
        container: &str,
        path: &str,
        data: &[u8],
        mode: u32,
        owner: (u64, u64),
    ) -> Result<()> {
        let c = self.client()?;
        let (dir, name) = path
            .rsplit_once('/')
            .context("upload_file needs an absolute path")?;
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_uid(owner.0);
        header.set_gid(owner.1);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, name, data)?;
        let body = tar.into_inner()?;
        let opts = qp::UploadToContainerOptions {
            path: if dir.is_empty() {
                "/".into()
            } else {
                dir.to_string()
            },
            ..Default::default()
        };
        self.call(c.upload_to_container(container, Some(opts), bollard::body_full(body.into())))
            .with_context(|| format!("cannot copy {path} into container '{container}'"))
    }

    /// The running containers other than `except` that mount the volume `volume`.
    pub fn running_users_of_volume(&self, volume: &str, except: &str) -> Result<Vec<String>> {
        let c = self.client()?;
        let mut filters = HashMap::new();
        filters.insert("volume".to_string(), vec![volume.to_string()]);
        filters.insert("status".to_string(), vec!["running".to_string()]);
        let opts = qp::ListContainersOptions {
            all: false,
            filters: Some(filters),
            ..Default::default()
        };
        let list = self
            .call(c.list_containers(Some(opts)))
            .with_context(|| format!("cannot list the containers that mount volume '{volume}'"))?;
        Ok(list
            .into_iter()
            .flat_map(|s| s.names.unwrap_or_default())
            .map(|n| n.trim_start_matches('/').to_string())
            .filter(|n| n != except)
            .collect())
    }

    /// The name of the volume mounted at `path` in a container, if a named volume is there.
    pub fn volume_at(&self, container: &str, path: &str) -> Result<Option<String>> {
        let info = self.must_exist(container)?;
        Ok(info.mounts.unwrap_or_default().into_iter().find_map(|m| {
            (m.destination.as_deref() == Some(path)
                && m.typ.map(|t| t.to_string()).as_deref() == Some("volume"))
            .then_some(m.name)
            .flatten()
        }))
    }

    /// Runs a command in a running container and collects its output. `on_line` sees each line
    /// of stderr as it arrives (progress); `cancel` stops waiting.
    pub fn exec(
        &self,
        container: &str,
        cmd: &[String],
        user: Option<&str>,
        env: &[String],
        cancel: &Cancel,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<ExecOutput> {
        let c = self.client()?;
        let info = self.must_exist(container)?;
        let running = info.state.and_then(|s| s.running).unwrap_or(false);
        if !running {
            return Err(infrastructure(format!(
                "container '{container}' is not running"
            )));
        }
        let opts = bollard::exec::CreateExecOptions::<String> {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(cmd.to_vec()),
            user: user.map(str::to_string),
            env: (!env.is_empty()).then(|| env.to_vec()),
            ..Default::default()
        };
        self.call_all(async {
            let created = c
                .create_exec(container, opts)
                .await
                .with_context(|| format!("cannot create an exec in '{container}'"))?;
            let started = c
                .start_exec(&created.id, None::<bollard::exec::StartExecOptions>)
                .await
                .with_context(|| format!("cannot start an exec in '{container}'"))?;
            let mut out = ExecOutput::default();
            if let bollard::exec::StartExecResults::Attached { output, .. } = started {
                let what = format!("running {:?} in '{container}'", cmd.join(" "));
                out = collect_output(output, cancel, &what, on_line).await?;
            }
            let inspected = c.inspect_exec(&created.id).await?;
            out.exit_code = inspected.exit_code.unwrap_or(-1);
            Ok(out)
        })
    }

    /// Runs a one-off container to completion (like `docker run --rm`), streaming its stderr
    /// lines to `on_line`. The container is removed afterwards, also on error or cancel.
    pub fn run_oneoff(
        &self,
        spec: &ContainerSpec,
        cancel: &Cancel,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<ExecOutput> {
        let c = self.client()?;
        self.remove(&spec.name)?;
        self.create(spec)?;
        let name = spec.name.clone();
        let result = self.call_all(async {
            c.start_container(&name, None::<qp::StartContainerOptions>)
                .await
                .with_context(|| format!("cannot start one-off container '{name}'"))?;
            let logs = c.logs(
                &name,
                Some(qp::LogsOptions {
                    follow: true,
                    stdout: true,
                    stderr: true,
                    tail: "all".into(),
                    ..Default::default()
                }),
            );
            let what = format!("one-off container '{name}' ran");
            let mut out = collect_output(Box::pin(logs), cancel, &what, on_line).await?;
            // The log stream ends when the process does; wait for Docker to record the exit code.
            let mut wait = c.wait_container(&name, None::<qp::WaitContainerOptions>);
            let code = match wait.next().await {
                Some(Ok(r)) => r.status_code,
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
                Some(Err(e)) => return Err(anyhow!(e).context("waiting for one-off container")),
                None => -1,
            };
            out.exit_code = code;
            Ok(out)
        });
        let _ = self.remove(&spec.name);
        result
    }

    /// Creates (does not start) a container.
    pub fn create(&self, spec: &ContainerSpec) -> Result<()> {
        let c = self.client()?;
        let mounts: Vec<Mount> = spec
            .volumes
            .iter()
            .map(|v| (v, false))
            .chain(spec.volumes_ro.iter().map(|v| (v, true)))
            .map(|((vol, path), ro)| Mount {
                target: Some(path.clone()),
                source: Some(vol.clone()),
                typ: Some(MountType::VOLUME),
                read_only: ro.then_some(true),
                ..Default::default()
            })
            .collect();
        let mut port_bindings = HashMap::new();
        for (cport, hport) in &spec.ports {
            port_bindings.insert(
                cport.clone(),
                Some(vec![PortBinding {
                    host_ip: Some(
                        spec.publish_ip
                            .clone()
                            .unwrap_or_else(|| "127.0.0.1".into()),
                    ),
                    host_port: Some(hport.to_string()),
                }]),
            );
        }
        // `none` takes no endpoint settings (no aliases, no address).
        let networking_config = spec.network.as_ref().filter(|n| *n != "none").map(|n| {
            let mut m = HashMap::new();
            m.insert(
                n.clone(),
                EndpointSettings {
                    aliases: (!spec.aliases.is_empty()).then(|| spec.aliases.clone()),
                    ..Default::default()
                },
            );
            NetworkingConfig {
                endpoints_config: Some(m),
            }
        });
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            env: Some(spec.env.clone()),
            cmd: spec.cmd.clone(),
            entrypoint: spec.entrypoint.clone(),
            user: spec.user.clone(),
            hostname: Some(
                spec.aliases
                    .first()
                    .cloned()
                    .unwrap_or_else(|| spec.name.clone()),
            ),
            labels: Some(spec.labels.clone()),
            host_config: Some(HostConfig {
                mounts: Some(mounts),
                binds: (!spec.binds.is_empty()).then(|| spec.binds.clone()),
                network_mode: spec.network.clone(),
                port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
                restart_policy: spec.restart_unless_stopped.then_some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            networking_config,
            ..Default::default()
        };
        let opts = qp::CreateContainerOptions {
            name: Some(spec.name.clone()),
            platform: String::new(),
        };
        self.call(c.create_container(Some(opts), body))
            .with_context(|| {
                format!(
                    "cannot create container '{}' from image '{}'",
                    spec.name, spec.image
                )
            })?;
        Ok(())
    }

    /// `None` when the image is missing.
    fn inspect_image(&self, image: &str) -> Result<Option<bollard::models::ImageInspect>> {
        let c = self.client()?;
        self.call(c.inspect_image(image))
            .ok_if_not_found()
            .with_context(|| format!("cannot inspect image '{image}'"))
    }

    pub fn image_exists(&self, image: &str) -> Result<bool> {
        Ok(self.inspect_image(image)?.is_some())
    }

    /// `None` when the image is missing, else the value of one of its labels.
    pub fn image_label(&self, image: &str, label: &str) -> Result<Option<Option<String>>> {
        Ok(self.inspect_image(image)?.map(|i| {
            i.config
                .and_then(|c| c.labels)
                .and_then(|l| l.get(label).cloned())
        }))
    }

    /// Imports a root file system tarball as an image (`docker import`): `POST /images/create`
    /// with `fromSrc=-`, the file streamed in 4 MiB chunks.
    pub fn import_rootfs(&self, tar_path: &std::path::Path, image: &str) -> Result<()> {
        let c = self.client()?;
        let (repo, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
        let file = std::fs::File::open(tar_path)
            .with_context(|| format!("cannot open {}", tar_path.display()))?;
        let chunks = futures_util::stream::unfold(file, |mut f| async move {
            use std::io::Read;
            let mut buf = vec![0u8; 4 << 20];
            match f.read(&mut buf) {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(bytes::Bytes::from(buf)), f))
                }
                Err(e) => Some((Err(e), f)),
            }
        });
        let opts = qp::CreateImageOptions {
            from_src: Some("-".into()),
            repo: Some(repo.to_string()),
            tag: Some(tag.to_string()),
            ..Default::default()
        };
        self.block_on(async {
            let mut s = c.create_image(Some(opts), Some(bollard::body_try_stream(chunks)), None);
            while let Some(r) = s.next().await {
                let info =
                    r.with_context(|| format!("importing {} as {image}", tar_path.display()))?;
                if let Some(e) = info.error_detail.and_then(|d| d.message) {
                    bail!("importing {image}: {e}");
                }
            }
            Ok(())
        })
    }

    /// Builds an image from a build context given as a tar archive (`docker build`).
    pub fn build_image(
        &self,
        context_tar: Vec<u8>,
        image: &str,
        buildargs: HashMap<String, String>,
        labels: HashMap<String, String>,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<()> {
        let c = self.client()?;
        let opts = qp::BuildImageOptions {
            dockerfile: "Dockerfile".into(),
            t: Some(image.to_string()),
            rm: true,
            forcerm: true,
            buildargs: Some(buildargs),
            labels: Some(labels),
            ..Default::default()
        };
        self.block_on(async {
            let mut s = c.build_image(opts, None, Some(bollard::body_full(context_tar.into())));
            while let Some(r) = s.next().await {
                let info = r.with_context(|| format!("building {image}"))?;
                if let Some(e) = info.error_detail.and_then(|d| d.message) {
                    bail!("building {image}: {e}");
                }
                if let Some(line) = info.stream {
                    let l = line.trim_end();
                    if !l.is_empty() {
                        on_line(l);
                    }
                }
            }
            Ok(())
        })
    }

    /// Creates the network unless it exists; `true` when it was created.
    pub fn ensure_network(&self, name: &str, labels: &HashMap<String, String>) -> Result<bool> {
        if self.network_exists(name)? {
            return Ok(false);
        }
        let c = self.client()?;
        let req = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            labels: Some(labels.clone()),
            ..Default::default()
        };
        self.call(c.create_network(req))
            .with_context(|| format!("cannot create network '{name}'"))?;
        Ok(true)
    }

    pub fn network_exists(&self, name: &str) -> Result<bool> {
        let c = self.client()?;
        let found = self
            .call(c.inspect_network(name, None::<qp::InspectNetworkOptions>))
            .ok_if_not_found()
            .with_context(|| format!("cannot inspect network '{name}'"))?;
        Ok(found.is_some())
    }

    pub fn remove_network(&self, name: &str) -> Result<()> {
        let c = self.client()?;
        self.call(c.remove_network(name))
            .ok_if_not_found()
            .with_context(|| format!("cannot remove network '{name}'"))?;
        Ok(())
    }

    /// Creates the volume unless it exists; `true` when it was created.
    pub fn ensure_volume(&self, name: &str, labels: &HashMap<String, String>) -> Result<bool> {
        if self.volume_exists(name)? {
            return Ok(false);
        }
        let c = self.client()?;
        let req = VolumeCreateRequest {
            name: Some(name.to_string()),
            labels: Some(labels.clone()),
            ..Default::default()
        };
        self.call(c.create_volume(req))
            .with_context(|| format!("cannot create volume '{name}'"))?;
        Ok(true)
    }

    pub fn volume_exists(&self, name: &str) -> Result<bool> {
        let c = self.client()?;
        let found = self
            .call(c.inspect_volume(name))
            .ok_if_not_found()
            .with_context(|| format!("cannot inspect volume '{name}'"))?;
        Ok(found.is_some())
    }

    pub fn remove_volume(&self, name: &str) -> Result<()> {
        let c = self.client()?;
        self.call(c.remove_volume(name, Some(qp::RemoveVolumeOptions { force: true })))
            .ok_if_not_found()
            .with_context(|| format!("cannot remove volume '{name}'"))?;
        Ok(())
    }

    /// The labels of a volume; `None` when it does not exist.
    pub fn volume_labels(&self, name: &str) -> Result<Option<HashMap<String, String>>> {
        let c = self.client()?;
        Ok(self
            .call(c.inspect_volume(name))
            .ok_if_not_found()
            .with_context(|| format!("cannot inspect volume '{name}'"))?
            .map(|v| v.labels))
    }

    /// The labels of a container; `None` when it does not exist.
    pub fn container_labels(&self, container: &str) -> Result<Option<HashMap<String, String>>> {
        Ok(self
            .inspect(container)?
            .map(|i| i.config.and_then(|c| c.labels).unwrap_or_default()))
    }

    /// The names of the containers, running or not, that carry every label of `labels`
    /// (`key=value`, or `key` for any value).
    pub fn containers_labelled(&self, labels: &[String]) -> Result<Vec<String>> {
        let c = self.client()?;
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), labels.to_vec());
        let opts = qp::ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let list = self
            .call(c.list_containers(Some(opts)))
            .with_context(|| format!("cannot list the containers labelled {labels:?}"))?;
        Ok(list
            .into_iter()
            .flat_map(|s| s.names.unwrap_or_default())
            .map(|n| n.trim_start_matches('/').to_string())
            .collect())
    }

    /// The names of the volumes that carry every label of `labels` (as `containers_labelled`).
    pub fn volumes_labelled(&self, labels: &[String]) -> Result<Vec<String>> {
        let c = self.client()?;
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), labels.to_vec());
        let opts = qp::ListVolumesOptions {
            filters: Some(filters),
        };
        let list = self
            .call(c.list_volumes(Some(opts)))
            .with_context(|| format!("cannot list the volumes labelled {labels:?}"))?;
        Ok(list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect())
    }

    /// A spec for a one-off container that sees what `container` sees: same image, volumes and
    /// network. It works for containers pgrunbook did not create (the seed's compose setup).
    pub fn oneoff_like(&self, container: &str, name: &str) -> Result<ContainerSpec> {
        let info = self.must_exist(container)?;
        let image = info
            .config
            .as_ref()
            .and_then(|c| c.image.clone())
            .or(info.image.clone())
            .context("container has no image")?;
        let mut volumes = vec![];
        let mut binds = vec![];
        for m in info.mounts.unwrap_or_default() {
            let dest = m.destination.unwrap_or_default();
            match (m.typ.map(|t| t.to_string()), m.name, m.source) {
                (Some(t), Some(n), _) if t == "volume" => volumes.push((n, dest)),
                (Some(t), _, Some(src)) if t == "bind" => binds.push(format!("{src}:{dest}")),
                _ => {}
            }
        }
        let network = info
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|n| {
                n.keys()
                    .find(|k| *k != "bridge")
                    .cloned()
                    .or_else(|| n.keys().next().cloned())
            });
        Ok(ContainerSpec {
            name: name.to_string(),
            image,
            volumes,
            binds,
            network,
            user: Some("postgres".into()),
            ..Default::default()
        })
    }

    /// What the container wrote to stdout and stderr (Docker's logs endpoint), oldest first,
    /// each line starting with the time Docker recorded it (RFC 3339). Works on a stopped
    /// container. `since`: Unix seconds; `tail`: at most that many lines from the end.
    pub fn logs(
        &self,
        container: &str,
        since: Option<i64>,
        tail: Option<usize>,
        cancel: &Cancel,
    ) -> Result<Vec<String>> {
        let c = self.client()?;
        self.must_exist(container)?;
        let opts = qp::LogsOptions {
            follow: false,
            stdout: true,
            stderr: true,
            timestamps: true,
            since: since.unwrap_or(0).clamp(0, i32::MAX as i64) as i32,
            tail: tail.map(|n| n.to_string()).unwrap_or_else(|| "all".into()),
            ..Default::default()
        };
        let what = format!("reading the logs of '{container}'");
        let out = self.call_all(async {
            collect_output(
                Box::pin(c.logs(container, Some(opts))),
                cancel,
                &what,
                &mut |_| {},
            )
            .await
        })?;
        // stdout and stderr arrive as separate streams; the timestamps put them back in order.
        let mut lines: Vec<String> = out
            .stdout
            .lines()
            .chain(out.stderr.lines())
            .map(str::to_string)
            .collect();
        // (RFC 3339 with trimmed fractions does not sort as text: parse it; the sort is stable.)
        lines.sort_by_key(|l| {
            l.split(' ')
                .next()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        });
        Ok(lines)
    }
}

/// One event of a container, from the engine's event stream (`Docker::follow_events`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    /// The container's name.
    pub container: String,
    /// `die`, `kill`, `oom`, `pause`, `unpause`, `start`, `stop`, `restart`.
    pub action: String,
    /// For `kill`: the signal's number; for `die`: the exit code.
    pub detail: String,
    /// When the engine recorded it, Unix milliseconds.
    pub at_ms: i64,
}

/// The container events `pgrunbook watch` follows.
pub const WATCHED_EVENTS: [&str; 8] = [
    "die", "kill", "oom", "pause", "unpause", "start", "stop", "restart",
];

impl Docker {
    /// Follows the engine's event stream for `containers` (the actions in `WATCHED_EVENTS`),
    /// calling `on_event` for each as it arrives, until `cancel` is set (`Ok`) or the stream ends
    /// or fails (an error: the engine went away). `on_event` runs inside this client's
    /// `block_on`: it must not call PostgreSQL (send the event to another thread instead).
    pub fn follow_events(
        &self,
        containers: &[String],
        cancel: &Cancel,
        on_event: &mut dyn FnMut(ContainerEvent),
    ) -> Result<()> {
        let c = self.client()?;
        let mut filters = HashMap::new();
        filters.insert("type".to_string(), vec!["container".to_string()]);
        filters.insert("container".to_string(), containers.to_vec());
        filters.insert(
            "event".to_string(),
            WATCHED_EVENTS.iter().map(|s| s.to_string()).collect(),
        );
        let opts = qp::EventsOptions {
            filters: Some(filters),
            ..Default::default()
        };
        self.block_on(async {
            let mut stream = Box::pin(c.events(Some(opts)));
            loop {
                let next = tokio::select! {
                    n = stream.next() => n,
                    _ = cancel.wait_async() => return Ok(()),
                };
                match next {
                    None => bail!("the Docker engine closed its event stream"),
                    Some(Err(e)) => return Err(anyhow!(e).context("Docker's event stream")),
                    Some(Ok(m)) => {
                        let attrs = m.actor.and_then(|a| a.attributes).unwrap_or_default();
                        let action = m.action.unwrap_or_default();
                        let detail = attrs
                            .get("signal")
                            .or_else(|| attrs.get("exitCode"))
                            .cloned()
                            .unwrap_or_default();
                        on_event(ContainerEvent {
                            container: attrs.get("name").cloned().unwrap_or_default(),
                            action,
                            detail,
                            at_ms: m
                                .time_nano
                                .map(|n| n / 1_000_000)
                                .or(m.time.map(|t| t * 1000))
                                .unwrap_or_default(),
                        });
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_strings() {
        assert_eq!(State::Missing.as_str(), "missing");
        assert!(State::Present("running".into()).is_running());
        assert!(!State::Present("exited".into()).is_running());
    }

    fn answered(status_code: u16) -> std::result::Result<u8, bollard::errors::Error> {
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code,
            message: format!("status {status_code}"),
        })
    }

    fn status_kept(r: std::result::Result<Option<u8>, bollard::errors::Error>) -> Option<u16> {
        match r {
            Err(bollard::errors::Error::DockerResponseServerError { status_code, .. }) => {
                Some(status_code)
            }
            _ => None,
        }
    }

    #[test]
    fn a_value_is_some_whatever_is_expected() {
        assert_eq!(Ok::<u8, _>(7).ok_if_not_found().unwrap(), Some(7));
        assert_eq!(Ok::<u8, _>(7).ok_if_not_modified().unwrap(), Some(7));
        assert_eq!(Ok::<u8, _>(7).ok_if_conflict().unwrap(), Some(7));
    }

    #[test]
    fn the_expected_status_is_none() {
        assert_eq!(answered(404).ok_if_not_found().unwrap(), None);
        assert_eq!(answered(304).ok_if_not_modified().unwrap(), None);
        assert_eq!(answered(409).ok_if_conflict().unwrap(), None);
    }

    #[test]
    fn other_statuses_stay_errors() {
        for code in [304, 409, 500] {
            assert_eq!(status_kept(answered(code).ok_if_not_found()), Some(code));
        }
        for code in [404, 409, 500] {
            assert_eq!(status_kept(answered(code).ok_if_not_modified()), Some(code));
        }
        for code in [304, 404, 500] {
            assert_eq!(status_kept(answered(code).ok_if_conflict()), Some(code));
        }
        let other: std::result::Result<u8, _> = Err(bollard::errors::Error::RequestTimeoutError);
        assert!(other.ok_if_not_found().is_err());
    }

    #[test]
    fn context_names_the_operation_and_keeps_the_class() {
        let err = answered(500)
            .ok_if_not_found()
            .with_context(|| "cannot inspect volume 'v'")
            .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "cannot inspect volume 'v': Docker responded with status code 500: status 500"
        );
        assert_eq!(crate::error::class_of(&err, Class::Runbook), Class::Runbook);
    }

    #[test]
    fn missing_engine_or_container_is_infrastructure() {
        let err = infrastructure("container 'pg1' does not exist");
        assert_eq!(err.to_string(), "container 'pg1' does not exist");
        assert_eq!(
            crate::error::class_of(&err, Class::Runbook),
            Class::Infrastructure
        );
    }
}
