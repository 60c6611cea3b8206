//! One UDP datagram, any bytes, to the reply: parse, answer, encode. Must never panic;
//! a reply, when there is one, is a DNS response for the same ID.
#![no_main]

mod common;

use hickory_server::net::xfer::Protocol;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    if gslb::dns::server::answer(common::handler(), data, common::source(), Protocol::Udp, &mut out) {
        assert!(out.len() >= 12, "a reply has a header");
        assert_eq!(out[..2], data[..2], "the reply keeps the query's ID");
        assert!(out[2] & 0x80 != 0, "the reply is a response");
    }
});
