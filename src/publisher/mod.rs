//! The single writer of the snapshot: current plan, probe states and overrides in,
//! one `Snapshot` out, stored with one `ArcSwap::store` per change.
//!
//! Every change (a probe flip, an override, a reload) ends in `republish`, which takes
//! the writer lock, reads the probe verdicts, builds one `Snapshot` and stores it.
//! Holding the lock across read-build-store means a slower build can never overwrite a
//! newer one. The lock guards nothing else: reading the config file, starting probes
//! (`Engine::apply`) and saving the state file happen before it is taken, so a slow
//! disk or a big reload never delays the publication of a probe flip, i.e. a failover.
//! Queries never take it: they `load()`. Readers of state (`/v1/state`, explain,
//! readiness) read the published snapshot.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tracing::{debug, error, info, warn};

use crate::cluster::{Cluster, Written};
use crate::config::{self, ConfigError};
use crate::health::{Engine, TargetState};
use crate::metrics::{Metrics, PlanMetrics};
use crate::overrides::{AdminState, OverrideError, Overrides, Scope};
use crate::plan::Plan;
use crate::snapshot::{Shared, Snapshot, Zones};

mod diff;
mod shared;
use diff::{needs_restart, shrinkage};
pub use shared::ClusterStatus;
use shared::own_verdict;

/// Why a reload did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the embedded demo configuration cannot be reloaded")]
    NoFile,
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Why the publisher could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An unreadable state file would silently drop the operator's drains.
    #[error("cannot read state file {}: {why}; not serving without the drains it may hold", path.display())]
    StateFile {
        path: PathBuf,
        why: crate::overrides::StateFileError,
    },
}

/// The first probe round is not finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("first probe round not finished ({pending} of {total} targets pending)")]
pub struct NotReady {
    pub pending: usize,
    pub total: usize,
}

/// Ready to serve; `unprobed` targets (past the deadline) are answered as if healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    pub unprobed: usize,
    pub total: usize,
}

/// What an override call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Applied,
    /// The override was already in that state.
    Unchanged,
}

pub struct Publisher {
    /// The file `reload` reads; `None` for the embedded demo config.
    config_path: Option<PathBuf>,
    /// Where overrides are saved: fixed at startup, like the rest of `[admin]`.
    state_file: Option<PathBuf>,
    ready_deadline: Duration,
    pub metrics: Arc<Metrics>,
    shared: Shared,
    /// The writer lock: held to build and store a snapshot, nothing else.
    inner: Mutex<Inner>,
    /// Serialises reloads (the engine is theirs alone); never held by `republish`.
    engine: Mutex<Engine>,
    /// Serialises override changes, so that the state file and the published overrides
    /// change in the same order.
    overriding: Mutex<()>,
    /// With `[cluster]`: the shared store, which overrides are written to and read from.
    cluster: Option<Arc<Cluster>>,
    started: Instant,
}

struct Inner {
    plan: Arc<Plan>,
    zones: Arc<Zones>,
    plan_metrics: Arc<PlanMetrics>,
    /// Probe state per `plan.targets` entry.
    states: Arc<[Arc<TargetState>]>,
    overrides: Overrides,
    /// The store revision `overrides` came from (0: the local state file).
    revision: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Publisher {
    /// Starts probing `plan` and publishes the first snapshot. Needs a tokio runtime.
    pub fn start(
        plan: Plan,
        config_path: Option<PathBuf>,
        metrics: Arc<Metrics>,
        cluster: Option<Arc<Cluster>>,
    ) -> Result<Arc<Publisher>, StartError> {
        let plan = Arc::new(plan);
        let overrides = match plan.admin.as_ref().and_then(|a| a.state_file.as_ref()) {
            Some(path) => Overrides::load(path).map_err(|why| StartError::StateFile {
                path: path.clone(),
                why,
            })?,
            None => Overrides::default(),
        };
        let changed = Arc::new(Notify::new());
        let mut engine = Engine::new(
            changed.clone(),
            metrics.clone(),
            plan.health.max_concurrent_probes,
        );
        let states = engine.apply(&plan);
        let zones = Arc::new(Zones::build(&plan));
        let plan_metrics = Arc::new(metrics.for_plan(&plan));
        let (first, built) = Snapshot::rebuild(
            None,
            plan.clone(),
            zones.clone(),
            plan_metrics.clone(),
            &states.iter().map(|s| s.is_up()).collect::<Vec<_>>(),
            &overrides,
        );
        // Every table of the first snapshot is new: every endpoint's gauge. Later
        // snapshots set those of the tables they rebuild (`republish`).
        first
            .metrics
            .endpoints_ready(&built, |s, e| first.services[s].endpoints[e].ready());
        let admin = plan.admin.as_ref();
        let p = Arc::new(Publisher {
            config_path,
            state_file: admin.and_then(|a| a.state_file.clone()),
            ready_deadline: admin.map_or(Duration::from_secs(30), |a| a.ready_deadline),
            metrics: metrics.clone(),
            shared: Arc::new(ArcSwap::from_pointee(first)),
            inner: Mutex::new(Inner {
                plan: plan.clone(),
                zones,
                plan_metrics,
                states,
                overrides: overrides.clone(),
                revision: 0,
            }),
            engine: Mutex::new(engine),
            overriding: Mutex::new(()),
            cluster: cluster.clone(),
            started: Instant::now(),
        });
        p.republish();
        // Building the name index and the first tables used working memory (a map of
        // every name, the snapshot `republish` just replaced) that is free now.
        config::release_freed_memory();
        info!(
            zones = plan.zones.len(),
            services = plan.services.len(),
            targets = plan.targets.len(),
            "serving"
        );
        metrics.reloads.with_label_values(&["success"]).inc();
        metrics.last_reload_success.set(unix_now());

        // Every replica applies the shared overrides as the store changes them, and
        // sends and combines verdicts (a change of anyone's rebuilds the answers).
        if let Some(c) = cluster {
            tokio::spawn(c.clone().exchange_verdicts(changed.clone()));
            let weak = Arc::downgrade(&p);
            let served = Arc::downgrade(&p);
            let local = move || {
                served
                    .upgrade()
                    .map(|p| lock(&p.inner).overrides.clone())
                    .unwrap_or_default()
            };
            tokio::spawn(c.watch(local, move |v| {
                let weak = weak.clone();
                async move {
                    let Some(p) = weak.upgrade() else {
                        return false;
                    };
                    let _ = tokio::task::spawn_blocking(move || p.apply_shared(v)).await;
                    true
                }
            }));
        }

        // One snapshot per burst of probe flips.
        let weak = Arc::downgrade(&p);
        tokio::spawn(async move {
            loop {
                changed.notified().await;
                match weak.upgrade() {
                    // Building a snapshot takes the writer lock: do it on the blocking
                    // pool, not on a DNS worker thread.
                    Some(p) => {
                        let _ = tokio::task::spawn_blocking(move || p.republish()).await;
                    }
                    None => return,
                }
            }
        });
        Ok(p)
    }

    /// The published snapshot, for readers.
    pub fn shared(&self) -> Shared {
        self.shared.clone()
    }

    pub fn plan(&self) -> Arc<Plan> {
        self.shared.load().plan.clone()
    }

    /// Builds and stores a snapshot from the current plan, probe states and overrides.
    pub fn republish(&self) {
        let inner = lock(&self.inner);
        // Both lines say, to a reader of the log (and to the tests), which probe results
        // a snapshot can hold: those logged before "building a snapshot".
        debug!("building a snapshot");
        // With [cluster], what every replica answers with: the live replicas' verdicts
        // combined by the quorum rule.
        let (health, votes) = match &self.cluster {
            None => (inner.states.iter().map(|s| s.is_up()).collect(), None),
            Some(c) => {
                let own = inner.states.iter().map(|s| own_verdict(s)).collect();
                let votes = c.combine(&inner.plan, own);
                let health: Vec<bool> = votes.targets.iter().map(|t| t.combined).collect();
                (health, Some(Arc::new(votes)))
            }
        };
        // Under the writer lock, the published snapshot is the last one built: its
        // tables are reused wherever nothing they depend on changed.
        let prev = self.shared.load();
        let (snap, built) = Snapshot::rebuild(
            Some(&prev),
            inner.plan.clone(),
            inner.zones.clone(),
            inner.plan_metrics.clone(),
            &health,
            &inner.overrides,
        );
        let snap = snap.with_probes(inner.states.clone()).with_votes(votes);
        self.metrics
            .targets_unprobed
            .set(snap.probes.iter().filter(|s| !s.probed()).count() as i64);
        snap.metrics
            .endpoints_ready(&built, |s, e| snap.services[s].endpoints[e].ready());
        self.shared.store(Arc::new(snap));
        self.metrics.snapshots.inc();
        debug!("snapshot published");
    }

    /// Re-reads the config file. A valid one replaces the plan atomically (probes of
    /// unchanged targets keep running and keep their state); an invalid one is
    /// rejected and the old one keeps serving.
    pub fn reload(&self) -> Result<(), ReloadError> {
        let Some(path) = &self.config_path else {
            return Err(ReloadError::NoFile);
        };
        let mut engine = lock(&self.engine);
        let plan = match config::load(path) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                self.metrics.reloads.with_label_values(&["failure"]).inc();
                error!("reload rejected, keeping previous config: {e}");
                return Err(e.into());
            }
        };
        let old = self.plan();
        let pending = needs_restart(&old, &plan);
        if !pending.is_empty() {
            warn!(
                "these settings changed but need a restart to take effect: {}",
                pending.join(", ")
            );
        }
        for (what, gone, total) in shrinkage(&old, &plan) {
            // A file cut short that still parses is the usual cause: say what went.
            warn!(
                "reload drops {} of {total} {what}: {}",
                gone.len(),
                gone.join(", ")
            );
        }
        // Outside the writer lock: probes of the new plan start (and report flips,
        // which republish the old plan until the swap below).
        let states = engine.apply(&plan);
        let zones = Arc::new(Zones::build(&plan));
        let plan_metrics = Arc::new(self.metrics.for_plan(&plan));
        {
            let mut inner = lock(&self.inner);
            // Series of services, endpoints and targets that are gone would linger
            // otherwise.
            self.metrics.forget_removed(&inner.plan, &plan);
            inner.states = states;
            inner.zones = zones;
            inner.plan_metrics = plan_metrics;
            inner.plan = plan.clone();
        }
        self.republish();
        self.metrics.reloads.with_label_values(&["success"]).inc();
        self.metrics.last_reload_success.set(unix_now());
        info!(
            zones = plan.zones.len(),
            services = plan.services.len(),
            targets = plan.targets.len(),
            "configuration reloaded from {}",
            path.display()
        );
        // The previous plan and its snapshot are gone now (but for a query that still
        // holds it for a moment): give their pages back, or each reload of a big config
        // left its old plan's memory resident (10,000 services: 15 MiB after a reload).
        drop(old);
        drop(engine);
        config::release_freed_memory();
        Ok(())
    }

    /// `Ok` once every probe target has a first result, or the deadline has passed;
    /// then `Ok` says how many targets are still unprobed (answered as if healthy).
    pub fn readiness(&self) -> Result<Ready, NotReady> {
        let snap = self.shared.load();
        let pending = snap.probes.iter().filter(|s| !s.probed()).count();
        if pending == 0 || self.started.elapsed() >= self.ready_deadline {
            return Ok(Ready {
                unprobed: pending,
                total: snap.probes.len(),
            });
        }
        Err(NotReady {
            pending,
            total: snap.probes.len(),
        })
    }

    /// Sets (`Some`) or clears (`None`) an operator override. With a state file, the
    /// change is saved before it is published; one that cannot be saved is refused and
    /// changes nothing.
    ///
    /// With `[cluster]`, the change is written to the shared store first and returns
    /// once the store accepted it (every replica then applies it from its watch); a
    /// store that is unreachable refuses it. Blocking: call it from a blocking thread.
    pub fn set_override(
        &self,
        scope: &Scope,
        state: Option<AdminState>,
    ) -> Result<Change, OverrideError> {
        if let Some(cluster) = &self.cluster {
            let plan = self.plan();
            let local = lock(&self.inner).overrides.clone();
            let written =
                tokio::runtime::Handle::current().block_on(cluster.write(&local, |o| {
                    o.check(&plan, scope, state)?;
                    Ok(o.set(scope, state))
                }))?;
            return Ok(match written {
                Written::Stored(v) => {
                    self.apply_shared(v);
                    Change::Applied
                }
                Written::Unchanged(v) => {
                    self.apply_shared(v);
                    Change::Unchanged
                }
            });
        }
        let _one_at_a_time = lock(&self.overriding);
        let (plan, mut next) = {
            let inner = lock(&self.inner);
            (inner.plan.clone(), inner.overrides.clone())
        };
        next.check(&plan, scope, state)?;
        if !next.set(scope, state) {
            return Ok(Change::Unchanged);
        }
        if let Some(path) = &self.state_file {
            next.save(path).map_err(|e| {
                error!("cannot save state file {}: {e}", path.display());
                OverrideError::Save {
                    path: path.clone(),
                    why: e.to_string(),
                }
            })?;
        }
        lock(&self.inner).overrides = next;
        self.republish();
        Ok(Change::Applied)
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
