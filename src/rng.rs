//! A small, fast PRNG for weighted draws (wyrand). Not for secrets: it only spreads
//! answers. Seeded per thread from the standard library's random hasher keys, so no
//! extra dependency and no syscall per query.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn seeded(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn from_entropy() -> Self {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x9e37_79b9_7f4a_7c15);
        Rng(h.finish())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = (self.0 as u128).wrapping_mul((self.0 ^ 0xe703_7ed1_a0b4_28db) as u128);
        ((t >> 64) ^ t) as u64
    }

    /// Uniform in `0..bound` (bound > 0), by Lemire's multiply-shift; the bias is below
    /// 2^-32 for the weights we use and does not matter for load spreading.
    pub fn below(&mut self, bound: u64) -> u64 {
        ((self.next_u64() as u128 * bound as u128) >> 64) as u64
    }

    /// Runs `f` with this thread's generator.
    pub fn with_thread<T>(f: impl FnOnce(&mut Rng) -> T) -> T {
        STATE.with(|s| {
            let mut rng = Rng(s.get());
            let out = f(&mut rng);
            s.set(rng.0);
            out
        })
    }

    /// Restarts this thread's generator from `seed`: for tests that run the same draw
    /// twice (the fast path's differential test) and need the same numbers.
    pub fn seed_thread(seed: u64) {
        STATE.with(|s| s.set(seed));
    }
}

thread_local! {
    static STATE: Cell<u64> = Cell::new(Rng::from_entropy().0);
}
