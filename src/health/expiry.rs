//! Certificate lifetimes of tls and https targets: a gauge with each leaf's expiry
//! time, and one warning line when a target enters its warning window (not one per
//! probe). An expiring certificate is reported, never failed: the handshake decides.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::Gauge;
use tracing::warn;

/// Reports certificates that expire within a window: a gauge with the expiry time,
/// and one log line when a target enters the window (not one per probe).
pub struct ExpiryWatch {
    pub label: String,
    pub window: Duration,
    pub gauge: Gauge,
    warned: AtomicBool,
}

impl ExpiryWatch {
    pub fn new(label: String, window: Duration, gauge: Gauge) -> Self {
        ExpiryWatch {
            label,
            window,
            gauge,
            warned: AtomicBool::new(false),
        }
    }

    /// Looks at the leaf certificate of a successful handshake.
    pub fn observe(&self, leaf_der: &[u8]) {
        let Some(not_after) = not_after_unix(leaf_der) else {
            return;
        };
        self.gauge.set(not_after as f64);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let left = not_after - now;
        let soon = left < self.window.as_secs() as i64;
        if soon && !self.warned.swap(true, Ordering::Relaxed) {
            warn!(
                "target {}: tls certificate expires in {} (within the {}-day warning window); the check still passes",
                self.label,
                human_left(left),
                self.window.as_secs() / 86_400
            );
        } else if !soon {
            self.warned.store(false, Ordering::Relaxed);
        }
    }
}

fn human_left(secs: i64) -> String {
    if secs < 0 {
        "0s (already expired)".into()
    } else if secs >= 86_400 {
        format!("{}d {}h", secs / 86_400, (secs % 86_400) / 3600)
    } else {
        format!("{}h {}m", secs / 3600, (secs % 3600) / 60)
    }
}

// ---- the certificate's notAfter, read from DER without an X.509 library -------------

/// Reads one DER TLV at `p`: (tag, content range, next position).
fn tlv(d: &[u8], p: usize) -> Option<(u8, std::ops::Range<usize>, usize)> {
    let tag = *d.get(p)?;
    let first = *d.get(p + 1)? as usize;
    let (len, hdr) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *d.get(p + 2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let start = p + hdr;
    let end = start.checked_add(len)?;
    (end <= d.len()).then_some((tag, start..end, end))
}

/// `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
/// serialNumber, signature, issuer, validity SEQUENCE { notBefore, notAfter }, ... } }`
/// (RFC 5280 §4.1). Returns notAfter as Unix seconds.
pub fn not_after_unix(der: &[u8]) -> Option<i64> {
    let (t, cert, _) = tlv(der, 0)?;
    if t != 0x30 {
        return None;
    }
    let (t, tbs, _) = tlv(der, cert.start)?;
    if t != 0x30 {
        return None;
    }
    let mut p = tbs.start;
    let (t, _, next) = tlv(der, p)?;
    if t == 0xa0 {
        p = next; // explicit version
    }
    for _ in 0..3 {
        p = tlv(der, p)?.2; // serialNumber, signature, issuer
    }
    let (t, validity, _) = tlv(der, p)?;
    if t != 0x30 {
        return None;
    }
    let (_, _, after_before) = tlv(der, validity.start)?;
    let (t, na, _) = tlv(der, after_before)?;
    parse_time(t, std::str::from_utf8(&der[na]).ok()?)
}

/// UTCTime (tag 0x17, `YYMMDDHHMMSSZ`) or GeneralizedTime (0x18, `YYYYMMDDHHMMSSZ`).
fn parse_time(tag: u8, s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i64 = s.get(0..2)?.parse().ok()?;
            // RFC 5280 §4.1.2.5.1: 50-99 are 19xx, 00-49 are 20xx.
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, s.get(2..)?)
        }
        0x18 => (s.get(0..4)?.parse().ok()?, s.get(4..)?),
        _ => return None,
    };
    let num = |r: std::ops::Range<usize>| -> Option<i64> { rest.get(r)?.parse().ok() };
    let (mo, d, h, mi, se) = (num(0..2)?, num(2..4)?, num(4..6)?, num(6..8)?, num(8..10)?);
    Some(days_from_civil(year, mo, d) * 86_400 + h * 3600 + mi * 60 + se)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(parse_time(0x17, "491231235959Z"), Some(2_524_607_999));
        assert_eq!(parse_time(0x18, "20380119031408Z"), Some(2_147_483_648));
    }

    #[test]
    fn reads_not_after_from_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["a.test".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 5, 6);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let expect = days_from_civil(2031, 5, 6) * 86_400;
        assert_eq!(not_after_unix(cert.der()), Some(expect));
        assert_eq!(not_after_unix(&cert.der()[..40]), None);
    }
}
