//! The REPL's history file, `<data dir>/repl_history` (`~/.local/share/pgrunbook/` by default,
//! `PGRUNBOOK_DATA_DIR` when set), mode 0600. It never holds a configured password: an input
//! holding one is not added to the history at all, and before every save each entry still
//! holding one (say, from a file an older pgrunbook wrote) has it masked.

use rustyline::history::{FileHistory, History as _};
use rustyline::{Editor, Helper};
use std::path::PathBuf;

const MASK: &str = "********";

pub struct History {
    path: PathBuf,
    /// The configured passwords (`Config::secrets`).
    secrets: Vec<String>,
    /// A failed save was said (once per session).
    warned: std::cell::Cell<bool>,
}

impl History {
    pub fn new(secrets: Vec<String>) -> History {
        History {
            path: crate::config::data_dir().join("repl_history"),
            secrets,
            warned: std::cell::Cell::new(false),
        }
    }

    /// Loads the file into the editor (a missing file is an empty history), masked at once and
    /// written back if it held a password.
    pub fn load<H: Helper>(&self, rl: &mut Editor<H, FileHistory>) {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        // A missing or unreadable file is an empty history: nothing is lost by starting so.
        let _ = rl.load_history(&self.path);
        if self.mask_entries(rl.history_mut()) {
            self.save(rl);
        }
    }

    /// Adds an input to the history and saves it, unless the input holds a password.
    pub fn add<H: Helper>(&self, rl: &mut Editor<H, FileHistory>, input: &str) {
        if self.holds_secret(input) {
            return;
        }
        let _ = rl.add_history_entry(input);
        self.save(rl);
    }

    /// Saves the history, every password in it masked first.
    pub fn save<H: Helper>(&self, rl: &mut Editor<H, FileHistory>) {
        self.mask_entries(rl.history_mut());
        if let Err(e) = rl.save_history(&self.path) {
            if !self.warned.replace(true) {
                crate::errln!(
                    "warning: the REPL's history is not saved to {} ({e}); if that file held a password, it still does",
                    self.path.display()
                );
            }
        }
    }

    fn holds_secret(&self, text: &str) -> bool {
        self.secrets.iter().any(|s| text.contains(s.as_str()))
    }

    fn mask(&self, text: &str) -> String {
        self.secrets
            .iter()
            .fold(text.to_string(), |t, s| t.replace(s.as_str(), MASK))
    }

    /// Masks the passwords in the entries; whether there were any. The entries are added again
    /// in their order, which also makes the next save write the whole file.
    fn mask_entries(&self, h: &mut FileHistory) -> bool {
        if !h.iter().any(|e| self.holds_secret(e)) {
            return false;
        }
        let entries: Vec<String> = h.iter().map(|e| self.mask(e)).collect();
        let _ = h.clear();
        for e in entries {
            let _ = h.add_owned(e);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_with_a_password_are_masked() {
        let h = History {
            path: PathBuf::new(),
            secrets: vec!["s3cret_pw".into(), "r3pl_pw".into()],
            warned: Default::default(),
        };
        assert!(h.holds_secret("let pw = \"s3cret_pw\";"));
        assert!(!h.holds_secret("sql(\"pg-bases2\", \"SELECT 1\")"));
        let mut fh = FileHistory::new();
        fh.add("1 + 1").unwrap();
        fh.add("connect(\"s3cret_pw\", \"r3pl_pw\")").unwrap();
        assert!(h.mask_entries(&mut fh));
        let entries: Vec<&String> = fh.iter().collect();
        assert_eq!(
            entries,
            vec!["1 + 1", "connect(\"********\", \"********\")"]
        );
        assert!(!h.mask_entries(&mut fh));
    }
}
