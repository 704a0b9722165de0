//! A private RabbitMQ broker for `--rabbitmq`: Debian's `rabbitmq-server`, run as the
//! current user out of a temporary folder, with nothing shared with a system-wide broker.
//!
//! The folder holds everything the broker reads or writes: a fresh PKI (a CA, a server
//! certificate for `localhost`/`127.0.0.1`, a client certificate; plusgate's own
//! development PKI code, ECDSA P-256), `rabbitmq.conf`, an empty `rabbitmq-env.conf` and
//! `enabled_plugins` (so `/etc/rabbitmq` is never read), the Mnesia and message store
//! (`RABBITMQ_MNESIA_BASE`), the logs (`RABBITMQ_LOG_BASE`) and `HOME` (the Erlang
//! cookie). The node name is `plusgate-bench-<pid>@localhost`; its three ports are free
//! loopback ports from the harness: the AMQPS listener, Erlang distribution
//! (`RABBITMQ_DIST_PORT`) and a private `epmd` (`ERL_EPMD_PORT`), which the bench starts
//! itself, in the foreground as its own child, and passes `-start_epmd false` so the VM
//! never daemonizes one. The only listener is TLS (`listeners.tcp = none`), TLS 1.3,
//! `verify_peer` with `fail_if_no_peer_cert = true`: a client without a certificate from
//! the bench's CA cannot even send the AMQP header. Clients then log in with PLAIN as the
//! one user `default_user`/`default_pass` create on first boot.
//!
//! The start script runs in a process group of its own, so the broker's CPU time and peak
//! memory are those of the group ([`super::usage::group_usage`]), and stopping ends the
//! whole group: SIGTERM to the script (which stops the VM cleanly), then SIGKILL to the
//! group for whatever is left after [`STOP_TIMEOUT`]. [`Broker`]'s `Drop` does the same,
//! so the broker and its `epmd` go on every exit path (error, Ctrl-C); the folder goes
//! with them.
//!
//! The environment of the broker is cleared but for `PATH` and the locale, so a stray
//! `RABBITMQ_*` or `ERL_*` variable cannot point it at system files or ports; only
//! `RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS` is passed on (after `-start_epmd false`), for
//! experiments with the VM's flags (e.g. `+S 1:1`, one scheduler).

use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use harness::{free_port_range, wait_with_timeout};
use plusgate::dev::pki::{write_pem_pair, CertificateAuthority, Role, Validity};

use super::doing;
use super::usage::group_members;

/// Debian's start script, which runs the broker in the foreground as the calling user
/// (`/usr/sbin/rabbitmq-server` would switch to the `rabbitmq` user and its files).
pub(super) const DEBIAN_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// The durable queue every publisher sends to (through the default exchange).
pub(super) const QUEUE: &str = "plusgate-bench";

/// The one broker user, created on first boot.
pub(super) const USER: &str = "plusgate-bench";

/// Bound on SIGTERM → exit of the broker; then the group gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Bound on the private `epmd` accepting connections.
const EPMD_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Lines of each log shown when the broker fails.
const LOG_TAIL_LINES: usize = 30;

/// A running private broker and its `epmd`. Dropping it stops both and removes the folder.
pub(super) struct Broker {
    /// The AMQPS listener.
    pub(super) addr: SocketAddr,
    pub(super) node_name: String,
    pub(super) password: String,
    pub(super) ca_pem: PathBuf,
    pub(super) client_cert: PathBuf,
    pub(super) client_key: PathBuf,
    /// The start script (its pid is the group's id).
    server: Option<Child>,
    epmd: Option<Child>,
    log_dir: PathBuf,
    console_log: PathBuf,
    // Last: dropped after the processes are stopped in `drop`.
    dir: tempfile::TempDir,
}

impl Broker {
    /// Writes the broker's folder and starts `epmd` and the broker (`server` is the start
    /// script, normally [`DEBIAN_SERVER`]). The broker is still booting on return: poll
    /// [`Broker::check_running`] while trying to connect.
    pub(super) fn start(server: &Path) -> anyhow::Result<Broker> {
        check_installed(server)?;
        let dir = tempfile::Builder::new()
            .prefix("plusgate-bench-rabbitmq-")
            .tempdir()
            .map_err(doing("creating the broker's folder"))?;
        let root = dir.path().to_owned();
        let root = root.as_path();
        let tls = write_pki(root)?;
        let base = free_port_range(3)?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, base));
        let (dist_port, epmd_port) = (base + 1, base + 2);
        let node_name = format!("plusgate-bench-{}@localhost", std::process::id());
        let password = uuid::Uuid::now_v7().simple().to_string();
        let log_dir = root.join("log");
        let console_log = root.join("broker-console.log");

        let config = root.join("rabbitmq.conf");
        let text = config_text(&ConfigFiles {
            addr,
            ca_pem: &tls.ca_pem,
            server_cert: &tls.server_cert,
            server_key: &tls.server_key,
            password: &password,
        });
        write(&config, &text)?;
        let env_file = root.join("rabbitmq-env.conf");
        write(&env_file, "")?;
        let plugins = root.join("enabled_plugins");
        write(&plugins, "[].\n")?;

        let mut broker = Broker {
            addr,
            node_name: node_name.clone(),
            password,
            ca_pem: tls.ca_pem,
            client_cert: tls.client_cert,
            client_key: tls.client_key,
            server: None,
            epmd: None,
            log_dir: log_dir.clone(),
            console_log: console_log.clone(),
            dir,
        };
        broker.epmd = Some(start_epmd(root, epmd_port)?);

        let mut erl_args = "-start_epmd false".to_owned();
        if let Ok(extra) = std::env::var("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS") {
            let _ = write!(erl_args, " {extra}");
        }
        let console = std::fs::File::create(&console_log)
            .map_err(doing(format!("creating {}", console_log.display())))?;
        let console_err = console
            .try_clone()
            .map_err(doing("duplicating the console log's handle"))?;
        let mut command = Command::new(server);
        command
            .env_clear()
            .envs(std::env::vars().filter(|(k, _)| {
                k == "PATH" || k == "LANG" || k == "LC_ALL" || k.starts_with("LC_")
            }))
            .env("HOME", root)
            .env("RABBITMQ_NODENAME", &node_name)
            .env("RABBITMQ_CONF_ENV_FILE", &env_file)
            .env("RABBITMQ_CONFIG_FILE", &config)
            .env(
                "RABBITMQ_ADVANCED_CONFIG_FILE",
                root.join("advanced.config"),
            )
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", &plugins)
            .env("RABBITMQ_MNESIA_BASE", root.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", &log_dir)
            .env("RABBITMQ_PID_FILE", root.join("broker.pid"))
            .env("RABBITMQ_FEATURE_FLAGS_FILE", root.join("feature_flags"))
            .env("RABBITMQ_PLUGINS_EXPAND_DIR", root.join("plugins-expand"))
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env("ERL_EPMD_PORT", epmd_port.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", erl_args)
            .current_dir(root)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(console)
            .stderr(console_err);
        let child = command
            .spawn()
            .map_err(doing(format!("starting {}", server.display())))?;
        broker.server = Some(child);
        Ok(broker)
    }

    /// The broker's process group (its start script's pid), while it runs.
    pub(super) fn group(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }

    /// Fails, with the broker's log tails, if the broker has exited.
    pub(super) fn check_running(&mut self) -> anyhow::Result<()> {
        let exited = match self.server.as_mut() {
            Some(child) => child.try_wait().map_err(doing("polling the broker"))?,
            None => bail!("the broker was stopped"),
        };
        match exited {
            None => Ok(()),
            Some(status) => Err(anyhow!("the broker exited ({status})")),
        }
    }

    /// The last lines of the broker's console output and main log, for error messages
    /// (the files go with the folder).
    pub(super) fn log_tails(&self) -> String {
        let main_log = self.log_dir.join(format!("{}.log", self.node_name));
        let mut out = String::new();
        for (what, path) in [("console output", &self.console_log), ("log", &main_log)] {
            let _ = write!(
                out,
                "\n--- the broker's {what} (last {LOG_TAIL_LINES} lines) ---\n{}",
                tail(path, LOG_TAIL_LINES)
            );
        }
        out
    }

    /// The broker's folder (certificates, config, data, logs).
    pub(super) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the broker (SIGTERM, then SIGKILL to its group after [`STOP_TIMEOUT`]) and
    /// `epmd`; returns how long the broker took to stop. Idempotent.
    pub(super) fn stop(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let mut result = Ok(());
        if let Some(mut child) = self.server.take() {
            let pgid = child.id();
            if matches!(child.try_wait(), Ok(None)) {
                if let Err(e) = kill("TERM", &pgid.to_string()) {
                    result = Err(e);
                }
                if wait_with_timeout(&mut child, STOP_TIMEOUT).is_none() {
                    result = Err(anyhow!(
                        "the broker did not stop within {STOP_TIMEOUT:?} of SIGTERM; killed it"
                    ));
                }
            }
            // The VM or its helpers may outlive the script (e.g. after the timeout). The
            // group id cannot be reused while any member lives, so this hits only ours.
            if !group_members(pgid).is_empty() {
                let _ = kill("KILL", &format!("-{pgid}"));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mut epmd) = self.epmd.take() {
            let _ = epmd.kill();
            let _ = epmd.wait();
        }
        result.map(|()| started.elapsed())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Fails with what to do when the start script `server` or `epmd` is missing.
pub(super) fn check_installed(server: &Path) -> anyhow::Result<()> {
    let install = "tools/bench-rabbitmq.sh installs it, or `apt-get install rabbitmq-server`";
    if !server.is_file() {
        bail!(
            "{} not found: Debian's rabbitmq-server is not installed ({install}; or give \
             --rabbitmq-server PATH)",
            server.display()
        );
    }
    let epmd_found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("epmd").is_file()));
    if !epmd_found {
        bail!("epmd (Erlang's port mapper) is not on PATH ({install} with Erlang)");
    }
    Ok(())
}

/// The paths `rabbitmq.conf` names.
struct ConfigFiles<'a> {
    addr: SocketAddr,
    ca_pem: &'a Path,
    server_cert: &'a Path,
    server_key: &'a Path,
    password: &'a str,
}

/// `rabbitmq.conf` (the sysctl-like format of RabbitMQ ≥ 3.7): one TLS listener on
/// loopback requiring a client certificate, TLS 1.3 only (as plusgate's clients use), no
/// plain listener, one user, logs to a file.
fn config_text(files: &ConfigFiles<'_>) -> String {
    format!(
        "# Written by plusgate-bench for one run; removed with its folder.\n\
         listeners.tcp = none\n\
         listeners.ssl.default = {addr}\n\
         ssl_options.cacertfile = {ca}\n\
         ssl_options.certfile = {cert}\n\
         ssl_options.keyfile = {key}\n\
         ssl_options.verify = verify_peer\n\
         ssl_options.fail_if_no_peer_cert = true\n\
         ssl_options.versions.1 = tlsv1.3\n\
         default_user = {user}\n\
         default_pass = {password}\n\
         distribution.listener.interface = 127.0.0.1\n\
         log.console = false\n\
         log.file.level = info\n",
        addr = files.addr,
        ca = files.ca_pem.display(),
        cert = files.server_cert.display(),
        key = files.server_key.display(),
        user = USER,
        password = files.password,
    )
}

/// The PEM files of the broker's PKI.
struct TlsFiles {
    ca_pem: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

/// A CA, a server and a client certificate in `<root>/tls/`.
fn write_pki(root: &Path) -> anyhow::Result<TlsFiles> {
    let tls = root.join("tls");
    std::fs::create_dir(&tls).map_err(doing(format!("creating {}", tls.display())))?;
    let validity = Validity::days_from_now(2);
    let ca = CertificateAuthority::generate("plusgate-bench RabbitMQ CA", validity)?;
    // A node certificate names localhost and 127.0.0.1 and allows serverAuth.
    let server = ca.issue(
        &Role::Node {
            center: "rabbitmq".into(),
        },
        validity,
    )?;
    let client = ca.issue(
        &Role::Agency {
            center: "bench".into(),
            agency: "publisher".into(),
        },
        validity,
    )?;
    let ca_pem = tls.join("ca.crt");
    write(&ca_pem, ca.cert_pem())?;
    let (server_cert, server_key) = write_pem_pair(&tls, "server", &server)?;
    let (client_cert, client_key) = write_pem_pair(&tls, "client", &client)?;
    Ok(TlsFiles {
        ca_pem,
        client_cert,
        client_key,
        server_cert,
        server_key,
    })
}

/// Starts `epmd` on `port` (loopback only) as the bench's child, and waits until it
/// accepts connections.
fn start_epmd(root: &Path, port: u16) -> anyhow::Result<Child> {
    let log_path = root.join("epmd.log");
    let log = std::fs::File::create(&log_path)
        .map_err(doing(format!("creating {}", log_path.display())))?;
    let log_err = log
        .try_clone()
        .map_err(doing("duplicating epmd's log handle"))?;
    let mut child = Command::new("epmd")
        .args(["-address", "127.0.0.1", "-port", &port.to_string()])
        .env_clear()
        .envs(std::env::vars().filter(|(k, _)| k == "PATH"))
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(doing(
            "starting epmd (Erlang's port mapper, part of erlang-base)",
        ))?;
    let deadline = Instant::now() + EPMD_START_TIMEOUT;
    loop {
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(child);
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "epmd exited ({status}) on port {port}: {}",
                tail(&log_path, LOG_TAIL_LINES)
            );
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("epmd did not listen on port {port} within {EPMD_START_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `signal` to `target` (a pid, or `-pgid` for a group) with kill(1): std has no
/// such call and the workspace forbids `unsafe`.
fn kill(signal: &str, target: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args([format!("-{signal}"), "--".to_owned(), target.to_owned()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(doing(format!("kill -{signal} {target}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(anyhow!("kill -{signal} {target}: {status}"))
    }
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).map_err(doing(format!("writing {}", path.display())))
}

/// The last `lines` lines of the file at `path` (at most its last 64 KiB are read).
fn tail(path: &Path, lines: usize) -> String {
    const READ_MAX: u64 = 64 * 1024;
    let Ok(mut file) = std::fs::File::open(path) else {
        return "(missing)".to_owned();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(READ_MAX)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_only_a_tls_listener_requiring_client_certificates() {
        let text = config_text(&ConfigFiles {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 21000)),
            ca_pem: Path::new("/d/ca.crt"),
            server_cert: Path::new("/d/server.crt"),
            server_key: Path::new("/d/server.key"),
            password: "pw",
        });
        for line in [
            "listeners.tcp = none",
            "listeners.ssl.default = 127.0.0.1:21000",
            "ssl_options.verify = verify_peer",
            "ssl_options.fail_if_no_peer_cert = true",
            "ssl_options.cacertfile = /d/ca.crt",
            "default_pass = pw",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        std::fs::write(&path, "a\nb\nc\n").expect("write");
        assert_eq!(tail(&path, 2), "b\nc");
        assert_eq!(tail(&path, 10), "a\nb\nc");
        assert_eq!(tail(&dir.path().join("none"), 2), "(missing)");
    }
}
