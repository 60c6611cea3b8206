//! Validation: schema types in, `Plan` out. Each check that can fail points at the
//! offending value's span.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::rr::Name;
use toml::Spanned;

use super::schema::{self, CheckDef, StatusSpec};
use super::zone::{compile_zone, find_zone, parse_name, ttl_secs};
use super::{ConfigError, Locator};
use crate::plan::{
    AdminSettings, Check, CheckId, CheckKind, Endpoint, Gateway, GatewayId, HealthSettings,
    HttpCheck, Net, Plan, Region, RegionId, ServerSettings, Service, Target, TargetId, TlsSettings,
};

type Result<T> = std::result::Result<T, ConfigError>;

pub(crate) fn compile(loc: &Locator<'_>, file: schema::File) -> Result<Plan> {
    let server = compile_server(loc, &file.server)?;
    if *file.health.max_concurrent_probes.get_ref() == 0 {
        return Err(loc.error(
            file.health.max_concurrent_probes.span(),
            "max_concurrent_probes must be at least 1",
        ));
    }
    let admin = match &file.admin {
        Some(a) => Some(compile_admin(loc, a)?),
        None => None,
    };

    let mut zones = Vec::with_capacity(file.zones.len());
    let mut zone_names: HashMap<Name, ()> = HashMap::new();
    for z in &file.zones {
        let zone = compile_zone(loc, z)?;
        if zone_names.insert(zone.origin.clone(), ()).is_some() {
            return Err(loc.error(z.origin.span(), format!("duplicate zone {}", zone.origin)));
        }
        zones.push(zone);
    }

    let regions = compile_regions(loc, &file.regions)?;
    let region_index: HashMap<&str, RegionId> = regions
        .iter()
        .zip(RegionId::all(regions.len()))
        .map(|(r, i)| (r.name.as_str(), i))
        .collect();

    let mut gateways = Vec::with_capacity(file.gateways.len());
    let mut gateway_index: HashMap<String, GatewayId> = HashMap::new();
    // Probe address per gateway: (ip, optional port).
    let mut probes: Vec<(IpAddr, Option<u16>)> = Vec::new();
    for g in &file.gateways {
        let name = nonempty(loc, &g.name, "gateway name")?;
        if gateway_index
            .insert(name.clone(), GatewayId(gateways.len()))
            .is_some()
        {
            return Err(loc.error(g.name.span(), format!("duplicate gateway name {name:?}")));
        }
        if g.addresses.is_empty() {
            return Err(loc.error(g.name.span(), format!("gateway {name:?} has no addresses")));
        }
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for a in &g.addresses {
            match parse_ip(loc, a)? {
                IpAddr::V4(ip) => v4.push(ip),
                IpAddr::V6(ip) => v6.push(ip),
            }
        }
        let probe = match &g.probe {
            Some(p) => parse_probe(loc, p)?,
            None => (
                v4.first()
                    .map(|&ip| IpAddr::V4(ip))
                    .or_else(|| v6.first().map(|&ip| IpAddr::V6(ip)))
                    .expect("at least one address"),
                None,
            ),
        };
        probes.push(probe);
        let region_idx = match &g.region {
            Some(r) if !regions.is_empty() => {
                Some(*region_index.get(r.get_ref().as_str()).ok_or_else(|| {
                    loc.error(r.span(), format!("unknown region {:?}", r.get_ref()))
                })?)
            }
            _ => None,
        };
        gateways.push(Gateway {
            name,
            v4,
            v6,
            region: g.region.as_ref().map(|r| r.get_ref().clone()),
            region_index: region_idx,
        });
    }

    let mut checks = Vec::with_capacity(file.checks.len());
    let mut check_index: HashMap<String, CheckId> = HashMap::new();
    let mut check_ports: Vec<Option<u16>> = Vec::new();
    let default_user_agent = file
        .health
        .user_agent
        .clone()
        .unwrap_or_else(|| format!("gslb/{} health-check", env!("CARGO_PKG_VERSION")));
    for c in &file.checks {
        let check = compile_check(loc, c, &default_user_agent)?;
        if check_index
            .insert(check.name.clone(), CheckId(checks.len()))
            .is_some()
        {
            return Err(loc.error(
                c.name.span(),
                format!("duplicate check name {:?}", check.name),
            ));
        }
        check_ports.push(c.port.or(match check.kind {
            CheckKind::Tcp => None,
            CheckKind::Tls | CheckKind::Https(_) => Some(443),
            CheckKind::Http(_) => Some(80),
        }));
        checks.push(check);
    }

    // Names that already hold static data, to catch a service that shadows a record.
    let mut owners: HashMap<Name, &'static str> = HashMap::new();
    for z in &zones {
        owners.insert(z.origin.clone(), "the zone apex");
        for r in &z.records {
            owners.insert(r.name.clone(), "a static record");
        }
    }

    let mut services = Vec::with_capacity(file.services.len());
    let mut targets: Vec<Target> = Vec::new();
    let mut target_index: HashMap<(SocketAddr, CheckId, Option<String>), TargetId> = HashMap::new();
    for s in &file.services {
        let name = parse_name(loc, &s.name, None)?;
        let zone = find_zone(&zones, &name).ok_or_else(|| {
            loc.error(
                s.name.span(),
                format!("service {name} is outside every configured zone"),
            )
        })?;
        if let Some(what) = owners.get(&name) {
            return Err(loc.error(
                s.name.span(),
                format!("duplicate name {name}: already used by {what}"),
            ));
        }
        owners.insert(name.clone(), "another service");
        let host = match &s.host {
            None => name.to_string().trim_end_matches('.').to_string(),
            Some(h) => {
                let v = h.get_ref().trim().trim_end_matches('.');
                if Name::from_ascii(v).is_err() || v.is_empty() || v.contains(char::is_whitespace) {
                    return Err(loc.error(h.span(), format!("invalid host {:?}", h.get_ref())));
                }
                v.to_ascii_lowercase()
            }
        };

        let check =
            match &s.check {
                None => None,
                Some(c) => Some(*check_index.get(c.get_ref()).ok_or_else(|| {
                    loc.error(c.span(), format!("unknown check {:?}", c.get_ref()))
                })?),
            };
        if *s.answers.get_ref() == 0 {
            return Err(loc.error(s.answers.span(), "answers must be at least 1"));
        }
        if s.endpoints.get_ref().is_empty() {
            return Err(loc.error(
                s.endpoints.span(),
                format!("service {name} has no endpoints"),
            ));
        }
        let mut endpoints = Vec::with_capacity(s.endpoints.get_ref().len());
        for e in s.endpoints.get_ref() {
            let gw = *gateway_index.get(e.gateway.get_ref()).ok_or_else(|| {
                loc.error(
                    e.gateway.span(),
                    format!("unknown gateway {:?}", e.gateway.get_ref()),
                )
            })?;
            if endpoints.iter().any(|x: &Endpoint| x.gateway == gw) {
                return Err(loc.error(
                    e.gateway.span(),
                    format!(
                        "gateway {:?} is listed twice in service {name}",
                        e.gateway.get_ref()
                    ),
                ));
            }
            let target = match check {
                None => None,
                Some(ci) => {
                    let (ip, port) = probes[gw.index()];
                    let port = port.or(check_ports[ci.index()]).ok_or_else(|| {
                        loc.error(
                            e.gateway.span(),
                            format!(
                                "no port to probe gateway {:?} with check {:?}: give the check a port or the gateway a probe address with one",
                                gateways[gw].name, checks[ci].name
                            ),
                        )
                    })?;
                    let addr = SocketAddr::new(ip, port);
                    // A per-service check is a distinct probe per service host; others
                    // are shared by every service that uses them.
                    let thost = checks[ci].per_service.then(|| host.clone());
                    let t = *target_index
                        .entry((addr, ci, thost.clone()))
                        .or_insert_with(|| {
                            targets.push(Target {
                                addr,
                                check: ci,
                                host: thost,
                                gateways: Vec::new(),
                            });
                            TargetId(targets.len() - 1)
                        });
                    let gateways_of_t = &mut targets[t.index()].gateways;
                    if !gateways_of_t.contains(&gw) {
                        gateways_of_t.push(gw);
                    }
                    Some(t)
                }
            };
            endpoints.push(Endpoint {
                gateway: gw,
                weight: e.weight,
                target,
            });
        }
        let locality = s
            .locality
            .as_ref()
            .map_or(!regions.is_empty(), |l| *l.get_ref());
        if let Some(l) = &s.locality
            && *l.get_ref()
            && regions.is_empty()
        {
            return Err(loc.error(l.span(), "locality needs [[region]] tables"));
        }
        let overprovisioning = match &s.overprovisioning {
            Some(f) if !(1.0..=100.0).contains(f.get_ref()) => {
                return Err(loc.error(f.span(), "overprovisioning must be between 1.0 and 100"));
            }
            Some(f) => Some(*f.get_ref()),
            None => s.spillover.then_some(1.4),
        };
        if overprovisioning.is_some() && !locality {
            return Err(loc.error(
                s.name.span(),
                "spillover and overprovisioning need locality (regions)",
            ));
        }
        let panic_threshold = match &s.panic_threshold {
            Some(p) if !(0.0..1.0).contains(p.get_ref()) => {
                return Err(loc.error(p.span(), "panic_threshold must be in [0, 1)"));
            }
            p => p.as_ref().map(|p| *p.get_ref()),
        };
        services.push(Service {
            name,
            host,
            zone,
            locality,
            overprovisioning,
            panic_threshold,
            ttl: ttl_secs(s.ttl.0),
            answers: *s.answers.get_ref() as usize,
            all_down: s.all_down,
            endpoints,
        });
    }

    Ok(Plan {
        source: loc.file_path().to_path_buf(),
        server,
        admin,
        health: HealthSettings {
            max_concurrent_probes: *file.health.max_concurrent_probes.get_ref(),
        },
        zones,
        regions,
        gateways,
        checks,
        services,
        targets,
    })
}

fn compile_regions(loc: &Locator<'_>, defs: &[schema::RegionDef]) -> Result<Vec<Region>> {
    let mut names: HashMap<String, RegionId> = HashMap::new();
    for (i, r) in defs.iter().enumerate() {
        let name = nonempty(loc, &r.name, "region name")?;
        if names.insert(name.clone(), RegionId(i)).is_some() {
            return Err(loc.error(r.name.span(), format!("duplicate region name {name:?}")));
        }
    }
    let mut seen: HashMap<Net, String> = HashMap::new();
    let mut out = Vec::with_capacity(defs.len());
    for (i, r) in defs.iter().enumerate() {
        let name = r.name.get_ref().trim().to_string();
        let mut networks = Vec::new();
        for n in &r.networks {
            let net = Net::parse(n.get_ref())
                .map_err(|e| loc.error(n.span(), format!("invalid network: {e}")))?;
            if let Some(other) = seen.insert(net, name.clone()) {
                return Err(loc.error(
                    n.span(),
                    format!("network {net} is already in region {other:?}"),
                ));
            }
            networks.push(net);
        }
        let mut fallback = Vec::new();
        for f in &r.fallback {
            let j = *names
                .get(f.get_ref().trim())
                .ok_or_else(|| loc.error(f.span(), format!("unknown region {:?}", f.get_ref())))?;
            if j == RegionId(i) || fallback.contains(&j) {
                return Err(loc.error(
                    f.span(),
                    format!("region {:?} repeats in the chain", f.get_ref()),
                ));
            }
            fallback.push(j);
        }
        out.push(Region {
            name,
            networks,
            fallback,
        });
    }
    Ok(out)
}

fn compile_server(loc: &Locator<'_>, s: &schema::ServerDef) -> Result<ServerSettings> {
    let mut listen = Vec::new();
    for l in &s.listen {
        let addr = SocketAddr::from_str(l.get_ref()).map_err(|_| {
            loc.error(
                l.span(),
                format!("invalid listen address {:?}: expected ip:port", l.get_ref()),
            )
        })?;
        listen.push(addr);
    }
    if *s.max_udp_payload.get_ref() < 512 {
        return Err(loc.error(
            s.max_udp_payload.span(),
            "max_udp_payload must be at least 512",
        ));
    }
    Ok(ServerSettings {
        listen,
        udp_sockets: s.udp_sockets,
        max_udp_payload: *s.max_udp_payload.get_ref(),
        tcp_idle_timeout: s.tcp_idle_timeout.0,
        tcp_max_connections: s.tcp_max_connections.max(1),
        grace_period: s.grace_period.0,
    })
}

fn compile_admin(loc: &Locator<'_>, a: &schema::AdminDef) -> Result<AdminSettings> {
    let listen = SocketAddr::from_str(a.listen.get_ref()).map_err(|_| {
        loc.error(
            a.listen.span(),
            format!(
                "invalid admin listen address {:?}: expected ip:port",
                a.listen.get_ref()
            ),
        )
    })?;
    let relative = |f: &str| {
        let p = std::path::Path::new(f);
        if p.is_relative() {
            loc.file_path()
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join(p)
        } else {
            p.to_path_buf()
        }
    };
    let token = match (&a.token, &a.token_file) {
        (Some(_), Some(f)) => {
            return Err(loc.error(f.span(), "give token or token_file, not both"));
        }
        (Some(t), None) => Some((t.get_ref().trim().to_string(), t.span())),
        (None, Some(f)) => {
            let path = relative(f.get_ref());
            let text = std::fs::read_to_string(&path).map_err(|e| {
                loc.error(
                    f.span(),
                    format!("cannot read token_file {}: {e}", path.display()),
                )
            })?;
            Some((
                text.lines().next().unwrap_or("").trim().to_string(),
                f.span(),
            ))
        }
        (None, None) => None,
    };
    let token = match token {
        Some((t, _)) if t.is_empty() => None,
        Some((t, span)) if t.len() < 16 => {
            return Err(loc.error(
                span,
                format!(
                    "the admin token must be at least 16 bytes (it has {})",
                    t.len()
                ),
            ));
        }
        Some((t, _)) => Some(t),
        None => None,
    };
    if !listen.ip().is_loopback() && token.is_none() {
        return Err(loc.error(
            a.listen.span(),
            "an admin listener that is not on loopback needs a token (mutating calls require it)",
        ));
    }
    let state_file = a.state_file.as_deref().map(relative);
    Ok(AdminSettings {
        listen,
        token,
        hosts: a.hosts.iter().map(|h| h.trim().to_string()).collect(),
        state_file,
        ready_deadline: a.ready_deadline.0,
    })
}

fn compile_check(loc: &Locator<'_>, c: &CheckDef, default_user_agent: &str) -> Result<Check> {
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

fn nonempty(loc: &Locator<'_>, s: &Spanned<String>, what: &str) -> Result<String> {
    let v = s.get_ref().trim();
    if v.is_empty() {
        return Err(loc.error(s.span(), format!("{what} is empty")));
    }
    Ok(v.to_string())
}

pub(super) fn parse_ip(loc: &Locator<'_>, s: &Spanned<String>) -> Result<IpAddr> {
    IpAddr::from_str(s.get_ref().trim())
        .map_err(|_| loc.error(s.span(), format!("invalid IP address {:?}", s.get_ref())))
}

/// `ip`, `ip:port` or `[v6]:port`.
fn parse_probe(loc: &Locator<'_>, s: &Spanned<String>) -> Result<(IpAddr, Option<u16>)> {
    let text = s.get_ref().trim();
    if let Ok(sa) = SocketAddr::from_str(text) {
        return Ok((sa.ip(), Some(sa.port())));
    }
    if let Ok(ip) = IpAddr::from_str(text) {
        return Ok((ip, None));
    }
    Err(loc.error(
        s.span(),
        format!("invalid probe address {text:?}: expected ip, ip:port or [ipv6]:port"),
    ))
}
