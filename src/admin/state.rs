//! `/v1/state`: every service and endpoint as the published snapshot sees them, with
//! the live details of each probe. Built from one snapshot, without the writer lock, so
//! a scrape of thousands of targets never delays a failover.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::answer::{Client, Family};
use crate::overrides::AdminState;
use crate::plan::{EndpointId, ServiceId};
use crate::snapshot::Snapshot;

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub fn state_json(snap: &Snapshot, ready: bool) -> Value {
    let plan = &snap.plan;
    let services: Vec<Value> = ServiceId::all(plan.services.len())
        .zip(&plan.services)
        .map(|(si, svc)| {
            let table = &snap.services[si];
            let endpoints: Vec<Value> = EndpointId::all(svc.endpoints.len())
                .zip(&svc.endpoints)
                .map(|(ei, e)| {
                    let gw = &plan.gateways[e.gateway];
                    let view = table.endpoints[ei];
                    let probe = e.target().map(|t| {
                        let target = &plan.targets[t];
                        let detail = snap.probes.get(t.index()).map(|s| s.detail());
                        let detail = detail.as_ref();
                        let votes = snap
                            .votes
                            .as_ref()
                            .and_then(|v| Some((v, v.targets.get(t.index())?)));
                        let mut probe = json!({
                            "target": target.addr.to_string(),
                            "check": plan.checks[target.check].name,
                            "up": view.probe_up,
                            "last_result": detail.and_then(|d| d.last.as_ref()).map(|r| match r {
                                Ok(()) => "ok".to_string(),
                                Err(e) => e.to_string(),
                            }),
                            "last_probe_unix": detail.and_then(|d| d.last_probe_at).map(unix),
                            "last_duration_seconds": detail.and_then(|d| d.last_duration).map(|d| d.as_secs_f64()),
                            "changed_unix": detail.and_then(|d| d.changed_at).map(unix),
                        });
                        // With [cluster]: every counted replica's verdict, and whether
                        // the quorum overruled this replica's own probe.
                        if let Some((v, tv)) = votes {
                            let mut by = serde_json::Map::new();
                            if tv.own_counted {
                                by.insert(v.replica.clone(), json!(tv.own));
                            }
                            for (r, up) in &tv.others {
                                by.insert(r.clone(), json!(up));
                            }
                            probe["own_up"] = json!(tv.own);
                            probe["verdicts"] = Value::Object(by);
                            probe["decided_by"] =
                                json!(if tv.overruled() { "quorum" } else { "own probe" });
                        }
                        probe
                    });
                    let addresses: Vec<String> = gw
                        .v4
                        .iter()
                        .map(|a| a.to_string())
                        .chain(gw.v6.iter().map(|a| a.to_string()))
                        .collect();
                    json!({
                        "gateway": gw.name,
                        "region": gw.region,
                        "addresses": addresses,
                        "weight": e.weight,
                        "effective_weight": if table.may_answer(ei) { e.weight } else { 0 },
                        "health": match (e.target(), view.probe_up) {
                            (None, _) => "unchecked",
                            (Some(_), true) => "up",
                            (Some(_), false) => "down",
                        },
                        "admin": view.admin.map(AdminState::as_str),
                        "ready": view.ready(),
                        "probe": probe,
                    })
                })
                .collect();
            // The decision for a client in no region (every client without locality).
            let nowhere = snap.decide(si, Client(None));
            json!({
                "name": svc.name.to_string(),
                "ttl": svc.ttl,
                "answers": svc.answers,
                "decision_v4": format!("{:?}", nowhere.pool(Family::V4).decision),
                "decision_v6": format!("{:?}", nowhere.pool(Family::V6).decision),
                "locality": svc.locality,
                "panic": nowhere.panic,
                "endpoints": endpoints,
            })
        })
        .collect();
    let mut out = json!({
        "config": plan.source.display().to_string(),
        "ready": ready,
        "services": services,
        "overrides": serde_json::to_value(&snap.overrides).unwrap_or(Value::Null),
    });
    if let Some(v) = &snap.votes {
        out["cluster"] = json!({
            "quorum": v.quorum.describe(),
            "alone": v.alone,
            "fenced": v.fenced,
            "live_replicas": v.live,
            "disagreements": v.targets.iter().filter(|t| t.overruled()).count(),
        });
    }
    out
}
