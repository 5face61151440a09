//! Progress of long steps (a base backup, a pgBackRest backup): a bar on a terminal, plain
//! lines elsewhere (CI logs, pipes), at most one every few seconds so logs stay short.

use crate::outln;
use std::time::{Duration, Instant};

pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    label: String,
    last_line: Instant,
}

impl Progress {
    pub fn new(label: &str, tty: bool) -> Progress {
        let bar = tty.then(|| {
            let b = indicatif::ProgressBar::new(100);
            b.set_style(
                indicatif::ProgressStyle::with_template("    {msg} [{bar:30}] {pos}% {elapsed}")
                    .unwrap()
                    .progress_chars("=> "),
            );
            b.set_message(label.to_string());
            b
        });
        Progress {
            bar,
            label: label.to_string(),
            last_line: Instant::now(),
        }
    }

    /// Feeds a line of the tool's output; a percentage in it moves the bar.
    pub fn line(&mut self, line: &str) {
        let pct = percent_in(line);
        match (&self.bar, pct) {
            (Some(b), Some(p)) => b.set_position(p),
            (Some(_), None) => {}
            (None, _) => {
                if self.last_line.elapsed() >= Duration::from_secs(2) {
                    self.last_line = Instant::now();
                    outln!("    {}: {}", self.label, line.trim());
                }
            }
        }
    }

    pub fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}

/// `"123/456 kB (27%), 0/1 tablespace"` gives 27; pgBackRest's `(27.12%)` gives 27.
pub fn percent_in(line: &str) -> Option<u64> {
    let i = line.find('%')?;
    let head = &line[..i];
    let start = head
        .rfind(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|j| j + 1)
        .unwrap_or(0);
    head[start..]
        .parse::<f64>()
        .ok()
        .map(|p| p.clamp(0.0, 100.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages() {
        assert_eq!(percent_in("123/456 kB (27%), 0/1 tablespace"), Some(27));
        assert_eq!(
            percent_in("backup file /x (8KB, 27.12%) checksum"),
            Some(27)
        );
        assert_eq!(percent_in("no number here"), None);
    }
}
