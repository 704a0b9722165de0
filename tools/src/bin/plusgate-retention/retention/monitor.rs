//! A progress line while a stage runs: every [`PRINT_EVERY`] the stage's count and rate,
//! the node's memory and the data directory's size, on stderr; the memory and size are
//! sampled every [`SAMPLE_EVERY`] and their maxima kept for the report.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::probe::{disk_usage, memory_of, Memory, MIB};

/// How often memory and disk are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// How often a progress line is printed.
const PRINT_EVERY: Duration = Duration::from_secs(5);

/// What a stage counts (messages pushed, acknowledged, …), read by the monitor.
pub(super) type Counter = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The maxima a monitor saw.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(super) struct Maxima {
    /// Largest VmRSS sampled, MiB.
    pub(super) rss_mib: f64,
    /// VmHWM at the last sample, MiB (the process's peak since it started).
    pub(super) peak_mib: f64,
    /// Largest data directory sampled (allocated), bytes.
    pub(super) disk_bytes: u64,
}

/// A running monitor; [`Monitor::finish`] stops it.
pub(super) struct Monitor {
    done: watch::Sender<bool>,
    task: JoinHandle<Maxima>,
}

impl Monitor {
    /// Starts watching the node with process id `pid` and data directory `data` during
    /// stage `stage`, which counts with `counter` (none: only the time is shown).
    pub(super) fn start(
        stage: &str,
        pid: Option<u32>,
        data: PathBuf,
        counter: Option<Counter>,
    ) -> Monitor {
        let (done, mut done_rx) = watch::channel(false);
        let stage = stage.to_owned();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut maxima = Maxima::default();
            let mut last_print = (started, counter.as_ref().map_or(0, |c| c()));
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(SAMPLE_EVERY) => {}
                    _ = done_rx.changed() => break,
                }
                let mem = pid.and_then(memory_of);
                let disk = disk_usage(&data).allocated_bytes;
                if let Some(m) = mem {
                    maxima.rss_mib = maxima.rss_mib.max(m.rss_mib);
                    maxima.peak_mib = m.peak_mib;
                }
                maxima.disk_bytes = maxima.disk_bytes.max(disk);
                let now = Instant::now();
                if now.duration_since(last_print.0) >= PRINT_EVERY {
                    let count = counter.as_ref().map(|c| c());
                    eprintln!(
                        "{}",
                        line(&stage, now - started, count, last_print, now, mem, disk)
                    );
                    last_print = (now, count.unwrap_or(0));
                }
            }
            maxima
        });
        Monitor { done, task }
    }

    /// Stops the monitor and returns what it saw.
    pub(super) async fn finish(self) -> Maxima {
        let _ = self.done.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// One progress line.
fn line(
    stage: &str,
    elapsed: Duration,
    count: Option<u64>,
    last: (Instant, u64),
    now: Instant,
    mem: Option<Memory>,
    disk: u64,
) -> String {
    let mut text = format!("retention: {stage} {:>6.0} s", elapsed.as_secs_f64());
    if let Some(count) = count {
        let rate = count.saturating_sub(last.1) as f64 / now.duration_since(last.0).as_secs_f64();
        text.push_str(&format!(", {count:>9} ({rate:>6.0}/s)"));
    }
    match mem {
        Some(m) => text.push_str(&format!(
            ", node RSS {:>5.0} MiB (peak {:>5.0})",
            m.rss_mib, m.peak_mib
        )),
        None => text.push_str(", node not running"),
    }
    text.push_str(&format!(", data {:>7.0} MiB", disk as f64 / MIB));
    text
}
