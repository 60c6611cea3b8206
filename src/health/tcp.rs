//! `tcp` probe: the check passes when a TCP connection is established.

use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::{ProbeError, describe_io};

pub async fn probe(addr: SocketAddr) -> Result<(), ProbeError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| ProbeError(describe_io("connect", &e)))?;
    // Close at once; we only wanted to know that the listener accepts.
    drop(stream);
    Ok(())
}
