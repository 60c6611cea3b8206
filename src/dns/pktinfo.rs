//! Wildcard UDP sockets (`0.0.0.0`, `[::]`) must reply from the address each query
//! came to: with an anycast or secondary address, a reply from the primary address is
//! dropped by the resolver. The kernel says where a datagram arrived in an
//! `IP_PKTINFO` / `IPV6_PKTINFO` control message; the reply hands the same address back.

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use nix::libc;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, sendmsg, setsockopt,
    sockopt,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Where a datagram arrived: the local address it was sent to, and the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub local: IpAddr,
    ifindex: u32,
}

/// Asks the kernel for the arrival address of every datagram on `s`.
pub fn enable(s: &std::net::UdpSocket, v6: bool) -> io::Result<()> {
    if v6 {
        setsockopt(s, sockopt::Ipv6RecvPacketInfo, &true)?;
    } else {
        setsockopt(s, sockopt::Ipv4PacketInfo, &true)?;
    }
    Ok(())
}

fn to_socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::new(IpAddr::V4(v4.ip()), v4.port()));
    }
    a.as_sockaddr_in6()
        .map(|v6| SocketAddr::new(IpAddr::V6(v6.ip()), v6.port()))
}

/// Receives one datagram into `buf`: its length, its source, and where it arrived.
pub async fn recv(
    s: &UdpSocket,
    buf: &mut [u8],
    cmsg: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<Arrival>)> {
    loop {
        s.readable().await?;
        let r = s.try_io(Interest::READABLE, || {
            let mut iov = [IoSliceMut::new(buf)];
            let msg =
                recvmsg::<SockaddrStorage>(s.as_raw_fd(), &mut iov, Some(cmsg), MsgFlags::empty())
                    .map_err(io::Error::from)?;
            let src = msg
                .address
                .as_ref()
                .and_then(to_socket_addr)
                .ok_or_else(|| io::Error::other("datagram without a source address"))?;
            let mut arrival = None;
            for c in msg.cmsgs().map_err(io::Error::from)? {
                match c {
                    ControlMessageOwned::Ipv4PacketInfo(i) => {
                        arrival = Some(Arrival {
                            local: IpAddr::V4(Ipv4Addr::from(u32::from_be(i.ipi_addr.s_addr))),
                            ifindex: 0,
                        });
                    }
                    ControlMessageOwned::Ipv6PacketInfo(i) => {
                        arrival = Some(Arrival {
                            local: IpAddr::V6(Ipv6Addr::from(i.ipi6_addr.s6_addr)),
                            ifindex: i.ipi6_ifindex,
                        });
                    }
                    _ => {}
                }
            }
            Ok((msg.bytes, src, arrival))
        });
        match r {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

/// The control-message buffer `recv` needs.
pub fn cmsg_buffer() -> Vec<u8> {
    nix::cmsg_space!(libc::in6_pktinfo, libc::in_pktinfo)
}

/// Sends `data` to `to`, from the address the query arrived at.
pub async fn send(s: &UdpSocket, data: &[u8], to: SocketAddr, from: Arrival) -> io::Result<()> {
    let dest = SockaddrStorage::from(to);
    loop {
        s.writable().await?;
        let r = s.try_io(Interest::WRITABLE, || {
            let iov = [IoSlice::new(data)];
            let sent = match from.local {
                IpAddr::V4(a) => {
                    let info = libc::in_pktinfo {
                        ipi_ifindex: 0,
                        ipi_spec_dst: libc::in_addr {
                            s_addr: u32::from(a).to_be(),
                        },
                        ipi_addr: libc::in_addr { s_addr: 0 },
                    };
                    let c = [ControlMessage::Ipv4PacketInfo(&info)];
                    sendmsg(s.as_raw_fd(), &iov, &c, MsgFlags::empty(), Some(&dest))
                }
                IpAddr::V6(a) => {
                    let info = libc::in6_pktinfo {
                        ipi6_addr: libc::in6_addr {
                            s6_addr: a.octets(),
                        },
                        ipi6_ifindex: from.ifindex,
                    };
                    let c = [ControlMessage::Ipv6PacketInfo(&info)];
                    sendmsg(s.as_raw_fd(), &iov, &c, MsgFlags::empty(), Some(&dest))
                }
            };
            sent.map(|_| ()).map_err(io::Error::from)
        });
        match r {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}
