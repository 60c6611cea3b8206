//! The engine: one task per distinct probe target (address + check + per-service host),
//! shared by every service whose endpoints use it.
//!
//! The engine outlives configurations: `apply` keeps the tasks (and so the state) of
//! targets that a new plan still has, stops the ones it dropped, and starts new ones.
//! A reload therefore never makes a healthy endpoint flap.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use tokio::sync::{Notify, Semaphore};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::probe::Prober;
use super::state::TargetState;
use super::task::{TaskCtx, run_target};
use super::tls;
use crate::metrics::Metrics;
use crate::plan::{Check, Plan, TargetId};

/// Identity of a probe: same address, same check definition and same per-service
/// host means same probe. The check holds its CA certificates as read at this load,
/// so a rotated bundle (same path, new contents) makes a new probe with the new trust
/// anchors.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    addr: SocketAddr,
    /// Shared by every target of the check (and its task): compared by value.
    check: Arc<Check>,
    host: Option<String>,
}

/// What a replaced probe hands on to its successor: same address, same check name,
/// same host (the check's settings changed).
type Lineage = (SocketAddr, String, Option<String>);

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
    /// The plan last applied, for the tasks' log lines.
    plan: Arc<ArcSwapOption<Plan>>,
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
            plan: Arc::default(),
        }
    }

    /// Makes the running probes match `plan`; returns the state of each of its targets,
    /// in `plan.targets` order. Must be called within a tokio runtime.
    pub fn apply(&mut self, plan: &Arc<Plan>) -> Arc<[Arc<TargetState>]> {
        self.plan.store(Some(plan.clone()));
        let mut next: HashMap<Key, Running> = HashMap::with_capacity(plan.targets.len());
        let mut configs = tls::ConfigCache::default();
        let mut states = Vec::with_capacity(plan.targets.len());
        // The verdicts of the running probes, for a changed check on the same address
        // (say, a new timeout): it starts a new probe that inherits the old verdict, so
        // that the change does not flap it.
        let was_up: HashMap<Lineage, bool> = self
            .running
            .iter()
            .map(|(k, r)| {
                let lineage = (k.addr, k.check.name.clone(), k.host.clone());
                (lineage, r.state.is_up())
            })
            .collect();
        // One copy of each check for all its targets, however many.
        let checks: Vec<Arc<Check>> = plan.checks.iter().cloned().map(Arc::new).collect();
        for t in 0..plan.targets.len() {
            let target = &plan.targets[t];
            let key = Key {
                addr: target.addr,
                check: checks[target.check.index()].clone(),
                host: target.host.clone(),
            };
            if let Some(r) = self.running.remove(&key) {
                states.push(r.state.clone());
                next.insert(key, r);
                continue;
            }
            let lineage = (key.addr, key.check.name.clone(), key.host.clone());
            let state = Arc::new(match was_up.get(&lineage) {
                Some(&up) => TargetState::inherited(up),
                None => TargetState::new(true),
            });
            let task = self.start(plan, t, &key, &state, &mut configs);
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

    /// Starts the task of target `t`.
    fn start(
        &self,
        plan: &Plan,
        t: usize,
        key: &Key,
        state: &Arc<TargetState>,
        configs: &mut tls::ConfigCache,
    ) -> AbortHandle {
        let label = plan.target_label(TargetId(t));
        let built = Prober::new(
            key.addr,
            &key.check,
            key.host.as_deref(),
            &label,
            &self.metrics,
            configs,
            plan.health.source_for(key.addr),
        );
        match built {
            Ok(prober) => {
                let ctx = TaskCtx {
                    addr: key.addr,
                    host: key.host.clone(),
                    plan: self.plan.clone(),
                    recorder: self.metrics.probe_recorder(
                        &key.check.name,
                        &crate::metrics::cert_target_label(key.addr, key.host.as_deref()),
                    ),
                    label,
                    check: key.check.clone(),
                    started: Instant::now(),
                    state: state.clone(),
                    changed: self.changed.clone(),
                    slots: self.slots.clone(),
                    late_warned: self.late_warned.clone(),
                };
                tokio::spawn(run_target(ctx, prober)).abort_handle()
            }
            Err(e) => {
                // Validation should have caught this; if it did not, the target is
                // DOWN with the reason (never silently UP and unprobed).
                warn!("target {label} is now DOWN: probe cannot start: {e}");
                state.fail_to_start(e);
                self.changed.notify_one();
                tokio::spawn(async {}).abort_handle()
            }
        }
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
