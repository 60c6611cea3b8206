//! A TCP byte stream: length-prefixed messages (RFC 1035 §4.2.2) answered in order, as
//! the server's connection loop frames them. Must never panic.
#![no_main]

mod common;

use hickory_server::net::xfer::Protocol;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        let Some(msg) = rest.get(2..2 + len) else {
            break; // the connection would wait for the rest, then time out
        };
        if gslb::dns::server::answer(common::handler(), msg, common::source(), Protocol::Tcp, &mut out) {
            assert!(out.len() >= 12 && out.len() <= u16::MAX as usize);
            assert_eq!(out[..2], msg[..2]);
        }
        rest = &rest[2 + len..];
    }
});
