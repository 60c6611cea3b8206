//! The `[cluster]` table.

use serde::Deserialize;
use toml::Spanned;

use super::super::duration::Dur;

/// Replicas that share operator overrides through NATS JetStream key-value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterDef {
    /// This replica's name; unique among the replicas.
    pub name: Spanned<String>,
    /// One or more NATS servers, `nats://host:port` (or `tls://`).
    pub servers: Spanned<Vec<Spanned<String>>>,
    /// The key-value bucket of overrides, created if missing.
    #[serde(default = "default_bucket")]
    pub bucket: Spanned<String>,
    /// Stream replicas of a bucket that gslb creates (1, 3 or 5 in a NATS cluster).
    #[serde(default = "default_replicas")]
    pub replicas: Spanned<usize>,
    /// How long a store call may take before it is refused.
    #[serde(default = "default_timeout")]
    pub timeout: Spanned<Dur>,
    /// How the live replicas' verdicts on a target combine: "majority", "any", "all",
    /// or the fraction (0 to 1) of them that must see it up.
    pub quorum: Option<Spanned<QuorumDef>>,
    /// How often a replica refreshes its verdicts; one not refreshed within three of
    /// these no longer counts.
    #[serde(default = "default_heartbeat")]
    pub heartbeat: Spanned<Dur>,
    /// A NATS credentials file (JWT and NKey seed); relative to the config file.
    pub credentials_file: Option<Spanned<String>>,
    /// CA bundle (PEM) that signs the servers' certificates.
    pub tls_ca_file: Option<Spanned<String>>,
    /// Client certificate and its key (PEM), both or neither.
    pub tls_cert_file: Option<Spanned<String>>,
    pub tls_key_file: Option<Spanned<String>>,
}

/// `quorum`: a rule by name, or a fraction.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum QuorumDef {
    Rule(String),
    Fraction(f64),
}

fn default_heartbeat() -> Spanned<Dur> {
    Spanned::new(0..0, Dur::secs(1))
}
fn default_bucket() -> Spanned<String> {
    Spanned::new(0..0, "gslb".to_string())
}
fn default_replicas() -> Spanned<usize> {
    Spanned::new(0..0, 1)
}
fn default_timeout() -> Spanned<Dur> {
    Spanned::new(0..0, Dur::secs(2))
}
