//! TLS for health checks: client configurations (system roots, a CA bundle, or
//! `insecure`), the `tls` probe (TCP connect + full handshake), certificate-expiry
//! reporting, and precise reasons for handshake failures.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::Gauge;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::warn;

use super::{ProbeError, describe_io};
use crate::plan::TlsSettings;

/// The system's trust anchors, loaded once per process.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut store = RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                warn!(error = %e, "while loading system CA certificates");
            }
            let (added, _ignored) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                warn!(
                    "no system CA certificates found; tls/https checks without ca_file will fail"
                );
            }
            Arc::new(store)
        })
        .clone()
}

/// Client configurations built during one `Engine::apply`, shared by every target with
/// the same settings. Building one per target cost ~100 KiB and ~3 ms each (reqwest
/// would otherwise load the system CA store for every client, even for plain http).
/// Rebuilt per apply; a probe whose CA bundle changed is a new probe (its check holds
/// the certificates), so a reload picks up a rotated bundle.
#[derive(Default)]
pub struct ConfigCache {
    built: std::collections::HashMap<(TlsSettings, bool), Arc<ClientConfig>>,
}

impl ConfigCache {
    pub fn get(
        &mut self,
        tls: &TlsSettings,
        alpn_http1: bool,
    ) -> Result<Arc<ClientConfig>, String> {
        let key = (tls.clone(), alpn_http1);
        if let Some(c) = self.built.get(&key) {
            return Ok(c.clone());
        }
        let c = client_config(tls, alpn_http1)?;
        self.built.insert(key, c.clone());
        Ok(c)
    }
}

/// The configuration handed to reqwest for plain-http probes: it is never used for a
/// handshake, it only spares reqwest building (and loading roots for) one of its own.
pub fn plain_http_config() -> Arc<ClientConfig> {
    static PLAIN: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    PLAIN
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            Arc::new(
                ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default protocol versions")
                    .with_root_certificates(RootCertStore::empty())
                    .with_no_client_auth(),
            )
        })
        .clone()
}

/// A rustls client configuration for a check's TLS settings.
pub fn client_config(tls: &TlsSettings, alpn_http1: bool) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut config = if tls.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let roots = match &tls.ca_file {
            Some(path) => {
                // The certificates were read with the plan; this never touches the file.
                let mut store = RootCertStore::empty();
                for cert in tls.ca_certs.iter() {
                    store
                        .add(cert.clone())
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                }
                Arc::new(store)
            }
            None => system_roots(),
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    if alpn_http1 {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
    }
    Ok(Arc::new(config))
}

/// `insecure = true`: any certificate is accepted, but the handshake signatures are
/// still checked, so the peer must hold the key of the certificate it sent.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A precise reason for a failed handshake.
pub fn describe_tls(e: &rustls::Error, name: &str) -> String {
    use CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } => "tls certificate expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => "tls certificate not valid yet".into(),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                format!("tls certificate not valid for {name}")
            }
            C::UnknownIssuer => "tls certificate from an unknown issuer".into(),
            C::BadSignature => "tls certificate has a bad signature".into(),
            C::Revoked => "tls certificate revoked".into(),
            other => format!("tls certificate rejected: {other:?}"),
        },
        rustls::Error::AlertReceived(alert) => format!("tls alert from server: {alert:?}"),
        other => format!("tls handshake: {other}"),
    }
}

/// Finds a rustls error inside an I/O error (tokio-rustls wraps them so).
pub fn tls_error_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        // `io::Error::source` skips the error it wraps, so look inside; reqwest wraps
        // the tokio-rustls `io::Error` in another one, hence the loop.
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            let mut inner = io.get_ref();
            while let Some(i) = inner {
                if let Some(t) = i.downcast_ref::<rustls::Error>() {
                    return Some(t);
                }
                inner = i
                    .downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref());
            }
        }
        cur = err.source();
    }
    None
}

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

/// The `tls` probe: connect, handshake (with verification), done.
pub struct TlsProbe {
    addr: SocketAddr,
    name: ServerName<'static>,
    name_text: String,
    connector: TlsConnector,
    expiry: ExpiryWatch,
}

impl TlsProbe {
    pub fn new(
        addr: SocketAddr,
        tls: &TlsSettings,
        sni: Option<&str>,
        expiry: ExpiryWatch,
        configs: &mut ConfigCache,
    ) -> Result<TlsProbe, String> {
        let (name, name_text) = server_name(addr, sni)?;
        Ok(TlsProbe {
            addr,
            name,
            name_text,
            connector: TlsConnector::from(configs.get(tls, false)?),
            expiry,
        })
    }

    pub async fn probe(&self) -> Result<(), ProbeError> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| ProbeError(describe_io("connect", &e)))?;
        let tls = self
            .connector
            .connect(self.name.clone(), tcp)
            .await
            .map_err(|e| {
                ProbeError(match tls_error_in(&e) {
                    Some(t) => describe_tls(t, &self.name_text),
                    None => describe_io("tls handshake", &e),
                })
            })?;
        if let Some(leaf) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
            self.expiry.observe(leaf);
        }
        Ok(())
    }
}

/// The name to send and verify: the SNI when given, else the probe IP (no SNI is sent
/// for an IP; the certificate must carry it as an IP SAN).
pub fn server_name(
    addr: SocketAddr,
    sni: Option<&str>,
) -> Result<(ServerName<'static>, String), String> {
    match sni {
        Some(n) => ServerName::try_from(n.to_string())
            .map(|s| (s, n.to_string()))
            .map_err(|e| format!("invalid server name {n:?}: {e}")),
        None => Ok((
            ServerName::IpAddress(addr.ip().into()),
            addr.ip().to_string(),
        )),
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
