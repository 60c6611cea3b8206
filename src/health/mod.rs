//! The health engine: one task per distinct probe target (address + check), shared by
//! every service whose endpoints use it. Each task probes on a fixed schedule, applies
//! rise/fall hysteresis, and keeps its verdict in a `TargetState` that the rest of the
//! program reads; on a flip it wakes the publisher, which builds the next snapshot.
//!
//! - `engine`: the set of running targets, kept across reloads;
//! - `task`: the loop of one target (schedule, probe slot, timeout, verdict);
//! - `schedule`, `hysteresis`: the pure rules that loop follows;
//! - `state`: what the rest of the program reads;
//! - `failure`: why a probe failed, typed, with the metric outcome it counts as;
//! - `probe` and one file per probe kind: `tcp`, `tls`, `http`; `expiry` watches
//!   certificate lifetimes.
//!
//! Scheduling: a target's probes start at a random phase within the check's jitter and
//! then run every `interval` exactly, so the phase spreads targets over the interval
//! while each target keeps a steady period (which is what the failover bounds
//! `interval × fall + timeout` rely on). A probe is bounded by `timeout`; since
//! timeout < interval, a probe never delays its successor.

mod engine;
mod expiry;
mod failure;
mod http;
mod hysteresis;
mod probe;
mod schedule;
mod state;
mod task;
mod tcp;
mod tls;

pub use engine::Engine;
pub use failure::{IoFailure, IoKind, ProbeFailure, ProbeResult, SetupError, Stage, TlsFailure};
pub use hysteresis::Hysteresis;
pub use state::{Detail, TargetState};
