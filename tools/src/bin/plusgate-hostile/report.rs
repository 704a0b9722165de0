//! The report: a table for people, one JSON object for `--json` and the evidence file.

use serde::Serialize;

use harness::hostile::Outcome;

use super::cpus::Placement;
use super::health::Health;
use super::load::Latency;

/// The bound on the good client's p99 during an attack, over its baseline.
pub const P99_RATIO_MAX: f64 = 2.0;

/// The whole run.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The command line.
    pub command: String,
    /// The good client's pushes a second.
    pub rate: u32,
    /// Seconds of each measurement.
    pub duration_s: u64,
    /// The node's limits changed from their defaults.
    pub limits: Vec<(String, u64)>,
    /// Which CPUs the node and good client, and the attackers, ran on.
    pub cpus: Placement,
    /// The good client alone.
    pub baseline: Latency,
    /// Each attack.
    pub attacks: Vec<AttackReport>,
}

/// One outcome, for JSON.
#[derive(Debug, Serialize)]
pub struct OutcomeReport {
    variant: String,
    got: String,
    expected: String,
    ok: bool,
}

/// One attack.
#[derive(Debug, Serialize)]
pub struct AttackReport {
    name: &'static str,
    /// The attacker's source address.
    source: String,
    /// Rounds run, over all copies.
    rounds: usize,
    /// Rounds the node closed before their TLS handshake, every variant (the attacker's
    /// address over its handshake rate, or the handshake budget full): counted in
    /// `rounds`, their outcomes not shown.
    turned_away: usize,
    /// Seconds the attack ran (its last rounds may outlast the good client).
    attack_s: f64,
    outcomes: Vec<OutcomeReport>,
    /// An attack that could not run at all.
    error: Option<String>,
    /// The good client during the attack.
    during: Latency,
    /// `during.p99_ms / baseline.p99_ms`.
    p99_ratio: f64,
    /// `p99_ratio` under [`P99_RATIO_MAX`].
    p99_ok: bool,
    health: Health,
    /// Every outcome expected, the node healthy, the good client never refused, its p99
    /// under [`P99_RATIO_MAX`] times the baseline.
    ok: bool,
}

impl AttackReport {
    /// The report of attack `name`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &'static str,
        source: std::net::Ipv4Addr,
        (rounds, turned_away): (usize, usize),
        attack_s: f64,
        outcomes: Vec<Outcome>,
        error: Option<String>,
        during: Latency,
        baseline: &Latency,
        health: Health,
    ) -> AttackReport {
        let p99_ratio = during.p99_ms / baseline.p99_ms;
        let p99_ok = p99_ratio < P99_RATIO_MAX;
        let ok = error.is_none()
            && !outcomes.is_empty()
            && outcomes.iter().all(|o| o.ok)
            && health.ok()
            && during.push_errors == 0
            && p99_ok;
        AttackReport {
            name,
            source: source.to_string(),
            rounds,
            turned_away,
            attack_s,
            outcomes: outcomes
                .into_iter()
                .map(|o| OutcomeReport {
                    variant: o.variant,
                    got: o.got.to_string(),
                    expected: o.expected,
                    ok: o.ok,
                })
                .collect(),
            error,
            p99_ratio,
            p99_ok,
            during,
            health,
            ok,
        }
    }

    /// One line for the progress output.
    pub fn summary(&self) -> String {
        format!(
            "{}: {} rounds ({} closed before the handshake), {}, good p50 {:.1} ms p99 {:.1} ms ({:.2}x), node {}",
            if self.ok { "ok" } else { "UNEXPECTED" },
            self.rounds,
            self.turned_away,
            self.outcomes
                .iter()
                .map(|o| format!("{}: {}", o.variant, o.got))
                .collect::<Vec<_>>()
                .join("; "),
            self.during.p50_ms,
            self.during.p99_ms,
            self.p99_ratio,
            health_text(&self.health),
        )
    }
}

fn health_text(h: &Health) -> String {
    format!(
        "{}{}, fds {}→{}, rss {:.0}→{:.0} MiB",
        if h.alive { "alive" } else { "DEAD" },
        if h.answers { "" } else { " NOT ANSWERING" },
        h.right_after.fds,
        h.settled.fds,
        h.right_after.rss_mib,
        h.settled.rss_mib,
    )
}

impl Report {
    /// Whether every attack got what it should, left the node healthy and kept the good
    /// client's p99 under [`P99_RATIO_MAX`] times its baseline.
    pub fn all_ok(&self) -> bool {
        self.attacks.iter().all(|a| a.ok)
    }

    /// The table.
    pub fn to_text(&self) -> String {
        let b = &self.baseline;
        let mut out = format!(
            "baseline: {} pushes/s for {} s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} pushes, {} errors; pull p99 {:.1} ms)\n\n",
            self.rate, self.duration_s, b.p50_ms, b.p99_ms, b.max_ms, b.pushes, b.push_errors, b.pull_p99_ms
        );
        out.push_str(&format!(
            "{:26} {:34} {:44} {:34} {:>8} {:>8} {:>6} {}\n",
            "attack", "variant", "got", "expected", "p50 ms", "p99 ms", "ratio", "node"
        ));
        for a in &self.attacks {
            let mut first = true;
            for o in &a.outcomes {
                let (name, p50, p99, ratio, node) = if first {
                    (
                        a.name.to_owned(),
                        format!("{:.1}", a.during.p50_ms),
                        format!("{:.1}", a.during.p99_ms),
                        format!("{:.2}", a.p99_ratio),
                        health_text(&a.health),
                    )
                } else {
                    Default::default()
                };
                first = false;
                out.push_str(&format!(
                    "{:26} {:34} {:44} {:34} {:>8} {:>8} {:>6} {}{}\n",
                    name,
                    o.variant,
                    o.got,
                    o.expected,
                    p50,
                    p99,
                    ratio,
                    node,
                    if o.ok { "" } else { "  <-- UNEXPECTED" },
                ));
            }
            if let Some(e) = &a.error {
                out.push_str(&format!("{:26} error: {e}\n", a.name));
            }
            if !a.p99_ok {
                out.push_str(&format!(
                    "{:26} good client's p99 {:.2}x its baseline, not under {P99_RATIO_MAX}x\n",
                    "", a.p99_ratio
                ));
            }
            if a.during.push_errors > 0 {
                out.push_str(&format!(
                    "{:26} good client: {} pushes failed, first: {}\n",
                    "",
                    a.during.push_errors,
                    a.during.first_error.as_deref().unwrap_or("")
                ));
            }
        }
        out.push_str(&format!(
            "\n{}\n",
            if self.all_ok() {
                "all attacks got the expected outcome, the good client's p99 under 2x its baseline"
            } else {
                "SOME ATTACKS GOT AN UNEXPECTED OUTCOME OR SLOWED THE GOOD CLIENT PAST 2x"
            }
        ));
        out
    }
}
