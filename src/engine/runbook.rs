//! Runbooks: where they are found, and what their header declares.
//!
//! A runbook is looked up in `./runbooks` first, then in the set shipped inside the binary, so a
//! user can override a shipped procedure by copying it into their own `runbooks/` and editing it.
//! The header is plain comments that the host reads without running anything:
//!
//! ```text
//! //! Takes a pgBackRest backup of whichever node is primary now.
//! //!
//! //! param type = "full" (full|diff|incr)  Backup type
//! //! param timeout_s = 600                 Seconds the backup may take
//! ```
//!
//! The first `//!` line is the one-line description `pgrunbook list` shows. Each `param` line
//! names a parameter, its default (whose kind, string, integer, float or bool, is the kind
//! `--set` must give) and optional choices, then a one-line help.

use crate::embedded;
use crate::error::{Class, Failure};
use rhai::Dynamic;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A runbook's source and where it came from.
#[derive(Debug, Clone)]
pub struct Runbook {
    /// Name used with `run` (`setup`, `examples/lag_report`), or the path given.
    pub name: String,
    /// Shown in errors: `runbooks/setup.rhai`, or `<shipped>/runbooks/setup.rhai`.
    pub display_path: String,
    pub source: String,
    pub meta: Meta,
    pub shipped: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub description: String,
    pub params: Vec<Param>,
}

#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub default: Dynamic,
    pub choices: Vec<String>,
    pub help: String,
    /// An integer declared with a size suffix (`16MB`): shown and accepted as a size.
    pub size: bool,
}

/// What a size parameter accepts, for its error message.
pub const SIZE_FORMS: &str =
    "a number of bytes (8388608) or a number with kB, MB, GB or TB (8MB, 512kB)";

impl Param {
    pub fn kind(&self) -> &'static str {
        if self.size {
            "size"
        } else if self.default.is_int() {
            "integer"
        } else if self.default.is_float() {
            "number"
        } else if self.default.is_bool() {
            "bool"
        } else {
            "string"
        }
    }

    /// The default as `list` and `run NAME --help` show it: a size as declared (`16MB`).
    pub fn default_shown(&self) -> String {
        match self.default.as_int() {
            Ok(n) if self.size => format_size(n),
            _ => self.default.to_string(),
        }
    }

    /// Parses a `--set` value into this parameter's kind.
    pub fn parse(&self, raw: &str) -> Result<Dynamic, String> {
        let v = if self.size {
            let n = parse_size(raw).ok_or_else(|| {
                format!(
                    "parameter {} takes a size: {SIZE_FORMS}; not {raw:?}",
                    self.name
                )
            })?;
            Dynamic::from_int(n)
        } else if self.default.is_int() {
            let n = parse_size(raw)
                .ok_or_else(|| format!("parameter {} takes an integer, not {raw:?}", self.name))?;
            Dynamic::from_int(n)
        } else if self.default.is_float() {
            Dynamic::from_float(
                raw.parse()
                    .map_err(|_| format!("parameter {} takes a number, not {raw:?}", self.name))?,
            )
        } else if self.default.is_bool() {
            Dynamic::from_bool(match raw {
                "true" | "yes" | "on" | "1" => true,
                "false" | "no" | "off" | "0" => false,
                _ => {
                    return Err(format!(
                        "parameter {} takes true or false, not {raw:?}",
                        self.name
                    ))
                }
            })
        } else {
            Dynamic::from(raw.to_string())
        };
        if !self.choices.is_empty() && !self.choices.iter().any(|c| c == raw) {
            return Err(format!(
                "parameter {} must be one of {}, not {raw:?}",
                self.name,
                self.choices.join(", ")
            ));
        }
        Ok(v)
    }
}

/// Integers may carry a size suffix, in units of 1024 as PostgreSQL's: `16MB` is 16777216 (for
/// WAL sizes). The unit's case does not matter (`8mb`, `512KB`), a space may precede it, and `B`
/// means bytes.
pub fn parse_size(raw: &str) -> Option<i64> {
    let t = raw.trim();
    let upper = t.to_ascii_uppercase();
    let units: [(&str, i64); 5] = [
        ("TB", 1 << 40),
        ("GB", 1 << 30),
        ("MB", 1 << 20),
        ("KB", 1 << 10),
        ("B", 1),
    ];
    let (num, mult) = units
        .iter()
        .find(|(u, _)| upper.ends_with(u))
        .map(|(u, m)| (&t[..t.len() - u.len()], *m))
        .unwrap_or((t, 1));
    let num = num.trim();
    if num.is_empty() || num.starts_with('+') {
        return None;
    }
    num.parse::<i64>().ok()?.checked_mul(mult)
}

/// A byte count as the largest unit that divides it exactly: 16777216 is `16MB`, 1000 is `1000`.
pub fn format_size(n: i64) -> String {
    for (u, m) in [
        ("TB", 1i64 << 40),
        ("GB", 1 << 30),
        ("MB", 1 << 20),
        ("kB", 1 << 10),
    ] {
        if n != 0 && n % m == 0 {
            return format!("{}{u}", n / m);
        }
    }
    n.to_string()
}

fn parse_literal(s: &str) -> Option<Dynamic> {
    let s = s.trim();
    if let Some(inner) = s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        return Some(Dynamic::from(inner.to_string()));
    }
    match s {
        "true" => return Some(Dynamic::from_bool(true)),
        "false" => return Some(Dynamic::from_bool(false)),
        _ => {}
    }
    if let Ok(i) = s.parse::<i64>() {
        return Some(Dynamic::from_int(i));
    }
    if let Ok(f) = s.parse::<f64>() {
        return Some(Dynamic::from_float(f));
    }
    parse_size(s).map(Dynamic::from_int)
}

/// Reads the `//!` header.
pub fn parse_meta(source: &str, path: &str) -> Result<Meta, Failure> {
    let mut meta = Meta::default();
    for (i, line) in source.lines().enumerate() {
        let Some(text) = line.trim_start().strip_prefix("//!") else {
            if line.trim().is_empty() || line.trim_start().starts_with("//") {
                continue;
            }
            break;
        };
        let text = text.trim();
        if let Some(decl) = text.strip_prefix("param ") {
            let bad = |why: &str| {
                let mut f = Failure::new(
                    Class::Runbook,
                    format!("invalid parameter declaration: {why}"),
                );
                f.location = Some(crate::error::Location {
                    file: path.to_string(),
                    line: i + 1,
                    col: 1,
                });
                f.source_line = Some(line.to_string());
                f
            };
            let (name, rest) = decl
                .split_once('=')
                .ok_or_else(|| bad("expected `param NAME = DEFAULT help`"))?;
            let name = name.trim().to_string();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(bad(&format!("{name:?} is not a valid parameter name")));
            }
            let rest = rest.trim();
            // The default runs to the end of the quoted string, or to the first space.
            let (lit, after) = if let Some(inner) = rest.strip_prefix('"') {
                let end = inner.find('"').ok_or_else(|| bad("unterminated string"))? + 2;
                (&rest[..end], &rest[end..])
            } else {
                rest.split_at(rest.find(char::is_whitespace).unwrap_or(rest.len()))
            };
            let default = parse_literal(lit)
                .ok_or_else(|| bad(&format!("{lit:?} is not a string, number or bool")))?;
            let size = default.is_int() && lit.trim().parse::<i64>().is_err();
            let mut after = after.trim();
            let mut choices = vec![];
            if after.starts_with('(') {
                let end = after.find(')').ok_or_else(|| bad("unclosed choice list"))?;
                choices = after[1..end]
                    .split('|')
                    .map(|c| c.trim().to_string())
                    .collect();
                after = after[end + 1..].trim();
            }
            meta.params.push(Param {
                name,
                default,
                choices,
                help: after.to_string(),
                size,
            });
        } else if meta.description.is_empty() && !text.is_empty() {
            meta.description = text.to_string();
        }
    }
    Ok(meta)
}

impl Runbook {
    fn new(
        name: String,
        display_path: String,
        source: String,
        shipped: bool,
    ) -> Result<Runbook, Failure> {
        let meta = parse_meta(&source, &display_path)?;
        Ok(Runbook {
            name,
            display_path,
            source,
            meta,
            shipped,
        })
    }

    /// Finds a runbook by name (`./runbooks/NAME.rhai`, then shipped) or by path.
    pub fn find(name: &str) -> Result<Runbook, Failure> {
        if name.ends_with(".rhai") || name.contains('/') && Path::new(name).exists() {
            let p = PathBuf::from(name);
            let source = std::fs::read_to_string(&p)
                .map_err(|e| Failure::usage(format!("cannot read runbook {name}: {e}")))?;
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Runbook::new(stem, name.to_string(), source, false);
        }
        let local = PathBuf::from("runbooks").join(format!("{name}.rhai"));
        if local.exists() {
            let source = std::fs::read_to_string(&local)
                .map_err(|e| Failure::usage(format!("cannot read {}: {e}", local.display())))?;
            return Runbook::new(name.to_string(), local.display().to_string(), source, false);
        }
        let key = format!("{name}.rhai");
        if let Some((_, src)) = embedded::RUNBOOKS.iter().find(|(p, _)| *p == key) {
            return Runbook::new(
                name.to_string(),
                format!("<shipped>/runbooks/{key}"),
                src.to_string(),
                true,
            );
        }
        let known: Vec<String> = Runbook::scan().0.into_iter().map(|r| r.name).collect();
        let hint = crate::suggest::nearest(name, known.iter().map(String::as_str))
            .map(|s| format!("; did you mean '{s}'?"))
            .unwrap_or_default();
        Err(Failure::usage(format!(
            "unknown runbook '{name}' (not in ./runbooks nor shipped){hint} `pgrunbook list` shows them all"
        )))
    }

    /// Every runbook: local ones, then shipped ones not overridden. A runbook whose header does
    /// not parse (or a local one that cannot be read) is an error naming its file and line, not
    /// a runbook silently left out.
    pub fn all() -> Result<Vec<Runbook>, Failure> {
        let (found, problems) = Runbook::scan();
        match problems.into_iter().next() {
            Some(f) => Err(f),
            None => Ok(found),
        }
    }

    /// Every runbook that loads (local ones, then shipped ones not overridden), and the failures
    /// of those that do not. A local runbook that fails hides the shipped one of its name.
    pub fn scan() -> (Vec<Runbook>, Vec<Failure>) {
        let mut by_name: BTreeMap<String, Runbook> = BTreeMap::new();
        let mut problems = vec![];
        for (rel, src) in embedded::RUNBOOKS {
            let name = rel.trim_end_matches(".rhai").to_string();
            match Runbook::new(
                name.clone(),
                format!("<shipped>/runbooks/{rel}"),
                src.to_string(),
                true,
            ) {
                Ok(r) => {
                    by_name.insert(name, r);
                }
                Err(f) => problems.push(f),
            }
        }
        let mut local = vec![];
        collect_local(Path::new("runbooks"), Path::new("runbooks"), &mut local);
        local.sort();
        for (name, path) in local {
            let loaded = std::fs::read_to_string(&path)
                .map_err(|e| {
                    Failure::new(
                        Class::Runbook,
                        format!("cannot read runbook {}: {e}", path.display()),
                    )
                })
                .and_then(|src| Runbook::new(name.clone(), path.display().to_string(), src, false));
            match loaded {
                Ok(r) => {
                    by_name.insert(name, r);
                }
                Err(f) => {
                    by_name.remove(&name);
                    problems.push(f);
                }
            }
        }
        (by_name.into_values().collect(), problems)
    }
}

fn collect_local(dir: &Path, base: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_local(&p, base, out);
        } else if p.extension().is_some_and(|x| x == "rhai") {
            let rel = p.strip_prefix(base).unwrap().with_extension("");
            out.push((rel.to_string_lossy().replace('\\', "/"), p));
        }
    }
}

/// Finds a stdlib module's source: `./stdlib/NAME.rhai`, then shipped. Returns (display path, text).
pub fn find_module(name: &str) -> Option<(String, String)> {
    let local = PathBuf::from("stdlib").join(format!("{name}.rhai"));
    if let Ok(src) = std::fs::read_to_string(&local) {
        return Some((local.display().to_string(), src));
    }
    let key = format!("{name}.rhai");
    embedded::STDLIB
        .iter()
        .find(|(p, _)| *p == key)
        .map(|(_, s)| (format!("<shipped>/stdlib/{key}"), s.to_string()))
}

/// What `import "PATH"` reads: a path ending in `.rhai` as a file, else a stdlib module.
/// Returns (name used in errors, text).
pub fn find_import(path: &str) -> Option<(String, String)> {
    if path.ends_with(".rhai") {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| (path.to_string(), s))
    } else {
        find_module(path)
    }
}

/// Names of every stdlib module (local and shipped).
pub fn module_names() -> Vec<String> {
    let mut names: Vec<String> = embedded::STDLIB
        .iter()
        .map(|(p, _)| p.trim_end_matches(".rhai").to_string())
        .collect();
    if let Ok(entries) = std::fs::read_dir("stdlib") {
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "rhai") {
                if let Some(s) = p.file_stem() {
                    names.push(s.to_string_lossy().into_owned());
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_parsed() {
        let src = r#"//! Takes a backup.
//!
//! param type = "full" (full|diff|incr)  Backup type
//! param timeout_s = 600  Seconds
//! param force = false  Promote even if behind
//! param max_lag = 16MB  Largest lag
let x = 1;
//! param ignored = 1 after code
"#;
        let m = parse_meta(src, "x.rhai").unwrap();
        assert_eq!(m.description, "Takes a backup.");
        assert_eq!(
            m.params.len(),
            4,
            "the header ends at the first code line: {:?}",
            m.params
        );
        assert_eq!(m.params[3].default.as_int().unwrap(), 16 << 20);
    }

    #[test]
    fn params_parse_by_kind() {
        let src = "//! d\n//! param type = \"full\" (full|diff|incr) Backup type\n//! param n = 5 count\n//! param force = false f\n";
        let m = parse_meta(src, "x.rhai").unwrap();
        let t = &m.params[0];
        assert_eq!(t.choices, vec!["full", "diff", "incr"]);
        assert_eq!(t.help, "Backup type");
        assert!(t.parse("incr").is_ok());
        let e = t.parse("weekly").unwrap_err();
        assert!(
            e.contains("full, diff, incr") && e.contains("weekly"),
            "{e}"
        );
        let n = &m.params[1];
        assert_eq!(n.parse("7").unwrap().as_int().unwrap(), 7);
        assert_eq!(n.parse("16MB").unwrap().as_int().unwrap(), 16 << 20);
        assert!(n.parse("seven").unwrap_err().contains("takes an integer"));
        let f = &m.params[2];
        assert!(f.parse("true").unwrap().as_bool().unwrap());
        assert!(f.parse("maybe").is_err());
    }

    #[test]
    fn size_params_are_shown_and_accepted_as_sizes() {
        let src = "//! d\n//! param max_lag = 16MB lag\n//! param n = 5 count\n";
        let m = parse_meta(src, "x.rhai").unwrap();
        let p = &m.params[0];
        assert_eq!(p.kind(), "size");
        assert_eq!(p.default_shown(), "16MB");
        assert_eq!(p.parse("8MB").unwrap().as_int().unwrap(), 8 << 20);
        assert_eq!(p.parse("8388608").unwrap().as_int().unwrap(), 8 << 20);
        assert_eq!(p.parse("8 mb").unwrap().as_int().unwrap(), 8 << 20);
        assert_eq!(p.parse("512kB").unwrap().as_int().unwrap(), 512 << 10);
        assert_eq!(p.parse("1GB").unwrap().as_int().unwrap(), 1 << 30);
        let e = p.parse("8 megs").unwrap_err();
        assert!(
            e.contains("takes a size") && e.contains("8MB") && e.contains("8388608"),
            "{e}"
        );
        assert!(p.parse("MB").is_err());
        assert!(p.parse("-").is_err());
        // A plain integer stays an integer.
        let n = &m.params[1];
        assert_eq!(n.kind(), "integer");
        assert_eq!(n.default_shown(), "5");
        assert_eq!(format_size(16 << 20), "16MB");
        assert_eq!(format_size(1 << 30), "1GB");
        assert_eq!(format_size(1536), "1536");
        assert_eq!(format_size(0), "0");
        assert_eq!(parse_size("99999999999TB"), None, "overflow");
    }

    #[test]
    fn bad_declaration_has_a_position() {
        let e = parse_meta("//! d\n//! param 9x y = 1\n", "r.rhai").unwrap_err();
        assert_eq!(e.location.unwrap().line, 2);
    }

    #[test]
    fn shipped_runbooks_have_descriptions() {
        // From the embedded set, not Runbook::all(): tests run in the crate's folder, where the
        // local runbooks/ overrides every shipped one.
        let names: Vec<&str> = embedded::RUNBOOKS
            .iter()
            .map(|(rel, _)| rel.trim_end_matches(".rhai"))
            .collect();
        for name in ["backup", "failback", "failover", "setup", "verify"] {
            assert!(names.contains(&name), "{name} is not shipped: {names:?}");
        }
        for (rel, src) in embedded::RUNBOOKS {
            let meta = parse_meta(src, rel).unwrap_or_else(|f| panic!("{}", f.render()));
            assert!(!meta.description.is_empty(), "{rel} has no description");
        }
    }
}
