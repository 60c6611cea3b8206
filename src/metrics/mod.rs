//! Every Prometheus metric gslb exports, in one place. Names are prefixed `gslb_`, in
//! base units, `_total` on counters, and never labelled by client address or query name.
//!
//! The families live in `Metrics` (one per process). The labelled children a query
//! touches are resolved once per plan into `PlanMetrics` (plain vectors of counter
//! handles indexed by zone, transport, type and rcode), which the snapshot carries, so
//! the query path does an index and an atomic add: no hashing, no lock.

use std::sync::{Arc, Mutex};

use endpoints::{ServiceCollector, ServiceSeries};
use requests::{RequestCollector, Requests};
use targets::{TargetCollector, TargetSeries};

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::plan::Plan;

mod cluster;
mod endpoints;
mod probe;
mod query;
mod requests;
mod rrl;
mod targets;
mod tcp;
mod xdp;

pub use probe::{ProbeOutcome, ProbeRecorder};

pub use cluster::ClusterMetrics;
pub use query::{Dropped, PROTOS, PlanMetrics, Transport};
pub use rrl::RrlMetrics;
pub use tcp::{TcpClose, TcpMetrics};
pub use xdp::{XdpCounts, XdpMetrics};

/// The metric families, registered once per process.
pub struct Metrics {
    pub registry: Registry,
    requests: Arc<Requests>,
    dns_duration: HistogramVec,
    /// The service and endpoint series of the current plan (see `endpoints`).
    services: Arc<Mutex<Arc<ServiceSeries>>>,
    dns_dropped: IntCounterVec,
    pub probe_duration: HistogramVec,
    /// `gslb_probe_results_total` and `gslb_target_transitions_total` (see `targets`).
    pub target_counts: Arc<TargetSeries>,
    pub reloads: IntCounterVec,
    pub last_reload_success: Gauge,
    pub snapshots: IntCounter,
    pub targets: IntGauge,
    /// Targets without a first result: their endpoints are answered as if healthy.
    pub targets_unprobed: IntGauge,
    pub probe_lag: Histogram,
    pub probes_late: IntCounter,
    pub cert_expiry: prometheus::GaugeVec,
    pub tcp: TcpMetrics,
    pub xdp: XdpMetrics,
    pub rrl: RrlMetrics,
    pub cluster: ClusterMetrics,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Only fails for invalid names or duplicate registration: programming errors.
    r.expect("metric definition")
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| must(registry.register(c));

        let dns_duration = must(HistogramVec::new(
            HistogramOpts::new(
                "gslb_dns_request_duration_seconds",
                "Time from a parsed request to its encoded response.",
            )
            .buckets(vec![
                1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2,
            ]),
            &["proto"],
        ));
        let probe_duration = must(HistogramVec::new(
            HistogramOpts::new("gslb_probe_duration_seconds", "Duration of health probes.")
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ]),
            &["check"],
        ));
        let reloads = must(IntCounterVec::new(
            Opts::new(
                "gslb_config_reloads_total",
                "Configuration loads, by result.",
            ),
            &["result"],
        ));
        let last_reload_success = must(Gauge::new(
            "gslb_config_last_reload_success_timestamp_seconds",
            "Unix time of the last configuration that was loaded successfully.",
        ));
        let dns_dropped = must(IntCounterVec::new(
            Opts::new(
                "gslb_dns_dropped_total",
                "Messages received and not answered, by reason: runt (shorter than a DNS header) or response (QR=1: answering invites reflection loops).",
            ),
            &["reason"],
        ));
        let targets_unprobed = must(IntGauge::new(
            "gslb_probe_targets_unprobed",
            "Probe targets without a first result yet; their endpoints are answered as if healthy.",
        ));
        let snapshots = must(IntCounter::new(
            "gslb_snapshots_published_total",
            "Answer snapshots published (one per health change, override or reload).",
        ));
        let targets = must(IntGauge::new(
            "gslb_probe_targets",
            "Distinct probe targets being checked.",
        ));
        let probe_lag = must(Histogram::with_opts(
            HistogramOpts::new(
                "gslb_probe_schedule_lag_seconds",
                "How late probes start against their schedule (runtime load, or waiting for a probe slot).",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
        ));
        let probes_late = must(IntCounter::new(
            "gslb_probes_late_total",
            "Probes that started later than a tenth of their interval (at least 50ms) after their scheduled time.",
        ));
        let cert_expiry = must(prometheus::GaugeVec::new(
            Opts::new(
                "gslb_probe_certificate_expiry_timestamp_seconds",
                "Unix time at which the certificate a tls/https probe target presented expires.",
            ),
            &["check", "target"],
        ));
        let build_info = must(IntGaugeVec::new(
            Opts::new(
                "gslb_build_info",
                "Build information; the value is always 1.",
            ),
            &["version"],
        ));
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        let requests = Arc::new(Requests::default());
        reg(Box::new(RequestCollector::new(requests.clone())));
        reg(Box::new(dns_duration.clone()));
        let services = Arc::new(Mutex::new(Arc::new(ServiceSeries::default())));
        reg(Box::new(ServiceCollector::new(services.clone())));
        let target_counts = Arc::new(TargetSeries::default());
        reg(Box::new(TargetCollector::new(target_counts.clone())));
        reg(Box::new(dns_dropped.clone()));
        reg(Box::new(targets_unprobed.clone()));
        reg(Box::new(probe_duration.clone()));
        reg(Box::new(reloads.clone()));
        reg(Box::new(last_reload_success.clone()));
        reg(Box::new(snapshots.clone()));
        reg(Box::new(targets.clone()));
        reg(Box::new(probe_lag.clone()));
        reg(Box::new(probes_late.clone()));
        reg(Box::new(cert_expiry.clone()));
        reg(Box::new(build_info));
        let tcp = TcpMetrics::register(&registry);
        let xdp = XdpMetrics::register(&registry);
        let rrl = RrlMetrics::register(&registry);
        let cluster = ClusterMetrics::register(&registry);

        Arc::new(Metrics {
            registry,
            requests,
            dns_duration,
            services,
            dns_dropped,
            targets_unprobed,
            probe_duration,
            target_counts,
            reloads,
            last_reload_success,
            snapshots,
            targets,
            probe_lag,
            probes_late,
            cert_expiry,
            tcp,
            xdp,
            rrl,
            cluster,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        must(TextEncoder::new().encode(&self.registry.gather(), &mut buf));
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }

    /// Removes the series of zones and probe targets that `old` had and
    /// `new` does not, so that a long-running server with config churn does not keep
    /// exporting (and growing) series for things that are gone.
    pub fn forget_removed(&self, old: &Plan, new: &Plan) {
        // The series of services and endpoints follow the current plan by themselves
        // (`endpoints`).
        let probed = |p: &Plan| -> std::collections::HashSet<(String, String)> {
            p.targets
                .iter()
                .map(|t| {
                    (
                        p.checks[t.check].name.clone(),
                        cert_target_label(t.addr, t.host.as_deref()),
                    )
                })
                .collect()
        };
        for (check, target) in probed(old).difference(&probed(new)) {
            self.target_counts.forget(check, target);
        }
        let names =
            |v: Vec<String>| -> std::collections::HashSet<String> { v.into_iter().collect() };
        let zones = |p: &Plan| names(p.zones.iter().map(|z| z.origin.to_string()).collect());
        for zone in zones(old).difference(&zones(new)) {
            self.forget_zone(zone);
        }
        let checks = |p: &Plan| names(p.checks.iter().map(|c| c.name.clone()).collect());
        for check in checks(old).difference(&checks(new)) {
            let _ = self.probe_duration.remove_label_values(&[check.as_str()]);
        }
        let targets = |p: &Plan| -> std::collections::HashSet<(String, String)> {
            p.targets
                .iter()
                .filter(|t| p.checks[t.check].tls.is_some())
                .map(|t| {
                    (
                        p.checks[t.check].name.clone(),
                        cert_target_label(t.addr, t.host.as_deref()),
                    )
                })
                .collect()
        };
        for (check, target) in targets(old).difference(&targets(new)) {
            let _ = self
                .cert_expiry
                .remove_label_values(&[check.as_str(), target.as_str()]);
        }
    }
}

/// The `target` label of the per-target probe series and the certificate-expiry
/// gauge: the probe address, and the per-service host when there is one.
pub fn cert_target_label(addr: std::net::SocketAddr, host: Option<&str>) -> String {
    match host {
        Some(h) => format!("{addr} {h}"),
        None => addr.to_string(),
    }
}

#[cfg(test)]
mod tests;
