//! When a target is probed, and what a finished probe's timing says about it. Both are
//! pure: they take instants and durations and never read a clock, so they are tested
//! as plain functions, and the task that drives them is tested on tokio's paused clock.

use std::time::Duration;

use tokio::time::Instant;

use super::failure::{ProbeFailure, ProbeResult};
use crate::plan::Check;

/// A target's probe times: `start + phase`, then every `interval` exactly. The phase
/// spreads targets over the interval while each keeps a steady period, which is what
/// the failover bound `interval × fall + timeout` relies on.
#[derive(Debug, Clone)]
pub struct Schedule {
    next: Instant,
    interval: Duration,
}

impl Schedule {
    pub fn new(start: Instant, phase: Duration, interval: Duration) -> Schedule {
        Schedule {
            next: start + phase,
            interval,
        }
    }

    /// When the next probe is due.
    pub fn due(&self) -> Instant {
        self.next
    }

    /// Takes the due probe when woken at `now` (not before `due()`): returns the time
    /// it was scheduled for and moves on to the first later slot not before `now`. A runtime that
    /// fell behind so gets one late probe, never a burst of make-up probes.
    pub fn take(&mut self, now: Instant) -> Instant {
        let scheduled = self.next;
        // The first slot at or after `now`, and at least the one after `scheduled`.
        let behind = now.saturating_duration_since(scheduled).as_nanos();
        let slots = behind.div_ceil(self.interval.as_nanos().max(1)).max(1);
        // `slots` intervals fit comfortably in u32 for any interval a check allows
        // (at least a millisecond) over any realistic stall.
        self.next = scheduled + self.interval * u32::try_from(slots).unwrap_or(u32::MAX);
        scheduled
    }
}

/// The timing rules of one check.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub timeout: Duration,
    /// A failure that took longer than `timeout + starved_slack` was our lateness (the
    /// timer fired that late), not the target's.
    starved_slack: Duration,
    /// A probe that starts this much after its slot is late.
    late_after: Duration,
}

/// What a finished probe counts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judged {
    /// The result stands and goes into the hysteresis.
    Conclusive(ProbeResult),
    /// The probe failed only after the timer fired far past the timeout: this process
    /// was starved of CPU (or the runtime stalled), so the target's slowness was not
    /// measured. Counted, logged, and kept out of the hysteresis, so that local overload
    /// cannot flap a healthy target DOWN.
    Inconclusive(ProbeFailure),
}

impl Timing {
    pub fn new(check: &Check) -> Timing {
        Timing {
            timeout: check.timeout,
            starved_slack: (check.timeout / 2).max(Duration::from_millis(100)),
            late_after: (check.interval / 10).max(Duration::from_millis(50)),
        }
    }

    /// Whether a probe that started `lag` after its slot is late.
    pub fn is_late(&self, lag: Duration) -> bool {
        lag > self.late_after
    }

    /// Judges a probe that took `took`; `result` is `None` when the timeout fired.
    pub fn judge(&self, took: Duration, result: Option<ProbeResult>) -> Judged {
        let result = result.unwrap_or(Err(ProbeFailure::Timeout(self.timeout)));
        match result {
            Err(e) if took > self.timeout.saturating_add(self.starved_slack) || e.is_local() => {
                Judged::Inconclusive(e)
            }
            r => Judged::Conclusive(r),
        }
    }

    /// How late the timer fired, for the message about an inconclusive probe.
    pub fn overrun(&self, took: Duration) -> Duration {
        took.saturating_sub(self.timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn fixed_period_from_the_phase() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, ms(30), ms(100));
        assert_eq!(s.due(), t0 + ms(30));
        // Woken on time each round: every 100 ms after the phase.
        for k in 0..5u32 {
            let due = s.due();
            assert_eq!(due, t0 + ms(30) + ms(100) * k);
            assert_eq!(s.take(due), due);
        }
    }

    #[test]
    fn a_late_wakeup_skips_missed_slots() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, ms(0), ms(100));
        // Woken 20 ms late: still the next slot at 100.
        assert_eq!(s.take(t0 + ms(20)), t0);
        assert_eq!(s.due(), t0 + ms(100));
        // Woken 250 ms late: one probe for the slot at 100, then on at 400 (200 and 300
        // are skipped, not made up for).
        assert_eq!(s.take(t0 + ms(350)), t0 + ms(100));
        assert_eq!(s.due(), t0 + ms(400));
        // Exactly on the next slot counts as not missed.
        assert_eq!(s.take(t0 + ms(500)), t0 + ms(400));
        assert_eq!(s.due(), t0 + ms(500));
    }

    fn check(interval: u64, timeout: u64) -> Check {
        Check {
            name: "hc".into(),
            kind: crate::plan::CheckKind::Tcp,
            interval: ms(interval),
            timeout: ms(timeout),
            rise: 1,
            fall: 1,
            jitter: Duration::ZERO,
            tls: None,
            per_service: false,
            user_agent: String::new(),
        }
    }

    #[test]
    fn local_resource_failures_are_inconclusive() {
        use crate::health::failure::{IoFailure, Stage};
        let t = Timing::new(&check(1000, 200));
        let emfile = std::io::Error::from_raw_os_error(24);
        let e: ProbeFailure = IoFailure::new(Stage::Connect, &emfile).into();
        assert_eq!(e.to_string(), "connect out of file descriptors (EMFILE)");
        assert_eq!(
            t.judge(ms(1), Some(Err(e.clone()))),
            Judged::Inconclusive(e)
        );
        let refused = std::io::Error::from_raw_os_error(111);
        let e: ProbeFailure = IoFailure::new(Stage::Connect, &refused).into();
        assert_eq!(
            t.judge(ms(1), Some(Err(e.clone()))),
            Judged::Conclusive(Err(e))
        );
    }

    #[test]
    fn starved_timeouts_are_inconclusive() {
        let t = Timing::new(&check(1000, 200));
        // slack = max(timeout / 2, 100 ms) = 100 ms
        let timeout = Err(ProbeFailure::Timeout(ms(200)));
        assert_eq!(t.judge(ms(200), None), Judged::Conclusive(timeout.clone()));
        assert_eq!(t.judge(ms(300), None), Judged::Conclusive(timeout));
        assert_eq!(
            t.judge(ms(301), None),
            Judged::Inconclusive(ProbeFailure::Timeout(ms(200)))
        );
        assert_eq!(t.overrun(ms(301)), ms(101));
        // A success is a success however long it took.
        assert_eq!(t.judge(ms(900), Some(Ok(()))), Judged::Conclusive(Ok(())));
    }

    #[test]
    fn lateness_threshold() {
        // late after max(interval / 10, 50 ms)
        let t = Timing::new(&check(1000, 200));
        assert!(!t.is_late(ms(100)));
        assert!(t.is_late(ms(101)));
        let t = Timing::new(&check(200, 100));
        assert!(!t.is_late(ms(50)));
        assert!(t.is_late(ms(51)));
    }
}
