//! Client networks: an IPv4 or IPv6 prefix with its host bits zero, as region
//! definitions and ECS options need them. A thin layer over `ipnet`, which does the
//! parsing and the bit arithmetic; what it adds is the rule that host bits must be zero
//! (a typo such as `10.1.0.1/16` is refused, not silently widened) and our messages.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// Why a network was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("{0:?} is not ADDRESS/PREFIX")]
    Syntax(String),
    #[error("address {0:?} does not parse")]
    Address(String),
    #[error("prefix {0:?} is not a number")]
    PrefixSyntax(String),
    #[error("{0}: prefix /{1} is longer than the address")]
    PrefixTooLong(String, u8),
    #[error("{0}: bits are set beyond the prefix")]
    HostBits(String),
}

/// An IPv4 or IPv6 network, host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Net(IpNet);

impl Net {
    /// Parses `10.1.0.0/16` or `2001:db8::/32`; rejects host bits beyond the prefix.
    pub fn parse(s: &str) -> Result<Net, NetError> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| NetError::Syntax(s.to_string()))?;
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| NetError::Address(a.to_string()))?;
        let prefix: u8 = p
            .trim()
            .parse()
            .map_err(|_| NetError::PrefixSyntax(p.to_string()))?;
        Net::new(addr, prefix)
    }

    pub fn new(addr: IpAddr, prefix: u8) -> Result<Net, NetError> {
        let net = IpNet::new(addr, prefix)
            .map_err(|_| NetError::PrefixTooLong(format!("{addr}/{prefix}"), prefix))?;
        if net.trunc() != net {
            return Err(NetError::HostBits(format!("{addr}/{prefix}")));
        }
        Ok(Net(net))
    }

    pub fn addr(&self) -> IpAddr {
        self.0.addr()
    }

    pub fn prefix(&self) -> u8 {
        self.0.prefix_len()
    }

    pub fn ipnet(&self) -> IpNet {
        self.0
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.prefix())
    }
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
        let e = Net::parse("10.1.0.1/16").unwrap_err().to_string();
        assert_eq!(e, "10.1.0.1/16: bits are set beyond the prefix");
        assert!(matches!(
            Net::parse("10.1.0.0/33"),
            Err(NetError::PrefixTooLong(_, 33))
        ));
        assert!(Net::parse("10.1.0.0").is_err());
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
}
