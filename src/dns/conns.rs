//! The open TCP connections: at most `max` in all and `per_source` from one source
//! (an IPv4 address, or an IPv6 /64), each marked idle or busy. A newcomer that finds
//! its source or the server full takes the slot of the connection that has been idle
//! longest (its source's, or anyone's), which is told to close: idle clients cannot
//! keep a resolver with a real query out. Only when every connection is in the middle
//! of a message is the newcomer refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

/// `idle_since` of a connection that is in the middle of a message.
const BUSY: u64 = u64::MAX;

/// The source a per-source cap counts by.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

struct Entry {
    source: IpAddr,
    /// Microseconds since `Conns::epoch` when the connection went idle, or `BUSY`.
    idle_since: Arc<AtomicU64>,
    close: CancellationToken,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    conns: HashMap<u64, Entry>,
    by_source: HashMap<IpAddr, usize>,
}

impl Inner {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.conns.remove(&id)?;
        if let Some(n) = self.by_source.get_mut(&e.source) {
            *n -= 1;
            if *n == 0 {
                self.by_source.remove(&e.source);
            }
        }
        Some(e)
    }

    /// The connection idle longest, among those of `source` when given.
    fn most_idle(&self, source: Option<IpAddr>) -> Option<u64> {
        self.conns
            .iter()
            .filter(|(_, e)| source.is_none_or(|s| e.source == s))
            .map(|(id, e)| (e.idle_since.load(Ordering::Relaxed), *id))
            .filter(|(since, _)| *since != BUSY)
            .min()
            .map(|(_, id)| id)
    }
}

/// Why a newcomer was let in, or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A free slot.
    Free,
    /// The longest-idle connection of its own source was told to close.
    EvictedSameSource,
    /// The longest-idle connection overall was told to close.
    EvictedOther,
}

/// Every slot is held by a connection in the middle of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

pub struct Conns {
    max: usize,
    per_source: usize,
    epoch: Instant,
    inner: Mutex<Inner>,
}

impl Conns {
    pub fn new(max: usize, per_source: usize) -> Arc<Conns> {
        Arc::new(Conns {
            max: max.max(1),
            per_source: per_source.max(1),
            epoch: Instant::now(),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Admits a connection from `peer`, idle from now on.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<(Ticket, Admission), Refused> {
        let source = source_key(peer);
        let mut inner = self.lock();
        let mut admission = Admission::Free;
        let victim = if inner.by_source.get(&source).copied().unwrap_or(0) >= self.per_source {
            admission = Admission::EvictedSameSource;
            Some(inner.most_idle(Some(source)).ok_or(Refused)?)
        } else if inner.conns.len() >= self.max {
            admission = Admission::EvictedOther;
            Some(inner.most_idle(None).ok_or(Refused)?)
        } else {
            None
        };
        if let Some(v) = victim
            && let Some(e) = inner.remove(v)
        {
            e.close.cancel();
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let idle_since = Arc::new(AtomicU64::new(self.now()));
        let close = CancellationToken::new();
        inner.conns.insert(
            id,
            Entry {
                source,
                idle_since: idle_since.clone(),
                close: close.clone(),
            },
        );
        *inner.by_source.entry(source).or_default() += 1;
        drop(inner);
        let ticket = Ticket {
            conns: self.clone(),
            id,
            idle_since,
            close,
        };
        Ok((ticket, admission))
    }

    /// Connections open now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().conns.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One admitted connection; dropping it frees its slot.
pub struct Ticket {
    conns: Arc<Conns>,
    id: u64,
    idle_since: Arc<AtomicU64>,
    close: CancellationToken,
}

impl Ticket {
    /// A message has started: this connection cannot be evicted until `idle`.
    pub fn busy(&self) {
        self.idle_since.store(BUSY, Ordering::Relaxed);
    }

    /// Between messages: the connection may be evicted, oldest idle first.
    pub fn idle(&self) {
        self.idle_since.store(self.conns.now(), Ordering::Relaxed);
    }

    /// Cancelled when a newcomer took this connection's slot.
    pub fn evicted(&self) -> &CancellationToken {
        &self.close
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.conns.lock().remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_full_server_evicts_the_longest_idle_connection() {
        let c = Conns::new(3, 3);
        let (a, _) = c.admit(ip("192.0.2.1")).unwrap();
        let (b, _) = c.admit(ip("192.0.2.2")).unwrap();
        let (d, _) = c.admit(ip("192.0.2.3")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        // a is busy, b went idle again just now: d has been idle longest.
        a.busy();
        b.idle();
        let (e, how) = c.admit(ip("192.0.2.4")).unwrap();
        assert_eq!(how, Admission::EvictedOther);
        assert!(d.evicted().is_cancelled());
        assert!(!a.evicted().is_cancelled() && !b.evicted().is_cancelled());
        assert_eq!(c.len(), 3);
        // The evicted ticket's drop frees nothing twice.
        drop(d);
        assert_eq!(c.len(), 3);
        // Everyone busy: the newcomer is refused.
        b.busy();
        e.busy();
        assert_eq!(c.admit(ip("192.0.2.5")).err(), Some(Refused));
        drop((a, b, e));
        assert!(c.is_empty());
    }

    #[test]
    fn a_source_at_its_cap_gives_up_its_own_idle_connection() {
        let c = Conns::new(10, 2);
        let (x1, _) = c.admit(ip("2001:db8::1")).unwrap();
        let (other, _) = c.admit(ip("192.0.2.9")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        // Same /64: the same source.
        let (x2, _) = c.admit(ip("2001:db8::2")).unwrap();
        let (_x3, how) = c.admit(ip("2001:db8::3")).unwrap();
        assert_eq!(how, Admission::EvictedSameSource);
        assert!(x1.evicted().is_cancelled(), "its own oldest idle one goes");
        assert!(!other.evicted().is_cancelled() && !x2.evicted().is_cancelled());
        // A different /64 is a different source.
        let (_y, how) = c.admit(ip("2001:db8:0:1::1")).unwrap();
        assert_eq!(how, Admission::Free);
        // IPv4-mapped addresses count as their IPv4 source.
        assert_eq!(source_key(ip("::ffff:192.0.2.9")), ip("192.0.2.9"));
    }
}
