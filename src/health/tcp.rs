//! `tcp` probe: the check passes when a TCP connection is established.

use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::failure::{IoFailure, ProbeResult, Stage};

pub async fn probe(addr: SocketAddr) -> ProbeResult {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| IoFailure::new(Stage::Connect, &e))?;
    // Close at once; we only wanted to know that the listener accepts.
    drop(stream);
    Ok(())
}
