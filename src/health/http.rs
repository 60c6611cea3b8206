//! `http` probe: one request with the configured method, path, Host and headers; the
//! check passes when the status is accepted and, if asked, the body contains a string
//! within the first `body_limit` bytes. A fresh connection per probe (no pooling), so a
//! target whose listener went away is noticed at once.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::header::{HOST, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, Url};

use super::{ProbeError, describe_io};
use crate::plan::{Check, CheckKind, HttpCheck};

/// A prepared probe for one target: the client, URL and headers are built once.
pub struct HttpProbe {
    client: Client,
    method: Method,
    url: Url,
    headers: HeaderMap,
    spec: Arc<HttpSpec>,
}

/// The parts of the check the response is judged by.
struct HttpSpec {
    expect_status: Vec<std::ops::RangeInclusive<u16>>,
    expect_body: Option<Vec<u8>>,
    body_limit: usize,
}

impl HttpProbe {
    pub fn new(addr: SocketAddr, check: &Check, user_agent: &str) -> Result<HttpProbe, String> {
        let CheckKind::Http(http) = &check.kind else {
            return Err("not an http check".into());
        };
        let url = Url::parse(&format!("http://{addr}{}", http.path))
            .map_err(|e| format!("cannot form URL: {e}"))?;
        let client = Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(user_agent)
            .build()
            .map_err(|e| format!("cannot build HTTP client: {e}"))?;
        Ok(HttpProbe {
            client,
            method: Method::from_bytes(http.method.as_bytes()).map_err(|e| e.to_string())?,
            url,
            headers: headers(http)?,
            spec: Arc::new(HttpSpec {
                expect_status: http.expect_status.clone(),
                expect_body: http.expect_body.as_ref().map(|b| b.as_bytes().to_vec()),
                body_limit: http.body_limit,
            }),
        })
    }

    pub async fn probe(&self) -> Result<(), ProbeError> {
        let mut resp = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone())
            .send()
            .await
            .map_err(|e| ProbeError(describe_reqwest(&e)))?;
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
                        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                        if let Some(needle) = &spec.expect_body
                            && status_ok
                            && contains(&body, needle)
                        {
                            return Ok(());
                        }
                    }
                    Ok(None) => break,
                    Err(e) if status_ok => {
                        return Err(ProbeError(format!(
                            "http {status} body read failed: {}",
                            describe_reqwest(&e)
                        )));
                    }
                    Err(_) => break,
                }
            }
        }
        if !status_ok {
            return Err(ProbeError(format!("http {status} {:?}", snippet(&body))));
        }
        match &spec.expect_body {
            Some(needle) if !contains(&body, needle) => Err(ProbeError(format!(
                "http {status} body lacks {:?} in its first {} bytes",
                String::from_utf8_lossy(needle),
                spec.body_limit
            ))),
            _ => Ok(()),
        }
    }
}

fn headers(http: &HttpCheck) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    if let Some(host) = &http.host {
        map.insert(
            HOST,
            HeaderValue::from_str(host).map_err(|e| e.to_string())?,
        );
    }
    for (k, v) in &http.headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?;
        map.append(name, HeaderValue::from_str(v).map_err(|e| e.to_string())?);
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

fn describe_reqwest(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timeout".into();
    }
    // Find the I/O error underneath hyper, if any, for a precise reason.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return describe_io(if e.is_connect() { "connect" } else { "http" }, io);
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
    msg
}
