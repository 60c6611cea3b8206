//! The snapshot: everything the DNS front needs to answer, published as one `Arc` with
//! one `ArcSwap::store` per change (plan, health). Queries `load()` it and never lock.
//!
//! Two layers: `Zones` depends on the plan only (name index, static data) and is built
//! once per config load; the per-service tables depend on health and overrides too. A
//! flip rebuilds only the tables of the services whose endpoints it changed and shares
//! every other one with the snapshot before (`Snapshot::rebuild`): its cost follows
//! what depends on the flipped target, not the size of the config.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::rr::{LowerName, Name, Record};

use crate::answer::{self, Client, Decided, EndpointView, RegionIndex, ServiceTable};
use crate::cluster::Votes;
use crate::health::TargetState;
use crate::metrics::PlanMetrics;
use crate::overrides::Overrides;
use crate::plan::{Plan, ServiceId, ZoneId};

mod names;

pub use names::Node;
use names::{NameIndex, Stored};

/// The name index of one plan.
#[derive(Debug)]
pub struct Zones {
    /// Every name that exists in our zones, with the zone it belongs to, keyed by the
    /// name in wire form and lower case: the DNS front's fast path looks names up
    /// straight from the query's bytes (`node_wire`), everyone else by name (`node`).
    nodes: NameIndex,
    /// Zone origins, to tell NXDOMAIN (inside a zone) from REFUSED (outside all).
    pub origins: HashMap<LowerName, ZoneId>,
    /// Per zone: its SOA with the negative TTL, for the authority section of NXDOMAIN
    /// and NODATA answers (RFC 2308 §3).
    negative_soa: Vec<Record>,
    /// Client networks → region (longest prefix match).
    pub regions: RegionIndex,
    /// CH-class TXT records: id.server. and hostname.bind. (the NSID), version.bind.
    /// and version.server., each only when configured.
    pub chaos: HashMap<LowerName, Record>,
}

impl Zones {
    pub fn build(plan: &Plan) -> Zones {
        let mut nodes: HashMap<LowerName, (ZoneId, Stored)> = HashMap::new();
        let mut origins = HashMap::new();
        for (zi, zone) in ZoneId::all(plan.zones.len()).zip(&plan.zones) {
            origins.insert(LowerName::new(&zone.origin), zi);
            let apex = [zone.soa.clone()]
                .into_iter()
                .chain(zone.ns.iter().cloned());
            for r in apex.chain(zone.records.iter().cloned()) {
                let entry = nodes
                    .entry(LowerName::new(&r.name))
                    .or_insert_with(|| (zi, Stored::Static(Vec::new())));
                if let Stored::Static(by_type) = &mut entry.1 {
                    match by_type.iter_mut().find(|(t, _)| *t == r.record_type()) {
                        Some((_, v)) => v.push(r),
                        None => by_type.push((r.record_type(), vec![r])),
                    }
                }
            }
        }
        for (si, s) in ServiceId::all(plan.services.len()).zip(&plan.services) {
            nodes.insert(LowerName::new(&s.name), (s.zone, Stored::Service(si)));
        }
        // Empty non-terminals: every ancestor of a name, up to its zone apex.
        let names: Vec<(LowerName, ZoneId)> =
            nodes.iter().map(|(n, (z, _))| (n.clone(), *z)).collect();
        for (name, zi) in names {
            let origin = &plan.zones[zi].origin;
            let mut cur = name.base_name();
            while cur.num_labels() > origin.num_labels() {
                nodes
                    .entry(cur.clone())
                    .or_insert((zi, Stored::EmptyNonTerminal));
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
        let regions = RegionIndex::of(plan);
        Zones {
            nodes: NameIndex::build(
                nodes
                    .into_iter()
                    .filter_map(|(name, (zone, node))| {
                        let mut buf = [0u8; WIRE_NAME_MAX];
                        let len = lower_wire(&name, &mut buf)?;
                        Some((Box::from(&buf[..len]), zone, node))
                    })
                    .collect(),
            ),
            origins,
            negative_soa,
            regions,
            chaos: chaos_records(plan),
        }
    }

    /// What lives at `name`, if it exists in our zones.
    pub fn node(&self, name: &Name) -> Option<(ZoneId, Node<'_>)> {
        let mut buf = [0u8; WIRE_NAME_MAX];
        let len = lower_wire(name, &mut buf)?;
        self.nodes.get(&buf[..len])
    }

    /// What lives at the name whose wire form in lower case is `wire` (its final zero
    /// octet included).
    pub fn node_wire(&self, wire: &[u8]) -> Option<(ZoneId, Node<'_>)> {
        self.nodes.get(wire)
    }

    /// Zone `z`'s SOA with the negative TTL (RFC 2308 §3).
    pub fn negative_soa(&self, z: ZoneId) -> &Record {
        &self.negative_soa[z.index()]
    }

    /// The zone that contains `name`, if any (longest match).
    pub fn zone_of(&self, name: &LowerName) -> Option<ZoneId> {
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

/// The longest name in wire form (RFC 1035 §3.1), final zero octet included.
pub const WIRE_NAME_MAX: usize = 255;

/// `name` in wire form and lower case (ASCII, as DNS compares names: RFC 4343), into
/// `buf`; its length, or `None` for a name longer than a name can be.
pub fn lower_wire(name: &Name, buf: &mut [u8; WIRE_NAME_MAX]) -> Option<usize> {
    let mut at = 0;
    for label in name.iter() {
        let end = at + 1 + label.len();
        if end >= WIRE_NAME_MAX {
            return None;
        }
        buf[at] = label.len() as u8;
        for (to, from) in buf[at + 1..end].iter_mut().zip(label) {
            *to = from.to_ascii_lowercase();
        }
        at = end;
    }
    buf[at] = 0;
    Some(at + 1)
}

/// One consistent view: plan, health, overrides, and the tables derived from them.
#[derive(Debug)]
pub struct Snapshot {
    pub plan: Arc<Plan>,
    pub zones: Arc<Zones>,
    pub metrics: Arc<PlanMetrics>,
    /// Shared with the snapshot before when a change left a service as it was.
    pub services: Vec<Arc<ServiceTable>>,
    /// The probe state of each `plan.targets` entry, for `/v1/state` (live details:
    /// last result, timings). Empty in snapshots built without a health engine.
    pub probes: Arc<[Arc<TargetState>]>,
    /// The operator overrides the tables were built with.
    pub overrides: Overrides,
    /// With `[cluster]`: every replica's verdicts the health came from.
    pub votes: Option<Arc<Votes>>,
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
        Snapshot::rebuild(None, plan, zones, metrics, health, overrides).0
    }

    /// `build`, sharing each table of `prev` (when it is a snapshot of the same plan)
    /// whose endpoints the change left as they were: a probe flip or a drain rebuilds
    /// only the services that depend on it, however many there are. Also returns the
    /// services it built afresh.
    pub fn rebuild(
        prev: Option<&Snapshot>,
        plan: Arc<Plan>,
        zones: Arc<Zones>,
        metrics: Arc<PlanMetrics>,
        health: &[bool],
        overrides: &Overrides,
    ) -> (Snapshot, Vec<ServiceId>) {
        assert_eq!(health.len(), plan.targets.len());
        let prev = prev.filter(|p| Arc::ptr_eq(&p.plan, &plan));
        let mut built = Vec::new();
        let mut views: Vec<EndpointView> = Vec::new();
        let services = ServiceId::all(plan.services.len())
            .zip(&plan.services)
            .map(|(si, svc)| {
                // The service's name is only needed to look up its overrides.
                let service_name = (!overrides.is_empty()).then(|| svc.name.to_string());
                views.clear();
                views.extend(svc.endpoints.iter().map(|e| EndpointView {
                    probe_up: e.target().is_none_or(|t| health[t.index()]),
                    admin:
                        service_name.as_ref().and_then(|name| {
                            overrides.effective(name, &plan.gateways[e.gateway].name)
                        }),
                }));
                if let Some(table) = prev.map(|p| &p.services[si.index()])
                    && *table.endpoints == *views
                {
                    return table.clone();
                }
                built.push(si);
                Arc::new(ServiceTable::build(&plan, svc, views.clone()))
            })
            .collect();
        let snap = Snapshot {
            plan,
            zones,
            metrics,
            services,
            probes: Arc::new([]),
            overrides: overrides.clone(),
            votes: None,
        };
        (snap, built)
    }

    /// With the probe states the verdicts came from (`/v1/state` shows their details).
    pub fn with_probes(mut self, probes: Arc<[Arc<TargetState>]>) -> Snapshot {
        self.probes = probes;
        self
    }

    /// With the replicas' verdicts the health was combined from.
    pub fn with_votes(mut self, votes: Option<Arc<Votes>>) -> Snapshot {
        self.votes = votes;
        self
    }

    /// The answer decision for service `s` and `client` (see `answer::decide`).
    pub fn decide(&self, s: ServiceId, client: Client) -> Decided<'_> {
        answer::decide(
            &self.zones.regions,
            &self.plan.services[s],
            &self.services[s],
            client,
        )
    }
}

fn chaos_records(plan: &Plan) -> HashMap<LowerName, Record> {
    use hickory_proto::rr::rdata::TXT;
    use hickory_proto::rr::{DNSClass, Name, RData};
    let names = [
        ("id.server.", &plan.server.nsid),
        ("hostname.bind.", &plan.server.nsid),
        ("version.server.", &plan.server.version),
        ("version.bind.", &plan.server.version),
    ];
    names
        .into_iter()
        .filter_map(|(name, text)| {
            let name = Name::from_ascii(name).expect("a valid name");
            let mut r =
                Record::from_rdata(name.clone(), 0, RData::TXT(TXT::new(vec![text.clone()?])));
            r.dns_class = DNSClass::CH;
            Some((LowerName::new(&name), r))
        })
        .collect()
}

/// The published state: one `ArcSwap` holding the current snapshot.
pub type Shared = Arc<ArcSwap<Snapshot>>;

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::metrics::Metrics;

    /// A flip rebuilds only the services that follow the flipped target; every other
    /// table is the previous snapshot's own, and the result equals a build from scratch.
    #[test]
    fn a_flip_rebuilds_only_what_depends_on_it() {
        let plan = Arc::new(
            crate::config::parse(
                Path::new("<test>"),
                r#"
[[zone]]
origin = "gslb.test"
ns = [{ name = "ns1", addresses = ["192.0.2.53"] }]
[[check]]
name = "hc"
kind = "tcp"
port = 80
[[gateway]]
name = "a"
addresses = ["192.0.2.1"]
[[gateway]]
name = "b"
addresses = ["192.0.2.2"]
[[gateway]]
name = "c"
addresses = ["192.0.2.3"]
[[service]]
name = "ab.gslb.test"
check = "hc"
endpoints = [{ gateway = "a" }, { gateway = "b" }]
[[service]]
name = "bc.gslb.test"
check = "hc"
endpoints = [{ gateway = "b" }, { gateway = "c" }]
[[service]]
name = "c.gslb.test"
check = "hc"
endpoints = [{ gateway = "c" }]
"#,
            )
            .unwrap(),
        );
        let metrics = Arc::new(Metrics::new().for_plan(&plan));
        let zones = Arc::new(Zones::build(&plan));
        let none = Overrides::default();
        let up = vec![true; plan.targets.len()];
        let first = Snapshot::build(plan.clone(), zones.clone(), metrics.clone(), &up, &none);
        let a = plan
            .targets
            .iter()
            .position(|t| t.gateways == [crate::plan::GatewayId(0)])
            .unwrap();
        let mut flipped = up.clone();
        flipped[a] = false;
        let (next, built) = Snapshot::rebuild(
            Some(&first),
            plan.clone(),
            zones.clone(),
            metrics.clone(),
            &flipped,
            &none,
        );
        assert_eq!(built, [ServiceId(0)]);
        assert!(!Arc::ptr_eq(&first.services[0], &next.services[0]));
        assert!(Arc::ptr_eq(&first.services[1], &next.services[1]));
        assert!(Arc::ptr_eq(&first.services[2], &next.services[2]));
        let fresh = Snapshot::build(
            plan.clone(),
            zones.clone(),
            metrics.clone(),
            &flipped,
            &none,
        );
        for (x, y) in next.services.iter().zip(&fresh.services) {
            assert_eq!(format!("{x:?}"), format!("{y:?}"));
        }
        // A drain of c touches the two services c is in.
        let mut drained = Overrides::default();
        drained.set(
            &crate::overrides::Scope::Gateway("c".into()),
            Some(crate::overrides::AdminState::Drain),
        );
        let (_, built) = Snapshot::rebuild(
            Some(&next),
            plan.clone(),
            zones,
            metrics,
            &flipped,
            &drained,
        );
        assert_eq!(built, [ServiceId(1), ServiceId(2)]);
    }
}
