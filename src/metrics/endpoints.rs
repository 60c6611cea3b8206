//! The series of services and endpoints: `gslb_answers_total`,
//! `gslb_fail_open_answers_total`, `gslb_panic_answers_total` and `gslb_endpoint_up`.
//! A config of 10,000 services has tens of thousands of them, so they are not
//! Prometheus series objects (each holds its label pairs and a hash entry, about half a
//! kilobyte): they are plain atomics per plan, turned into metric families only when
//! scraped. Only the current plan's are exported, so those of services and endpoints a
//! reload dropped are gone with it, and a counter the reload kept counts on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

use crate::plan::{EndpointId, Plan, ServiceId};

/// One service's counters: fail-open answers, panic answers, then the answers of each
/// endpoint in the service's endpoint order. One allocation per service, shared with
/// the series of the plan before when a reload left the service's endpoints as they
/// were.
type Counts = Arc<[AtomicU64]>;

const FAIL_OPEN_AT: usize = 0;
const PANIC_AT: usize = 1;
/// The slot of endpoint 0.
const ENDPOINTS_AT: usize = 2;

/// The counters a service had under an earlier list of endpoints, which snapshots of
/// that plan may still be counting into: exported added to the current ones, so a
/// reload that changes a service's endpoints neither resets nor loses a count. One that
/// no snapshot holds any more is folded into the service's own counters at the
/// service's next change of endpoints (folding it into counters shared with the
/// previous series could show a scrape of that series the count twice); until then it
/// is carried, so a service carries at most one besides those of live snapshots.
#[derive(Debug)]
struct Carried {
    service: ServiceId,
    counts: Counts,
    /// (slot in `counts`, current slot it adds to).
    map: Box<[(u32, u32)]>,
}

/// The service and endpoint values of one plan, indexed like `Plan::services`; the
/// label values (service, gateway and region names) are read from the plan at scrape
/// time. A config of 10,000 services holds one of these per plan, so each service is
/// one allocation.
#[derive(Debug, Default)]
pub struct ServiceSeries {
    plan: Option<Arc<Plan>>,
    counts: Box<[Counts]>,
    /// `gslb_endpoint_up` of every endpoint, service after service; service `s`'s
    /// are `up[first[s]..first[s + 1]]`.
    up: Box<[AtomicBool]>,
    first: Box<[u32]>,
    carried: Vec<Carried>,
}

fn zeros(n: usize) -> Counts {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

impl ServiceSeries {
    /// The values for `plan`, carrying on from `prev`'s: a service whose endpoints
    /// are the same gateways in the same order shares its counters, one whose list
    /// changed starts anew and carries the old counters of the gateways it kept.
    pub(super) fn for_plan(plan: &Arc<Plan>, prev: &ServiceSeries) -> ServiceSeries {
        let prev_plan = prev.plan.as_deref();
        let old: HashMap<_, _> = prev_plan
            .iter()
            .flat_map(|p| p.services.iter().enumerate())
            .map(|(i, s)| (&s.name, ServiceId(i)))
            .collect();
        let mut old_carried = prev.carried_by_service();
        fn gateway(p: &Plan, g: crate::plan::GatewayId) -> &str {
            p.gateways[g].name.as_str()
        }
        let mut counts = Vec::with_capacity(plan.services.len());
        let mut first = Vec::with_capacity(plan.services.len() + 1);
        let mut up = Vec::new();
        let mut carried = Vec::new();
        for (si, s) in plan.services.iter().enumerate() {
            let si = ServiceId(si);
            first.push(up.len() as u32);
            let names: Vec<&str> = s
                .endpoints
                .iter()
                .map(|e| gateway(plan, e.gateway))
                .collect();
            let Some((&oi, prev_plan)) = old.get(&s.name).zip(prev_plan) else {
                counts.push(zeros(ENDPOINTS_AT + names.len()));
                up.extend(names.iter().map(|_| AtomicBool::new(false)));
                continue;
            };
            let before: Vec<&str> = prev_plan.services[oi]
                .endpoints
                .iter()
                .map(|e| gateway(prev_plan, e.gateway))
                .collect();
            // Slot of `prev`'s service -> slot of this one, by gateway.
            let slot = |j: usize| -> Option<usize> {
                match j.checked_sub(ENDPOINTS_AT) {
                    None => Some(j),
                    Some(e) => names
                        .iter()
                        .position(|n| *n == before[e])
                        .map(|k| k + ENDPOINTS_AT),
                }
            };
            let prev_up = &prev.up[prev.first[oi.index()] as usize..];
            up.extend(names.iter().map(|n| {
                let was = before.iter().position(|b| b == n);
                AtomicBool::new(was.is_some_and(|j| prev_up[j].load(Ordering::Relaxed)))
            }));
            let earlier = old_carried.remove(&oi).unwrap_or_default();
            if names == before {
                counts.push(prev.counts[oi.index()].clone());
                carried.extend(earlier.into_iter().map(|c| Carried {
                    service: si,
                    counts: c.counts.clone(),
                    map: c.map.clone(),
                }));
                continue;
            }
            let fresh = zeros(ENDPOINTS_AT + names.len());
            let map = |pairs: &mut dyn Iterator<Item = (u32, u32)>| -> Box<[(u32, u32)]> {
                pairs
                    .filter_map(|(from, to)| slot(to as usize).map(|to| (from, to as u32)))
                    .collect()
            };
            for c in earlier {
                let map = map(&mut c.map.iter().copied());
                if Arc::strong_count(&c.counts) == 1 {
                    // No snapshot counts into these any more: fold them in. The fence
                    // pairs with the release of the last other holder's reference, so
                    // its last counts are seen (`strong_count` is a relaxed load).
                    fence(Ordering::Acquire);
                    for &(from, to) in &*map {
                        let v = c.counts[from as usize].load(Ordering::Relaxed);
                        fresh[to as usize].fetch_add(v, Ordering::Relaxed);
                    }
                } else {
                    carried.push(Carried {
                        service: si,
                        counts: c.counts.clone(),
                        map,
                    });
                }
            }
            let own = prev.counts[oi.index()].clone();
            let slots = u32::try_from(own.len()).expect("fewer than 2^32 endpoints");
            let map = map(&mut (0..slots).map(|j| (j, j)));
            carried.push(Carried {
                service: si,
                counts: own,
                map,
            });
            counts.push(fresh);
        }
        first.push(up.len() as u32);
        ServiceSeries {
            plan: Some(plan.clone()),
            counts: counts.into(),
            up: up.into(),
            first: first.into(),
            carried,
        }
    }

    pub fn answered(&self, s: ServiceId, e: EndpointId) {
        self.counts[s.index()][ENDPOINTS_AT + e.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn fail_open(&self, s: ServiceId) {
        self.counts[s.index()][FAIL_OPEN_AT].fetch_add(1, Ordering::Relaxed);
    }

    pub fn panic(&self, s: ServiceId) {
        self.counts[s.index()][PANIC_AT].fetch_add(1, Ordering::Relaxed);
    }

    pub fn endpoints_of(&self, s: ServiceId) -> usize {
        (self.first[s.index() + 1] - self.first[s.index()]) as usize
    }

    pub fn set_up(&self, s: ServiceId, e: EndpointId, up: bool) {
        self.up[self.first[s.index()] as usize + e.index()].store(up, Ordering::Relaxed);
    }

    /// How many earlier counter sets this series carries.
    #[cfg(test)]
    pub(super) fn carried_len(&self) -> usize {
        self.carried.len()
    }

    /// The carried counter sets, by the service they add to.
    fn carried_by_service(&self) -> HashMap<ServiceId, Vec<&Carried>> {
        let mut by: HashMap<ServiceId, Vec<&Carried>> = HashMap::new();
        for c in &self.carried {
            by.entry(c.service).or_default().push(c);
        }
        by
    }

    /// Service `s`'s counters as exported: its own plus those it carries (`extra`,
    /// from `carried_by_service`).
    fn values(&self, s: ServiceId, extra: &HashMap<ServiceId, Vec<&Carried>>) -> Vec<u64> {
        let mut v: Vec<u64> = self.counts[s.index()]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        for c in extra.get(&s).into_iter().flatten() {
            for &(from, to) in &*c.map {
                v[to as usize] += c.counts[from as usize].load(Ordering::Relaxed);
            }
        }
        v
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
        let Some(plan) = &series.plan else {
            return Vec::new();
        };
        let extra = series.carried_by_service();
        for (si, s) in plan.services.iter().enumerate() {
            let si = ServiceId(si);
            let values = series.values(si, &extra);
            let service = s.name.to_string();
            let service = service.as_str();
            fail_open.push(counter(
                values[FAIL_OPEN_AT],
                labels(&[("service", service)]),
            ));
            panic.push(counter(values[PANIC_AT], labels(&[("service", service)])));
            let first = series.first[si.index()] as usize;
            for (k, e) in s.endpoints.iter().enumerate() {
                let g = &plan.gateways[e.gateway];
                let (gateway, region) = (g.name.as_str(), g.region.as_deref().unwrap_or(""));
                answers.push(counter(
                    values[ENDPOINTS_AT + k],
                    labels(&[("service", service), ("endpoint", gateway)]),
                ));
                let mut gauge = Gauge::default();
                gauge.set_value(f64::from(u8::from(
                    series.up[first + k].load(Ordering::Relaxed),
                )));
                let mut m = Metric::from_label(labels(&[
                    ("service", service),
                    ("endpoint", gateway),
                    ("region", region),
                ]));
                m.set_gauge(gauge);
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
