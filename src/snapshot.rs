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
        Zones {
            nodes,
            origins,
            negative_soa,
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
    pub v4: Pool,
    pub v6: Pool,
    /// Per endpoint: how the snapshot saw it.
    pub endpoints: Vec<EndpointView>,
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
                ServiceTable {
                    v4: build_pool(&plan, svc, &endpoints, Family::V4),
                    v6: build_pool(&plan, svc, &endpoints, Family::V6),
                    endpoints,
                }
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

fn build_pool(plan: &Plan, svc: &Service, views: &[EndpointView], fam: Family) -> Pool {
    let records_of = |e: usize| -> Vec<Record> {
        let gw = &plan.gateways[svc.endpoints[e].gateway];
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
    };
    // Endpoints that have an address of this family at all.
    let present: Vec<usize> = (0..svc.endpoints.len())
        .filter(|&e| {
            let gw = &plan.gateways[svc.endpoints[e].gateway];
            match fam {
                Family::V4 => !gw.v4.is_empty(),
                Family::V6 => !gw.v6.is_empty(),
            }
        })
        .collect();
    if present.is_empty() {
        return Pool::new(Decision::NoAddresses, Vec::new());
    }
    let make = |e: usize, weight: u64| Candidate {
        endpoint: e,
        weight,
        records: records_of(e),
    };

    let live: Vec<Candidate> = present
        .iter()
        .copied()
        .filter(|&e| views[e].ready() && svc.endpoints[e].weight > 0)
        .map(|e| make(e, svc.endpoints[e].weight as u64))
        .collect();
    if !live.is_empty() {
        return Pool::new(Decision::Healthy, live);
    }
    match svc.all_down {
        AllDown::FailClosed => Pool::new(Decision::FailClosed, Vec::new()),
        AllDown::FailOpen => {
            // Answer as if every endpoint were healthy; drained ones stay out (a drain
            // is the operator saying "not this one", whatever happens). When every
            // weight is zero, give each the same share (Route 53 does the same).
            let open: Vec<usize> = present
                .iter()
                .copied()
                .filter(|&e| !views[e].drained())
                .collect();
            let any_weight = open.iter().any(|&e| svc.endpoints[e].weight > 0);
            let cands = open
                .iter()
                .copied()
                .filter(|&e| !any_weight || svc.endpoints[e].weight > 0)
                .map(|e| make(e, (svc.endpoints[e].weight as u64).max(1)))
                .collect();
            Pool::new(Decision::FailOpen, cands)
        }
    }
}

/// The published state: one `ArcSwap` holding the current snapshot.
pub type Shared = Arc<ArcSwap<Snapshot>>;
