//! The AF_XDP listener (`[server] xdp_interface`): an XDP program on the interface
//! hands each plain IPv4 UDP query for one of our listen addresses to an AF_XDP
//! socket, and a thread per receive queue answers it by rewriting the frame in place
//! into the reply (Ethernet, IPv4 and UDP headers turned around, the answer copied
//! in) and sending it back out of the same interface. The server's side of the
//! kernel's IP and UDP layers is skipped both ways (the socket queue and `recvmmsg` in,
//! the UDP and IP output and the route lookup out): at saturation the two system calls
//! were about 95% of the CPU a query cost, in gslb and in gdnsd alike (issue 11,
//! `PERF=1 benches/peer_compare.sh`).
//!
//! What the program does not take goes through the kernel as before, to the ordinary
//! sockets, which stay bound: IPv6, IPv4 with options, fragments, and every queue
//! without a socket. A reply too large for the frame or for the interface's MTU
//! leaves through the ordinary socket of its listen address, which fragments it.
//! Every query still goes through `server::answer`: cookies, ECS and rate limiting
//! apply as on every other path.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gslb_xdp::{Match, Mode, Socket, Steering};
use hickory_server::net::xfer::Protocol;
use nix::sys::socket::{MsgFlags, SockaddrIn, sendto};
use tokio::task::JoinSet;
use tracing::{debug, error, info};

use super::handler::Handler;
use super::server::answer;
use crate::metrics::{XdpCounts, XdpMetrics};
use crate::plan::{XdpMode, XdpSettings};

/// Frames answered per batch (one `sendto` sends them all).
const BATCH: u32 = 32;
/// How often an idle loop looks at the stop flag.
const POLL_SHUTDOWN: Duration = Duration::from_millis(200);
/// Ethernet, IPv4 without options, UDP.
const HEADERS: usize = 14 + 20 + 8;

/// The program on the interface and one socket per queue, before the threads run.
pub struct Listener {
    /// Held for as long as the listener serves; dropping it detaches the program.
    steering: Steering,
    sockets: Vec<Socket>,
    interface: Arc<str>,
    link: Link,
    mode: XdpMode,
}

/// What kind of link the interface is: it decides which UDP checksums and sources
/// are ordinary on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// `lo`: a datagram sent over it carries only the pseudo-header's part of the UDP
    /// checksum (the rest is left to "hardware" that loopback does not need), and
    /// loopback sources are ordinary.
    Loopback,
    /// A software device with no hardware under it (`veth`, as in a container's
    /// network namespace; a bridge, bond or VLAN too): a datagram another namespace of
    /// this host sent over it carries the unfinished checksum as on loopback, and one
    /// from a wire the whole checksum. Either is taken. (The kernel knows the first
    /// kind from the packet's metadata; gslb, seeing bytes only, takes a checksum equal
    /// to the unfinished form, which a corrupted datagram from a wire matches once in
    /// 65,536.)
    Virtual,
    /// A NIC: the whole checksum, or none.
    Wire,
}

impl Link {
    fn of(interface: &str) -> Link {
        let sys = format!("/sys/class/net/{interface}");
        if std::fs::read_to_string(format!("{sys}/type")).is_ok_and(|t| t.trim() == "772") {
            Link::Loopback // ARPHRD_LOOPBACK
        } else if std::fs::exists(format!("{sys}/device")).unwrap_or(true) {
            Link::Wire
        } else {
            Link::Virtual
        }
    }
}

/// Attaches to `settings.interface` for the IPv4 addresses of `listen` (specific ones:
/// the config refuses 0.0.0.0 with `xdp_interface`) with a socket on each of queues
/// `0..settings.queues`.
pub fn open(settings: &XdpSettings, listen: &[SocketAddr]) -> io::Result<Listener> {
    let interface = settings.interface.as_str();
    let queues = settings.queues;
    let ifindex = gslb_xdp::ifindex(interface)?;
    let matches: Vec<Match> = listen
        .iter()
        .filter_map(|a| match a {
            SocketAddr::V4(v4) => Some(Match {
                addr: *v4.ip(),
                port: v4.port(),
            }),
            SocketAddr::V6(_) => None,
        })
        .collect();
    let link = Link::of(interface);
    if link == Link::Loopback {
        loopback_ready(interface, &matches)?;
    }
    let mode = match settings.mode {
        XdpMode::Generic => Mode::Generic,
        XdpMode::Native => Mode::Native,
    };
    let steering = Steering::attach(ifindex, mode, queues, &matches)?;
    let mut sockets = Vec::with_capacity(queues as usize);
    for q in 0..queues {
        let s = Socket::new(ifindex, q)?;
        steering.insert(q, &s)?;
        sockets.push(s);
    }
    Ok(Listener {
        steering,
        sockets,
        interface: interface.into(),
        link,
        mode: settings.mode,
    })
}

/// The largest frame `interface` sends now: its MTU plus the Ethernet header.
fn max_frame(interface: &str) -> usize {
    std::fs::read_to_string(format!("/sys/class/net/{interface}/mtu"))
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(1500)
        .saturating_add(14)
}

/// A reply sent out of an interface over XDP comes back in through the kernel's IP
/// layer with no route attached, as if from a wire: on loopback, the kernel drops it
/// (a 127/8 or local source is a martian there) unless `route_localnet` and
/// `accept_local` are on for the interface. Refusing to start says so; serving would
/// send every reply into the void.
fn loopback_ready(interface: &str, matches: &[Match]) -> io::Result<()> {
    let sysctl = |what: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{what}"))
            .is_ok_and(|s| s.trim() == "1")
    };
    let on = |k: &str| sysctl(&format!("{interface}/{k}")) || sysctl(&format!("all/{k}"));
    let mut missing = Vec::new();
    if matches.iter().any(|m| m.addr.is_loopback()) && !on("route_localnet") {
        missing.push(format!("net.ipv4.conf.{interface}.route_localnet=1"));
    }
    if !on("accept_local") {
        missing.push(format!("net.ipv4.conf.{interface}.accept_local=1"));
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "replies over XDP on the loopback interface need sysctl {} (the kernel drops a \
         loopback-sourced packet that did not come through its own stack otherwise)",
        missing.join(" and ")
    )))
}

/// What every queue's thread shares.
#[derive(Clone)]
struct Queues {
    handler: Arc<Handler>,
    stop: Arc<AtomicBool>,
    metrics: XdpMetrics,
    interface: Arc<str>,
    link: Link,
}

/// Starts a thread per queue of `l` in `tasks` and hands back what must be held while
/// they serve. `udp` are the ordinary sockets: each thread gets its own handle on the
/// one of each IPv4 address, for replies too large for a frame.
pub fn start(
    l: Listener,
    udp: &[std::net::UdpSocket],
    handler: Arc<Handler>,
    stop: Arc<AtomicBool>,
    metrics: XdpMetrics,
    tasks: &mut JoinSet<()>,
) -> io::Result<Steering> {
    let queues = Queues {
        handler,
        stop,
        metrics,
        interface: l.interface,
        link: l.link,
    };
    for (q, socket) in l.sockets.into_iter().enumerate() {
        let mut kernel: Vec<(SocketAddrV4, std::net::UdpSocket)> = Vec::new();
        for s in udp {
            if let SocketAddr::V4(a) = s.local_addr()?
                && !kernel.iter().any(|(k, _)| *k == a)
            {
                kernel.push((a, s.try_clone()?));
            }
        }
        info!(queue = q, mode = ?l.mode, "DNS over XDP: serving a receive queue");
        let queues = queues.clone();
        tasks.spawn_blocking(move || serve(socket, queues, kernel));
    }
    Ok(l.steering)
}

/// How often a queue reads the kernel's drop counts and the interface's MTU.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// Serves one queue's socket until `stop` is set; call on a thread that may block.
/// `kernel` holds the ordinary socket of each listen address, for replies that do not
/// fit a frame. A socket error other than a full queue ends the thread: its socket
/// closes, which takes it out of the program's map, and the queue's queries go on to
/// the kernel's sockets.
fn serve(mut socket: Socket, q: Queues, kernel: Vec<(SocketAddrV4, std::net::UdpSocket)>) {
    let mut out = Vec::with_capacity(1232);
    let mut max = max_frame(&q.interface);
    let mut next_check = Instant::now() + HOUSEKEEPING;
    let mut lost_seen = 0;
    let give_up = |e: io::Error| {
        error!(error = %e, interface = %q.interface,
            "AF_XDP socket failed; its queue's queries go to the kernel's sockets from now on");
    };
    while !q.stop.load(Ordering::Relaxed) {
        if Instant::now() >= next_check {
            next_check = Instant::now() + HOUSEKEEPING;
            max = max_frame(&q.interface);
            if let Ok(st) = socket.statistics() {
                q.metrics.add(&XdpCounts {
                    lost: st.rx_lost.saturating_sub(lost_seen),
                    ..XdpCounts::default()
                });
                lost_seen = st.rx_lost;
            }
        }
        match socket.wait(POLL_SHUTDOWN) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => return give_up(e),
        }
        let mut counts = XdpCounts::default();
        let ctx = Ctx {
            handler: &q.handler,
            max_frame: max,
            kernel: &kernel,
            link: q.link,
        };
        let r = socket.serve_batch(BATCH, |frame, len| {
            reply(&ctx, frame, len, &mut out, &mut counts)
        });
        q.metrics.add(&counts);
        if let Err(e) = r {
            return give_up(e);
        }
    }
}

/// What answering one frame needs besides the frame.
struct Ctx<'a> {
    handler: &'a Handler,
    max_frame: usize,
    kernel: &'a [(SocketAddrV4, std::net::UdpSocket)],
    link: Link,
}

/// The reply to the frame's query written over it, and its length; `None` when there
/// is nothing to send from the frame (not a query of ours, no answer, or the answer
/// left through the kernel).
fn reply(
    ctx: &Ctx<'_>,
    frame: &mut [u8],
    len: usize,
    out: &mut Vec<u8>,
    counts: &mut XdpCounts,
) -> Option<usize> {
    let Some(q) = parse(&frame[..len], ctx.link) else {
        counts.dropped += 1;
        return None;
    };
    let query = &frame[HEADERS..HEADERS + q.payload];
    if !answer(
        ctx.handler,
        query,
        SocketAddr::V4(q.src),
        Protocol::Udp,
        out,
    ) {
        counts.dropped += 1;
        return None;
    }
    let total = HEADERS + out.len();
    if total > frame.len() || total > ctx.max_frame {
        counts.kernel += 1;
        send_through_kernel(ctx.kernel, &q, out);
        return None;
    }
    frame[HEADERS..total].copy_from_slice(out);
    write_headers(&mut frame[..total], &q);
    counts.answered += 1;
    Some(total)
}

/// A reply too large for a frame, from the ordinary socket of the address the query
/// was sent to, without waiting: a full send buffer must not stall the queue.
fn send_through_kernel(kernel: &[(SocketAddrV4, std::net::UdpSocket)], q: &Query, out: &[u8]) {
    let Some((_, s)) = kernel.iter().find(|(a, _)| *a == q.dst) else {
        debug!(dst = %q.dst, "no socket for a large reply");
        return;
    };
    let to = SockaddrIn::from(q.src);
    if let Err(e) = sendto(s.as_raw_fd(), out, &to, MsgFlags::MSG_DONTWAIT) {
        debug!(error = %e, src = %q.src, "udp send of a large reply");
    }
}

/// A query datagram's addresses and the length of its UDP payload (which starts at
/// `HEADERS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Query {
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: usize,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn ip4(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

/// Checks what the kernel's Ethernet, IP and UDP layers would have (the program
/// checked only the shape): a frame for this host, lengths, the header checksum, the
/// UDP checksum, and a source one could answer. `None` drops the frame, as the kernel
/// would. What checksums and sources are ordinary depends on the `link` (see [`Link`]).
fn parse(f: &[u8], link: Link) -> Option<Query> {
    if f.len() < HEADERS || be16(f, 12) != 0x0800 || f[14] != 0x45 || f[23] != 17 {
        return None;
    }
    if f[0] & 1 != 0 {
        return None; // to an Ethernet broadcast or multicast address: not to us alone
    }
    if be16(f, 20) & 0x3fff != 0 {
        return None; // a fragment
    }
    let ip_len = usize::from(be16(f, 16));
    if ip_len < 28 || 14 + ip_len > f.len() || fold(sum(&f[14..34], 0)) != 0xffff {
        return None;
    }
    let udp_len = usize::from(be16(f, 38));
    if udp_len < 8 || udp_len > ip_len - 20 {
        return None;
    }
    let src = ip4(f, 26);
    let dst = ip4(f, 30);
    let check = be16(f, 40);
    let whole = || fold(sum(&f[34..34 + udp_len], pseudo(src, dst, udp_len))) == 0xffff;
    // The unfinished form: the pseudo-header's sum alone, as the sender's stack left it.
    let unfinished = || check == fold(pseudo(src, dst, udp_len));
    let checksum_ok = match link {
        Link::Loopback => true,
        Link::Virtual => check == 0 || unfinished() || whole(),
        Link::Wire => check == 0 || whole(),
    };
    if !checksum_ok {
        return None;
    }
    if link != Link::Loopback && src.is_loopback() {
        return None; // a martian from the wire
    }
    if src.is_unspecified() || src.is_broadcast() || src.is_multicast() || be16(f, 34) == 0 {
        return None; // cannot be answered, or a reflection trick
    }
    Some(Query {
        src: SocketAddrV4::new(src, be16(f, 34)),
        dst: SocketAddrV4::new(dst, be16(f, 36)),
        payload: udp_len - 8,
    })
}

/// Turns the headers of `f` (whose payload from `HEADERS` is already the reply)
/// around: to the query's source from the address and port it was sent to.
fn write_headers(f: &mut [u8], q: &Query) {
    let total = f.len();
    for i in 0..6 {
        f.swap(i, 6 + i);
    }
    let ip_len = (total - 14) as u16;
    f[14] = 0x45;
    f[15] = 0;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[18..20].copy_from_slice(&[0, 0]); // id: unused with don't-fragment set
    f[20..22].copy_from_slice(&0x4000u16.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[24..26].copy_from_slice(&[0, 0]);
    f[26..30].copy_from_slice(&q.dst.ip().octets());
    f[30..34].copy_from_slice(&q.src.ip().octets());
    let csum = !fold(sum(&f[14..34], 0));
    f[24..26].copy_from_slice(&csum.to_be_bytes());
    let udp_len = total - 34;
    f[34..36].copy_from_slice(&q.dst.port().to_be_bytes());
    f[36..38].copy_from_slice(&q.src.port().to_be_bytes());
    f[38..40].copy_from_slice(&(udp_len as u16).to_be_bytes());
    f[40..42].copy_from_slice(&[0, 0]);
    let c = !fold(sum(&f[34..], pseudo(*q.dst.ip(), *q.src.ip(), udp_len)));
    // A computed zero is sent as all ones: zero means "no checksum" (RFC 768).
    let c = if c == 0 { 0xffff } else { c };
    f[40..42].copy_from_slice(&c.to_be_bytes());
}

/// The UDP pseudo-header's share of the checksum sum.
fn pseudo(src: Ipv4Addr, dst: Ipv4Addr, udp_len: usize) -> u64 {
    let (s, d) = (src.octets(), dst.octets());
    let words = [
        u16::from_be_bytes([s[0], s[1]]),
        u16::from_be_bytes([s[2], s[3]]),
        u16::from_be_bytes([d[0], d[1]]),
        u16::from_be_bytes([d[2], d[3]]),
        17,
        udp_len as u16,
    ];
    words.iter().map(|&w| u64::from(w)).sum()
}

/// The ones'-complement sum of `b` as 16-bit big-endian words (an odd last byte
/// padded with zero), added to `acc`, not yet folded.
fn sum(b: &[u8], acc: u64) -> u64 {
    let mut acc = acc;
    let mut chunks = b.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

#[cfg(test)]
mod tests;
