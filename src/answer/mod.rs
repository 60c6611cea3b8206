//! The answer policy, in one place: where a client is, which endpoints may answer it
//! (ready, fail-open, panic, its region chain and the spillover loads), with what share,
//! and the ECS scope of the reply. Pure functions over plan data and precomputed
//! tables; no I/O, no locks.
//!
//! - `locality`: placement (prefix trie), ECS scope, spillover loads;
//! - `table`: per service and health state, the candidate pools of every kind of
//!   client, built once per snapshot;
//! - `pool`: the weighted draw of one answer;
//! - `decide`: the one decision for a (service, client), read by the DNS handler,
//!   `explain`, `/v1/explain`, `/v1/state` and the property tests.

pub mod affinity;
pub mod locality;
mod pool;
mod table;

use std::net::IpAddr;

use hickory_proto::rr::RecordType;

pub use affinity::Affinity;
pub use locality::{Capacity, Placement, RegionIndex};
pub use pool::{Candidate, ChainStep, Decision, Pool};
pub use table::{EndpointView, ServiceTable, Slot};

use crate::plan::{EndpointId, Plan, Service};

/// An address family of answers: A or AAAA records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The family a query type is answered from: A (and ANY, RFC 8482's minimal
    /// answer) from IPv4 endpoints, AAAA from IPv6 ones; other types have no data at a
    /// service name.
    pub fn of(qtype: RecordType) -> Option<Family> {
        match qtype {
            RecordType::A | RecordType::ANY => Some(Family::V4),
            RecordType::AAAA => Some(Family::V6),
            _ => None,
        }
    }
}

/// The addresses an answer from endpoint `e` of `svc` carries: every address of its
/// gateway in family `fam`, in the order the config lists them. The tables keep no
/// copy of them: both DNS paths read them from the plan when they write the answer.
pub fn addresses<'p>(
    plan: &'p Plan,
    svc: &Service,
    e: EndpointId,
    fam: Family,
) -> impl Iterator<Item = IpAddr> + 'p {
    let gw = &plan.gateways[svc.endpoints[e].gateway];
    let (v4, v6): (&[std::net::Ipv4Addr], &[std::net::Ipv6Addr]) = match fam {
        Family::V4 => (&gw.v4, &[]),
        Family::V6 => (&[], &gw.v6),
    };
    v4.iter()
        .map(|&a| IpAddr::V4(a))
        .chain(v6.iter().map(|&a| IpAddr::V6(a)))
}

/// The address that places a client: the ECS address when the query carries one (RFC
/// 7871 §7.1.1), else the resolver's own. `None` when ECS says "no client information"
/// (SOURCE PREFIX-LENGTH 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client(pub Option<IpAddr>);

impl Client {
    /// `ecs` is the option's (address, source prefix length), if present.
    pub fn new(source: IpAddr, ecs: Option<(IpAddr, u8)>) -> Client {
        match ecs {
            Some((_, 0)) => Client(None),
            Some((addr, _)) => Client(Some(addr)),
            None => Client(Some(source)),
        }
    }

    /// Where the client is, whatever the service.
    pub fn place(self, regions: &RegionIndex) -> Option<Placement> {
        self.0.and_then(|ip| regions.place(ip))
    }
}

/// The decision for one (service, client): everything an answer depends on. The
/// candidates, their shares, the decision (healthy, fail-open, panic, ...) and the region
/// chain behind them are in `pool(family)`.
#[derive(Debug, Clone, Copy)]
pub struct Decided<'a> {
    /// Where the client was placed; `None` in no region, or when the service does not
    /// use locality (the answer does not depend on the client).
    pub placement: Option<Placement>,
    /// ECS SCOPE PREFIX-LENGTH of the reply (RFC 7871 §7.2.1): the prefix the answer is
    /// valid for; 0 when it did not depend on the client.
    pub scope: u8,
    /// Healthy weight is below the panic threshold: answering as if all were healthy.
    pub panic: bool,
    slot: &'a Slot,
}

impl<'a> Decided<'a> {
    pub fn pool(&self, family: Family) -> &'a Pool {
        match family {
            Family::V4 => &self.slot.v4,
            Family::V6 => &self.slot.v6,
        }
    }
}

/// The one answer decision: `table` is `svc`'s table in the snapshot, `regions` the
/// snapshot's region index.
pub fn decide<'a>(
    regions: &RegionIndex,
    svc: &Service,
    table: &'a ServiceTable,
    client: Client,
) -> Decided<'a> {
    // Place the client only when the answer depends on it.
    let (placement, scope) = match (svc.locality, client.0) {
        (false, _) | (true, None) => (None, 0),
        (true, Some(ip)) => match regions.place(ip) {
            // RFC 7871 §7.2.1: see `locality::scope` and `scope_outside`.
            Some(p) => (Some(p), p.scope),
            None => (None, regions.scope_outside(ip)),
        },
    };
    Decided {
        placement,
        scope,
        panic: table.panic,
        slot: table.slot(placement.map(|p| p.region)),
    }
}
