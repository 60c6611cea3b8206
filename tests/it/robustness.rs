//! Robustness: thousands of random and mutated packets over UDP, a few hundred abusive
//! TCP connections; the server must stay up, keep answering good queries exactly, never
//! answer what it must drop, and answer malformed queries with FORMERR and their ID.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use crate::common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};

const APP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

fn config() -> String {
    format!(
        r#"{ZONE}
[[gateway]]
name = "one"
addresses = ["192.0.2.1", "2001:db8::1"]

[[gateway]]
name = "big"
addresses = ["192.0.2.2", "2001:db8::2", "2001:db8::3", "2001:db8::4"]

[[service]]
name = "app.gslb.test"
endpoints = [{{ gateway = "one" }}]

[[service]]
name = "both.gslb.test"
answers = 2
endpoints = [{{ gateway = "one" }}, {{ gateway = "big" }}]
"#
    )
}

// ------------------------------------------------------------------------------- PRNG

/// xorshift64*: deterministic, so a failure replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

// ---------------------------------------------------------------------- packet building

fn header(id: u16, flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    [id, flags, qd, an, ns, ar]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
}

fn qname(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

fn question(name: &str, qtype: u16) -> Vec<u8> {
    let mut q = qname(name);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // IN
    q
}

/// An OPT record with `options` as its RDATA, as given (lengths not checked).
fn opt_rr(payload: u16, version: u8, options: &[u8]) -> Vec<u8> {
    let mut r = vec![0u8]; // root
    r.extend_from_slice(&41u16.to_be_bytes());
    r.extend_from_slice(&payload.to_be_bytes());
    r.extend_from_slice(&[0, version, 0, 0]); // ext rcode, version, flags
    r.extend_from_slice(&(options.len() as u16).to_be_bytes());
    r.extend_from_slice(options);
    r
}

/// An ECS option with the given fields; `addr` is written as is.
fn ecs(family: u16, source: u8, scope: u8, addr: &[u8]) -> Vec<u8> {
    let mut o = 8u16.to_be_bytes().to_vec();
    o.extend_from_slice(&((4 + addr.len()) as u16).to_be_bytes());
    o.extend_from_slice(&family.to_be_bytes());
    o.push(source);
    o.push(scope);
    o.extend_from_slice(addr);
    o
}

fn plain_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut p = header(id, 0x0100, 1, 0, 0, 0);
    p.extend(question(name, qtype));
    p
}

/// A valid EDNS query for app.gslb.test A with ECS 192.0.2.0/24.
fn edns_query(id: u16) -> Vec<u8> {
    let mut p = header(id, 0x0100, 1, 0, 0, 1);
    p.extend(question("app.gslb.test", 1));
    p.extend(opt_rr(1232, 0, &ecs(1, 24, 0, &[192, 0, 2])));
    p
}

/// Should the server reply at all? Only to a full header with QR=0: shorter packets and
/// responses are dropped; everything else gets an answer or FORMERR.
fn wants_reply(p: &[u8]) -> bool {
    p.len() >= 12 && p[2] & 0x80 == 0
}

// --------------------------------------------------------------------------- UDP client

/// One UDP socket for the whole run. Every packet gets its own ID, so a reply can be
/// matched to what it answers, and a reply to a packet that must be dropped is caught
/// (the server has one UDP socket and answers in order).
struct Client {
    sock: UdpSocket,
    server: SocketAddr,
    /// ID -> whether a reply is allowed.
    sent: HashMap<u16, bool>,
    next_id: u16,
    /// Packets sent, in all and since the last checkpoint.
    count: usize,
    since_check: usize,
}

impl Client {
    fn new(server: SocketAddr) -> Client {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        Client {
            sock,
            server,
            sent: HashMap::new(),
            next_id: 1,
            count: 0,
            since_check: 0,
        }
    }

    /// Sends `p` (its ID replaced by a fresh one when it has an ID) and returns the reply
    /// when one is expected (asserting one arrives), None otherwise.
    fn send(&mut self, mut p: Vec<u8>) -> Option<Vec<u8>> {
        let id = self.next_id;
        self.next_id = self.next_id.checked_add(1).expect("ID space exhausted");
        if p.len() >= 2 {
            p[0..2].copy_from_slice(&id.to_be_bytes());
        }
        let want = wants_reply(&p);
        if p.len() >= 2 {
            self.sent.insert(id, want);
        }
        self.count += 1;
        self.since_check += 1;
        self.sock.send_to(&p, self.server).unwrap();
        if !want {
            return None;
        }
        let reply = match self.recv_for(id) {
            Some(r) => r,
            None => {
                // One resend covers a rare loopback drop; a late first reply is skipped
                // by ID when it turns up.
                self.sock.send_to(&p, self.server).unwrap();
                self.recv_for(id)
                    .unwrap_or_else(|| panic!("no reply to packet {id}: {p:02x?}"))
            }
        };
        assert!(reply.len() >= 12, "short reply {reply:02x?}");
        assert!(reply.len() <= 1232, "UDP reply of {} bytes", reply.len());
        assert_eq!(reply[2] & 0x80, 0x80, "QR in reply to {p:02x?}");
        assert_eq!(
            reply[2] & 0x78,
            p[2] & 0x78,
            "opcode echoed for {p:02x?}: {reply:02x?}"
        );
        Some(reply)
    }

    fn recv_for(&mut self, id: u16) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 65_535];
        loop {
            let n = match self.sock.recv_from(&mut buf) {
                Ok((n, _)) => n,
                Err(_) => return None,
            };
            let reply = buf[..n].to_vec();
            assert!(n >= 2, "reply of {n} bytes");
            let rid = u16::from_be_bytes([reply[0], reply[1]]);
            if rid == id {
                return Some(reply);
            }
            match self.sent.get(&rid) {
                Some(true) => continue, // a late duplicate of an earlier answer
                Some(false) => panic!("server answered packet {rid}, which it must drop"),
                None => panic!("reply with unknown ID {rid}"),
            }
        }
    }

    /// Sends `p` and asserts the reply is FORMERR with the same ID.
    fn expect_formerr(&mut self, p: Vec<u8>, what: &str) {
        let reply = self
            .send(p)
            .unwrap_or_else(|| panic!("{what}: no reply expected?"));
        assert_eq!(
            ResponseCode::from_low(reply[3] & 0x0f),
            ResponseCode::FormErr,
            "{what}: {reply:02x?}"
        );
        let id = self.next_id - 1;
        assert_eq!(&reply[0..2], &id.to_be_bytes(), "{what}: ID");
    }

    /// A good query through the same socket: answered exactly.
    fn check_good(&mut self) {
        let reply = self
            .send(plain_query(0, "app.gslb.test", 1))
            .expect("reply");
        let m = Message::from_vec(&reply).expect("good reply parses");
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert_eq!(a_records(&m), vec![APP]);
    }
}

fn checkpoint(g: &mut Gslb, c: &mut Client) {
    assert!(
        g.is_running(),
        "gslb died after {} packets; logs:\n{}",
        c.count,
        g.logs()
    );
    c.check_good();
    c.since_check = 0;
    // And through a fresh socket, with the harness client, over TCP too.
    let m = query(g.addr, "app.gslb.test", RecordType::A);
    assert_eq!(a_records(&m), vec![APP]);
    let m = exchange(
        g.addr,
        &query_msg("app.gslb.test", RecordType::A, None),
        Transport::Tcp,
    );
    assert_eq!(a_records(&m), vec![APP]);
}

/// Sends `p`, checkpointing every 500 packets.
fn fire(g: &mut Gslb, c: &mut Client, p: Vec<u8>) -> Option<Vec<u8>> {
    let r = c.send(p);
    if c.since_check >= 500 {
        checkpoint(g, c);
    }
    r
}

// ------------------------------------------------------------------------ structured

/// Malformed messages that must each get FORMERR with their ID.
fn formerr_cases() -> Vec<(&'static str, Vec<u8>)> {
    let tc = [0u8, 1, 0, 1]; // type A, class IN
    let with = |h: Vec<u8>, body: &[u8]| {
        let mut p = h;
        p.extend_from_slice(body);
        p
    };
    let q1 = || header(0, 0, 1, 0, 0, 0);
    let mut v: Vec<(&'static str, Vec<u8>)> = Vec::new();

    // Bad label lengths.
    let mut long = vec![0x40];
    long.extend(std::iter::repeat_n(b'a', 64));
    long.push(0);
    long.extend_from_slice(&tc);
    v.push(("label length 64", with(q1(), &long)));
    let mut reserved = vec![0x80, b'a', 0];
    reserved.extend_from_slice(&tc);
    v.push(("label type 10", with(q1(), &reserved)));
    let mut ext = vec![0x41, b'a', 0];
    ext.extend_from_slice(&tc);
    v.push(("label type 01", with(q1(), &ext)));
    let mut past = vec![0x3f];
    past.extend(std::iter::repeat_n(b'x', 10));
    v.push(("label runs past the end", with(q1(), &past)));
    v.push((
        "label of 10 with 3 bytes",
        with(q1(), &[10, b'a', b'b', b'c']),
    ));
    let mut huge = Vec::new();
    for _ in 0..5 {
        huge.push(63);
        huge.extend(std::iter::repeat_n(b'z', 63));
    }
    huge.push(0);
    huge.extend_from_slice(&tc);
    v.push(("name over 255 bytes", with(q1(), &huge)));
    v.push((
        "name without terminator",
        with(q1(), &[3, b'a', b'p', b'p']),
    ));
    let mut noclass = qname("app.gslb.test");
    noclass.extend_from_slice(&[0, 1]);
    v.push(("question without class", with(q1(), &noclass)));
    v.push(("question without type", with(q1(), &qname("app.gslb.test"))));

    // Compression pointer loops and bad pointers.
    v.push(("pointer to itself", with(q1(), &[0xc0, 12, 0, 1, 0, 1])));
    v.push((
        "label then pointer back to its own name",
        with(q1(), &[1, b'a', 0xc0, 12, 0, 1, 0, 1]),
    ));
    // Two questions whose names point at each other.
    v.push((
        "two pointers to each other",
        with(
            header(0, 0, 2, 0, 0, 0),
            &[1, b'a', 0xc0, 20, 0, 1, 0, 1, 1, b'b', 0xc0, 12, 0, 1, 0, 1],
        ),
    ));
    v.push(("pointer forward", with(q1(), &[0xc0, 14, 0, 0, 0, 1, 0, 1])));
    v.push((
        "pointer past the end",
        with(q1(), &[0xff, 0xff, 0, 1, 0, 1]),
    ));
    v.push(("truncated pointer", with(q1(), &[0xc0])));

    // Two and three OPT records.
    let mut two = header(0, 0, 1, 0, 0, 2);
    two.extend(question("app.gslb.test", 1));
    two.extend(opt_rr(1232, 0, &[]));
    two.extend(opt_rr(1232, 0, &[]));
    v.push(("two OPT records", two));
    let mut three = header(0, 0, 1, 0, 0, 3);
    three.extend(question("app.gslb.test", 1));
    for _ in 0..3 {
        three.extend(opt_rr(4096, 0, &ecs(1, 24, 0, &[192, 0, 2])));
    }
    v.push(("three OPT records", three));
    // OPT outside the additional section.
    let mut opt_an = header(0, 0, 1, 1, 0, 0);
    opt_an.extend(question("app.gslb.test", 1));
    opt_an.extend(opt_rr(1232, 0, &[]));
    v.push(("OPT in the answer section", opt_an));
    // OPT whose RDATA runs past the message.
    let mut opt_long = header(0, 0, 1, 0, 0, 1);
    opt_long.extend(question("app.gslb.test", 1));
    let mut r = opt_rr(1232, 0, &ecs(1, 24, 0, &[192, 0, 2]));
    r[9..11].copy_from_slice(&200u16.to_be_bytes()); // RDLENGTH
    opt_long.extend(r);
    v.push(("OPT RDLENGTH past the end", opt_long));

    // ECS: bad family, prefix beyond the address, too few address bytes, empty.
    let edns_with = |opt: Vec<u8>| {
        let mut p = header(0, 0, 1, 0, 0, 1);
        p.extend(question("app.gslb.test", 1));
        p.extend(opt_rr(1232, 0, &opt));
        p
    };
    v.push(("ECS family 3", edns_with(ecs(3, 24, 0, &[192, 0, 2]))));
    v.push(("ECS family 0", edns_with(ecs(0, 0, 0, &[]))));
    v.push(("ECS v4 /33", edns_with(ecs(1, 33, 0, &[192, 0, 2, 1, 0]))));
    v.push(("ECS v4 /40", edns_with(ecs(1, 40, 0, &[192, 0, 2, 1]))));
    v.push((
        "ECS v6 /129",
        edns_with(ecs(
            2,
            129,
            0,
            &[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        )),
    ));
    v.push((
        "ECS /24 with 2 address bytes",
        edns_with(ecs(1, 24, 0, &[192, 0])),
    ));
    let mut empty = 8u16.to_be_bytes().to_vec();
    empty.extend_from_slice(&[0, 0]);
    v.push(("ECS of length 0", edns_with(empty)));

    // Counts that lie (more records than there are).
    let lie = |qd, an, ns, ar| {
        let mut p = header(0, 0, qd, an, ns, ar);
        p.extend(question("app.gslb.test", 1));
        p
    };
    v.push(("qdcount 3, one question", lie(3, 0, 0, 0)));
    v.push(("ancount 1, no answer", lie(1, 1, 0, 0)));
    v.push(("nscount 65535", lie(1, 0, 65535, 0)));
    v.push(("arcount 2, none there", lie(1, 0, 0, 2)));
    v.push(("all counts 65535", lie(65535, 65535, 65535, 65535)));
    let mut ar2 = header(0, 0, 1, 0, 0, 2);
    ar2.extend(question("app.gslb.test", 1));
    ar2.extend(opt_rr(1232, 0, &[]));
    v.push(("arcount 2, one OPT", ar2));

    // A parseable header with a garbage body.
    let mut garbage = header(0, 0x0100, 1, 0, 0, 0);
    garbage.extend_from_slice(&[0xff; 40]);
    v.push(("header then 0xff bytes", garbage));
    v
}

#[test]
fn udp_fuzz_keeps_serving() {
    let mut g = Gslb::start(&config());
    let mut c = Client::new(g.addr);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let start = Instant::now();

    // Sanity: the builders make a valid query, and ECS is echoed.
    let r = c.send(edns_query(0)).unwrap();
    let m = Message::from_vec(&r).unwrap();
    assert_eq!(a_records(&m), vec![APP]);
    match m.edns.as_ref().and_then(|e| e.option(EdnsCode::Subnet)) {
        Some(EdnsOption::Subnet(s)) => assert_eq!(s.source_prefix(), 24),
        other => panic!("ECS not echoed: {other:?}"),
    }

    // Packets shorter than a header: never answered (a stray reply would be caught by
    // the next receive), and the good query after them is.
    for n in 0..12 {
        let p = rng.bytes(n);
        assert!(c.send(p).is_none());
    }
    c.check_good();
    assert!(
        udp_raw(
            g.addr,
            &[0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0],
            Duration::from_millis(300)
        )
        .is_none()
    );
    // QR=1: dropped, well-formed or not.
    let mut resp = plain_query(0, "app.gslb.test", 1);
    resp[2] |= 0x80;
    assert!(c.send(resp).is_none());
    let mut resp = header(0, 0x8000, 1, 0, 0, 0);
    resp.extend_from_slice(&[0xff; 20]);
    assert!(c.send(resp).is_none());
    c.check_good();

    // A parseable header with a garbage body: FORMERR, same ID, RD echoed.
    let mut garbage = header(0xbeef, 0x0100, 1, 0, 0, 0);
    garbage.extend_from_slice(&[0xc0, 0xff, 0x3f, 0x01, 0x02]);
    let reply = udp_raw(g.addr, &garbage, Duration::from_secs(2)).expect("FORMERR");
    assert_eq!(reply.len(), 12);
    assert_eq!(&reply[0..2], &[0xbe, 0xef]);
    assert_eq!(reply[2], 0x81, "QR, opcode 0, RD");
    assert_eq!(reply[3] & 0x0f, 1, "FORMERR");
    let reply = tcp_raw(g.addr, &garbage);
    assert_eq!(&reply[0..2], &[0xbe, 0xef]);
    assert_eq!(reply[3] & 0x0f, 1, "FORMERR over TCP");

    // Structured malformations, three rounds.
    for _ in 0..3 {
        for (what, p) in formerr_cases() {
            c.expect_formerr(p, what);
            if c.since_check >= 500 {
                checkpoint(&mut g, &mut c);
            }
        }
    }

    // OPT with truncated options (option length beyond the RDATA): the options are
    // dropped or the query is rejected; either way, no garbage is echoed.
    for cut in 1..8 {
        let mut opt = ecs(1, 24, 0, &[192, 0, 2]);
        opt.truncate(opt.len() - cut);
        let mut p = header(0, 0x0100, 1, 0, 0, 1);
        p.extend(question("app.gslb.test", 1));
        p.extend(opt_rr(1232, 0, &opt));
        let reply = fire(&mut g, &mut c, p).expect("reply");
        let m = Message::from_vec(&reply).expect("parses");
        match m.metadata.response_code {
            ResponseCode::FormErr => {}
            ResponseCode::NoError => {
                assert_eq!(a_records(&m), vec![APP]);
                let e = m.edns.as_ref().expect("OPT");
                assert!(e.option(EdnsCode::Subnet).is_none(), "{e:?}");
            }
            other => panic!("truncated option, cut {cut}: {other}"),
        }
    }

    // Truncations at every length of valid EDNS queries (and a plain one).
    let bases = [edns_query(0), plain_query(0, "both.gslb.test", 28), {
        let mut p = header(0, 0, 1, 0, 0, 1);
        p.extend(question("nope.gslb.test", 1));
        p.extend(opt_rr(
            4096,
            0,
            &ecs(2, 56, 0, &[0x20, 1, 0xd, 0xb8, 0x12, 0x34, 0x56]),
        ));
        p
    }];
    for base in &bases {
        for len in 0..base.len() {
            let p = base[..len].to_vec();
            let reply = fire(&mut g, &mut c, p);
            // Cut inside the question: FORMERR. Cut inside the OPT: FORMERR too.
            if len >= 12 {
                let r = reply.expect("reply to a truncated query");
                assert_eq!(r[3] & 0x0f, 1, "FORMERR for a cut at {len}: {r:02x?}");
            } else {
                assert!(reply.is_none());
            }
        }
        // Whole: answered.
        let r = fire(&mut g, &mut c, base.clone()).unwrap();
        assert_eq!(r[3] & 0x0f, if base == &bases[2] { 3 } else { 0 });
    }

    // Bit flips of valid queries.
    let flip_bases = [
        edns_query(0),
        plain_query(0, "app.gslb.test", 1),
        plain_query(0, "both.gslb.test", 28),
        plain_query(0, "gslb.test", 2),
    ];
    for _ in 0..3000 {
        let mut p = flip_bases[rng.below(flip_bases.len())].clone();
        for _ in 0..1 + rng.below(4) {
            let bit = rng.below(p.len() * 8);
            p[bit / 8] ^= 1 << (bit % 8);
        }
        fire(&mut g, &mut c, p);
    }

    // Random packets: pure noise, noise behind a plausible header, and a valid query
    // with a random tail.
    for i in 0..3000 {
        let p = match i % 3 {
            0 => {
                let n = rng.below(601);
                rng.bytes(n)
            }
            1 => {
                let n = 12 + rng.below(589);
                let mut p = rng.bytes(n);
                p[2] &= 0x01; // query, opcode 0
                p[3] = 0;
                p[4..12].copy_from_slice(&header(0, 0, 1, 0, 0, rng.below(3) as u16)[4..12]);
                if rng.chance(2) {
                    // A real name in front of the noise.
                    let q = qname("app.gslb.test");
                    let end = (12 + q.len()).min(p.len());
                    p[12..end].copy_from_slice(&q[..end - 12]);
                }
                p
            }
            _ => {
                let mut p = edns_query(0);
                let at = 12 + rng.below(p.len() - 12);
                p.truncate(at);
                let n = rng.below(100);
                p.extend(rng.bytes(n));
                p
            }
        };
        fire(&mut g, &mut c, p);
    }

    assert!(c.count >= 5000, "only {} packets", c.count);
    eprintln!(
        "udp fuzz: {} packets ({} replies expected) in {:?}",
        c.count,
        c.sent.values().filter(|w| **w).count(),
        start.elapsed()
    );
    checkpoint(&mut g, &mut c);
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "took {:?}",
        start.elapsed()
    );
}

// -------------------------------------------------------------------------------- TCP

fn frame(p: &[u8]) -> Vec<u8> {
    let mut f = (p.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(p);
    f
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Reads until EOF; what the server sent before closing.
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return all,
            Err(e) => panic!("server did not close: {e}"),
        }
    }
}

#[test]
fn tcp_abuse_keeps_serving() {
    let mut g = Gslb::start(&config());
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let good_id = 0xfeed;
    let good = plain_query(good_id, "app.gslb.test", 1);
    let check_good_reply = |r: &[u8]| {
        let m = Message::from_vec(r).expect("good reply parses");
        assert_eq!(m.metadata.id, good_id);
        assert_eq!(a_records(&m), vec![APP]);
    };
    let formerr = formerr_cases();

    for i in 0..400 {
        match i % 8 {
            // A mutated or random message, then a good one on the same connection: the
            // first gets its reply (or none), the second its exact answer.
            0..=2 => {
                let mut p = match rng.below(3) {
                    0 => {
                        let n = rng.below(600);
                        rng.bytes(n)
                    }
                    1 => {
                        let mut p = edns_query(0);
                        for _ in 0..1 + rng.below(3) {
                            let bit = rng.below(p.len() * 8);
                            p[bit / 8] ^= 1 << (bit % 8);
                        }
                        p
                    }
                    _ => formerr[rng.below(formerr.len())].1.clone(),
                };
                if p.len() >= 2 {
                    p[0..2].copy_from_slice(&(i as u16).to_be_bytes());
                }
                let mut s = connect(g.addr);
                let mut both = frame(&p);
                both.extend(frame(&good));
                s.write_all(&both).unwrap();
                if wants_reply(&p) {
                    let r = tcp_recv(&mut s).expect("reply to the first message");
                    assert_eq!(&r[0..2], &p[0..2], "ID");
                    assert_eq!(r[2] & 0x80, 0x80);
                }
                check_good_reply(&tcp_recv(&mut s).expect("good reply"));
            }
            // Length prefix longer than what follows, then half-close: no reply, and
            // the server closes.
            3 => {
                let mut s = connect(g.addr);
                let p = edns_query(i as u16);
                let mut f = ((p.len() + 1 + rng.below(500)) as u16)
                    .to_be_bytes()
                    .to_vec();
                f.extend_from_slice(&p);
                s.write_all(&f).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
                assert!(
                    read_to_close(&mut s).is_empty(),
                    "replied to a partial message"
                );
            }
            // Closed mid-message or mid-prefix, without a half-close first.
            4 => {
                let mut s = connect(g.addr);
                let f = frame(&edns_query(i as u16));
                let cut = rng.below(f.len());
                s.write_all(&f[..cut]).unwrap();
                drop(s);
            }
            // A zero-length or short frame (under a DNS header) closes the connection:
            // no reply, not even to the good query behind it.
            5 => {
                let mut s = connect(g.addr);
                let n = rng.below(12);
                let mut f = frame(&rng.bytes(n));
                f.extend(frame(&good));
                s.write_all(&f).unwrap();
                assert!(
                    read_to_close(&mut s).is_empty(),
                    "answered after a {n}-byte frame"
                );
            }
            // A prefix shorter than the message: the rest is read as the next frame;
            // whatever happens, the server must not fall over. Then close.
            6 => {
                let mut s = connect(g.addr);
                let p = edns_query(i as u16);
                let mut f = (rng.below(p.len()) as u16).to_be_bytes().to_vec();
                f.extend_from_slice(&p);
                s.write_all(&f).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
            }
            // Connect and close at once; or send a bogus huge prefix and reset.
            _ => {
                let mut s = connect(g.addr);
                if rng.chance(2) {
                    let _ = s.write_all(&[0xff, 0xff, 1, 2, 3]);
                }
                drop(s);
            }
        }
        if i % 100 == 99 {
            assert!(g.is_running(), "gslb died; logs:\n{}", g.logs());
            let m = exchange(
                g.addr,
                &query_msg("app.gslb.test", RecordType::A, None),
                Transport::Tcp,
            );
            assert_eq!(a_records(&m), vec![APP]);
        }
    }

    // A header with a garbage body over TCP: FORMERR with the ID.
    let mut garbage = header(0x7a7a, 0, 1, 0, 0, 0);
    garbage.extend_from_slice(&[0x3f, 1, 2]);
    let r = tcp_raw(g.addr, &garbage);
    assert_eq!(r, vec![0x7a, 0x7a, 0x80, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]);

    // Too short over TCP: no reply, and the connection is closed (a frame under a
    // header is no DNS client's; answering past it lets a slot be held by trickling).
    let mut s = connect(g.addr);
    let mut f = frame(&[0x12, 0x34, 0, 0, 0, 1]);
    f.extend(frame(&good));
    s.write_all(&f).unwrap();
    assert!(read_to_close(&mut s).is_empty());

    assert!(g.is_running(), "gslb died; logs:\n{}", g.logs());
    let m = query(g.addr, "app.gslb.test", RecordType::A);
    assert_eq!(a_records(&m), vec![APP]);
    let m = exchange(
        g.addr,
        &query_msg("app.gslb.test", RecordType::A, None),
        Transport::Tcp,
    );
    assert_eq!(a_records(&m), vec![APP]);
}
