//! The DNS front: authoritative semantics (`handler`), the reply's wire encoding
//! (`wire`) and the socket loops (`server`).

pub mod handler;
pub mod server;
mod wire;

pub use handler::{Handler, Outcome};
pub use wire::formerr_reply;
