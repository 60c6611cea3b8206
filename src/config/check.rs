//! Health checks from the config: kind, timing, TLS settings (the CA bundle is read
//! here, once per load) and HTTP expectations, compiled into `plan::Check`.

use std::ops::RangeInclusive;
use std::time::Duration;

use super::compile::nonempty;
use super::schema::{self, CheckDef, StatusSpec};
use super::{ConfigError, Locator};
use crate::plan::{Check, CheckKind, HttpCheck, TlsSettings};

type Result<T> = std::result::Result<T, ConfigError>;

pub(super) fn compile_check(
    loc: &Locator<'_>,
    c: &CheckDef,
    default_user_agent: &str,
) -> Result<Check> {
    let name = nonempty(loc, &c.name, "check name")?;
    let interval = c.interval.get_ref().0;
    let timeout = c.timeout.get_ref().0;
    if interval.is_zero() {
        return Err(loc.error(c.interval.span(), "interval must be greater than zero"));
    }
    if interval > Duration::from_secs(86_400) {
        return Err(loc.error(c.interval.span(), "interval must be at most 1 day"));
    }
    if timeout.is_zero() {
        return Err(loc.error(c.timeout.span(), "timeout must be greater than zero"));
    }
    if timeout >= interval {
        // A defaulted timeout has no place in the file: point at the interval instead.
        let span = if c.timeout.span() == (0..0) {
            c.interval.span()
        } else {
            c.timeout.span()
        };
        return Err(loc.error(
            span,
            format!(
                "timeout ({}) must be shorter than the interval ({})",
                c.timeout.get_ref(),
                c.interval.get_ref()
            ),
        ));
    }
    for (v, what) in [(&c.rise, "rise"), (&c.fall, "fall")] {
        if *v.get_ref() == 0 {
            return Err(loc.error(v.span(), format!("{what} must be at least 1")));
        }
    }
    let jitter = match &c.jitter {
        Some(j) if j.get_ref().0 >= interval => {
            return Err(loc.error(j.span(), "jitter must be shorter than the interval"));
        }
        Some(j) => j.get_ref().0,
        None => interval / 10,
    };

    let http_only: [(&str, bool); 7] = [
        ("method", c.method.is_some()),
        ("path", c.path.is_some()),
        ("host", c.host.is_some()),
        ("headers", !c.headers.is_empty()),
        ("expect_status", c.expect_status.is_some()),
        ("expect_body", c.expect_body.is_some()),
        ("user_agent", c.user_agent.is_some()),
    ];
    let tls_only: [(&str, bool); 4] = [
        ("sni", c.sni.is_some()),
        ("ca_file", c.ca_file.is_some()),
        ("insecure", c.insecure),
        ("cert_expiry_warning", c.cert_expiry_warning.is_some()),
    ];
    let kind_name = format!("{:?}", c.kind).to_ascii_lowercase();
    let reject = |keys: &[(&str, bool)], what: &str| -> Result<()> {
        match keys.iter().find(|(_, set)| *set) {
            Some((key, _)) => Err(loc.error(
                c.name.span(),
                format!("check {name:?} is {kind_name}; {key} applies to {what} checks only"),
            )),
            None => Ok(()),
        }
    };
    let (is_http, is_tls) = match c.kind {
        schema::CheckKind::Tcp => (false, false),
        schema::CheckKind::Tls => (false, true),
        schema::CheckKind::Http => (true, false),
        schema::CheckKind::Https => (true, true),
    };
    if !is_http {
        reject(&http_only, "http and https")?;
    }
    if !is_tls {
        reject(&tls_only, "tls and https")?;
    }
    let kind = match c.kind {
        schema::CheckKind::Tcp => CheckKind::Tcp,
        schema::CheckKind::Tls => CheckKind::Tls,
        schema::CheckKind::Http => CheckKind::Http(compile_http(loc, c)?),
        schema::CheckKind::Https => CheckKind::Https(compile_http(loc, c)?),
    };
    let tls = if is_tls {
        Some(compile_tls(loc, c)?)
    } else {
        None
    };
    let user_agent = match &c.user_agent {
        Some(ua) if ua.get_ref().contains(['\r', '\n']) || ua.get_ref().is_empty() => {
            return Err(loc.error(ua.span(), "invalid user_agent"));
        }
        Some(ua) => ua.get_ref().clone(),
        None => default_user_agent.to_string(),
    };
    Ok(Check {
        name,
        kind,
        interval,
        timeout,
        rise: *c.rise.get_ref(),
        fall: *c.fall.get_ref(),
        jitter,
        tls,
        per_service: c.per_service,
        user_agent,
    })
}

fn compile_tls(loc: &Locator<'_>, c: &CheckDef) -> Result<TlsSettings> {
    let sni = match &c.sni {
        None => None,
        Some(s) => {
            let v = s.get_ref().trim();
            if rustls_pki_types::ServerName::try_from(v).is_err() {
                return Err(loc.error(
                    s.span(),
                    format!("invalid sni {v:?}: not a DNS name or IP address"),
                ));
            }
            Some(v.to_string())
        }
    };
    let ca_file = match &c.ca_file {
        None => None,
        Some(f) => {
            let p = std::path::Path::new(f.get_ref());
            let path = if p.is_relative() {
                loc.file_path()
                    .parent()
                    .unwrap_or(std::path::Path::new("."))
                    .join(p)
            } else {
                p.to_path_buf()
            };
            // Read it here, once per load: `gslb check` catches a missing or empty
            // bundle, and the probes get the certificates with the plan.
            let certs =
                read_ca_file(&path).map_err(|e| loc.error(f.span(), format!("ca_file: {e}")))?;
            Some((path, certs))
        }
    };
    let (ca_file, ca_certs) = match ca_file {
        Some((path, certs)) => (Some(path), certs),
        None => (None, crate::plan::CaCertificates::default()),
    };
    if c.insecure && ca_file.is_some() {
        return Err(loc.error(c.name.span(), "insecure and ca_file contradict each other"));
    }
    Ok(TlsSettings {
        sni,
        ca_file,
        ca_certs,
        insecure: c.insecure,
        expiry_warning: c
            .cert_expiry_warning
            .map_or(Duration::from_secs(14 * 86_400), |d| d.0),
    })
}

/// Reads a PEM bundle; at least one certificate must be in it.
fn read_ca_file(
    path: &std::path::Path,
) -> std::result::Result<crate::plan::CaCertificates, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(crate::plan::CaCertificates::new(certs))
}

fn compile_http(loc: &Locator<'_>, c: &CheckDef) -> Result<HttpCheck> {
    let method = match &c.method {
        None => "GET".to_string(),
        Some(m) => {
            let up = m.get_ref().to_ascii_uppercase();
            if !matches!(up.as_str(), "GET" | "HEAD" | "POST" | "OPTIONS") {
                return Err(loc.error(
                    m.span(),
                    format!(
                        "unsupported method {:?} (GET, HEAD, POST, OPTIONS)",
                        m.get_ref()
                    ),
                ));
            }
            up
        }
    };
    let path = match &c.path {
        None => "/".to_string(),
        Some(p) if !p.get_ref().starts_with('/') || p.get_ref().contains(char::is_whitespace) => {
            return Err(loc.error(
                p.span(),
                format!(
                    "path {:?} must start with / and contain no spaces",
                    p.get_ref()
                ),
            ));
        }
        Some(p) => p.get_ref().clone(),
    };
    let host = match &c.host {
        None => None,
        Some(h) => {
            crate::plan::host_name(h.get_ref()).map_err(|e| loc.error(h.span(), e.to_string()))?;
            Some(h.get_ref().clone())
        }
    };
    let mut headers = Vec::new();
    for (k, v) in &c.headers {
        let valid_name = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
        if !valid_name {
            return Err(loc.error(v.span(), format!("invalid header name {k:?}")));
        }
        if k.eq_ignore_ascii_case("host") {
            return Err(loc.error(v.span(), "set the Host header with `host`, not in headers"));
        }
        if v.get_ref().contains(['\r', '\n']) {
            return Err(loc.error(
                v.span(),
                format!("header {k:?} has a line break in its value"),
            ));
        }
        headers.push((k.clone(), v.get_ref().clone()));
    }
    let expect_status = match &c.expect_status {
        None => vec![200..=399],
        Some(list) => {
            let mut out = Vec::new();
            for spec in list.get_ref() {
                out.push(parse_status(spec).ok_or_else(|| {
                    loc.error(
                        list.span(),
                        format!("invalid status {spec:?}: use 200 or \"200-299\" (100-599)"),
                    )
                })?);
            }
            if out.is_empty() {
                return Err(loc.error(list.span(), "expect_status is empty"));
            }
            out
        }
    };
    if c.body_limit > 1 << 20 {
        return Err(loc.error(c.name.span(), "body_limit must be at most 1 MiB"));
    }
    let expect_body = match &c.expect_body {
        Some(b) if b.get_ref().len() > c.body_limit => {
            return Err(loc.error(b.span(), "expect_body is longer than body_limit"));
        }
        b => b.as_ref().map(|b| b.get_ref().clone()),
    };
    Ok(HttpCheck {
        method,
        path,
        host,
        headers,
        expect_status,
        expect_body,
        body_limit: c.body_limit,
    })
}

fn parse_status(spec: &StatusSpec) -> Option<RangeInclusive<u16>> {
    let valid = |c: u16| (100..=599).contains(&c);
    match spec {
        StatusSpec::Code(c) if valid(*c) => Some(*c..=*c),
        StatusSpec::Code(_) => None,
        StatusSpec::Range(s) => {
            let (a, b) = match s.split_once('-') {
                Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
                None => {
                    let c = s.trim().parse().ok()?;
                    (c, c)
                }
            };
            (valid(a) && valid(b) && a <= b).then_some(a..=b)
        }
    }
}
