//! Probe recorders: the series of one check's probes, resolved once per target, and
//! the outcome label they are counted under.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus::{Histogram, IntCounter};

use super::Metrics;
use super::targets::TargetCounts;

/// The `outcome` label of `gslb_probe_results_total`. A probe's result maps to one of
/// these (`health` decides which); the label values are part of the metric's contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeOutcome {
    Success,
    /// The target answered, or refused to, in a way the check rejects.
    Failure,
    /// The target did not answer within the check's timeout.
    Timeout,
    /// The timer fired so late that gslb itself was starved of CPU; the probe measured
    /// nothing about the target and does not count against it.
    Inconclusive,
}

impl ProbeOutcome {
    pub const ALL: [ProbeOutcome; 4] = [
        ProbeOutcome::Success,
        ProbeOutcome::Failure,
        ProbeOutcome::Timeout,
        ProbeOutcome::Inconclusive,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ProbeOutcome::Success => "success",
            ProbeOutcome::Failure => "failure",
            ProbeOutcome::Timeout => "timeout",
            ProbeOutcome::Inconclusive => "inconclusive",
        }
    }
}

/// The probe series of one check, resolved once when a target's task starts so that a
/// probe never looks a label up.
pub struct ProbeRecorder {
    /// Results and flips of this (check, target).
    counts: Arc<TargetCounts>,
    duration: Histogram,
    lag: Histogram,
    late: IntCounter,
}

impl ProbeRecorder {
    pub fn result(&self, outcome: ProbeOutcome) {
        self.counts.results[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn duration(&self, took: std::time::Duration) {
        self.duration.observe(took.as_secs_f64());
    }

    /// A verdict flip; `up` is the new state.
    pub fn flipped(&self, up: bool) {
        let n = if up {
            &self.counts.to_up
        } else {
            &self.counts.to_down
        };
        n.fetch_add(1, Ordering::Relaxed);
    }

    /// How late a probe started against its schedule.
    pub fn lag(&self, lag: std::time::Duration) {
        self.lag.observe(lag.as_secs_f64());
    }

    /// A probe that started late, or whose timer fired late.
    pub fn late(&self) {
        self.late.inc();
    }
}

impl Metrics {
    /// The recorder for probes of the check named `check` against `target` (see
    /// `cert_target_label`).
    pub fn probe_recorder(&self, check: &str, target: &str) -> ProbeRecorder {
        ProbeRecorder {
            counts: self.target_counts.get(check, target),
            duration: self.probe_duration.with_label_values(&[check]),
            lag: self.probe_lag.clone(),
            late: self.probes_late.clone(),
        }
    }
}
