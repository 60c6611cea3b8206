//! Locality: where a client is (longest-prefix match of its ECS address or source
//! address against the regions' networks) and how a service's answers are split across
//! the client's region and its fallbacks.
//!
//! Without spillover the split is all or nothing: the first region in the client's
//! chain (its own, then its fallback list) that has a ready endpoint takes everything.
//! With an overprovisioning factor F (Envoy's priority-load idea), each region in the
//! chain takes `min(remaining, F × healthy share)` of the load, so a region keeps its
//! whole share while at least 1/F of its weight is healthy and hands the shortfall to
//! the next region in order. If the whole chain has less than full capacity, the loads
//! are scaled up so they sum to one.

use std::net::IpAddr;

/// An IPv4 or IPv6 network, host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    pub addr: IpAddr,
    pub prefix: u8,
}

fn bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v) => (u32::from(v) as u128, 32),
        IpAddr::V6(v) => (u128::from(v), 128),
    }
}

fn mask(prefix: u8, width: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        let all = if width == 128 {
            u128::MAX
        } else {
            (1u128 << width) - 1
        };
        all & !((1u128 << (width - prefix)) - 1)
    }
}

impl Net {
    /// Parses `10.1.0.0/16` or `2001:db8::/32`; rejects host bits beyond the prefix.
    pub fn parse(s: &str) -> Result<Net, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not ADDRESS/PREFIX"))?;
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("address {a:?} does not parse"))?;
        let prefix: u8 = p
            .trim()
            .parse()
            .map_err(|_| format!("prefix {p:?} is not a number"))?;
        Net::new(addr, prefix).map_err(|e| format!("{s}: {e}"))
    }

    pub fn new(addr: IpAddr, prefix: u8) -> Result<Net, String> {
        let (b, width) = bits(addr);
        if prefix > width {
            return Err(format!("prefix /{prefix} is longer than the address"));
        }
        if b & !mask(prefix, width) != 0 {
            return Err("bits are set beyond the prefix".into());
        }
        Ok(Net { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (n, w1) = bits(self.addr);
        let (b, w2) = bits(ip);
        w1 == w2 && b & mask(self.prefix, w1) == n
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// How many leading bits of two `width`-bit values agree.
fn common_prefix(a: u128, b: u128, width: u8) -> u8 {
    ((a ^ b) << (128 - width as u32))
        .leading_zeros()
        .min(width as u32) as u8
}

/// Longest-prefix lookup from client address to region.
#[derive(Debug, Default)]
pub struct RegionIndex {
    /// (network, region), most specific first.
    nets: Vec<(Net, usize)>,
}

/// Where a client was placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub region: usize,
    /// The network that decided it.
    pub net: Net,
    /// The ECS SCOPE PREFIX-LENGTH for this answer: the network's prefix, lengthened
    /// where a more specific network of another region lies inside it.
    pub scope: u8,
}

impl RegionIndex {
    pub fn new(regions: impl IntoIterator<Item = (usize, Net)>) -> Self {
        let mut nets: Vec<(Net, usize)> = regions.into_iter().map(|(r, n)| (n, r)).collect();
        nets.sort_by_key(|n| std::cmp::Reverse(n.0.prefix));
        RegionIndex { nets }
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// The region whose network is the longest match for `ip`, if any.
    pub fn place(&self, ip: IpAddr) -> Option<Placement> {
        let &(net, region) = self.nets.iter().find(|(n, _)| n.contains(ip))?;
        Some(Placement {
            region,
            net,
            scope: self.scope(ip, net, region),
        })
    }

    /// The ECS scope for a client that is in no region. Its answer (every healthy
    /// endpoint) differs from a region client's, so scope 0 ("valid for everyone")
    /// would let a resolver hand it to region clients too. The scope is the shortest
    /// prefix whose block around the client meets no region network of its family; 0
    /// when that family has no region networks at all.
    pub fn scope_outside(&self, ip: IpAddr) -> u8 {
        let (b, width) = bits(ip);
        self.nets
            .iter()
            .filter(|(n, _)| bits(n.addr).1 == width)
            .map(|(n, _)| common_prefix(b, bits(n.addr).0, width).min(n.prefix) + 1)
            .max()
            .map_or(0, |s| s.min(width))
    }

    /// RFC 7871 §7.2.1: a resolver caches the answer for every client within SCOPE
    /// bits of this one, so the scope must not reach into a more specific network of
    /// another region. Say eu has 10.0.0.0/8 and us has 10.1.0.0/16: a client in
    /// 10.2.0.0/24 is in eu, but scope 8 would let a resolver hand eu's answer to us's
    /// clients. The scope is lengthened until the client's block stops short of every
    /// such network: one bit past the longest prefix the client shares with it.
    fn scope(&self, ip: IpAddr, net: Net, region: usize) -> u8 {
        let (b, width) = bits(ip);
        let mut scope = net.prefix;
        for &(other, r) in &self.nets {
            if r == region || other.prefix <= net.prefix || !net.contains(other.addr) {
                continue;
            }
            let common = common_prefix(b, bits(other.addr).0, width);
            if common < other.prefix {
                scope = scope.max(common + 1);
            }
        }
        scope
    }
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

    #[test]
    fn nets_parse_and_match() {
        let n = Net::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(!n.contains("::1".parse().unwrap()));
        assert!(Net::parse("10.1.0.1/16").is_err());
        assert!(Net::parse("10.1.0.0/33").is_err());
        let any = Net::parse("0.0.0.0/0").unwrap();
        assert!(any.contains("192.0.2.1".parse().unwrap()));
        let v6 = Net::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(Net::parse("::/0").unwrap().contains("::1".parse().unwrap()));
        assert!(
            Net::parse("::1/128")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
    }

    #[test]
    fn longest_prefix_wins_across_regions() {
        let idx = RegionIndex::new([
            (0, Net::parse("10.0.0.0/8").unwrap()),
            (1, Net::parse("10.1.0.0/16").unwrap()),
        ]);
        assert_eq!(idx.place("10.1.2.3".parse().unwrap()).unwrap().region, 1);
        assert_eq!(idx.place("10.2.2.3".parse().unwrap()).unwrap().region, 0);
        assert_eq!(
            idx.place("10.2.2.3".parse().unwrap()).unwrap().net.prefix,
            8
        );
        assert!(idx.place("192.0.2.1".parse().unwrap()).is_none());
    }

    #[test]
    fn scope_stops_short_of_other_regions_networks() {
        let idx = RegionIndex::new([
            (0, Net::parse("10.0.0.0/8").unwrap()),
            (1, Net::parse("10.1.0.0/16").unwrap()),
            (0, Net::parse("10.0.0.0/12").unwrap()),
        ]);
        let p = |ip: &str| idx.place(ip.parse().unwrap()).unwrap();
        // 10.2 = 00001010.00000010 vs 10.1 = 00001010.00000001: 14 bits shared.
        assert_eq!((p("10.2.0.1").region, p("10.2.0.1").scope), (0, 15));
        // Inside eu's own /12, us's /16 is still nested in it: 10.0 vs 10.1 share 15.
        assert_eq!((p("10.0.5.5").region, p("10.0.5.5").scope), (0, 16));
        // 10.200: only the first 8 bits in common with 10.1.
        assert_eq!(p("10.200.0.1").scope, 9);
        // The us network itself has nothing of another region inside it.
        assert_eq!((p("10.1.9.9").region, p("10.1.9.9").scope), (1, 16));
        let v6 = RegionIndex::new([
            (0, Net::parse("2001:db8::/32").unwrap()),
            (1, Net::parse("2001:db8:8000::/33").unwrap()),
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
