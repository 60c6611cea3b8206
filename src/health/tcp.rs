//! `tcp` probe: the check passes when a TCP connection is established.

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};

use super::failure::{IoFailure, ProbeResult, Stage};

pub async fn probe(addr: SocketAddr, source: Option<IpAddr>) -> ProbeResult {
    let stream = connect(addr, source)
        .await
        .map_err(|e| IoFailure::new(Stage::Connect, &e))?;
    // Close at once; we only wanted to know that the listener accepts.
    drop(stream);
    Ok(())
}

/// A connection to `addr`, from `source` (any port) when one is given.
pub async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect(addr).await;
    };
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(addr).await
}
