//! The answer tables of one service for one health state: which endpoints may answer
//! each kind of client (ready, fail-open, panic, the region chain and its spillover
//! loads), precomputed per client region and address family when a snapshot is built.
//! `decide` then only looks a table up; nothing here runs per query.

use super::Family;
use super::affinity::candidate_key;
use super::locality::{self, Capacity};
use super::pool::{Candidate, ChainStep, Decision, Pool};
use crate::overrides::AdminState;
use crate::plan::{AllDown, EndpointId, Plan, RegionId, Service, ServiceId};

/// Per-service answer tables for the current health state.
#[derive(Debug)]
pub struct ServiceTable {
    /// The slot for clients in no region, and for every client when the service does
    /// not use locality (held inline: most services have no other).
    unplaced: Slot,
    /// With locality, one slot per client region (`Plan::regions` order); else none
    /// (a thin pointer: most services have no locality).
    regional: Option<Box<Box<[Slot]>>>,
    /// Per endpoint: how the snapshot saw it.
    pub endpoints: Views,
    /// Healthy weight is below the panic threshold: answering as if all were healthy.
    pub panic: bool,
}

impl ServiceTable {
    fn regional(&self) -> &[Slot] {
        self.regional.as_deref().map_or(&[], |r| r)
    }

    /// Whether endpoint `e` is a candidate for some kind of client.
    pub fn may_answer(&self, e: EndpointId) -> bool {
        let mut slots = self
            .regional()
            .iter()
            .chain(std::iter::once(&self.unplaced));
        slots.any(|slot| {
            slot.v4
                .candidates
                .iter()
                .chain(slot.v6.candidates.iter())
                .any(|c| c.endpoint == e)
        })
    }

    /// The slot for a client placed in `region` (`None`: in no region).
    pub fn slot(&self, region: Option<RegionId>) -> &Slot {
        match region.and_then(|r| self.regional().get(r.index())) {
            Some(slot) => slot,
            None => &self.unplaced,
        }
    }
}

/// The answer pools for one kind of client.
#[derive(Debug)]
pub struct Slot {
    pub v4: Pool,
    pub v6: Pool,
}

/// The endpoints' views of a table: inline for a service of up to `INLINE` endpoints
/// (most), so that they take no allocation of their own.
#[derive(Debug, Clone)]
pub enum Views {
    Inline {
        len: u8,
        views: [EndpointView; INLINE],
    },
    Boxed(Box<[EndpointView]>),
}

const INLINE: usize = 7;

impl From<Vec<EndpointView>> for Views {
    fn from(v: Vec<EndpointView>) -> Views {
        if v.len() > INLINE {
            return Views::Boxed(v.into_boxed_slice());
        }
        let mut views = [EndpointView {
            probe_up: false,
            admin: None,
        }; INLINE];
        views[..v.len()].copy_from_slice(&v);
        Views::Inline {
            len: v.len() as u8,
            views,
        }
    }
}

impl std::ops::Deref for Views {
    type Target = [EndpointView];
    fn deref(&self) -> &[EndpointView] {
        match self {
            Views::Inline { len, views } => &views[..*len as usize],
            Views::Boxed(b) => b,
        }
    }
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

/// A snapshot's tables, each shared with the snapshots before it that it did not change.
impl std::ops::Index<ServiceId> for Vec<std::sync::Arc<ServiceTable>> {
    type Output = ServiceTable;
    fn index(&self, i: ServiceId) -> &ServiceTable {
        &self[i.index()]
    }
}

impl std::ops::Index<EndpointId> for [EndpointView] {
    type Output = EndpointView;
    fn index(&self, e: EndpointId) -> &EndpointView {
        &self[e.index()]
    }
}

impl std::ops::Index<EndpointId> for Vec<EndpointView> {
    type Output = EndpointView;
    fn index(&self, e: EndpointId) -> &EndpointView {
        &self[e.index()]
    }
}

/// Scale for turning fractional (spillover) weights into integers for the draw.
const WEIGHT_SCALE: f64 = 1_000_000.0;

impl ServiceTable {
    /// The tables of `svc` when its endpoints are as `endpoints` (in `svc.endpoints`
    /// order) say.
    pub fn build(plan: &Plan, svc: &Service, endpoints: Vec<EndpointView>) -> ServiceTable {
        // Panic: too little of the enabled weight is healthy; answer as if all were.
        let enabled = |e: EndpointId| !endpoints[e].drained() && svc.endpoints[e].weight > 0;
        let ids = || EndpointId::all(svc.endpoints.len());
        let total: u64 = ids()
            .filter(|&e| enabled(e))
            .map(|e| svc.endpoints[e].weight as u64)
            .sum();
        let healthy: u64 = ids()
            .filter(|&e| enabled(e) && endpoints[e].ready())
            .map(|e| svc.endpoints[e].weight as u64)
            .sum();
        let panic = svc
            .panic_threshold()
            .is_some_and(|p| total > 0 && (healthy as f64) < p * total as f64);

        let ctx = TableCtx {
            plan,
            svc,
            service_name: svc.name.to_string(),
            views: &endpoints,
            panic,
        };
        let slot = |r: Option<RegionId>| Slot {
            v4: ctx.pool(Family::V4, r),
            v6: ctx.pool(Family::V6, r),
        };
        let regional = svc.locality.then(|| {
            let slots: Box<[Slot]> = RegionId::all(plan.regions.len())
                .map(|r| slot(Some(r)))
                .collect();
            Box::new(slots)
        });
        ServiceTable {
            unplaced: slot(None),
            regional,
            endpoints: endpoints.into(),
            panic,
        }
    }
}

struct TableCtx<'a> {
    plan: &'a Plan,
    svc: &'a Service,
    /// `svc.name` as text, for the candidates' keys.
    service_name: String,
    views: &'a [EndpointView],
    panic: bool,
}

impl TableCtx<'_> {
    fn has_family(&self, e: EndpointId, fam: Family) -> bool {
        let gw = &self.plan.gateways[self.svc.endpoints[e].gateway];
        match fam {
            Family::V4 => !gw.v4.is_empty(),
            Family::V6 => !gw.v6.is_empty(),
        }
    }

    fn weight(&self, e: EndpointId) -> u64 {
        self.svc.endpoints[e].weight as u64
    }

    /// Enabled: weight > 0 and not drained. Ready: enabled and healthy (or panic).
    fn enabled(&self, e: EndpointId) -> bool {
        !self.views[e].drained() && self.weight(e) > 0
    }

    fn ready(&self, e: EndpointId, all_healthy: bool) -> bool {
        self.enabled(e) && (all_healthy || self.views[e].ready())
    }

    /// The pool for clients in `region` (`None`: no region, or no locality).
    fn pool(&self, fam: Family, region: Option<RegionId>) -> Pool {
        let present: Vec<EndpointId> = EndpointId::all(self.svc.endpoints.len())
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
        // The chain as the decision weighed it, for explain.
        let chain =
            |all_healthy| region.map_or(Vec::new(), |r| self.chain(&present, r, all_healthy));
        if let Some((c, groups)) = self.candidates(&present, region, as_if_healthy) {
            return Pool::grouped(decision, c, groups).with_chain(chain(as_if_healthy));
        }
        match self.svc.all_down {
            AllDown::FailClosed => {
                Pool::new(Decision::FailClosed, Vec::new()).with_chain(chain(false))
            }
            AllDown::FailOpen => {
                // As if every endpoint were healthy (drained ones stay out: a drain is
                // the operator saying "not this one"). When every weight is zero, each
                // gets the same share, as Route 53 does.
                let pool = match self.candidates(&present, region, true) {
                    Some((c, groups)) => Pool::grouped(Decision::FailOpen, c, groups),
                    None => Pool::new(
                        Decision::FailOpen,
                        present
                            .iter()
                            .filter(|&&e| !self.views[e].drained())
                            .map(|&e| self.candidate(e, 1))
                            .collect(),
                    ),
                };
                pool.with_chain(chain(true))
            }
        }
    }

    fn candidate(&self, e: EndpointId, weight: u64) -> Candidate {
        let gateway = &self.plan.gateways[self.svc.endpoints[e].gateway].name;
        Candidate::new(e, weight, candidate_key(&self.service_name, gateway))
    }

    fn in_region(&self, e: EndpointId, region: RegionId) -> bool {
        self.plan.gateways[self.svc.endpoints[e].gateway].region_index == Some(region)
    }

    /// The client region's chain (the region, then its fallbacks), each with its
    /// enabled and ready weight among `present` and the share of load it takes.
    fn chain(&self, present: &[EndpointId], r: RegionId, all_healthy: bool) -> Vec<ChainStep> {
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
        let loads = locality::loads(&caps, self.svc.overprovisioning());
        chain
            .into_iter()
            .zip(caps)
            .zip(loads)
            .map(|((region, capacity), load)| ChainStep {
                region,
                capacity,
                load,
            })
            .collect()
    }

    /// Candidates by locality, with the exclusive end of each region's group (one
    /// group when the client is in no region); `None` when nothing in reach is ready.
    fn candidates(
        &self,
        present: &[EndpointId],
        region: Option<RegionId>,
        all_healthy: bool,
    ) -> Option<(Vec<Candidate>, Vec<usize>)> {
        let Some(r) = region else {
            // Unknown client, or no locality: every ready endpoint, by weight.
            let c: Vec<Candidate> = present
                .iter()
                .filter(|&&e| self.ready(e, all_healthy))
                .map(|&e| self.candidate(e, self.weight(e)))
                .collect();
            let len = c.len();
            return (len > 0).then_some((c, vec![len]));
        };
        let steps = self.chain(present, r, all_healthy);
        if steps.iter().all(|s| s.capacity.total == 0) {
            // The service has nothing enabled in this client's chain (no gateway in
            // those regions, or only unlabelled ones): locality cannot apply, so the
            // client is served like one in no region. Otherwise it would fall through
            // to fail-open and get every endpoint, unhealthy ones included.
            return self.candidates(present, None, all_healthy);
        }
        // One group per region that takes load: spillover moves whole answers, so an
        // answer of several endpoints is drawn within one region (`Pool::draw`).
        let mut out = Vec::new();
        let mut groups = Vec::new();
        for step in &steps {
            let healthy = step.capacity.healthy;
            if step.load <= 0.0 || healthy == 0 {
                continue;
            }
            for &e in present {
                if self.in_region(e, step.region) && self.ready(e, all_healthy) {
                    let share = step.load * self.weight(e) as f64 / healthy as f64;
                    let w = (share * WEIGHT_SCALE).round().max(1.0) as u64;
                    out.push(self.candidate(e, w));
                }
            }
            if groups.last() != Some(&out.len()) && !out.is_empty() {
                groups.push(out.len());
            }
        }
        (!out.is_empty()).then_some((out, groups))
    }
}
