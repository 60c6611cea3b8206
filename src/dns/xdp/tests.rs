use super::*;

/// A query frame from `src` to `dst` with `payload`, checksums right.
fn frame(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; HEADERS + payload.len()];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]); // the receiver's MAC
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]); // the sender's MAC
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[HEADERS..].copy_from_slice(payload);
    // write_headers writes a datagram from q.dst to q.src: ask for the reverse.
    let q = Query {
        src: dst,
        dst: src,
        payload: payload.len(),
    };
    write_headers(&mut f, &q);
    // ...and it swapped the MACs; swap them back.
    for i in 0..6 {
        f.swap(i, 6 + i);
    }
    f
}

fn addrs() -> (SocketAddrV4, SocketAddrV4) {
    (
        "198.51.100.7:40000".parse().unwrap(),
        "192.0.2.53:53".parse().unwrap(),
    )
}

#[test]
fn header_checksum_matches_a_known_header() {
    // The IPv4 header of the usual worked example: its checksum field is b861.
    let h = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];
    assert_eq!(fold(sum(&h, 0)), 0xffff);
    let mut z = h;
    z[10..12].copy_from_slice(&[0, 0]);
    assert_eq!(!fold(sum(&z, 0)), 0xb861);
}

#[test]
fn a_query_frame_parses_and_its_reply_goes_back() {
    let (src, dst) = addrs();
    let payload = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01odd";
    let mut f = frame(src, dst, payload);
    let q = parse(&f, Link::Wire).expect("a well-formed query");
    assert_eq!((q.src, q.dst, q.payload), (src, dst, payload.len()));
    // The reply: a different payload of even length, headers turned around.
    let reply = b"\x12\x34\x81\x80";
    f.truncate(HEADERS);
    f.extend_from_slice(reply);
    write_headers(&mut f, &q);
    assert_eq!(&f[0..6], &[2, 0, 0, 0, 0, 2], "to the sender's MAC");
    assert_eq!(&f[6..12], &[2, 0, 0, 0, 0, 1]);
    let back = parse(&f, Link::Wire).expect("the reply is a well-formed datagram too");
    assert_eq!((back.src, back.dst, back.payload), (dst, src, reply.len()));
    assert_eq!(be16(&f, 20), 0x4000, "don't fragment");
    assert_eq!(f[22], 64);
}

#[test]
fn frames_the_kernel_would_drop_are_dropped() {
    let (src, dst) = addrs();
    let good = frame(
        src,
        dst,
        b"\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00",
    );
    assert!(parse(&good, Link::Wire).is_some());
    let broken = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        parse(&b, Link::Wire)
    };
    assert_eq!(broken(&|b| b[25] ^= 1), None, "IPv4 header checksum");
    assert_eq!(broken(&|b| b[14] = 0x46), None, "IP options");
    assert_eq!(broken(&|b| b[12] = 0x86), None, "not IPv4");
    assert_eq!(broken(&|b| b[23] = 6), None, "not UDP");
    assert_eq!(broken(&|b| b.truncate(40)), None, "runt");
    assert_eq!(
        broken(&|b| b.truncate(b.len() - 1)),
        None,
        "IP length past the frame"
    );
    // A fragment, with its header checksum made right again.
    let frag = {
        let mut b = good.clone();
        b[20] |= 0x20; // more fragments
        b[24..26].copy_from_slice(&[0, 0]);
        let c = !fold(sum(&b[14..34], 0));
        b[24..26].copy_from_slice(&c.to_be_bytes());
        b
    };
    assert_eq!(
        parse(&frag, Link::Wire),
        None,
        "a fragment goes to the kernel, never here"
    );
    // Sources one cannot or must not answer.
    let from = |s: &str| {
        parse(
            &frame(s.parse().unwrap(), dst, b"\0\0\0\0\0\0\0\0\0\0\0\0"),
            Link::Wire,
        )
    };
    assert_eq!(from("255.255.255.255:40000"), None);
    assert_eq!(from("224.0.0.1:40000"), None);
    assert_eq!(from("0.0.0.0:40000"), None);
    assert_eq!(from("198.51.100.7:0"), None);
    // A loopback source is a martian from a wire, and ordinary on loopback.
    let lo = frame(
        "127.0.0.1:40000".parse().unwrap(),
        dst,
        b"\0\0\0\0\0\0\0\0\0\0\0\0",
    );
    assert_eq!(parse(&lo, Link::Wire), None);
    assert!(parse(&lo, Link::Loopback).is_some());
    // To an Ethernet broadcast or multicast address.
    assert_eq!(broken(&|b| b[0] = 0xff), None, "Ethernet broadcast");
    assert_eq!(broken(&|b| b[0] = 0x01), None, "Ethernet multicast");
    // The UDP checksum is checked, except on loopback (which sends it unfinished), and
    // zero (none) is allowed over IPv4.
    assert_eq!(broken(&|b| b[HEADERS] ^= 1), None, "UDP checksum");
    let mut wrong = good.clone();
    wrong[40..42].copy_from_slice(&[0x12, 0x34]);
    assert_eq!(parse(&wrong, Link::Wire), None);
    assert_eq!(parse(&wrong, Link::Virtual), None);
    assert!(parse(&wrong, Link::Loopback).is_some());
    // The unfinished form another namespace's stack leaves on a veth: the sum of the
    // pseudo-header alone. Taken on a virtual link, refused from a wire.
    let mut unfinished = good.clone();
    let udp_len = good.len() - 34;
    let partial = fold(pseudo(*src.ip(), *dst.ip(), udp_len));
    unfinished[40..42].copy_from_slice(&partial.to_be_bytes());
    assert_ne!(unfinished, good);
    assert!(parse(&unfinished, Link::Virtual).is_some());
    assert_eq!(parse(&unfinished, Link::Wire), None);
    assert!(parse(&good, Link::Virtual).is_some());
    let mut corrupt = good.clone();
    corrupt[HEADERS] ^= 1;
    assert_eq!(
        parse(&corrupt, Link::Virtual),
        None,
        "a whole checksum that fails"
    );
    let mut none = good.clone();
    none[40..42].copy_from_slice(&[0, 0]);
    assert!(parse(&none, Link::Wire).is_some());
}

/// A query for `www.test` A as it arrived on a veth from another namespace (tcpdump
/// on the receiving end, 2026-12-07): the UDP checksum field holds 0x14a0, the sum of
/// the pseudo-header alone (10.53.0.2 -> 10.53.0.1, protocol 17, length 34), because
/// the sender's stack left the rest to checksum offload.
#[test]
fn a_query_from_a_veth_with_its_checksum_unfinished_is_taken() {
    let f = crate::dns::hex(
        "5a2970f98c0ba6ceb285b05b08004500 0036f4c540004011 31850a3500020a35
         00019c403bf9002214a0abcd01000001 000000000000037777770474657374 00
         00010001",
    );
    assert_eq!(f.len(), 68);
    let q = parse(&f, Link::Virtual).expect("taken on a virtual link");
    assert_eq!(q.src, "10.53.0.2:40000".parse().unwrap());
    assert_eq!(q.dst, "10.53.0.1:15353".parse().unwrap());
    assert_eq!(q.payload, 26);
    assert_eq!(parse(&f, Link::Wire), None, "not a checksum from a wire");
    let (src, dst) = (Ipv4Addr::new(10, 53, 0, 2), Ipv4Addr::new(10, 53, 0, 1));
    assert_eq!(fold(pseudo(src, dst, 34)), 0x14a0);
}

proptest::proptest! {
    /// Any bytes at all: parsed or refused, never a panic.
    #[test]
    fn parse_takes_any_bytes(b in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
        let _ = parse(&b, Link::Wire);
    }

    /// A reply from any address and port to any other, of any length: a datagram
    /// that parses back to the same addresses and length.
    #[test]
    fn replies_parse_back(
        src in proptest::num::u32::ANY,
        dst in proptest::num::u32::ANY,
        sport in 1u16..,
        dport in 1u16..,
        payload in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
    ) {
        let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
        proptest::prop_assume!(!src.is_unspecified() && !src.is_broadcast() && !src.is_multicast());
        let mut f = vec![0u8; HEADERS];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&payload);
        // As if answering a query from `dst` to `src`: the reply goes src -> dst.
        let q = Query { src: SocketAddrV4::new(dst, dport), dst: SocketAddrV4::new(src, sport), payload: 0 };
        write_headers(&mut f, &q);
        let got = parse(&f, Link::Loopback).expect("our own reply is well-formed");
        proptest::prop_assert_eq!(got.src, SocketAddrV4::new(src, sport));
        proptest::prop_assert_eq!(got.dst, SocketAddrV4::new(dst, dport));
        proptest::prop_assert_eq!(got.payload, payload.len());
        // The UDP checksum, which parse does not check, is right.
        let udp_len = f.len() - 34;
        proptest::prop_assert_eq!(fold(sum(&f[34..], pseudo(src, dst, udp_len))), 0xffff);
    }
}
