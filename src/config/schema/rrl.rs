//! The `[rrl]` table.

use serde::Deserialize;
use toml::Spanned;

use super::super::duration::Dur;

/// Response rate limiting (Knot/NSD/BIND RRL semantics), UDP only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RrlDef {
    /// Responses per second one client prefix gets, per response kind.
    pub responses_per_second: Spanned<u32>,
    /// Seconds of excess a prefix is remembered for: its debt is at most this many
    /// seconds' worth of budget.
    #[serde(default = "default_rrl_window")]
    pub window: Spanned<Dur>,
    /// Every Nth limited response is sent truncated (TC=1) instead of dropped; 0 drops
    /// them all, 1 truncates them all.
    #[serde(default = "default_slip")]
    pub slip: u32,
    #[serde(default = "default_v4_prefix")]
    pub ipv4_prefix: Spanned<u8>,
    #[serde(default = "default_v6_prefix")]
    pub ipv6_prefix: Spanned<u8>,
}

fn default_rrl_window() -> Spanned<Dur> {
    Spanned::new(0..0, Dur::secs(15))
}
fn default_slip() -> u32 {
    2
}
fn default_v4_prefix() -> Spanned<u8> {
    Spanned::new(0..0, 24)
}
fn default_v6_prefix() -> Spanned<u8> {
    Spanned::new(0..0, 56)
}
