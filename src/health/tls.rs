//! TLS for health checks: client configurations (system roots, the check's CA
//! certificates, or `insecure`), the `tls` probe (TCP connect + full handshake), and
//! precise reasons for handshake failures.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_rustls::TlsConnector;
use tracing::warn;

use super::expiry::ExpiryWatch;
use super::failure::{IoFailure, ProbeResult, SetupError, Stage, TlsFailure};
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
    ) -> Result<Arc<ClientConfig>, SetupError> {
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
pub fn client_config(tls: &TlsSettings, alpn_http1: bool) -> Result<Arc<ClientConfig>, SetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SetupError::Tls(e.to_string()))?;
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
                        .map_err(|e| SetupError::CaCertificate {
                            path: path.display().to_string(),
                            reason: e.to_string(),
                        })?;
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
pub fn describe_tls(e: &rustls::Error, name: &str) -> TlsFailure {
    use CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } => TlsFailure::Expired,
            C::NotValidYet | C::NotValidYetContext { .. } => TlsFailure::NotValidYet,
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                TlsFailure::WrongName(name.to_string())
            }
            C::UnknownIssuer => TlsFailure::UnknownIssuer,
            C::BadSignature => TlsFailure::BadSignature,
            C::Revoked => TlsFailure::Revoked,
            other => TlsFailure::Rejected(format!("{other:?}")),
        },
        rustls::Error::AlertReceived(alert) => TlsFailure::Alert(format!("{alert:?}")),
        other => TlsFailure::Handshake(other.to_string()),
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

/// The `tls` probe: connect, handshake (with verification), done.
pub struct TlsProbe {
    addr: SocketAddr,
    /// The local address to connect from (`[health] source_address`).
    source: Option<std::net::IpAddr>,
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
        source: Option<std::net::IpAddr>,
    ) -> Result<TlsProbe, SetupError> {
        let (name, name_text) = server_name(addr, sni)?;
        Ok(TlsProbe {
            addr,
            source,
            name,
            name_text,
            connector: TlsConnector::from(configs.get(tls, false)?),
            expiry,
        })
    }

    pub async fn probe(&self) -> ProbeResult {
        let tcp = super::tcp::connect(self.addr, self.source)
            .await
            .map_err(|e| IoFailure::new(Stage::Connect, &e))?;
        let tls = self
            .connector
            .connect(self.name.clone(), tcp)
            .await
            .map_err(|e| match tls_error_in(&e) {
                Some(t) => describe_tls(t, &self.name_text).into(),
                None => super::ProbeFailure::from(IoFailure::new(Stage::TlsHandshake, &e)),
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
) -> Result<(ServerName<'static>, String), SetupError> {
    match sni {
        Some(n) => ServerName::try_from(n.to_string())
            .map(|s| (s, n.to_string()))
            .map_err(|e| SetupError::ServerName {
                name: n.to_string(),
                reason: e.to_string(),
            }),
        None => Ok((
            ServerName::IpAddress(addr.ip().into()),
            addr.ip().to_string(),
        )),
    }
}
