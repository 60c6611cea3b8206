//! `http` and `https` probes: one request with the configured method, path, Host and
//! headers; the check passes when the status is accepted and, if asked, the body
//! contains a string within the first `body_limit` bytes. A fresh connection per probe
//! (no pooling), so a target whose listener went away is noticed at once. `https` uses
//! the same verified TLS as the `tls` probe, with SNI = the `sni` setting, else the
//! Host.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::header::{HOST, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, Url};

use super::expiry::ExpiryWatch;
use super::failure::{IoFailure, ProbeFailure, ProbeResult, SetupError, Stage};
use super::tls;
use crate::plan::{Check, HttpCheck, host_name};

/// A prepared probe for one target: the client, URL and headers are built once.
pub struct HttpProbe {
    client: Client,
    method: Method,
    url: Url,
    headers: HeaderMap,
    spec: Arc<HttpSpec>,
    /// The name verified for https (for failure reasons).
    tls_name: String,
    expiry: Option<ExpiryWatch>,
}

/// The parts of the check the response is judged by.
struct HttpSpec {
    expect_status: Vec<std::ops::RangeInclusive<u16>>,
    expect_body: Option<Vec<u8>>,
    body_limit: usize,
}

impl HttpProbe {
    /// `host` is the per-service Host (and SNI) when the check is per-service.
    pub fn new(
        addr: SocketAddr,
        check: &Check,
        host: Option<&str>,
        expiry: Option<ExpiryWatch>,
        configs: &mut tls::ConfigCache,
        source: Option<std::net::IpAddr>,
    ) -> Result<HttpProbe, SetupError> {
        let http = check.kind.http().ok_or(SetupError::NotHttp)?;
        let host = host.or(http.host.as_deref());
        let mut builder = Client::builder()
            .local_address(source)
            .no_proxy()
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(check.user_agent.as_str());
        let mut tls_name = String::new();
        let url = match &check.tls {
            None => {
                builder = builder.use_preconfigured_tls((*tls::plain_http_config()).clone());
                format!("http://{addr}{}", http.path)
            }
            Some(tls) => {
                // SNI: the explicit setting, else the Host without a port.
                let sni = match (tls.sni.as_deref(), host) {
                    (Some(s), _) => Some(s),
                    (None, Some(h)) => Some(host_name(h)?),
                    (None, None) => None,
                };
                let is_dns_name = sni.is_some_and(|n| n.parse::<std::net::IpAddr>().is_err());
                builder = builder
                    .use_preconfigured_tls((*configs.get(tls, true)?).clone())
                    .tls_info(true);
                match sni {
                    Some(name) if is_dns_name => {
                        // Connect to the probe address whatever the name resolves to.
                        builder = builder.resolve(name, addr);
                        tls_name = name.to_string();
                        format!("https://{name}:{}{}", addr.port(), http.path)
                    }
                    _ => {
                        tls_name = addr.ip().to_string();
                        format!("https://{addr}{}", http.path)
                    }
                }
            }
        };
        let url = Url::parse(&url).map_err(|e| SetupError::Url {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let client = builder
            .build()
            .map_err(|e| SetupError::Client(e.to_string()))?;
        Ok(HttpProbe {
            client,
            method: Method::from_bytes(http.method.as_bytes())
                .map_err(|e| SetupError::Request(e.to_string()))?,
            url,
            headers: headers(http, host)?,
            spec: Arc::new(HttpSpec {
                expect_status: http.expect_status.clone(),
                expect_body: http.expect_body.as_ref().map(|b| b.as_bytes().to_vec()),
                body_limit: http.body_limit,
            }),
            tls_name,
            expiry,
        })
    }

    pub async fn probe(&self) -> ProbeResult {
        let mut resp = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone())
            .send()
            .await
            .map_err(|e| self.describe(&e))?;
        if let (Some(watch), Some(info)) = (
            &self.expiry,
            resp.extensions().get::<reqwest::tls::TlsInfo>(),
        ) && let Some(leaf) = info.peer_certificate()
        {
            watch.observe(leaf);
        }
        let status = resp.status().as_u16();
        let spec = &self.spec;
        let status_ok = spec.expect_status.iter().any(|r| r.contains(&status));

        // Read what we need of the body: up to the limit, and no more than that, so an
        // endless body costs us `body_limit` bytes and the timeout at most.
        let want_body = spec.expect_body.is_some() || !status_ok;
        let mut body = Vec::new();
        if want_body {
            let limit = if spec.expect_body.is_some() {
                spec.body_limit
            } else {
                256
            };
            while body.len() < limit {
                match resp.chunk().await {
                    Ok(Some(chunk)) => {
                        let room = limit - body.len();
                        let before = body.len();
                        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                        // Search only what is new (plus the overlap a match could
                        // straddle), so a body trickled in small pieces costs linear
                        // time, not quadratic.
                        if let Some(needle) = &spec.expect_body
                            && status_ok
                            && contains(&body[before.saturating_sub(needle.len())..], needle)
                        {
                            return Ok(());
                        }
                    }
                    Ok(None) => break,
                    Err(e) if status_ok => {
                        return Err(ProbeFailure::BodyRead {
                            status,
                            cause: Box::new(self.describe(&e)),
                        });
                    }
                    Err(_) => break,
                }
            }
        }
        if !status_ok {
            return Err(ProbeFailure::Status {
                status,
                body: snippet(&body),
            });
        }
        match &spec.expect_body {
            Some(needle) if !contains(&body, needle) => Err(ProbeFailure::BodyMismatch {
                status,
                expected: String::from_utf8_lossy(needle).into_owned(),
                limit: spec.body_limit,
            }),
            _ => Ok(()),
        }
    }
}

impl HttpProbe {
    fn describe(&self, e: &reqwest::Error) -> ProbeFailure {
        match tls::tls_error_in(e) {
            Some(t) => tls::describe_tls(t, &self.tls_name).into(),
            None => describe_reqwest(e),
        }
    }
}

fn headers(http: &HttpCheck, host: Option<&str>) -> Result<HeaderMap, SetupError> {
    let bad = |e: &dyn std::fmt::Display| SetupError::Request(e.to_string());
    let mut map = HeaderMap::new();
    if let Some(host) = host {
        map.insert(HOST, HeaderValue::from_str(host).map_err(|e| bad(&e))?);
    }
    for (k, v) in &http.headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| bad(&e))?;
        map.append(name, HeaderValue::from_str(v).map_err(|e| bad(&e))?);
    }
    Ok(map)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// The start of a body, printable, for the reason line.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(80)]);
    text.trim().replace(['\r', '\n'], " ")
}

fn describe_reqwest(e: &reqwest::Error) -> ProbeFailure {
    if e.is_timeout() {
        return ProbeFailure::ClientTimeout;
    }
    // Find the I/O error underneath hyper, if any, for a precise reason.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            let stage = if e.is_connect() {
                Stage::Connect
            } else {
                Stage::Http
            };
            return IoFailure::new(stage, io).into();
        }
        source = s.source();
    }
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    ProbeFailure::Http(msg)
}
