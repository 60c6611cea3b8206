//! The running server's state: current plan, probe states, overrides, and the one
//! writer of the snapshot.
//!
//! Every change (a probe flip, an override, a reload) ends in `republish`, which takes
//! the lock, reads the probe verdicts, builds one `Snapshot` and stores it with one
//! `ArcSwap::store`. Holding the lock across read-build-store means a slower build can
//! never overwrite a newer one. Queries never take this lock: they `load()`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tracing::{error, info, warn};

use crate::admin::Backend;
use crate::config;
use crate::health::{Engine, TargetState};
use crate::metrics::{Metrics, PlanMetrics};
use crate::overrides::{AdminState, Overrides, Scope};
use crate::plan::Plan;
use crate::snapshot::{Shared, Snapshot, Zones};

pub struct Runtime {
    /// The file `reload` reads; `None` for the embedded demo config.
    config_path: Option<PathBuf>,
    /// Where overrides are saved: fixed at startup, like the rest of `[admin]`.
    state_file: Option<PathBuf>,
    ready_deadline: std::time::Duration,
    pub metrics: Arc<Metrics>,
    shared: Shared,
    inner: Mutex<Inner>,
    started: Instant,
}

struct Inner {
    plan: Arc<Plan>,
    zones: Arc<Zones>,
    plan_metrics: Arc<PlanMetrics>,
    /// Probe state per `plan.targets` entry.
    states: Arc<[Arc<TargetState>]>,
    engine: Engine,
    overrides: Overrides,
}

impl Runtime {
    /// Starts probing `plan` and publishes the first snapshot. Needs a tokio runtime.
    pub fn start(
        plan: Plan,
        config_path: Option<PathBuf>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Runtime>> {
        let plan = Arc::new(plan);
        let overrides = match plan.admin.as_ref().and_then(|a| a.state_file.as_ref()) {
            Some(path) => Overrides::load(path)
                .map_err(|e| anyhow::anyhow!("cannot read state file {}: {e}", path.display()))?,
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
        let health: Vec<bool> = states.iter().map(|s| s.is_up()).collect();
        let first = Snapshot::build(
            plan.clone(),
            zones.clone(),
            plan_metrics.clone(),
            &health,
            &overrides,
        );
        let state_file = plan.admin.as_ref().and_then(|a| a.state_file.clone());
        let ready_deadline = plan
            .admin
            .as_ref()
            .map_or(std::time::Duration::from_secs(30), |a| a.ready_deadline);
        let rt = Arc::new(Runtime {
            config_path,
            state_file,
            ready_deadline,
            metrics: metrics.clone(),
            shared: Arc::new(ArcSwap::from_pointee(first)),
            inner: Mutex::new(Inner {
                plan,
                zones,
                plan_metrics,
                states,
                engine,
                overrides,
            }),
            started: Instant::now(),
        });
        rt.republish();
        {
            let plan = rt.plan();
            info!(
                zones = plan.zones.len(),
                services = plan.services.len(),
                targets = plan.targets.len(),
                "serving"
            );
        }
        metrics.reloads.with_label_values(&["success"]).inc();
        metrics.last_reload_success.set(unix_now());

        // The publisher: one snapshot per burst of probe flips.
        let weak = Arc::downgrade(&rt);
        tokio::spawn(async move {
            loop {
                changed.notified().await;
                match weak.upgrade() {
                    // Building a snapshot takes the runtime lock (a reload may hold it):
                    // do it on the blocking pool, not on a DNS worker thread.
                    Some(rt) => {
                        let _ = tokio::task::spawn_blocking(move || rt.republish()).await;
                    }
                    None => return,
                }
            }
        });
        Ok(rt)
    }

    pub fn shared(&self) -> Shared {
        self.shared.clone()
    }

    pub fn plan(&self) -> Arc<Plan> {
        self.lock().plan.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Builds and stores a snapshot from the current plan, probe states and overrides.
    pub fn republish(&self) {
        let inner = self.lock();
        let health: Vec<bool> = inner.states.iter().map(|s| s.is_up()).collect();
        let snap = Snapshot::build(
            inner.plan.clone(),
            inner.zones.clone(),
            inner.plan_metrics.clone(),
            &health,
            &inner.overrides,
        );
        for (si, svc) in inner.plan.services.iter().enumerate() {
            let name = svc.name.to_string();
            for (ei, e) in svc.endpoints.iter().enumerate() {
                let gw = &inner.plan.gateways[e.gateway];
                self.metrics
                    .endpoint_up
                    .with_label_values(&[
                        name.as_str(),
                        gw.name.as_str(),
                        gw.region.as_deref().unwrap_or(""),
                    ])
                    .set(i64::from(snap.services[si].endpoints[ei].ready()));
            }
        }
        self.shared.store(Arc::new(snap));
        self.metrics.snapshots.inc();
    }

    /// Re-reads the config file. A valid one replaces the plan atomically (probes of
    /// unchanged targets keep running and keep their state); an invalid one is
    /// rejected and the old one keeps serving.
    pub fn reload(&self) -> Result<(), String> {
        let Some(path) = &self.config_path else {
            return Err("the embedded demo configuration cannot be reloaded".into());
        };
        let plan = match config::load(path) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                self.metrics.reloads.with_label_values(&["failure"]).inc();
                error!("reload rejected, keeping previous config: {e}");
                return Err(e.to_string());
            }
        };
        {
            let mut inner = self.lock();
            if plan.server.listen != inner.plan.server.listen
                || plan.admin != inner.plan.admin
                || plan.health != inner.plan.health
            {
                warn!(
                    "listen addresses, [admin] and [health] settings take effect at the next restart"
                );
            }
            inner.states = inner.engine.apply(&plan);
            inner.zones = Arc::new(Zones::build(&plan));
            inner.plan_metrics = Arc::new(self.metrics.for_plan(&plan));
            // Series of services, endpoints and targets that are gone would linger
            // otherwise.
            self.metrics.forget_removed(&inner.plan, &plan);
            self.metrics.endpoint_up.reset();
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
        Ok(())
    }

    /// `Ok` once every probe target has a first result (or the deadline has passed).
    pub fn readiness(&self) -> Result<(), String> {
        self.readiness_locked(&self.lock())
    }

    fn readiness_locked(&self, inner: &Inner) -> Result<(), String> {
        let pending = inner.states.iter().filter(|s| !s.probed()).count();
        if pending == 0 || self.started.elapsed() >= self.ready_deadline {
            return Ok(());
        }
        Err(format!(
            "first probe round not finished ({pending} of {} targets pending)",
            inner.states.len()
        ))
    }

    fn state_json(&self) -> Value {
        let inner = self.lock();
        let snap = self.shared.load();
        let plan = &snap.plan;
        let services: Vec<Value> = plan
            .services
            .iter()
            .enumerate()
            .map(|(si, svc)| {
                let table = &snap.services[si];
                let endpoints: Vec<Value> = svc
                    .endpoints
                    .iter()
                    .enumerate()
                    .map(|(ei, e)| {
                        let gw = &plan.gateways[e.gateway];
                        let view = table.endpoints[ei];
                        let in_answers = table.slots.iter().any(|slot| {
                            slot.v4.candidates.iter().chain(slot.v6.candidates.iter())
                                .any(|c| c.endpoint == ei)
                        });
                        let probe = e.target.map(|t| {
                            let target = &plan.targets[t];
                            // Snapshot and inner agree on the plan unless a reload is
                            // between them; then report what the snapshot saw.
                            let detail = if Arc::ptr_eq(&inner.plan, &snap.plan) {
                                Some(inner.states[t].detail())
                            } else {
                                None
                            };
                            json!({
                                "target": target.addr.to_string(),
                                "check": plan.checks[target.check].name,
                                "up": view.probe_up,
                                "last_result": detail.as_ref().and_then(|d| d.last.as_ref()).map(|r| match r {
                                    Ok(()) => "ok".to_string(),
                                    Err(e) => e.to_string(),
                                }),
                                "last_probe_unix": detail.as_ref().and_then(|d| d.last_probe_at).map(unix),
                                "last_duration_seconds": detail.as_ref().and_then(|d| d.last_duration).map(|d| d.as_secs_f64()),
                                "changed_unix": detail.as_ref().and_then(|d| d.changed_at).map(unix),
                            })
                        });
                        json!({
                            "gateway": gw.name,
                            "region": gw.region,
                            "addresses": gw.v4.iter().map(|a| a.to_string()).chain(gw.v6.iter().map(|a| a.to_string())).collect::<Vec<_>>(),
                            "weight": e.weight,
                            "effective_weight": if in_answers { e.weight } else { 0 },
                            "health": if e.target.is_none() { "unchecked" } else if view.probe_up { "up" } else { "down" },
                            "admin": view.admin.map(AdminState::as_str),
                            "ready": view.ready(),
                            "probe": probe,
                        })
                    })
                    .collect();
                json!({
                    "name": svc.name.to_string(),
                    "ttl": svc.ttl,
                    "answers": svc.answers,
                    // For a client in no region (all clients without locality).
                    "decision_v4": format!("{:?}", table.slot(None).v4.decision),
                    "decision_v6": format!("{:?}", table.slot(None).v6.decision),
                    "locality": svc.locality,
                    "panic": table.panic,
                    "endpoints": endpoints,
                })
            })
            .collect();
        json!({
            "config": plan.source.display().to_string(),
            "ready": self.readiness_locked(&inner).is_ok(),
            "services": services,
            "overrides": serde_json::to_value(&inner.overrides).unwrap_or(Value::Null),
        })
    }
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn unix_now() -> f64 {
    unix(SystemTime::now())
}

impl Backend for Runtime {
    fn metrics(&self) -> String {
        self.metrics.render()
    }

    fn ready(&self) -> Result<(), String> {
        self.readiness()
    }

    fn state(&self) -> Value {
        self.state_json()
    }

    fn explain(&self, name: &str, client: IpAddr, ecs: Option<&str>) -> Result<Value, String> {
        let snap = self.shared.load();
        crate::explain::explain(&snap, name, client, ecs).map(|e| e.to_json())
    }

    fn set_override(&self, scope: Scope, state: Option<AdminState>) -> Result<(), String> {
        {
            let mut inner = self.lock();
            let plan = inner.plan.clone();
            let gateway_known = |g: &str| plan.gateways.iter().any(|x| x.name == g);
            // Clearing an override that exists is always allowed, even when a reload
            // removed its gateway or service: otherwise it could never be cleared and
            // would come back with the name.
            let clearing_existing = state.is_none()
                && match &scope {
                    Scope::Gateway(g) => inner.overrides.gateways.contains_key(g),
                    Scope::Endpoint { service, gateway } => inner
                        .overrides
                        .endpoints
                        .get(service)
                        .is_some_and(|m| m.contains_key(gateway)),
                };
            match &scope {
                _ if clearing_existing => {}
                Scope::Gateway(g) if !gateway_known(g) => {
                    return Err(format!("unknown gateway {g:?}"));
                }
                Scope::Endpoint { service, gateway } => {
                    let svc = plan
                        .services
                        .iter()
                        .find(|s| s.name.to_string() == *service)
                        .ok_or_else(|| format!("unknown service {service:?}"))?;
                    if !svc
                        .endpoints
                        .iter()
                        .any(|e| plan.gateways[e.gateway].name == *gateway)
                    {
                        return Err(format!(
                            "service {service} has no endpoint on gateway {gateway:?}"
                        ));
                    }
                }
                _ => {}
            }
            if !inner.overrides.set(&scope, state) {
                return Ok(()); // nothing changed
            }
            if let Some(path) = &self.state_file
                && let Err(e) = inner.overrides.save(path)
            {
                // The override applies now; say loudly that a restart would lose it.
                error!("cannot save state file {}: {e}", path.display());
            }
        }
        self.republish();
        Ok(())
    }
}
