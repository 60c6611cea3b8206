//! The per-target probe counters, `gslb_probe_results_total` and
//! `gslb_target_transitions_total`: plain atomics per (check, target), turned into
//! metric families only when scraped, as the service series are. As Prometheus
//! children, the six series of a target took about 2.3 KB (massif, 1,000 targets:
//! 2.3 MB); here they are one small block and the two label strings.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{MetricFamily, MetricType};

use super::ProbeOutcome;
use super::endpoints::{counter, desc, family, labels};

/// The counts of one (check, target).
#[derive(Debug, Default)]
pub struct TargetCounts {
    /// In `ProbeOutcome::ALL` order.
    pub results: [AtomicU64; 4],
    pub to_up: AtomicU64,
    pub to_down: AtomicU64,
}

/// Every probed (check, target)'s counts, kept across reloads while the plan probes
/// it; `forget` drops those a reload stopped probing.
#[derive(Debug, Default)]
pub struct TargetSeries {
    by_label: Mutex<BTreeMap<(String, String), Arc<TargetCounts>>>,
}

impl TargetSeries {
    /// The counts of `check` against `target`, new (all zero) if none were kept.
    pub fn get(&self, check: &str, target: &str) -> Arc<TargetCounts> {
        let mut m = self.by_label.lock().unwrap_or_else(|p| p.into_inner());
        m.entry((check.to_string(), target.to_string()))
            .or_default()
            .clone()
    }

    pub fn forget(&self, check: &str, target: &str) {
        let mut m = self.by_label.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(&(check.to_string(), target.to_string()));
    }
}

const RESULTS: (&str, &str) = (
    "gslb_probe_results_total",
    "Health probe results, by check, target and outcome.",
);
const TRANSITIONS: (&str, &str) = (
    "gslb_target_transitions_total",
    "Health state flips of probe targets, by check, target and new state.",
);

/// Exports `TargetSeries` at scrape time.
pub(super) struct TargetCollector {
    series: Arc<TargetSeries>,
    descs: [Desc; 2],
}

impl TargetCollector {
    pub fn new(series: Arc<TargetSeries>) -> TargetCollector {
        TargetCollector {
            series,
            descs: [
                desc(RESULTS, &["check", "target", "outcome"]),
                desc(TRANSITIONS, &["check", "target", "to"]),
            ],
        }
    }
}

impl Collector for TargetCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let all: Vec<((String, String), Arc<TargetCounts>)> = self
            .series
            .by_label
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (mut results, mut transitions) = (Vec::new(), Vec::new());
        for ((check, target), c) in &all {
            for o in ProbeOutcome::ALL {
                results.push(counter(
                    load(&c.results[o as usize]),
                    labels(&[
                        ("check", check.as_str()),
                        ("target", target.as_str()),
                        ("outcome", o.label()),
                    ]),
                ));
            }
            for (to, n) in [("up", &c.to_up), ("down", &c.to_down)] {
                transitions.push(counter(
                    load(n),
                    labels(&[
                        ("check", check.as_str()),
                        ("target", target.as_str()),
                        ("to", to),
                    ]),
                ));
            }
        }
        if all.is_empty() {
            return Vec::new();
        }
        vec![
            family(RESULTS.0, RESULTS.1, MetricType::COUNTER, results),
            family(
                TRANSITIONS.0,
                TRANSITIONS.1,
                MetricType::COUNTER,
                transitions,
            ),
        ]
    }
}
