//! What a consistent draw (`selection = "consistent"`) is keyed by, and the hashes it
//! uses. The hashes are our own fixed functions, never the standard library's seeded
//! ones: every replica, and every restart, must compute the same value.

use std::net::IpAddr;

/// The widest prefix one key covers: the resolver's /24 or /56 without ECS, and at
/// most that much of an ECS prefix (clients of one /24 share their gateway).
const V4_BITS: u8 = 24;
const V6_BITS: u8 = 56;

/// Who a consistent draw is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Affinity {
    pub key: u64,
    /// With ECS: the prefix length the answer then depends on, which the reply's SCOPE
    /// PREFIX-LENGTH must cover, so a resolver caches it for that prefix only.
    pub ecs_scope: Option<u8>,
}

impl Affinity {
    /// The ECS SCOPE PREFIX-LENGTH a consistent answer drawn from `pool` needs: the
    /// keyed prefix when the query carried ECS and the pick depended on it (more than
    /// one candidate), else 0. The DNS front and explain both ask this.
    pub fn scope_over(&self, pool: &super::Pool) -> u8 {
        match self.ecs_scope {
            Some(bits) if pool.candidates.len() > 1 => bits,
            _ => 0,
        }
    }

    /// `ecs` is the option's (address, source prefix length). An ECS prefix of 0 ("no
    /// client information", RFC 7871 §7.1.2) keys by the resolver instead.
    pub fn of(source: IpAddr, ecs: Option<(IpAddr, u8)>) -> Affinity {
        match ecs {
            Some((addr, len)) if len > 0 => {
                let bits = len.min(widest(addr));
                Affinity {
                    key: prefix_key(addr, bits),
                    ecs_scope: Some(bits),
                }
            }
            _ => Affinity {
                key: prefix_key(source, widest(source)),
                ecs_scope: None,
            },
        }
    }
}

fn widest(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => V4_BITS,
        IpAddr::V6(_) => V6_BITS,
    }
}

/// The first `bits` of `ip`, with its family and length, hashed.
fn prefix_key(ip: IpAddr, bits: u8) -> u64 {
    let (mut octets, family): ([u8; 16], u8) = match ip {
        IpAddr::V4(a) => {
            let mut o = [0u8; 16];
            o[..4].copy_from_slice(&a.octets());
            (o, 4)
        }
        IpAddr::V6(a) => (a.octets(), 6),
    };
    for (i, o) in octets.iter_mut().enumerate() {
        let keep = usize::from(bits).saturating_sub(i * 8).min(8);
        *o &= !(0xffu16 >> keep) as u8;
    }
    let mut h = stable_hash(&octets);
    h = mix(h, u64::from(family) << 8 | u64::from(bits));
    h
}

/// FNV-1a over `bytes`, finished with `mix` for a good spread of every bit.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    stable_hash_of(&[bytes])
}

/// `stable_hash` of the concatenation of `parts`, without building it.
fn stable_hash_of(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parts.iter().flat_map(|p| p.iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h, 0)
}

/// A candidate's own hash for the consistent draw: its service (FQDN) and gateway by
/// name, so it is the same on every replica whatever the order of the config.
pub fn candidate_key(service: &str, gateway: &str) -> u64 {
    stable_hash_of(&[service.as_bytes(), &[0], gateway.as_bytes()])
}

/// Combines two hashes into one (the splitmix64 finaliser over their sum).
pub fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_add(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The rendezvous score of a candidate of `weight` for `key` and the candidate's own
/// hash: the lowest score wins. Exponential clocks (−ln u / w) make candidate i win
/// with probability w_i / Σw over uniform keys, and ordering by score is a weighted
/// draw without replacement, so the shares match the weights.
pub fn score(key: u64, candidate: u64, weight: u64) -> f64 {
    let h = mix(key, candidate);
    // 53 random bits as a float in (0, 1].
    let u = ((h >> 11) + 1) as f64 / (1u64 << 53) as f64;
    -u.ln() / weight as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn clients_of_one_prefix_share_a_key() {
        let r = Affinity::of(a("198.51.100.7"), None);
        assert_eq!(r, Affinity::of(a("198.51.100.200"), None));
        assert_ne!(r.key, Affinity::of(a("198.51.101.7"), None).key);
        assert_eq!(r.ecs_scope, None);
        let v6 = Affinity::of(a("2001:db8:0:ab00::1"), None);
        assert_eq!(v6, Affinity::of(a("2001:db8:0:abff::2"), None));
        assert_ne!(v6.key, Affinity::of(a("2001:db8:0:ac00::1"), None).key);
    }

    #[test]
    fn ecs_keys_by_at_most_a_slash_24() {
        let resolver = a("192.0.2.53");
        let e24 = Affinity::of(resolver, Some((a("203.0.113.0"), 24)));
        assert_eq!(e24.ecs_scope, Some(24));
        // A /32 ECS address of the same /24 keys the same, and scopes /24.
        let e32 = Affinity::of(resolver, Some((a("203.0.113.9"), 32)));
        assert_eq!(e32, e24);
        // A /20 is its own key, at /20.
        let e20 = Affinity::of(resolver, Some((a("203.0.112.0"), 20)));
        assert_eq!(e20.ecs_scope, Some(20));
        assert_ne!(e20.key, e24.key);
        // The ECS prefix, not the resolver, decides.
        assert_eq!(
            e24,
            Affinity::of(a("10.9.9.9"), Some((a("203.0.113.0"), 24)))
        );
        // ECS /0: the resolver's /24, no scope.
        assert_eq!(
            Affinity::of(resolver, Some((a("0.0.0.0"), 0))),
            Affinity::of(resolver, None)
        );
    }

    #[test]
    fn the_hashes_are_fixed() {
        // Replicas and restarts must agree: these values are part of the behaviour.
        // A change of hash moves clients between gateways at the upgrade, and replicas
        // on different versions disagree meanwhile: change these only on purpose.
        let k = Affinity::of(a("198.51.100.1"), None).key;
        assert_eq!(format!("{k:#018x}"), "0xe9e728925bc01140");
        let c = candidate_key("app.gslb.test.", "edge-1");
        assert_eq!(format!("{c:#018x}"), "0xc9701b5e806dbfe9");
        // Hashed in parts, as if concatenated with a NUL between.
        assert_eq!(c, stable_hash(b"app.gslb.test.\0edge-1"));
    }

    #[test]
    fn shares_follow_the_weights() {
        let weights = [1u64, 2, 7];
        let cands: Vec<u64> = (0..3).map(|i| stable_hash(&[i as u8])).collect();
        let mut wins = [0u32; 3];
        let n = 100_000;
        for client in 0..n {
            let key = mix(stable_hash(&(client as u32).to_be_bytes()), 1);
            let best = (0..3)
                .min_by(|&i, &j| {
                    score(key, cands[i], weights[i]).total_cmp(&score(key, cands[j], weights[j]))
                })
                .unwrap();
            wins[best] += 1;
        }
        for i in 0..3 {
            let share = f64::from(wins[i]) / f64::from(n);
            let want = weights[i] as f64 / 10.0;
            assert!((share - want).abs() < 0.01, "{i}: {share} vs {want}");
        }
    }
}
