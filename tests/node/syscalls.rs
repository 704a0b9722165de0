//! The unit's sandbox against what the node really does. systemd is not there to run the
//! unit, so the node runs under `strace` through start, pushes and pulls, a forward
//! attempt to a peer that is down, a scrape, a SIGHUP reload and a SIGTERM drain; then
//! every system call it made must be one `SystemCallFilter=` of deploy/plusgate.service
//! allows (expanded with `systemd-analyze syscall-filter`), every socket of a family
//! `RestrictAddressFamilies=` allows, and no mapping writable and executable
//! (`MemoryDenyWriteExecute=`). A call the filter does not allow would kill the service.
//!
//! Needs `strace` and `systemd-analyze` (`.ci/test` installs strace); without either it
//! prints SKIPPED.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use plusgate::node::client::HttpVersion;

use crate::packages::ops_get;
use crate::support::{
    drain_inbox, plusgate_bin, push_accepted, with_id, Federation, Node, NodeSpec,
};

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/plusgate.service");

/// The values of each `key=` line in the unit's `[Service]`, in order.
fn unit_lines(key: &str) -> Vec<String> {
    let text = std::fs::read_to_string(UNIT).expect("read unit");
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
        .collect()
}

/// The values of `key` in the unit's `[Service]`, split at white space, in order.
fn unit_values(key: &str) -> Vec<String> {
    unit_lines(key)
        .iter()
        .flat_map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

/// systemd's system call groups (`@name` → members, which may name groups).
fn syscall_groups() -> BTreeMap<String, Vec<String>> {
    let out = Command::new("systemd-analyze")
        .arg("syscall-filter")
        .output()
        .expect("systemd-analyze syscall-filter");
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.starts_with('@') {
            current = Some(line.trim().to_owned());
            groups.entry(line.trim().to_owned()).or_default();
        } else if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        } else if let Some(group) = &current {
            groups
                .get_mut(group)
                .expect("group")
                .push(line.trim().to_owned());
        }
    }
    groups
}

/// The system calls `item` (a name or `@group`) stands for.
fn expand(item: &str, groups: &BTreeMap<String, Vec<String>>, into: &mut BTreeSet<String>) {
    match groups.get(item) {
        Some(members) => members.iter().for_each(|m| expand(m, groups, into)),
        None if item.starts_with('@') => panic!("unknown system call group {item}"),
        None => {
            into.insert(item.to_owned());
        }
    }
}

/// The system call names in an `strace -f` output (`PID name(…`, `PID <... name resumed>`).
fn calls_in(trace: &str) -> BTreeSet<String> {
    trace
        .lines()
        .filter_map(|line| {
            let rest = line.split_once(' ')?.1.trim_start();
            let rest = rest.strip_prefix("<... ").unwrap_or(rest);
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty() && rest[name.len()..].starts_with(['(', ' '])).then_some(name)
        })
        .collect()
}

fn installed(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The process ids of `pid`'s children.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name} {pid}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_node_makes_only_system_calls_the_unit_allows() {
    if !installed("strace") || !installed("systemd-analyze") {
        eprintln!("SKIPPED: needs strace and systemd-analyze (.ci/test installs strace)");
        return;
    }
    let fed = Federation::with_centers(&["suwon", "gangseo"]);
    fed.set_option("suwon", "federation", "retry_initial_ms", "50");
    let trace = fed.scratch("trace").join("strace.out");
    let wrapper = fed.scratch("bin").join("traced");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec strace -f -qq -o '{}' -- \"$@\"\n",
            trace.display()
        ),
    )
    .expect("write wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let spec = NodeSpec {
        args: vec![
            plusgate_bin().into(),
            "serve".into(),
            "--config".into(),
            fed.config_path("suwon").display().to_string(),
        ],
        cwd: fed.dir().to_owned(),
        log: fed.dir().join("traced.log"),
        federation: fed.dir().to_owned(),
        log_filter: String::new(),
    };
    let mut node = Node::spawn(&harness::Plusgate::at(&wrapper), spec)
        .unwrap_or_else(|e| panic!("the traced node did not start: {e}"));
    let strace_pid = node.pid().expect("strace runs");
    let node_pid = *children(strace_pid)
        .first()
        .expect("the node is strace's child");

    fed.register_example_consents(&node, "suwon");
    let sender = node.agent("suwon/employment", HttpVersion::Http2);
    push_accepted(&sender, &fed.referral("ref-traced-1")).await;
    let recipient = node.agent("suwon/welfare", HttpVersion::Http1);
    assert_eq!(drain_inbox(&recipient).await, ["ref-traced-1"]);
    // gangseo is down: the forwarder connects, fails and backs off.
    push_accepted(
        &sender,
        &with_id(fed.example("referral-remote"), "ref-traced-2"),
    )
    .await;
    let ops = node.ops_addr().expect("operations listener");
    assert_eq!(ops_get(ops, "/metrics").0, 200);

    signal(node_pid, "HUP");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !node.log().contains("reloaded the TLS trust") {
        assert!(
            Instant::now() < deadline,
            "no reload: {}",
            node.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    signal(node_pid, "TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = node.exited().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the node did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}: {}", node.log_tail(20));

    let text = std::fs::read_to_string(&trace).expect("read trace");
    let used = calls_in(&text);
    assert!(used.len() > 30 && used.contains("fsync"), "{used:?}");

    let groups = syscall_groups();
    let (mut allowed, mut denied) = (BTreeSet::new(), BTreeSet::new());
    // A line starting with `~` denies every item on it; the others allow theirs.
    for line in unit_lines("SystemCallFilter") {
        let (items, into) = match line.strip_prefix('~') {
            Some(deny) => (deny.to_owned(), &mut denied),
            None => (line, &mut allowed),
        };
        for item in items.split_whitespace() {
            expand(item, &groups, into);
        }
    }
    assert!(!allowed.is_empty(), "the unit has an allow list");
    let refused: Vec<&String> = used
        .iter()
        .filter(|c| !allowed.contains(*c) || denied.contains(*c))
        .collect();
    assert!(
        refused.is_empty(),
        "the unit's SystemCallFilter= would kill the node for {refused:?} (all used: {used:?})"
    );

    let families = unit_values("RestrictAddressFamilies");
    for call in text
        .lines()
        .filter_map(|l| l.split_once("socket(").map(|(_, r)| r))
    {
        let family = call.split(',').next().unwrap_or_default();
        assert!(
            families.iter().any(|f| f == family),
            "a {family} socket; the unit allows {families:?}"
        );
    }
    assert_eq!(unit_values("MemoryDenyWriteExecute"), ["true"]);
    for line in text.lines() {
        assert!(
            !(line.contains("PROT_WRITE") && line.contains("PROT_EXEC")),
            "a writable and executable mapping: {line}"
        );
    }
}
