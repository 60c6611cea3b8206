//! DNS Cookies (RFC 7873) with the interoperable server cookie of RFC 9018: version 1,
//! three reserved octets, a 32-bit timestamp and SipHash-2-4 over the client cookie,
//! those eight octets and the client address, keyed by a 16-byte secret. Replicas that
//! share the secret accept each other's cookies, so one anycast address can sit in
//! front of several. A valid server cookie proves the source address is real: the
//! client received our earlier reply there (RRL exempts it).

use std::hash::Hasher;
use std::net::IpAddr;

use siphasher::sip::SipHasher24;

pub const CLIENT_LEN: usize = 8;
/// Our server cookies (RFC 9018 §4): 16 octets.
const SERVER_LEN: usize = 16;
/// A cookie is good for an hour after its timestamp, and up to five minutes before it
/// (clock skew between replicas), RFC 9018 §4.3.
const LIFETIME: u32 = 3600;
const SKEW: u32 = 300;

/// The secrets: the first makes new cookies; every one is accepted (the second is the
/// one before a rotation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secrets<'a>(pub &'a [[u8; 16]]);

/// What a query's COOKIE option says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A client cookie only: the client has no server cookie of ours yet.
    ClientOnly,
    /// A server cookie that we (or a replica with our secret) made, for this address,
    /// still fresh.
    Valid,
    /// A server cookie that is not ours, not for this address, or stale.
    Invalid,
}

/// The client and server parts of a COOKIE option, or `None` when its length is one
/// RFC 7873 §5.2.2 answers with FORMERR (8, or 16 to 40 octets, are allowed).
pub fn split(option: &[u8]) -> Option<(&[u8; CLIENT_LEN], &[u8])> {
    match option.len() {
        CLIENT_LEN | 16..=40 => {
            let (client, server) = option.split_at(CLIENT_LEN);
            Some((client.try_into().ok()?, server))
        }
        _ => None,
    }
}

fn hash(secret: &[u8; 16], client: &[u8; CLIENT_LEN], head: &[u8; 8], ip: IpAddr) -> [u8; 8] {
    let mut h = SipHasher24::new_with_key(secret);
    h.write(client);
    h.write(head);
    match ip.to_canonical() {
        IpAddr::V4(v4) => h.write(&v4.octets()),
        IpAddr::V6(v6) => h.write(&v6.octets()),
    }
    // SipHash's output as the RFC's reference code writes it: little-endian.
    h.finish().to_le_bytes()
}

/// A fresh server cookie for `client` at `ip`, stamped `now` (Unix seconds mod 2^32).
pub fn server_cookie(
    secret: &[u8; 16],
    client: &[u8; CLIENT_LEN],
    ip: IpAddr,
    now: u32,
) -> [u8; SERVER_LEN] {
    let mut head = [0u8; 8];
    head[0] = 1; // version; reserved octets zero
    head[4..].copy_from_slice(&now.to_be_bytes());
    let mut out = [0u8; SERVER_LEN];
    out[..8].copy_from_slice(&head);
    out[8..].copy_from_slice(&hash(secret, client, &head, ip));
    out
}

/// Whether a timestamp is within the cookie's life at `now`, in serial arithmetic
/// (the 32-bit timestamp wraps in 2106).
fn fresh(stamp: u32, now: u32) -> bool {
    let age = now.wrapping_sub(stamp);
    age <= LIFETIME || stamp.wrapping_sub(now) <= SKEW
}

impl Secrets<'_> {
    /// Judges a COOKIE option already split. The hash covers the version, reserved and
    /// timestamp octets as the client returned them (RFC 9018 §4.4).
    pub fn verdict(
        &self,
        client: &[u8; CLIENT_LEN],
        server: &[u8],
        ip: IpAddr,
        now: u32,
    ) -> Verdict {
        if server.is_empty() {
            return Verdict::ClientOnly;
        }
        let Ok(server) = <&[u8; SERVER_LEN]>::try_from(server) else {
            return Verdict::Invalid;
        };
        let head: &[u8; 8] = server[..8].try_into().expect("16 octets");
        let stamp = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        if head[0] != 1 || !fresh(stamp, now) {
            return Verdict::Invalid;
        }
        if self
            .0
            .iter()
            .any(|s| hash(s, client, head, ip) == server[8..])
        {
            Verdict::Valid
        } else {
            Verdict::Invalid
        }
    }

    /// The cookie for our reply: the client's, then a fresh server cookie.
    pub fn reply(&self, client: &[u8; CLIENT_LEN], ip: IpAddr, now: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(CLIENT_LEN + SERVER_LEN);
        out.extend_from_slice(client);
        out.extend_from_slice(&server_cookie(&self.0[0], client, ip, now));
        out
    }
}

/// One random secret, for a server that was given none (cookies then survive reloads
/// but not restarts, and no replica shares them).
pub fn random_secret() -> [u8; 16] {
    let mut s = [0u8; 16];
    getrandom::fill(&mut s).expect("the system's random source");
    s
}

/// Seconds since the Unix epoch, mod 2^32.
pub fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::hex;

    fn secret(s: &str) -> [u8; 16] {
        hex(s).try_into().unwrap()
    }

    fn client(s: &str) -> [u8; 8] {
        hex(s).try_into().unwrap()
    }

    /// RFC 9018 Appendix A, byte for byte.
    #[test]
    fn rfc9018_examples() {
        let k = secret("e5e973e5a6b2a43f48e7dc849e37bfcf");
        let ip: IpAddr = "198.51.100.100".parse().unwrap();
        // A.1: a new server cookie.
        let c = client("2464c4abcf10c957");
        assert_eq!(
            Secrets(&[k]).reply(&c, ip, 1559731985),
            hex("2464c4abcf10c957010000005cf79f111f8130c3eee29480")
        );
        // A.2: the client returns it 40 minutes later: valid, and renewed.
        let query = hex("2464c4abcf10c957010000005cf79f111f8130c3eee29480");
        let (cc, sc) = split(&query).unwrap();
        assert_eq!(
            Secrets(&[k]).verdict(cc, sc, ip, 1559734385),
            Verdict::Valid
        );
        assert_eq!(
            Secrets(&[k]).reply(cc, ip, 1559734385),
            hex("2464c4abcf10c957010000005cf7a871d4a564a1442aca77")
        );
        // A.3: another client's cookie, reserved octets set by its server: they are
        // hashed as sent. Its timestamp is 1h52m old at the example's time, so judge
        // it at its own time; and the fresh one is ours.
        let ip3: IpAddr = "203.0.113.203".parse().unwrap();
        let query = hex("fc93fc62807ddb8601abcdef5cf78f71a314227b6679ebf5");
        let (cc, sc) = split(&query).unwrap();
        assert_eq!(
            Secrets(&[k]).verdict(cc, sc, ip3, 0x5cf78f71),
            Verdict::Valid
        );
        assert_eq!(
            Secrets(&[k]).verdict(cc, sc, ip3, 1559734700),
            Verdict::Invalid,
            "stale"
        );
        assert_eq!(
            Secrets(&[k]).reply(cc, ip3, 1559734700),
            hex("fc93fc62807ddb86010000005cf7a9acf73a7810aca2381e")
        );
        // The same cookie from another address is not valid.
        let other: IpAddr = "203.0.113.204".parse().unwrap();
        assert_eq!(
            Secrets(&[k]).verdict(cc, sc, other, 0x5cf78f71),
            Verdict::Invalid
        );
    }

    /// RFC 9018 A.4: an IPv6 client across a secret rotation: the old secret's cookie
    /// is accepted while the old secret is listed second, and not after.
    #[test]
    fn rfc9018_rotation_over_ipv6() {
        let old = secret("dd3bdf9344b678b185a6f5cb60fca715");
        let new = secret("445536bcd2513298075a5d379663c962");
        let ip: IpAddr = "2001:db8:220:1:59de:d0f4:8769:82b8".parse().unwrap();
        let query = hex("22681ab97d52c298010000005cf7c57926556bd0934c72f8");
        let (cc, sc) = split(&query).unwrap();
        let at = 0x5cf7c579;
        assert_eq!(Secrets(&[new, old]).verdict(cc, sc, ip, at), Verdict::Valid);
        assert_eq!(Secrets(&[new]).verdict(cc, sc, ip, at), Verdict::Invalid);
    }

    #[test]
    fn lengths_and_lifetimes() {
        for (len, ok) in [
            (0, false),
            (7, false),
            (8, true),
            (9, false),
            (15, false),
            (16, true),
            (24, true),
            (40, true),
            (41, false),
        ] {
            assert_eq!(split(&vec![0; len]).is_some(), ok, "{len} octets");
        }
        let now = 1_559_731_985;
        assert!(fresh(now - 3600, now) && !fresh(now - 3601, now));
        assert!(fresh(now + 300, now) && !fresh(now + 301, now));
        assert!(fresh(u32::MAX - 100, 1000), "an hour old across the wrap");
    }
}
