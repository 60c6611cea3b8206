//! The TCP side's defences, counted: connections open, and the ones the server closed
//! by reason, so an operator sees a slow-read or connection-exhaustion attack for what
//! it is.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::must;

/// Why the server closed (or never served) a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpClose {
    /// Nothing arrived for `tcp_idle_timeout` between messages.
    Idle,
    /// A message that had started did not arrive within `tcp_message_timeout`.
    MessageTimeout,
    /// A length prefix shorter than a DNS header (a zero-length frame, say).
    ShortFrame,
    /// A newcomer took its slot: it had been idle longest.
    Evicted,
    /// No slot: every connection was in the middle of a message.
    Refused,
    /// The client did not read a reply within `tcp_idle_timeout`.
    WriteTimeout,
}

const REASONS: [&str; 6] = [
    "idle",
    "message_timeout",
    "short_frame",
    "evicted",
    "refused",
    "write_timeout",
];

#[derive(Clone)]
pub struct TcpMetrics {
    pub open: IntGauge,
    closed: [IntCounter; 6],
}

impl TcpMetrics {
    pub(super) fn register(registry: &Registry) -> TcpMetrics {
        let open = must(IntGauge::new(
            "gslb_dns_tcp_connections",
            "DNS TCP connections open.",
        ));
        let closed = must(IntCounterVec::new(
            Opts::new(
                "gslb_dns_tcp_closed_total",
                "DNS TCP connections the server closed or refused, by reason: idle, message_timeout, short_frame, evicted (idle longest when a newcomer needed its slot), refused (every slot mid-message), write_timeout.",
            ),
            &["reason"],
        ));
        must(registry.register(Box::new(open.clone())));
        must(registry.register(Box::new(closed.clone())));
        TcpMetrics {
            open,
            closed: REASONS.map(|r| closed.with_label_values(&[r])),
        }
    }

    pub fn closed(&self, why: TcpClose) {
        self.closed[why as usize].inc();
    }
}
