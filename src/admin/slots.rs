//! Admin connection slots: at most `TOTAL` open at once, at most `PER_PEER` from one
//! address, and `LOOPBACK_RESERVE` of them only for loopback peers, so that a remote
//! client holding connections cannot lock the local operator (and a local Prometheus)
//! out of `/metrics` and the drain calls during an incident.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Admin connections open at once.
pub(super) const TOTAL: usize = 64;
/// Of those, the ones only loopback peers may use.
pub(super) const LOOPBACK_RESERVE: usize = 16;
/// Connections one address may hold.
pub(super) const PER_PEER: usize = 16;

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    remote: usize,
    by_peer: HashMap<IpAddr, usize>,
}

#[derive(Debug, Default)]
pub(super) struct Slots(Mutex<Counts>);

/// Why a connection got no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Full {
    Total,
    Remote,
    Peer,
}

/// A held slot; dropping it frees it.
#[derive(Debug)]
pub(super) struct Slot {
    slots: Arc<Slots>,
    peer: IpAddr,
}

impl Slots {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn take(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Full> {
        let mut c = self.counts();
        let remote = !peer.to_canonical().is_loopback();
        if c.total >= TOTAL {
            return Err(Full::Total);
        }
        if remote && c.remote >= TOTAL - LOOPBACK_RESERVE {
            return Err(Full::Remote);
        }
        let mine = c.by_peer.entry(peer).or_default();
        if *mine >= PER_PEER {
            return Err(Full::Peer);
        }
        *mine += 1;
        c.total += 1;
        if remote {
            c.remote += 1;
        }
        Ok(Slot {
            slots: self.clone(),
            peer,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.slots.counts();
        c.total -= 1;
        if !self.peer.to_canonical().is_loopback() {
            c.remote -= 1;
        }
        if let Some(n) = c.by_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                c.by_peer.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn remote_peers_cannot_take_the_loopback_reserve() {
        let slots = Arc::new(Slots::default());
        let mut held = Vec::new();
        // Remote peers, PER_PEER each, until the remote share is gone.
        for i in 0.. {
            match slots.take(ip(&format!("192.0.2.{}", i / PER_PEER + 1))) {
                Ok(s) => held.push(s),
                Err(e) => {
                    assert_eq!(e, Full::Remote);
                    break;
                }
            }
        }
        assert_eq!(held.len(), TOTAL - LOOPBACK_RESERVE);
        // Loopback still gets the reserve, per peer as for anyone.
        let mut local = Vec::new();
        for _ in 0..PER_PEER {
            local.push(slots.take(ip("127.0.0.1")).unwrap());
        }
        // The reserve and the remote share make the total.
        assert_eq!(slots.take(ip("::1")).unwrap_err(), Full::Total);
        // Slots come back when connections end.
        drop(local.pop());
        assert!(slots.take(ip("::1")).is_ok());
        held.clear();
        local.clear();
        assert_eq!(slots.counts().total, 0);
        assert!(slots.counts().by_peer.is_empty());
    }

    #[test]
    fn one_peer_holds_at_most_per_peer() {
        let slots = Arc::new(Slots::default());
        let held: Vec<_> = (0..PER_PEER)
            .map(|_| slots.take(ip("198.51.100.7")).unwrap())
            .collect();
        assert_eq!(slots.take(ip("198.51.100.7")).unwrap_err(), Full::Peer);
        assert!(slots.take(ip("198.51.100.8")).is_ok());
        assert!(slots.take(ip("::ffff:127.0.0.1")).is_ok());
        drop(held);
        assert!(slots.take(ip("198.51.100.7")).is_ok());
    }
}
