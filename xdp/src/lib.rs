//! AF_XDP for gslb's UDP listener, behind a safe interface.
//!
//! gslb's library forbids unsafe code; an AF_XDP socket cannot be had without it (the
//! rings are memory shared with the kernel, and the XDP program is loaded with the raw
//! `bpf` system call). This crate holds that code and nothing else:
//!
//! - [`Steering`]: an XDP program, attached to one interface in generic (SKB) or
//!   native (driver) mode, that hands every plain IPv4 UDP datagram for one of the
//!   given (address, port) pairs to the AF_XDP socket of the receive queue it arrived
//!   on. Everything else (IPv6, IP options, fragments, other ports, and any queue
//!   without a socket) goes on through the kernel's stack as before.
//! - [`Socket`]: one AF_XDP socket in copy mode with its own frames (UMEM) and its
//!   four rings. [`Socket::serve_batch`] hands each received frame to a closure that
//!   rewrites it into the reply in place, and sends the replies with one system call.
//!
//! Packet contents (Ethernet, IPv4, UDP, checksums) are the caller's business.

// The ring offsets passed to mmap need a 64-bit off_t, and the instruction encoding
// puts the destination register in the low nibble as little-endian kernels read it.
#[cfg(not(all(
    target_os = "linux",
    target_pointer_width = "64",
    target_endian = "little"
)))]
compile_error!("gslb-xdp supports 64-bit little-endian Linux only");

mod bpf;
mod ring;
mod xsk;

pub use bpf::{Match, Mode, Steering, ifindex};
pub use xsk::{Socket, Statistics};
