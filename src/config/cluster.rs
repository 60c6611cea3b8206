//! The `[cluster]` table, compiled into `plan::ClusterSettings`, and `[health]
//! source_address`, which gives each replica on a host its own vantage point.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::compile::nonempty;
use super::schema::{ClusterDef, HealthDef, OneOrMany, QuorumDef};
use super::{ConfigError, Locator};
use crate::plan::{AdminSettings, ClusterSettings, Quorum};

type Result<T> = std::result::Result<T, ConfigError>;

/// A name NATS takes as a bucket name or as a key token: `[A-Za-z0-9_-]+`.
fn token(loc: &Locator<'_>, s: &Spanned<String>, what: &str) -> Result<String> {
    let v = nonempty(loc, s, what)?;
    if !v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(loc.error(
            s.span(),
            format!("{what} {v:?} may only hold letters, digits, '_' and '-'"),
        ));
    }
    Ok(v)
}

pub(super) fn compile_cluster(
    loc: &Locator<'_>,
    c: &ClusterDef,
    admin: Option<&AdminSettings>,
) -> Result<ClusterSettings> {
    let name = token(loc, &c.name, "cluster name")?;
    let bucket = token(loc, &c.bucket, "bucket")?;
    if c.servers.get_ref().is_empty() {
        return Err(loc.error(c.servers.span(), "servers needs at least one NATS URL"));
    }
    let mut servers = Vec::new();
    for s in c.servers.get_ref() {
        let url = nonempty(loc, s, "server URL")?;
        let rest = ["nats://", "tls://"]
            .iter()
            .find_map(|scheme| url.strip_prefix(scheme));
        match rest {
            Some(hostport) if !hostport.is_empty() && !hostport.contains('/') => {}
            _ => {
                return Err(loc.error(
                    s.span(),
                    format!(
                        "invalid NATS server {url:?}: expected nats://host:port or tls://host:port"
                    ),
                ));
            }
        }
        servers.push(url);
    }
    let replicas = *c.replicas.get_ref();
    if !(1..=5).contains(&replicas) {
        return Err(loc.error(c.replicas.span(), "replicas must be 1 to 5"));
    }
    let timeout = c.timeout.get_ref().0;
    if timeout.is_zero() || timeout.as_secs() > 60 {
        return Err(loc.error(
            c.timeout.span(),
            "timeout must be more than 0s and at most 60s",
        ));
    }
    let quorum = match &c.quorum {
        None => Quorum::Majority,
        Some(q) => match q.get_ref() {
            QuorumDef::Rule(r) => match r.as_str() {
                "majority" => Quorum::Majority,
                "any" => Quorum::Any,
                "all" => Quorum::All,
                other => {
                    return Err(loc.error(
                        q.span(),
                        format!(
                            "unknown quorum {other:?}: expected \"majority\", \"any\", \"all\" or a fraction such as 0.66"
                        ),
                    ));
                }
            },
            QuorumDef::Fraction(f) if *f > 0.0 && *f <= 1.0 => {
                Quorum::PerMille((f * 1000.0).round().max(1.0) as u16)
            }
            QuorumDef::Fraction(f) => {
                return Err(loc.error(
                    q.span(),
                    format!("quorum {f} is not a fraction above 0 and at most 1"),
                ));
            }
        },
    };
    let heartbeat = c.heartbeat.get_ref().0;
    if heartbeat < Duration::from_millis(100) || heartbeat > Duration::from_secs(60) {
        return Err(loc.error(
            c.heartbeat.span(),
            "heartbeat must be between 100ms and 60s",
        ));
    }
    // Without a local copy, a replica that restarts while the store is down would
    // serve without the drains: traffic back to gateways under maintenance.
    if admin.and_then(|a| a.state_file.as_ref()).is_none() {
        return Err(loc.error(
            c.name.span(),
            "[cluster] needs [admin] state_file: the local copy of the shared overrides that a replica restarting without the store serves from",
        ));
    }
    let file =
        |f: &Option<Spanned<String>>| f.as_ref().map(|f| relative(loc.file_path(), f.get_ref()));
    let tls_client = match (&c.tls_cert_file, &c.tls_key_file) {
        (Some(_), Some(_)) => Some((
            file(&c.tls_cert_file).unwrap(),
            file(&c.tls_key_file).unwrap(),
        )),
        (None, None) => None,
        (Some(s), None) | (None, Some(s)) => {
            return Err(loc.error(s.span(), "give tls_cert_file and tls_key_file together"));
        }
    };
    Ok(ClusterSettings {
        name,
        servers,
        bucket,
        replicas,
        timeout,
        quorum,
        heartbeat,
        credentials_file: file(&c.credentials_file),
        tls_ca_file: file(&c.tls_ca_file),
        tls_client,
    })
}

fn relative(config: &Path, f: &str) -> PathBuf {
    let p = Path::new(f);
    if p.is_relative() {
        config.parent().unwrap_or(Path::new(".")).join(p)
    } else {
        p.to_path_buf()
    }
}

/// `[health] source_address`: at most one IPv4 and one IPv6 address.
pub(super) fn source_addresses(
    loc: &Locator<'_>,
    h: &HealthDef,
) -> Result<(Option<Ipv4Addr>, Option<Ipv6Addr>)> {
    let Some(s) = &h.source_address else {
        return Ok((None, None));
    };
    let texts: Vec<&str> = match s.get_ref() {
        OneOrMany::One(t) => vec![t.as_str()],
        OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
    };
    let (mut v4, mut v6) = (None, None);
    for t in texts {
        match t.trim().parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) if v4.is_none() => v4 = Some(a),
            Ok(IpAddr::V6(a)) if v6.is_none() => v6 = Some(a),
            Ok(_) => {
                return Err(loc.error(
                    s.span(),
                    "source_address holds at most one IPv4 and one IPv6 address",
                ));
            }
            Err(_) => {
                return Err(loc.error(s.span(), format!("invalid source address {t:?}")));
            }
        }
    }
    Ok((v4, v6))
}
