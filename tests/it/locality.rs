//! Locality end to end: the real binary, clients placed by their source address (the
//! test binds its UDP socket to an address inside a region's network: 127.0.20.0/24 is
//! eu, 127.0.21.0/24 us, 127.0.22.0/24 ap; 127.0.0.1 is in no region) or by ECS. Health
//! targets are real HTTP servers on 127.0.10.0/24 and 127.0.11.0/24 (this file's own).
//! Answer addresses are documentation addresses (192.0.2.x): handed out, never contacted.

use crate::common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};

const EU_SRC: &str = "127.0.20.5";
const US_SRC: &str = "127.0.21.5";
const AP_SRC: &str = "127.0.22.5";
const NOWHERE_SRC: &str = "127.0.0.1";

/// Three regions with fallback chains; eu owns 10.0.0.0/8 and us the more specific
/// 10.1.0.0/16, so longest-prefix placement is visible.
const REGIONS: &str = r#"
[[region]]
name = "eu"
networks = ["127.0.20.0/24", "10.0.0.0/8", "2001:db8:e0::/48"]
fallback = ["us", "ap"]

[[region]]
name = "us"
networks = ["127.0.21.0/24", "10.1.0.0/16"]
fallback = ["eu", "ap"]

[[region]]
name = "ap"
networks = ["127.0.22.0/24", "203.0.113.0/24"]
fallback = ["us", "eu"]
"#;

/// (gateway, region, answer address)
const GATEWAYS: [(&str, &str, &str); 5] = [
    ("eu1", "eu", "192.0.2.11"),
    ("eu2", "eu", "192.0.2.12"),
    ("us1", "us", "192.0.2.21"),
    ("us2", "us", "192.0.2.22"),
    ("ap1", "ap", "192.0.2.31"),
];

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn addr_of(gw: &str) -> Ipv4Addr {
    ip(GATEWAYS.iter().find(|g| g.0 == gw).unwrap().2)
}

fn set_of(gws: &[&str]) -> BTreeSet<Ipv4Addr> {
    gws.iter().map(|g| addr_of(g)).collect()
}

/// `[[gateway]]` tables for GATEWAYS; `probes[i]` is gateway i's probe address.
fn gateways(probes: Option<&[SocketAddr]>) -> String {
    let mut s = String::new();
    for (i, (name, region, addr)) in GATEWAYS.iter().enumerate() {
        s.push_str(&format!(
            "[[gateway]]\nname = \"{name}\"\nregion = \"{region}\"\naddresses = [\"{addr}\"]\n"
        ));
        if let Some(p) = probes {
            s.push_str(&format!("probe = \"{}\"\n", p[i]));
        }
    }
    s
}

/// A fast HTTP check: two failures take an endpoint out (one stall of a busy CI
/// machine must not), one success brings it back.
const CHECK: &str = r#"
[[check]]
name = "hc"
kind = "http"
path = "/hc"
interval = "200ms"
timeout = "150ms"
rise = 1
fall = 2
"#;

/// One HTTP target per gateway on `net` (e.g. "127.0.10"), host numbers from `first`;
/// `down` lists the gateways whose target answers 503 from the start.
fn targets(net: &str, first: u8, down: &[&str]) -> Vec<HttpTarget> {
    GATEWAYS
        .iter()
        .enumerate()
        .map(|(i, (name, _, _))| {
            let reply = if down.contains(name) {
                Reply::no_upstreams()
            } else {
                Reply::ok()
            };
            HttpTarget::start(&format!("{net}.{}", first + i as u8), reply)
        })
        .collect()
}

fn probe_addrs(t: &[HttpTarget]) -> Vec<SocketAddr> {
    t.iter().map(|t| t.addr).collect()
}

fn gw_index(name: &str) -> usize {
    GATEWAYS.iter().position(|g| g.0 == name).unwrap()
}

/// Waits for the log line that says `gw`'s target went `state` (UP or DOWN).
fn wait_state(g: &Gslb, t: &[HttpTarget], gw: &str, state: &str) {
    let flip = format!(
        "target {gw} {} (check hc) is now {state}",
        t[gw_index(gw)].addr
    );
    g.wait_log(&flip, Duration::from_secs(10));
    // The probe task logs the flip before the publisher hears of it: wait for a
    // snapshot whose build began after the flip line, so it holds the flip.
    let published = || {
        let logs = g.logs();
        let after_flip = &logs[logs.rfind(&flip).expect("logged")..];
        after_flip
            .find("building a snapshot")
            .is_some_and(|i| after_flip[i..].contains("snapshot published"))
    };
    wait_until(Duration::from_secs(10), published)
        .unwrap_or_else(|| panic!("no snapshot after {flip:?}; logs:\n{}", g.logs()));
}

// ---------------------------------------------------------------------- DNS client

fn parse_net(s: &str) -> (IpAddr, u8) {
    let (a, p) = s.split_once('/').unwrap();
    (a.parse().unwrap(), p.parse().unwrap())
}

pub(crate) fn ecs_edns(ecs: Option<&str>) -> Option<Edns> {
    ecs.map(|s| {
        let (a, p) = parse_net(s);
        let mut e = Edns::new();
        e.set_max_payload(1232);
        e.options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::new(a, p, 0)));
        e
    })
}

/// Sends `bytes` over UDP from a socket bound to `from` (any 127.x address is ours).
fn udp_from(from: &str, to: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind((from.parse::<IpAddr>().unwrap(), 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.send_to(bytes, to).unwrap();
    let mut buf = vec![0u8; 65_535];
    sock.recv_from(&mut buf)
        .ok()
        .map(|(n, _)| buf[..n].to_vec())
}

/// One A query for `name` from source address `from`, with ECS `ecs` ("ADDR/LEN").
fn ask(g: &Gslb, from: &str, name: &str, ecs: Option<&str>) -> Message {
    let q = query_msg(name, RecordType::A, ecs_edns(ecs));
    let bytes = q.to_vec().unwrap();
    let reply = udp_from(from, g.addr, &bytes)
        .or_else(|| udp_from(from, g.addr, &bytes))
        .expect("no UDP reply");
    let m = Message::from_vec(&reply).expect("reply parses");
    assert_eq!(m.metadata.id, q.metadata.id);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
    m
}

/// The ECS option of a reply.
pub(crate) fn echoed(m: &Message) -> Option<ClientSubnet> {
    match m.edns.as_ref()?.option(EdnsCode::Subnet) {
        Some(EdnsOption::Subnet(c)) => Some(*c),
        _ => None,
    }
}

/// The answer as a set (answers never repeat an address).
fn answer_set(m: &Message) -> BTreeSet<Ipv4Addr> {
    let v = a_records(m);
    let s: BTreeSet<Ipv4Addr> = v.iter().copied().collect();
    assert_eq!(s.len(), v.len(), "duplicate address: {v:?}");
    s
}

/// Asks and checks the exact answer set and, with ECS, the echo and its scope.
fn expect(
    g: &Gslb,
    from: &str,
    name: &str,
    ecs: Option<&str>,
    want: &BTreeSet<Ipv4Addr>,
    scope: u8,
) {
    let m = ask(g, from, name, ecs);
    assert_eq!(
        &answer_set(&m),
        want,
        "{name} from {from} ecs {ecs:?}; logs:\n{}",
        g.logs()
    );
    check_echo(&m, ecs, scope);
}

fn check_echo(m: &Message, ecs: Option<&str>, scope: u8) {
    match ecs {
        None => assert!(echoed(m).is_none(), "no ECS sent, none echoed: {m:?}"),
        Some(s) => {
            let (a, p) = parse_net(s);
            let e = echoed(m).unwrap_or_else(|| panic!("ECS {s} not echoed: {m:?}"));
            assert_eq!(e.addr(), a, "echoed address for {s}");
            assert_eq!(e.addr().is_ipv4(), a.is_ipv4(), "echoed family for {s}");
            assert_eq!(e.source_prefix(), p, "echoed source prefix for {s}");
            assert_eq!(e.scope_prefix(), scope, "scope for {s}");
        }
    }
}

/// Polls (answers must equal `want`) for up to 10 s.
fn wait_for(g: &Gslb, from: &str, name: &str, ecs: Option<&str>, want: &BTreeSet<Ipv4Addr>) {
    let ok = wait_until(Duration::from_secs(10), || {
        answer_set(&ask(g, from, name, ecs)) == *want
    });
    assert!(
        ok.is_some(),
        "{name} from {from} ecs {ecs:?} never became {want:?}; last {:?}; logs:\n{}",
        answer_set(&ask(g, from, name, ecs)),
        g.logs()
    );
}

/// `n` single-answer queries over 4 threads: how often each address was answered.
/// Every reply with ECS must carry `scope`.
fn count(
    g: &Gslb,
    from: &'static str,
    name: &'static str,
    ecs: Option<&'static str>,
    scope: u8,
    n: usize,
) -> BTreeMap<Ipv4Addr, usize> {
    const THREADS: usize = 4;
    let addr = g.addr;
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            thread::spawn(move || {
                let sock = UdpSocket::bind((from.parse::<IpAddr>().unwrap(), 0)).unwrap();
                sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut buf = vec![0u8; 4096];
                let mut c = BTreeMap::new();
                for _ in 0..n / THREADS {
                    let q = query_msg(name, RecordType::A, ecs_edns(ecs));
                    let bytes = q.to_vec().unwrap();
                    let m = loop {
                        sock.send_to(&bytes, addr).unwrap();
                        // One retry covers a rare loopback drop; stale replies are skipped.
                        match sock.recv_from(&mut buf) {
                            Ok((k, _)) => {
                                let m = Message::from_vec(&buf[..k]).unwrap();
                                if m.metadata.id == q.metadata.id {
                                    break m;
                                }
                            }
                            Err(_) => continue,
                        }
                    };
                    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
                    check_echo(&m, ecs, scope);
                    let a = a_records(&m);
                    assert_eq!(a.len(), 1, "answers = 1: {a:?}");
                    *c.entry(a[0]).or_insert(0usize) += 1;
                }
                c
            })
        })
        .collect();
    let mut total = BTreeMap::new();
    for h in handles {
        for (k, v) in h.join().unwrap() {
            *total.entry(k).or_insert(0) += v;
        }
    }
    assert_eq!(total.values().sum::<usize>(), n);
    total
}

fn pct(counts: &BTreeMap<Ipv4Addr, usize>, gws: &[&str]) -> f64 {
    let n: usize = counts.values().sum();
    let hit: usize = gws
        .iter()
        .map(|g| counts.get(&addr_of(g)).copied().unwrap_or(0))
        .sum();
    hit as f64 * 100.0 / n as f64
}

/// Every gateway in `want` gets its share within ±5 points, and nothing else answers.
fn assert_shares(what: &str, counts: &BTreeMap<Ipv4Addr, usize>, want: &[(&str, f64)]) {
    let expected: BTreeSet<Ipv4Addr> = want.iter().map(|(g, _)| addr_of(g)).collect();
    let got: BTreeSet<Ipv4Addr> = counts.keys().copied().collect();
    assert_eq!(got, expected, "{what}: {counts:?}");
    let mut report = Vec::new();
    for (gw, share) in want {
        let p = pct(counts, &[gw]);
        report.push(format!("{gw} {p:.1}% (want {share}%)"));
        assert!(
            (p - share).abs() <= 5.0,
            "{what}: {gw} got {p:.1}%, want {share}% ±5: {counts:?}"
        );
    }
    eprintln!("{what}: {}", report.join(", "));
}

// ------------------------------------------------------------------------------ tests

/// 1. A client of a region gets only that region's gateways, placed by its source
///    address and, separately, by ECS; the ECS echo carries family, source prefix and
///    address with SCOPE = the prefix of the network that placed it, the longest one
///    winning (10.1.2.0/24 is in us's 10.1.0.0/16, not eu's 10.0.0.0/8).
#[test]
fn region_clients_get_their_region() {
    let cfg = format!(
        r#"{ZONE}
{REGIONS}
{}
[[service]]
name = "app.gslb.test"
answers = 2
endpoints = [{{ gateway = "eu1" }}, {{ gateway = "eu2" }}, {{ gateway = "us1" }},
             {{ gateway = "us2" }}, {{ gateway = "ap1" }}]
"#,
        gateways(None)
    );
    let g = Gslb::start(&cfg);
    let app = "app.gslb.test";
    let eu = set_of(&["eu1", "eu2"]);
    let us = set_of(&["us1", "us2"]);
    let ap = set_of(&["ap1"]);

    // (a) By source address, no EDNS at all: every answer is exactly the region's
    // gateways (answers = 2, so a two-gateway region fills each answer).
    for _ in 0..50 {
        expect(&g, EU_SRC, app, None, &eu, 0);
        expect(&g, US_SRC, app, None, &us, 0);
        expect(&g, AP_SRC, app, None, &ap, 0);
    }
    // With EDNS but no ECS: still by source address, and no ECS in the reply.
    let m = exchange_from(
        &g,
        EU_SRC,
        &query_msg(app, RecordType::A, Some(Edns::new())),
    );
    assert_eq!(answer_set(&m), eu);
    assert!(m.edns.is_some() && echoed(&m).is_none(), "{m:?}");

    // (b) By ECS, from a source address in no region. Scope = the network's prefix,
    // lengthened past us's 10.1.0.0/16 where eu's 10/8 surrounds it: 10.2 shares 14
    // bits with 10.1, so scope 15 keeps a resolver from caching eu's answer for us.
    for _ in 0..50 {
        expect(&g, NOWHERE_SRC, app, Some("127.0.20.0/24"), &eu, 24);
        expect(&g, NOWHERE_SRC, app, Some("10.2.0.0/16"), &eu, 15);
        expect(&g, NOWHERE_SRC, app, Some("10.1.2.0/24"), &us, 16);
        expect(&g, NOWHERE_SRC, app, Some("10.1.2.128/25"), &us, 16);
        expect(&g, NOWHERE_SRC, app, Some("203.0.113.0/24"), &ap, 24);
        expect(&g, NOWHERE_SRC, app, Some("2001:db8:e0:7::/64"), &eu, 48);
    }
    // ECS beats the source address: an eu resolver asking for a us client.
    expect(&g, EU_SRC, app, Some("10.1.2.0/24"), &us, 16);
    expect(&g, US_SRC, app, Some("10.200.0.0/16"), &eu, 9); // 8 bits shared with 10.1
    // A /32 inside the /16.
    expect(&g, AP_SRC, app, Some("10.1.255.7/32"), &us, 16);
    // ECS shorter than the matching network: 10.0.0.0/7 covers 10/8 and 11/8, but its
    // address 10.0.0.0 is still placed by longest match (the address decides). The
    // scope, 16, is longer than the source prefix: RFC 7871 §7.2.1 allows that, and it
    // tells the resolver the answer holds for 10.0.0.0/16 only (10.1/16 is us).
    expect(&g, NOWHERE_SRC, app, Some("10.0.0.0/7"), &eu, 16);

    // A client in no region gets answers from everywhere. Its scope is not 0: that
    // would tell a resolver the all-regions answer suits region clients too. It is the
    // shortest prefix clear of every region network: 198.51.100/24 shares 4 bits with
    // ap's 203.0.113.0/24 (11000110 vs 11001011), so 5.
    let mut seen = BTreeSet::new();
    for _ in 0..200 {
        let m = ask(&g, NOWHERE_SRC, app, Some("198.51.100.0/24"));
        check_echo(&m, Some("198.51.100.0/24"), 5);
        seen.extend(answer_set(&m));
    }
    assert_eq!(
        seen,
        set_of(&["eu1", "eu2", "us1", "us2", "ap1"]),
        "no-region client"
    );
}

fn exchange_from(g: &Gslb, from: &str, q: &Message) -> Message {
    let reply = udp_from(from, g.addr, &q.to_vec().unwrap()).expect("reply");
    let m = Message::from_vec(&reply).unwrap();
    assert_eq!(m.metadata.id, q.metadata.id);
    m
}

/// 2. When every gateway of a region fails its HTTP check, that region's clients get
///    the first fallback's gateways (not the second's); with the first fallback down
///    too, the second; back home on recovery. Other regions are not disturbed.
#[test]
fn failover_follows_the_fallback_chain_and_returns() {
    let t = targets("127.0.10", 1, &[]);
    let cfg = format!(
        r#"{ZONE}
{REGIONS}
{}
{CHECK}
[[service]]
name = "app.gslb.test"
check = "hc"
answers = 2
endpoints = [{{ gateway = "eu1" }}, {{ gateway = "eu2" }}, {{ gateway = "us1" }},
             {{ gateway = "us2" }}, {{ gateway = "ap1" }}]
"#,
        gateways(Some(&probe_addrs(&t)))
    );
    let g = Gslb::start(&cfg);
    let app = "app.gslb.test";
    let eu = set_of(&["eu1", "eu2"]);
    let us = set_of(&["us1", "us2"]);
    let ap = set_of(&["ap1"]);
    for n in ["eu1", "eu2", "us1", "us2", "ap1"] {
        wait_hits(&t[gw_index(n)], 2, &g);
    }
    expect(&g, EU_SRC, app, None, &eu, 0);
    expect(&g, NOWHERE_SRC, app, Some("10.2.0.0/16"), &eu, 15);

    // One eu gateway down: eu keeps its region (all-or-nothing needs *nothing* ready).
    t[gw_index("eu1")].set(Reply::no_upstreams());
    wait_state(&g, &t, "eu1", "DOWN");
    wait_for(&g, EU_SRC, app, None, &set_of(&["eu2"]));
    for _ in 0..20 {
        expect(&g, EU_SRC, app, None, &set_of(&["eu2"]), 0);
    }

    // Both eu gateways down: eu clients go to us (first fallback), never ap.
    t[gw_index("eu2")].set(Reply::no_upstreams());
    wait_state(&g, &t, "eu2", "DOWN");
    wait_for(&g, EU_SRC, app, None, &us);
    for _ in 0..30 {
        expect(&g, EU_SRC, app, None, &us, 0);
        expect(&g, NOWHERE_SRC, app, Some("10.2.0.0/16"), &us, 15);
        expect(&g, US_SRC, app, None, &us, 0);
        expect(&g, AP_SRC, app, None, &ap, 0);
    }

    // us down too: eu's second fallback is ap.
    t[gw_index("us1")].set(Reply::no_upstreams());
    t[gw_index("us2")].set(Reply::no_upstreams());
    wait_state(&g, &t, "us1", "DOWN");
    wait_state(&g, &t, "us2", "DOWN");
    wait_for(&g, EU_SRC, app, None, &ap);
    for _ in 0..20 {
        expect(&g, EU_SRC, app, None, &ap, 0);
        expect(&g, US_SRC, app, None, &ap, 0); // us → eu (down) → ap
    }

    // eu recovers: eu clients come home; us clients now fall back to eu (their first).
    t[gw_index("eu1")].set(Reply::ok());
    t[gw_index("eu2")].set(Reply::ok());
    wait_state(&g, &t, "eu1", "UP");
    wait_state(&g, &t, "eu2", "UP");
    wait_for(&g, EU_SRC, app, None, &eu);
    wait_for(&g, US_SRC, app, None, &eu);
    for _ in 0..20 {
        expect(&g, EU_SRC, app, None, &eu, 0);
        expect(&g, NOWHERE_SRC, app, Some("127.0.20.0/24"), &eu, 24);
        expect(&g, US_SRC, app, None, &eu, 0);
        expect(&g, AP_SRC, app, None, &ap, 0);
    }

    // us recovers: everyone home.
    t[gw_index("us1")].set(Reply::ok());
    t[gw_index("us2")].set(Reply::ok());
    wait_for(&g, US_SRC, app, None, &us);
    for _ in 0..20 {
        expect(&g, US_SRC, app, None, &us, 0);
        expect(&g, EU_SRC, app, None, &eu, 0);
    }
}

/// Waits until `t` has been probed `n` times (the engine is running).
fn wait_hits(t: &HttpTarget, n: usize, g: &Gslb) {
    let ok = wait_until(Duration::from_secs(10), || {
        t.hits.load(std::sync::atomic::Ordering::SeqCst) >= n
    });
    assert!(ok.is_some(), "{} not probed; logs:\n{}", t.addr, g.logs());
}

/// 3. A client in no region gets every healthy endpoint by weight (±5 points over 2000
///    queries) with an ECS scope clear of every region network (0 only for ECS /0); a
///    service with `locality = false` answers everyone the same way, region clients
///    included, with scope 0.
#[test]
fn no_region_clients_and_locality_off_get_everything_by_weight() {
    let t = targets("127.0.10", 11, &["eu2"]);
    let cfg = format!(
        r#"{ZONE}
{REGIONS}
{}
{CHECK}
[[service]]
name = "app.gslb.test"
check = "hc"
endpoints = [{{ gateway = "eu1", weight = 10 }}, {{ gateway = "eu2", weight = 10 }},
             {{ gateway = "us1", weight = 20 }}, {{ gateway = "us2", weight = 10 }},
             {{ gateway = "ap1", weight = 10 }}]
[[service]]
name = "flat.gslb.test"
check = "hc"
locality = false
endpoints = [{{ gateway = "eu1", weight = 10 }}, {{ gateway = "eu2", weight = 10 }},
             {{ gateway = "us1", weight = 20 }}, {{ gateway = "us2", weight = 10 }},
             {{ gateway = "ap1", weight = 10 }}]
"#,
        gateways(Some(&probe_addrs(&t)))
    );
    let g = Gslb::start(&cfg);
    wait_state(&g, &t, "eu2", "DOWN");
    // eu2 (503) is out: healthy weight 50 = eu1 10, us1 20, us2 10, ap1 10.
    let want = [("eu1", 20.0), ("us1", 40.0), ("us2", 20.0), ("ap1", 20.0)];
    wait_for(&g, EU_SRC, "app.gslb.test", None, &set_of(&["eu1"]));
    const N: usize = 2000;

    // No region: by source address (no ECS), and by an ECS address in no region.
    let c = count(&g, NOWHERE_SRC, "app.gslb.test", None, 0, N);
    assert_shares("app, no-region source", &c, &want);
    let c = count(&g, EU_SRC, "app.gslb.test", Some("198.51.100.0/24"), 5, N);
    assert_shares("app, no-region ECS from an eu resolver", &c, &want);
    // ECS /0 carries no client information: in no region, whatever the source.
    let c = count(&g, EU_SRC, "app.gslb.test", Some("0.0.0.0/0"), 0, N);
    assert_shares("app, ECS 0.0.0.0/0 from an eu resolver", &c, &want);
    // (The same service does use locality for a region client: us only, scope 16.)
    let c = count(
        &g,
        NOWHERE_SRC,
        "app.gslb.test",
        Some("10.1.0.0/16"),
        16,
        2000,
    );
    assert_shares("app, us ECS", &c, &[("us1", 66.7), ("us2", 33.3)]);

    // locality = false: the same for eu, us, ap and no-region clients; scope 0 always.
    for (from, ecs) in [
        (EU_SRC, None),
        (US_SRC, Some("10.1.2.0/24")),
        (NOWHERE_SRC, Some("203.0.113.0/24")),
        (NOWHERE_SRC, None),
    ] {
        let c = count(&g, from, "flat.gslb.test", ecs, 0, N);
        assert_shares(&format!("flat from {from} ecs {ecs:?}"), &c, &want);
    }
}

/// 4. Spillover: eu has two equal gateways, one failing (50% healthy weight); with the
///    default factor 1.4, eu keeps 1.4 × 50% = 70% and 30% goes to us (split evenly
///    there); with overprovisioning = 2.0, 50% ≥ 1/2 so eu keeps everything. The admin
///    API's live explain reports the same loads.
#[test]
fn spillover_splits_by_the_overprovisioning_factor() {
    let t = targets("127.0.10", 21, &["eu2"]);
    let cfg = format!(
        r#"[admin]
listen = "127.0.0.1:0"
{ZONE}
{REGIONS}
{}
{CHECK}
[[service]]
name = "spill.gslb.test"
check = "hc"
spillover = true
endpoints = [{{ gateway = "eu1" }}, {{ gateway = "eu2" }}, {{ gateway = "us1" }},
             {{ gateway = "us2" }}, {{ gateway = "ap1" }}]
[[service]]
name = "spill3.gslb.test"
check = "hc"
spillover = true
answers = 3
endpoints = [{{ gateway = "eu1" }}, {{ gateway = "eu2" }}, {{ gateway = "us1" }},
             {{ gateway = "us2" }}, {{ gateway = "ap1" }}]
[[service]]
name = "keep.gslb.test"
check = "hc"
overprovisioning = 2.0
endpoints = [{{ gateway = "eu1" }}, {{ gateway = "eu2" }}, {{ gateway = "us1" }},
             {{ gateway = "us2" }}, {{ gateway = "ap1" }}]
[[service]]
name = "strict.gslb.test"
check = "hc"
endpoints = [{{ gateway = "eu1" }}, {{ gateway = "eu2" }}, {{ gateway = "us1" }},
             {{ gateway = "us2" }}, {{ gateway = "ap1" }}]
"#,
        gateways(Some(&probe_addrs(&t)))
    );
    let g = Gslb::start(&cfg);
    wait_state(&g, &t, "eu2", "DOWN");
    const N: usize = 2000;

    let c = count(&g, EU_SRC, "spill.gslb.test", None, 0, N);
    let eu = pct(&c, &["eu1"]);
    let us = pct(&c, &["us1", "us2"]);
    eprintln!("spill (factor 1.4), eu client by source: eu {eu:.1}%, us {us:.1}%: {c:?}");
    assert_shares(
        "spill, eu source",
        &c,
        &[("eu1", 70.0), ("us1", 15.0), ("us2", 15.0)],
    );
    assert!((eu - 70.0).abs() <= 5.0 && (us - 30.0).abs() <= 5.0);
    let c = count(
        &g,
        NOWHERE_SRC,
        "spill.gslb.test",
        Some("10.9.0.0/16"),
        13, // 10.9 shares 12 bits with us's 10.1.0.0/16
        N,
    );
    let (eu, us) = (pct(&c, &["eu1"]), pct(&c, &["us1", "us2"]));
    eprintln!("spill (factor 1.4), eu client by ECS: eu {eu:.1}%, us {us:.1}%");
    assert!(
        (eu - 70.0).abs() <= 5.0 && (us - 30.0).abs() <= 5.0,
        "{c:?}"
    );
    assert_eq!(pct(&c, &["ap1", "eu2"]), 0.0, "{c:?}");
    // us clients are unaffected: their own region is whole.
    let c = count(&g, US_SRC, "spill.gslb.test", None, 0, N);
    assert_shares("spill, us source", &c, &[("us1", 50.0), ("us2", 50.0)]);

    // answers = 3: spillover moves whole answers. Each answer holds one region's
    // ready endpoints only ({eu1} or {us1, us2}), 70/30, and none mixes regions.
    let (eu_only, us_only) = (set_of(&["eu1"]), set_of(&["us1", "us2"]));
    let (mut eu_answers, mut us_answers) = (0usize, 0usize);
    let sock = UdpSocket::bind((EU_SRC.parse::<IpAddr>().unwrap(), 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = vec![0u8; 4096];
    for _ in 0..N {
        let q = query_msg("spill3.gslb.test", RecordType::A, None);
        let bytes = q.to_vec().unwrap();
        let m = loop {
            sock.send_to(&bytes, g.addr).unwrap();
            // One resend covers a rare loopback drop; stale replies are skipped.
            if let Ok((k, _)) = sock.recv_from(&mut buf) {
                let m = Message::from_vec(&buf[..k]).unwrap();
                if m.metadata.id == q.metadata.id {
                    break m;
                }
            }
        };
        let got = answer_set(&m);
        if got == eu_only {
            eu_answers += 1;
        } else if got == us_only {
            us_answers += 1;
        } else {
            panic!("spill3: an answer mixes regions or misses endpoints: {got:?}");
        }
    }
    let (eu, us) = (
        eu_answers as f64 * 100.0 / N as f64,
        us_answers as f64 * 100.0 / N as f64,
    );
    eprintln!("spill3 (answers = 3), eu client: eu-only {eu:.1}%, us-only {us:.1}%");
    assert!(
        (eu - 70.0).abs() <= 6.0 && (us - 30.0).abs() <= 6.0,
        "eu {eu} us {us}"
    );

    // Factor 2.0: 50% healthy × 2 = 100%: eu keeps all.
    let c = count(&g, EU_SRC, "keep.gslb.test", None, 0, N);
    eprintln!("keep (factor 2.0), eu client: {c:?}");
    assert_shares("keep, eu source", &c, &[("eu1", 100.0)]);
    // Without spillover: eu keeps all too (it has a ready endpoint).
    let c = count(&g, EU_SRC, "strict.gslb.test", None, 0, 400);
    assert_shares("strict, eu source", &c, &[("eu1", 100.0)]);

    // The live explain shows the loads and shares behind it.
    let admin = g.admin.expect("admin listener");
    let v = http_get_json(admin, "/v1/explain?name=spill.gslb.test&client=127.0.20.5");
    assert_eq!(v["client_region"], "eu", "{v}");
    assert_eq!(v["client_network"], "127.0.20.0/24", "{v}");
    assert_eq!(v["ecs_scope"], 24, "{v}");
    let chain = v["verdict"]["chain"].as_array().expect("chain");
    let steps: Vec<(String, u64, u64, f64)> = chain
        .iter()
        .map(|c| {
            (
                c["region"].as_str().unwrap().to_string(),
                c["enabled_weight"].as_u64().unwrap(),
                c["healthy_weight"].as_u64().unwrap(),
                c["load"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(steps.len(), 3, "{v}");
    assert_eq!((steps[0].0.as_str(), steps[0].1, steps[0].2), ("eu", 2, 1));
    assert_eq!((steps[1].0.as_str(), steps[1].1, steps[1].2), ("us", 2, 2));
    assert_eq!(steps[2].0, "ap");
    assert!((steps[0].3 - 0.7).abs() < 1e-9, "{v}");
    assert!((steps[1].3 - 0.3).abs() < 1e-9, "{v}");
    assert_eq!(steps[2].3, 0.0, "{v}");
    let a = &v["verdict"]["families"][0];
    assert_eq!(a["qtype"], "A");
    let shares: BTreeMap<String, f64> = a["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["gateway"].as_str().unwrap().to_string(),
                c["share"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(shares.len(), 3, "{v}");
    assert!((shares["eu1"] - 0.70).abs() < 1e-6, "{v}");
    assert!((shares["us1"] - 0.15).abs() < 1e-6, "{v}");
    assert!((shares["us2"] - 0.15).abs() < 1e-6, "{v}");
}

fn http_get_json(addr: SocketAddr, target: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// 5. Panic threshold: 3 of 4 endpoints down (25% healthy < 50%): answers include the
///    down ones, as if all were healthy (by locality for a region client); without a
///    threshold they never do. Back at 50% healthy, no panic.
#[test]
fn panic_threshold_answers_as_if_all_were_healthy() {
    // eu1 up; eu2, us1, us2 down. ap1 is not in these services.
    let t = targets("127.0.10", 31, &["eu2", "us1", "us2"]);
    let eps = r#"endpoints = [{ gateway = "eu1" }, { gateway = "eu2" }, { gateway = "us1" }, { gateway = "us2" }]"#;
    let cfg = format!(
        r#"{ZONE}
{REGIONS}
{}
{CHECK}
[[service]]
name = "panicky.gslb.test"
check = "hc"
answers = 4
panic_threshold = 0.5
{eps}
[[service]]
name = "calm.gslb.test"
check = "hc"
answers = 4
{eps}
[[service]]
name = "flatpanic.gslb.test"
check = "hc"
answers = 4
locality = false
panic_threshold = 0.5
{eps}
"#,
        gateways(Some(&probe_addrs(&t)))
    );
    let g = Gslb::start(&cfg);
    for gw in ["eu2", "us1", "us2"] {
        wait_state(&g, &t, gw, "DOWN");
    }
    let all4 = set_of(&["eu1", "eu2", "us1", "us2"]);
    let eu = set_of(&["eu1", "eu2"]);
    let us = set_of(&["us1", "us2"]);
    let eu1 = set_of(&["eu1"]);
    wait_for(&g, NOWHERE_SRC, "calm.gslb.test", None, &eu1);
    for _ in 0..30 {
        // Panic: as if all were healthy. No region: all four; eu: eu whole; us: us whole
        // (down as they are); ECS scope is still the placing network's.
        expect(&g, NOWHERE_SRC, "panicky.gslb.test", None, &all4, 0);
        expect(&g, EU_SRC, "panicky.gslb.test", None, &eu, 0);
        expect(&g, US_SRC, "panicky.gslb.test", None, &us, 0);
        expect(
            &g,
            NOWHERE_SRC,
            "panicky.gslb.test",
            Some("10.1.0.0/16"),
            &us,
            16,
        );
        expect(&g, EU_SRC, "flatpanic.gslb.test", None, &all4, 0);
        expect(
            &g,
            NOWHERE_SRC,
            "flatpanic.gslb.test",
            Some("10.1.0.0/16"),
            &all4,
            0,
        );
        // No threshold: only the healthy one, whoever asks (us falls back to eu).
        expect(&g, NOWHERE_SRC, "calm.gslb.test", None, &eu1, 0);
        expect(&g, EU_SRC, "calm.gslb.test", None, &eu1, 0);
        expect(&g, US_SRC, "calm.gslb.test", None, &eu1, 0);
        expect(
            &g,
            NOWHERE_SRC,
            "calm.gslb.test",
            Some("10.1.0.0/16"),
            &eu1,
            16,
        );
    }

    // us1 recovers: 2 of 4 = 50%, not below the threshold: no panic.
    t[gw_index("us1")].set(Reply::ok());
    wait_state(&g, &t, "us1", "UP");
    let up = set_of(&["eu1", "us1"]);
    wait_for(&g, NOWHERE_SRC, "panicky.gslb.test", None, &up);
    for _ in 0..20 {
        expect(&g, NOWHERE_SRC, "panicky.gslb.test", None, &up, 0);
        expect(&g, EU_SRC, "panicky.gslb.test", None, &eu1, 0);
        expect(&g, US_SRC, "panicky.gslb.test", None, &set_of(&["us1"]), 0);
        expect(&g, EU_SRC, "flatpanic.gslb.test", None, &up, 0);
    }
}

// ------------------------------------------------------------------- raw ECS packets

fn header(id: u16, flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    [id, flags, qd, an, ns, ar]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
}

fn question(name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// A query for `name` A whose OPT carries one ECS option with exactly these fields and
/// address octets (the option length follows the octets given).
fn raw_ecs_query(id: u16, name: &str, family: u16, source: u8, octets: &[u8]) -> Vec<u8> {
    let mut opt = 8u16.to_be_bytes().to_vec();
    opt.extend_from_slice(&((4 + octets.len()) as u16).to_be_bytes());
    opt.extend_from_slice(&family.to_be_bytes());
    opt.push(source);
    opt.push(0);
    opt.extend_from_slice(octets);
    let mut p = header(id, 0x0100, 1, 0, 0, 1);
    p.extend(question(name, 1));
    p.push(0); // root
    p.extend_from_slice(&41u16.to_be_bytes());
    p.extend_from_slice(&1232u16.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]);
    p.extend_from_slice(&(opt.len() as u16).to_be_bytes());
    p.extend_from_slice(&opt);
    p
}

fn rcode_of(reply: &[u8]) -> u8 {
    assert!(reply.len() >= 12, "{reply:?}");
    reply[3] & 0x0f
}

/// 6. Malformed ECS is FORMERR (RFC 7871 §6): address bits set beyond SOURCE
///    PREFIX-LENGTH (inside the last octet, or in an extra octet as in 10.1.2.3/24),
///    too many or too few address octets, an unknown family, a prefix longer than the
///    address. Over UDP and TCP, with the query's ID. Well-formed ECS is answered.
#[test]
fn malformed_ecs_is_formerr() {
    let cfg = format!(
        r#"{ZONE}
{REGIONS}
{}
[[service]]
name = "app.gslb.test"
answers = 2
endpoints = [{{ gateway = "eu1" }}, {{ gateway = "eu2" }}, {{ gateway = "us1" }},
             {{ gateway = "us2" }}, {{ gateway = "ap1" }}]
"#,
        gateways(None)
    );
    let g = Gslb::start(&cfg);
    let app = "app.gslb.test";
    let us = set_of(&["us1", "us2"]);

    // Through hickory's encoder: host bits inside the last octet sent.
    for bad in [
        "10.1.2.0/20",
        "10.1.2.129/25",
        "2001:db8:e0:0:4000::/65",
        "10.0.0.1/31",
    ] {
        let q = query_msg(app, RecordType::A, ecs_edns(Some(bad)));
        for tr in [Transport::Udp, Transport::Tcp] {
            let m = exchange(g.addr, &q, tr);
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::FormErr,
                "ECS {bad} over {tr:?}: {m:?}"
            );
            assert!(m.answers.is_empty());
        }
    }
    // The same networks written cleanly are fine.
    expect(&g, NOWHERE_SRC, app, Some("10.1.0.0/20"), &us, 16);
    expect(&g, NOWHERE_SRC, app, Some("10.1.2.128/25"), &us, 16);

    // Raw options: (what, family, source prefix, address octets).
    let cases: [(&str, u16, u8, &[u8]); 9] = [
        (
            "10.1.2.3/24: host bits in an extra octet",
            1,
            24,
            &[10, 1, 2, 3],
        ),
        (
            "10.1.2.0/24 with 4 octets (too many)",
            1,
            24,
            &[10, 1, 2, 0],
        ),
        ("10.1.2.0/24 with 2 octets (too few)", 1, 24, &[10, 1]),
        (
            "10.1.3.0/23: host bit in the last octet",
            1,
            23,
            &[10, 1, 3],
        ),
        ("unknown family 3", 3, 24, &[10, 1, 2]),
        ("family 0", 0, 24, &[10, 1, 2]),
        ("IPv4 /33", 1, 33, &[10, 1, 2, 0, 0]),
        (
            "IPv6 /129",
            2,
            129,
            &[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        (
            "IPv6 /48 with a 7th octet",
            2,
            48,
            &[0x20, 1, 0x0d, 0xb8, 0, 0xe1, 0xff],
        ),
    ];
    let mut failures = Vec::new();
    for (i, (what, family, source, octets)) in cases.iter().enumerate() {
        let id = 0x4000 + i as u16;
        let p = raw_ecs_query(id, app, *family, *source, octets);
        let udp = udp_raw(g.addr, &p, Duration::from_secs(2)).expect("UDP reply");
        let tcp = tcp_raw(g.addr, &p);
        for (tr, r) in [("udp", &udp), ("tcp", &tcp)] {
            assert_eq!(u16::from_be_bytes([r[0], r[1]]), id, "{what} over {tr}: ID");
            assert_eq!(r[2] & 0x80, 0x80, "{what}: QR");
            if rcode_of(r) != 1 {
                failures.push(format!("{what} over {tr}: rcode {}", rcode_of(r)));
            }
        }
    }
    assert!(failures.is_empty(), "not FORMERR: {failures:#?}");

    // Control: the same builder with a well-formed option is answered, and echoed.
    let p = raw_ecs_query(0x4242, app, 1, 24, &[10, 1, 2]);
    let r = udp_raw(g.addr, &p, Duration::from_secs(2)).expect("reply");
    let m = Message::from_vec(&r).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(answer_set(&m), us);
    check_echo(&m, Some("10.1.2.0/24"), 16);
    // The server is still fine.
    expect(&g, EU_SRC, app, None, &set_of(&["eu1", "eu2"]), 0);
}

// ----------------------------------------------------------------------------- explain

/// Runs `gslb explain -c path args...`; stdout, with runs of spaces squeezed per line.
fn explain_cli(path: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("explain")
        .arg("-c")
        .arg(path)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "explain {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    squeeze(&stdout)
}

fn squeeze(text: &str) -> String {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn has_lines(out: &str, lines: &[&str]) {
    let all: Vec<&str> = out.lines().collect();
    for l in lines {
        assert!(all.contains(l), "no line {l:?} in:\n{out}");
    }
}

const EXPLAIN_SERVICES: &str = r#"
[[service]]
name = "app.gslb.test"
endpoints = [{ gateway = "eu1", weight = 3 }, { gateway = "eu2", weight = 1 },
             { gateway = "us1" }, { gateway = "us2" }, { gateway = "ap1", weight = 2 }]
[[service]]
name = "spill.gslb.test"
check = "hc"
spillover = true
endpoints = [{ gateway = "eu1" }, { gateway = "eu2" }, { gateway = "us1" },
             { gateway = "us2" }, { gateway = "ap1" }]
"#;

/// 7. `gslb explain` prints where the client was placed and why (the network matched),
///    the region chain with loads, and the candidates with weights and shares: a region
///    client (by source and by ECS, longest match), a client in no region, and a
///    spillover case (70.0% / 30.0%, through the same explain code over a snapshot
///    with eu2 down, since the offline CLI assumes every endpoint healthy).
#[test]
fn explain_shows_placement_chain_and_shares() {
    // The probes are never contacted offline; the addresses are ours all the same.
    let probes: Vec<SocketAddr> = (1..=5)
        .map(|i| format!("127.0.11.{i}:8080").parse().unwrap())
        .collect();
    let cfg = format!(
        "{ZONE}\n{REGIONS}\n{}\n{CHECK}\n{EXPLAIN_SERVICES}",
        gateways(Some(&probes))
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gslb.toml");
    std::fs::write(&path, &cfg).unwrap();

    // A region client by source address.
    let out = explain_cli(&path, &["app.gslb.test", "--client", "127.0.20.9"]);
    has_lines(
        &out,
        &[
            "name: app.gslb.test.",
            "client: source address 127.0.20.9: region eu (matched 127.0.20.0/24) (ECS scope 24)",
            "region chain (all-or-nothing failover):",
            "eu healthy weight 4/4 load 100.0%",
            "us healthy weight 2/2 load 0.0%",
            "ap healthy weight 2/2 load 0.0%",
            "A answers: healthy endpoints, by weight",
            "eu1 weight 750000 share 75.0%",
            "eu2 weight 250000 share 25.0%",
        ],
    );
    let a_section = out.split("A answers:").nth(1).unwrap();
    assert!(
        !a_section.contains("us1") && !a_section.contains("ap1"),
        "{out}"
    );
    // Chain order: eu, us, ap.
    let (e, u, a) = (
        out.find("eu healthy").unwrap(),
        out.find("us healthy").unwrap(),
        out.find("ap healthy").unwrap(),
    );
    assert!(e < u && u < a, "{out}");

    // A region client by ECS: the /16 beats the /8.
    let out = explain_cli(
        &path,
        &[
            "app.gslb.test",
            "--client",
            "127.0.0.1",
            "--ecs",
            "10.1.2.0/24",
        ],
    );
    has_lines(
        &out,
        &[
            "client: ECS 10.1.2.0/24: region us (matched 10.1.0.0/16) (ECS scope 16)",
            "us healthy weight 2/2 load 100.0%",
            "eu healthy weight 4/4 load 0.0%",
            "us1 weight 500000 share 50.0%",
            "us2 weight 500000 share 50.0%",
        ],
    );
    let out = explain_cli(
        &path,
        &[
            "app.gslb.test",
            "--client",
            "127.0.0.1",
            "--ecs",
            "10.7.0.0/16",
        ],
    );
    has_lines(
        &out,
        &["client: ECS 10.7.0.0/16: region eu (matched 10.0.0.0/8) (ECS scope 14)"],
    );

    // A client in no region: no chain, every endpoint by its configured weight.
    let out = explain_cli(&path, &["app.gslb.test", "--client", "198.51.100.7"]);
    has_lines(
        &out,
        &[
            "client: source address 198.51.100.7: in no region; all healthy endpoints by weight (ECS scope 5)",
            "A answers: healthy endpoints, by weight",
            "eu1 weight 3 share 37.5%",
            "eu2 weight 1 share 12.5%",
            "us1 weight 1 share 12.5%",
            "us2 weight 1 share 12.5%",
            "ap1 weight 2 share 25.0%",
        ],
    );
    assert!(!out.contains("region chain"), "{out}");
    // A malformed ECS is refused.
    let bad = Command::new(BIN)
        .args(["explain", "-c"])
        .arg(&path)
        .args(["app.gslb.test", "--ecs", "10.1.2.3/24"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("bits are set beyond the prefix"),
        "{bad:?}"
    );

    // Spillover, offline (all healthy): eu keeps everything.
    let out = explain_cli(&path, &["spill.gslb.test", "--client", "127.0.20.9"]);
    has_lines(
        &out,
        &[
            "region chain (spillover, overprovisioning factor 1.4):",
            "eu healthy weight 2/2 load 100.0%",
            "us healthy weight 2/2 load 0.0%",
        ],
    );

    // Spillover with eu2 down: the explain text the CLI prints, over that snapshot.
    let plan = Arc::new(gslb::config::parse(&path, &cfg).expect("config"));
    let eu2 = gslb::plan::GatewayId(plan.gateways.iter().position(|g| g.name == "eu2").unwrap());
    let health: Vec<bool> = plan
        .targets
        .iter()
        .map(|t| !t.gateways.contains(&eu2))
        .collect();
    assert_eq!(health.iter().filter(|h| !**h).count(), 1);
    let metrics = gslb::metrics::Metrics::new();
    let snap = gslb::snapshot::Snapshot::build(
        plan.clone(),
        Arc::new(gslb::snapshot::Zones::build(&plan)),
        Arc::new(metrics.for_plan(&plan)),
        &health,
        &gslb::overrides::Overrides::default(),
    );
    let e = gslb::explain::explain(
        &snap,
        "spill.gslb.test",
        "127.0.20.9".parse().unwrap(),
        None,
    )
    .unwrap();
    let out = squeeze(&e.to_string());
    has_lines(
        &out,
        &[
            "client: source address 127.0.20.9: region eu (matched 127.0.20.0/24) (ECS scope 24)",
            "region chain (spillover, overprovisioning factor 1.4):",
            "eu healthy weight 1/2 load 70.0%",
            "us healthy weight 2/2 load 30.0%",
            "ap healthy weight 1/1 load 0.0%",
            "A answers: healthy endpoints, by weight",
            "eu1 weight 700000 share 70.0%",
            "us1 weight 150000 share 15.0%",
            "us2 weight 150000 share 15.0%",
        ],
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("eu2 region eu weight 1 health down NOT ready")),
        "{out}"
    );
    let a_section = out.split("A answers:").nth(1).unwrap();
    assert!(
        !a_section.contains("eu2") && !a_section.contains("ap1"),
        "{out}"
    );
    // And by ECS into eu's /8: same loads, scope 13 (short of us's 10.1.0.0/16).
    let e = gslb::explain::explain(
        &snap,
        "spill.gslb.test",
        "127.0.0.1".parse().unwrap(),
        Some("10.9.0.0/16"),
    )
    .unwrap();
    let out = squeeze(&e.to_string());
    has_lines(
        &out,
        &[
            "client: ECS 10.9.0.0/16: region eu (matched 10.0.0.0/8) (ECS scope 13)",
            "eu healthy weight 1/2 load 70.0%",
            "us healthy weight 2/2 load 30.0%",
        ],
    );
}

/// 8. A service with nothing in a client's region chain (its gateways carry no region)
///    serves that client like one in no region: healthy endpoints by weight, not a
///    fail-open answer holding the unhealthy ones.
#[test]
fn service_outside_the_chain_serves_region_clients_by_health() {
    let up = HttpTarget::start("127.0.11.41", Reply::ok());
    let down = HttpTarget::start("127.0.11.42", Reply::no_upstreams());
    let cfg = format!(
        r#"{ZONE}
{REGIONS}
{CHECK}
[[gateway]]
name = "any1"
addresses = ["192.0.2.41"]
probe = "{}"
[[gateway]]
name = "any2"
addresses = ["192.0.2.42"]
probe = "{}"
[[service]]
name = "global.gslb.test"
check = "hc"
answers = 2
endpoints = [{{ gateway = "any1" }}, {{ gateway = "any2" }}]
"#,
        up.addr, down.addr
    );
    let g = Gslb::start(&cfg);
    g.wait_log(
        &format!("target any2 {} (check hc) is now DOWN", down.addr),
        Duration::from_secs(10),
    );
    let only_up: BTreeSet<Ipv4Addr> = [ip("192.0.2.41")].into();
    wait_for(&g, NOWHERE_SRC, "global.gslb.test", None, &only_up);
    for _ in 0..20 {
        expect(&g, NOWHERE_SRC, "global.gslb.test", None, &only_up, 0);
        expect(&g, EU_SRC, "global.gslb.test", None, &only_up, 0);
        expect(&g, US_SRC, "global.gslb.test", None, &only_up, 0);
        expect(
            &g,
            NOWHERE_SRC,
            "global.gslb.test",
            Some("10.1.0.0/16"),
            &only_up,
            16,
        );
    }
}
