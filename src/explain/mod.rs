//! The decision trace behind an answer: which name and zone, how the client was
//! placed, which endpoints were candidates with their health, admin state and weight,
//! each one's share of answers, and what can be answered. Used by `gslb explain` and
//! by the admin API's `/v1/explain`; it reads a snapshot and changes nothing.

mod render;

use std::net::IpAddr;

use hickory_proto::rr::{LowerName, Name};

use crate::answer::{Affinity, Client, Decided, Decision, Family, Pool};
use crate::cluster::up_down;
use crate::plan::{EndpointId, Net, NetError, Selection, ServiceId, ZoneId};
use crate::snapshot::{Node, Snapshot};

/// Why a question cannot be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("ECS {0}")]
    Ecs(#[from] NetError),
    #[error("invalid name {name:?}: {why}")]
    Name { name: String, why: String },
}

pub struct Explanation {
    pub name: String,
    pub client: IpAddr,
    pub ecs: Option<(IpAddr, u8)>,
    /// The client's region and the network that placed it, when regions exist.
    pub placement: Option<(String, Net)>,
    pub verdict: Verdict,
}

pub enum Verdict {
    Refused,
    NxDomain { zone: String },
    EmptyNonTerminal { zone: String },
    Static { zone: String, records: Vec<String> },
    Service(ServiceTrace),
}

pub struct ServiceTrace {
    pub zone: String,
    pub service: String,
    pub ttl: u32,
    pub answers: usize,
    pub locality: bool,
    pub overprovisioning: Option<f64>,
    pub panic: bool,
    pub ecs_scope: u8,
    /// The client's region chain with each region's enabled and healthy weight and the
    /// share of load it takes (IPv4 endpoints; empty without locality or region).
    pub chain: Vec<ChainStep>,
    pub endpoints: Vec<EndpointTrace>,
    pub families: Vec<FamilyTrace>,
}

pub struct ChainStep {
    pub region: String,
    pub total: u64,
    pub healthy: u64,
    pub load: f64,
}

pub struct EndpointTrace {
    pub gateway: String,
    pub region: Option<String>,
    pub addresses: Vec<String>,
    pub weight: u32,
    pub health: &'static str,
    pub admin: Option<&'static str>,
    pub ready: bool,
    /// With `[cluster]`, when the replicas' quorum and not this replica's probe decided
    /// the health: how.
    pub quorum: Option<String>,
}

pub struct FamilyTrace {
    pub qtype: &'static str,
    pub decision: Decision,
    /// (gateway, its region, weight in the draw, share of answers in 0..=1)
    pub candidates: Vec<(String, Option<String>, u64, f64)>,
    /// The candidates (by index) an answer of several endpoints is drawn from: one
    /// group per region of a spillover chain, else one group.
    pub groups: Vec<std::ops::Range<usize>>,
    /// With `selection = "consistent"`: the gateways this client gets, in order (the
    /// same on every replica while the candidates stay).
    pub consistent: Option<Vec<String>>,
}

/// Parses `203.0.113.0/24` (host bits must be zero, as RFC 7871 §6 requires of the
/// address a client sends).
pub fn parse_ecs(s: &str) -> Result<(IpAddr, u8), ExplainError> {
    Ok(Net::parse(s).map(|n| (n.addr(), n.prefix()))?)
}

pub fn explain(
    snap: &Snapshot,
    name: &str,
    client: IpAddr,
    ecs: Option<&str>,
) -> Result<Explanation, ExplainError> {
    let ecs = ecs.map(parse_ecs).transpose()?;
    let parsed = Name::from_ascii(name).map_err(|e| ExplainError::Name {
        name: name.to_string(),
        why: e.to_string(),
    })?;
    let mut fqdn = parsed.to_lowercase();
    fqdn.set_fqdn(true);
    let lower = LowerName::new(&fqdn);
    // The DNS front's own rules: the same client address, placement and decision.
    let asking = Client::new(client, ecs);
    let placement = asking.place(&snap.zones.regions);
    let zone_name = |z: ZoneId| snap.plan.zones[z].origin.to_string();
    let verdict = match snap.zones.node(&lower) {
        None => match snap.zones.zone_of(&lower) {
            Some(z) => Verdict::NxDomain { zone: zone_name(z) },
            None => Verdict::Refused,
        },
        Some((z, Node::EmptyNonTerminal)) => Verdict::EmptyNonTerminal { zone: zone_name(z) },
        Some((z, Node::Static(by_type))) => Verdict::Static {
            zone: zone_name(z),
            records: by_type
                .iter()
                .flat_map(|(_, v)| v.iter().map(|r| r.to_string()))
                .collect(),
        },
        Some((z, Node::Service(s))) => Verdict::Service(trace_service(
            snap,
            z,
            s,
            &snap.decide(s, asking),
            Affinity::of(client, ecs),
        )),
    };
    Ok(Explanation {
        name: fqdn.to_string(),
        client,
        ecs,
        placement: placement.map(|p| (snap.plan.regions[p.region].name.clone(), p.net)),
        verdict,
    })
}

/// "the quorum (majority) decided: this replica's probe says down; ns1 up, ns3 up",
/// when the combined verdict on `target` is not this replica's own.
fn quorum_note(snap: &Snapshot, target: Option<crate::plan::TargetId>) -> Option<String> {
    let votes = snap.votes.as_ref()?;
    let tv = votes.targets.get(target?.index())?;
    if !tv.overruled() {
        return None;
    }
    Some(format!(
        "the quorum ({}) decided {}: this replica's probe says {}{}; {}",
        votes.quorum.describe(),
        up_down(tv.combined),
        up_down(tv.own),
        if votes.fenced {
            " (this replica is fenced)"
        } else {
            ""
        },
        tv.describe_others()
    ))
}

fn trace_service(
    snap: &Snapshot,
    zone: ZoneId,
    s: ServiceId,
    decided: &Decided<'_>,
    affinity: Affinity,
) -> ServiceTrace {
    let plan = &snap.plan;
    let svc = &plan.services[s];
    let table = &snap.services[s];
    let endpoints = EndpointId::all(svc.endpoints.len())
        .zip(&svc.endpoints)
        .map(|(ei, e)| {
            let gw = &plan.gateways[e.gateway];
            let view = table.endpoints[ei];
            EndpointTrace {
                gateway: gw.name.clone(),
                region: gw.region.clone(),
                addresses: gw
                    .v4
                    .iter()
                    .map(|a| a.to_string())
                    .chain(gw.v6.iter().map(|a| a.to_string()))
                    .collect(),
                weight: e.weight,
                health: match (e.target(), view.probe_up) {
                    (None, _) => "unchecked",
                    (Some(_), true) => "up",
                    (Some(_), false) => "down",
                },
                admin: view.admin.map(|a| a.as_str()),
                ready: view.ready(),
                quorum: quorum_note(snap, e.target()),
            }
        })
        .collect();
    // The chain the decision weighed (the A pool's, or the AAAA pool's when the service
    // has no IPv4 address).
    let (v4, v6) = (decided.pool(Family::V4), decided.pool(Family::V6));
    let weighed = if v4.decision == Decision::NoAddresses {
        v6
    } else {
        v4
    };
    let chain = weighed
        .chain()
        .iter()
        .map(|c| ChainStep {
            region: plan.regions[c.region].name.clone(),
            total: c.capacity.total,
            healthy: c.capacity.healthy,
            load: c.load,
        })
        .collect();
    let family = |qtype: &'static str, pool: &Pool| FamilyTrace {
        qtype,
        decision: pool.decision,
        candidates: pool
            .candidates
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let gw = &plan.gateways[svc.endpoints[c.endpoint].gateway];
                (
                    gw.name.clone(),
                    gw.region.clone(),
                    pool.weight(i),
                    pool.share(i),
                )
            })
            .collect(),
        groups: pool.groups().collect(),
        consistent: (svc.selection == Selection::Consistent).then(|| {
            let mut got = Vec::new();
            pool.draw_keyed(svc.answers, affinity.key, |i| {
                got.push(
                    plan.gateways[svc.endpoints[pool.candidates[i].endpoint].gateway]
                        .name
                        .clone(),
                )
            });
            got
        }),
    };
    // As the DNS front does: a consistent answer depends on the client's ECS prefix.
    let keyed_scope = if svc.selection == Selection::Consistent {
        affinity.scope_over(v4).max(affinity.scope_over(v6))
    } else {
        0
    };
    ServiceTrace {
        zone: plan.zones[zone].origin.to_string(),
        service: svc.name.to_string(),
        ttl: svc.ttl,
        answers: svc.answers,
        locality: svc.locality,
        overprovisioning: svc.overprovisioning(),
        panic: decided.panic,
        ecs_scope: decided.scope.max(keyed_scope),
        chain,
        endpoints,
        families: vec![family("A", v4), family("AAAA", v6)],
    }
}

#[cfg(test)]
mod tests {
    use super::parse_ecs;

    #[test]
    fn ecs_must_be_a_clean_prefix() {
        assert!(parse_ecs("203.0.113.0/24").is_ok());
        assert!(parse_ecs("2001:db8::/32").is_ok());
        assert!(parse_ecs("203.0.113.7/24").is_err());
        assert!(parse_ecs("203.0.113.0/33").is_err());
        assert!(parse_ecs("203.0.113.0").is_err());
    }
}
