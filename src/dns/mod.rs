//! The DNS front: authoritative semantics (`handler`), the reply's wire encoding
//! (`wire`) and the socket loops (`server`).

mod conns;
pub mod cookie;
pub mod handler;
mod pktinfo;
pub mod rrl;
pub mod server;
mod tcp;
mod udp;
mod wire;

pub use handler::{Handler, Outcome};
pub use wire::formerr_reply;
