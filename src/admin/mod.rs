//! The admin HTTP listener: `/metrics`, `/livez`, `/readyz`, `/v1/state`,
//! `/v1/explain`, and the override calls (`/v1/drain`, `/v1/undrain`, `/v1/force-up`,
//! `/v1/force-down`). It reads the published snapshot and changes state only through
//! the publisher's two calls, `set_override` and `readiness`; `state.rs` renders
//! `/v1/state`.
//!
//! Mutating calls are POSTs, and requests a browser marks (`Origin`, `Sec-Fetch-Site`)
//! are refused for them; who may call anything at all is `auth.rs` (Host header,
//! bearer token). Every override call is logged.

mod auth;
mod slots;
mod state;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::overrides::{AdminState, OverrideError, Scope};
use crate::plan::AdminSettings;
use crate::publisher::{Change, Publisher};

pub struct Admin {
    publisher: Arc<Publisher>,
    guard: auth::Guard,
}

/// Serves the admin API on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    publisher: Arc<Publisher>,
    settings: AdminSettings,
    shutdown: CancellationToken,
) {
    // A configured token is always enforced; off loopback the config requires one.
    let admin = Arc::new(Admin {
        publisher,
        guard: auth::Guard::new(&settings),
    });
    // The admin listener shares the process's descriptor table with DNS and the
    // probes: bound its connections and how long each may live, so that idle or
    // trickling clients cannot starve those.
    let slots = Arc::new(slots::Slots::default());
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "admin accept");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let slot = match slots.take(peer.ip()) {
            Ok(s) => s,
            Err(full) => {
                debug!(%peer, ?full, "admin connection limit reached; closing");
                continue;
            }
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let svc = service_fn(move |req| {
                let admin = admin.clone();
                // Rendering /metrics or /v1/state for thousands of targets, taking the
                // runtime lock and fsyncing the state file are blocking work: keep them
                // off the threads that serve DNS.
                async move {
                    let resp = tokio::task::spawn_blocking(move || admin.route(req, peer))
                        .await
                        .unwrap_or_else(|_| {
                            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
                        });
                    Ok::<_, Infallible>(resp)
                }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            match tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
                Ok(Err(e)) => debug!(error = %e, "admin connection"),
                Err(_) => debug!(%peer, "admin connection lifetime over; closed"),
                Ok(Ok(())) => {}
            }
        });
    }
}

/// A request's headers must arrive within this.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// No admin connection lives longer than this, however busy.
const CONNECTION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(60);

type Resp = Response<Full<Bytes>>;

fn text(status: StatusCode, body: impl Into<String>) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.into())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, "text/plain; charset=utf-8".parse().unwrap());
    r
}

fn json(status: StatusCode, v: &serde_json::Value) -> Resp {
    let mut body = serde_json::to_string_pretty(v).unwrap_or_default();
    body.push('\n');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, "application/json".parse().unwrap());
    r
}

fn error(status: StatusCode, msg: &str) -> Resp {
    json(status, &serde_json::json!({ "error": msg }))
}

impl Admin {
    fn route(&self, req: Request<Incoming>, peer: SocketAddr) -> Resp {
        let params = query_params(req.uri().query().unwrap_or(""));
        let path = req.uri().path();
        if let Err(refusal) = self.guard.check(req.headers(), path, peer) {
            let status = match refusal {
                auth::Refusal::Host => StatusCode::FORBIDDEN,
                auth::Refusal::Token => StatusCode::UNAUTHORIZED,
            };
            let mut r = error(status, refusal.message());
            if status == StatusCode::UNAUTHORIZED {
                r.headers_mut()
                    .insert(WWW_AUTHENTICATE, "Bearer".parse().unwrap());
            }
            return r;
        }
        match (req.method(), path) {
            (&Method::GET, "/metrics") => {
                let mut r = text(StatusCode::OK, self.publisher.metrics.render());
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8".parse().unwrap(),
                );
                r
            }
            (&Method::GET, "/livez") => text(StatusCode::OK, "ok\n"),
            (&Method::GET, "/readyz") => match self.publisher.readiness() {
                Ok(r) if r.unprobed == 0 => text(StatusCode::OK, "ready\n"),
                Ok(r) => text(
                    StatusCode::OK,
                    format!(
                        "ready: ready_deadline passed with {} of {} targets not yet probed; their endpoints are answered as if healthy\n",
                        r.unprobed, r.total
                    ),
                ),
                Err(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {why}\n"),
                ),
            },
            (&Method::GET, "/v1/state") => {
                let ready = self.publisher.readiness().is_ok();
                let mut v = state::state_json(&self.publisher.shared().load(), ready);
                if let Some(c) = self.publisher.cluster_status() {
                    v["cluster"]["replica"] = c.replica.into();
                    v["cluster"]["store_reachable"] = c.reachable.into();
                    v["cluster"]["overrides_revision"] = c.revision.into();
                }
                json(StatusCode::OK, &v)
            }
            (&Method::GET, "/v1/explain") => {
                let Some(name) = params.get("name") else {
                    return error(StatusCode::BAD_REQUEST, "explain needs ?name=");
                };
                let client = match params.get("client").map(|c| c.parse::<IpAddr>()) {
                    None => peer.ip(),
                    Some(Ok(ip)) => ip,
                    Some(Err(_)) => {
                        return error(StatusCode::BAD_REQUEST, "client is not an IP address");
                    }
                };
                let snap = self.publisher.shared().load();
                let ecs = params.get("ecs").map(String::as_str);
                match crate::explain::explain(&snap, name, client, ecs) {
                    Ok(e) => json(StatusCode::OK, &e.to_json()),
                    Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
                }
            }
            (
                &Method::POST,
                "/v1/drain" | "/v1/undrain" | "/v1/force-up" | "/v1/force-down" | "/v1/reload",
            ) => {
                // Browsers add these to cross-site requests; our clients (curl, scripts,
                // controllers) do not. Refusing them stops a web page from driving the
                // API through a browser on the same host (CSRF, DNS rebinding).
                if req.headers().contains_key("origin")
                    || req.headers().contains_key("sec-fetch-site")
                {
                    warn!(%peer, %path, "admin call refused: sent by a browser");
                    return error(
                        StatusCode::FORBIDDEN,
                        "mutating calls are not accepted from browsers",
                    );
                }
                if path == "/v1/reload" {
                    // Reading the file and starting probes is blocking work; this runs
                    // on the blocking pool already.
                    return match self.publisher.reload() {
                        Ok(()) => {
                            info!(%peer, "admin reload applied");
                            json(StatusCode::OK, &serde_json::json!({ "ok": true }))
                        }
                        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
                    };
                }
                let state = match path {
                    "/v1/drain" => Some(AdminState::Drain),
                    "/v1/force-up" => Some(AdminState::ForceUp),
                    "/v1/force-down" => Some(AdminState::ForceDown),
                    _ => None,
                };
                let scope = match (params.get("gateway"), params.get("service")) {
                    (Some(g), None) => Scope::Gateway(g.clone()),
                    (Some(g), Some(s)) => Scope::Endpoint {
                        service: normalize_service(s),
                        gateway: g.clone(),
                    },
                    _ => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "give ?gateway=NAME, optionally with &service=NAME",
                        );
                    }
                };
                match self.publisher.set_override(&scope, state) {
                    Ok(change) => {
                        if change == Change::Applied {
                            info!(%peer, call = %path, ?scope, "admin override applied");
                        }
                        let now = self.publisher.shared().load();
                        json(StatusCode::OK, &outcome_json(&now.overrides, &scope, state))
                    }
                    Err(e @ OverrideError::Save { .. }) => {
                        error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
                    }
                    Err(e @ OverrideError::Store { .. }) => {
                        error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
                    }
                    Err(e) => error(StatusCode::NOT_FOUND, &e.to_string()),
                }
            }
            (_, "/metrics" | "/livez" | "/readyz" | "/v1/state" | "/v1/explain") => {
                error(StatusCode::METHOD_NOT_ALLOWED, "use GET")
            }
            (_, "/v1/drain" | "/v1/undrain" | "/v1/force-up" | "/v1/force-down" | "/v1/reload") => {
                error(StatusCode::METHOD_NOT_ALLOWED, "use POST")
            }
            _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
        }
    }
}

/// The reply to an override call: what it set on its scope, and what is in force after
/// it, which differs when another scope's override still applies (undraining one
/// endpoint of a drained gateway leaves it drained; the reply must say so).
fn outcome_json(
    overrides: &crate::overrides::Overrides,
    scope: &Scope,
    state: Option<AdminState>,
) -> serde_json::Value {
    let name = |s: Option<AdminState>| s.map_or("none", AdminState::as_str);
    let mut v = serde_json::json!({
        "ok": true,
        "scope": scope_json(scope),
        "state": name(state),
    });
    match scope {
        Scope::Endpoint { service, gateway } => {
            let in_force = overrides.effective(service, gateway);
            v["in_force"] = name(in_force).into();
            if in_force != state {
                v["note"] = format!(
                    "gateway {gateway} is {} as a whole, which applies to this endpoint",
                    name(in_force)
                )
                .into();
            }
        }
        Scope::Gateway(gateway) => {
            v["in_force"] = name(state).into();
            // Endpoint overrides on this gateway still beat the gateway's own.
            let beating: serde_json::Map<String, serde_json::Value> = overrides
                .endpoints
                .iter()
                .filter_map(|(svc, m)| m.get(gateway).map(|s| (svc.clone(), name(Some(*s)).into())))
                .collect();
            if !beating.is_empty() {
                v["endpoint_overrides"] = beating.into();
            }
        }
    }
    v
}

fn scope_json(s: &Scope) -> serde_json::Value {
    match s {
        Scope::Gateway(g) => serde_json::json!({ "gateway": g }),
        Scope::Endpoint { service, gateway } => {
            serde_json::json!({ "service": service, "gateway": gateway })
        }
    }
}

/// Service names are stored as lower-case FQDNs.
fn normalize_service(s: &str) -> String {
    let mut n = s.to_ascii_lowercase();
    if !n.ends_with('.') {
        n.push('.');
    }
    n
}

/// `a=1&b=x%2Fy` → map, percent-decoded, `+` as space (the first of repeated keys).
fn query_params(q: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_query_strings() {
        let p = query_params("name=app.gslb.test&ecs=203.0.113.0%2F24&x=a+b");
        assert_eq!(p["name"], "app.gslb.test");
        assert_eq!(p["ecs"], "203.0.113.0/24");
        assert_eq!(p["x"], "a b");
        assert_eq!(query_params("a=1&a=2&b")["a"], "1");
    }
}
