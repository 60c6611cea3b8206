//! How the replicas' verdicts on a target combine, and when a replica's own view is
//! the broken one. Pure functions of the verdicts: the store and the clock are
//! `verdicts`' business.

use crate::plan::Quorum;

/// Whether a target is up when `ups` of the `total` counted replicas see it up.
/// `total` is at least 1 (a replica always has its own view to fall back on).
pub fn combine(q: Quorum, ups: usize, total: usize) -> bool {
    debug_assert!(total >= 1 && ups <= total);
    match q {
        Quorum::Majority => ups * 2 >= total,
        Quorum::Any => ups >= 1,
        Quorum::All => ups == total,
        Quorum::PerMille(m) => ups * 1000 >= total * usize::from(m),
    }
}

/// This replica's verdict on one target, past its own rise/fall hysteresis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Own {
    pub up: bool,
    /// At least one probe completed (an unprobed target is provisionally up, and that
    /// provisional verdict does not count against the others').
    pub probed: bool,
    /// Why it is down (the last probe failure), for the others' `/v1/state`.
    pub reason: Option<String>,
}

/// Every counted view of one target and what they combine to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetVotes {
    /// This replica's own verdict.
    pub own: bool,
    /// Whether the own verdict was counted (not when fenced or unprobed, unless nothing
    /// else is there to count).
    pub own_counted: bool,
    /// The other live replicas' verdicts on it, by replica name.
    pub others: Vec<(String, bool)>,
    /// What every replica answers with.
    pub combined: bool,
}

impl TargetVotes {
    /// The quorum, not this replica's probe, decided the answer.
    pub fn overruled(&self) -> bool {
        self.combined != self.own
    }

    /// "ns1 up, ns3 down": the other replicas' verdicts, for messages.
    pub fn describe_others(&self) -> String {
        let v: Vec<String> = self
            .others
            .iter()
            .map(|(r, up)| format!("{r} {}", up_down(*up)))
            .collect();
        v.join(", ")
    }
}

/// A verdict as messages say it.
pub fn up_down(up: bool) -> &'static str {
    if up { "up" } else { "down" }
}

/// The combined view a snapshot was built from, for `/v1/state` and explain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Votes {
    pub replica: String,
    pub quorum: Quorum,
    /// The store is out of reach (or this replica's own heartbeats do not come back):
    /// only this replica's verdicts count.
    pub alone: bool,
    /// This replica's view disagrees with everyone else's: its verdicts do not count.
    pub fenced: bool,
    /// The other replicas whose verdicts count now.
    pub live: Vec<String>,
    /// Per `plan.targets` entry.
    pub targets: Vec<TargetVotes>,
}

/// The verdicts of the replicas in `others` that have one on target `t`.
fn verdicts_on<'a>(
    others: &'a [(String, Vec<Option<bool>>)],
    t: usize,
) -> impl Iterator<Item = (&'a String, bool)> + 'a {
    others
        .iter()
        .filter_map(move |(r, v)| Some((r, v.get(t).copied().flatten()?)))
}

/// Combines `own` verdicts with each live replica's (`others[r][t]`: replica `r`'s
/// verdict on target `t`, `None` where it has none, i.e. has not probed it).
pub fn judge(
    q: Quorum,
    own: &[Own],
    fenced: bool,
    others: &[(String, Vec<Option<bool>>)],
) -> Vec<TargetVotes> {
    own.iter()
        .enumerate()
        .map(|(t, mine)| {
            let theirs: Vec<(String, bool)> = verdicts_on(others, t)
                .map(|(r, up)| (r.clone(), up))
                .collect();
            let own_counted = theirs.is_empty() || (mine.probed && !fenced);
            let ups =
                theirs.iter().filter(|(_, up)| *up).count() + usize::from(own_counted && mine.up);
            let total = theirs.len() + usize::from(own_counted);
            TargetVotes {
                own: mine.up,
                own_counted,
                combined: combine(q, ups, total),
                others: theirs,
            }
        })
        .collect()
}

/// Whether this replica's probes see most targets down that the other replicas see up:
/// of the targets this replica and at least one other have probed, more than half are
/// down here and up for most of the others.
pub fn disagrees_mostly(own: &[Own], others: &[(String, Vec<Option<bool>>)]) -> bool {
    let (mut compared, mut against) = (0usize, 0usize);
    for (t, mine) in own.iter().enumerate() {
        if !mine.probed {
            continue;
        }
        let (mut total, mut ups) = (0usize, 0usize);
        for (_, up) in verdicts_on(others, t) {
            total += 1;
            ups += usize::from(up);
        }
        if total == 0 {
            continue;
        }
        compared += 1;
        if !mine.up && ups * 2 > total {
            against += 1;
        }
    }
    against > 0 && against * 2 > compared
}

/// Consecutive heartbeats of disagreement before a replica fences itself, and of
/// agreement before it counts again: one odd round (a probe flip that has not reached
/// the others yet) changes nothing.
pub const FENCE_ROUNDS: u32 = 2;

/// Hysteresis of the fence.
#[derive(Debug, Default)]
pub struct Fence {
    fenced: bool,
    streak: u32,
}

impl Fence {
    pub fn fenced(&self) -> bool {
        self.fenced
    }

    /// One heartbeat's comparison; returns the new state when it changed.
    pub fn observe(&mut self, disagrees: bool) -> Option<bool> {
        if disagrees == self.fenced {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        if self.streak < FENCE_ROUNDS {
            return None;
        }
        self.fenced = disagrees;
        self.streak = 0;
        Some(self.fenced)
    }

    /// The store is gone: a replica alone has nobody to disagree with.
    pub fn reset(&mut self) -> bool {
        let was = self.fenced;
        *self = Fence::default();
        was
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(up: bool) -> Own {
        Own {
            up,
            probed: true,
            reason: None,
        }
    }

    #[test]
    fn rules_combine_as_documented() {
        use Quorum::*;
        // (rule, ups, total, up?)
        let cases = [
            (Majority, 2, 3, true),
            (Majority, 1, 3, false),
            (Majority, 1, 2, true), // a tie keeps it
            (Majority, 2, 4, true),
            (Majority, 1, 4, false),
            (Majority, 0, 1, false),
            (Any, 1, 3, true),
            (Any, 0, 3, false),
            (All, 3, 3, true),
            (All, 2, 3, false),
            (PerMille(666), 2, 3, true),
            (PerMille(667), 2, 3, false),
            (PerMille(750), 3, 4, true),
            (PerMille(750), 2, 4, false),
            (PerMille(1), 0, 4, false),
            (PerMille(1), 1, 4, true),
        ];
        for (q, ups, total, want) in cases {
            assert_eq!(combine(q, ups, total), want, "{q:?} {ups}/{total}");
        }
    }

    #[test]
    fn judge_counts_the_live_views() {
        let others = vec![
            ("ns1".to_string(), vec![Some(true), Some(true), None]),
            ("ns3".to_string(), vec![Some(true), Some(false), None]),
        ];
        let mine = [own(false), own(false), own(false)];
        let v = judge(Quorum::Majority, &mine, false, &others);
        // Target 0: two of three up. Target 1: one of three. Target 2: only mine.
        assert_eq!(
            v.iter().map(|t| t.combined).collect::<Vec<_>>(),
            [true, false, false]
        );
        assert!(v[0].overruled() && !v[1].overruled());
        assert_eq!(v[0].describe_others(), "ns1 up, ns3 up");
        assert_eq!(v[2].others, []);
        let all = judge(
            Quorum::All,
            &[own(true), own(true), own(true)],
            false,
            &others,
        );
        assert_eq!(
            all.iter().map(|t| t.combined).collect::<Vec<_>>(),
            [true, false, true]
        );
        // Fenced: my verdicts do not count where anyone else has one.
        let fenced = judge(Quorum::All, &mine, true, &others);
        assert_eq!(
            fenced
                .iter()
                .map(|t| (t.own_counted, t.combined))
                .collect::<Vec<_>>(),
            [(false, true), (false, false), (true, false)]
        );
        // Unprobed: provisional up does not outvote the others.
        let unprobed = Own {
            up: true,
            probed: false,
            reason: None,
        };
        let v = judge(
            Quorum::Any,
            &[unprobed.clone(), unprobed.clone(), unprobed],
            false,
            &[("ns1".into(), vec![Some(false), Some(true), None])],
        );
        assert_eq!(
            v.iter().map(|t| t.combined).collect::<Vec<_>>(),
            [false, true, true]
        );
    }

    #[test]
    fn disagreeing_mostly_means_more_than_half_of_the_compared() {
        let others = vec![
            (
                "a".to_string(),
                vec![Some(true), Some(true), Some(true), None],
            ),
            (
                "b".to_string(),
                vec![Some(true), Some(true), Some(false), None],
            ),
        ];
        let down = |n: usize| -> Vec<Own> { (0..4).map(|i| own(i >= n)).collect() };
        // Targets 0..n down here. Target 3 is compared with nobody; target 2 is up for
        // only half of the others, so being down there is no disagreement.
        assert!(!disagrees_mostly(&down(0), &others));
        assert!(!disagrees_mostly(&down(1), &others));
        assert!(disagrees_mostly(&down(2), &others));
        assert!(disagrees_mostly(&down(4), &others));
        assert!(!disagrees_mostly(&down(4), &[]));
    }

    #[test]
    fn the_fence_needs_consecutive_rounds() {
        let mut f = Fence::default();
        assert_eq!(f.observe(true), None);
        assert_eq!(f.observe(false), None);
        assert_eq!(f.observe(true), None);
        assert_eq!(f.observe(true), Some(true));
        assert!(f.fenced());
        assert_eq!(f.observe(true), None);
        assert_eq!(f.observe(false), None);
        assert_eq!(f.observe(false), Some(false));
        assert_eq!(f.observe(true), None);
        assert!(!f.reset());
    }
}
