//! The fast path against the general path (issue 11): every query goes through both,
//! `answer_fast` and `answer_general`, from the same snapshot with the thread's random
//! generator restarted from the same seed before each, and the cookie clock fixed.
//! Wherever the fast path answers, the reply must be the general path's, byte for byte
//! (the same draw gives the same addresses, so no allowance is needed for randomness).
//!
//! The queries are built from parts chosen by a seeded generator, so the run is the same
//! every time: names of every kind (services with random, consistent, locality and
//! many-address answers, static data, aliases, empty non-terminals, NXDOMAIN, outside
//! every zone) in random letter case (0x20), every query type we answer and some we do
//! not, header flags, EDNS payload sizes around the truncation boundaries, versions,
//! the DO bit, ECS of every prefix length (well-formed and not), cookies (client only,
//! valid, forged, of bad lengths), NSID, unknown and repeated options, and a share of
//! queries with a byte changed, cut short or appended. Over TCP and UDP, from clients
//! in each region and in none, under three health states.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_server::net::xfer::Protocol;

use gslb::dns::Handler;
use gslb::dns::server::{answer_fast, answer_general};
use gslb::overrides::Overrides;
use gslb::rng::Rng;
use gslb::snapshot::{Snapshot, Zones};

const GATEWAYS: usize = 20;

fn config() -> String {
    let mut t = String::from(
        r#"
[server]
nsid = "ns-diff"
max_udp_payload = 1232

[[zone]]
origin = "gslb.test"
ttl = "1h"
ns = [{ name = "ns1", addresses = ["192.0.2.53", "2001:db8::53"] }]
soa = { minimum = "15s", serial = 1 }
record = [
  { name = "www", type = "A", value = "192.0.2.10" },
  { name = "www", type = "AAAA", value = "2001:db8::10" },
  { name = "multi", type = "A", value = "192.0.2.11" },
  { name = "multi", type = "A", value = "192.0.2.12" },
  { name = "alias", type = "CNAME", value = "www" },
  { name = "toapp", type = "CNAME", value = "app" },
  { name = "txt", type = "TXT", value = ["one"] },
  { name = "@", type = "MX", value = "10 www" },
  { name = "a.b.c", type = "A", value = "192.0.2.30" },
]

[[region]]
name = "eu"
networks = ["198.51.100.0/24", "2001:db8:e::/48"]
[[region]]
name = "us"
networks = ["203.0.113.0/24"]

[[check]]
name = "tcp"
kind = "tcp"
port = 443

[[gateway]]
name = "v4only"
region = "eu"
addresses = ["192.0.2.99"]
"#,
    );
    for i in 0..GATEWAYS {
        let region = if i % 2 == 0 { "eu" } else { "us" };
        t += &format!(
            "[[gateway]]\nname = \"g{i}\"\nregion = \"{region}\"\naddresses = [\"192.0.2.{}\", \"2001:db8::{:x}\"]\n",
            100 + i,
            0x100 + i
        );
    }
    let endpoints = |range: std::ops::Range<usize>| {
        range
            .map(|i| format!("{{ gateway = \"g{i}\", weight = {} }}", 1 + i % 4))
            .collect::<Vec<_>>()
            .join(", ")
    };
    t += &format!(
        "[[service]]\nname = \"app.gslb.test\"\ncheck = \"tcp\"\nanswers = 2\nendpoints = [{}]\n",
        endpoints(0..4)
    );
    t += &format!(
        "[[service]]\nname = \"sticky.gslb.test\"\ncheck = \"tcp\"\nselection = \"consistent\"\nanswers = 2\nendpoints = [{}]\n",
        endpoints(2..8)
    );
    t += &format!(
        "[[service]]\nname = \"big.gslb.test\"\nlocality = false\nanswers = {GATEWAYS}\nendpoints = [{}]\n",
        endpoints(0..GATEWAYS)
    );
    t += &format!(
        "[[service]]\nname = \"closed.gslb.test\"\ncheck = \"tcp\"\nall_down = \"fail_closed\"\nendpoints = [{}]\n",
        endpoints(8..10)
    );
    t += "[[service]]\nname = \"four.gslb.test\"\nendpoints = [{ gateway = \"v4only\" }]\n";
    t
}

/// The first seven have addresses to give (the fast path's kind of name).
const NAMES: [&str; 16] = [
    "app.gslb.test",
    "sticky.gslb.test",
    "big.gslb.test",
    "closed.gslb.test",
    "four.gslb.test",
    "www.gslb.test",
    "multi.gslb.test",
    "alias.gslb.test",
    "toapp.gslb.test",
    "txt.gslb.test",
    "gslb.test",
    "b.c.gslb.test",
    "a.b.c.gslb.test",
    "nothere.gslb.test",
    "x.app.gslb.test",
    "example.org",
];

const QTYPES: [u16; 12] = [1, 1, 1, 28, 28, 255, 15, 16, 6, 2, 5, 65000];

const SOURCES: [&str; 5] = [
    "198.51.100.7:5300",
    "203.0.113.9:5300",
    "192.0.2.200:5300",
    "[2001:db8:e::5]:5300",
    "[2001:db8:f::5]:5300",
];

const PAYLOADS: [u16; 12] = [
    0, 100, 511, 512, 513, 530, 600, 700, 1232, 1400, 4096, 65535,
];

/// A fixed cookie clock: replies from both paths carry the same server cookie.
fn clock() -> u32 {
    1_700_000_000
}

fn handler(plan: &Arc<gslb::plan::Plan>, health: &[bool]) -> Handler {
    let metrics = gslb::metrics::Metrics::new();
    let snap = Snapshot::build(
        plan.clone(),
        Arc::new(Zones::build(plan)),
        Arc::new(metrics.for_plan(plan)),
        health,
        &Overrides::default(),
    );
    Handler::new(Arc::new(ArcSwap::from_pointee(snap))).with_cookie_clock(clock)
}

fn pick<T: Copy>(rng: &mut Rng, xs: &[T]) -> T {
    xs[rng.below(xs.len() as u64) as usize]
}

fn name_wire(name: &str, rng: &mut Rng) -> Vec<u8> {
    let mut w = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        w.push(label.len() as u8);
        for b in label.bytes() {
            // 0x20: random letter case, as resolvers send it.
            w.push(if rng.below(2) == 0 {
                b.to_ascii_uppercase()
            } else {
                b
            });
        }
    }
    w.push(0);
    w
}

/// An ECS option's data: well-formed mostly, else one of the ways it can be wrong.
fn ecs(rng: &mut Rng) -> Vec<u8> {
    let v6 = rng.below(3) == 0;
    let max = if v6 { 128 } else { 32 };
    let prefix = rng.below(max + 1) as u8;
    let mut addr: Vec<u8> = if v6 {
        let base = [0x20, 0x01, 0x0d, 0xb8, 0, pick(rng, &[0x0e, 0x0f]), 0, 0];
        base.iter()
            .copied()
            .chain((0..8).map(|_| rng.below(256) as u8))
            .collect()
    } else {
        let base = pick(
            rng,
            &[[198u8, 51, 100], [203, 0, 113], [192, 0, 2], [10, 1, 2]],
        );
        base.iter().copied().chain([rng.below(256) as u8]).collect()
    };
    // Zero the bits past the prefix, keep the octets it needs.
    for (i, b) in addr.iter_mut().enumerate() {
        let keep = (usize::from(prefix)).saturating_sub(i * 8).min(8);
        *b &= if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
    }
    addr.truncate(usize::from(prefix.div_ceil(8)));
    let mut family = if v6 { 2u16 } else { 1 };
    let mut scope = 0u8;
    let mut prefix_sent = prefix;
    match rng.below(12) {
        0 => addr.push(0), // an octet too many
        1 if !addr.is_empty() => {
            *addr.last_mut().unwrap() |= 1; // a host bit set (FORMERR unless it is in the prefix)
        }
        2 => scope = 24,                  // SCOPE must be zero in a query
        3 => family = 3,                  // no such family
        4 => prefix_sent = max as u8 + 1, // longer than the address
        _ => {}
    }
    let mut d = family.to_be_bytes().to_vec();
    d.extend([prefix_sent, scope]);
    d.extend(addr);
    d
}

fn option(code: u16, data: &[u8]) -> Vec<u8> {
    let mut o = code.to_be_bytes().to_vec();
    o.extend((data.len() as u16).to_be_bytes());
    o.extend_from_slice(data);
    o
}

struct Case {
    raw: Vec<u8>,
    src: SocketAddr,
    proto: Protocol,
}

fn case(rng: &mut Rng, server_cookies: &[(SocketAddr, [u8; 16])]) -> Case {
    let src: SocketAddr = pick(rng, &SOURCES).parse().unwrap();
    let proto = if rng.below(5) == 0 {
        Protocol::Tcp
    } else {
        Protocol::Udp
    };
    let mut raw = Vec::new();
    raw.extend((rng.below(65536) as u16).to_be_bytes());
    raw.push(match rng.below(10) {
        0 => rng.below(256) as u8,
        1 => 0x00,
        2 => 0x06, // AA and TC in a query
        _ => 0x01,
    });
    raw.push(match rng.below(10) {
        0 => rng.below(256) as u8,
        1 => 0x10,
        2 => 0x20,
        3 => 0x40,
        _ => 0,
    });
    let with_opt = rng.below(4) != 0;
    raw.extend([0, 1, 0, 0, 0, 0, 0, u8::from(with_opt)]);
    // Most queries are of the kinds the fast path takes, so that it is compared often.
    let name = if rng.below(10) < 6 {
        pick(rng, &NAMES[..7])
    } else {
        pick(rng, &NAMES)
    };
    raw.extend(name_wire(name, rng));
    let qtype = if rng.below(10) < 7 {
        pick(rng, &[1u16, 28])
    } else {
        pick(rng, &QTYPES)
    };
    raw.extend(qtype.to_be_bytes());
    raw.extend(
        match rng.below(20) {
            0 => 3u16,   // CH
            1 => 255u16, // ANY
            _ => 1,
        }
        .to_be_bytes(),
    );
    if with_opt {
        let mut opts = Vec::new();
        let n = match rng.below(10) {
            0..=3 => 0,
            4..=7 => 1,
            _ => 2 + rng.below(2),
        };
        for _ in 0..n {
            opts.extend(match rng.below(20) {
                0..=8 => option(8, &ecs(rng)),
                9..=15 => {
                    let client: [u8; 8] = std::array::from_fn(|_| rng.below(256) as u8);
                    let mut c = client.to_vec();
                    match rng.below(5) {
                        0 => {
                            // The server cookie this handler gave this source before.
                            if let Some((_, sc)) = server_cookies.iter().find(|(a, _)| *a == src) {
                                c = sc.to_vec();
                                c.splice(0..0, server_cookies_client());
                            }
                        }
                        1 => c.extend((0..16).map(|_| rng.below(256) as u8)),
                        2 => c.truncate(5),
                        3 => c.extend([0u8; 33]),
                        _ => {}
                    }
                    option(10, &c)
                }
                16 => option(3, &[]),
                17 => option(12, &[0; 4]),
                _ => option(65001, &[1, 2]),
            });
        }
        let payload = if rng.below(8) == 0 {
            rng.below(65536) as u16
        } else {
            pick(rng, &PAYLOADS)
        };
        let ext_rcode = if rng.below(20) == 0 { 1 } else { 0 };
        let version = if rng.below(10) == 0 { 1 } else { 0 };
        let flags: u16 = if rng.below(2) == 0 { 0x8000 } else { 0 };
        raw.extend([0, 0, 41]);
        raw.extend(payload.to_be_bytes());
        raw.extend([ext_rcode, version]);
        raw.extend(flags.to_be_bytes());
        raw.extend((opts.len() as u16).to_be_bytes());
        raw.extend(opts);
    }
    match rng.below(10) {
        0 => {
            let i = rng.below(raw.len() as u64) as usize;
            raw[i] = rng.below(256) as u8;
        }
        1 => {
            let to = rng.below(raw.len() as u64) as usize;
            raw.truncate(to);
        }
        2 => raw.push(rng.below(256) as u8),
        _ => {}
    }
    Case { raw, src, proto }
}

/// The client cookie the valid server cookies were made for.
fn server_cookies_client() -> [u8; 8] {
    *b"gslbdiff"
}

/// The server cookie `h` gives `src` for `server_cookies_client()`, from a reply of the
/// general path.
fn server_cookie(h: &Handler, src: SocketAddr) -> [u8; 16] {
    let mut q = vec![0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    q.extend(name_wire("www.gslb.test", &mut Rng::seeded(0)));
    q.extend([
        0, 1, 0, 1, 0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 12, 0, 10, 0, 8,
    ]);
    q.extend(server_cookies_client());
    let mut out = Vec::new();
    assert!(answer_general(h, &q, src, Protocol::Udp, &mut out));
    // The reply's last 16 octets: the server cookie (the cookie is the last option).
    out[out.len() - 16..].try_into().unwrap()
}

#[test]
fn the_fast_path_gives_the_general_paths_bytes() {
    let text = config();
    let plan = Arc::new(gslb::config::parse(Path::new("diff.toml"), &text).expect("config"));
    let n = plan.targets.len();
    let states: [Vec<bool>; 3] = [
        vec![true; n],
        (0..n).map(|i| i % 3 != 0).collect(),
        vec![false; n],
    ];
    let mut rng = Rng::seeded(0x6473_6c62);
    let (mut fast, mut total) = (0usize, 0usize);
    let mut fast_tc = 0usize;
    for health in &states {
        let h = handler(&plan, health);
        let cookies: Vec<(SocketAddr, [u8; 16])> = SOURCES
            .iter()
            .map(|s| {
                let a: SocketAddr = s.parse().unwrap();
                (a, server_cookie(&h, a))
            })
            .collect();
        for i in 0..20_000u64 {
            let c = case(&mut rng, &cookies);
            let seed = 0x5eed_0000 + i;
            let (mut general, mut quick) = (Vec::new(), Vec::new());
            Rng::seed_thread(seed);
            let sent = answer_general(&h, &c.raw, c.src, c.proto, &mut general);
            Rng::seed_thread(seed);
            let fast_sent = answer_fast(&h, &c.raw, c.src, c.proto, &mut quick);
            total += 1;
            let Some(fast_sent) = fast_sent else {
                continue;
            };
            fast += 1;
            assert_eq!(
                (fast_sent, &quick),
                (sent, &general),
                "query {:02x?} from {} over {:?}: the fast path's reply (left) is not the general path's",
                c.raw,
                c.src,
                c.proto
            );
            if quick.len() > 2 && quick[2] & 0x02 != 0 {
                fast_tc += 1;
            }
        }
    }
    // The comparison must have had something to compare: a good share of the queries
    // are for the fast path, and some of its replies were truncated.
    assert!(
        fast * 6 > total,
        "only {fast} of {total} queries took the fast path"
    );
    assert!(fast_tc > 0, "no truncated reply from the fast path");
    eprintln!("{fast} of {total} queries took the fast path, {fast_tc} of them truncated");
}

/// The fast path does not take what it must not: each of these is left to the general
/// path (`answer_fast` returns `None`), with the reason the general path answers
/// differently from a plain answer.
#[test]
fn the_fast_path_leaves_the_unusual_to_the_general_path() {
    let text = config();
    let plan = Arc::new(gslb::config::parse(Path::new("diff.toml"), &text).expect("config"));
    let h = handler(&plan, &vec![true; plan.targets.len()]);
    let src: SocketAddr = SOURCES[0].parse().unwrap();
    let query = |name: &str, qtype: u16, opt: &[u8]| {
        let mut q = vec![
            0xab,
            0xcd,
            0x01,
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            u8::from(!opt.is_empty()),
        ];
        q.extend(name_wire(name, &mut Rng::seeded(1)));
        q.extend(qtype.to_be_bytes());
        q.extend([0, 1]);
        q.extend_from_slice(opt);
        q
    };
    let opt = |version: u8, options: &[u8]| {
        let mut o = vec![0, 0, 41, 4, 0xd0, 0, version, 0, 0];
        o.extend((options.len() as u16).to_be_bytes());
        o.extend_from_slice(options);
        o
    };
    let mut out = Vec::new();
    let mut fast = |q: &[u8]| answer_fast(&h, q, src, Protocol::Udp, &mut out);
    // Taken: a plain A query, with ECS, with a cookie.
    assert_eq!(fast(&query("app.gslb.test", 1, &[])), Some(true));
    assert_eq!(
        fast(&query(
            "www.gslb.test",
            28,
            &opt(0, &option(8, &[0, 1, 24, 0, 198, 51, 100]))
        )),
        Some(true)
    );
    assert_eq!(
        fast(&query(
            "www.gslb.test",
            1,
            &opt(0, &option(10, b"12345678"))
        )),
        Some(true)
    );
    // Left: NXDOMAIN, NODATA, an alias, an empty non-terminal, outside our zones.
    for name in [
        "nothere.gslb.test",
        "txt.gslb.test",
        "alias.gslb.test",
        "b.c.gslb.test",
        "example.org",
    ] {
        assert_eq!(fast(&query(name, 1, &[])), None, "{name}");
    }
    assert_eq!(
        fast(&query("four.gslb.test", 28, &[])),
        None,
        "NODATA at a service"
    );
    // Left: EDNS version 1 (BADVERS), ECS with a host bit set (FORMERR), a cookie of a
    // bad length (FORMERR), NSID (the reply carries ours), an option we do not read.
    // (ECS: an octet more than /24 needs; 198.51.101.0/23 has a host bit set.)
    assert_eq!(fast(&query("app.gslb.test", 1, &opt(1, &[]))), None);
    assert_eq!(
        fast(&query(
            "app.gslb.test",
            1,
            &opt(0, &option(8, &[0, 1, 24, 0, 198, 51, 100, 7]))
        )),
        None
    );
    assert_eq!(
        fast(&query(
            "app.gslb.test",
            1,
            &opt(0, &option(8, &[0, 1, 23, 0, 198, 51, 101]))
        )),
        None
    );
    assert_eq!(
        fast(&query("app.gslb.test", 1, &opt(0, &option(10, b"12345")))),
        None
    );
    assert_eq!(
        fast(&query("app.gslb.test", 1, &opt(0, &option(3, &[])))),
        None
    );
    assert_eq!(
        fast(&query("app.gslb.test", 1, &opt(0, &option(12, &[0, 0])))),
        None
    );
    // Left: a trailing byte, a response, another opcode, ANY.
    let mut q = query("app.gslb.test", 1, &[]);
    q.push(0);
    assert_eq!(fast(&q), None);
    let mut q = query("app.gslb.test", 1, &[]);
    q[2] |= 0x80;
    assert_eq!(fast(&q), None);
    q[2] = 0x28; // UPDATE
    assert_eq!(fast(&q), None);
    assert_eq!(fast(&query("app.gslb.test", 255, &[])), None);
}
