//! Wiring for `gslb serve`: snapshot, publisher, health engine and DNS front.
//!
//! The publisher task is the only writer of the snapshot: it owns the health vector,
//! folds every pending flip into it, builds one new `Snapshot` and stores it with a
//! single `ArcSwap::store`. Queries only ever `load()`.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::dns::Handler;
use crate::dns::server::{self, Sockets, TcpLimits};
use crate::health::{Engine, Flip};
use crate::plan::Plan;
use crate::snapshot::{Shared, Snapshot, Zones};

/// Serves `plan` on `sockets` until `shutdown` is cancelled.
pub async fn run(
    plan: Arc<Plan>,
    sockets: Sockets,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let zones = Arc::new(Zones::build(&plan));
    let health: Arc<[bool]> = vec![true; plan.targets.len()].into();
    let shared: Shared = Arc::new(ArcSwap::from_pointee(Snapshot::build(
        plan.clone(),
        zones.clone(),
        health,
    )));

    let (tx, rx) = mpsc::unbounded_channel();
    let engine = Engine::start(plan.clone(), tx);
    let publisher = tokio::spawn(publish(plan.clone(), zones, shared.clone(), rx));

    let handler = Arc::new(Handler::new(shared, plan.server.max_udp_payload));
    let limits = TcpLimits {
        idle_timeout: plan.server.tcp_idle_timeout,
        max_connections: plan.server.tcp_max_connections,
    };
    info!(
        zones = plan.zones.len(),
        services = plan.services.len(),
        targets = plan.targets.len(),
        "serving"
    );
    let result = server::run(sockets, handler, limits, shutdown).await;
    engine.stop();
    publisher.abort();
    result?;
    Ok(())
}

async fn publish(
    plan: Arc<Plan>,
    zones: Arc<Zones>,
    shared: Shared,
    mut flips: mpsc::UnboundedReceiver<Flip>,
) {
    let mut health = vec![true; plan.targets.len()];
    while let Some(f) = flips.recv().await {
        health[f.target] = f.up;
        // Fold every flip already queued into the same snapshot.
        while let Ok(f) = flips.try_recv() {
            health[f.target] = f.up;
        }
        let snap = Snapshot::build(plan.clone(), zones.clone(), health.clone().into());
        shared.store(Arc::new(snap));
    }
}
