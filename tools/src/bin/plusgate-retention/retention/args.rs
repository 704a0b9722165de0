//! The flags of `plusgate-retention`.

use std::path::PathBuf;

/// Measure start-up time, memory and disk use of a node holding many retained messages.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "plusgate-retention", version, about, long_about = None)]
pub struct RetentionArgs {
    /// Referrals pushed before the measurements (each a new message the node retains).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub messages: u64,
    /// HTTP/1.1 connections pushing at once (one request in flight each).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub connections: u16,
    /// Seconds of pushes after the clean restart, to read the memory under load.
    #[arg(long = "load-s", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=3600))]
    pub load_s: u16,
    /// Seconds of pushes before the node is killed with SIGKILL.
    #[arg(long = "kill-after-s", default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=3600))]
    pub kill_after_s: u16,
    /// Seconds the node is left idle after the drain and after the purge before the data
    /// directory is measured again.
    #[arg(long = "settle-s", default_value_t = 30, value_parser = clap::value_parser!(u16).range(0..=3600))]
    pub settle_s: u16,
    /// Inbox drainers pulling and acknowledging at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub drainers: u16,
    /// Before each timed start, drop the data directory's files from the page cache, so
    /// the start reads them from the disk as after a reboot (not only sled's pages: the
    /// whole machine's disk is then shared with the other processes' reads).
    #[arg(long)]
    pub cold: bool,
    /// At the end, open the stopped store with sled's background flusher (and with it
    /// sled's segment cleaner, which the node turns off) for this many seconds, and measure
    /// the data directory again: would sled give the space back by itself?
    #[arg(long = "sled-cleaner-s", default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=3600))]
    pub sled_cleaner_s: u16,
    /// Stop after the start-up measurements: no drain, no purge.
    #[arg(long)]
    pub no_drain: bool,
    /// Create the temporary federation (and the node's data directory) in this folder
    /// instead of the system's temporary folder.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Keep the federation folder (configs, data, the node's log) at the end.
    #[arg(long)]
    pub keep: bool,
    /// Print one JSON object on stdout (the tables go to stderr then).
    #[arg(long)]
    pub json: bool,
    /// Internal: take a census of the stopped store in DIR, print it as JSON and exit (the
    /// tool runs its censuses in a child process of their own, so their memory is sled's
    /// alone).
    #[arg(long, value_name = "DIR", hide = true)]
    pub census_of: Option<PathBuf>,
    /// The `plusgate` executable to start nodes of (default: the one next to this
    /// executable, which `cargo build --release --workspace` puts there).
    #[arg(long, value_name = "PATH")]
    pub plusgate: Option<PathBuf>,
}
