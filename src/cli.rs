//! The command line. Each command returns `Result<(), Failure>`; `main` prints the failure with
//! its source line and caret and exits with the failure's class code (see `docs/errors.md`).

use crate::clients::redis::{Entry, BACKUPS, JOURNAL};
use crate::commands::journal::{self, Run};
use crate::commands::lab::Lab;
use crate::config::Config;
use crate::engine;
use crate::engine::runbook::Runbook;
use crate::error::{Class, Failure};
use crate::runtime::host::Host;
use crate::{err, errln, out, outln};
use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

const EXAMPLES: &str = "\
Examples:
  pgrunbook lab up                      # build the image if missing, start the lab
  pgrunbook run setup                   # clone the standby, start streaming
  pgrunbook run verify                  # check that replication works
  pgrunbook run failover --dry-run      # print what a failover would change
  pgrunbook run backup --set type=incr  # incremental pgBackRest backup
  pgrunbook list                        # shipped and local runbooks
  pgrunbook check runbooks/mine.rhai    # syntax check without running";

#[derive(Parser)]
#[command(name = "pgrunbook", version, about = "Runbooks in Rhai for a PostgreSQL primary/standby pair in Docker",
    after_help = EXAMPLES)]
pub struct Cli {
    /// Configuration file (default: ./pgrunbook.toml if present, else built-in defaults).
    #[arg(long, global = true, env = "PGRUNBOOK_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Runs a runbook (a shipped name, a name in ./runbooks, or a path to a .rhai file).
    #[command(
        after_help = "Examples:
  pgrunbook run setup
  pgrunbook run backup --set type=diff
  pgrunbook run ./my_check.rhai --dry-run
  pgrunbook run backup --help          # the runbook's description and parameters",
        disable_help_flag = true
    )]
    Run {
        /// The runbook: a shipped name, a name in ./runbooks, or a path to a .rhai file.
        runbook: Option<String>,
        /// Sets a runbook parameter: --set key=value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Performs reads, prints every change instead of making it.
        #[arg(long)]
        dry_run: bool,
        /// With a runbook: its description and parameters. Without: this help.
        #[arg(long, short = 'h')]
        help: bool,
    },
    /// Lists shipped and local runbooks with their descriptions and parameters.
    #[command(after_help = "Example:\n  pgrunbook list")]
    List,
    /// Checks runbooks without running them (all shipped and local ones by default).
    #[command(
        after_help = "Examples:\n  pgrunbook check\n  pgrunbook check setup runbooks/mine.rhai"
    )]
    Check { runbooks: Vec<String> },
    /// Manages the lab: the seed's containers, network and volumes.
    #[command(subcommand)]
    Lab(LabCommand),
    /// Shows the backups recorded in Redis, newest first.
    #[command(after_help = "Examples:\n  pgrunbook backups\n  pgrunbook backups --last 3 --json")]
    Backups {
        #[arg(long, default_value_t = 10)]
        last: usize,
        #[arg(long)]
        json: bool,
    },
    /// Shows the runs recorded in Redis, one line each, newest first; with RUN_ID, that run's
    /// steps and metrics.
    #[command(
        after_help = "Examples:\n  pgrunbook journal\n  pgrunbook journal 1718000000000   # a run id, or a unique prefix\n  pgrunbook journal --last 50 --json"
    )]
    Journal {
        /// A run id (or a unique prefix of one): shows that run's steps and metrics.
        run: Option<String>,
        /// How many runs to show.
        #[arg(long, default_value_t = 20)]
        last: usize,
        #[arg(long)]
        json: bool,
    },
    /// Shows the cluster at a glance: each node's role, timeline, LSNs, lag and slots, the last
    /// backup and the last run.
    #[command(after_help = "Examples:\n  pgrunbook status\n  pgrunbook status --json")]
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Prints the primitive and stdlib reference (Markdown) generated from the code.
    #[command(after_help = "Example:\n  pgrunbook reference > docs/primitives.md")]
    Reference,
    /// Writes Rhai definition files (.d.rhai) for editor completion into DIR.
    #[command(after_help = "Example:\n  pgrunbook definitions .rhai-defs")]
    Definitions { dir: PathBuf },
    /// Prints the effective configuration (passwords masked).
    #[command(after_help = "Example:\n  PGRUNBOOK_NODES__PG_REPLICA__PORT=5434 pgrunbook config")]
    Config,
    /// Starts an interactive Rhai session: every primitive, the stdlib modules imported, Tab
    /// completion, history; Ctrl-C stops the running statement, Ctrl-D leaves.
    #[command(after_help = "Examples:
  pgrunbook repl
  pgrunbook> cluster::primary()
  pgrunbook> sql(\"pg-bases2\", \"SELECT now()\")
  pgrunbook> :help sql
  pgrunbook> :run verify")]
    Repl,
    /// Prints a shell completion script for bash, zsh or fish to stdout.
    #[command(after_help = "Examples:
  pgrunbook completions bash > ~/.local/share/bash-completion/completions/pgrunbook
  pgrunbook completions zsh > ~/.zfunc/_pgrunbook
  pgrunbook completions fish > ~/.config/fish/completions/pgrunbook.fish")]
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Runs in the foreground: the `[[schedule]]`s of the configuration, and unattended failover
    /// when the policy (stdlib/watch.rhai) says so; one watcher acts per cluster. Ctrl-C or
    /// SIGTERM stops it (see docs/watch.md).
    #[command(
        after_help = "Examples:\n  pgrunbook watch\n  pgrunbook --config /etc/pgrunbook/pgrunbook.toml watch"
    )]
    Watch,
    /// Prints the manual page (roff) to stdout.
    #[command(after_help = "Examples:
  pgrunbook man > pgrunbook.1 && man ./pgrunbook.1
  pgrunbook man | gzip > /usr/local/share/man/man1/pgrunbook.1.gz")]
    Man,
}

/// The shells `pgrunbook completions` writes scripts for.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Subcommand)]
pub enum LabCommand {
    /// Creates or starts the lab; builds its image when missing. Changes nothing when it runs.
    #[command(
        after_help = "Examples:\n  pgrunbook lab up\n  pgrunbook lab up --flavour official   # containers like the official postgres image"
    )]
    Up {
        /// lab: pgrunbook's own image, prepared for everything. official: like the official
        /// postgres image with Debian's pgBackRest (no archiving, no stop signal), as users have it.
        #[arg(long, value_enum, default_value = "lab")]
        flavour: crate::commands::lab::Flavour,
    },
    /// Removes the lab's containers; with --volumes also its data, repository and network.
    #[command(after_help = "Examples:\n  pgrunbook lab down\n  pgrunbook lab down --volumes")]
    Down {
        #[arg(long)]
        volumes: bool,
    },
    /// Shows the lab's containers and their state.
    #[command(after_help = "Example:\n  pgrunbook lab status")]
    Status,
    /// Builds the lab image if it is missing (with --flavour official, that image too).
    #[command(
        after_help = "Examples:\n  pgrunbook lab build\n  pgrunbook lab build --flavour official"
    )]
    Build {
        #[arg(long, value_enum, default_value = "lab")]
        flavour: crate::commands::lab::Flavour,
    },
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            err!("{}", f.render());
            ExitCode::from(f.class.exit_code())
        }
    }
}

fn infra(e: anyhow::Error) -> Failure {
    let class = crate::error::class_of(&e, Class::Infrastructure);
    let msg = e
        .chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    Failure::new(class, dedup_chain(&msg))
}

/// `a: a: b` (anyhow chains repeat a Failure's text) as `a: b`.
fn dedup_chain(s: &str) -> String {
    let mut parts: Vec<&str> = vec![];
    for p in s.split(": ") {
        if parts.last() != Some(&p) {
            parts.push(p);
        }
    }
    parts.join(": ")
}

/// The runbooks `list` could not load: each shown on stderr, then one failure for the exit code.
fn unloadable(problems: Vec<Failure>) -> Result<(), Failure> {
    let mut problems = problems;
    match problems.len() {
        0 => Ok(()),
        1 => Err(problems.remove(0)),
        n => {
            for f in &problems {
                err!("{}", f.render());
            }
            Err(Failure::new(
                Class::Runbook,
                format!("{n} runbooks could not be loaded"),
            ))
        }
    }
}

fn load_config(path: &Option<PathBuf>) -> Result<Config, Failure> {
    Config::load(path.as_deref()).map_err(|e| Failure::usage(format!("{e:#}")))
}

fn parse_sets(sets: &[String]) -> Result<Vec<(String, String)>, Failure> {
    sets.iter()
        .map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .ok_or_else(|| Failure::usage(format!("--set takes KEY=VALUE, not {s:?}")))
        })
        .collect()
}

/// Ctrl-C sets the cancel flag and cancels the query under way; a second Ctrl-C exits at once.
fn install_ctrlc(host: &Arc<Host>) {
    let h = host.clone();
    let _ = ctrlc::set_handler(move || {
        if h.cancel.is_cancelled() {
            errln!("\ninterrupted again: exiting now");
            std::process::exit(130);
        }
        errln!("\ninterrupt: stopping at the next safe point (Ctrl-C again to exit now)");
        h.cancel.cancel();
        h.pg.cancel_inflight();
    });
}

fn print_params(rb: &Runbook) {
    outln!("{}: {}", rb.name, rb.meta.description);
    outln!(
        "usage: pgrunbook run {} [--set KEY=VALUE ...] [--dry-run]",
        rb.name
    );
    if rb.meta.params.is_empty() {
        outln!("  (no parameters)");
    }
    for p in &rb.meta.params {
        let choices = if p.choices.is_empty() {
            String::new()
        } else {
            format!(" one of {}", p.choices.join("|"))
        };
        outln!(
            "  --set {}=<{}{}>  default {}  {}",
            p.name,
            p.kind(),
            choices,
            p.default_shown(),
            p.help
        );
    }
}

pub fn dispatch(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Run {
            runbook,
            set,
            dry_run,
            help,
        } => {
            let Some(runbook) = runbook else {
                use clap::CommandFactory;
                let mut cmd = Cli::command();
                let run = cmd.find_subcommand_mut("run").expect("run subcommand");
                if help {
                    let _ = run.print_long_help();
                    return Ok(());
                }
                return Err(Failure::usage(format!(
                    "run needs a runbook name or path\n\n{}",
                    run.render_usage()
                )));
            };
            let rb = Runbook::find(&runbook)?;
            if help {
                print_params(&rb);
                return Ok(());
            }
            let sets = parse_sets(&set)?;
            let params = engine::bind_params(&rb, &sets)?;
            let config = load_config(&cli.config)?;
            let host = Arc::new(Host::new(config));
            host.set_dry_run(dry_run);
            install_ctrlc(&host);
            host.learn_cluster();
            host.journal.flush_spool();
            if dry_run {
                outln!(
                    "dry run of {}: reads are real, changes are printed",
                    rb.name
                );
            }
            let r = engine::run(&host, &rb, params);
            if dry_run {
                let planned = host.run.lock().unwrap().planned.clone();
                outln!("\nplan: {} change(s) would be made", planned.len());
                for (i, p) in planned.iter().enumerate() {
                    outln!("  {}. {p}", i + 1);
                }
            }
            r
        }
        Command::List => {
            let (found, problems) = Runbook::scan();
            for rb in found {
                let origin = if rb.shipped { "shipped" } else { "local" };
                outln!("{:<24} {} ({origin})", rb.name, rb.meta.description);
                for p in &rb.meta.params {
                    outln!(
                        "{:<26}--set {}=<{}> {} {}",
                        "",
                        p.name,
                        p.kind(),
                        p.default_shown(),
                        p.help
                    );
                }
            }
            unloadable(problems)
        }
        Command::Check { runbooks } => {
            let config = load_config(&cli.config)?;
            let host = Arc::new(Host::new(config));
            let (list, unloaded): (Vec<Runbook>, Vec<Failure>) = if runbooks.is_empty() {
                Runbook::scan()
            } else {
                let list = runbooks
                    .iter()
                    .map(|n| Runbook::find(n))
                    .collect::<Result<_, _>>()?;
                (list, vec![])
            };
            let mut problems = unloaded.len();
            for f in unloaded {
                err!("{}", f.render());
            }
            for rb in &list {
                let found = crate::engine::check::check(&host, rb);
                if found.is_empty() {
                    outln!("ok      {}", rb.display_path);
                }
                for f in found {
                    problems += 1;
                    err!("{}", f.render());
                }
            }
            if problems > 0 {
                return Err(Failure::new(
                    Class::Runbook,
                    format!("check found {problems} problem(s)"),
                ));
            }
            Ok(())
        }
        Command::Lab(cmd) => {
            let config = load_config(&cli.config)?;
            let host = Host::new(config);
            let flavour = match cmd {
                LabCommand::Up { flavour } | LabCommand::Build { flavour } => flavour,
                _ => crate::commands::lab::Flavour::Lab,
            };
            let lab = Lab::new(&host.config, &host.docker).with_flavour(flavour);
            match cmd {
                LabCommand::Up { .. } => {
                    let did = lab.up().map_err(infra)?;
                    lab.wait_primaries(&host.pg, std::time::Duration::from_secs(120))
                        .map_err(infra)?;
                    if did.is_empty() {
                        outln!("lab: already up, nothing changed");
                    }
                    for d in did {
                        outln!("lab: {d}");
                    }
                    Ok(())
                }
                LabCommand::Down { volumes } => {
                    let did = lab.down(volumes).map_err(infra)?;
                    if did.is_empty() {
                        outln!("lab: nothing to remove");
                    }
                    for d in did {
                        outln!("lab: {d}");
                    }
                    Ok(())
                }
                LabCommand::Status => {
                    let rows = lab.status().map_err(infra)?;
                    let cols: Vec<String> = ["container", "role", "state", "port"]
                        .map(String::from)
                        .to_vec();
                    let cells: Vec<Vec<String>> = rows
                        .into_iter()
                        .map(|r| vec![r.name, r.role, r.state, format!("127.0.0.1:{}", r.port)])
                        .collect();
                    out!("{}", crate::table::render_cells(&cols, &cells));
                    Ok(())
                }
                LabCommand::Build { .. } => lab.ensure_image().map_err(infra),
            }
        }
        Command::Backups { last, json } => show_stream(&cli.config, BACKUPS, last, json),
        Command::Journal { run, last, json } => show_journal(&cli.config, run, last, json),
        Command::Status { json } => {
            let config = load_config(&cli.config)?;
            let host = Host::new(config);
            host.docker.ping().map_err(infra)?;
            let st = crate::commands::status::collect(&host);
            if json {
                outln!("{}", serde_json::to_string_pretty(&st).unwrap_or_default());
            } else {
                out!("{}", crate::commands::status::render(&st));
            }
            Ok(())
        }
        Command::Reference => {
            let host = Arc::new(Host::new(Config::defaults()));
            out!("{}", crate::commands::reference::markdown(&host)?);
            Ok(())
        }
        Command::Definitions { dir } => {
            let host = Arc::new(Host::new(Config::defaults()));
            let sources = Default::default();
            let engine = engine::build(&host, &sources);
            std::fs::create_dir_all(&dir)
                .map_err(|e| Failure::usage(format!("cannot create {}: {e}", dir.display())))?;
            engine
                .definitions()
                .with_headers(true)
                .write_to_dir(&dir)
                .map_err(|e| {
                    Failure::usage(format!(
                        "cannot write definitions to {}: {e}",
                        dir.display()
                    ))
                })?;
            outln!("wrote Rhai definitions to {}", dir.display());
            Ok(())
        }
        Command::Config => {
            let config = load_config(&cli.config)?;
            outln!("# from {}", config.source);
            out!("{}", config.to_masked_toml());
            Ok(())
        }
        Command::Repl => crate::commands::repl::run(load_config(&cli.config)?),
        Command::Watch => crate::commands::watch::run(load_config(&cli.config)?),
        Command::Completions { shell } => {
            use clap_complete::Shell;
            let shell = match shell {
                CompletionShell::Bash => Shell::Bash,
                CompletionShell::Zsh => Shell::Zsh,
                CompletionShell::Fish => Shell::Fish,
            };
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "pgrunbook", &mut buf);
            out!("{}", String::from_utf8_lossy(&buf));
            Ok(())
        }
        Command::Man => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut buf)
                .expect("rendering to memory does not fail");
            out!("{}", String::from_utf8_lossy(&buf));
            Ok(())
        }
    }
}

/// The journal host, its spool delivered, and the newest entries of `stream` from Redis and from
/// this cluster's spool. With Redis down, what is still spooled is used (with a warning); only
/// with nothing spooled either is Redis being down an error.
fn open_stream(config: &Option<PathBuf>) -> Result<Host, Failure> {
    let config = load_config(config)?;
    let host = Host::new(config);
    host.learn_cluster();
    host.journal.flush_spool();
    Ok(host)
}

fn read_stream(host: &Host, stream: &str, n: usize) -> Result<Vec<Entry>, Failure> {
    let j = &host.journal;
    let (entries, unreachable) = j.last_with_spool(stream, n);
    if let Some(e) = unreachable {
        if !j.has_spooled() {
            return Err(infra(e));
        }
        errln!(
            "warning: {e:#}; showing the entries still spooled in {} (not delivered yet)",
            host.config.spool_path().display()
        );
    }
    Ok(entries)
}

/// `journal`: one line per run, newest first (`--last` counts runs); with a run id, that run.
/// `--json` prints the entries of those runs, their values typed.
fn show_journal(
    config: &Option<PathBuf>,
    run: Option<String>,
    last: usize,
    json: bool,
) -> Result<(), Failure> {
    let host = open_stream(config)?;
    let runs = match &run {
        Some(prefix) => {
            let entries = read_stream(&host, JOURNAL, 1 << 30)?;
            let runs: Vec<Run> = journal::group(&entries)
                .into_iter()
                .filter(|r| r.run_id.starts_with(prefix.as_str()))
                .collect();
            match runs.len() {
                0 => {
                    return Err(Failure::usage(format!(
                        "no run {prefix:?} in the journal; `pgrunbook journal` lists the runs"
                    )))
                }
                1 => runs,
                n => {
                    let ids: Vec<&str> = runs.iter().take(5).map(|r| r.run_id.as_str()).collect();
                    return Err(Failure::usage(format!(
                        "{prefix:?} is the start of {n} run ids ({}{}); give more of it",
                        ids.join(", "),
                        if n > 5 { ", ..." } else { "" }
                    )));
                }
            }
        }
        None => {
            // Enough entries for `last` runs: more are read until the stream (or spool) is
            // exhausted or a run older than the `last` newest shows up.
            let mut want = (last.max(1) * 64).max(256);
            loop {
                let entries = read_stream(&host, JOURNAL, want)?;
                let mut runs = journal::group(&entries);
                if runs.len() > last || entries.len() < want || want >= 1 << 24 {
                    runs.truncate(last);
                    break runs;
                }
                want *= 8;
            }
        }
    };
    if json {
        let entries: Vec<serde_json::Value> = runs
            .iter()
            .flat_map(|r| r.entries.iter().rev().map(journal::typed_entry))
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&entries).unwrap_or_default()
        );
        return Ok(());
    }
    match (run, runs.first()) {
        (Some(_), Some(r)) => out!("{}", journal::render_run(r)),
        (None, None) => outln!("(no journal entries in Redis or in the spool)"),
        (None, Some(_)) => out!("{}", journal::render_runs(&runs)),
        (Some(_), None) => {}
    }
    Ok(())
}

/// `backups`: the newest entries, from Redis and from this cluster's spool. With
/// Redis down, what is still spooled is shown (exit 0); only with nothing spooled either is
/// Redis being down an error.
fn show_stream(
    config: &Option<PathBuf>,
    stream: &str,
    last: usize,
    json: bool,
) -> Result<(), Failure> {
    let host = open_stream(config)?;
    let entries = read_stream(&host, stream, last)?;
    if json {
        let typed: Vec<serde_json::Value> = entries.iter().map(journal::typed_entry).collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&typed).unwrap_or_default()
        );
        return Ok(());
    }
    if entries.is_empty() {
        outln!("(no {stream} entries in Redis or in the spool)");
        return Ok(());
    }
    let mut cols: Vec<String> = vec![];
    for e in &entries {
        for k in e.fields.keys() {
            if !cols.contains(k)
                && k != "run_id"
                && k != "params"
                && k != "metrics"
                && k != "planned"
                && k != "cluster"
            {
                cols.push(k.clone());
            }
        }
    }
    let order = [
        "ts",
        "spooled",
        "runbook",
        "event",
        "step",
        "outcome",
        "duration_ms",
        "type",
        "label",
        "node",
    ];
    cols.sort_by_key(|c| order.iter().position(|o| o == c).unwrap_or(order.len()));
    let cells: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            cols.iter()
                .map(|c| {
                    let v = e.fields.get(c).cloned().unwrap_or_default();
                    if c == "size" || c.ends_with("_size") || c.ends_with("_bytes") {
                        journal::human_size_str(&v)
                    } else {
                        v
                    }
                })
                .collect()
        })
        .collect();
    out!("{}", crate::table::render_cells(&cols, &cells));
    Ok(())
}
