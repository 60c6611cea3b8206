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
        for c in [
            Box::new(store_up.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(overrides_revision.clone()),
            Box::new(writes.clone()),
        ] {
            must(registry.register(c));
        }
        ClusterMetrics {
            store_up,
            overrides_revision,
            writes,
        }
    }

    pub fn write(&self, stored: bool) {
        self.writes
            .with_label_values(&[if stored { "stored" } else { "refused" }])
            .inc();
    }
}
