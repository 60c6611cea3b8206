//! Rise/fall hysteresis: a target changes state only after `rise` consecutive
//! successes (DOWN → UP) or `fall` consecutive failures (UP → DOWN), so a single odd
//! probe never moves traffic.

/// Rise/fall hysteresis for one target.
#[derive(Debug, Clone)]
pub struct Hysteresis {
    pub up: bool,
    /// Consecutive results that disagree with `up`.
    streak: u32,
    rise: u32,
    fall: u32,
}

impl Hysteresis {
    pub fn new(up: bool, rise: u32, fall: u32) -> Self {
        Hysteresis {
            up,
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
