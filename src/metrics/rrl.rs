//! Response rate limiting, counted: responses dropped, and responses sent truncated
//! instead (slipped) so that a real resolver behind a limited prefix retries over TCP.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use super::must;

#[derive(Debug, Clone)]
pub struct RrlMetrics {
    dropped: IntCounter,
    slipped: IntCounter,
}

impl RrlMetrics {
    pub(super) fn register(registry: &Registry) -> RrlMetrics {
        let family = must(IntCounterVec::new(
            Opts::new(
                "gslb_dns_rrl_total",
                "UDP responses over the [rrl] budget of their client prefix, by action: dropped, or slipped (sent truncated, TC=1).",
            ),
            &["action"],
        ));
        must(registry.register(Box::new(family.clone())));
        RrlMetrics {
            dropped: family.with_label_values(&["dropped"]),
            slipped: family.with_label_values(&["slipped"]),
        }
    }

    pub fn dropped(&self) {
        self.dropped.inc();
    }

    pub fn slipped(&self) {
        self.slipped.inc();
    }
}
