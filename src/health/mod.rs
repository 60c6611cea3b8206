//! The health engine: one task per distinct probe target (address + check), shared by
//! every service whose endpoints use it. Each task probes on a fixed schedule, applies
//! rise/fall hysteresis, and reports only state *flips* to the publisher, which folds
//! them into a new snapshot.
//!
//! Scheduling: a target's probes start at a random phase within the check's jitter and
//! then run every `interval` exactly, so the phase spreads targets over the interval
//! while each target keeps a steady period (which is what the failover bounds
//! `interval × fall + timeout` rely on). A probe is bounded by `timeout`; the next one is
//! never started while one is in flight, and since timeout < interval a probe cannot
//! delay its successor. Tasks are independent, so a hanging target stalls nobody else.

mod http;
mod tcp;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use crate::answer::Rng;
use crate::plan::{CheckKind, Plan};

/// Why a probe failed, in a form fit for a log line: `http 503 "no healthy upstreams"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeError(pub String);

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A state flip of one target, sent to the publisher.
#[derive(Debug, Clone)]
pub struct Flip {
    pub target: usize,
    pub up: bool,
}

/// Rise/fall hysteresis for one target. Starts UP (endpoints are assumed healthy until
/// probes say otherwise).
#[derive(Debug, Clone)]
pub struct Hysteresis {
    pub up: bool,
    /// Consecutive results that disagree with `up`.
    streak: u32,
    rise: u32,
    fall: u32,
}

impl Hysteresis {
    pub fn new(rise: u32, fall: u32) -> Self {
        Hysteresis {
            up: true,
            streak: 0,
            rise,
            fall,
        }
    }

    /// Records one result; returns true when the state flipped.
    pub fn record(&mut self, ok: bool) -> bool {
        if ok == self.up {
            self.streak = 0;
            return false;
        }
        self.streak += 1;
        let needed = if self.up { self.fall } else { self.rise };
        if self.streak >= needed {
            self.up = ok;
            self.streak = 0;
            true
        } else {
            false
        }
    }
}

/// Handle to the running engine; dropping it stops every probe.
pub struct Engine {
    tasks: JoinSet<()>,
}

impl Engine {
    /// Starts one probe task per target of `plan`, reporting flips on `flips`.
    pub fn start(plan: Arc<Plan>, flips: mpsc::UnboundedSender<Flip>) -> Engine {
        // reqwest is built without a bundled crypto provider (aws-lc-rs is a heavy build);
        // ring it is. Installing twice is harmless: the first one stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut tasks = JoinSet::new();
        let user_agent = format!("gslb/{} health-check", env!("CARGO_PKG_VERSION"));
        for t in 0..plan.targets.len() {
            let prober = match Prober::new(&plan, t, &user_agent) {
                Ok(p) => p,
                Err(e) => {
                    // Cannot happen for a validated plan; report and leave the target UP.
                    warn!(target = %plan.target_label(t), error = %e, "cannot start probe");
                    continue;
                }
            };
            tasks.spawn(run_target(plan.clone(), t, prober, flips.clone()));
        }
        Engine { tasks }
    }

    pub fn stop(mut self) {
        self.tasks.abort_all();
    }
}

enum Prober {
    Tcp(std::net::SocketAddr),
    Http(Box<http::HttpProbe>),
}

impl Prober {
    fn new(plan: &Plan, t: usize, user_agent: &str) -> Result<Prober, String> {
        let target = &plan.targets[t];
        let check = &plan.checks[target.check];
        Ok(match &check.kind {
            CheckKind::Tcp => Prober::Tcp(target.addr),
            CheckKind::Http(_) => Prober::Http(Box::new(http::HttpProbe::new(
                target.addr,
                check,
                user_agent,
            )?)),
        })
    }

    async fn probe(&self) -> Result<(), ProbeError> {
        match self {
            Prober::Tcp(addr) => tcp::probe(*addr).await,
            Prober::Http(p) => p.probe().await,
        }
    }
}

async fn run_target(plan: Arc<Plan>, t: usize, prober: Prober, flips: mpsc::UnboundedSender<Flip>) {
    let check = &plan.checks[plan.targets[t].check];
    let phase = if check.jitter.is_zero() {
        Duration::ZERO
    } else {
        Duration::from_nanos(Rng::with_thread(|r| {
            r.below(check.jitter.as_nanos() as u64)
        }))
    };
    let mut ticks = tokio::time::interval_at(Instant::now() + phase, check.interval);
    // If the runtime falls behind, skip missed probes rather than bursting.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut state = Hysteresis::new(check.rise, check.fall);
    let label = plan.target_label(t);
    loop {
        ticks.tick().await;
        let result = match tokio::time::timeout(check.timeout, prober.probe()).await {
            Ok(r) => r,
            Err(_) => Err(ProbeError(format!(
                "timeout after {}",
                crate::config::duration::Dur(check.timeout)
            ))),
        };
        debug!(target = %label, ok = result.is_ok(), "probe done");
        let ok = result.is_ok();
        if state.record(ok) {
            let services = plan.target_services(t).join(", ");
            match &result {
                Ok(()) => info!("target {label} is now UP (services: {services})"),
                Err(reason) => warn!("target {label} is now DOWN: {reason} (services: {services})"),
            }
            if flips.send(Flip { target: t, up: ok }).is_err() {
                return; // publisher gone: shutting down
            }
        }
    }
}

/// A short reason for an I/O error: `connect refused`, `connect reset`, ...
pub(crate) fn describe_io(stage: &str, e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    let what = match e.kind() {
        ConnectionRefused => "refused",
        ConnectionReset => "reset",
        ConnectionAborted => "aborted",
        TimedOut => "timed out",
        HostUnreachable => "host unreachable",
        NetworkUnreachable => "network unreachable",
        UnexpectedEof => "closed early",
        _ => return format!("{stage}: {e}"),
    };
    format!("{stage} {what}")
}

#[cfg(test)]
mod tests {
    use super::Hysteresis;

    #[test]
    fn fall_needs_consecutive_failures() {
        let mut h = Hysteresis::new(2, 3);
        assert!(!h.record(false));
        assert!(!h.record(false));
        assert!(!h.record(true)); // streak broken
        assert!(!h.record(false));
        assert!(!h.record(false));
        assert!(h.record(false));
        assert!(!h.up);
    }

    #[test]
    fn rise_needs_consecutive_successes() {
        let mut h = Hysteresis::new(2, 1);
        assert!(h.record(false));
        assert!(!h.record(true));
        assert!(!h.record(false));
        assert!(!h.record(true));
        assert!(h.record(true));
        assert!(h.up);
    }
}
