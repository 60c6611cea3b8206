//! The compiled, immutable model of one configuration. Built once per load by
//! `config::compile`, shared as `Arc<Plan>`, never mutated. Everything here is already
//! validated: indices point at existing items, names are lower-case FQDNs, durations are
//! sane.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use hickory_proto::rr::{Name, Record};

mod ids;
mod net;
mod values;

pub use ids::{CheckId, EndpointId, GatewayId, RegionId, ServiceId, TargetId, ZoneId};
pub use net::{Net, NetError};
pub use values::{CaCertificates, InvalidHost, ShowDuration, host_name};

/// What a service answers when no endpoint is healthy. A plain value the config
/// deserializes straight into, so it lives here, below `config`.
#[derive(Debug, serde::Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum AllDown {
    /// Answer as if every endpoint were healthy (Route 53 and gdnsd behaviour).
    #[default]
    FailOpen,
    /// Answer NODATA.
    FailClosed,
}

/// How a service picks among its candidates. A plain value the config deserializes
/// straight into, like `AllDown`.
#[derive(Debug, serde::Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// A weighted random draw per query.
    #[default]
    Random,
    /// Keyed by the client (ECS prefix, else the resolver's /24 or /56) with weighted
    /// rendezvous hashing: every replica gives a client the same answer, and a client
    /// keeps its gateway while that gateway stays a candidate.
    Consistent,
}

#[derive(Debug)]
pub struct Plan {
    /// The file this plan came from (for messages).
    pub source: PathBuf,
    pub server: ServerSettings,
    pub admin: Option<AdminSettings>,
    pub health: HealthSettings,
    pub rrl: Option<RrlSettings>,
    /// Replicas sharing overrides through NATS JetStream KV; `None`: a single node.
    pub cluster: Option<ClusterSettings>,
    pub zones: Vec<Zone>,
    pub regions: Vec<Region>,
    pub gateways: Vec<Gateway>,
    pub checks: Vec<Check>,
    pub services: Vec<Service>,
    /// Distinct things to probe: one per (probe address, check), however many services
    /// and gateways share it.
    pub targets: Vec<Target>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpSettings {
    pub interface: String,
    pub queues: u32,
    pub mode: XdpMode,
}

/// Where the XDP program runs: after the kernel built its socket buffer (any
/// interface) or in the driver (drivers with XDP support; not `lo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    Generic,
    Native,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: Vec<SocketAddr>,
    /// The AF_XDP listener for the IPv4 listen addresses, if configured.
    pub xdp: Option<XdpSettings>,
    pub udp_sockets: usize,
    pub max_udp_payload: u16,
    pub tcp_idle_timeout: Duration,
    pub tcp_message_timeout: Duration,
    pub tcp_max_connections: usize,
    pub tcp_max_connections_per_source: usize,
    pub grace_period: Duration,
    /// Whether DNS Cookies are on, and the secrets from `cookie_secret_file` (empty:
    /// a random one per start).
    pub cookies: bool,
    pub cookie_secrets: Vec<[u8; 16]>,
    /// NSID and CH TXT id.server. / hostname.bind.
    pub nsid: Option<String>,
    /// CH TXT version.bind. / version.server. (`None`: hidden).
    pub version: Option<String>,
}

/// Response rate limiting, see `dns::rrl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RrlSettings {
    pub responses_per_second: u32,
    pub window: Duration,
    pub slip: u32,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettings {
    /// Probes in flight at once, across all targets.
    pub max_concurrent_probes: usize,
    /// `source_address`: where probes of each family connect from (`None`: the
    /// kernel's choice).
    pub source_v4: Option<Ipv4Addr>,
    pub source_v6: Option<Ipv6Addr>,
}

impl HealthSettings {
    /// The local address a probe of `target` binds to, if one is configured.
    pub fn source_for(&self, target: SocketAddr) -> Option<std::net::IpAddr> {
        match target {
            SocketAddr::V4(_) => self.source_v4.map(Into::into),
            SocketAddr::V6(_) => self.source_v6.map(Into::into),
        }
    }
}

/// `[cluster]`: the NATS JetStream key-value store the replicas share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// This replica's name, unique among the replicas (`[A-Za-z0-9_-]`).
    pub name: String,
    /// NATS server URLs (`nats://host:port`, `tls://host:port`).
    pub servers: Vec<String>,
    /// The bucket of operator overrides (`[A-Za-z0-9_-]`); created if missing.
    pub bucket: String,
    /// Stream replicas of a bucket gslb creates (a RAFT group of that size).
    pub replicas: usize,
    /// A store call (a drain) must be accepted within this, or it is refused.
    pub timeout: Duration,
    /// How the live replicas' verdicts on a target combine.
    pub quorum: Quorum,
    /// How often this replica refreshes its verdicts in the store; a replica whose
    /// verdicts are older than three of these no longer counts.
    pub heartbeat: Duration,
    pub credentials_file: Option<PathBuf>,
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate and key, for servers that verify clients.
    pub tls_client: Option<(PathBuf, PathBuf)>,
}

/// How the live replicas' verdicts on one target combine into the one every replica
/// answers with. Each verdict is already past its replica's rise/fall hysteresis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quorum {
    /// Up while at least half of the replicas see it up (a tie keeps it: one broken
    /// vantage point of two must not fail a service over).
    Majority,
    /// Up while any replica sees it up.
    Any,
    /// Up only while every replica sees it up.
    All,
    /// Up while at least this many thousandths of the replicas see it up.
    PerMille(u16),
}

impl Quorum {
    /// The name `/v1/state` and explain print.
    pub fn describe(&self) -> String {
        match self {
            Quorum::Majority => "majority".into(),
            Quorum::Any => "any".into(),
            Quorum::All => "all".into(),
            Quorum::PerMille(m) => format!("{}", f64::from(*m) / 1000.0),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    /// Bearer token (from `token` or `token_file`); at least 16 bytes.
    pub token: Option<String>,
    /// Names besides IP addresses and `localhost` that `Host` may give.
    pub hosts: Vec<String>,
    pub state_file: Option<PathBuf>,
    pub ready_deadline: Duration,
}

#[derive(Debug)]
pub struct Zone {
    /// Lower-case FQDN.
    pub origin: Name,
    pub soa: Record,
    /// TTL for negative answers: min(SOA TTL, SOA minimum), per RFC 2308 §5.
    pub negative_ttl: u32,
    pub ns: Vec<Record>,
    /// A/AAAA records of in-zone name servers, sent as additional data with NS answers.
    pub glue: Vec<Record>,
    /// Static records, including the glue addresses (they are zone data too).
    pub records: Vec<Record>,
}

#[derive(Debug)]
pub struct Region {
    pub name: String,
    pub networks: Vec<Net>,
    /// The regions to fail over to, in order.
    pub fallback: Vec<RegionId>,
}

impl Region {
    /// This region followed by its fallbacks.
    pub fn chain(&self, me: RegionId) -> Vec<RegionId> {
        std::iter::once(me)
            .chain(self.fallback.iter().copied())
            .collect()
    }
}

#[derive(Debug)]
pub struct Gateway {
    pub name: String,
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
    /// The region label as written.
    pub region: Option<String>,
    /// The region, when regions are configured.
    pub region_index: Option<RegionId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Check {
    pub name: String,
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    pub jitter: Duration,
    /// tls and https checks.
    pub tls: Option<TlsSettings>,
    /// Host and SNI come from each service (its `host`, by default its name), so each
    /// service sees its own result through a shared gateway.
    pub per_service: bool,
    pub user_agent: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TlsSettings {
    /// Server name to send and verify; default: the Host (per-service or the check's),
    /// else none (the certificate must then be valid for the probe IP).
    pub sni: Option<String>,
    /// PEM bundle of trusted roots; default: the system's. Kept for messages: the
    /// certificates themselves are in `ca_certs`.
    pub ca_file: Option<PathBuf>,
    /// The certificates of `ca_file`, read once when the plan was compiled (never
    /// empty when `ca_file` is set, empty otherwise). Compared by content, so a bundle
    /// rotated under the same path makes a different check at the next reload.
    pub ca_certs: CaCertificates,
    /// Accept any certificate (the handshake itself must still succeed).
    pub insecure: bool,
    /// A certificate expiring within this is reported (log, metric), not failed.
    pub expiry_warning: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CheckKind {
    Tcp,
    Tls,
    Http(HttpCheck),
    Https(HttpCheck),
}

impl CheckKind {
    pub fn label(&self) -> &'static str {
        match self {
            CheckKind::Tcp => "tcp",
            CheckKind::Tls => "tls",
            CheckKind::Http(_) => "http",
            CheckKind::Https(_) => "https",
        }
    }

    pub fn http(&self) -> Option<&HttpCheck> {
        match self {
            CheckKind::Http(h) | CheckKind::Https(h) => Some(h),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpCheck {
    pub method: String,
    pub path: String,
    /// Host header; `None` sends the probe address.
    pub host: Option<String>,
    pub headers: Vec<(String, String)>,
    pub expect_status: Vec<RangeInclusive<u16>>,
    pub expect_body: Option<String>,
    pub body_limit: usize,
}

impl HttpCheck {
    pub fn status_ok(&self, code: u16) -> bool {
        self.expect_status.iter().any(|r| r.contains(&code))
    }
}

#[derive(Debug)]
pub struct Service {
    /// Lower-case FQDN.
    pub name: Name,
    pub zone: ZoneId,
    pub ttl: u32,
    pub answers: usize,
    pub all_down: AllDown,
    pub selection: Selection,
    /// Answers depend on the client's region.
    pub locality: bool,
    /// Spillover and panic settings, which few services have (`None`: neither).
    pub tuning: Option<Box<Tuning>>,
    pub endpoints: Box<[Endpoint]>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tuning {
    /// Overprovisioning factor for gradual spillover; `None` = all-or-nothing failover.
    pub overprovisioning: Option<f64>,
    /// Healthy-weight share below which the service answers as if all were healthy.
    pub panic_threshold: Option<f64>,
}

impl Service {
    /// Overprovisioning factor for gradual spillover; `None` = all-or-nothing failover.
    pub fn overprovisioning(&self) -> Option<f64> {
        self.tuning.as_ref().and_then(|t| t.overprovisioning)
    }

    /// Healthy-weight share below which the service answers as if all were healthy.
    pub fn panic_threshold(&self) -> Option<f64> {
        self.tuning.as_ref().and_then(|t| t.panic_threshold)
    }
}

/// 16 bytes: a config of 10,000 services holds tens of thousands.
#[derive(Debug)]
pub struct Endpoint {
    pub gateway: GatewayId,
    pub weight: u32,
    /// The target whose verdict this endpoint follows; `NO_TARGET` when the service
    /// has no check (always healthy).
    target: u32,
}

const NO_TARGET: u32 = u32::MAX;

impl Endpoint {
    pub fn new(gateway: GatewayId, weight: u32, target: Option<TargetId>) -> Endpoint {
        let target = target.map_or(NO_TARGET, |t| {
            u32::try_from(t.index()).expect("fewer than 2^32 - 1 probe targets")
        });
        Endpoint {
            gateway,
            weight,
            target,
        }
    }

    /// The probe target whose verdict this endpoint follows; `None` when the service
    /// has no check (always healthy).
    pub fn target(&self) -> Option<TargetId> {
        (self.target != NO_TARGET).then_some(TargetId(self.target as usize))
    }
}

#[derive(Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub check: CheckId,
    /// Host/SNI for a per-service check; `None` uses the check's own settings.
    pub host: Option<String>,
    /// Gateways probed through this target (usually one).
    pub gateways: Vec<GatewayId>,
}

impl Plan {
    /// A short human name for a target, used in logs: `edge-1 127.0.0.2:8080 (check hc)`.
    pub fn target_label(&self, t: TargetId) -> String {
        let target = &self.targets[t];
        let gws: Vec<&str> = target
            .gateways
            .iter()
            .map(|&g| self.gateways[g].name.as_str())
            .collect();
        match &target.host {
            Some(h) => format!(
                "{} {} (check {}, host {h})",
                gws.join(","),
                target.addr,
                self.checks[target.check].name
            ),
            None => format!(
                "{} {} (check {})",
                gws.join(","),
                target.addr,
                self.checks[target.check].name
            ),
        }
    }

    /// The name replicas know target `t` by in their shared verdicts: the probe
    /// address, the check and the Host, the same on every replica with the same config.
    pub fn target_key(&self, t: TargetId) -> String {
        let target = &self.targets[t];
        let check = &self.checks[target.check].name;
        match &target.host {
            Some(h) => format!("{} {check} {h}", target.addr),
            None => format!("{} {check}", target.addr),
        }
    }

    /// The target that probes `addr` with the check named `check` and this Host.
    pub fn target_at(&self, addr: SocketAddr, check: &str, host: Option<&str>) -> Option<TargetId> {
        let found = self.targets.iter().position(|t| {
            t.addr == addr && self.checks[t.check].name == check && t.host.as_deref() == host
        });
        found.map(TargetId)
    }

    /// Names of the services whose answers depend on target `t`.
    pub fn target_services(&self, t: TargetId) -> Vec<String> {
        let mut out: Vec<String> = self
            .services
            .iter()
            .filter(|s| s.endpoints.iter().any(|e| e.target() == Some(t)))
            .map(|s| s.name.to_string())
            .collect();
        out.dedup();
        out
    }
}
