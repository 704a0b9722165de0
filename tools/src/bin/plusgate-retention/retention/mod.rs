//! The measurement of `plusgate-retention`: a node holding many retained messages.
//!
//! The tool creates a one-center development federation in a temporary folder (or in
//! `--dir`), starts `plusgate serve` (the executable next to its own, or `--plusgate
//! PATH`) and registers a consent whose retention period is one day. Then, in order
//! ([`stages`]):
//!
//! 1. **fill**: `--messages N` referrals (each a new message, id `ret-<run>-fill-<n>`) from
//!    `--connections` HTTP/1.1 connections, as fast as the node takes them, each id pushed
//!    until it is accepted, with a progress line every few seconds (count, rate, the
//!    node's RSS and peak from `/proc`, the data directory's size);
//! 2. **clean stop** (SIGTERM: the node folds its overlay of deferred writes into sled) and
//!    a **timed start**: spawn → listening line → `/readyz` 200 → first push `202`, then
//!    `--load-s` seconds of pushes to read the memory under load;
//! 3. **SIGKILL** after `--kill-after-s` seconds of pushes, and a timed start (it replays
//!    the journal of deferred writes), then a clean stop and one more timed start, which
//!    shows what a start costs when sled's last snapshot is recent;
//! 4. a clean stop and a **census** of the store ([`census`]): every key and value in
//!    sled's tree, by family — the live bytes the amplification is measured against;
//! 5. **drain**: `--drainers` connections pull (1,000 at a time) and acknowledge everything;
//!    the data directory is measured at once, after `--settle-s` idle seconds, after a
//!    clean stop (with a census) — does space come back after the acks?
//! 6. **purge**: the node restarts with its clock a day and an hour ahead (`[clock]
//!    danger_offset_s`), so the retention purge erases every payload; measured again
//!    after it finishes, after `--settle-s`, after a clean stop (with a census) and after
//!    a clean restart.
//!
//! The report ([`report`]) lists every start, the memory of each stage, and the data
//! directory at each step: its files' lengths and allocated blocks, sled's log file `db`,
//! its snapshots and blobs, the live bytes where a census was taken, and the space
//! amplification (allocated bytes ÷ live bytes, and ÷ the request bytes pushed).
//!
//! Files: [`args`], [`stages`] (the script above), [`push`] (closed-loop pushers),
//! [`drain`], [`start`] (a timed start), [`census`], [`probe`] (`/proc` and the data
//! directory), [`monitor`] (progress lines and maxima), [`report`].

mod args;
mod census;
mod drain;
mod monitor;
mod probe;
mod push;
mod report;
mod stages;
mod start;

use anyhow::anyhow;
use harness::{Federation, Plusgate};

pub use self::args::RetentionArgs;

/// The one center of the federation.
const CENTER: &str = "suwon";

/// The agency that pushes (the referral example's sender).
const SENDER: &str = "suwon/employment";

/// The agency that receives, pulls and acknowledges.
const RECIPIENT: &str = "suwon/welfare";

/// The consent every referral cites, registered by [`SENDER`] first.
const CONSENT_ID: &str = "cns-retention";

/// Its retention period: a day, so the purge needs the clock shifted by only a little more.
const RETENTION_PERIOD: &str = "P1D";

/// How far the clock is shifted for the purge: a day and an hour.
const CLOCK_SHIFT_S: i64 = 86_400 + 3_600;

/// Runs the measurement and prints its report on stdout (progress goes to stderr).
pub async fn run(args: RetentionArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.census_of {
        let counted = census::census_here(dir)?;
        println!("{}", serde_json::to_string(&counted)?);
        return Ok(());
    }
    let plusgate = match &args.plusgate {
        Some(path) => Plusgate::at(path),
        None => Plusgate::in_target_dir().map_err(|e| anyhow!("{e} (or give --plusgate PATH)"))?,
    };
    let mut federation = match &args.dir {
        Some(dir) => Federation::create_in(dir, plusgate, &[CENTER])?,
        None => Federation::create(plusgate, &[CENTER])?,
    };
    federation.set_keep(args.keep);
    eprintln!(
        "retention: created a dev federation in {}",
        federation.dir().display()
    );
    let report = tokio::select! {
        report = stages::measure(&args, &federation) => report?,
        // Returning drops the node (SIGKILL) and then the federation's folder.
        _ = tokio::signal::ctrl_c() => return Err(anyhow!("interrupted")),
    };
    if args.json {
        // The tables too, for the person watching; stdout is for the script.
        eprint!("{}", report.to_text());
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    if args.keep {
        eprintln!("retention: kept {}", federation.dir().display());
    }
    Ok(())
}

/// The dev `consent` example made the tool's own: [`CONSENT_ID`], collected by
/// [`SENDER`] for [`RECIPIENT`], kept for [`RETENTION_PERIOD`].
fn consent(federation: &Federation) -> serde_json::Value {
    let mut consent = federation.example("consent");
    consent["id"] = CONSENT_ID.into();
    consent["collected_by"]["agency"] = SENDER.into();
    consent["recipients"] = serde_json::json!([RECIPIENT]);
    consent["retention"]["period"] = RETENTION_PERIOD.into();
    consent
}

/// The referral example under [`CONSENT_ID`].
fn referral(federation: &Federation) -> serde_json::Value {
    let mut referral = federation.example("referral");
    referral["consent_id"] = CONSENT_ID.into();
    referral
}

/// Adds what was being done to an error, keeping the cause on the same line.
fn doing<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> anyhow::Error {
    move |e| anyhow!("{what}: {e}")
}

fn truncate(text: &str, chars_max: usize) -> String {
    match text.char_indices().nth(chars_max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}
