//! The DNS front: our own UDP and TCP loops around `Handler`.
//!
//! Why not `hickory_server::Server`: in 0.26.3 it spawns a task per UDP query, one
//! `ECONNABORTED` from `accept()` ends its TCP listener for good, and its shutdown drops
//! TCP connections mid-query. The loops below parse with hickory (`Request::from_bytes`),
//! call the handler synchronously (it encodes with hickory-proto's `BinEncoder`), and own
//! their sockets, so a slow or broken client affects only itself.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use socket2::{Domain, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::conns::Conns;
use super::handler::Handler;
use super::pktinfo;
use super::wire::{formerr_reply, opt_framing_ok};
use super::{fast, tcp, udp, xdp};
use crate::metrics::{Metrics, TcpMetrics, XdpMetrics};
use crate::plan::XdpSettings;

/// Sockets bound for one configuration, before any task runs on them.
pub struct Sockets {
    pub udp: Vec<std::net::UdpSocket>,
    pub tcp: Vec<std::net::TcpListener>,
    /// The AF_XDP listener beside the sockets, once `attach_xdp` made it.
    xdp: Option<xdp::Listener>,
}

impl Sockets {
    /// The addresses actually bound (port 0 resolved), one per listen address.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.tcp
            .iter()
            .filter_map(|t| t.local_addr().ok())
            .collect()
    }
}

/// Binds `per_addr` UDP sockets (SO_REUSEPORT, so the kernel spreads queries across
/// them and each loop runs on its own core) and one TCP listener per address. Port 0
/// picks one free port shared by UDP and TCP. With `xdp`, also attaches the AF_XDP
/// listener for the IPv4 addresses.
pub fn bind(
    listen: &[SocketAddr],
    per_addr: usize,
    xdp: Option<&XdpSettings>,
) -> io::Result<Sockets> {
    let per_addr = per_addr.max(1);
    let mut out = Sockets {
        udp: Vec::new(),
        tcp: Vec::new(),
        xdp: None,
    };
    for &addr in listen {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match bind_one(addr, per_addr) {
                Ok((udp, tcp)) => {
                    out.udp.extend(udp);
                    out.tcp.push(tcp);
                    break;
                }
                // With port 0 the UDP port we got may be taken for TCP: try another.
                Err(e)
                    if addr.port() == 0 && attempt < 20 && e.kind() == io::ErrorKind::AddrInUse => {
                }
                Err(e) => return Err(io::Error::new(e.kind(), format!("cannot bind {addr}: {e}"))),
            }
        }
    }
    if let Some(x) = xdp {
        attach_xdp(&mut out, x)?;
    }
    Ok(out)
}

/// Attaches the AF_XDP listener for the bound IPv4 addresses (port 0 resolved), on
/// `settings.interface`. The sockets stay: they serve what the listener does not take.
fn attach_xdp(sockets: &mut Sockets, settings: &XdpSettings) -> io::Result<()> {
    let listen = sockets.local_addrs();
    let l = xdp::open(settings, &listen).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot serve over XDP on {}: {e}", settings.interface),
        )
    })?;
    sockets.xdp = Some(l);
    Ok(())
}

fn bind_one(
    addr: SocketAddr,
    n: usize,
) -> io::Result<(Vec<std::net::UdpSocket>, std::net::TcpListener)> {
    let mut udp = Vec::with_capacity(n);
    let first = udp_socket(addr)?;
    let bound = first.local_addr()?;
    udp.push(first);
    for _ in 1..n {
        udp.push(udp_socket(bound)?);
    }
    let tcp = Socket::new(Domain::for_address(bound), Type::STREAM, None)?;
    tcp.set_reuse_address(true)?;
    if bound.is_ipv6() {
        tcp.set_only_v6(true)?;
    }
    tcp.bind(&bound.into())?;
    tcp.listen(1024)?;
    tcp.set_nonblocking(true)?;
    Ok((udp, tcp.into()))
}

fn udp_socket(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    let s: std::net::UdpSocket = s.into();
    if addr.ip().is_unspecified() {
        pktinfo::enable(&s, addr.is_ipv6())?;
    }
    Ok(s)
}

/// Limits for the TCP side.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Between messages: a connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// A message whose first length byte arrived must be complete within this.
    pub message_timeout: Duration,
    pub max_connections: usize,
    /// Connections one source (IPv4 address, IPv6 /64) may hold.
    pub max_per_source: usize,
}

/// The counters the socket loops keep.
pub struct FrontMetrics {
    pub tcp: TcpMetrics,
    pub xdp: XdpMetrics,
}

impl FrontMetrics {
    pub fn of(m: &Metrics) -> FrontMetrics {
        FrontMetrics {
            tcp: m.tcp.clone(),
            xdp: m.xdp.clone(),
        }
    }
}

/// Runs every socket until `shutdown` is cancelled. UDP loops stop at once; TCP
/// listeners stop accepting and each connection finishes the query it is on.
pub async fn run(
    sockets: Sockets,
    handler: Arc<Handler>,
    limits: TcpLimits,
    metrics: FrontMetrics,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let mut tasks = JoinSet::new();
    // The blocking UDP loops watch a flag that follows the shutdown token.
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (stop, shutdown) = (stop.clone(), shutdown.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            stop.store(true, Ordering::Relaxed);
        });
    }
    // Held until every loop ends: dropping it detaches the program.
    let _steering = match sockets.xdp {
        Some(l) => Some(xdp::start(
            l,
            &sockets.udp,
            handler.clone(),
            stop.clone(),
            metrics.xdp,
            &mut tasks,
        )?),
        None => None,
    };
    for s in sockets.udp {
        if s.local_addr()?.ip().is_unspecified() {
            let socket = UdpSocket::from_std(s)?;
            tasks.spawn(udp_loop_wildcard(socket, handler.clone(), shutdown.clone()));
        } else {
            let (handler, stop) = (handler.clone(), stop.clone());
            tasks.spawn_blocking(move || udp::serve(s, handler, stop));
        }
    }
    let conns = Conns::new(limits.max_connections, limits.max_per_source);
    for l in sockets.tcp {
        let listener = TcpListener::from_std(l)?;
        tasks.spawn(tcp::accept_loop(
            listener,
            handler.clone(),
            limits,
            conns.clone(),
            metrics.tcp.clone(),
            shutdown.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// The UDP loop of a socket bound to `0.0.0.0` or `[::]`, on tokio (not batched):
/// each reply leaves from the address its query arrived at.
async fn udp_loop_wildcard(socket: UdpSocket, handler: Arc<Handler>, shutdown: CancellationToken) {
    let mut buf = vec![0u8; 65_535];
    let mut out = Vec::with_capacity(4096);
    let mut cmsg = pktinfo::cmsg_buffer();
    loop {
        let (len, src, arrival) = tokio::select! {
            r = pktinfo::recv(&socket, &mut buf, &mut cmsg) => match r {
                Ok(x) => x,
                Err(e) => {
                    debug!(error = %e, "udp recv");
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        if src.port() == 0 || !answer(&handler, &buf[..len], src, Protocol::Udp, &mut out) {
            continue;
        }
        let sent = match arrival {
            Some(a) => pktinfo::send(&socket, &out, src, a).await,
            None => socket.send_to(&out, src).await.map(|_| ()),
        };
        if let Err(e) = sent {
            debug!(error = %e, %src, "udp send");
        }
    }
}

/// At most one log line a second for something any client can send, with the count
/// of the ones left out: a flood of malformed packets cannot flood the log.
pub struct LogBudget {
    second: AtomicU64,
    left_out: AtomicU64,
}

impl LogBudget {
    pub const fn new() -> LogBudget {
        LogBudget {
            second: AtomicU64::new(0),
            left_out: AtomicU64::new(0),
        }
    }

    /// `Some(lines left out since the last one)` when a line may be written now.
    pub fn allow(&self) -> Option<u64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs());
        let last = self.second.load(Ordering::Relaxed);
        if last != now
            && self
                .second
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.left_out.swap(0, Ordering::Relaxed));
        }
        self.left_out.fetch_add(1, Ordering::Relaxed);
        None
    }
}

impl Default for LogBudget {
    fn default() -> Self {
        LogBudget::new()
    }
}

static MALFORMED_LOG: LogBudget = LogBudget::new();

/// Answers one message into `out`; false when nothing is to be sent. Every byte a
/// client sends reaches this (the fuzz targets in `fuzz/` call it directly): the fast
/// path takes the common query, the general path everything else.
pub fn answer(
    handler: &Handler,
    raw: &[u8],
    src: SocketAddr,
    proto: Protocol,
    out: &mut Vec<u8>,
) -> bool {
    match answer_fast(handler, raw, src, proto, out) {
        Some(sent) => sent,
        None => answer_general(handler, raw, src, proto, out),
    }
}

/// The fast path alone (`fast.rs`): `None` when it leaves the message to the general
/// path, having done nothing.
pub fn answer_fast(
    handler: &Handler,
    raw: &[u8],
    src: SocketAddr,
    proto: Protocol,
    out: &mut Vec<u8>,
) -> Option<bool> {
    fast::respond(handler, &fast::decode(raw)?, src, proto, out)
}

/// The general path alone: parsed by hickory, answered by `Handler::respond`.
pub fn answer_general(
    handler: &Handler,
    raw: &[u8],
    src: SocketAddr,
    proto: Protocol,
    out: &mut Vec<u8>,
) -> bool {
    // Badly framed EDNS options never reach hickory's parser, which logs every byte it
    // collected from them at WARN: one packet could write hundreds of kilobytes.
    let parsed = if opt_framing_ok(raw) {
        Request::from_bytes(raw.to_vec(), src, proto).map_err(|e| e.to_string())
    } else {
        Err("EDNS options overrun the OPT record".to_string())
    };
    match parsed {
        Ok(req) => handler.respond(&req, proto, out).is_some(),
        Err(e) => {
            let Some(h) = formerr_reply(raw) else {
                handler.count_dropped(raw);
                return false;
            };
            handler.count_malformed(proto);
            if let Some(left_out) = MALFORMED_LOG.allow() {
                let error: String = e.chars().take(200).collect();
                debug!(%error, %src, left_out, "malformed query: FORMERR (at most one such line a second)");
            }
            out.clear();
            out.extend_from_slice(&h);
            true
        }
    }
}
