//! The DNS front: authoritative semantics (`handler`, the general path), the reply's
//! wire encoding (`wire`), the fast path for the common query (`fast`), the service
//! draw both paths share (`service`) and the socket loops (`server`).

mod conns;
pub mod cookie;
mod fast;
pub mod handler;
mod pktinfo;
pub mod rrl;
pub mod server;
mod service;
mod tcp;
mod udp;
mod wire;
mod xdp;

pub use handler::{Handler, Outcome};
pub use wire::formerr_reply;

/// Bytes from hex digits (whitespace between them is ignored), for the tests' fixed
/// vectors.
#[cfg(test)]
fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
