//! Response rate limiting, with the semantics of BIND, Knot and NSD RRL: each client
//! prefix (a /24 for IPv4, a /56 for IPv6 by default) has a budget of
//! `responses_per_second` per response kind (answer, NXDOMAIN, error). The account
//! earns the rate every second, holds at most one second's worth, and goes into debt
//! by at most `window` seconds' worth: a prefix that floods stays limited while it
//! floods, however long, and is forgiven `window` seconds after it stops. A limited
//! response is dropped, except every `slip`-th, which is sent truncated (TC=1) so a
//! real resolver whose address a flood is forging retries over TCP.
//!
//! UDP only, and clients with a valid DNS cookie are exempt (their address is proven).
//! The accounts live in a fixed table indexed by a keyed hash: memory is bounded
//! whatever the flood, and a collision only resets an account.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use crate::plan::RrlSettings;

/// Accounts in the table (a power of two).
const SLOTS: usize = 1 << 14;

/// The kinds of response that have separate budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Answer,
    NxDomain,
    Error,
}

/// What to do with one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Send,
    Drop,
    /// Send it truncated, with no records.
    Slip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    prefix: u128,
    v6: bool,
    kind: Kind,
}

#[derive(Debug, Clone, Copy)]
struct Account {
    key: Option<Key>,
    /// In thousandths of a response.
    balance: i64,
    /// Microseconds since the limiter's epoch.
    last: u64,
    /// Limited responses so far, for the slip.
    limited: u64,
}

pub struct Limiter {
    hasher: RandomState,
    epoch: Instant,
    /// Made at the first response accounted, so that a server without `[rrl]` does not
    /// hold the table (1.3 MB).
    accounts: std::sync::OnceLock<Box<[Mutex<Account>]>>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new()
    }
}

/// The client prefix an account is kept for.
fn prefix(ip: IpAddr, s: &RrlSettings) -> (u128, bool) {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let mask = u32::MAX
                .checked_shl(32 - u32::from(s.ipv4_prefix))
                .unwrap_or(0);
            (u128::from(bits & mask), false)
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = u128::MAX
                .checked_shl(128 - u32::from(s.ipv6_prefix))
                .unwrap_or(0);
            (bits & mask, true)
        }
    }
}

impl Limiter {
    pub fn new() -> Limiter {
        Limiter {
            hasher: RandomState::new(),
            epoch: Instant::now(),
            accounts: std::sync::OnceLock::new(),
        }
    }

    fn accounts(&self) -> &[Mutex<Account>] {
        self.accounts.get_or_init(|| {
            let fresh = Account {
                key: None,
                balance: 0,
                last: 0,
                limited: 0,
            };
            (0..SLOTS).map(|_| Mutex::new(fresh)).collect()
        })
    }

    /// Accounts one response of `kind` to `ip`.
    pub fn check(&self, ip: IpAddr, kind: Kind, s: &RrlSettings) -> Action {
        let now = self.epoch.elapsed().as_micros() as u64;
        self.check_at(ip, kind, s, now)
    }

    fn check_at(&self, ip: IpAddr, kind: Kind, s: &RrlSettings, now: u64) -> Action {
        let (prefix, v6) = prefix(ip, s);
        let key = Key { prefix, v6, kind };
        let slot = (self.hasher.hash_one(key) as usize) & (SLOTS - 1);
        let mut a = self.accounts()[slot]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let rate = i64::from(s.responses_per_second) * 1000;
        if a.key != Some(key) {
            *a = Account {
                key: Some(key),
                balance: rate,
                last: now,
                limited: 0,
            };
        }
        let earned = (now.saturating_sub(a.last) as i64).saturating_mul(rate) / 1_000_000;
        a.balance = a.balance.saturating_add(earned).min(rate);
        a.last = now;
        a.balance -= 1000;
        let floor = -rate.saturating_mul(s.window.as_secs() as i64);
        a.balance = a.balance.max(floor);
        if a.balance >= 0 {
            return Action::Send;
        }
        a.limited += 1;
        if s.slip > 0 && a.limited.is_multiple_of(u64::from(s.slip)) {
            Action::Slip
        } else {
            Action::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(rate: u32, window: u64, slip: u32) -> RrlSettings {
        RrlSettings {
            responses_per_second: rate,
            window: Duration::from_secs(window),
            slip,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A flood at 10× the budget for 5 s: the budget's worth at first, then nothing
    /// while the debt stays at its floor; every second limited response slips.
    #[test]
    fn a_flood_gets_its_budget_and_then_slips() {
        let l = Limiter::new();
        let s = settings(10, 5, 2);
        let (mut sent, mut slipped, mut dropped) = (0, 0, 0);
        for i in 0..500u64 {
            // 100 queries a second, 10 ms apart.
            match l.check_at(ip("192.0.2.7"), Kind::Answer, &s, i * 10_000) {
                Action::Send => sent += 1,
                Action::Slip => slipped += 1,
                Action::Drop => dropped += 1,
            }
        }
        // A second's budget plus what it earned while spending it (11 × 10 ms), then
        // nothing: every 10 ms earns a tenth of the one response it costs.
        assert_eq!(sent, 11);
        assert_eq!(slipped, 244);
        assert_eq!(dropped, 245);
        // The same /24 shares the account; another kind has its own.
        let t = 5_000_000;
        assert_eq!(
            l.check_at(ip("192.0.2.200"), Kind::Answer, &s, t),
            Action::Slip
        );
        assert_eq!(
            l.check_at(ip("192.0.2.7"), Kind::NxDomain, &s, t),
            Action::Send
        );
        assert_eq!(
            l.check_at(ip("192.0.3.7"), Kind::Answer, &s, t),
            Action::Send
        );
        // Quiet for the window plus a second: forgiven, with a full second's budget.
        let later = t + 6_100_000;
        assert_eq!(
            l.check_at(ip("192.0.2.7"), Kind::Answer, &s, later),
            Action::Send
        );
    }

    #[test]
    fn a_client_within_its_budget_is_never_limited() {
        let l = Limiter::new();
        let s = settings(10, 5, 2);
        for i in 0..1000u64 {
            // Eight a second.
            assert_eq!(
                l.check_at(ip("2001:db8::1"), Kind::Answer, &s, i * 125_000),
                Action::Send
            );
        }
        // IPv6 /56: a neighbour in the same /56 shares the account, the next /56 not.
        assert_eq!(
            prefix(ip("2001:db8:0:ff::1"), &s),
            prefix(ip("2001:db8::1"), &s)
        );
        assert_ne!(
            prefix(ip("2001:db8:0:100::1"), &s),
            prefix(ip("2001:db8::1"), &s)
        );
        let none = settings(1, 1, 0);
        let l = Limiter::new();
        assert_eq!(
            l.check_at(ip("192.0.2.1"), Kind::Error, &none, 0),
            Action::Send
        );
        assert_eq!(
            l.check_at(ip("192.0.2.1"), Kind::Error, &none, 1),
            Action::Drop,
            "slip 0 drops all"
        );
    }
}
