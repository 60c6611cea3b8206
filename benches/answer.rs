//! The answer path on a warm snapshot, without sockets: `Handler::respond` on an
//! already-parsed request, and parse + respond from the raw query bytes (what the UDP
//! loop does per datagram, minus `recv_from`/`send_to`).
//!
//! Run: `cargo bench --bench answer` (add `-- --quick` for a short run).
//!
//! Services here have no `check`, so every endpoint is healthy and the snapshot is
//! built once, exactly as `serve` builds its first one.

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;

use gslb::config;
use gslb::dns::Handler;
use gslb::metrics::Metrics;
use gslb::overrides::Overrides;
use gslb::snapshot::{Shared, Snapshot, Zones};

const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:0"]
udp_sockets = 1

[[zone]]
origin = "bench.example"
ttl = "1h"
ns = [{ name = "ns1", addresses = ["192.0.2.53"] }]

[[zone.record]]
name = "www"
type = "A"
value = "192.0.2.80"

[[gateway]]
name = "g1"
addresses = ["198.51.100.1"]
[[gateway]]
name = "g2"
addresses = ["198.51.100.2"]
[[gateway]]
name = "g3"
addresses = ["198.51.100.3"]
[[gateway]]
name = "g4"
addresses = ["198.51.100.4"]
[[gateway]]
name = "g5"
addresses = ["198.51.100.5"]
[[gateway]]
name = "g6"
addresses = ["198.51.100.6"]
[[gateway]]
name = "g7"
addresses = ["198.51.100.7"]
[[gateway]]
name = "g8"
addresses = ["198.51.100.8"]

[[service]]
name = "w2a1.bench.example"
answers = 1
endpoints = [{ gateway = "g1", weight = 50 }, { gateway = "g2", weight = 50 }]

[[service]]
name = "w2a3.bench.example"
answers = 3
endpoints = [{ gateway = "g1", weight = 50 }, { gateway = "g2", weight = 50 }]

[[service]]
name = "w8a1.bench.example"
answers = 1
endpoints = [
  { gateway = "g1", weight = 10 }, { gateway = "g2", weight = 20 },
  { gateway = "g3", weight = 30 }, { gateway = "g4", weight = 40 },
  { gateway = "g5", weight = 50 }, { gateway = "g6", weight = 60 },
  { gateway = "g7", weight = 70 }, { gateway = "g8", weight = 80 },
]

[[service]]
name = "w8a3.bench.example"
answers = 3
endpoints = [
  { gateway = "g1", weight = 10 }, { gateway = "g2", weight = 20 },
  { gateway = "g3", weight = 30 }, { gateway = "g4", weight = 40 },
  { gateway = "g5", weight = 50 }, { gateway = "g6", weight = 60 },
  { gateway = "g7", weight = 70 }, { gateway = "g8", weight = 80 },
]
"#;

/// (benchmark id, query name, expected rcode, expected answer count)
const CASES: &[(&str, &str, ResponseCode, usize)] = &[
    ("svc_w2_a1", "w2a1.bench.example.", ResponseCode::NoError, 1),
    ("svc_w2_a3", "w2a3.bench.example.", ResponseCode::NoError, 2),
    ("svc_w8_a1", "w8a1.bench.example.", ResponseCode::NoError, 1),
    ("svc_w8_a3", "w8a3.bench.example.", ResponseCode::NoError, 3),
    ("static_a", "www.bench.example.", ResponseCode::NoError, 1),
    ("nxdomain", "nope.bench.example.", ResponseCode::NXDomain, 0),
];

/// The handler over a snapshot built as `serve` builds its first one: every probe target
/// up, no admin overrides, metrics resolved for the plan (so `respond` pays for the
/// per-query counters as in production). Kept in one place: it follows the library API.
fn handler() -> Handler {
    let plan =
        Arc::new(config::parse(Path::new("<bench>"), CONFIG).expect("bench config is valid"));
    let zones = Arc::new(Zones::build(&plan));
    let metrics = Arc::new(Metrics::new().for_plan(&plan));
    let health = vec![true; plan.targets.len()];
    let snap = Snapshot::build(plan, zones, metrics, &health, &Overrides::default());
    let shared: Shared = Arc::new(ArcSwap::from_pointee(snap));
    Handler::new(shared)
}

/// Query bytes as a resolver would send them: RD clear, EDNS with a 1232-byte payload.
fn query_bytes(name: &str) -> Vec<u8> {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    m.set_edns(e);
    m.to_vec().unwrap()
}

/// Fails the benchmark loudly if the handler answers something other than expected, so
/// the numbers are never for a wrong (e.g. REFUSED) answer.
fn check(h: &Handler, req: &Request, name: &str, rcode: ResponseCode, answers: usize) {
    let mut out = Vec::new();
    let outcome = h.respond(req, Protocol::Udp, &mut out).expect("a response");
    let msg = Message::from_vec(&out).expect("response parses");
    assert_eq!(outcome.rcode, rcode, "{name}: rcode");
    assert_eq!(msg.metadata.response_code, rcode, "{name}: wire rcode");
    assert_eq!(msg.answers.len(), answers, "{name}: answer count");
    assert!(!outcome.truncated, "{name}: truncated");
}

fn bench(c: &mut Criterion) {
    let h = handler();
    let src: SocketAddr = "127.0.0.1:53000".parse().unwrap();

    let mut g = c.benchmark_group("respond");
    for &(id, name, rcode, answers) in CASES {
        let raw = query_bytes(name);
        let req = Request::from_bytes(raw.clone(), src, Protocol::Udp).unwrap();
        check(&h, &req, name, rcode, answers);
        let mut out = Vec::with_capacity(4096);
        g.bench_function(id, |b| {
            b.iter(|| {
                h.respond(black_box(&req), Protocol::Udp, &mut out);
                black_box(out.len())
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("parse_respond");
    for &(id, name, _, _) in CASES {
        let raw = query_bytes(name);
        let mut out = Vec::with_capacity(4096);
        g.bench_function(id, |b| {
            b.iter(|| {
                // The UDP loop copies the datagram into an owned Vec for `from_bytes`.
                let req =
                    Request::from_bytes(black_box(&raw).to_vec(), src, Protocol::Udp).unwrap();
                h.respond(&req, Protocol::Udp, &mut out);
                black_box(out.len())
            })
        });
    }
    g.finish();

    // Parsing alone, to split the parse+respond number.
    let raw = query_bytes(CASES[0].1);
    c.bench_function("parse_only/svc_w2_a1", |b| {
        b.iter(|| {
            let req = Request::from_bytes(black_box(&raw).to_vec(), src, Protocol::Udp).unwrap();
            black_box(req.metadata.id)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
