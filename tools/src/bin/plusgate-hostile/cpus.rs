//! Where the node, the good client and the attackers run. In the world an attacker runs on
//! machines of its own: what it spends on its own TLS and loops is not the node's CPU.
//! Here all three share one machine, so by default the node and the good client get the
//! first CPU and the attackers the others; otherwise the attacker's own work (thousands of
//! client handshakes a second) would show up as the node's latency. `--shared-cpus` runs
//! everything everywhere, as before.

use std::io;

use anyhow::{anyhow, bail};
use rustix::process::Pid;
use rustix::thread::{sched_setaffinity, CpuSet};
use serde::Serialize;

/// Which CPUs each side runs on (empty: not pinned).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Placement {
    /// The node and the good client.
    pub node: Vec<usize>,
    /// The attackers (the tool's runtime).
    pub attackers: Vec<usize>,
}

impl Placement {
    /// The default: node and good client on CPU 0, attackers on the rest; nothing pinned on
    /// a one-CPU machine.
    pub fn split() -> Placement {
        let n = std::thread::available_parallelism().map_or(1, usize::from);
        if n < 2 {
            return Placement::default();
        }
        Placement {
            node: vec![0],
            attackers: (1..n).collect(),
        }
    }

    /// From `--node-cpus` and `--attacker-cpus` lists.
    pub fn given(node: &str, attackers: &str) -> anyhow::Result<Placement> {
        let (node, attackers) = (parse(node)?, parse(attackers)?);
        if let Some(both) = node.iter().find(|c| attackers.contains(c)) {
            bail!("CPU {both} is in both --node-cpus and --attacker-cpus");
        }
        Ok(Placement { node, attackers })
    }
}

/// `0`, `1-3`, `0,2-3`.
fn parse(list: &str) -> anyhow::Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim) {
        let bad = || anyhow!("`{part}` is not a CPU or a range of CPUs (e.g. 0, 1-3)");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().map_err(|_| bad())?),
        }
    }
    if cpus.is_empty() {
        bail!("an empty list of CPUs");
    }
    Ok(cpus)
}

fn set(cpus: &[usize]) -> CpuSet {
    let mut set = CpuSet::new();
    for &cpu in cpus {
        set.set(cpu);
    }
    set
}

/// Pins the calling thread to `cpus` (nothing if empty).
pub fn pin_this_thread(cpus: &[usize]) -> io::Result<()> {
    if cpus.is_empty() {
        return Ok(());
    }
    sched_setaffinity(None, &set(cpus)).map_err(io::Error::from)
}

/// Pins every thread of process `pid` to `cpus` (nothing if empty); threads it starts
/// later inherit it from the thread that starts them.
pub fn pin_process(pid: u32, cpus: &[usize]) -> anyhow::Result<()> {
    if cpus.is_empty() {
        return Ok(());
    }
    let set = set(cpus);
    // Twice: a thread started while the first pass ran inherited the old mask.
    for _ in 0..2 {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))?;
        for task in tasks {
            let tid: i32 = task?
                .file_name()
                .to_string_lossy()
                .parse()
                .map_err(|_| anyhow!("a task of {pid} without a numeric id"))?;
            let tid = Pid::from_raw(tid).ok_or_else(|| anyhow!("task id 0"))?;
            sched_setaffinity(Some(tid), &set)
                .map_err(|e| anyhow!("pinning thread {tid:?} of the node: {e}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse("0").expect("one"), vec![0]);
        assert_eq!(parse("1-3").expect("range"), vec![1, 2, 3]);
        assert_eq!(parse("0, 2-3").expect("mixed"), vec![0, 2, 3]);
        assert!(parse("3-1").is_err());
        assert!(parse("a").is_err());
        assert!(Placement::given("0", "0-1").is_err());
    }
}
