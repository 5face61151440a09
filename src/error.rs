//! Errors as the user sees them: a class (which decides the exit code), a message, and where it
//! happened (runbook `file:line:col`, step, node), rendered with the source line and a caret.
//!
//! Why classes: a script that calls pgrunbook (cron, CI, another tool) must tell "you typed it
//! wrong" from "the cluster said no" from "Docker is down" without parsing text. The codes are
//! listed in `docs/errors.md` and never change meaning.

use std::fmt;

/// What kind of failure, and so which exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Bad command line, unknown runbook, bad parameter, bad configuration: exit 2.
    Usage,
    /// The runbook itself is wrong: syntax error, runtime error, SQL error, unknown node: exit 3.
    Runbook,
    /// The cluster is not in a state the procedure accepts, or a check failed: exit 4.
    Refused,
    /// Docker, PostgreSQL or a container cannot be reached: exit 5.
    Infrastructure,
    /// Stopped by Ctrl-C, a timeout or the operation limit: exit 130.
    Interrupted,
}

impl Class {
    pub fn exit_code(self) -> u8 {
        match self {
            Class::Usage => 2,
            Class::Runbook => 3,
            Class::Refused => 4,
            Class::Infrastructure => 5,
            Class::Interrupted => 130,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Class::Usage => "usage",
            Class::Runbook => "runbook error",
            Class::Refused => "refused",
            Class::Infrastructure => "unreachable",
            Class::Interrupted => "interrupted",
        }
    }
}

/// A position in a runbook or module source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// A failure with everything needed to explain it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub class: Class,
    pub message: String,
    pub location: Option<Location>,
    /// The source line at `location`, for the caret.
    pub source_line: Option<String>,
    pub step: Option<String>,
    /// Outer frames: function calls the error passed through, innermost first.
    pub trace: Vec<String>,
    /// For a failed run: the changes it made before failing (`None` outside a run).
    pub changes: Option<Vec<String>>,
}

impl Failure {
    pub fn new(class: Class, message: impl Into<String>) -> Failure {
        Failure {
            class,
            message: message.into(),
            location: None,
            source_line: None,
            step: None,
            trace: vec![],
            changes: None,
        }
    }

    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(Class::Usage, message)
    }

    /// One line: `error[class]: message at file:line:col (step "x")`.
    pub fn one_line(&self) -> String {
        let mut s = self.message.clone();
        if let Some(l) = &self.location {
            s.push_str(&format!(" at {l}"));
        }
        if let Some(st) = &self.step {
            s.push_str(&format!(" (step \"{st}\")"));
        }
        s
    }

    /// The full rendering, with the source line and a caret under the column. A refusal (exit
    /// code 4) is the cluster saying no, not a mistake in the script: it reads as one, with no
    /// source excerpt (`render_verbose` shows it).
    pub fn render(&self) -> String {
        if self.class == Class::Refused {
            return self.render_refusal();
        }
        self.render_verbose()
    }

    /// A refusal: its message, whether anything was changed before it, where (file:line), and
    /// the exit code.
    fn render_refusal(&self) -> String {
        let mut out = format!("refused: {}\n", self.message);
        let said = self
            .message
            .to_ascii_lowercase()
            .contains("nothing was changed")
            || self
                .message
                .to_ascii_lowercase()
                .contains("nothing was promoted");
        match &self.changes {
            Some(c) if c.is_empty() && !said => out.push_str("  nothing was changed\n"),
            Some(c) if !c.is_empty() => {
                out.push_str(&format!("  changed before the refusal: {}\n", c.join("; ")))
            }
            _ => {}
        }
        if let Some(l) = &self.location {
            out.push_str(&format!("  at {l}"));
            if let Some(st) = &self.step {
                out.push_str(&format!(" in step \"{st}\""));
            }
            out.push('\n');
        } else if let Some(st) = &self.step {
            out.push_str(&format!("  in step \"{st}\"\n"));
        }
        out.push_str(&format!(
            "  = {} (exit code {})\n",
            self.class.name(),
            self.class.exit_code()
        ));
        out
    }

    /// The full rendering whatever the class, with the source line and a caret (`--verbose`).
    pub fn render_verbose(&self) -> String {
        let mut out = format!("error: {}\n", self.message);
        if let Some(l) = &self.location {
            out.push_str(&format!("  --> {l}"));
            if let Some(st) = &self.step {
                out.push_str(&format!(" in step \"{st}\""));
            }
            out.push('\n');
            if let Some(src) = &self.source_line {
                let num = l.line.to_string();
                let pad = " ".repeat(num.len());
                out.push_str(&format!("{pad} |\n{num} | {src}\n{pad} | "));
                out.push_str(&" ".repeat(l.col.saturating_sub(1)));
                out.push_str("^\n");
            }
        } else if let Some(st) = &self.step {
            out.push_str(&format!("  in step \"{st}\"\n"));
        }
        for t in &self.trace {
            out.push_str(&format!("  = {t}\n"));
        }
        out.push_str(&format!(
            "  = {} (exit code {})\n",
            self.class.name(),
            self.class.exit_code()
        ));
        out
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.one_line())
    }
}

impl std::error::Error for Failure {}

/// The error a primitive raises, as it travels through Rhai: its class (so the exit code), the
/// primitive and the node it was about, and what went wrong. `Host::error` and `Host::fail` wrap
/// it in `EvalAltResult::ErrorRuntime`; a script that catches it gets this value (its text is the
/// message, see `engine::register_error_type`); a script that throws it again keeps its class;
/// `engine::to_failure` reads the class from it. So no error is ever classified by its text.
///
/// It lives here, beside `Class` and `Failure`, because it is plain data that three layers share:
/// `runtime` raises it, `engine` registers it with Rhai and turns it into a `Failure`, `commands`
/// may show it. Nothing here knows Rhai.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimitiveError {
    pub class: Class,
    /// The primitive that raised it, when its raiser said so (`Host::fail` does; the callers of
    /// `Host::error` write it into `cause` themselves, as in `"node_info: unknown node"`).
    pub primitive: Option<String>,
    /// The node it was about, when there is one.
    pub node: Option<String>,
    /// What went wrong (secrets masked), without the primitive and node.
    pub cause: String,
    /// Where the primitive was called: set once, as it returns the error (see
    /// `primitives::located`), so that a script that catches it and throws it again (`throw e`)
    /// still points at the call that failed, not at its `throw`. `file` is the runbook or module
    /// the call is in, "" when the script has no name.
    pub raised_at: Option<Location>,
}

impl PrimitiveError {
    /// An error whose text is `message` as it is: the primitive and node, if any, are in it.
    pub fn new(class: Class, message: impl Into<String>) -> PrimitiveError {
        PrimitiveError {
            class,
            primitive: None,
            node: None,
            cause: message.into(),
            raised_at: None,
        }
    }
}

/// The message: `primitive on node: cause`, `primitive: cause`, or the cause alone.
impl fmt::Display for PrimitiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.primitive, &self.node) {
            (Some(p), Some(n)) => write!(f, "{p} on {n}: {}", without_node(&self.cause, n)),
            (Some(p), None) => write!(f, "{p}: {}", self.cause),
            (None, _) => f.write_str(&self.cause),
        }
    }
}

impl std::error::Error for PrimitiveError {}

/// The cause of an error already prefixed with "primitive on NODE: ", without the node named a
/// second time at its start: "SQL error on pg-replica: x" is "SQL error: x", "connection to node
/// pg-replica failed: x" is "connection failed: x".
fn without_node(cause: &str, node: &str) -> String {
    let head = cause.char_indices().nth(60).map_or(cause.len(), |(i, _)| i);
    for (pat, with) in [
        (format!(" on {node}: "), ": "),
        (format!(" to node {node} "), " "),
    ] {
        if let Some(i) = cause[..head].find(&pat) {
            return format!("{}{with}{}", &cause[..i], &cause[i + pat.len()..]);
        }
    }
    cause.to_string()
}

/// What `sql` and `sql_value` give a script, in a dry run, for a statement they did not run
/// (it writes, or may): not a result. Using it (comparing it, indexing it, taking its length)
/// stops the dry run there, the plan so far printed and marked "not simulated past here"; a
/// script that only runs the statement goes on. `what` names the statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotSimulated {
    pub what: String,
}

/// Finds the class of an `anyhow` error: a `Failure` inside keeps its class, anything else is
/// `default`.
pub fn class_of(err: &anyhow::Error, default: Class) -> Class {
    err.chain()
        .find_map(|e| e.downcast_ref::<Failure>().map(|f| f.class))
        .or_else(|| {
            // A Docker engine that stopped answering mid-run: infrastructure, as at connect.
            err.chain()
                .any(crate::clients::docker::is_engine_unreachable)
                .then_some(Class::Infrastructure)
        })
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_has_caret_under_column() {
        let f = Failure {
            class: Class::Runbook,
            message: "boom".into(),
            location: Some(Location {
                file: "runbooks/x.rhai".into(),
                line: 12,
                col: 5,
            }),
            source_line: Some("    sql(\"x\", \"y\");".into()),
            step: Some("Do it".into()),
            trace: vec![],
            changes: None,
        };
        let r = f.render();
        assert!(
            r.contains("--> runbooks/x.rhai:12:5 in step \"Do it\""),
            "{r}"
        );
        let lines: Vec<&str> = r.lines().collect();
        let src = lines.iter().position(|l| l.starts_with("12 |")).unwrap();
        let caret = lines[src + 1];
        assert_eq!(caret.find('^').unwrap(), "12 | ".len() + 4, "{r}");
        assert!(f
            .one_line()
            .contains("boom at runbooks/x.rhai:12:5 (step \"Do it\")"));
    }

    #[test]
    fn a_refusal_reads_as_one_and_says_what_was_changed() {
        let mut f = Failure::new(Class::Refused, "pg-replica is down");
        f.location = Some(Location {
            file: "runbooks/x.rhai".into(),
            line: 3,
            col: 1,
        });
        f.source_line = Some("refuse(\"pg-replica is down\");".into());
        f.changes = Some(vec![]);
        let r = f.render();
        assert_eq!(
            r,
            "refused: pg-replica is down\n  nothing was changed\n  at runbooks/x.rhai:3:1\n  = refused (exit code 4)\n"
        );
        assert!(f.render_verbose().contains("3 | refuse("));
        f.changes = Some(vec!["fence on pg-bases2".into()]);
        assert!(f
            .render()
            .contains("changed before the refusal: fence on pg-bases2"));
        // A message that says it already is not repeated.
        f.message = "no. Nothing was changed.".into();
        f.changes = Some(vec![]);
        assert!(!f.render().contains("  nothing was changed"));
    }

    #[test]
    fn a_message_names_its_node_once() {
        let e = PrimitiveError {
            class: Class::Runbook,
            primitive: Some("sql".into()),
            node: Some("pg-replica".into()),
            cause: "SQL error on pg-replica: column \"x\" does not exist (SQLSTATE 42703)".into(),
            raised_at: None,
        };
        assert_eq!(
            e.to_string(),
            "sql on pg-replica: SQL error: column \"x\" does not exist (SQLSTATE 42703)"
        );
        let e = PrimitiveError {
            cause: "connection to node pg-replica failed: refused".into(),
            ..e
        };
        assert_eq!(
            e.to_string(),
            "sql on pg-replica: connection failed: refused"
        );
    }

    #[test]
    fn exit_codes_are_distinct() {
        let all = [
            Class::Usage,
            Class::Runbook,
            Class::Refused,
            Class::Infrastructure,
            Class::Interrupted,
        ];
        let mut codes: Vec<u8> = all.iter().map(|c| c.exit_code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        assert!(!codes.contains(&0) && !codes.contains(&1));
    }
}
