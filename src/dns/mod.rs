//! The DNS front: authoritative semantics (`handler`) and the socket loops (`server`).

pub mod handler;
pub mod server;

pub use handler::{Handler, Outcome};
