//! The snapshot: everything the DNS front needs to answer, published as one `Arc` with
//! one `ArcSwap::store` per change (plan, health). Queries `load()` it and never lock.
//!
//! Two layers: `Zones` depends on the plan only (name index, static data) and is built
//! once per config load; the per-service `Pool`s depend on health too and are rebuilt on
//! every state flip. A flip therefore costs a few small vectors, not a re-index.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{LowerName, RData, Record, RecordType};

use crate::answer::{Candidate, Decision, Pool};
use crate::locality::{self, Capacity, RegionIndex};
use crate::metrics::PlanMetrics;
use crate::overrides::{AdminState, Overrides};
use crate::plan::{AllDown, Plan, Service};

/// What lives at a name.
#[derive(Debug)]
pub enum Node {
    /// A load-balanced service (index into `Plan::services`).
    Service(usize),
    /// Static data: records grouped by type (SOA and NS included at the apex).
    Static(Vec<(RecordType, Vec<Record>)>),
    /// A name with no data but with names below it (RFC 8020: NODATA, not NXDOMAIN).
    EmptyNonTerminal,
}

/// The name index of one plan.
#[derive(Debug)]
pub struct Zones {
    /// Every name that exists in our zones, with the zone it belongs to.
    pub nodes: HashMap<LowerName, (usize, Node)>,
    /// Zone origins, to tell NXDOMAIN (inside a zone) from REFUSED (outside all).
    pub origins: HashMap<LowerName, usize>,
    /// Per zone: its SOA with the negative TTL, for the authority section of NXDOMAIN
    /// and NODATA answers (RFC 2308 §3).
    pub negative_soa: Vec<Record>,
    /// Client networks → region, longest prefix first.
    pub regions: RegionIndex,
}

impl Zones {
    pub fn build(plan: &Plan) -> Zones {
        let mut nodes: HashMap<LowerName, (usize, Node)> = HashMap::new();
        let mut origins = HashMap::new();
        for (zi, zone) in plan.zones.iter().enumerate() {
            origins.insert(LowerName::new(&zone.origin), zi);
            let apex = [zone.soa.clone()]
                .into_iter()
                .chain(zone.ns.iter().cloned());
            for r in apex.chain(zone.records.iter().cloned()) {
                let entry = nodes
                    .entry(LowerName::new(&r.name))
                    .or_insert_with(|| (zi, Node::Static(Vec::new())));
                if let Node::Static(by_type) = &mut entry.1 {
                    match by_type.iter_mut().find(|(t, _)| *t == r.record_type()) {
                        Some((_, v)) => v.push(r),
                        None => by_type.push((r.record_type(), vec![r])),
                    }
                }
            }
        }
        for (si, s) in plan.services.iter().enumerate() {
            nodes.insert(LowerName::new(&s.name), (s.zone, Node::Service(si)));
        }
        // Empty non-terminals: every ancestor of a name, up to its zone apex.
        let names: Vec<(LowerName, usize)> =
            nodes.iter().map(|(n, (z, _))| (n.clone(), *z)).collect();
        for (name, zi) in names {
            let origin = &plan.zones[zi].origin;
            let mut cur = name.base_name();
            while cur.num_labels() > origin.num_labels() {
                nodes
                    .entry(cur.clone())
                    .or_insert((zi, Node::EmptyNonTerminal));
                cur = cur.base_name();
            }
        }
        let negative_soa = plan
            .zones
            .iter()
            .map(|z| {
                let mut soa = z.soa.clone();
                soa.ttl = z.negative_ttl;
                soa
            })
            .collect();
        let regions = RegionIndex::new(
            plan.regions
                .iter()
                .enumerate()
                .flat_map(|(i, r)| r.networks.iter().map(move |n| (i, *n))),
        );
        Zones {
            nodes,
            origins,
            negative_soa,
            regions,
        }
    }

    /// The zone that contains `name`, if any (longest match).
    pub fn zone_of(&self, name: &LowerName) -> Option<usize> {
        let mut cur = name.clone();
        loop {
            if let Some(&z) = self.origins.get(&cur) {
                return Some(z);
            }
            if cur.is_root() {
                return None;
            }
            cur = cur.base_name();
        }
    }
}

/// Per-service answer tables for the current health state.
#[derive(Debug)]
pub struct ServiceTable {
    /// One slot per client region (`Plan::regions` order) and a last one for clients in
    /// no region; a single slot when the service does not use locality.
    pub slots: Vec<Slot>,
    /// Per endpoint: how the snapshot saw it.
    pub endpoints: Vec<EndpointView>,
    /// Healthy weight is below the panic threshold: answering as if all were healthy.
    pub panic: bool,
}

impl ServiceTable {
    /// The slot for a client placed in `region` (`None`: in no region).
    pub fn slot(&self, region: Option<usize>) -> &Slot {
        let last = self.slots.len() - 1;
        &self.slots[region.map_or(last, |r| r.min(last))]
    }
}

/// The answer pools for one kind of client.
#[derive(Debug)]
pub struct Slot {
    pub v4: Pool,
    pub v6: Pool,
}

/// One endpoint as the answer tables saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointView {
    /// The probes' verdict (true when the service has no check).
    pub probe_up: bool,
    /// The operator's override, if any.
    pub admin: Option<AdminState>,
}

impl EndpointView {
    /// `ready = (healthy || forced up) && !forced down && !drained`.
    pub fn ready(&self) -> bool {
        match self.admin {
            None => self.probe_up,
            Some(AdminState::ForceUp) => true,
            Some(AdminState::ForceDown | AdminState::Drain) => false,
        }
    }

    pub fn drained(&self) -> bool {
        self.admin == Some(AdminState::Drain)
    }
}

/// One consistent view: plan, health, overrides, and the tables derived from them.
#[derive(Debug)]
pub struct Snapshot {
    pub plan: Arc<Plan>,
    pub zones: Arc<Zones>,
    pub metrics: Arc<PlanMetrics>,
    pub services: Vec<ServiceTable>,
}

impl Snapshot {
    /// `health[t]` is the verdict for `plan.targets[t]`.
    pub fn build(
        plan: Arc<Plan>,
        zones: Arc<Zones>,
        metrics: Arc<PlanMetrics>,
        health: &[bool],
        overrides: &Overrides,
    ) -> Snapshot {
        assert_eq!(health.len(), plan.targets.len());
        let services = plan
            .services
            .iter()
            .map(|svc| {
                let service_name = svc.name.to_string();
                let endpoints: Vec<EndpointView> = svc
                    .endpoints
                    .iter()
                    .map(|e| EndpointView {
                        probe_up: e.target.is_none_or(|t| health[t]),
                        admin: overrides.effective(&service_name, &plan.gateways[e.gateway].name),
                    })
                    .collect();
                build_table(&plan, svc, endpoints)
            })
            .collect();
        Snapshot {
            plan,
            zones,
            metrics,
            services,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// Scale for turning fractional (spillover) weights into integers for the draw.
const WEIGHT_SCALE: f64 = 1_000_000.0;

fn build_table(plan: &Plan, svc: &Service, endpoints: Vec<EndpointView>) -> ServiceTable {
    // Panic: too little of the enabled weight is healthy; answer as if all were.
    let enabled = |e: usize| !endpoints[e].drained() && svc.endpoints[e].weight > 0;
    let total: u64 = (0..svc.endpoints.len())
        .filter(|&e| enabled(e))
        .map(|e| svc.endpoints[e].weight as u64)
        .sum();
    let healthy: u64 = (0..svc.endpoints.len())
        .filter(|&e| enabled(e) && endpoints[e].ready())
        .map(|e| svc.endpoints[e].weight as u64)
        .sum();
    let panic = svc
        .panic_threshold
        .is_some_and(|p| total > 0 && (healthy as f64) < p * total as f64);

    let ctx = TableCtx {
        plan,
        svc,
        views: &endpoints,
        panic,
    };
    let slots = if svc.locality {
        (0..plan.regions.len())
            .map(Some)
            .chain(std::iter::once(None))
            .map(|r| Slot {
                v4: ctx.pool(Family::V4, r),
                v6: ctx.pool(Family::V6, r),
            })
            .collect()
    } else {
        vec![Slot {
            v4: ctx.pool(Family::V4, None),
            v6: ctx.pool(Family::V6, None),
        }]
    };
    ServiceTable {
        slots,
        endpoints,
        panic,
    }
}

struct TableCtx<'a> {
    plan: &'a Plan,
    svc: &'a Service,
    views: &'a [EndpointView],
    panic: bool,
}

impl TableCtx<'_> {
    fn records(&self, e: usize, fam: Family) -> Vec<Record> {
        let svc = self.svc;
        let gw = &self.plan.gateways[svc.endpoints[e].gateway];
        match fam {
            Family::V4 => gw
                .v4
                .iter()
                .map(|&ip| Record::from_rdata(svc.name.clone(), svc.ttl, RData::A(A(ip))))
                .collect(),
            Family::V6 => gw
                .v6
                .iter()
                .map(|&ip| Record::from_rdata(svc.name.clone(), svc.ttl, RData::AAAA(AAAA(ip))))
                .collect(),
        }
    }

    fn has_family(&self, e: usize, fam: Family) -> bool {
        let gw = &self.plan.gateways[self.svc.endpoints[e].gateway];
        match fam {
            Family::V4 => !gw.v4.is_empty(),
            Family::V6 => !gw.v6.is_empty(),
        }
    }

    fn weight(&self, e: usize) -> u64 {
        self.svc.endpoints[e].weight as u64
    }

    /// Enabled: weight > 0 and not drained. Ready: enabled and healthy (or panic).
    fn enabled(&self, e: usize) -> bool {
        !self.views[e].drained() && self.weight(e) > 0
    }

    fn ready(&self, e: usize, all_healthy: bool) -> bool {
        self.enabled(e) && (all_healthy || self.views[e].ready())
    }

    /// The pool for clients in `region` (`None`: no region, or no locality).
    fn pool(&self, fam: Family, region: Option<usize>) -> Pool {
        let present: Vec<usize> = (0..self.svc.endpoints.len())
            .filter(|&e| self.has_family(e, fam))
            .collect();
        if present.is_empty() {
            return Pool::new(Decision::NoAddresses, Vec::new());
        }
        let (decision, as_if_healthy) = if self.panic {
            (Decision::Panic, true)
        } else {
            (Decision::Healthy, false)
        };
        if let Some((c, groups)) = self.candidates(&present, fam, region, as_if_healthy) {
            return Pool::grouped(decision, c, groups);
        }
        match self.svc.all_down {
            AllDown::FailClosed => Pool::new(Decision::FailClosed, Vec::new()),
            AllDown::FailOpen => {
                // As if every endpoint were healthy (drained ones stay out: a drain is
                // the operator saying "not this one"). When every weight is zero, each
                // gets the same share, as Route 53 does.
                match self.candidates(&present, fam, region, true) {
                    Some((c, groups)) => Pool::grouped(Decision::FailOpen, c, groups),
                    None => Pool::new(
                        Decision::FailOpen,
                        present
                            .iter()
                            .filter(|&&e| !self.views[e].drained())
                            .map(|&e| self.candidate(e, fam, 1))
                            .collect(),
                    ),
                }
            }
        }
    }

    fn candidate(&self, e: usize, fam: Family, weight: u64) -> Candidate {
        Candidate {
            endpoint: e,
            weight,
            records: self.records(e, fam),
        }
    }

    fn in_region(&self, e: usize, region: usize) -> bool {
        self.plan.gateways[self.svc.endpoints[e].gateway].region_index == Some(region)
    }

    /// The client region's chain (the region, then its fallbacks), each with its
    /// enabled and ready weight among `present` and the share of load it takes.
    fn chain(&self, present: &[usize], r: usize, all_healthy: bool) -> Vec<(usize, Capacity, f64)> {
        let chain = self.plan.regions[r].chain(r);
        let caps: Vec<Capacity> = chain
            .iter()
            .map(|&ri| Capacity {
                total: present
                    .iter()
                    .filter(|&&e| self.in_region(e, ri) && self.enabled(e))
                    .map(|&e| self.weight(e))
                    .sum(),
                healthy: present
                    .iter()
                    .filter(|&&e| self.in_region(e, ri) && self.ready(e, all_healthy))
                    .map(|&e| self.weight(e))
                    .sum(),
            })
            .collect();
        let loads = locality::loads(&caps, self.svc.overprovisioning);
        chain
            .into_iter()
            .zip(caps)
            .zip(loads)
            .map(|((r, c), l)| (r, c, l))
            .collect()
    }

    /// Candidates by locality, with the exclusive end of each region's group (one
    /// group when the client is in no region); `None` when nothing in reach is ready.
    fn candidates(
        &self,
        present: &[usize],
        fam: Family,
        region: Option<usize>,
        all_healthy: bool,
    ) -> Option<(Vec<Candidate>, Vec<usize>)> {
        let Some(r) = region else {
            // Unknown client, or no locality: every ready endpoint, by weight.
            let c: Vec<Candidate> = present
                .iter()
                .filter(|&&e| self.ready(e, all_healthy))
                .map(|&e| self.candidate(e, fam, self.weight(e)))
                .collect();
            let len = c.len();
            return (len > 0).then_some((c, vec![len]));
        };
        let steps = self.chain(present, r, all_healthy);
        if steps.iter().all(|(_, c, _)| c.total == 0) {
            // The service has nothing enabled in this client's chain (no gateway in
            // those regions, or only unlabelled ones): locality cannot apply, so the
            // client is served like one in no region. Otherwise it would fall through
            // to fail-open and get every endpoint, unhealthy ones included.
            return self.candidates(present, fam, None, all_healthy);
        }
        // One group per region that takes load: spillover moves whole answers, so an
        // answer of several endpoints is drawn within one region (`Pool::draw`).
        let mut out = Vec::new();
        let mut groups = Vec::new();
        for &(ri, cap, load) in &steps {
            if load <= 0.0 || cap.healthy == 0 {
                continue;
            }
            for &e in present {
                if self.in_region(e, ri) && self.ready(e, all_healthy) {
                    let share = load * self.weight(e) as f64 / cap.healthy as f64;
                    let w = (share * WEIGHT_SCALE).round().max(1.0) as u64;
                    out.push(self.candidate(e, fam, w));
                }
            }
            if groups.last() != Some(&out.len()) && !out.is_empty() {
                groups.push(out.len());
            }
        }
        (!out.is_empty()).then_some((out, groups))
    }
}

/// The region chain the answer tables weigh for a client in `region`, for the A
/// (`v6 = false`) or AAAA pool of service `s`: (region, capacity, load) per step. The
/// same computation the tables were built with, for `explain`.
pub fn region_chain(
    plan: &Plan,
    s: usize,
    table: &ServiceTable,
    region: usize,
    v6: bool,
) -> Vec<(usize, Capacity, f64)> {
    let ctx = TableCtx {
        plan,
        svc: &plan.services[s],
        views: &table.endpoints,
        panic: table.panic,
    };
    let fam = if v6 { Family::V6 } else { Family::V4 };
    let present: Vec<usize> = (0..ctx.svc.endpoints.len())
        .filter(|&e| ctx.has_family(e, fam))
        .collect();
    ctx.chain(&present, region, table.panic)
}

/// The published state: one `ArcSwap` holding the current snapshot.
pub type Shared = Arc<ArcSwap<Snapshot>>;
