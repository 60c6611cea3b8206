//! The `[health]` table.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthDef {
    /// Probes in flight at once, across all targets; a probe that has to wait for a
    /// slot starts late, and that lateness is reported.
    #[serde(default = "default_max_probes")]
    pub max_concurrent_probes: Spanned<usize>,
    /// User-Agent of http/https probes, unless a check sets its own.
    pub user_agent: Option<String>,
    /// The local address probes connect from: one address, or a list of at most one
    /// IPv4 and one IPv6 address (each family's probes use their own).
    #[serde(default)]
    pub source_address: Option<Spanned<OneOrMany>>,
}

/// A string, or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl Default for HealthDef {
    fn default() -> Self {
        HealthDef {
            max_concurrent_probes: default_max_probes(),
            user_agent: None,
            source_address: None,
        }
    }
}

fn default_max_probes() -> Spanned<usize> {
    Spanned::new(0..0, 512)
}
