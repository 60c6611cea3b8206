//! The TOML file as written by the operator. Every table denies unknown keys so that a
//! typo is an error with a location, not a silently ignored setting. Fields that later
//! validation may complain about are `Spanned`, so the complaint can name line and column.

use std::collections::BTreeMap;

use serde::Deserialize;

mod cluster;
mod health;
mod rrl;
mod server;
pub use cluster::{ClusterDef, QuorumDef};
pub use health::{HealthDef, OneOrMany};
pub use rrl::RrlDef;
pub use server::{AdminDef, ServerDef, XdpModeDef};
use toml::Spanned;

use super::duration::Dur;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub server: ServerDef,
    /// The admin HTTP listener; absent = no admin listener.
    pub admin: Option<AdminDef>,
    #[serde(default)]
    pub health: HealthDef,
    /// Response rate limiting; off without this table.
    pub rrl: Option<RrlDef>,
    pub cluster: Option<ClusterDef>,
    #[serde(default, rename = "zone")]
    pub zones: Vec<ZoneDef>,
    #[serde(default, rename = "region")]
    pub regions: Vec<RegionDef>,
    #[serde(default, rename = "gateway")]
    pub gateways: Vec<GatewayDef>,
    #[serde(default, rename = "check")]
    pub checks: Vec<CheckDef>,
    #[serde(default, rename = "service")]
    pub services: Vec<ServiceDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneDef {
    pub origin: Spanned<String>,
    /// TTL of static records that set none, and of the SOA and NS records.
    #[serde(default = "default_zone_ttl")]
    pub ttl: Dur,
    #[serde(default)]
    pub soa: SoaDef,
    #[serde(default)]
    pub ns: Vec<NsDef>,
    #[serde(default, rename = "record")]
    pub records: Vec<RecordDef>,
}

fn default_zone_ttl() -> Dur {
    Dur::secs(300)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoaDef {
    /// Primary server name; default: the first NS name.
    pub mname: Option<Spanned<String>>,
    /// Responsible mailbox as a name; default: `hostmaster.<origin>`.
    pub rname: Option<Spanned<String>>,
    #[serde(default = "default_serial")]
    pub serial: u32,
    #[serde(default = "default_refresh")]
    pub refresh: Dur,
    #[serde(default = "default_retry")]
    pub retry: Dur,
    #[serde(default = "default_expire")]
    pub expire: Dur,
    /// Negative-caching TTL (RFC 2308): NXDOMAIN and NODATA answers carry
    /// min(SOA TTL, this).
    #[serde(default = "default_minimum")]
    pub minimum: Dur,
}

impl Default for SoaDef {
    fn default() -> Self {
        SoaDef {
            mname: None,
            rname: None,
            serial: default_serial(),
            refresh: default_refresh(),
            retry: default_retry(),
            expire: default_expire(),
            minimum: default_minimum(),
        }
    }
}

fn default_serial() -> u32 {
    1
}
fn default_refresh() -> Dur {
    Dur::secs(3600)
}
fn default_retry() -> Dur {
    Dur::secs(600)
}
fn default_expire() -> Dur {
    Dur::secs(604_800)
}
fn default_minimum() -> Dur {
    Dur::secs(30)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NsDef {
    pub name: Spanned<String>,
    /// Glue addresses; required when the name is inside the zone.
    #[serde(default)]
    pub addresses: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordDef {
    /// Relative to the zone origin (`www`, `@` for the apex) unless it ends with a dot.
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub rtype: Spanned<String>,
    /// One text, or for TXT a list of the record's exact character-strings.
    pub value: Spanned<RecordValue>,
    pub ttl: Option<Dur>,
    /// TXT only: split a single text longer than 255 bytes into 255-byte strings
    /// (without it such a text is an error: the split changes the record).
    #[serde(default)]
    pub split: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RecordValue {
    One(String),
    Strings(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionDef {
    pub name: Spanned<String>,
    /// Client networks (IPv4 and IPv6 CIDRs); the longest prefix across all regions wins.
    #[serde(default)]
    pub networks: Vec<Spanned<String>>,
    /// Regions to fail over to, in order, when this one has nothing healthy.
    #[serde(default)]
    pub fallback: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayDef {
    pub name: Spanned<String>,
    /// Addresses handed out in answers: IPv4 for A, IPv6 for AAAA.
    pub addresses: Vec<Spanned<String>>,
    /// The gateway's region: must name a `[[region]]` when regions are configured.
    #[serde(default)]
    pub region: Option<Spanned<String>>,
    /// Where to probe when that differs from the answer address (NAT, internal VIP):
    /// `"10.0.0.5"`, `"10.0.0.5:8443"`, `"[fd00::5]:8443"`.
    pub probe: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    Tcp,
    Tls,
    Http,
    Https,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckDef {
    pub name: Spanned<String>,
    pub kind: CheckKind,
    /// Port to probe when the gateway's probe address gives none (default 80 for http).
    pub port: Option<u16>,
    #[serde(default = "default_interval")]
    pub interval: Spanned<Dur>,
    #[serde(default = "default_timeout")]
    pub timeout: Spanned<Dur>,
    /// Consecutive successes that bring a DOWN endpoint UP.
    #[serde(default = "default_threshold")]
    pub rise: Spanned<u32>,
    /// Consecutive failures that take an UP endpoint DOWN.
    #[serde(default = "default_threshold")]
    pub fall: Spanned<u32>,
    /// Each probe is delayed by a random amount up to this, so that probes sharing an
    /// interval do not fire together. Default: a tenth of the interval.
    pub jitter: Option<Spanned<Dur>>,
    /// Take Host and SNI from each service (its `host`, default its name), so that one
    /// gateway is judged per service. Probes identical across services are still shared.
    #[serde(default)]
    pub per_service: bool,

    // tls and https only.
    /// Server name to send and verify; default: the Host, else none.
    pub sni: Option<Spanned<String>>,
    /// PEM file of trusted CA certificates; default: the system roots.
    pub ca_file: Option<Spanned<String>>,
    /// Accept any certificate; the handshake must still complete.
    #[serde(default)]
    pub insecure: bool,
    /// Report (not fail) a certificate that expires within this. Default 14 days.
    pub cert_expiry_warning: Option<Dur>,

    // http and https only.
    pub user_agent: Option<Spanned<String>>,
    #[serde(default)]
    pub method: Option<Spanned<String>>,
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    /// Host header; default: the probe address.
    #[serde(default)]
    pub host: Option<Spanned<String>>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    /// Accepted status codes: numbers or `"200-399"` ranges. Default 200-399.
    #[serde(default)]
    pub expect_status: Option<Spanned<Vec<StatusSpec>>>,
    /// The body must contain this text, within the first `body_limit` bytes.
    #[serde(default)]
    pub expect_body: Option<Spanned<String>>,
    #[serde(default = "default_body_limit")]
    pub body_limit: usize,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum StatusSpec {
    Code(u16),
    Range(String),
}

fn default_interval() -> Spanned<Dur> {
    Spanned::new(0..0, Dur::secs(2))
}
fn default_timeout() -> Spanned<Dur> {
    Spanned::new(0..0, Dur::secs(1))
}
fn default_threshold() -> Spanned<u32> {
    Spanned::new(0..0, 2)
}
fn default_body_limit() -> usize {
    4096
}

pub use crate::plan::{AllDown, Selection};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDef {
    /// Absolute owner name (trailing dot optional); must lie inside a zone.
    pub name: Spanned<String>,
    /// The name clients use for the service, sent as Host and SNI by `per_service`
    /// checks (e.g. `bookinfo.example.com`). Default: the service name.
    pub host: Option<Spanned<String>>,
    #[serde(default = "default_service_ttl")]
    pub ttl: Dur,
    /// Named check; without one, endpoints are always considered healthy.
    pub check: Option<Spanned<String>>,
    /// How many distinct endpoints to put in one answer.
    #[serde(default = "default_answers")]
    pub answers: Spanned<u8>,
    #[serde(default)]
    pub all_down: AllDown,
    /// "random" (a weighted draw per query) or "consistent" (keyed by the client).
    #[serde(default)]
    pub selection: Selection,
    /// Prefer endpoints in the client's region. Default: on when regions are configured.
    pub locality: Option<Spanned<bool>>,
    /// Gradual spillover to the next region (overprovisioning factor 1.4).
    #[serde(default)]
    pub spillover: bool,
    /// The overprovisioning factor; setting it turns spillover on.
    pub overprovisioning: Option<Spanned<f64>>,
    /// When the healthy share of all endpoints' weight falls below this (0..1), answer
    /// as if all were healthy. Off by default.
    pub panic_threshold: Option<Spanned<f64>>,
    pub endpoints: Spanned<Vec<EndpointDef>>,
}

fn default_service_ttl() -> Dur {
    Dur::secs(30)
}
fn default_answers() -> Spanned<u8> {
    Spanned::new(0..0, 1)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointDef {
    pub gateway: Spanned<String>,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}
