//! The decision trace behind an answer: which name and zone, how the client was
//! placed, which endpoints were candidates with their health, admin state and weight,
//! each one's share of answers, and what can be answered. Used by `gslb explain` and
//! by the admin API's `/v1/explain`; it reads a snapshot and changes nothing.

use std::fmt::{self, Write as _};
use std::net::IpAddr;

use hickory_proto::rr::{LowerName, Name};
use serde_json::{Value, json};

use crate::answer::{Decision, Pool};
use crate::snapshot::{Node, Snapshot};

pub struct Explanation {
    pub name: String,
    pub client: IpAddr,
    pub ecs: Option<(IpAddr, u8)>,
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
    pub endpoints: Vec<EndpointTrace>,
    pub families: Vec<FamilyTrace>,
}

pub struct EndpointTrace {
    pub gateway: String,
    pub region: Option<String>,
    pub addresses: Vec<String>,
    pub weight: u32,
    pub health: &'static str,
    pub admin: Option<&'static str>,
    pub ready: bool,
}

pub struct FamilyTrace {
    pub qtype: &'static str,
    pub decision: Decision,
    /// (gateway, weight, share of answers in 0..=1)
    pub candidates: Vec<(String, u64, f64)>,
}

/// Parses `203.0.113.0/24` (host bits must be zero, as RFC 7871 §6 requires of the
/// address a client sends).
pub fn parse_ecs(s: &str) -> Result<(IpAddr, u8), String> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| format!("ECS {s:?} is not ADDRESS/PREFIX"))?;
    let addr: IpAddr = a
        .parse()
        .map_err(|_| format!("ECS address {a:?} does not parse"))?;
    let prefix: u8 = p
        .parse()
        .map_err(|_| format!("ECS prefix {p:?} is not a number"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(format!("ECS prefix /{prefix} is longer than the address"));
    }
    let bits = match addr {
        IpAddr::V4(v) => u32::from(v) as u128,
        IpAddr::V6(v) => u128::from(v),
    };
    let host_bits = max - prefix;
    if host_bits > 0 && bits & ((1u128 << host_bits) - 1) != 0 {
        return Err(format!("ECS {s} has bits set beyond its prefix"));
    }
    Ok((addr, prefix))
}

pub fn explain(
    snap: &Snapshot,
    name: &str,
    client: IpAddr,
    ecs: Option<&str>,
) -> Result<Explanation, String> {
    let ecs = ecs.map(parse_ecs).transpose()?;
    let parsed = Name::from_ascii(name).map_err(|e| format!("invalid name {name:?}: {e}"))?;
    let mut fqdn = parsed.to_lowercase();
    fqdn.set_fqdn(true);
    let lower = LowerName::new(&fqdn);
    let zone_name = |z: usize| snap.plan.zones[z].origin.to_string();
    let verdict = match snap.zones.nodes.get(&lower) {
        None => match snap.zones.zone_of(&lower) {
            Some(z) => Verdict::NxDomain { zone: zone_name(z) },
            None => Verdict::Refused,
        },
        Some((z, Node::EmptyNonTerminal)) => Verdict::EmptyNonTerminal {
            zone: zone_name(*z),
        },
        Some((z, Node::Static(by_type))) => Verdict::Static {
            zone: zone_name(*z),
            records: by_type
                .iter()
                .flat_map(|(_, v)| v.iter().map(|r| r.to_string()))
                .collect(),
        },
        Some((z, Node::Service(s))) => Verdict::Service(trace_service(snap, *z, *s)),
    };
    Ok(Explanation {
        name: fqdn.to_string(),
        client,
        ecs,
        verdict,
    })
}

fn trace_service(snap: &Snapshot, zone: usize, s: usize) -> ServiceTrace {
    let plan = &snap.plan;
    let svc = &plan.services[s];
    let table = &snap.services[s];
    let endpoints = svc
        .endpoints
        .iter()
        .enumerate()
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
                health: match (e.target, view.probe_up) {
                    (None, _) => "unchecked",
                    (Some(_), true) => "up",
                    (Some(_), false) => "down",
                },
                admin: view.admin.map(|a| a.as_str()),
                ready: view.ready(),
            }
        })
        .collect();
    let family = |qtype: &'static str, pool: &Pool| {
        let total = pool.total_weight() as f64;
        FamilyTrace {
            qtype,
            decision: pool.decision,
            candidates: pool
                .candidates
                .iter()
                .map(|c| {
                    let gw = &plan.gateways[svc.endpoints[c.endpoint].gateway];
                    (
                        gw.name.clone(),
                        c.weight,
                        if total > 0.0 {
                            c.weight as f64 / total
                        } else {
                            0.0
                        },
                    )
                })
                .collect(),
        }
    };
    ServiceTrace {
        zone: plan.zones[zone].origin.to_string(),
        service: svc.name.to_string(),
        ttl: svc.ttl,
        answers: svc.answers,
        endpoints,
        families: vec![family("A", &table.v4), family("AAAA", &table.v6)],
    }
}

fn decision_text(d: Decision) -> &'static str {
    match d {
        Decision::Healthy => "healthy endpoints, by weight",
        Decision::FailOpen => "FAIL-OPEN: nothing healthy, answering as if all were",
        Decision::FailClosed => "FAIL-CLOSED: nothing healthy, answering NODATA",
        Decision::NoAddresses => "no endpoint has an address of this family: NODATA",
    }
}

impl Explanation {
    /// Where the client was placed. No regions are configured yet, so no answer
    /// depends on the client, and the ECS scope would be 0.
    fn client_text(&self) -> String {
        let by = match self.ecs {
            Some((a, p)) => format!("ECS {a}/{p}"),
            None => format!("source address {}", self.client),
        };
        format!(
            "{by}; no regions configured, so the answer does not depend on the client (ECS scope 0)"
        )
    }

    pub fn to_json(&self) -> Value {
        let verdict = match &self.verdict {
            Verdict::Refused => {
                json!({ "result": "REFUSED", "why": "name is outside every zone we serve" })
            }
            Verdict::NxDomain { zone } => json!({ "result": "NXDOMAIN", "zone": zone }),
            Verdict::EmptyNonTerminal { zone } => {
                json!({ "result": "NODATA", "zone": zone, "why": "empty non-terminal" })
            }
            Verdict::Static { zone, records } => {
                json!({ "result": "static", "zone": zone, "records": records })
            }
            Verdict::Service(t) => json!({
                "result": "service",
                "zone": t.zone,
                "service": t.service,
                "ttl": t.ttl,
                "answers_per_response": t.answers,
                "endpoints": t.endpoints.iter().map(|e| json!({
                    "gateway": e.gateway,
                    "region": e.region,
                    "addresses": e.addresses,
                    "weight": e.weight,
                    "health": e.health,
                    "admin": e.admin,
                    "ready": e.ready,
                })).collect::<Vec<_>>(),
                "families": t.families.iter().map(|f| json!({
                    "qtype": f.qtype,
                    "decision": format!("{:?}", f.decision),
                    "why": decision_text(f.decision),
                    "candidates": f.candidates.iter().map(|(g, w, share)| json!({
                        "gateway": g, "weight": w, "share": share,
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            }),
        };
        json!({
            "name": self.name,
            "client": self.client.to_string(),
            "ecs": self.ecs.map(|(a, p)| format!("{a}/{p}")),
            "client_region": Value::Null,
            "client_placement": self.client_text(),
            "ecs_scope": 0,
            "verdict": verdict,
        })
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "name:    {}", self.name)?;
        writeln!(f, "client:  {}", self.client_text())?;
        match &self.verdict {
            Verdict::Refused => writeln!(f, "result:  REFUSED (outside every zone we serve)"),
            Verdict::NxDomain { zone } => writeln!(f, "result:  NXDOMAIN in zone {zone}"),
            Verdict::EmptyNonTerminal { zone } => {
                writeln!(f, "result:  NODATA in zone {zone} (empty non-terminal)")
            }
            Verdict::Static { zone, records } => {
                writeln!(f, "result:  static data in zone {zone}")?;
                for r in records {
                    writeln!(f, "  {r}")?;
                }
                Ok(())
            }
            Verdict::Service(t) => {
                writeln!(
                    f,
                    "result:  service {} in zone {} (ttl {}s, {} per answer)",
                    t.service, t.zone, t.ttl, t.answers
                )?;
                writeln!(f, "endpoints:")?;
                for e in &t.endpoints {
                    let mut line = format!(
                        "  {:<20} region {:<12} weight {:<5} health {:<9}",
                        e.gateway,
                        e.region.as_deref().unwrap_or("-"),
                        e.weight,
                        e.health
                    );
                    if let Some(a) = e.admin {
                        let _ = write!(line, " admin {a}");
                    }
                    let _ = write!(
                        line,
                        " {}  [{}]",
                        if e.ready { "ready" } else { "NOT ready" },
                        e.addresses.join(", ")
                    );
                    writeln!(f, "{line}")?;
                }
                for fam in &t.families {
                    writeln!(f, "{} answers: {}", fam.qtype, decision_text(fam.decision))?;
                    for (g, w, share) in &fam.candidates {
                        writeln!(
                            f,
                            "  {:<20} weight {:<5} share {:5.1}%",
                            g,
                            w,
                            share * 100.0
                        )?;
                    }
                }
                Ok(())
            }
        }
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
