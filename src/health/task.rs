//! The task that probes one target: it waits for the target's slot in its schedule and
//! for a free probe slot, runs the probe within the check's timeout, judges the result,
//! feeds the hysteresis, and wakes the publisher on a flip. Tasks are independent, so
//! a hanging target stalls nobody else; since timeout < interval, a probe never delays
//! its successor.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::failure::ProbeResult;
use super::hysteresis::Hysteresis;
use super::probe::Prober;
use super::schedule::{Judged, Schedule, Timing};
use super::state::TargetState;
use crate::metrics::{ProbeOutcome, ProbeRecorder};
use crate::plan::{Check, Plan};
use crate::rng::Rng;

/// Everything a target's task needs besides its prober.
pub(super) struct TaskCtx {
    pub label: String,
    /// The probe address and Host: with the check's name, how the current plan
    /// (`plan`) knows this target, to name the services a flip affects.
    pub addr: SocketAddr,
    pub host: Option<String>,
    pub plan: Arc<ArcSwapOption<Plan>>,
    pub check: Arc<Check>,
    /// When the target was started: its schedule counts from here, not from whenever
    /// the runtime first polls the task.
    pub started: Instant,
    pub state: Arc<TargetState>,
    /// Woken on every flip, and on the first result (readiness waits for it).
    pub changed: Arc<Notify>,
    pub recorder: ProbeRecorder,
    /// Bounds the probes in flight across all targets.
    pub slots: Arc<Semaphore>,
    /// Last time a "probes are late" warning was logged, for the whole engine.
    pub late_warned: Arc<Mutex<Option<Instant>>>,
}

impl TaskCtx {
    /// The services of the current plan whose answers follow this target. Looked up
    /// at a flip rather than kept per task: a config of 10,000 services would hold
    /// half a megabyte of these lists, and a reload that keeps the task can change them.
    fn services(&self) -> String {
        let plan = self.plan.load();
        let names = plan.as_deref().and_then(|plan| {
            let t = plan.target_at(self.addr, &self.check.name, self.host.as_deref())?;
            Some(plan.target_services(t).join(", "))
        });
        // A task that a reload is stopping has no target in the new plan.
        names.unwrap_or_else(|| "none: the target left the configuration".into())
    }
}

pub(super) async fn run_target(ctx: TaskCtx, prober: Prober) {
    let check = &ctx.check;
    let phase = if check.jitter.is_zero() {
        Duration::ZERO
    } else {
        Duration::from_nanos(Rng::with_thread(|r| {
            r.below(check.jitter.as_nanos() as u64)
        }))
    };
    let mut schedule = Schedule::new(ctx.started, phase, check.interval);
    let timing = Timing::new(check);
    // A target no probe has judged yet is set by its first result; a verdict from
    // earlier probes (a changed check inherits its predecessor's) keeps its hysteresis.
    let mut hyst = if ctx.state.settled() {
        Hysteresis::new(ctx.state.is_up(), check.rise, check.fall)
    } else {
        Hysteresis::unprobed(ctx.state.is_up(), check.rise, check.fall)
    };
    loop {
        tokio::time::sleep_until(schedule.due()).await;
        let scheduled = schedule.take(Instant::now());
        // A slot bounds the probes in flight; waiting for one makes a probe late, and
        // that is reported rather than hidden.
        let Ok(_slot) = ctx.slots.acquire().await else {
            return; // semaphore closed: shutting down
        };
        let started = Instant::now();
        let lag = started.saturating_duration_since(scheduled);
        ctx.recorder.lag(lag);
        if timing.is_late(lag) {
            ctx.recorder.late();
            warn_late(&ctx, lag);
        }
        // Boxed: the probe's state (an HTTP or TLS exchange) then takes memory only
        // while it is in flight, not for the life of every target's task (2.8 KB per
        // target otherwise, 2.8 MB idle with 1,000 targets).
        let result = tokio::time::timeout(timing.timeout, Box::pin(prober.probe()))
            .await
            .ok();
        let took = started.elapsed();
        ctx.recorder.duration(took);
        match timing.judge(took, result) {
            Judged::Inconclusive(reason) => {
                ctx.recorder.result(ProbeOutcome::Inconclusive);
                ctx.recorder.late();
                debug!(target = %ctx.label, ms = took.as_millis() as u64, reason = %reason, "probe inconclusive");
                warn_late(&ctx, timing.overrun(took));
            }
            Judged::Conclusive(result) => conclude(&ctx, &mut hyst, result, took),
        }
    }
}

/// Counts a conclusive result, applies it, and says so when the verdict flips.
fn conclude(ctx: &TaskCtx, hyst: &mut Hysteresis, result: ProbeResult, took: Duration) {
    let ms = took.as_millis() as u64;
    match &result {
        Ok(()) => {
            ctx.recorder.result(ProbeOutcome::Success);
            debug!(target = %ctx.label, ok = true, ms, "probe done");
        }
        Err(e) => {
            ctx.recorder.result(e.outcome());
            debug!(target = %ctx.label, ok = false, ms, reason = %e, "probe done");
        }
    }
    let flipped = hyst.record(result.is_ok()).then_some(hyst.up);
    let reason = flipped.and(result.as_ref().err().cloned());
    let first = ctx.state.record(result, took, flipped);
    if let Some(up) = flipped {
        ctx.recorder.flipped(up);
        let services = ctx.services();
        match reason {
            None => info!("target {} is now UP (services: {services})", ctx.label),
            Some(reason) => warn!(
                "target {} is now DOWN: {reason} (services: {services})",
                ctx.label
            ),
        }
    }
    if flipped.is_some() || first {
        ctx.changed.notify_one();
    }
}

/// Logs that probes are behind schedule, at most once every 30 s for the whole engine.
fn warn_late(ctx: &TaskCtx, lag: Duration) {
    let mut last = ctx.late_warned.lock().unwrap_or_else(|p| p.into_inner());
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
        *last = Some(Instant::now());
        warn!(
            "probes are falling behind their schedule: target {} started {}ms late (see gslb_probes_late_total)",
            ctx.label,
            lag.as_millis()
        );
    }
}
