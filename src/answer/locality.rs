//! Locality: where a client is (longest-prefix match of its ECS address or source
//! address against the regions' networks, in a prefix trie), the ECS scope its answer is
//! valid for, and how a service's answers are split across the client's region and its
//! fallbacks.
//!
//! Without spillover the split is all or nothing: the first region in the client's
//! chain (its own, then its fallback list) that has a ready endpoint takes everything.
//! With an overprovisioning factor F (Envoy's priority-load idea), each region in the
//! chain takes `min(remaining, F × healthy share)` of the load, so a region keeps its
//! whole share while at least 1/F of its weight is healthy and hands the shortfall to
//! the next region in order. If the whole chain has less than full capacity, the loads
//! are scaled up so they sum to one.

use std::net::IpAddr;

use ipnet::{Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

use crate::plan::{Net, Plan, RegionId};

/// Where a client was placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub region: RegionId,
    /// The network that decided it.
    pub net: Net,
    /// The ECS SCOPE PREFIX-LENGTH for this answer: the network's prefix, lengthened
    /// where a more specific network of another region lies inside it.
    pub scope: u8,
}

/// One region network in the index.
#[derive(Debug)]
struct Entry {
    net: Net,
    region: RegionId,
    /// Networks of other regions nested inside this one; they bound the scope (usually
    /// none, so placing a client costs one trie lookup).
    nested: Vec<Net>,
}

/// Longest-prefix lookup from client address to region.
#[derive(Debug, Default)]
pub struct RegionIndex {
    v4: PrefixMap<Ipv4Net, Entry>,
    v6: PrefixMap<Ipv6Net, Entry>,
}

fn bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v) => (u32::from(v) as u128, 32),
        IpAddr::V6(v) => (u128::from(v), 128),
    }
}

/// How many leading bits of two `width`-bit values agree.
fn common_prefix(a: u128, b: u128, width: u8) -> u8 {
    ((a ^ b) << (128 - width as u32))
        .leading_zeros()
        .min(width as u32) as u8
}

impl RegionIndex {
    /// The index of every network of `plan`'s regions.
    pub fn of(plan: &Plan) -> Self {
        RegionIndex::new(
            plan.regions
                .iter()
                .zip(RegionId::all(plan.regions.len()))
                .flat_map(|(r, i)| r.networks.iter().map(move |n| (i, *n))),
        )
    }

    /// Networks must be distinct (config compilation refuses duplicates).
    pub fn new(regions: impl IntoIterator<Item = (RegionId, Net)>) -> Self {
        let all: Vec<(RegionId, Net)> = regions.into_iter().collect();
        let mut idx = RegionIndex::default();
        for &(region, net) in &all {
            let nested = all
                .iter()
                .filter(|&&(r, o)| {
                    r != region && o.prefix() > net.prefix() && net.contains(o.addr())
                })
                .map(|&(_, o)| o)
                .collect();
            let entry = Entry {
                net,
                region,
                nested,
            };
            match net.ipnet() {
                ipnet::IpNet::V4(n) => idx.v4.insert(n, entry),
                ipnet::IpNet::V6(n) => idx.v6.insert(n, entry),
            };
        }
        idx
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// The region whose network is the longest match for `ip`, if any.
    pub fn place(&self, ip: IpAddr) -> Option<Placement> {
        let entry = match ip {
            IpAddr::V4(a) => self.v4.get_lpm(&Ipv4Net::from(a)).map(|(_, e)| e),
            IpAddr::V6(a) => self.v6.get_lpm(&Ipv6Net::from(a)).map(|(_, e)| e),
        }?;
        Some(Placement {
            region: entry.region,
            net: entry.net,
            scope: scope(ip, entry),
        })
    }

    /// The ECS scope for a client that is in no region. Its answer (every healthy
    /// endpoint) differs from a region client's, so scope 0 ("valid for everyone")
    /// would let a resolver hand it to region clients too. The scope is the shortest
    /// prefix whose block around the client meets no region network of its family; 0
    /// when that family has no region networks at all.
    pub fn scope_outside(&self, ip: IpAddr) -> u8 {
        let (_, width) = bits(ip);
        // Blocks shrink as the prefix grows, so "meets a network" is monotone: find the
        // first prefix that meets none by bisection. No network contains the client,
        // so a block meets one only by containing it.
        let meets = |k: u8| match ip {
            IpAddr::V4(a) => Ipv4Net::new(a, k)
                .map(|b| self.v4.children(&b.trunc()).next().is_some())
                .unwrap_or(false),
            IpAddr::V6(a) => Ipv6Net::new(a, k)
                .map(|b| self.v6.children(&b.trunc()).next().is_some())
                .unwrap_or(false),
        };
        let (mut lo, mut hi) = (0u8, width);
        if !meets(lo) {
            return 0;
        }
        // Invariant: meets(lo), and the answer is in lo+1..=hi (meets(width) is false:
        // a /width block that held a network would be that network, holding the client).
        while lo + 1 < hi {
            let mid = lo + (hi - lo) / 2;
            if meets(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        hi
    }
}

/// RFC 7871 §7.2.1: a resolver caches the answer for every client within SCOPE bits
/// of this one, so the scope must not reach into a more specific network of another
/// region. Say eu has 10.0.0.0/8 and us has 10.1.0.0/16: a client in 10.2.0.0/24 is in
/// eu, but scope 8 would let a resolver hand eu's answer to us's clients. The scope is
/// lengthened until the client's block stops short of every such network: one bit past
/// the longest prefix the client shares with it.
fn scope(ip: IpAddr, entry: &Entry) -> u8 {
    let (b, width) = bits(ip);
    let mut scope = entry.net.prefix();
    for other in &entry.nested {
        let common = common_prefix(b, bits(other.addr()).0, width);
        if common < other.prefix() {
            scope = scope.max(common + 1);
        }
    }
    scope
}

/// Per region of a chain: total enabled weight and healthy (ready) weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    pub total: u64,
    pub healthy: u64,
}

/// The share of load each region of a chain takes, in chain order; all zero when no
/// region has a healthy endpoint. `factor = None` is all-or-nothing failover.
pub fn loads(chain: &[Capacity], factor: Option<f64>) -> Vec<f64> {
    let mut out = vec![0.0; chain.len()];
    match factor {
        None => {
            if let Some(i) = chain.iter().position(|c| c.healthy > 0) {
                out[i] = 1.0;
            }
        }
        Some(f) => {
            let mut remaining = 1.0f64;
            for (i, c) in chain.iter().enumerate() {
                if c.total == 0 || remaining <= 0.0 {
                    continue;
                }
                let health = c.healthy as f64 / c.total as f64;
                let take = (f * health).min(remaining);
                out[i] = take;
                remaining -= take;
            }
            let sum: f64 = out.iter().sum();
            if sum > 0.0 && sum < 1.0 {
                // Less than full capacity in the whole chain: spread by what is there.
                for x in &mut out {
                    *x /= sum;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Net {
        Net::parse(s).unwrap()
    }

    #[test]
    fn longest_prefix_wins_across_regions() {
        let idx = RegionIndex::new([
            (RegionId(0), net("10.0.0.0/8")),
            (RegionId(1), net("10.1.0.0/16")),
        ]);
        assert_eq!(
            idx.place("10.1.2.3".parse().unwrap()).unwrap().region,
            RegionId(1)
        );
        assert_eq!(
            idx.place("10.2.2.3".parse().unwrap()).unwrap().region,
            RegionId(0)
        );
        assert_eq!(
            idx.place("10.2.2.3".parse().unwrap()).unwrap().net.prefix(),
            8
        );
        assert!(idx.place("192.0.2.1".parse().unwrap()).is_none());
        assert!(idx.place("::1".parse().unwrap()).is_none());
        assert!(RegionIndex::default().is_empty() && !idx.is_empty());
    }

    #[test]
    fn scope_stops_short_of_other_regions_networks() {
        let idx = RegionIndex::new([
            (RegionId(0), net("10.0.0.0/8")),
            (RegionId(1), net("10.1.0.0/16")),
            (RegionId(0), net("10.0.0.0/12")),
        ]);
        let p = |ip: &str| idx.place(ip.parse().unwrap()).unwrap();
        // 10.2 = 00001010.00000010 vs 10.1 = 00001010.00000001: 14 bits shared.
        assert_eq!((p("10.2.0.1").region.index(), p("10.2.0.1").scope), (0, 15));
        // Inside eu's own /12, us's /16 is still nested in it: 10.0 vs 10.1 share 15.
        assert_eq!((p("10.0.5.5").region.index(), p("10.0.5.5").scope), (0, 16));
        // 10.200: only the first 8 bits in common with 10.1.
        assert_eq!(p("10.200.0.1").scope, 9);
        // The us network itself has nothing of another region inside it.
        assert_eq!((p("10.1.9.9").region.index(), p("10.1.9.9").scope), (1, 16));
        let v6 = RegionIndex::new([
            (RegionId(0), net("2001:db8::/32")),
            (RegionId(1), net("2001:db8:8000::/33")),
        ]);
        assert_eq!(
            v6.place("2001:db8:1::1".parse().unwrap()).unwrap().scope,
            33
        );
        // Outside every region: short of every network of the family.
        assert_eq!(idx.scope_outside("11.0.0.1".parse().unwrap()), 8);
        assert_eq!(idx.scope_outside("192.0.2.1".parse().unwrap()), 1);
        assert_eq!(idx.scope_outside("::1".parse().unwrap()), 0);
        assert_eq!(v6.scope_outside("2001:db9::1".parse().unwrap()), 32);
        // Next to a host route: every bit but the last is shared.
        let host = RegionIndex::new([(RegionId(0), net("192.0.2.1/32"))]);
        assert_eq!(host.scope_outside("192.0.2.0".parse().unwrap()), 32);
    }

    #[test]
    fn all_or_nothing_failover() {
        let c = |t, h| Capacity {
            total: t,
            healthy: h,
        };
        assert_eq!(loads(&[c(2, 1), c(2, 2)], None), vec![1.0, 0.0]);
        assert_eq!(loads(&[c(2, 0), c(2, 2)], None), vec![0.0, 1.0]);
        assert_eq!(loads(&[c(2, 0), c(2, 0)], None), vec![0.0, 0.0]);
    }

    #[test]
    fn spillover_follows_the_overprovisioning_factor() {
        let c = |t, h| Capacity {
            total: t,
            healthy: h,
        };
        let l = loads(&[c(100, 50), c(100, 100)], Some(1.4));
        assert!(
            (l[0] - 0.7).abs() < 1e-9 && (l[1] - 0.3).abs() < 1e-9,
            "{l:?}"
        );
        // At or above 1/F healthy, a region keeps everything.
        assert_eq!(loads(&[c(100, 72), c(100, 100)], Some(1.4)), vec![1.0, 0.0]);
        // The whole chain short of capacity: scaled to sum to one.
        let l = loads(&[c(100, 25), c(100, 25)], Some(1.4));
        assert!(
            (l[0] - 0.5).abs() < 1e-9 && (l[1] - 0.5).abs() < 1e-9,
            "{l:?}"
        );
        assert_eq!(loads(&[c(1, 0), c(1, 0)], Some(1.4)), vec![0.0, 0.0]);
    }
}
