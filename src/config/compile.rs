//! Validation: schema types in, `Plan` out. Each check that can fail points at the
//! offending value's span.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use hickory_proto::rr::Name;
use toml::Spanned;

use super::check::compile_check;
use super::schema::{self};
use super::settings::{
    compile_admin, compile_regions, compile_rrl, compile_server, count_in_range,
};
use super::zone::{compile_zone, find_zone, parse_name, reject_cname_loops, ttl_secs};
use super::{ConfigError, Locator};
use crate::plan::{
    CheckId, CheckKind, Endpoint, Gateway, GatewayId, HealthSettings, Plan, RegionId, Service,
    Target, TargetId, Tuning,
};

type Result<T> = std::result::Result<T, ConfigError>;

pub(crate) fn compile(loc: &Locator<'_>, file: schema::File) -> Result<Plan> {
    let server = compile_server(loc, &file.server)?;
    count_in_range(
        loc,
        &file.health.max_concurrent_probes,
        "max_concurrent_probes",
    )?;
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
    reject_cname_loops(loc, &file.zones, &zones)?;

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
            // RFC 2181 §5: an RRset holds each record once; two gateways that share an
            // address would put it in one answer twice (and weigh it double).
            let addrs = |g: GatewayId| {
                let g = &gateways[g];
                let v4 = g.v4.iter().map(|a| IpAddr::V4(*a));
                v4.chain(g.v6.iter().map(|a| IpAddr::V6(*a)))
                    .collect::<Vec<_>>()
            };
            for other in &endpoints {
                let theirs = addrs(other.gateway);
                if let Some(a) = addrs(gw).into_iter().find(|a| theirs.contains(a)) {
                    return Err(loc.error(
                        e.gateway.span(),
                        format!(
                            "gateway {:?} has address {a}, as gateway {:?} does: service {name} would answer it twice",
                            e.gateway.get_ref(),
                            gateways[other.gateway].name
                        ),
                    ));
                }
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
            endpoints.push(Endpoint::new(gw, e.weight, target));
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
            zone,
            locality,
            tuning: (overprovisioning.is_some() || panic_threshold.is_some()).then(|| {
                Box::new(Tuning {
                    overprovisioning,
                    panic_threshold,
                })
            }),
            ttl: ttl_secs(s.ttl.0),
            answers: *s.answers.get_ref() as usize,
            all_down: s.all_down,
            selection: s.selection,
            endpoints: endpoints.into(),
        });
    }

    let (source_v4, source_v6) = super::cluster::source_addresses(loc, &file.health)?;
    let cluster = match &file.cluster {
        Some(c) => Some(super::cluster::compile_cluster(loc, c, admin.as_ref())?),
        None => None,
    };
    Ok(Plan {
        source: loc.file_path().to_path_buf(),
        server,
        admin,
        health: HealthSettings {
            max_concurrent_probes: *file.health.max_concurrent_probes.get_ref(),
            source_v4,
            source_v6,
        },
        cluster,
        rrl: match &file.rrl {
            Some(r) => Some(compile_rrl(loc, r)?),
            None => None,
        },
        zones,
        regions,
        gateways,
        checks,
        services,
        targets,
    })
}

pub(super) fn nonempty(loc: &Locator<'_>, s: &Spanned<String>, what: &str) -> Result<String> {
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
