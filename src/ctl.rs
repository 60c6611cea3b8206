//! `gslb ctl`: the admin API from the command line, in the style of `gdnsdctl` and
//! `knotc`, so an operator at 3 a.m. needs neither curl nor jq. One blocking HTTP/1.1
//! request per call over a plain TCP connection to the admin listener; the reply's JSON
//! is printed as it came, and a refused call is an error with the server's reason.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// What to ask the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    State,
    Reload,
    /// `path` is one of the override calls (`/v1/drain`, ...).
    Override {
        path: &'static str,
        gateway: String,
        service: Option<String>,
    },
}

/// A refused or failed call.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("cannot reach the admin listener at {addr}: {why}")]
    Connect {
        addr: SocketAddr,
        why: std::io::Error,
    },
    #[error("the admin listener at {addr} sent no HTTP reply")]
    NoReply { addr: SocketAddr },
    #[error("{status}: {message}")]
    Refused { status: u16, message: String },
}

/// Percent-encodes a query value.
fn encode(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

impl Call {
    fn request_line(&self) -> (&'static str, String) {
        match self {
            Call::State => ("GET", "/v1/state".into()),
            Call::Reload => ("POST", "/v1/reload".into()),
            Call::Override {
                path,
                gateway,
                service,
            } => {
                let mut target = format!("{path}?gateway={}", encode(gateway));
                if let Some(s) = service {
                    target.push_str(&format!("&service={}", encode(s)));
                }
                ("POST", target)
            }
        }
    }
}

/// Sends `call` to the admin listener at `addr` (an unspecified address means this
/// host's loopback) and returns the reply's body on a 2xx status.
pub fn send(addr: SocketAddr, token: Option<&str>, call: &Call) -> Result<String, CtlError> {
    let addr = if addr.ip().is_unspecified() {
        let lo = if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        SocketAddr::new(lo, addr.port())
    } else {
        addr
    };
    let connect = |why| CtlError::Connect { addr, why };
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(connect)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(connect)?;
    let (method, target) = call.request_line();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if method == "POST" {
        req.push_str("Content-Length: 0\r\n");
    }
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).map_err(connect)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(connect)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or(CtlError::NoReply { addr })?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or(CtlError::NoReply { addr })?;
    // The admin API never sends chunked bodies (its replies have a Content-Length).
    if (200..300).contains(&status) {
        return Ok(body.to_string());
    }
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(String::from))
        .unwrap_or_else(|| body.trim().to_string());
    Err(CtlError::Refused { status, message })
}
