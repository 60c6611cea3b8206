//! One probe kind per target, built once when the target's task starts.

use std::net::{IpAddr, SocketAddr};

use super::failure::{ProbeResult, SetupError};
use super::{expiry, http, tcp, tls};
use crate::metrics::{Metrics, cert_target_label};
use crate::plan::{Check, CheckKind, TlsSettings};

pub(super) enum Prober {
    /// The address, and the local address to connect from.
    Tcp(SocketAddr, Option<IpAddr>),
    Tls(Box<tls::TlsProbe>),
    Http(Box<http::HttpProbe>),
}

impl Prober {
    /// `host` is the per-service Host (and SNI) when the check is per-service.
    pub fn new(
        addr: SocketAddr,
        check: &Check,
        host: Option<&str>,
        label: &str,
        metrics: &Metrics,
        configs: &mut tls::ConfigCache,
        source: Option<IpAddr>,
    ) -> Result<Prober, SetupError> {
        let expiry = |tls: &TlsSettings| {
            let target = cert_target_label(addr, host);
            expiry::ExpiryWatch::new(
                label.to_string(),
                tls.expiry_warning,
                metrics
                    .cert_expiry
                    .with_label_values(&[check.name.as_str(), target.as_str()]),
            )
        };
        Ok(match &check.kind {
            CheckKind::Tcp => Prober::Tcp(addr, source),
            CheckKind::Tls => {
                let t = check.tls.as_ref().ok_or(SetupError::NoTlsSettings)?;
                let sni = t.sni.as_deref().or(host);
                Prober::Tls(Box::new(tls::TlsProbe::new(
                    addr,
                    t,
                    sni,
                    expiry(t),
                    configs,
                    source,
                )?))
            }
            CheckKind::Http(_) | CheckKind::Https(_) => {
                Prober::Http(Box::new(http::HttpProbe::new(
                    addr,
                    check,
                    host,
                    check.tls.as_ref().map(expiry),
                    configs,
                    source,
                )?))
            }
        })
    }

    pub async fn probe(&self) -> ProbeResult {
        match self {
            Prober::Tcp(addr, source) => tcp::probe(*addr, *source).await,
            Prober::Tls(p) => p.probe().await,
            Prober::Http(p) => p.probe().await,
        }
    }
}
