//! Rendering an explanation: the text `gslb explain` prints and the JSON of
//! `/v1/explain`.

use std::fmt::{self, Write as _};

use serde_json::{Value, json};

use super::{Explanation, Verdict};
use crate::answer::Decision;

fn decision_text(d: Decision) -> &'static str {
    match d {
        Decision::Healthy => "healthy endpoints, by weight",
        Decision::FailOpen => "FAIL-OPEN: nothing healthy, answering as if all were",
        Decision::Panic => {
            "PANIC: healthy share below the panic threshold, answering as if all were healthy"
        }
        Decision::FailClosed => "FAIL-CLOSED: nothing healthy, answering NODATA",
        Decision::NoAddresses => "no endpoint has an address of this family: NODATA",
    }
}

impl Explanation {
    /// Where the client was placed, and what that means for this name.
    fn client_text(&self) -> String {
        let by = match self.ecs {
            Some((a, 0)) => format!("ECS {a}/0 (no client information)"),
            Some((a, p)) => format!("ECS {a}/{p}"),
            None => format!("source address {}", self.client),
        };
        let place = match &self.placement {
            Some((region, net)) => format!("region {region} (matched {net})"),
            None => "in no region".to_string(),
        };
        match &self.verdict {
            Verdict::Service(t) if !t.locality => {
                format!("{by}: {place}; this service does not use locality (ECS scope 0)")
            }
            Verdict::Service(t) if self.placement.is_none() => format!(
                "{by}: {place}; all healthy endpoints by weight (ECS scope {})",
                t.ecs_scope
            ),
            Verdict::Service(t) => format!("{by}: {place} (ECS scope {})", t.ecs_scope),
            _ => format!("{by}: {place}"),
        }
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
                "locality": t.locality,
                "overprovisioning": t.overprovisioning,
                "panic": t.panic,
                "chain": t.chain.iter().map(|c| json!({
                    "region": c.region,
                    "enabled_weight": c.total,
                    "healthy_weight": c.healthy,
                    "load": c.load,
                })).collect::<Vec<_>>(),
                "endpoints": t.endpoints.iter().map(|e| json!({
                    "gateway": e.gateway,
                    "region": e.region,
                    "addresses": e.addresses,
                    "weight": e.weight,
                    "health": e.health,
                    "admin": e.admin,
                    "ready": e.ready,
                    "quorum": e.quorum,
                })).collect::<Vec<_>>(),
                "families": t.families.iter().map(|f| json!({
                    "qtype": f.qtype,
                    "decision": format!("{:?}", f.decision),
                    "why": decision_text(f.decision),
                    "candidates": f.candidates.iter().map(|(g, region, w, share)| json!({
                        "gateway": g, "region": region, "weight": w, "share": share,
                    })).collect::<Vec<_>>(),
                    // An answer of several endpoints holds endpoints of one group only.
                    "answer_groups": f.groups.iter().map(|r| {
                        f.candidates[r.clone()].iter().map(|c| c.0.clone()).collect::<Vec<_>>()
                    }).collect::<Vec<_>>(),
                    "consistent_answer": f.consistent,
                })).collect::<Vec<_>>(),
            }),
        };
        json!({
            "name": self.name,
            "client": self.client.to_string(),
            "ecs": self.ecs.map(|(a, p)| format!("{a}/{p}")),
            "client_region": self.placement.as_ref().map(|(r, _)| r.clone()),
            "client_network": self.placement.as_ref().map(|(_, n)| n.to_string()),
            "client_placement": self.client_text(),
            "ecs_scope": match &self.verdict {
                Verdict::Service(t) => t.ecs_scope,
                _ => 0,
            },
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
                if t.panic {
                    writeln!(f, "PANIC: healthy weight is below the panic threshold")?;
                }
                if !t.chain.is_empty() {
                    let mode = match t.overprovisioning {
                        Some(x) => format!("spillover, overprovisioning factor {x}"),
                        None => "all-or-nothing failover".to_string(),
                    };
                    writeln!(f, "region chain ({mode}):")?;
                    for c in &t.chain {
                        writeln!(
                            f,
                            "  {:<20} healthy weight {}/{}  load {:5.1}%",
                            c.region,
                            c.healthy,
                            c.total,
                            c.load * 100.0
                        )?;
                    }
                }
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
                    if let Some(q) = &e.quorum {
                        writeln!(f, "    {q}")?;
                    }
                }
                for fam in &t.families {
                    writeln!(f, "{} answers: {}", fam.qtype, decision_text(fam.decision))?;
                    for (g, _, w, share) in &fam.candidates {
                        writeln!(
                            f,
                            "  {:<20} weight {:<5} share {:5.1}%",
                            g,
                            w,
                            share * 100.0
                        )?;
                    }
                    if let Some(got) = &fam.consistent {
                        writeln!(
                            f,
                            "  selection consistent: this client gets {}",
                            if got.is_empty() {
                                "nothing".to_string()
                            } else {
                                got.join(", ")
                            }
                        )?;
                    }
                }
                Ok(())
            }
        }
    }
}
