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

/// The certificate's notAfter as Unix seconds (RFC 5280 §4.1.2.5); `None` when the
/// DER is not a certificate.
pub fn not_after_unix(der: &[u8]) -> Option<i64> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let after = cert.tbs_certificate.validity.not_after.to_unix_duration();
    i64::try_from(after.as_secs()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_not_after_from_generated_certificates() {
        let key = rcgen::KeyPair::generate().unwrap();
        // 2031-05-06 is a UTCTime, 2051-01-02 a GeneralizedTime (RFC 5280: from 2050).
        for ((y, m, d), unix) in [((2031, 5, 6), 1_935_792_000), ((2051, 1, 2), 2_556_230_400)] {
            let mut params = rcgen::CertificateParams::new(vec!["a.test".into()]).unwrap();
            params.not_after = rcgen::date_time_ymd(y, m, d);
            let cert = params.self_signed(&key).unwrap();
            assert_eq!(not_after_unix(cert.der()), Some(unix), "{y}-{m}-{d}");
            assert_eq!(not_after_unix(&cert.der()[..40]), None);
        }
    }

    #[test]
    fn time_left_reads_in_days_or_hours() {
        assert_eq!(human_left(3 * 86_400 + 1800), "3d 0h");
        assert_eq!(human_left(5 * 3600 + 120), "5h 2m");
        assert_eq!(human_left(-5), "0s (already expired)");
    }
}
