//! DNS over TCP (RFC 1035 §4.2.2, RFC 7766): the accept loop and one connection's loop,
//! with the defences a public server needs against clients that hold connections
//! without querying: an idle timeout between messages, a deadline for each message
//! once its first byte arrived (Knot's `tcp-io-timeout`), a close on a frame shorter
//! than a DNS header, and slots that go to newcomers by evicting the connection idle
//! longest (see `conns`).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::net::xfer::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::conns::{Admission, Conns, Ticket};
use super::handler::Handler;
use super::server::{TcpLimits, answer};
use crate::metrics::{TcpClose, TcpMetrics};

/// A DNS header: no shorter frame can hold a message.
const HEADER_LEN: usize = 12;

pub(super) async fn accept_loop(
    listener: TcpListener,
    handler: Arc<Handler>,
    limits: TcpLimits,
    conns: Arc<Conns>,
    metrics: TcpMetrics,
    shutdown: CancellationToken,
) {
    let mut tasks = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.cancelled() => break,
        };
        let (stream, src) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // ECONNABORTED and friends concern one connection, not the listener; a
                // full descriptor table clears up when connections close, so pause.
                warn!(error = %e, "tcp accept");
                if matches!(e.raw_os_error(), Some(23 | 24)) {
                    // ENFILE / EMFILE
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
        };
        let ticket = match conns.admit(src.ip()) {
            Ok((ticket, how)) => {
                if how != Admission::Free {
                    debug!(%src, ?how, "tcp connections full; the one idle longest makes room");
                }
                ticket
            }
            Err(_) => {
                metrics.closed(TcpClose::Refused);
                debug!(%src, "tcp connections full and all mid-message; closing");
                continue;
            }
        };
        let handler = handler.clone();
        let shutdown = shutdown.clone();
        let metrics = metrics.clone();
        tasks.spawn(async move {
            metrics.open.inc();
            match conn(stream, src, &handler, limits, &ticket, &shutdown).await {
                Ok(Some(why)) => metrics.closed(why),
                Ok(None) => {}
                Err(e) => debug!(error = %e, %src, "tcp connection ended"),
            }
            drop(ticket);
            metrics.open.dec();
        });
        while tasks.try_join_next().is_some() {}
    }
    // Stop accepting, but let open connections finish what they are answering.
    while tasks.join_next().await.is_some() {}
}

/// One TCP connection: length-prefixed messages answered in order, so pipelined
/// queries work (RFC 7766 §6.2.1.1). Reads are buffered, so a pipelining client's
/// queries cost one read between them, and replies are written out when no further
/// query is already buffered: one write for a burst of answers. Returns why the server
/// closed it (`None`: the client did, or shutdown between messages).
async fn conn(
    mut stream: TcpStream,
    src: SocketAddr,
    handler: &Handler,
    limits: TcpLimits,
    ticket: &Ticket,
    shutdown: &CancellationToken,
) -> io::Result<Option<TcpClose>> {
    stream.set_nodelay(true)?;
    let (r, w) = stream.split();
    let mut r = BufReader::with_capacity(READ_BUFFER, r);
    let mut w = BufWriter::with_capacity(WRITE_BUFFER, w);
    let mut out = Vec::with_capacity(4096);
    let mut msg = Vec::with_capacity(512);
    let result = async {
        loop {
            if r.buffer().is_empty() && !w.buffer().is_empty() {
                // Nothing more pipelined: send what was answered. A client that stops
                // reading stalls this once the socket buffers fill; bound it.
                match timeout(limits.idle_timeout, w.flush()).await {
                    Ok(res) => res?,
                    Err(_) => return Ok(Some(TcpClose::WriteTimeout)),
                }
            }
            ticket.idle();
            let mut len = [0u8; 2];
            tokio::select! {
                res = timeout(limits.idle_timeout, r.read(&mut len[..1])) => match res {
                    Ok(Ok(0)) => return Ok(None),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(_) => return Ok(Some(TcpClose::Idle)),
                },
                _ = ticket.evicted().cancelled() => return Ok(Some(TcpClose::Evicted)),
                _ = shutdown.cancelled() => return Ok(None),
            }
            // A message has started: the rest of it, by one deadline however it trickles.
            ticket.busy();
            let deadline = Instant::now() + limits.message_timeout;
            match timeout_at(deadline, r.read_exact(&mut len[1..])).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(Some(TcpClose::MessageTimeout)),
            }
            let n = u16::from_be_bytes(len) as usize;
            if n < HEADER_LEN {
                return Ok(Some(TcpClose::ShortFrame));
            }
            msg.resize(n, 0);
            match timeout_at(deadline, r.read_exact(&mut msg)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(Some(TcpClose::MessageTimeout)),
            }
            if !answer(handler, &msg, src, Protocol::Tcp, &mut out) {
                continue;
            }
            let frame_len = (out.len() as u16).to_be_bytes();
            match timeout(limits.idle_timeout, async {
                w.write_all(&frame_len).await?;
                w.write_all(&out).await
            })
            .await
            {
                Ok(res) => res?,
                Err(_) => return Ok(Some(TcpClose::WriteTimeout)),
            }
        }
    }
    .await;
    // Whatever ended the connection, the answers already made still go out (briefly).
    if !matches!(result, Ok(Some(TcpClose::WriteTimeout))) && !w.buffer().is_empty() {
        let _ = timeout(Duration::from_millis(200), w.flush()).await;
    }
    result
}

/// Pipelined queries read at once.
const READ_BUFFER: usize = 16 * 1024;
/// Replies gathered before a write (a larger reply goes out on its own).
const WRITE_BUFFER: usize = 16 * 1024;
