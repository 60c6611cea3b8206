//! The AF_XDP listener's frames, by what became of them: an operator who turned it on
//! sees that it serves, and what it leaves to the kernel.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use super::must;

/// One batch's counts, added to the shared counters once per batch rather than once
/// per frame.
#[derive(Debug, Default, Clone, Copy)]
pub struct XdpCounts {
    /// Replied to from the frame, over XDP.
    pub answered: u64,
    /// Replied to through the kernel's socket: the reply did not fit a frame or the MTU.
    pub kernel: u64,
    /// No reply: not a well-formed IPv4 UDP datagram, or no answer was due (a
    /// response, a rate-limited query, a runt).
    pub dropped: u64,
    /// Never seen: the kernel had no room in the socket's ring or no frame to
    /// receive into (its own count, read once a second).
    pub lost: u64,
}

#[derive(Clone)]
pub struct XdpMetrics {
    answered: IntCounter,
    kernel: IntCounter,
    dropped: IntCounter,
    lost: IntCounter,
}

impl XdpMetrics {
    pub(super) fn register(registry: &Registry) -> XdpMetrics {
        let frames = must(IntCounterVec::new(
            Opts::new(
                "gslb_dns_xdp_frames_total",
                "Queries the AF_XDP listener received, by outcome: answered (the reply was handed to the kernel to send over XDP), kernel (the reply was too large for a frame or the MTU and left through the kernel's socket), dropped (no reply), lost (the kernel had no room for the frame: never seen).",
            ),
            &["outcome"],
        ));
        must(registry.register(Box::new(frames.clone())));
        XdpMetrics {
            answered: frames.with_label_values(&["answered"]),
            kernel: frames.with_label_values(&["kernel"]),
            dropped: frames.with_label_values(&["dropped"]),
            lost: frames.with_label_values(&["lost"]),
        }
    }

    pub fn add(&self, c: &XdpCounts) {
        for (counter, n) in [
            (&self.answered, c.answered),
            (&self.kernel, c.kernel),
            (&self.dropped, c.dropped),
            (&self.lost, c.lost),
        ] {
            if n > 0 {
                counter.inc_by(n);
            }
        }
    }
}
