//! AF_XDP for gslb's UDP listener, behind a safe interface.
//!
//! gslb's library forbids unsafe code; an AF_XDP socket cannot be had without it (the
//! rings are memory shared with the kernel, and the XDP program is loaded with the raw
//! `bpf` system call). This crate holds that code and nothing else:
//!
//! - [`Steering`]: an XDP program, attached to one interface in generic (SKB) mode,
//!   that hands every plain IPv4 UDP datagram for one of the given (address, port)
//!   pairs to the AF_XDP socket of the receive queue it arrived on. Everything else
//!   (IPv6, IP options, fragments, other ports, and any queue without a socket) goes
//!   on through the kernel's stack as before.
//! - [`Socket`]: one AF_XDP socket in copy mode with its own frames (UMEM) and its
//!   four rings. [`Socket::serve_batch`] hands each received frame to a closure that
//!   rewrites it into the reply in place, and sends the replies with one system call.
//!
//! Packet contents (Ethernet, IPv4, UDP, checksums) are the caller's business.

mod bpf;
mod xsk;

pub use bpf::{Match, Steering, ifindex};
pub use xsk::{FRAMES, Socket};
