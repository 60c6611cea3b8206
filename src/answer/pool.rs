//! Candidate pools and the weighted draw: the last step of an answer, once the table
//! builder has decided which endpoints may answer and with what weight.

use super::locality::Capacity;
use crate::plan::{EndpointId, RegionId};
use crate::rng::Rng;

/// What the candidate set of a pool was decided by; reported by metrics and explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Healthy endpoints with weight > 0.
    Healthy,
    /// Nothing healthy: every enabled endpoint, as if healthy.
    FailOpen,
    /// Healthy weight below the service's panic threshold: as if all were healthy.
    Panic,
    /// Nothing healthy and the service fails closed: NODATA.
    FailClosed,
    /// The service has no address of this family at all: NODATA.
    NoAddresses,
}

/// One endpoint in a pool; its addresses are its gateway's (`answer::addresses`).
#[derive(Debug, Clone)]
pub struct Candidate {
    pub endpoint: EndpointId,
    /// Its own hash (service and gateway names) for the consistent draw.
    pub key: u64,
    /// Its weight until it is in a pool; there, the sum of its weight and of every
    /// candidate's before it (what the draw searches), so that a pool is one slice.
    upto: u64,
}

impl Candidate {
    pub fn new(endpoint: EndpointId, weight: u64, key: u64) -> Candidate {
        Candidate {
            endpoint,
            key,
            upto: weight,
        }
    }
}

/// One region of the client's chain as the pool weighed it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChainStep {
    pub region: RegionId,
    /// Enabled and ready weight of the region's endpoints of this family (ready as the
    /// decision counted it: in panic and fail-open, as if healthy).
    pub capacity: Capacity,
    /// The share of answers the region takes.
    pub load: f64,
}

/// Candidates of one (service, family), with cumulative weights for the draw. Every
/// service holds a few of these per snapshot, so a pool is 32 bytes: the candidates are
/// one exact-size slice, and what only locality gives (the chain, several groups) is
/// behind one optional box.
#[derive(Debug, Clone)]
pub struct Pool {
    pub decision: Decision,
    pub candidates: Box<[Candidate]>,
    extra: Option<Box<Extra>>,
}

#[derive(Debug, Clone, Default)]
struct Extra {
    /// The client region's chain behind the candidates.
    chain: Box<[ChainStep]>,
    /// End (exclusive) of each group of candidates, in order, when there are several
    /// (empty: one group of every candidate). A group is one region of a spillover
    /// chain: an answer of several endpoints holds endpoints of one group only.
    group_ends: Box<[usize]>,
}

impl Pool {
    /// A pool whose candidates form one group.
    pub fn new(decision: Decision, candidates: Vec<Candidate>) -> Self {
        let len = candidates.len();
        Pool::grouped(decision, candidates, vec![len])
    }

    /// A pool of consecutive groups; `group_ends` are the groups' exclusive ends.
    pub fn grouped(
        decision: Decision,
        mut candidates: Vec<Candidate>,
        group_ends: Vec<usize>,
    ) -> Self {
        debug_assert!(candidates.iter().all(|c| c.upto > 0));
        debug_assert!(group_ends.windows(2).all(|w| w[0] < w[1]));
        debug_assert_eq!(group_ends.last().copied().unwrap_or(0), candidates.len());
        let mut sum = 0u64;
        for c in &mut candidates {
            sum += c.upto;
            c.upto = sum;
        }
        let extra = (group_ends.len() > 1).then(|| {
            Box::new(Extra {
                chain: Box::default(),
                group_ends: group_ends.into_boxed_slice(),
            })
        });
        Pool {
            decision,
            candidates: candidates.into_boxed_slice(),
            extra,
        }
    }

    pub fn with_chain(mut self, chain: Vec<ChainStep>) -> Self {
        if !chain.is_empty() {
            self.extra.get_or_insert_default().chain = chain.into_boxed_slice();
        }
        self
    }

    /// The client region's chain behind the candidates (empty for a client in no
    /// region, or a service without locality).
    pub fn chain(&self) -> &[ChainStep] {
        self.extra.as_ref().map_or(&[], |x| &x.chain)
    }

    /// The groups' exclusive ends, when there are several (else empty).
    fn group_ends(&self) -> &[usize] {
        self.extra.as_ref().map_or(&[], |x| &x.group_ends)
    }

    /// The (start, exclusive end) of the group that holds candidate `i`.
    fn group_of(&self, i: usize) -> (usize, usize) {
        let ends = self.group_ends();
        if ends.is_empty() {
            return (0, self.candidates.len());
        }
        let group = ends.partition_point(|&end| end <= i);
        let start = if group == 0 { 0 } else { ends[group - 1] };
        (start, ends[group])
    }

    /// Candidate `i`'s weight.
    pub fn weight(&self, i: usize) -> u64 {
        let before = i.checked_sub(1).map_or(0, |b| self.candidates[b].upto);
        self.candidates[i].upto - before
    }

    /// Candidate `i`'s share of answers (of first picks, when `answers > 1`).
    pub fn share(&self, i: usize) -> f64 {
        match self.total_weight() {
            0 => 0.0,
            t => self.weight(i) as f64 / t as f64,
        }
    }

    pub fn total_weight(&self) -> u64 {
        self.candidates.last().map_or(0, |c| c.upto)
    }

    /// Index of the candidate a uniform draw `r` in `0..total_weight()` falls on.
    fn locate(&self, r: u64) -> usize {
        self.candidates.partition_point(|c| c.upto <= r)
    }

    /// Draws up to `n` distinct candidates by weight, without replacement, calling `f`
    /// with each chosen candidate's index in draw order.
    ///
    /// The common case (`n == 1`) is one random number and one binary search. For
    /// `n > 1` the first pick is the same draw over the whole pool, and it also picks
    /// the group: the rest of the answer is drawn within that group only, so an answer
    /// never mixes regions and a group gets answers in proportion to its weight. Within
    /// the group the draw is sequential: each pick removes the chosen weight, so an
    /// endpoint with weight w appears first with probability w / total, as Route 53 and
    /// gdnsd do.
    pub fn draw(&self, n: usize, rng: &mut Rng, mut f: impl FnMut(usize)) {
        let len = self.candidates.len();
        let total = self.total_weight();
        if len == 0 || n == 0 || total == 0 {
            return;
        }
        let first = self.locate(rng.below(total));
        f(first);
        if n == 1 {
            return;
        }
        let (start, end) = self.group_of(first);
        let members = &self.candidates[start..end];
        // Remaining weights of the group; a small stack buffer covers realistic pools.
        let mut stack = [0u64; 32];
        let mut heap;
        let weights: &mut [u64] = if members.len() <= stack.len() {
            &mut stack[..members.len()]
        } else {
            heap = vec![0u64; members.len()];
            &mut heap[..]
        };
        for (j, w) in weights.iter_mut().enumerate() {
            *w = self.weight(start + j);
        }
        weights[first - start] = 0;
        let mut remaining: u64 = weights.iter().sum();
        for _ in 1..n.min(members.len()) {
            let mut r = rng.below(remaining);
            let mut chosen = members.len() - 1;
            for (i, w) in weights.iter().enumerate() {
                if r < *w {
                    chosen = i;
                    break;
                }
                r -= *w;
            }
            remaining -= weights[chosen];
            weights[chosen] = 0;
            f(start + chosen);
        }
    }

    /// Picks up to `n` distinct candidates for the client keyed `key` by weighted
    /// rendezvous hashing (`selection = "consistent"`), calling `f` with each chosen
    /// index in order. The same client and candidates give the same answer on every
    /// replica; a candidate that comes or goes moves only the clients it wins or won.
    /// As in `draw`, the first pick also picks the group the rest come from.
    pub fn draw_keyed(&self, n: usize, key: u64, mut f: impl FnMut(usize)) {
        let len = self.candidates.len();
        if len == 0 || n == 0 {
            return;
        }
        // Every candidate's score, once; a small stack buffer covers realistic pools.
        let mut stack = [0f64; 32];
        let mut heap;
        let scores: &mut [f64] = if len <= stack.len() {
            &mut stack[..len]
        } else {
            heap = vec![0f64; len];
            &mut heap[..]
        };
        for (i, s) in scores.iter_mut().enumerate() {
            *s = super::affinity::score(key, self.candidates[i].key, self.weight(i));
        }
        let lowest = |scores: &[f64], range: std::ops::Range<usize>| {
            range
                .filter(|&i| scores[i].is_finite())
                .min_by(|&a, &b| scores[a].total_cmp(&scores[b]))
        };
        let Some(first) = lowest(scores, 0..len) else {
            return;
        };
        f(first);
        let (start, end) = self.group_of(first);
        let group = start..end;
        // The rest of the answer: the group's next lowest scores, in order.
        scores[first] = f64::INFINITY;
        for _ in 1..n {
            let Some(i) = lowest(scores, group.clone()) else {
                return;
            };
            f(i);
            scores[i] = f64::INFINITY;
        }
    }

    /// The groups as candidate index ranges, in order.
    pub fn groups(&self) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        let len = self.candidates.len();
        let ends = self.group_ends();
        let single = (ends.is_empty() && len > 0).then_some(0..len);
        let starts = std::iter::once(0).chain(ends.iter().copied());
        let several = starts
            .zip(ends.iter().copied())
            .filter(|(a, b)| a < b)
            .map(|(a, b)| a..b);
        single.into_iter().chain(several)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Candidates with these weights, endpoint i at index i.
    fn candidates(weights: &[u64]) -> Vec<Candidate> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let key = crate::answer::affinity::stable_hash(&[i as u8]);
                Candidate::new(EndpointId(i), w, key)
            })
            .collect()
    }

    fn pool(weights: &[u64]) -> Pool {
        Pool::new(Decision::Healthy, candidates(weights))
    }

    #[test]
    fn single_draw_follows_weights() {
        let p = pool(&[80, 20]);
        let mut rng = Rng::seeded(7);
        let mut counts = [0u32; 2];
        for _ in 0..100_000 {
            p.draw(1, &mut rng, |i| counts[i] += 1);
        }
        let share = counts[0] as f64 / 100_000.0;
        assert!((share - 0.8).abs() < 0.01, "share {share}");
    }

    #[test]
    fn multi_draw_is_distinct_and_bounded() {
        let p = pool(&[1, 1000, 5]);
        let mut rng = Rng::seeded(1);
        for _ in 0..10_000 {
            let mut seen = Vec::new();
            p.draw(2, &mut rng, |i| seen.push(i));
            assert_eq!(seen.len(), 2);
            assert_ne!(seen[0], seen[1]);
        }
        let mut seen = Vec::new();
        p.draw(10, &mut rng, |i| seen.push(i));
        seen.sort();
        assert_eq!(seen, vec![0, 1, 2]);
    }

    /// Spillover with `answers = 3`: region 1 (one of two endpoints healthy) holds 70%
    /// of the weight, region 2 (two endpoints) 30%. Every answer holds one region's
    /// endpoints only, and the regions get answers in proportion to their weight.
    #[test]
    fn multi_draw_stays_within_one_group() {
        let p = Pool::grouped(Decision::Healthy, candidates(&[700, 150, 150]), vec![1, 3]);
        assert_eq!(p.groups().collect::<Vec<_>>(), vec![0..1, 1..3]);
        let mut rng = Rng::seeded(11);
        let (mut first, mut second) = (0u32, 0u32);
        for _ in 0..10_000 {
            let mut seen = Vec::new();
            p.draw(3, &mut rng, |i| seen.push(i));
            seen.sort();
            match seen.as_slice() {
                [0] => first += 1,
                [1, 2] => second += 1,
                other => panic!("an answer mixes groups or repeats: {other:?}"),
            }
        }
        let share = first as f64 / 10_000.0;
        assert!((share - 0.7).abs() < 0.015, "group 1 share {share}");
        assert_eq!(first + second, 10_000);
    }

    #[test]
    fn empty_pool_draws_nothing() {
        let p = pool(&[]);
        let mut rng = Rng::seeded(3);
        p.draw(3, &mut rng, |_| panic!("nothing to draw"));
    }

    #[test]
    fn keyed_draw_is_stable_and_moves_only_the_removed_candidates_clients() {
        let all = pool(&[5, 3, 2, 1]);
        let mut picks = Vec::new();
        for key in 0..2000u64 {
            let mut first = Vec::new();
            all.draw_keyed(3, key, |i| first.push(i));
            let mut again = Vec::new();
            all.draw_keyed(3, key, |i| again.push(i));
            assert_eq!(first, again, "same key, same answer");
            let mut distinct = first.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), 3);
            picks.push(first[0]);
        }
        // Without candidate 3 (the others unchanged, same hashes): only the keys that
        // had 3 first change their first pick.
        let mut fewer_c = candidates(&[5, 3, 2, 1]);
        fewer_c.pop();
        let fewer = Pool::new(Decision::Healthy, fewer_c);
        for (key, had) in picks.iter().enumerate() {
            let mut got = None;
            fewer.draw_keyed(1, key as u64, |i| got = Some(i));
            if *had != 3 {
                assert_eq!(got, Some(*had), "key {key} moved");
            }
        }
        let share0 = picks.iter().filter(|&&p| p == 0).count() as f64 / 2000.0;
        assert!((share0 - 5.0 / 11.0).abs() < 0.05, "{share0}");
    }
}
