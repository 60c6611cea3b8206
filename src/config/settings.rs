//! The `[server]`, `[admin]` and `[[region]]` tables, compiled into the plan's
//! settings and regions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;

use toml::Spanned;

use super::compile::nonempty;
use super::identity;
use super::schema;
use super::{ConfigError, Locator};
use crate::plan::{
    AdminSettings, Net, Region, RegionId, RrlSettings, ServerSettings, XdpMode, XdpSettings,
};

type Result<T> = std::result::Result<T, ConfigError>;

pub(super) fn compile_regions(
    loc: &Locator<'_>,
    defs: &[schema::RegionDef],
) -> Result<Vec<Region>> {
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

/// More of anything that holds a file descriptor than Linux lets a process open
/// (`fs.nr_open`, 1,048,576 by default) cannot be served; larger values also overflow
/// tokio's semaphores.
pub(super) const MAX_DESCRIPTORS: usize = 1 << 20;
const MAX_UDP_SOCKETS: usize = 1024;

/// A count of descriptor-holding things: from 1 to [`MAX_DESCRIPTORS`].
pub(super) fn count_in_range(loc: &Locator<'_>, n: &Spanned<usize>, what: &str) -> Result<()> {
    let v = *n.get_ref();
    if v == 0 || v > MAX_DESCRIPTORS {
        return Err(loc.error(
            n.span(),
            format!("{what}: {v} is out of range (1 to {MAX_DESCRIPTORS})"),
        ));
    }
    Ok(())
}

/// Queues one AF_XDP listener may serve (a thread and 2 MiB of frames each).
const MAX_XDP_QUEUES: u32 = 256;

fn compile_xdp(
    loc: &Locator<'_>,
    s: &schema::ServerDef,
    listen: &[SocketAddr],
) -> Result<Option<XdpSettings>> {
    let Some(name) = &s.xdp_interface else {
        // Settings of a listener that is not there would be silently dropped.
        let stray = (s.xdp_queues.as_ref().map(|q| ("xdp_queues", q.span())))
            .or_else(|| s.xdp_mode.as_ref().map(|m| ("xdp_mode", m.span())));
        if let Some((key, span)) = stray {
            return Err(loc.error(
                span,
                format!("{key} needs xdp_interface: without it there is no AF_XDP listener"),
            ));
        }
        return Ok(None);
    };
    let n = name.get_ref();
    // IFNAMSIZ is 16 with the NUL.
    if n.is_empty() || n.len() > 15 || n.contains(['/', '\0']) || n.contains(char::is_whitespace) {
        return Err(loc.error(
            name.span(),
            format!("xdp_interface {n:?} is not a network interface name"),
        ));
    }
    let q = s.xdp_queues.as_ref().map_or(1, |q| *q.get_ref());
    if let Some(queues) = &s.xdp_queues
        && (q == 0 || q > MAX_XDP_QUEUES)
    {
        return Err(loc.error(
            queues.span(),
            format!("xdp_queues: {q} is out of range (1 to {MAX_XDP_QUEUES})"),
        ));
    }
    // The program matches each address exactly, and a reply that must leave through
    // the kernel needs the socket of the very address the query was sent to.
    if let Some(i) = listen
        .iter()
        .position(|a| a.is_ipv4() && a.ip().is_unspecified())
    {
        return Err(loc.error(
            s.listen[i].span(),
            "with xdp_interface, an IPv4 listen address must be a specific address, not 0.0.0.0",
        ));
    }
    if !listen.iter().any(|a| a.is_ipv4()) {
        return Err(loc.error(
            name.span(),
            "xdp_interface serves IPv4 listen addresses, and [server] listen has none",
        ));
    }
    Ok(Some(XdpSettings {
        interface: n.clone(),
        queues: q,
        mode: match s.xdp_mode.as_ref().map(|m| *m.get_ref()) {
            None | Some(schema::XdpModeDef::Generic) => XdpMode::Generic,
            Some(schema::XdpModeDef::Native) => XdpMode::Native,
        },
    }))
}

pub(super) fn compile_server(loc: &Locator<'_>, s: &schema::ServerDef) -> Result<ServerSettings> {
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
    for d in [&s.tcp_idle_timeout, &s.tcp_message_timeout] {
        if d.get_ref().0.is_zero() {
            return Err(loc.error(d.span(), "a TCP timeout must be longer than 0s"));
        }
    }
    count_in_range(loc, &s.tcp_max_connections, "tcp_max_connections")?;
    count_in_range(
        loc,
        &s.tcp_max_connections_per_source,
        "tcp_max_connections_per_source",
    )?;
    if *s.udp_sockets.get_ref() > MAX_UDP_SOCKETS {
        return Err(loc.error(
            s.udp_sockets.span(),
            format!("udp_sockets must be at most {MAX_UDP_SOCKETS} per address"),
        ));
    }
    let xdp = compile_xdp(loc, s, &listen)?;
    Ok(ServerSettings {
        listen,
        xdp,
        udp_sockets: *s.udp_sockets.get_ref(),
        max_udp_payload: *s.max_udp_payload.get_ref(),
        tcp_idle_timeout: s.tcp_idle_timeout.get_ref().0,
        tcp_message_timeout: s.tcp_message_timeout.get_ref().0,
        tcp_max_connections: *s.tcp_max_connections.get_ref(),
        tcp_max_connections_per_source: *s.tcp_max_connections_per_source.get_ref(),
        grace_period: s.grace_period.0,
        cookies: s.cookies,
        cookie_secrets: identity::cookie_secrets(loc, s)?,
        nsid: identity::nsid(loc, s)?,
        version: identity::version(s),
    })
}

pub(super) fn compile_rrl(loc: &Locator<'_>, r: &schema::RrlDef) -> Result<RrlSettings> {
    if *r.responses_per_second.get_ref() == 0 {
        return Err(loc.error(
            r.responses_per_second.span(),
            "responses_per_second must be at least 1 (remove [rrl] to turn it off)",
        ));
    }
    let window = r.window.get_ref().0;
    if window.as_secs() < 1 {
        return Err(loc.error(r.window.span(), "the rrl window is at least 1s"));
    }
    for (p, max) in [(&r.ipv4_prefix, 32), (&r.ipv6_prefix, 128)] {
        if *p.get_ref() > max {
            return Err(loc.error(p.span(), format!("a prefix length is at most {max}")));
        }
    }
    Ok(RrlSettings {
        responses_per_second: *r.responses_per_second.get_ref(),
        window,
        slip: r.slip,
        ipv4_prefix: *r.ipv4_prefix.get_ref(),
        ipv6_prefix: *r.ipv6_prefix.get_ref(),
    })
}

pub(super) fn compile_admin(loc: &Locator<'_>, a: &schema::AdminDef) -> Result<AdminSettings> {
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
