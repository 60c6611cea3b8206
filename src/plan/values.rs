//! Small value types of the plan: host names as a Host header gives them, durations as
//! the config writes them, and a CA bundle's certificates.

use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;

/// A `host` value that cannot be a Host header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid host {0:?}: expected NAME, NAME:PORT, IP or [IPv6]:PORT")]
pub struct InvalidHost(pub String);

/// The name part of a Host value: `example.com:8443` → `example.com`,
/// `[::1]:8443` → `::1`, `10.0.0.1` unchanged. Rejects what cannot be a Host: an empty
/// name, a non-numeric or out-of-range port, stray brackets or colons. Config validates
/// hosts with it; the http probe takes its default SNI from it.
pub fn host_name(host: &str) -> Result<&str, InvalidHost> {
    let bad = || InvalidHost(host.to_string());
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or_else(bad)?;
        v6.parse::<Ipv6Addr>().map_err(|_| bad())?;
        match after {
            "" => (v6, None),
            p => (v6, Some(p.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else if host.parse::<Ipv6Addr>().is_ok() {
        (host, None)
    } else {
        match host.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    if let Some(p) = port
        && p.parse::<u16>().is_err()
    {
        return Err(bad());
    }
    if name.is_empty() || name.contains(['/', '[', ']']) || name.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok(name)
}

/// Shows a duration the way the config writes it: whole seconds as `2s`, anything else
/// in milliseconds (`500ms`). Messages use it so that they quote the config back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShowDuration(pub Duration);

impl std::fmt::Display for ShowDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

/// The certificates of a CA bundle, as read once per config load. Equal when their
/// contents are; hashed by a digest computed once, so that keying every probe by its
/// check costs the same whatever the size of the bundle.
#[derive(Debug, Clone, Default)]
pub struct CaCertificates {
    certs: Arc<[CertificateDer<'static>]>,
    digest: u64,
}

impl CaCertificates {
    pub fn new(certs: Vec<CertificateDer<'static>>) -> CaCertificates {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        certs.hash(&mut h);
        CaCertificates {
            certs: certs.into(),
            digest: h.finish(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &CertificateDer<'static>> {
        self.certs.iter()
    }

    pub fn len(&self) -> usize {
        self.certs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }
}

impl PartialEq for CaCertificates {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
            && (Arc::ptr_eq(&self.certs, &other.certs) || self.certs == other.certs)
    }
}

impl Eq for CaCertificates {}

impl std::hash::Hash for CaCertificates {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.digest.hash(state);
    }
}

#[cfg(test)]
mod host_tests {
    use super::{CaCertificates, ShowDuration, host_name};
    use rustls_pki_types::CertificateDer;
    use std::time::Duration;

    #[test]
    fn ca_certificates_compare_by_content() {
        use std::hash::{BuildHasher, RandomState};
        let cert = |b: &[u8]| CertificateDer::from(b.to_vec());
        let a = CaCertificates::new(vec![cert(b"one"), cert(b"two")]);
        let same = CaCertificates::new(vec![cert(b"one"), cert(b"two")]);
        let rotated = CaCertificates::new(vec![cert(b"one"), cert(b"three")]);
        assert_eq!(a, same);
        assert_ne!(a, rotated);
        assert_ne!(a, CaCertificates::default());
        let s = RandomState::new();
        assert_eq!(s.hash_one(&a), s.hash_one(&same));
        assert_eq!(a.len(), 2);
        assert!(CaCertificates::default().is_empty());
    }

    #[test]
    fn host_values() {
        assert_eq!(host_name("example.com"), Ok("example.com"));
        assert_eq!(host_name("example.com:8443"), Ok("example.com"));
        assert_eq!(host_name("10.0.0.1:80"), Ok("10.0.0.1"));
        assert_eq!(host_name("[::1]:8443"), Ok("::1"));
        assert_eq!(host_name("[::1]"), Ok("::1"));
        assert_eq!(host_name("::1"), Ok("::1"));
        for bad in [
            "",
            "example.com:abc",
            "example.com:99999",
            "a:b:c",
            "[::1",
            "[x]:1",
            "[::1]8443",
            "a b",
        ] {
            assert!(host_name(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            host_name("a b").unwrap_err().to_string(),
            "invalid host \"a b\": expected NAME, NAME:PORT, IP or [IPv6]:PORT"
        );
    }

    #[test]
    fn durations_read_like_the_config() {
        assert_eq!(ShowDuration(Duration::from_secs(2)).to_string(), "2s");
        assert_eq!(
            ShowDuration(Duration::from_millis(1500)).to_string(),
            "1500ms"
        );
        assert_eq!(
            ShowDuration(Duration::from_millis(200)).to_string(),
            "200ms"
        );
    }
}
