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
