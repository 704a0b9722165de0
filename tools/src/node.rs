//! A `plusgate serve` child process: spawned with its log in a file, its bound address read
//! from the listening line on stdout, stopped with real signals, restarted on the same
//! data directory.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use plusgate::node::client::{Agent, HttpVersion};

use crate::error::{io, Error};
use crate::federation::{agent_to, identity_in, load_manifest, ClientCert};
use crate::process::{signal, wait_with_timeout, Plusgate};

/// Longest a node may take from spawn to printing its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest a node may take to exit after SIGTERM (its own drain bound is 10 s).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The line `serve` prints once it is bound; the address is read from it.
const LISTENING_PREFIX: &str = "plusgate listening on https://";

/// The line `serve` prints, before the listening line, when its operations listener is
/// bound.
const OPERATIONS_PREFIX: &str = "plusgate operations on http://";

/// Log lines quoted in an error about a node.
const LOG_TAIL_LINES: usize = 40;

/// How to (re)start a node process.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Arguments of the `plusgate` executable.
    pub args: Vec<String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// File that collects the node's stderr (its logs), appended across restarts.
    pub log: PathBuf,
    /// The federation folder (holding `manifest.json`), for the CA and the agency
    /// certificates; read when an agent is made, so `serve --dev` may create it.
    pub federation: PathBuf,
    /// `PLUSGATE_LOG` for the node (empty: the default, info).
    pub log_filter: String,
}

/// A running `plusgate serve` child process. Dropping it kills the process (SIGKILL).
pub struct Node {
    plusgate: Plusgate,
    spec: NodeSpec,
    child: Option<Child>,
    addr: SocketAddr,
    ops_addr: Option<SocketAddr>,
}

impl Node {
    /// Spawns `plusgate` as `spec` says and waits for its listening line.
    pub fn spawn(plusgate: &Plusgate, spec: NodeSpec) -> Result<Node, Error> {
        Node::spawn_within(plusgate, spec, START_TIMEOUT)
    }

    /// [`Node::spawn`], waiting up to `timeout` for the listening line (a node opening a
    /// large store may need longer than the usual bound).
    pub fn spawn_within(
        plusgate: &Plusgate,
        spec: NodeSpec,
        timeout: Duration,
    ) -> Result<Node, Error> {
        let (child, addr, ops_addr) = spawn(plusgate, &spec, timeout)?;
        Ok(Node {
            plusgate: plusgate.clone(),
            spec,
            child: Some(child),
            addr,
            ops_addr,
        })
    }

    /// [`Node::spawn`] of the `plusgate` in this target dir ([`Plusgate::in_target_dir`]);
    /// panics, with the node's log, if it does not come up.
    pub fn start(spec: NodeSpec) -> Node {
        let plusgate = Plusgate::in_target_dir().unwrap_or_else(|e| panic!("{e}"));
        Node::spawn(&plusgate, spec).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The bound address (changes on every restart).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The operations listener's bound address (plain HTTP: `/metrics`, `/healthz`,
    /// `/readyz`), if the node has one; changes on every restart.
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops_addr
    }

    /// The process id, while the process runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The file collecting the node's log (its stderr).
    pub fn log_path(&self) -> &Path {
        &self.spec.log
    }

    /// The node's log so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.spec.log).unwrap_or_default()
    }

    /// The last `lines` lines of the node's log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.spec.log, lines)
    }

    /// An agent presenting the certificate of agency or officer `id` of the federation;
    /// panics if the federation has no such identity.
    pub fn agent(&self, id: &str, version: HttpVersion) -> Agent {
        let manifest = load_manifest(&self.spec.federation);
        let cert = identity_in(&manifest, id).unwrap_or_else(|e| panic!("{e}"));
        self.agent_as(Some(&cert), version)
    }

    /// An agent presenting `cert` (or no client certificate at all).
    pub fn agent_as(&self, cert: Option<&ClientCert>, version: HttpVersion) -> Agent {
        let manifest = load_manifest(&self.spec.federation);
        agent_to(&manifest, self.addr, "localhost", cert, version).unwrap_or_else(|e| panic!("{e}"))
    }

    /// SIGKILL: the process gets no chance to flush or tidy anything.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the node");
            child.wait().expect("reap the node");
        }
    }

    /// SIGHUP: the node reloads its federation directory, TLS trust, officers and agencies.
    pub fn hangup(&self) {
        let child = self.child.as_ref().expect("node is running");
        signal(child.id(), "HUP").unwrap_or_else(|e| panic!("{e}"));
    }

    /// How the process ended, if it has exited by itself; `None` while it runs (or once
    /// the harness stopped it).
    pub fn exited(&mut self) -> Result<Option<ExitStatus>, Error> {
        match self.child.as_mut() {
            Some(child) => child.try_wait().map_err(io("polling the node")),
            None => Ok(None),
        }
    }

    /// SIGTERM, then waits up to [`STOP_TIMEOUT`] for the node to drain and exit, killing
    /// it if it does not ([`Error::StopTimeout`]); returns its exit status (also when it
    /// had exited already).
    pub fn terminate(&mut self) -> Result<ExitStatus, Error> {
        self.terminate_within(STOP_TIMEOUT)
    }

    /// [`Node::terminate`], waiting up to `timeout` instead of [`STOP_TIMEOUT`].
    pub fn terminate_within(&mut self, timeout: Duration) -> Result<ExitStatus, Error> {
        let mut child = self.child.take().ok_or(Error::NotRunning)?;
        if let Some(status) = child.try_wait().map_err(io("polling the node"))? {
            return Ok(status);
        }
        let kill = |mut child: Child| {
            let _ = child.kill();
            let _ = child.wait();
        };
        if let Err(e) = signal(child.id(), "TERM") {
            kill(child);
            return Err(e);
        }
        match wait_with_timeout(&mut child, timeout) {
            Some(status) => Ok(status),
            None => {
                kill(child);
                Err(Error::StopTimeout { timeout })
            }
        }
    }

    /// [`Node::terminate`], panicking with the node's log if it does not exit in time.
    pub fn stop(&mut self) -> ExitStatus {
        self.terminate()
            .unwrap_or_else(|e| panic!("node: {e}\n{}", self.log()))
    }

    /// Starts the node again on the same config and data directory (SIGKILLing it first
    /// if it still runs). The address changes: make new agents afterwards.
    pub fn restart(&mut self) {
        self.try_restart_within(START_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts the node again on the same config and data directory (SIGKILLing it first if
    /// it still runs) and SIGKILLs the new process `after` its spawn, whether or not it is
    /// listening by then: a kill during start-up (store open, journal replay, catch-up).
    /// Returns whether it was listening; the node is left stopped. A process that ended by
    /// itself before `after` is [`Error::NotListening`] (a crash during start-up).
    pub fn start_and_kill_after(&mut self, after: Duration) -> Result<bool, Error> {
        self.kill_hard();
        match spawn(&self.plusgate, &self.spec, after) {
            Ok((child, addr, ops_addr)) => {
                self.child = Some(child);
                self.addr = addr;
                self.ops_addr = ops_addr;
                self.kill_hard();
                Ok(true)
            }
            // `spawn` SIGKILLed it at the deadline: the kill we wanted.
            Err(Error::NotListening { exit, .. }) if exit.contains("signal: 9") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// [`Node::restart`], waiting up to `timeout` for the listening line and returning a
    /// failure instead of panicking.
    pub fn try_restart_within(&mut self, timeout: Duration) -> Result<(), Error> {
        self.kill_hard();
        let (child, addr, ops_addr) = spawn(&self.plusgate, &self.spec, timeout)?;
        self.child = Some(child);
        self.addr = addr;
        self.ops_addr = ops_addr;
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The address in the node's `plusgate listening on https://ADDR (node ID)` line.
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    addr_after(line, LISTENING_PREFIX)
}

/// The address in the node's `plusgate operations on http://ADDR (node ID)` line.
pub fn operations_addr(line: &str) -> Option<SocketAddr> {
    addr_after(line, OPERATIONS_PREFIX)
}

fn addr_after(line: &str, prefix: &str) -> Option<SocketAddr> {
    let rest = line.trim().strip_prefix(prefix)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Spawns the node and waits for its listening line: the process, its address and its
/// operations listener's address (printed before the listening line, if at all).
fn spawn(
    plusgate: &Plusgate,
    spec: &NodeSpec,
    timeout: Duration,
) -> Result<(Child, SocketAddr, Option<SocketAddr>), Error> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .map_err(io(format!("opening the node log {}", spec.log.display())))?;
    let mut command = plusgate.command();
    if !spec.log_filter.is_empty() {
        command.env("PLUSGATE_LOG", &spec.log_filter);
    }
    let mut child = command
        .args(&spec.args)
        .current_dir(&spec.cwd)
        // The log is a file: no terminal colour codes in it.
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(io(format!("starting {}", plusgate.path().display())))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    // Keep draining stdout for the node's whole life so it can never block on a full pipe.
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        let mut ops = None;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = operations_addr(&line) {
                ops = Some(addr);
            }
            if let Some(addr) = listening_addr(&line) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send((addr, ops));
                }
            }
        }
    });
    match rx.recv_timeout(timeout) {
        Ok((addr, ops)) => Ok((child, addr, ops)),
        Err(_) => {
            let _ = child.kill();
            let exit = match child.wait() {
                Ok(status) => status.to_string(),
                Err(e) => format!("not reaped: {e}"),
            };
            Err(Error::NotListening {
                args: spec.args.clone(),
                timeout,
                exit,
                log_tail: log_tail(&spec.log, LOG_TAIL_LINES),
            })
        }
    }
}

/// The last `lines` lines of the file at `path` (empty if it cannot be read).
fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_line() {
        let check = |line: &str, want: Option<&str>| {
            assert_eq!(
                listening_addr(line),
                want.map(|a| a.parse().expect("addr")),
                "{line}"
            );
        };
        check(
            "plusgate listening on https://127.0.0.1:40123 (node suwon)",
            Some("127.0.0.1:40123"),
        );
        check(
            "plusgate listening on https://[::1]:7443",
            Some("[::1]:7443"),
        );
        check("plusgate listening on http://127.0.0.1:1", None);
        check("starting", None);
        assert_eq!(
            operations_addr("plusgate operations on http://127.0.0.1:40124 (node suwon)"),
            Some("127.0.0.1:40124".parse().expect("addr"))
        );
        assert_eq!(
            operations_addr("plusgate listening on https://127.0.0.1:40123"),
            None
        );
    }
}
