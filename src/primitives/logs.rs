//! `pg_log`: a node's PostgreSQL log, as structured entries.
//!
//! Why a primitive: the log is where PostgreSQL says *why* (a standby that does not stream
//! writes `FATAL: password authentication failed for user "replicator"` every few hundred
//! milliseconds, and nothing else shows it). It is needed most when the server is down, so it
//! never asks the server: it reads what the container wrote to stderr through the Docker API's
//! logs endpoint (this works on a stopped container too), or, when the server writes its own
//! files (`logging_collector = on`), the newest file of the log directory, through `docker exec`
//! when the container runs and through a one-off container on its data volume when it does not.
//!
//! The parser understands any `log_line_prefix` that puts the level right after the prefix
//! (`LOG:  `, `FATAL:  `, with PostgreSQL's two spaces): the default `%m [%p] `, the lab's, and
//! the official image's. A time at the start of the prefix and a `[pid]` in it are picked up;
//! `DETAIL`, `HINT`, `CONTEXT`, `STATEMENT` and `QUERY` lines are attached to the entry they
//! belong to (same pid, right after it). Lines that are not PostgreSQL's (an entrypoint's
//! output, a tool's such as pgBackRest's archive-push) have an empty level and `source`
//! "other"; they are left out unless `all: true` asks for them, so that `lines: 5` gives the
//! server's last five entries.

use super::def;
use crate::error::Class;
use crate::runtime::host::Host;
use rhai::{Array, Dynamic, EvalAltResult, Map, Module};
use std::sync::Arc;

type R<T> = Result<T, Box<EvalAltResult>>;

/// How many lines of Docker's log are read when no `since` is given.
const DOCKER_TAIL: usize = 5000;

/// The options of `pg_log`: #{lines, since, grep, all}.
struct Options {
    lines: usize,
    since_s: Option<i64>,
    grep: Option<String>,
    /// Also the lines that are not PostgreSQL's.
    all: bool,
}

fn options(h: &Host, node: &str, opts: &Map) -> R<Options> {
    let bad = |what: String| h.error(Class::Usage, format!("pg_log on {node}: {what}"));
    let mut o = Options {
        lines: 50,
        since_s: None,
        grep: None,
        all: false,
    };
    for (k, v) in opts {
        match k.as_str() {
            "lines" => {
                o.lines = v
                    .as_int()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad(format!("lines must be a positive integer, not {v}")))?
                    as usize
            }
            "since" => {
                let s = v.to_string();
                o.since_s = Some(parse_since(&s).ok_or_else(|| {
                    bad(format!(
                        "since must be seconds or a duration such as \"90s\", \"15m\", \"2h\", \"1d\", not {s:?}"
                    ))
                })?)
            }
            "grep" => o.grep = Some(v.to_string()).filter(|s| !s.is_empty()),
            "all" => {
                o.all = v
                    .as_bool()
                    .map_err(|_| bad(format!("all must be true or false, not {v}")))?
            }
            other => {
                return Err(bad(format!(
                    "unknown option '{other}' (known: lines, since, grep, all)"
                )))
            }
        }
    }
    Ok(o)
}

/// The directory the logging collector writes to, from the postmaster's last "redirecting log
/// output" message on stderr (its HINT names the directory); None when the server logs to
/// stderr.
fn collector_dir(entries: &[LogEntry]) -> Option<String> {
    let last = entries.iter().rev().find(|e| {
        e.message
            .contains("redirecting log output to logging collector process")
    })?;
    let hint = &last.hint;
    let start = hint.find('"')? + 1;
    let end = hint[start..].find('"')? + start;
    Some(hint[start..end].to_string())
}

/// The keys of an entry in the order a table shows them (a Rhai map sorts its keys).
fn entry_columns() -> Vec<String> {
    [
        "time",
        "level",
        "message",
        "detail",
        "hint",
        "context",
        "statement",
        "pid",
        "source",
    ]
    .map(String::from)
    .to_vec()
}

fn entry_map(e: LogEntry) -> Dynamic {
    let source = if e.is_postgres() { "postgres" } else { "other" };
    let mut m = Map::new();
    m.insert("time".into(), e.time.into());
    m.insert(
        "pid".into(),
        e.pid.map(Dynamic::from_int).unwrap_or(Dynamic::UNIT),
    );
    m.insert("level".into(), e.level.into());
    m.insert("source".into(), source.into());
    m.insert("message".into(), e.message.into());
    m.insert("detail".into(), e.detail.into());
    m.insert("hint".into(), e.hint.into());
    m.insert("context".into(), e.context.into());
    m.insert("statement".into(), e.statement.into());
    m.into()
}

fn read(h: &Host, node: &str, o: &Options) -> R<Vec<LogEntry>> {
    let container = h.container("pg_log", node)?;
    let since = o.since_s.map(|s| chrono::Utc::now().timestamp() - s);
    let tail = if since.is_some() {
        None
    } else {
        Some(DOCKER_TAIL)
    };
    let lines = h
        .docker_of(node)
        .logs(&container, since, tail, &h.cancel)
        .map_err(|e| h.fail("pg_log", node, e))?;
    let mut entries = parse(lines.iter().map(|l| split_docker_time(l)));
    if let Some(dir) = collector_dir(&entries) {
        // The server writes its own files: the newest .log file of that directory.
        let script = format!(
            "d={dir}; case \"$d\" in /*) ;; *) d=\"$PGDATA/$d\";; esac; \
             f=$(ls -t \"$d\"/*.log 2>/dev/null | head -n 1); \
             if [ -n \"$f\" ]; then tail -n {n} \"$f\"; fi",
            dir = crate::primitives::node::sh_quote(&dir),
            n = DOCKER_TAIL,
        );
        let out = crate::primitives::node::run_on_data_dir(h, "pg_log", node, &script)?;
        let from_file = parse(out.stdout.lines().map(|l| (None, l)));
        let from_file = match since {
            Some(t) => from_file
                .into_iter()
                .filter(|e| entry_unix_time(&e.time).is_none_or(|u| u >= t))
                .collect(),
            None => from_file,
        };
        entries.extend(from_file);
    }
    Ok(entries)
}

/// The last FATAL or PANIC entry (other than a client turned away) the node's PostgreSQL wrote in the last `since_s` seconds, as
/// "FATAL:  message (DETAIL: ...)": what a node that would not start says about why. None when
/// there is none, or the log cannot be read (the caller's error stands without it).
pub fn last_fatal(h: &Host, node: &str, since_s: i64) -> Option<String> {
    let o = Options {
        lines: 1,
        since_s: Some(since_s.max(1)),
        grep: None,
        all: false,
    };
    let entries = read(h, node, &o).ok()?;
    let e = entries
        .into_iter()
        .rev()
        // A client turned away while the server starts or stops ("the database system is
        // starting up": pgrunbook's own probes) says nothing of why it stopped.
        .find(|e| {
            (e.level == "FATAL" || e.level == "PANIC")
                && !e.message.starts_with("the database system is")
                && !e.message.starts_with("terminating connection")
        })?;
    let mut s = format!("{}:  {}", e.level, e.message);
    if !e.detail.is_empty() {
        s.push_str(&format!(" (DETAIL: {})", e.detail));
    }
    Some(s)
}

/// The Unix time of a log line's time when it can be read ("2026-11-26 15:00:00.123 UTC", or
/// with a numeric offset); None for other time zones (such entries are kept by `since`).
fn entry_unix_time(t: &str) -> Option<i64> {
    let t = t.trim();
    let (base, zone) = t.rsplit_once(' ')?;
    let fmt = if base.contains('.') {
        "%Y-%m-%d %H:%M:%S%.f"
    } else {
        "%Y-%m-%d %H:%M:%S"
    };
    let naive = chrono::NaiveDateTime::parse_from_str(base, fmt).ok()?;
    match zone {
        "UTC" | "GMT" => Some(naive.and_utc().timestamp()),
        z => {
            let sign = match z.chars().next()? {
                '+' => 1,
                '-' => -1,
                _ => return None,
            };
            let hours: i64 = z[1..].get(..2)?.parse().ok()?;
            Some(naive.and_utc().timestamp() - sign * hours * 3600)
        }
    }
}

pub fn create_module(host: Arc<Host>) -> Module {
    let mut m = Module::new();

    let h = host.clone();
    def!(
        &mut m,
        "pg_log",
        ["node: &str", "options: Map", "Array"],
        "The node's PostgreSQL log, newest last, as entries #{time, pid, level, message, detail,
        hint, context, statement, source}. Reads what the container wrote to stderr through Docker (the
        official image and the lab log there), or, when the server runs a logging collector, the
        newest .log file of its log directory. Works on a stopped container, which is when it is
        needed most. Options: `lines` (the last n entries, default 50), `since` (seconds, or
        \"15m\", \"2h\", \"1d\"), `grep` (only entries whose text contains it, any case):
        `pg_log(standby, #{grep: \"FATAL\", since: \"10m\"})`. Only the server's entries (`source`
        \"postgres\"), unless `all: true`: then also the lines that are not PostgreSQL's (an
        entrypoint's, pgBackRest's), with `source` \"other\" and an empty level. A read: it runs
        in a dry run too.",
        move |node: &str, opts: Map| -> R<Array> {
            let o = options(&h, node, &opts)?;
            let entries = read(&h, node, &o)?;
            h.column_orders.remember(&entry_columns());
            Ok(select(entries, o.grep.as_deref(), o.lines, o.all)
                .into_iter()
                .map(entry_map)
                .collect())
        }
    );

    let h = host.clone();
    def!(
        &mut m,
        "pg_log",
        ["node: &str", "Array"],
        "The last 50 entries of the node's PostgreSQL log (the server's own): `pg_log(node, #{})`.",
        move |node: &str| -> R<Array> {
            let o = options(&h, node, &Map::new())?;
            let entries = read(&h, node, &o)?;
            h.column_orders.remember(&entry_columns());
            Ok(select(entries, None, o.lines, false)
                .into_iter()
                .map(entry_map)
                .collect())
        }
    );

    def!(
        &mut m,
        "log_lines",
        ["entries: Array", "width: i64", "String"],
        "Entries of `pg_log` as a DBA reads a log: one line per entry, `time level message`,
        then its DETAIL, HINT and other fields below, indented, each line at most `width`
        columns (a longer word is cut): `print(log_lines(pg_log(node, #{lines: 10}), 80))`.
        What the REPL's `:log` prints.",
        |entries: Array, width: i64| -> String {
            let width = usize::try_from(width).unwrap_or(80).max(40);
            let entries: Vec<LogEntry> = entries.iter().map(entry_from_map).collect();
            format_lines(&entries, width)
        }
    );

    m
}

/// An entry back from the map `pg_log` gave (missing fields are empty).
fn entry_from_map(v: &Dynamic) -> LogEntry {
    let m = v.read_lock::<Map>().map(|m| m.clone()).unwrap_or_default();
    let text = |k: &str| super::map_text(&m, k);
    LogEntry {
        time: text("time"),
        pid: m.get("pid").and_then(|p| p.as_int().ok()),
        level: text("level"),
        message: text("message"),
        detail: text("detail"),
        hint: text("hint"),
        context: text("context"),
        statement: text("statement"),
    }
}

/// A log time shortened for a line: "2026-11-26 15:00:00 UTC" from PostgreSQL's
/// "2026-11-26 15:00:00.123 UTC" or Docker's "2026-11-26T15:00:00.123456789Z".
pub fn short_time(t: &str) -> String {
    if let Some((date, rest)) = t.split_once('T').filter(|(d, _)| d.len() == 10) {
        let clock = rest.trim_end_matches('Z');
        let clock = clock.split('.').next().unwrap_or(clock);
        return format!("{date} {clock} UTC");
    }
    match t.split_once('.') {
        Some((base, frac)) => {
            let zone = frac.split_once(' ').map(|(_, z)| z).unwrap_or("");
            format!("{base} {zone}").trim().to_string()
        }
        None => t.to_string(),
    }
}

/// `text` in lines of at most `width` columns: the first starts after `first` (already
/// written), the others with `indent` spaces. A word longer than a line is cut.
fn wrap_into(out: &mut String, first: &str, text: &str, indent: usize, width: usize) {
    let mut line = first.to_string();
    let mut fresh = true;
    let pad = " ".repeat(indent);
    for word in text.split_whitespace() {
        let mut word = word.to_string();
        loop {
            let used = line.chars().count();
            let need = word.chars().count() + usize::from(!fresh);
            if used + need <= width {
                if !fresh {
                    line.push(' ');
                }
                line.push_str(&word);
                fresh = false;
                break;
            }
            if !fresh || used >= width {
                out.push_str(line.trim_end());
                out.push('\n');
                line = pad.clone();
                fresh = true;
                continue;
            }
            // A word longer than what is left of a fresh line: cut it.
            let room = width - used;
            let head: String = word.chars().take(room).collect();
            let tail: String = word.chars().skip(room).collect();
            line.push_str(&head);
            word = tail;
            out.push_str(&line);
            out.push('\n');
            line = pad.clone();
        }
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

/// Entries as log lines at most `width` columns wide (see `log_lines`).
pub fn format_lines(entries: &[LogEntry], width: usize) -> String {
    let mut out = String::new();
    for e in entries {
        let level = if e.level.is_empty() {
            "-"
        } else {
            e.level.as_str()
        };
        let head = format!("{} {level:<7} ", short_time(&e.time));
        wrap_into(&mut out, &head, &e.message, 4, width);
        for (name, text) in [
            ("DETAIL", &e.detail),
            ("HINT", &e.hint),
            ("CONTEXT", &e.context),
            ("STATEMENT", &e.statement),
        ] {
            if !text.is_empty() {
                wrap_into(&mut out, &format!("    {name}: "), text, 8, width);
            }
        }
    }
    out
}

/// One entry of the log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogEntry {
    /// The time at the start of the line, as written ("2026-11-26 15:00:00.123 UTC"); else the
    /// time Docker recorded the line at; else empty.
    pub time: String,
    pub pid: Option<i64>,
    /// LOG, WARNING, ERROR, FATAL, PANIC, ...; empty for lines that are not PostgreSQL's.
    pub level: String,
    pub message: String,
    pub detail: String,
    pub hint: String,
    pub context: String,
    pub statement: String,
}

impl LogEntry {
    /// Whether the line is PostgreSQL's (it has a level), not an entrypoint's or a tool's.
    pub fn is_postgres(&self) -> bool {
        !self.level.is_empty()
    }

    /// Every text of the entry, for `grep`.
    pub fn text(&self) -> String {
        [
            &self.level,
            &self.message,
            &self.detail,
            &self.hint,
            &self.context,
            &self.statement,
        ]
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
    }
}

const LEVELS: &[&str] = &[
    "DEBUG5", "DEBUG4", "DEBUG3", "DEBUG2", "DEBUG1", "DEBUG", "INFO", "NOTICE", "WARNING",
    "ERROR", "LOG", "FATAL", "PANIC",
];
const ATTACHED: &[&str] = &[
    "DETAIL",
    "HINT",
    "CONTEXT",
    "STATEMENT",
    "QUERY",
    "LOCATION",
];

/// Where the level word starts and what it is: the first `WORD:  ` (two spaces, or a colon at
/// the end of the line) whose word is a level or an attached field.
fn find_level(line: &str) -> Option<(usize, &'static str, usize)> {
    for (i, _) in line.match_indices(':') {
        let before = &line[..i];
        let word_start = before
            .rfind(|c: char| !c.is_ascii_alphanumeric())
            .map(|p| p + 1)
            .unwrap_or(0);
        let word = &before[word_start..];
        let rest = &line[i + 1..];
        if !(rest.starts_with("  ") || rest.is_empty()) {
            continue;
        }
        if let Some(l) = LEVELS.iter().chain(ATTACHED).find(|l| **l == word) {
            return Some((word_start, l, i + 1));
        }
    }
    None
}

/// A timestamp at the start of the prefix: `YYYY-MM-DD HH:MM:SS[.fff][ TZ]`.
fn leading_time(prefix: &str) -> Option<String> {
    let b = prefix.as_bytes();
    let looks = b.len() >= 19
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b' '
        && b[13] == b':'
        && b[16] == b':'
        && b[..4].iter().all(u8::is_ascii_digit);
    if !looks {
        return None;
    }
    // The time runs up to the first '[' (the pid) or the end of the prefix.
    let end = prefix.find('[').unwrap_or(prefix.len());
    Some(prefix[..end].trim().to_string())
}

fn bracket_pid(prefix: &str) -> Option<i64> {
    let open = prefix.find('[')?;
    let close = prefix[open..].find(']')? + open;
    prefix[open + 1..close].trim().parse().ok()
}

/// Parses log lines (each optionally with the time Docker recorded it) into entries, oldest
/// first.
pub fn parse<'a>(lines: impl IntoIterator<Item = (Option<&'a str>, &'a str)>) -> Vec<LogEntry> {
    let mut out: Vec<LogEntry> = Vec::new();
    for (docker_time, raw) in lines {
        let line = raw.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            continue;
        }
        // A continuation of the previous entry's text (PostgreSQL indents them with a tab).
        if line.starts_with('\t') {
            if let Some(last) = out.last_mut() {
                let target = if !last.statement.is_empty() {
                    &mut last.statement
                } else {
                    &mut last.message
                };
                target.push('\n');
                target.push_str(line.trim_start_matches('\t'));
                continue;
            }
        }
        match find_level(line) {
            Some((start, level, after)) => {
                let prefix = &line[..start];
                let text = line[after..].trim_start().to_string();
                let pid = bracket_pid(prefix);
                let time = leading_time(prefix)
                    .or_else(|| docker_time.map(str::to_string))
                    .unwrap_or_default();
                if ATTACHED.contains(&level) {
                    if let Some(last) = out
                        .last_mut()
                        .filter(|l| pid.is_none() || l.pid == pid)
                        .filter(|l| !l.level.is_empty())
                    {
                        let field = match level {
                            "DETAIL" => &mut last.detail,
                            "HINT" => &mut last.hint,
                            "CONTEXT" => &mut last.context,
                            "STATEMENT" | "QUERY" => &mut last.statement,
                            _ => continue,
                        };
                        if !field.is_empty() {
                            field.push('\n');
                        }
                        field.push_str(&text);
                        continue;
                    }
                }
                out.push(LogEntry {
                    time,
                    pid,
                    level: level.to_string(),
                    message: text,
                    ..Default::default()
                });
            }
            None => out.push(LogEntry {
                time: docker_time.map(str::to_string).unwrap_or_default(),
                message: line.to_string(),
                ..Default::default()
            }),
        }
    }
    out
}

/// Splits a line Docker gave with `timestamps: true` ("2026-11-26T15:00:00.123456789Z text")
/// into its time and text.
pub fn split_docker_time(line: &str) -> (Option<&str>, &str) {
    match line.split_once(' ') {
        Some((t, rest)) if t.len() >= 20 && t.as_bytes()[4] == b'-' && t.contains('T') => {
            (Some(t), rest)
        }
        _ => (None, line),
    }
}

/// `since` as seconds: a number of seconds, or "90s", "15m", "2h", "1d".
pub fn parse_since(s: &str) -> Option<i64> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, "s"),
    };
    let n: i64 = num.parse().ok()?;
    let mult = match unit {
        "s" | "sec" | "secs" => 1,
        "m" | "min" | "mins" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    Some(n * mult)
}

/// Keeps PostgreSQL's entries (with `all`, every line), those whose text contains `grep`
/// (case-insensitive), then the last `lines`.
pub fn select(
    entries: Vec<LogEntry>,
    grep: Option<&str>,
    lines: usize,
    all: bool,
) -> Vec<LogEntry> {
    let needle = grep.map(str::to_lowercase);
    let kept: Vec<LogEntry> = entries
        .into_iter()
        .filter(|e| all || e.is_postgres())
        .filter(|e| match &needle {
            Some(n) => e.text().to_lowercase().contains(n),
            None => true,
        })
        .collect();
    let skip = kept.len().saturating_sub(lines);
    kept.into_iter().skip(skip).collect()
}

/// The last thing a node's server said went wrong since `since_unix` (seconds; None: the last
/// lines): its last FATAL or PANIC entry in the container's output, else its last ERROR, as one
/// line with its DETAIL and HINT. For the waits: one that gives up names what it waited for,
/// for how long, and this. None when the log says nothing of the kind or cannot be read.
pub fn last_cause(h: &Host, container: &str, since_unix: Option<i64>) -> Option<String> {
    let lines = h
        .docker
        .logs(container, since_unix, Some(200), &h.cancel)
        .ok()?;
    let entries = parse(lines.iter().map(|l| split_docker_time(l)));
    let worst = |levels: &[&str]| {
        entries
            .iter()
            .rev()
            .find(|e| levels.contains(&e.level.as_str()))
    };
    let e = worst(&["FATAL", "PANIC"]).or_else(|| worst(&["ERROR"]))?;
    let mut s = format!("{}: {}", e.level, e.message);
    for (k, v) in [("DETAIL", &e.detail), ("HINT", &e.hint)] {
        if !v.is_empty() {
            s.push_str(&format!(" ({k}: {v})"));
        }
    }
    Some(h.scrub(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Vec<LogEntry> {
        parse(text.lines().map(|l| (None, l)))
    }

    #[test]
    fn default_prefix_with_detail_and_hint() {
        let e = p(
            "2026-11-26 15:00:00.123 UTC [77] FATAL:  password authentication failed for user \"replicator\"\n\
             2026-11-26 15:00:00.123 UTC [77] DETAIL:  Connection matched file \"/etc/postgresql/pg_hba.conf\" line 5: \"host replication replicator all scram-sha-256\"\n\
             2026-11-26 15:00:01.000 UTC [1] LOG:  checkpoint starting: time\n",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(e[0].time, "2026-11-26 15:00:00.123 UTC");
        assert_eq!(e[0].pid, Some(77));
        assert_eq!(e[0].level, "FATAL");
        assert_eq!(
            e[0].message,
            "password authentication failed for user \"replicator\""
        );
        assert!(e[0].detail.starts_with("Connection matched file"), "{e:?}");
        assert_eq!(e[1].level, "LOG");
        assert_eq!(e[1].pid, Some(1));
    }

    #[test]
    fn statements_continuations_and_foreign_lines() {
        let e = p("PostgreSQL init process complete; ready for start up.\n\
             2026-11-26 15:00:02.5 UTC [90] ERROR:  relation \"nope\" does not exist at character 15\n\
             2026-11-26 15:00:02.5 UTC [90] STATEMENT:  SELECT * FROM\n\
             \tnope\n\
             2026-11-26 15:00:03 UTC [91] HINT:  orphan hint of another pid\n");
        assert_eq!(e.len(), 3, "{e:?}");
        assert_eq!(e[0].level, "");
        assert!(e[0].message.starts_with("PostgreSQL init process"));
        assert_eq!(e[1].statement, "SELECT * FROM\nnope");
        // A HINT of another pid is not attached to pid 90's error.
        assert_eq!(e[2].level, "HINT");
        assert_eq!(e[1].hint, "");
    }

    #[test]
    fn a_colon_in_the_message_is_not_a_level() {
        let e = p("2026-11-26 15:00:00 UTC [5] LOG:  started streaming WAL from primary at 0/3000000 on timeline 1\n\
                   2026-11-26 15:00:00 UTC [5] FATAL:  could not connect to the primary server: connection to server at \"pg-bases2\" (172.18.0.2), port 5432 failed: FATAL:  password authentication failed for user \"replicator\"\n");
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].level, "FATAL");
        assert!(e[1]
            .message
            .starts_with("could not connect to the primary server"));
        assert!(e[1].message.ends_with("for user \"replicator\""));
    }

    #[test]
    fn docker_times_fill_in_and_grep_and_lines_select() {
        let raw = [
            "2026-11-26T15:00:00.000000001Z LOG:  database system is ready to accept connections",
            "2026-11-26T15:00:01.000000001Z FATAL:  password authentication failed for user \"replicator\"",
            "2026-11-26T15:00:02.000000001Z FATAL:  password authentication failed for user \"replicator\"",
        ];
        let e = parse(raw.iter().map(|l| split_docker_time(l)));
        assert_eq!(e[0].time, "2026-11-26T15:00:00.000000001Z");
        let sel = select(e.clone(), Some("PASSWORD"), 1, false);
        assert_eq!(sel.len(), 1);
        assert_eq!(sel[0].time, "2026-11-26T15:00:02.000000001Z");
        assert_eq!(select(e, None, 10, false).len(), 3);
    }

    #[test]
    fn the_default_is_the_servers_entries_and_all_marks_the_others() {
        let raw = "2026-11-26 15:00:00.000 UTC [9] LOG:  checkpoint starting: time\n\
                   2026-11-26 15:00:01.000 P00   INFO: archive-push command begin 2.54: [pg_wal/000000010000000000000003]\n\
                   2026-11-26 15:00:01.000 P00   INFO: pushed WAL file '000000010000000000000003' to the archive\n\
                   2026-11-26 15:00:01.000 P00   INFO: archive-push command end: completed successfully (51ms)\n";
        let e = p(raw);
        let server = select(e.clone(), None, 2, false);
        assert_eq!(server.len(), 1, "{server:?}");
        assert_eq!(server[0].level, "LOG");
        let all = select(e, None, 2, true);
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|x| !x.is_postgres()), "{all:?}");
    }

    #[test]
    fn log_lines_fit_the_width_with_detail_below() {
        let e = p(
            "2026-11-26 15:00:00.123 UTC [77] FATAL:  recovery aborted because of insufficient parameter settings\n\
             2026-11-26 15:00:00.123 UTC [77] DETAIL:  max_connections = 100 is a lower setting than on the primary server, where its value was 300.\n\
             2026-11-26 15:00:00.123 UTC [77] HINT:  You can restart the server after making the necessary configuration changes.\n\
             2026-11-26 15:00:01.000 UTC [1] LOG:  aVeryLongWordWithoutSpacesThatIsLongerThanAnyLineCanHoldAtEightyColumnsInTheTerminalWindowX\n",
        );
        let text = format_lines(&e, 80);
        for l in text.lines() {
            assert!(l.chars().count() <= 80, "{l:?}\n{text}");
        }
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("2026-11-26 15:00:00 UTC FATAL   recovery aborted"),
            "{text}"
        );
        assert!(
            text.contains("\n    DETAIL: max_connections = 100"),
            "{text}"
        );
        assert!(text.contains("\n    HINT: You can restart"), "{text}");
        assert!(
            text.contains("2026-11-26 15:00:01 UTC LOG     aVeryLong"),
            "{text}"
        );
        assert_eq!(
            short_time("2026-11-26T15:00:02.000000001Z"),
            "2026-11-26 15:00:02 UTC"
        );
    }

    #[test]
    fn since_accepts_units() {
        assert_eq!(parse_since("90"), Some(90));
        assert_eq!(parse_since("15m"), Some(900));
        assert_eq!(parse_since("2h"), Some(7200));
        assert_eq!(parse_since("1d"), Some(86400));
        assert_eq!(parse_since("soon"), None);
    }
}
