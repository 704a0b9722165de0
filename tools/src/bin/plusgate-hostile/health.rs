//! After each attack: is the node alive, does it answer, and has it given back what the
//! attack made it hold (open files, i.e. connections, and memory)?

use std::time::{Duration, Instant};

use harness::hostile::{Target, GRACE};
use harness::Node;
use plusgate::node::client::HttpVersion;
use serde::Serialize;

/// Open files above the node's resting count that are still "given back": the good
/// client's connections and the store's files come and go.
const FDS_SLACK: usize = 16;

/// What the node holds at a moment.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Resources {
    /// Open file descriptors (connections, store files, the listener).
    pub fds: usize,
    /// Resident memory, in MiB.
    pub rss_mib: f64,
}

impl Resources {
    /// The node's resources now (zeros if /proc cannot tell).
    pub fn of(node: &Node) -> Resources {
        let Some(pid) = node.pid() else {
            return Resources {
                fds: 0,
                rss_mib: 0.0,
            };
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0);
        let rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            })
            .unwrap_or(0.0);
        Resources {
            fds,
            rss_mib: rss_kib / 1024.0,
        }
    }
}

/// The node after an attack.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// The process is running.
    pub alive: bool,
    /// `GET /healthz` answered 200 to a fresh connection of the good client.
    pub answers: bool,
    /// Resources right after the attack's loops ended.
    pub right_after: Resources,
    /// Resources once they came back to rest (or when the wait gave up).
    pub settled: Resources,
    /// Whether the open files came back to the resting count (plus a slack).
    pub released: bool,
}

impl Health {
    /// Alive, answering and holding nothing of the attack's.
    pub fn ok(&self) -> bool {
        self.alive && self.answers && self.released
    }
}

/// Checks `node` after an attack: alive, answering, and back to `resting` open files
/// within the idle timeout (every connection the attack opened must end by then).
pub async fn check(node: &mut Node, target: &Target, resting: &Resources) -> Health {
    let alive = matches!(node.exited(), Ok(None));
    let right_after = Resources::of(node);
    let deadline = Instant::now() + target.limits.idle_timeout + GRACE;
    let mut settled = right_after;
    while settled.fds > resting.fds + FDS_SLACK && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        settled = Resources::of(node);
    }
    let agent = node.agent("suwon/employment", HttpVersion::Http1);
    let answers = matches!(agent.get("/healthz").await, Ok(r) if r.status.as_u16() == 200);
    Health {
        alive,
        answers,
        right_after,
        settled,
        released: settled.fds <= resting.fds + FDS_SLACK,
    }
}
