//! Rise/fall hysteresis: a target changes state only after `rise` consecutive
//! successes (DOWN → UP) or `fall` consecutive failures (UP → DOWN), so a single odd
//! probe never moves traffic. Except the first: a target nobody has probed yet has no
//! state to protect, so its first result sets it (a gateway that was never reachable
//! leaves the answers after one probe, not after `fall`).

/// Rise/fall hysteresis for one target.
#[derive(Debug, Clone)]
pub struct Hysteresis {
    pub up: bool,
    /// Consecutive results that disagree with `up`.
    streak: u32,
    rise: u32,
    fall: u32,
    /// A result has been recorded (or the state came from earlier probes).
    settled: bool,
}

impl Hysteresis {
    /// A verdict from earlier probes: hysteresis applies from the first result.
    pub fn new(up: bool, rise: u32, fall: u32) -> Self {
        Hysteresis {
            up,
            streak: 0,
            rise,
            fall,
            settled: true,
        }
    }

    /// A target never probed: provisionally `up`, and its first result sets it.
    pub fn unprobed(up: bool, rise: u32, fall: u32) -> Self {
        Hysteresis {
            settled: false,
            ..Hysteresis::new(up, rise, fall)
        }
    }

    /// Records one result; returns true when the state flipped.
    pub fn record(&mut self, ok: bool) -> bool {
        if !self.settled {
            self.settled = true;
            let flipped = ok != self.up;
            self.up = ok;
            return flipped;
        }
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

#[cfg(test)]
mod tests {
    use super::Hysteresis;

    #[test]
    fn fall_needs_consecutive_failures() {
        let mut h = Hysteresis::new(true, 2, 3);
        assert!(!h.record(false));
        assert!(!h.record(false));
        assert!(!h.record(true)); // streak broken
        assert!(!h.record(false));
        assert!(!h.record(false));
        assert!(h.record(false));
        assert!(!h.up);
    }

    #[test]
    fn the_first_result_of_an_unprobed_target_sets_it() {
        let mut h = Hysteresis::unprobed(true, 2, 3);
        assert!(h.record(false));
        assert!(!h.up);
        // From then on, hysteresis.
        assert!(!h.record(true));
        assert!(h.record(true));
        let mut h = Hysteresis::unprobed(true, 2, 3);
        assert!(!h.record(true));
        assert!(!h.record(false) && !h.record(false));
        assert!(h.record(false));
    }

    #[test]
    fn rise_needs_consecutive_successes() {
        let mut h = Hysteresis::new(true, 2, 1);
        assert!(h.record(false));
        assert!(!h.record(true));
        assert!(!h.record(false));
        assert!(!h.record(true));
        assert!(h.record(true));
        assert!(h.up);
    }
}
