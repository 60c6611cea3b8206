//! The series of services and endpoints: `gslb_answers_total`,
//! `gslb_fail_open_answers_total`, `gslb_panic_answers_total` and `gslb_endpoint_up`.
//! A config of 10,000 services has tens of thousands of them, so they are not
//! Prometheus series objects (each holds its label pairs and a hash entry, about half a
//! kilobyte): they are plain atomics per plan, turned into metric families only when
//! scraped. Only the current plan's are exported, so those of services and endpoints a
//! reload dropped are gone with it, and a counter the reload kept is the same atomic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

use crate::plan::{EndpointId, Plan, ServiceId};

/// One endpoint's values and its gateway (an index into `ServiceSeries::gateways`,
/// which holds the labels).
#[derive(Debug)]
struct Endpoint {
    answers: Arc<AtomicU64>,
    up: AtomicI64,
    gateway: u32,
}

#[derive(Debug)]
struct Service {
    name: Box<str>,
    /// Fail-open and panic answers.
    counts: Arc<[AtomicU64; 2]>,
    endpoints: Box<[Endpoint]>,
}

const FAIL_OPEN_AT: usize = 0;
const PANIC_AT: usize = 1;

/// The service and endpoint values of one plan, indexed like `Plan::services`. A
/// config of 10,000 services holds one of these per plan, so each service is three
/// allocations and each endpoint one (its answer counter, which a reload that keeps
/// the endpoint shares).
#[derive(Debug, Default)]
pub struct ServiceSeries {
    services: Vec<Service>,
    /// Per plan gateway: its name and region labels.
    gateways: Vec<(Arc<str>, Arc<str>)>,
}

impl ServiceSeries {
    /// The values for `plan`: counters of a (service, gateway) or a service that `prev`
    /// has are shared with it, so a reload neither resets them nor loses a count.
    pub(super) fn for_plan(plan: &Plan, prev: &ServiceSeries) -> ServiceSeries {
        let old: HashMap<&str, &Service> = prev.services.iter().map(|s| (&*s.name, s)).collect();
        let gateways: Vec<(Arc<str>, Arc<str>)> = plan
            .gateways
            .iter()
            .map(|g| {
                (
                    Arc::from(g.name.as_str()),
                    Arc::from(g.region.as_deref().unwrap_or("")),
                )
            })
            .collect();
        let services = plan
            .services
            .iter()
            .map(|s| {
                let name = s.name.to_string();
                let before = old.get(name.as_str());
                let endpoints = s
                    .endpoints
                    .iter()
                    .map(|e| {
                        let gateway = &gateways[e.gateway.index()].0;
                        let kept = before.and_then(|b| {
                            b.endpoints
                                .iter()
                                .find(|x| prev.gateways[x.gateway as usize].0 == *gateway)
                        });
                        Endpoint {
                            answers: kept.map_or_else(Arc::default, |k| k.answers.clone()),
                            up: AtomicI64::new(kept.map_or(0, |k| k.up.load(Ordering::Relaxed))),
                            gateway: e.gateway.index() as u32,
                        }
                    })
                    .collect();
                Service {
                    counts: before.map_or_else(Arc::default, |b| b.counts.clone()),
                    name: name.into_boxed_str(),
                    endpoints,
                }
            })
            .collect();
        ServiceSeries { services, gateways }
    }

    pub fn answered(&self, s: ServiceId, e: EndpointId) {
        self.services[s.index()].endpoints[e.index()]
            .answers
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn fail_open(&self, s: ServiceId) {
        self.services[s.index()].counts[FAIL_OPEN_AT].fetch_add(1, Ordering::Relaxed);
    }

    pub fn panic(&self, s: ServiceId) {
        self.services[s.index()].counts[PANIC_AT].fetch_add(1, Ordering::Relaxed);
    }

    pub fn endpoints_of(&self, s: ServiceId) -> usize {
        self.services[s.index()].endpoints.len()
    }

    pub fn set_up(&self, s: ServiceId, e: EndpointId, up: bool) {
        self.services[s.index()].endpoints[e.index()]
            .up
            .store(i64::from(up), Ordering::Relaxed);
    }
}

/// Label pairs sorted by name, as the registry's own series have them.
pub(super) fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    let mut pairs = pairs.to_vec();
    pairs.sort_by_key(|(n, _)| *n);
    pairs
        .iter()
        .map(|(n, v)| {
            let mut l = LabelPair::default();
            l.set_name(n.to_string());
            l.set_value(v.to_string());
            l
        })
        .collect()
}

pub(super) fn counter(v: u64, l: Vec<LabelPair>) -> Metric {
    let mut c = Counter::default();
    c.set_value(v as f64);
    let mut m = Metric::from_label(l);
    m.set_counter(c);
    m
}

pub(super) fn family(
    name: &str,
    help: &str,
    kind: MetricType,
    metrics: Vec<Metric>,
) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

/// The descriptor of a family a scrape-time collector exports.
pub(super) fn desc((name, help): (&str, &str), labels: &[&str]) -> Desc {
    Desc::new(
        name.to_string(),
        help.to_string(),
        labels.iter().map(|l| l.to_string()).collect(),
        HashMap::new(),
    )
    .expect("metric definition")
}

const ANSWERS: (&str, &str) = (
    "gslb_answers_total",
    "Times an endpoint was put in an answer.",
);
const FAIL_OPEN: (&str, &str) = (
    "gslb_fail_open_answers_total",
    "Answers given while no endpoint of the service was healthy (fail-open).",
);
const PANIC: (&str, &str) = (
    "gslb_panic_answers_total",
    "Answers given as if all endpoints were healthy because the healthy share fell below the panic threshold.",
);
const UP: (&str, &str) = (
    "gslb_endpoint_up",
    "1 when the endpoint may be answered: healthy (or forced up), not forced down, not drained.",
);

/// Exports the current plan's `ServiceSeries` at scrape time.
pub(super) struct ServiceCollector {
    pub current: Arc<Mutex<Arc<ServiceSeries>>>,
    descs: Vec<Desc>,
}

impl ServiceCollector {
    pub fn new(current: Arc<Mutex<Arc<ServiceSeries>>>) -> ServiceCollector {
        ServiceCollector {
            current,
            descs: vec![
                desc(ANSWERS, &["service", "endpoint"]),
                desc(FAIL_OPEN, &["service"]),
                desc(PANIC, &["service"]),
                desc(UP, &["service", "endpoint", "region"]),
            ],
        }
    }
}

impl Collector for ServiceCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let series = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let (mut answers, mut fail_open, mut panic, mut up) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for s in &series.services {
            let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
            let service = &*s.name;
            let at = |i: usize| load(&s.counts[i]);
            fail_open.push(counter(at(FAIL_OPEN_AT), labels(&[("service", service)])));
            panic.push(counter(at(PANIC_AT), labels(&[("service", service)])));
            for e in &s.endpoints {
                let (gateway, region) = &series.gateways[e.gateway as usize];
                let (gateway, region) = (&**gateway, &**region);
                answers.push(counter(
                    load(&e.answers),
                    labels(&[("service", service), ("endpoint", gateway)]),
                ));
                let mut g = Gauge::default();
                g.set_value(e.up.load(Ordering::Relaxed) as f64);
                let mut m = Metric::from_label(labels(&[
                    ("service", service),
                    ("endpoint", gateway),
                    ("region", region),
                ]));
                m.set_gauge(g);
                up.push(m);
            }
        }
        let mut out = Vec::new();
        for (meta, kind, metrics) in [
            (ANSWERS, MetricType::COUNTER, answers),
            (FAIL_OPEN, MetricType::COUNTER, fail_open),
            (PANIC, MetricType::COUNTER, panic),
            (UP, MetricType::GAUGE, up),
        ] {
            // A family without series is left out, as the registry does.
            if !metrics.is_empty() {
                out.push(family(meta.0, meta.1, kind, metrics));
            }
        }
        out
    }
}
