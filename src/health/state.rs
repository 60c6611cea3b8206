//! The live state of one target: its verdict, read lock-free by the publisher, and the
//! details `/v1/state` shows.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use super::failure::{ProbeFailure, ProbeResult, SetupError};

/// What is known about one target, for `/v1/state`.
#[derive(Debug, Clone, Default)]
pub struct Detail {
    /// Result of the last probe: `None` before the first one. A failure prints as its
    /// reason.
    pub last: Option<ProbeResult>,
    pub last_probe_at: Option<SystemTime>,
    pub last_duration: Option<Duration>,
    /// When `up` last changed (or when the target was first seen).
    pub changed_at: Option<SystemTime>,
    /// Conclusive probes completed (an inconclusive one measured nothing).
    pub probes: u64,
}

/// The live state of one target, shared between its probe task and readers.
#[derive(Debug)]
pub struct TargetState {
    up: AtomicBool,
    first_done: AtomicBool,
    /// `up` came from earlier probes (a changed check inheriting its predecessor's
    /// verdict), so hysteresis applies from the first result; otherwise the first
    /// result sets it.
    inherited: bool,
    detail: Mutex<Detail>,
}

impl TargetState {
    /// A target nobody has probed: provisionally UP (answers are served as if healthy
    /// until its first result, and `/readyz` says not ready), then set by that result.
    pub(super) fn new(up: bool) -> Self {
        TargetState::with_origin(up, false)
    }

    /// A verdict carried over from the probes of a check that changed.
    pub(super) fn inherited(up: bool) -> Self {
        TargetState::with_origin(up, true)
    }

    fn with_origin(up: bool, inherited: bool) -> Self {
        TargetState {
            up: AtomicBool::new(up),
            first_done: AtomicBool::new(false),
            inherited,
            detail: Mutex::new(Detail {
                changed_at: Some(SystemTime::now()),
                ..Detail::default()
            }),
        }
    }

    pub(super) fn fail_to_start(&self, reason: SetupError) {
        self.up.store(false, Ordering::Release);
        self.first_done.store(true, Ordering::Release);
        let mut d = self.lock();
        d.last = Some(Err(ProbeFailure::CannotStart(reason)));
        d.changed_at = Some(SystemTime::now());
    }

    /// Records a conclusive probe; `flipped_to` is the new verdict when it changed.
    /// Returns true when this was the first one.
    pub(super) fn record(
        &self,
        result: ProbeResult,
        took: Duration,
        flipped_to: Option<bool>,
    ) -> bool {
        {
            let mut d = self.lock();
            d.probes += 1;
            d.last = Some(result);
            d.last_probe_at = Some(SystemTime::now());
            d.last_duration = Some(took);
            if flipped_to.is_some() {
                d.changed_at = d.last_probe_at;
            }
        }
        if let Some(up) = flipped_to {
            self.up.store(up, Ordering::Release);
        }
        !self.first_done.swap(true, Ordering::AcqRel)
    }

    /// The hysteresis verdict. Endpoints start UP until probes say otherwise.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Whether the verdict rests on probes, earlier ones included.
    pub(super) fn settled(&self) -> bool {
        self.inherited || self.probed()
    }

    /// Whether at least one probe has completed.
    pub fn probed(&self) -> bool {
        self.first_done.load(Ordering::Acquire)
    }

    pub fn detail(&self) -> Detail {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Detail> {
        self.detail.lock().unwrap_or_else(|p| p.into_inner())
    }
}
