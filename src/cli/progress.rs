//! Progress of long work (`audit verify`, `audit export`, `compact`, `migrate`) on stderr:
//! a line rewritten in place about every quarter second when stderr is a terminal, and
//! nothing otherwise, so scripts and logs get only the final summary.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often the line is rewritten.
const EVERY: Duration = Duration::from_millis(250);

/// One piece of long work's progress line.
pub(crate) struct Progress {
    what: &'static str,
    total: Option<u64>,
    unit: &'static str,
    shown: Option<Instant>,
    started: Instant,
    on: bool,
}

impl Progress {
    /// Progress of `what` over `total` `unit`s (if known), shown only on a terminal.
    pub(crate) fn new(what: &'static str, total: Option<u64>, unit: &'static str) -> Progress {
        Progress::showing(what, total, unit, std::io::stderr().is_terminal())
    }

    fn showing(what: &'static str, total: Option<u64>, unit: &'static str, on: bool) -> Progress {
        Progress {
            what,
            total,
            unit,
            shown: None,
            started: Instant::now(),
            on,
        }
    }

    /// `done` units are done; the line is rewritten if it is time.
    pub(crate) fn set(&mut self, done: u64) {
        if !self.on || self.shown.is_some_and(|at| at.elapsed() < EVERY) {
            return;
        }
        self.shown = Some(Instant::now());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{}", self.line(done));
        let _ = err.flush();
    }

    /// The work is over: the line goes, so the summary that follows stands alone.
    pub(crate) fn finish(&mut self) {
        if self.on && self.shown.is_some() {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        }
        self.shown = None;
    }

    fn line(&self, done: u64) -> String {
        let secs = self.started.elapsed().as_secs();
        match self.total.filter(|t| *t > 0) {
            Some(total) => {
                let pct = done.min(total) * 100 / total;
                let width = 30;
                let filled = (done.min(total) * width / total) as usize;
                format!(
                    "{}: [{}{}] {pct:>3}% {done}/{total} {} ({secs} s)",
                    self.what,
                    "#".repeat(filled),
                    " ".repeat(width as usize - filled),
                    self.unit
                )
            }
            None => format!("{}: {done} {} ({secs} s)", self.what, self.unit),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_a_bar_and_counts_and_off_a_terminal_nothing_is_written() {
        let p = Progress::showing("verifying", Some(200), "entries", true);
        let line = p.line(50);
        assert!(line.starts_with("verifying: [#######"), "{line}");
        assert!(line.contains(" 25% 50/200 entries"), "{line}");
        let open = Progress::showing("copying", None, "records", true);
        assert!(open.line(7).starts_with("copying: 7 records"));
        // Not a terminal: `set` never shows anything (so there is nothing to clear).
        let mut quiet = Progress::showing("verifying", Some(10), "entries", false);
        quiet.set(5);
        assert!(quiet.shown.is_none());
    }
}
