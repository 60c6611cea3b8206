//! The UDP loop of a socket bound to one address: a thread of its own that blocks in
//! `recvmmsg` (returning as soon as one datagram is there, with every other one already
//! waiting), answers the batch, and sends every reply with one `sendmmsg`. That is two
//! system calls per batch and no readiness loop: tokio's epoll wake-up per datagram was
//! most of our per-query cost (issue 11). Every datagram still goes through
//! `server::answer`, so cookies, ECS and rate limiting apply as on every other path.
//!
//! The socket has a receive timeout, so the thread notices the stop flag within
//! `POLL_SHUTDOWN` even when no query arrives.

use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hickory_server::net::xfer::Protocol;
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
use tracing::debug;

use super::handler::Handler;
use super::server::answer;

/// Datagrams read and answered per batch.
pub const BATCH: usize = 32;
/// Largest query read whole; a longer datagram is no query of ours.
const MAX_QUERY: usize = 4096;
/// How often an idle loop looks at the shutdown token.
const POLL_SHUTDOWN: Duration = Duration::from_millis(200);

fn to_socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::new(IpAddr::V4(v4.ip()), v4.port()));
    }
    a.as_sockaddr_in6()
        .map(|v6| SocketAddr::new(IpAddr::V6(v6.ip()), v6.port()))
}

/// Serves `socket` until `stop` is set; call on a thread that may block. (An atomic
/// flag rather than the shutdown token itself: `CancellationToken::is_cancelled`
/// takes a mutex that every loop would share.)
pub fn serve(socket: std::net::UdpSocket, handler: Arc<Handler>, stop: Arc<AtomicBool>) {
    if let Err(e) = socket
        .set_nonblocking(false)
        .and_then(|()| socket.set_read_timeout(Some(POLL_SHUTDOWN)))
    {
        tracing::error!(error = %e, "udp socket setup");
        return;
    }
    let fd = socket.as_raw_fd();
    let mut bufs = vec![[0u8; MAX_QUERY]; BATCH];
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(1232)).collect();
    let mut rx = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut tx = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut got: [(usize, Option<SocketAddr>, bool); BATCH] = [(0, None, false); BATCH];
    while !stop.load(Ordering::Relaxed) {
        let n = {
            let mut it = bufs.iter_mut();
            let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
                std::array::from_fn(|_| [IoSliceMut::new(it.next().expect("BATCH buffers"))]);
            match recvmmsg(fd, &mut rx, iovs.iter_mut(), MsgFlags::MSG_WAITFORONE, None) {
                Ok(msgs) => {
                    let mut n = 0;
                    for (slot, m) in got.iter_mut().zip(msgs) {
                        let truncated = m.flags.contains(MsgFlags::MSG_TRUNC);
                        *slot = (
                            m.bytes,
                            m.address.as_ref().and_then(to_socket_addr),
                            truncated,
                        );
                        n += 1;
                    }
                    n
                }
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(e) => {
                    // ICMP errors from earlier sends surface here on Linux; keep going.
                    debug!(error = %e, "udp recv");
                    continue;
                }
            }
        };

        let mut dests: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
        let mut k = 0;
        for (i, &(len, src, truncated)) in got[..n].iter().enumerate() {
            let Some(src) = src else { continue };
            if src.port() == 0 {
                continue; // cannot be answered, and a classic reflection trick
            }
            if truncated {
                handler.count_malformed(Protocol::Udp);
                continue;
            }
            if answer(&handler, &bufs[i][..len], src, Protocol::Udp, &mut outs[k]) {
                dests[k] = Some(SockaddrStorage::from(src));
                k += 1;
            }
        }
        send_all(fd, &mut tx, &outs[..k], &dests[..k]);
    }
}

/// Sends every reply, with one `sendmmsg` when the socket takes them all.
fn send_all(
    fd: std::os::fd::RawFd,
    tx: &mut MultiHeaders<SockaddrStorage>,
    outs: &[Vec<u8>],
    dests: &[Option<SockaddrStorage>],
) {
    let mut from = 0;
    while from < outs.len() {
        let mut it = outs[from..].iter();
        let slices: [[IoSlice<'_>; 1]; BATCH] =
            std::array::from_fn(|_| [IoSlice::new(it.next().map_or(&[][..], |o| &o[..]))]);
        let n = outs.len() - from;
        match sendmmsg(
            fd,
            tx,
            slices[..n].iter(),
            &dests[from..],
            [],
            MsgFlags::empty(),
        ) {
            Ok(sent) => {
                let sent = sent.count();
                if sent == 0 {
                    return;
                }
                from += sent;
            }
            Err(Errno::EINTR) => {}
            Err(e) => {
                // One reply the kernel refused (say, a dead route): skip it, send the rest.
                debug!(error = %e, "udp send");
                from += 1;
            }
        }
    }
}
