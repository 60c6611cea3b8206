//! `gslb demo`: the embedded quick-start configuration plus two toy "cluster gateways"
//! on loopback that answer `/hc`, so a fresh machine can see failover with nothing else
//! installed. `POST /fail` makes a gateway answer 503 `no healthy upstreams` (what an
//! Istio or Envoy gateway says when its clusters are gone); `POST /recover` undoes it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{info, warn};

/// The quick-start configuration, as shipped in `config/quickstart.toml`.
pub const QUICKSTART: &str = include_str!("../config/quickstart.toml");

/// Starts one toy gateway per address; returns once all are listening.
pub async fn start_gateways(addrs: &[SocketAddr]) -> std::io::Result<()> {
    for &addr in addrs {
        let listener = TcpListener::bind(addr).await?;
        let healthy = Arc::new(AtomicBool::new(true));
        info!(%addr, "demo gateway listening (POST /fail, POST /recover)");
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let healthy = healthy.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_one(stream, addr, &healthy).await {
                        warn!(%addr, error = %e, "demo gateway connection");
                    }
                });
            }
        });
    }
    Ok(())
}

async fn serve_one(
    mut s: TcpStream,
    addr: SocketAddr,
    healthy: &AtomicBool,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut n = 0;
    while n < buf.len() && !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
        let r = s.read(&mut buf[n..]).await?;
        if r == 0 {
            return Ok(());
        }
        n += r;
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = match (method, path) {
        ("POST", "/fail") => {
            healthy.store(false, Ordering::SeqCst);
            info!(%addr, "demo gateway now failing its health check");
            ("200 OK", "failing\n")
        }
        ("POST", "/recover") => {
            healthy.store(true, Ordering::SeqCst);
            info!(%addr, "demo gateway recovered");
            ("200 OK", "recovered\n")
        }
        (_, "/hc") if healthy.load(Ordering::SeqCst) => ("200 OK", "ok\n"),
        (_, "/hc") => ("503 Service Unavailable", "no healthy upstreams"),
        _ => ("404 Not Found", "not found\n"),
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(resp.as_bytes()).await?;
    s.shutdown().await
}
