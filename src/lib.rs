//! gslb: an authoritative DNS server for global server load balancing with active
//! health checks. See `README.md` for the operator's view and
//! `ARCHITECTURE` notes in the module docs for the shape:
//!
//! config (TOML) → `Plan` → health engine → `Snapshot` (ArcSwap) → DNS front.

#![forbid(unsafe_code)]

pub mod admin;
pub mod answer;
pub mod cluster;
pub mod config;
pub mod ctl;
pub mod demo;
pub mod dns;
pub mod explain;
pub mod health;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod overrides;
pub mod plan;
pub mod publisher;
pub mod rng;
pub mod snapshot;
