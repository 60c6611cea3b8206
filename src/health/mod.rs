//! The health engine: one task per distinct probe target (address + check), shared by
//! every service whose endpoints use it. Each task probes on a fixed schedule, applies
//! rise/fall hysteresis, and keeps its verdict in a `TargetState` that the rest of the
//! program reads; on a flip it wakes the publisher, which builds the next snapshot.
//!
//! Scheduling: a target's probes start at a random phase within the check's jitter and
//! then run every `interval` exactly, so the phase spreads targets over the interval
//! while each target keeps a steady period (which is what the failover bounds
//! `interval × fall + timeout` rely on). A probe is bounded by `timeout`; since
//! timeout < interval, a probe never delays its successor. Tasks are independent, so a
//! hanging target stalls nobody else.
//!
//! The engine outlives configurations: `apply` keeps the tasks (and so the state) of
//! targets that a new plan still has, stops the ones it dropped, and starts new ones.
//! A reload therefore never makes a healthy endpoint flap.

mod http;
mod tcp;
pub mod tls;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, Semaphore};
use tokio::task::AbortHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
use crate::plan::{Check, CheckKind, Plan, ShowDuration};
use crate::rng::Rng;

/// Why a probe failed, in a form fit for a log line: `http 503 "no healthy upstreams"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeError(pub String);

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Rise/fall hysteresis for one target.
#[derive(Debug, Clone)]
pub struct Hysteresis {
    pub up: bool,
    /// Consecutive results that disagree with `up`.
    streak: u32,
    rise: u32,
    fall: u32,
}

impl Hysteresis {
    pub fn new(up: bool, rise: u32, fall: u32) -> Self {
        Hysteresis {
            up,
            streak: 0,
            rise,
            fall,
        }
    }

    /// Records one result; returns true when the state flipped.
    pub fn record(&mut self, ok: bool) -> bool {
        if ok == self.up {
            self.streak = 0;
            return false;
        }
        self.streak += 1;
        let needed = if self.up { self.fall } else { self.rise };
        if self.streak >= needed {
            self.up = ok;
            self.streak = 0;
            true
        } else {
            false
        }
    }
}

/// What is known about one target, for `/v1/state`.
#[derive(Debug, Clone, Default)]
pub struct Detail {
    /// Result of the last probe: `None` before the first one.
    pub last: Option<Result<(), String>>,
    pub last_probe_at: Option<SystemTime>,
    pub last_duration: Option<Duration>,
    /// When `up` last changed (or when the target was first seen).
    pub changed_at: Option<SystemTime>,
}

/// The live state of one target, shared between its probe task and readers.
#[derive(Debug)]
pub struct TargetState {
    up: AtomicBool,
    first_done: AtomicBool,
    detail: Mutex<Detail>,
}

impl TargetState {
    fn new(up: bool) -> Self {
        TargetState {
            up: AtomicBool::new(up),
            first_done: AtomicBool::new(false),
            detail: Mutex::new(Detail {
                changed_at: Some(SystemTime::now()),
                ..Detail::default()
            }),
        }
    }

    fn fail_to_start(&self, reason: String) {
        self.up.store(false, Ordering::Release);
        self.first_done.store(true, Ordering::Release);
        let mut d = self.detail.lock().unwrap_or_else(|p| p.into_inner());
        d.last = Some(Err(reason));
        d.changed_at = Some(SystemTime::now());
    }

    /// The hysteresis verdict. Endpoints start UP until probes say otherwise.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Whether at least one probe has completed.
    pub fn probed(&self) -> bool {
        self.first_done.load(Ordering::Acquire)
    }

    pub fn detail(&self) -> Detail {
        self.detail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Identity of a probe: same address, same check definition and same per-service
/// host means same probe. The check holds its CA certificates as read at this load,
/// so a rotated bundle (same path, new contents) makes a new probe with the new trust
/// anchors.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    addr: SocketAddr,
    check: Check,
    host: Option<String>,
}

struct Running {
    state: Arc<TargetState>,
    task: AbortHandle,
}

/// The engine. Dropping it stops every probe.
pub struct Engine {
    running: HashMap<Key, Running>,
    /// Woken on every state flip.
    changed: Arc<Notify>,
    metrics: Arc<Metrics>,
    /// Bounds the probes in flight across all targets.
    slots: Arc<Semaphore>,
    /// Last time a "probes are late" warning was logged (rate limit).
    late_warned: Arc<Mutex<Option<Instant>>>,
}

impl Engine {
    pub fn new(changed: Arc<Notify>, metrics: Arc<Metrics>, max_concurrent: usize) -> Engine {
        // reqwest is built without a bundled crypto provider (aws-lc-rs is a heavy
        // build); ring it is. Installing twice is harmless: the first one stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Engine {
            running: HashMap::new(),
            changed,
            metrics,
            slots: Arc::new(Semaphore::new(max_concurrent.max(1))),
            late_warned: Arc::new(Mutex::new(None)),
        }
    }

    /// Makes the running probes match `plan`; returns the state of each of its targets,
    /// in `plan.targets` order. Must be called within a tokio runtime.
    pub fn apply(&mut self, plan: &Arc<Plan>) -> Arc<[Arc<TargetState>]> {
        let mut next: HashMap<Key, Running> = HashMap::with_capacity(plan.targets.len());
        let mut configs = tls::ConfigCache::default();
        let mut states = Vec::with_capacity(plan.targets.len());
        // The verdicts of the running probes by (address, check name, host), looked up
        // when a changed check on the same address replaces one of them.
        let was_up: HashMap<(SocketAddr, String, Option<String>), bool> = self
            .running
            .iter()
            .map(|(k, r)| {
                (
                    (k.addr, k.check.name.clone(), k.host.clone()),
                    r.state.is_up(),
                )
            })
            .collect();
        for t in 0..plan.targets.len() {
            let target = &plan.targets[t];
            let check = &plan.checks[target.check];
            let key = Key {
                addr: target.addr,
                check: check.clone(),
                host: target.host.clone(),
            };
            if let Some(r) = self.running.remove(&key) {
                states.push(r.state.clone());
                next.insert(key, r);
                continue;
            }
            // A changed check on the same address (say, a new timeout) starts a new
            // probe; it inherits the old verdict so that the change does not flap it.
            let inherited = was_up.get(&(key.addr, key.check.name.clone(), key.host.clone()));
            let state = Arc::new(TargetState::new(inherited.copied().unwrap_or(true)));
            let label = plan.target_label(t);
            let task = match Prober::new(&key, &label, &self.metrics, &mut configs) {
                Ok(prober) => {
                    let ctx = TaskCtx {
                        label,
                        services: plan.target_services(t).join(", "),
                        check: key.check.clone(),
                        state: state.clone(),
                        changed: self.changed.clone(),
                        metrics: self.metrics.clone(),
                        slots: self.slots.clone(),
                        late_warned: self.late_warned.clone(),
                    };
                    tokio::spawn(run_target(ctx, prober)).abort_handle()
                }
                Err(e) => {
                    // Validation should have caught this; if it did not, the target is
                    // DOWN with the reason (never silently UP and unprobed).
                    let reason = format!("probe cannot start: {e}");
                    warn!("target {label} is now DOWN: {reason}");
                    state.fail_to_start(reason);
                    self.changed.notify_one();
                    tokio::spawn(async {}).abort_handle()
                }
            };
            states.push(state.clone());
            next.insert(key, Running { state, task });
        }
        // Whatever is left is no longer in the plan.
        for (key, r) in self.running.drain() {
            debug!(addr = %key.addr, check = %key.check.name, "probe stopped");
            r.task.abort();
        }
        self.running = next;
        self.metrics.targets.set(self.running.len() as i64);
        states.into()
    }

    pub fn stop(&mut self) {
        for (_, r) in self.running.drain() {
            r.task.abort();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

enum Prober {
    Tcp(SocketAddr),
    Tls(Box<tls::TlsProbe>),
    Http(Box<http::HttpProbe>),
}

impl Prober {
    fn new(
        key: &Key,
        label: &str,
        metrics: &Metrics,
        configs: &mut tls::ConfigCache,
    ) -> Result<Prober, String> {
        let host = key.host.as_deref();
        let expiry = |tls: &crate::plan::TlsSettings| {
            let target = crate::metrics::cert_target_label(key.addr, host);
            tls::ExpiryWatch::new(
                label.to_string(),
                tls.expiry_warning,
                metrics
                    .cert_expiry
                    .with_label_values(&[key.check.name.as_str(), target.as_str()]),
            )
        };
        Ok(match &key.check.kind {
            CheckKind::Tcp => Prober::Tcp(key.addr),
            CheckKind::Tls => {
                let t = key
                    .check
                    .tls
                    .as_ref()
                    .ok_or("tls check without tls settings")?;
                let sni = t.sni.as_deref().or(host);
                Prober::Tls(Box::new(tls::TlsProbe::new(
                    key.addr,
                    t,
                    sni,
                    expiry(t),
                    configs,
                )?))
            }
            CheckKind::Http(_) | CheckKind::Https(_) => {
                Prober::Http(Box::new(http::HttpProbe::new(
                    key.addr,
                    &key.check,
                    host,
                    key.check.tls.as_ref().map(expiry),
                    configs,
                )?))
            }
        })
    }

    async fn probe(&self) -> Result<(), ProbeError> {
        match self {
            Prober::Tcp(addr) => tcp::probe(*addr).await,
            Prober::Tls(p) => p.probe().await,
            Prober::Http(p) => p.probe().await,
        }
    }
}

struct TaskCtx {
    label: String,
    services: String,
    check: Check,
    state: Arc<TargetState>,
    changed: Arc<Notify>,
    metrics: Arc<Metrics>,
    slots: Arc<Semaphore>,
    late_warned: Arc<Mutex<Option<Instant>>>,
}

async fn run_target(ctx: TaskCtx, prober: Prober) {
    let check = &ctx.check;
    let phase = if check.jitter.is_zero() {
        Duration::ZERO
    } else {
        Duration::from_nanos(Rng::with_thread(|r| {
            r.below(check.jitter.as_nanos() as u64)
        }))
    };
    let mut ticks = tokio::time::interval_at(Instant::now() + phase, check.interval);
    // If the runtime falls behind, skip missed probes rather than bursting.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut hyst = Hysteresis::new(ctx.state.is_up(), check.rise, check.fall);
    let duration = ctx.metrics.probe_duration.with_label_values(&[&check.name]);
    // A timeout that fires this much later than asked for is our lateness, not the
    // target's.
    let starved_slack = (check.timeout / 2).max(Duration::from_millis(100));
    let outcomes = ["success", "failure", "timeout", "inconclusive"].map(|o| {
        ctx.metrics
            .probe_results
            .with_label_values(&[check.name.as_str(), o])
    });
    let to = ["up", "down"].map(|s| {
        ctx.metrics
            .transitions
            .with_label_values(&[check.name.as_str(), s])
    });
    let late_after = (check.interval / 10).max(Duration::from_millis(50));
    loop {
        let scheduled = ticks.tick().await;
        // A slot bounds the probes in flight; waiting for one makes a probe late, and
        // that is reported rather than hidden.
        let Ok(_slot) = ctx.slots.acquire().await else {
            return; // semaphore closed: shutting down
        };
        let started = Instant::now();
        let lag = started.saturating_duration_since(scheduled);
        ctx.metrics.probe_lag.observe(lag.as_secs_f64());
        if lag > late_after {
            ctx.metrics.probes_late.inc();
            warn_late(&ctx, lag);
        }
        let result = match tokio::time::timeout(check.timeout, prober.probe()).await {
            Ok(r) => r,
            Err(_) => Err(ProbeError(format!(
                "timeout after {}",
                ShowDuration(check.timeout)
            ))),
        };
        let took = started.elapsed();
        duration.observe(took.as_secs_f64());
        if result.is_err() && took > check.timeout.saturating_add(starved_slack) {
            // The timer fired well after the timeout: this process was starved of CPU
            // (or the runtime stalled), so the target's slowness was not measured. Count
            // the probe as inconclusive rather than let local overload flap a healthy
            // target DOWN.
            outcomes[3].inc();
            ctx.metrics.probes_late.inc();
            warn_late(&ctx, took - check.timeout);
            continue;
        }
        match &result {
            Ok(()) => outcomes[0].inc(),
            Err(e) if e.0.starts_with("timeout") => outcomes[2].inc(),
            Err(_) => outcomes[1].inc(),
        }
        match &result {
            Ok(()) => {
                debug!(target = %ctx.label, ok = true, ms = took.as_millis() as u64, "probe done")
            }
            Err(e) => {
                debug!(target = %ctx.label, ok = false, ms = took.as_millis() as u64, reason = %e, "probe done")
            }
        }
        let flipped = hyst.record(result.is_ok());
        {
            let mut d = ctx.state.detail.lock().unwrap_or_else(|p| p.into_inner());
            d.last = Some(result.clone().map_err(|e| e.0));
            d.last_probe_at = Some(SystemTime::now());
            d.last_duration = Some(took);
            if flipped {
                d.changed_at = d.last_probe_at;
            }
        }
        if flipped {
            ctx.state.up.store(hyst.up, Ordering::Release);
            match &result {
                Ok(()) => {
                    to[0].inc();
                    info!(
                        "target {} is now UP (services: {})",
                        ctx.label, ctx.services
                    )
                }
                Err(reason) => {
                    to[1].inc();
                    warn!(
                        "target {} is now DOWN: {reason} (services: {})",
                        ctx.label, ctx.services
                    )
                }
            }
        }
        let first = !ctx.state.first_done.swap(true, Ordering::AcqRel);
        if flipped || first {
            // The first result matters too: readiness waits for it.
            ctx.changed.notify_one();
        }
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

/// A short reason for an I/O error: `connect refused`, `connect reset`, ...
pub(crate) fn describe_io(stage: &str, e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    let what = match e.kind() {
        ConnectionRefused => "refused",
        ConnectionReset => "reset",
        ConnectionAborted => "aborted",
        TimedOut => "timed out",
        HostUnreachable => "host unreachable",
        NetworkUnreachable => "network unreachable",
        UnexpectedEof => "closed early",
        _ => return format!("{stage}: {e}"),
    };
    format!("{stage} {what}")
}

#[cfg(test)]
mod tests {
    use super::Hysteresis;

    #[test]
    fn fall_needs_consecutive_failures() {
        let mut h = Hysteresis::new(true, 2, 3);
        assert!(!h.record(false));
        assert!(!h.record(false));
        assert!(!h.record(true)); // streak broken
        assert!(!h.record(false));
        assert!(!h.record(false));
        assert!(h.record(false));
        assert!(!h.up);
    }

    #[test]
    fn rise_needs_consecutive_successes() {
        let mut h = Hysteresis::new(true, 2, 1);
        assert!(h.record(false));
        assert!(!h.record(true));
        assert!(!h.record(false));
        assert!(!h.record(true));
        assert!(h.record(true));
        assert!(h.up);
    }
}
