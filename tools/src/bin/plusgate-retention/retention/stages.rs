//! The script of the measurement, stage by stage (the list is in the [module doc](super)).

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use harness::{status, try_register_consent, Federation, Node};
use plusgate::node::client::{Agent, HttpVersion};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::census::{census, let_sled_clean, Census};
use super::drain::{drain, Acked};
use super::monitor::{Counter, Monitor};
use super::probe::{disk_usage, memory, DiskUsage};
use super::push::{self, Pushers, Template};
use super::report::{DiskRow, Phase, Report, Stop};
use super::start::timed_start;
use super::{consent, referral, RetentionArgs, CENTER, CLOCK_SHIFT_S, RECIPIENT, SENDER};

/// Longest a clean stop may take (it folds the overlay into sled and syncs).
const STOP_TIME_MAX: Duration = Duration::from_secs(600);

/// Longest the purge of every payload may take.
const PURGE_TIME_MAX: Duration = Duration::from_secs(4 * 3600);

/// Pause between two looks at whether the purge is done.
const PURGE_POLL: Duration = Duration::from_secs(1);

/// Messages asked for per pull while draining (`[limits] inbox_pull_max` is raised to it).
const PULL_MAX: usize = 1000;

/// The node, its federation and what every stage needs.
struct Bench<'a> {
    args: &'a RetentionArgs,
    fed: &'a Federation,
    node: Node,
    template: Template,
    run: String,
    report: Report,
    /// Messages accepted so far (each stage adds its own).
    messages: u64,
}

/// Runs every stage and returns the report.
pub(super) async fn measure(args: &RetentionArgs, fed: &Federation) -> anyhow::Result<Report> {
    fed.set_limit(CENTER, "inbox_pull_max", PULL_MAX as u64);
    let node = fed.spawn_node(CENTER, "")?;
    eprintln!("retention: node listening on https://{}", node.addr());
    try_register_consent(&node.agent(SENDER, HttpVersion::Http1), &consent(fed)).await?;
    let template = Template::new(&referral(fed))?;
    let run = uuid::Uuid::now_v7().simple().to_string()[20..].to_owned();
    let body_bytes = template.len(&format!("ret-{run}-fill-{}", args.messages / 2)) as u64;
    let mut b = Bench {
        args,
        fed,
        node,
        template,
        run,
        report: Report::new(args, body_bytes),
        messages: 0,
    };
    b.fill().await?;
    b.restarts().await?;
    if !args.no_drain {
        b.drain().await?;
        b.purge().await?;
    }
    if b.node.pid().is_some() {
        b.stop("final stop").await?;
    }
    if args.sled_cleaner_s > 0 {
        b.sled_cleaner(Duration::from_secs(args.sled_cleaner_s.into()))?;
    }
    Ok(b.report)
}

impl Bench<'_> {
    fn data(&self) -> std::path::PathBuf {
        self.fed.data_dir(CENTER)
    }

    fn agent(&self) -> Agent {
        self.node.agent(SENDER, HttpVersion::Http1)
    }

    fn monitor(&self, stage: &str, counter: Option<Counter>) -> Monitor {
        Monitor::start(stage, self.node.pid(), self.data(), counter)
    }

    /// Stage 1: pushes `--messages` referrals.
    async fn fill(&mut self) -> anyhow::Result<()> {
        let n = self.args.messages;
        eprintln!(
            "retention: pushing {n} referrals over {} connections",
            self.args.connections
        );
        let pushers = Arc::new(Pushers::new(
            self.agent(),
            self.template.clone(),
            format!("ret-{}-fill", self.run),
            n,
        ));
        let counter = Arc::clone(&pushers);
        let monitor = self.monitor("fill", Some(Arc::new(move || counter.accepted())));
        let started = Instant::now();
        push::join(push::spawn(&pushers, self.args.connections.into())).await?;
        let seconds = started.elapsed().as_secs_f64();
        let maxima = monitor.finish().await;
        self.messages += pushers.accepted();
        self.report.pushed_bytes += pushers.accepted_bytes();
        self.report.phases.push(Phase::new(
            "fill",
            seconds,
            pushers.accepted(),
            maxima,
            &self.node,
        ));
        self.measure_disk("filled, running");
        Ok(())
    }

    /// Stages 2 and 3: clean stop and start, a load, SIGKILL under load and start, and
    /// one more clean stop and start; then a census.
    async fn restarts(&mut self) -> anyhow::Result<()> {
        let n = self.messages;
        self.stop("clean stop after the fill").await?;
        self.measure_disk("filled, stopped cleanly");
        self.start(&format!("clean start after the fill ({n})"))
            .await?;
        let load_s = self.args.load_s.into();
        self.load("load after the clean start", Duration::from_secs(load_s))
            .await?;
        self.load_until_killed(
            "load until SIGKILL",
            Duration::from_secs(self.args.kill_after_s.into()),
        )
        .await?;
        self.measure_disk("after SIGKILL under load");
        self.start("start after SIGKILL under load").await?;
        self.stop("clean stop").await?;
        self.start("clean start right after a start").await?;
        self.stop("clean stop before the census").await?;
        self.measure_disk_and_count("retained, stopped cleanly")?;
        Ok(())
    }

    /// Stage 5: pulls and acknowledges everything, then measures the space.
    async fn drain(&mut self) -> anyhow::Result<()> {
        // Its first push is the newest message: the last the purge will reach.
        let newest = self.start("clean start after the census").await?;
        let agent = self.node.agent(RECIPIENT, HttpVersion::Http1);
        let acked = Arc::new(Acked::default());
        let counter = Arc::clone(&acked);
        let monitor = self.monitor("drain", Some(Arc::new(move || counter.get())));
        let started = Instant::now();
        drain(&agent, self.args.drainers.into(), PULL_MAX, &acked).await?;
        let seconds = started.elapsed().as_secs_f64();
        let maxima = monitor.finish().await;
        self.report.phases.push(Phase::new(
            "drain (pull + ack)",
            seconds,
            acked.get(),
            maxima,
            &self.node,
        ));
        self.measure_disk("drained, running");
        self.settle("drained").await;
        self.stop("clean stop after the drain").await?;
        self.measure_disk_and_count("drained, stopped cleanly")?;
        self.report.purge_probe = Some(newest);
        Ok(())
    }

    /// Stage 6: a clock past every retention period, the purge, and the space after it.
    async fn purge(&mut self) -> anyhow::Result<()> {
        let Some(newest) = self.report.purge_probe.clone() else {
            bail!("no message to watch the purge by");
        };
        self.fed.shift_clock(CENTER, CLOCK_SHIFT_S);
        self.start("start, clock a day ahead (purge begins)")
            .await?;
        let monitor = self.monitor("purge", None);
        let started = Instant::now();
        let agent = self.agent();
        loop {
            let s = status(&agent, &newest).await;
            let body: serde_json::Value = s.json().unwrap_or_default();
            if body["payload_erased"].is_object() {
                break;
            }
            if started.elapsed() > PURGE_TIME_MAX {
                bail!("{newest} was not purged within {PURGE_TIME_MAX:?}: {body}");
            }
            tokio::time::sleep(PURGE_POLL).await;
        }
        let seconds = started.elapsed().as_secs_f64();
        let maxima = monitor.finish().await;
        // Everything but the first push of this start, whose retention has just begun.
        let purged = self.messages.saturating_sub(1);
        self.report.phases.push(Phase::new(
            "retention purge",
            seconds,
            purged,
            maxima,
            &self.node,
        ));
        self.measure_disk("purged, running");
        self.settle("purged").await;
        self.stop("clean stop after the purge").await?;
        self.measure_disk_and_count("purged, stopped cleanly")?;
        self.start("clean start after the purge").await?;
        self.measure_disk("purged, restarted");
        Ok(())
    }

    /// sled's own segment cleaner on the stopped store for `idle`, then a census.
    fn sled_cleaner(&mut self, idle: Duration) -> anyhow::Result<()> {
        eprintln!(
            "retention: sled's segment cleaner on the stopped store for {} s",
            idle.as_secs()
        );
        let data = self.data();
        let written = tokio::task::block_in_place(|| let_sled_clean(&data, idle))?;
        eprintln!(
            "retention: sled's cleaner wrote {:.0} MiB",
            written as f64 / super::probe::MIB
        );
        self.report.sled_cleaner_written_bytes = Some(written);
        self.measure_disk_and_count(&format!("after sled's cleaner, {} s", idle.as_secs()))
    }

    /// A timed start; returns the id of its first push.
    async fn start(&mut self, name: &str) -> anyhow::Result<String> {
        let id = format!("ret-{}-start-{}", self.run, self.report.starts.len());
        eprintln!("retention: {name}");
        let data = self.data();
        let cold = self.args.cold.then_some(data.as_path());
        let timing = timed_start(&mut self.node, name, &self.template, &id, cold).await?;
        eprintln!(
            "retention: listening after {:.2} s, ready after {:.2} s, first push after {:.2} s",
            timing.listening_s, timing.ready_s, timing.first_push_s
        );
        self.messages += 1;
        self.report.starts.push(timing);
        Ok(id)
    }

    /// SIGTERM, timed until the process exits.
    async fn stop(&mut self, name: &str) -> anyhow::Result<()> {
        let memory = memory(&self.node);
        let started = Instant::now();
        let status = tokio::task::block_in_place(|| self.node.terminate_within(STOP_TIME_MAX))?;
        let seconds = started.elapsed().as_secs_f64();
        if !status.success() {
            bail!(
                "the node exited with {status} on SIGTERM; its log ends with:\n{}",
                self.node.log_tail(30)
            );
        }
        eprintln!("retention: {name}: {seconds:.2} s");
        self.report.stops.push(Stop {
            name: name.to_owned(),
            seconds,
            memory_before: memory,
        });
        Ok(())
    }

    /// Pushes for `duration`.
    async fn load(&mut self, name: &str, duration: Duration) -> anyhow::Result<()> {
        let load = self.start_load(name);
        tokio::time::sleep(duration).await;
        self.finish_load(name, duration, load).await
    }

    /// Pushes for `duration`, then SIGKILLs the node while the pushes go on.
    async fn load_until_killed(&mut self, name: &str, duration: Duration) -> anyhow::Result<()> {
        let load = self.start_load(name);
        tokio::time::sleep(duration).await;
        tokio::task::block_in_place(|| self.node.kill_hard());
        self.finish_load(name, duration, load).await
    }

    fn start_load(&self, name: &str) -> Load {
        let pushers = Arc::new(Pushers::new(
            self.agent(),
            self.template.clone(),
            format!("ret-{}-load{}", self.run, self.report.phases.len()),
            u64::MAX,
        ));
        let counter = Arc::clone(&pushers);
        Load {
            monitor: self.monitor(name, Some(Arc::new(move || counter.accepted()))),
            tasks: push::spawn(&pushers, self.args.connections.into()),
            pushers,
        }
    }

    /// Stops the pushers of `load` (a killed node's pushers see only failures, and stop).
    async fn finish_load(
        &mut self,
        name: &str,
        duration: Duration,
        load: Load,
    ) -> anyhow::Result<()> {
        let Load {
            pushers,
            tasks,
            monitor,
        } = load;
        pushers.stop();
        let maxima = monitor.finish().await;
        push::join(tasks).await?;
        self.messages += pushers.accepted();
        self.report.pushed_bytes += pushers.accepted_bytes();
        let mut phase = Phase::new(
            name,
            duration.as_secs_f64(),
            pushers.accepted(),
            maxima,
            &self.node,
        );
        phase.failures = pushers.failures();
        self.report.phases.push(phase);
        Ok(())
    }

    /// Leaves the node idle for `--settle-s`, then measures the data directory.
    async fn settle(&mut self, what: &str) {
        let seconds = self.args.settle_s;
        if seconds == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(seconds.into())).await;
        self.measure_disk(&format!("{what}, {seconds} s idle"));
    }

    /// Measures the data directory.
    fn measure_disk(&mut self, name: &str) {
        let usage = disk_usage(&self.data());
        self.add_disk_row(name, usage, None);
    }

    /// Measures the data directory, then takes a census of the (stopped) store.
    fn measure_disk_and_count(&mut self, name: &str) -> anyhow::Result<()> {
        let usage = disk_usage(&self.data());
        eprintln!("retention: census of the store");
        let counted = tokio::task::block_in_place(|| census(&self.data()))?;
        self.add_disk_row(name, usage, Some(counted));
        Ok(())
    }

    fn add_disk_row(&mut self, name: &str, usage: DiskUsage, census: Option<Census>) {
        let row = DiskRow {
            name: name.to_owned(),
            running: self.node.pid().is_some(),
            messages: self.messages,
            pushed_bytes: self.report.pushed_bytes,
            usage,
            census,
        };
        eprintln!("retention: {}", row.summary());
        self.report.disk.push(row);
    }
}

/// Pushers running for a load, and the monitor watching them.
struct Load {
    pushers: Arc<Pushers>,
    tasks: JoinSet<anyhow::Result<()>>,
    monitor: Monitor,
}
