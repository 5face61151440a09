//! Masking secrets in what pgrunbook prints, journals and remembers.
//!
//! Two ways, for two kinds of text:
//!
//! - **By shape** (`mask_shapes`), for everything: the value after `password=` in a libpq
//!   connection string (`primary_conninfo`), after `PGPASSWORD=` in an environment, and the
//!   password of a URL (`redis://:pw@host`). Whatever the value is, it is masked, so this says
//!   nothing about what the password might be.
//! - **By value** (`mask_values`), only for text pgrunbook itself wrote: errors of the backends
//!   (a client may echo a connection string in its own words), journal entries. Masking any
//!   string that equals a configured password in what a *user* typed or printed would confirm a
//!   guess: `print("x replica_pass y")` showing `x ******** y` says the guess is right. So
//!   script output (`print`, `debug`, `warn`, tables, REPL values, a `throw`n text) is masked by
//!   shape only.
//!
//! Masking guards against showing a secret by accident (a screen shared, a log pasted). It is not
//! a boundary against someone who can run scripts: they can read the files of the containers.

const MASK: &str = "********";

/// Secrets learnt during the run, beyond the configured ones (a new replication password read
/// by `load_replication_password`): masked by value like the configured ones.
static LEARNT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Adds a secret to mask by value from now on, wherever the configured passwords are masked.
pub fn learn(secret: &str) {
    let mut l = LEARNT.lock().unwrap_or_else(|e| e.into_inner());
    if !secret.is_empty() && !l.iter().any(|s| s == secret) {
        l.push(secret.to_string());
    }
}

/// The secrets learnt during the run (see `learn`).
pub fn learnt() -> Vec<String> {
    LEARNT.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Masks the values of `password=`, `PGPASSWORD=` and URL passwords.
pub fn mask_shapes(text: &str) -> String {
    let mut out = mask_after(text, "password=");
    out = mask_url_passwords(&out);
    out
}

/// Masks every occurrence of each secret.
pub fn mask_values(text: &str, secrets: &[String]) -> String {
    let mut t = text.to_string();
    for s in secrets {
        if !s.is_empty() && t.contains(s.as_str()) {
            t = t.replace(s.as_str(), MASK);
        }
    }
    t
}

/// Masks the value after each `key` (any case; `PGPASSWORD=` ends in `password=` too): a
/// single-quoted value (libpq's quoting, with `\'` inside) or up to the next space or quote.
fn mask_after(text: &str, key: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(found) = lower[i..].find(key) {
        let start = i + found + key.len();
        out.push_str(&text[i..start]);
        let rest = &text[start..];
        // In postgresql.auto.conf the conninfo is itself a quoted string, so its quotes are
        // doubled: password=''secret''.
        let len = if let Some(q) = rest.strip_prefix("''") {
            q.find("''").map(|j| j + 4).unwrap_or(rest.len())
        } else if let Some(q) = rest.strip_prefix('\'') {
            let mut end = None;
            let mut escaped = false;
            for (j, c) in q.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '\'' if !escaped => {
                        end = Some(j + 2);
                        break;
                    }
                    _ => escaped = false,
                }
            }
            end.unwrap_or(rest.len())
        } else {
            rest.find(|c: char| c.is_whitespace() || c == '\'' || c == '"')
                .unwrap_or(rest.len())
        };
        if len > 0 {
            out.push_str(MASK);
        }
        i = start + len;
    }
    out.push_str(&text[i..]);
    out
}

/// `scheme://user:secret@host` → `scheme://user:********@host`.
fn mask_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(found) = text[i..].find("://") {
        let auth_start = i + found + 3;
        out.push_str(&text[i..auth_start]);
        let rest = &text[auth_start..];
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '/' || c == '"' || c == '\'')
            .unwrap_or(rest.len());
        let authority = &rest[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon + 1]);
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        i = auth_start + end;
    }
    out.push_str(&text[i..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_passwords_are_masked_whatever_they_are() {
        assert_eq!(
            mask_shapes("user=replicator password=replica_pass host=pg-bases2"),
            "user=replicator password=******** host=pg-bases2"
        );
        assert_eq!(
            mask_shapes("primary_conninfo = 'user=r password=''s3cret'' host=x'"),
            "primary_conninfo = 'user=r password=******** host=x'"
        );
        assert_eq!(
            mask_shapes("password='a b\\'c' port=5432"),
            "password=******** port=5432"
        );
        assert_eq!(
            mask_shapes("PGPASSWORD=s3cret psql"),
            "PGPASSWORD=******** psql"
        );
        assert_eq!(mask_shapes("password= nothing"), "password= nothing");
    }

    #[test]
    fn url_passwords_are_masked() {
        assert_eq!(
            mask_shapes("redis://:r3dis@127.0.0.1:6379/0 and http://host/x"),
            "redis://:********@127.0.0.1:6379/0 and http://host/x"
        );
        assert_eq!(
            mask_shapes("postgres://u:pw@h:5432/db"),
            "postgres://u:********@h:5432/db"
        );
    }

    #[test]
    fn a_guess_in_plain_text_is_not_confirmed() {
        // By shape, a string equal to a password is left alone: no oracle.
        assert_eq!(mask_shapes("x replica_pass y"), "x replica_pass y");
        // By value (for pgrunbook's own text), it is masked.
        assert_eq!(
            mask_values("x replica_pass y", &["replica_pass".into()]),
            "x ******** y"
        );
    }
}
