//! The fast path against the general path: the first byte picks the transport and the
//! client, the rest is the message. Wherever the fast path answers, its reply must be
//! the general path's, byte for byte, with the thread's random generator restarted
//! from the same seed before each (the test `differential.rs` does the same with
//! generated queries). Must never panic.
#![no_main]

mod common;

use std::net::SocketAddr;

use gslb::dns::server::{answer_fast, answer_general};
use gslb::rng::Rng;
use hickory_server::net::xfer::Protocol;
use libfuzzer_sys::fuzz_target;

/// Clients beside `common::source()` (in eu): in us, in no region, over IPv6.
const SOURCES: [&str; 3] = [
    "203.0.113.9:5300",
    "192.0.2.200:5300",
    "[2001:db8:e::5]:5300",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, raw)) = data.split_first() else {
        return;
    };
    let proto = if pick & 0x80 != 0 { Protocol::Tcp } else { Protocol::Udp };
    let src: SocketAddr = match pick & 0x03 {
        0 => common::source(),
        i => SOURCES[usize::from(i - 1)].parse().unwrap(),
    };
    let h = common::handler();
    let (mut general, mut fast) = (Vec::new(), Vec::new());
    Rng::seed_thread(u64::from(pick));
    let sent = answer_general(h, raw, src, proto, &mut general);
    Rng::seed_thread(u64::from(pick));
    if let Some(fast_sent) = answer_fast(h, raw, src, proto, &mut fast) {
        assert_eq!((fast_sent, &fast), (sent, &general), "the fast path's reply (left) differs");
    }
});
