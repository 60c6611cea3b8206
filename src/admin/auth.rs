//! Who may talk to the admin API. Every request's `Host` must name the listener by an
//! IP address, `localhost`, or one of `[admin] hosts`: a page that rebinds its own DNS
//! name to a loopback address gets its name refused. With a token configured, every
//! endpoint but `/livez` and `/readyz` needs `Authorization: Bearer TOKEN` (the scheme
//! in any case, RFC 9110 §11.1): `/metrics`, `/v1/state` and `/v1/explain` expose probe
//! addresses, target error bodies and the region networks. Refusals are logged at most
//! once per second, with the count of those left out, so a flood cannot fill the log.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::HeaderMap;
use hyper::header::{AUTHORIZATION, HOST};
use tracing::warn;

use crate::plan::AdminSettings;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The `Host` header names something other than this listener.
    Host,
    /// No bearer token, or the wrong one.
    Token,
}

impl Refusal {
    pub(super) fn message(self) -> &'static str {
        match self {
            Refusal::Host => {
                "Host header must be the listener's address, localhost, or one of [admin] hosts"
            }
            Refusal::Token => "this call needs Authorization: Bearer <token>",
        }
    }
}

pub(super) struct Guard {
    token: Option<String>,
    hosts: Vec<String>,
    /// When a refusal was last logged, and how many were not logged since.
    log: Mutex<(Option<Instant>, u64)>,
}

/// Refusals are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(1);

impl Guard {
    pub(super) fn new(settings: &AdminSettings) -> Guard {
        Guard {
            token: settings.token.clone(),
            hosts: settings
                .hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            log: Mutex::new((None, 0)),
        }
    }

    /// `Ok` when the request may proceed to `path`.
    pub(super) fn check(
        &self,
        headers: &HeaderMap,
        path: &str,
        peer: SocketAddr,
    ) -> Result<(), Refusal> {
        let host = headers.get(HOST).and_then(|v| v.to_str().ok());
        // HTTP/1.0 clients may omit Host; browsers always send it.
        if let Some(h) = host
            && !host_allowed(h, &self.hosts)
        {
            self.refused(peer, path, Refusal::Host);
            return Err(Refusal::Host);
        }
        let Some(token) = &self.token else {
            return Ok(());
        };
        if matches!(path, "/livez" | "/readyz") {
            return Ok(());
        }
        let ok = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
            .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()));
        if ok {
            Ok(())
        } else {
            self.refused(peer, path, Refusal::Token);
            Err(Refusal::Token)
        }
    }

    fn refused(&self, peer: SocketAddr, path: &str, why: Refusal) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if log.0.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            log.1 += 1;
            return;
        }
        let suppressed = std::mem::take(&mut log.1);
        log.0 = Some(now);
        drop(log);
        // The path is cut short: it is the client's text.
        let path: String = path.chars().take(64).collect();
        match why {
            Refusal::Token => warn!(
                %peer, %path, suppressed,
                "admin call refused: missing or wrong bearer token"
            ),
            Refusal::Host => warn!(
                %peer, %path, suppressed,
                "admin call refused: Host header names another site (DNS rebinding?)"
            ),
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` value; the scheme in any case.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(|c: char| c.is_ascii_whitespace())?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// `Host: 127.0.0.1:9100`, `[::1]:9100`, `localhost`, or a configured name.
fn host_allowed(host: &str, names: &[String]) -> bool {
    let host = host.trim();
    let name = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, _)) => v6,
            None => return false,
        },
        None => match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            Some(_) => return false,
            None => host,
        },
    };
    if name.parse::<IpAddr>().is_ok() {
        return true;
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || names.iter().any(|n| n.trim_end_matches('.') == name)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_in_any_case() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("BEARER\tabc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }

    #[test]
    fn hosts_name_the_listener() {
        let names = vec!["gslb-admin.internal".to_string()];
        for ok in [
            "127.0.0.1:9100",
            "127.0.0.1",
            "[::1]:9100",
            "0.0.0.0:1",
            "localhost:9100",
            "LOCALHOST",
            "gslb-admin.internal:9100",
            "Gslb-Admin.Internal.",
        ] {
            assert!(host_allowed(ok, &names), "{ok}");
        }
        for bad in [
            "evil.example:9100",
            "evil.example",
            "localhost.evil.example",
            "[::1",
            "127.0.0.1:x",
            "",
        ] {
            assert!(!host_allowed(bad, &names), "{bad}");
        }
    }
}
