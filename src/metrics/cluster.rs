//! The shared store of a `[cluster]`: whether this replica reaches it, which revision
//! of the shared overrides it serves, and how its writes went.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

use super::must;

#[derive(Debug, Clone)]
pub struct ClusterMetrics {
    /// 1 while the store answers (its bucket is open and the NATS connection is up).
    pub store_up: IntGauge,
    /// The store revision of the overrides this replica serves (0: none yet).
    pub overrides_revision: IntGauge,
    writes: IntCounterVec,
    /// Other replicas whose verdicts count now.
    pub live_replicas: IntGauge,
    /// Targets whose answered state differs from this replica's own probe verdict.
    pub verdict_disagreements: IntGauge,
    /// 1 while this replica's view disagrees with everyone else's (its verdicts do not
    /// count).
    pub fenced: IntGauge,
    /// 1 while this replica judges alone (store unreachable).
    pub alone: IntGauge,
}

impl ClusterMetrics {
    pub(super) fn register(registry: &Registry) -> ClusterMetrics {
        let store_up = must(IntGauge::new(
            "gslb_cluster_store_up",
            "1 while the cluster's NATS JetStream store is reachable and its bucket open; 0 without [cluster] or while it is not.",
        ));
        let overrides_revision = must(IntGauge::new(
            "gslb_cluster_overrides_revision",
            "Store revision of the shared overrides this replica serves; 0 before the first.",
        ));
        let writes = must(IntCounterVec::new(
            Opts::new(
                "gslb_cluster_override_writes_total",
                "Override calls written to the shared store, by result: stored, or refused (the store did not accept it; nothing changed).",
            ),
            &["result"],
        ));
        let live_replicas = must(IntGauge::new(
            "gslb_cluster_live_replicas",
            "Other replicas whose verdicts this replica counts now (their heartbeats are fresh and they are not fenced).",
        ));
        let verdict_disagreements = must(IntGauge::new(
            "gslb_cluster_verdict_disagreements",
            "Targets whose combined state (the quorum of the replicas' verdicts) differs from this replica's own probe verdict.",
        ));
        let fenced = must(IntGauge::new(
            "gslb_cluster_fenced",
            "1 while this replica's probes see most targets down that the other replicas see up: its verdicts do not count until its view agrees again.",
        ));
        let alone = must(IntGauge::new(
            "gslb_cluster_alone",
            "1 while this replica judges health from its own probes only (the store is unreachable or its heartbeats do not come back).",
        ));
        for c in [
            Box::new(store_up.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(overrides_revision.clone()),
            Box::new(writes.clone()),
            Box::new(live_replicas.clone()),
            Box::new(verdict_disagreements.clone()),
            Box::new(fenced.clone()),
            Box::new(alone.clone()),
        ] {
            must(registry.register(c));
        }
        ClusterMetrics {
            store_up,
            overrides_revision,
            writes,
            live_replicas,
            verdict_disagreements,
            fenced,
            alone,
        }
    }

    pub fn write(&self, stored: bool) {
        self.writes
            .with_label_values(&[if stored { "stored" } else { "refused" }])
            .inc();
    }
}
