//! Verdicts from every vantage point: three real `gslb` replicas, each probing from its
//! own loopback source address, combine their verdicts through a real `nats-server`.
//! A target that refuses one replica only stays in (majority) or leaves (all); a
//! replica that sees everything down alone fences itself; a target down for everyone
//! leaves every replica's answers within interval × fall + timeout + one heartbeat.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::{answers, metric, set};
use crate::common::nats::{self, Nats};
use crate::common::{Gslb, HttpTarget, Reply, ZONE, wait_until};
use crate::ops::{endpoint, http, state};

const INTERVAL_MS: u64 = 200;
const TIMEOUT_MS: u64 = 150;
const HEARTBEAT_MS: u64 = 200;

struct Trio {
    _store: Nats,
    _dir: tempfile::TempDir,
    targets: Vec<HttpTarget>,
    replicas: Vec<Gslb>,
    sources: Vec<IpAddr>,
}

/// Three gateways with an HTTP target each on `127.0.<net>.1..3`, three replicas
/// probing from `127.0.<net>.11..13`, all judging by `quorum`.
fn trio(net: u8, quorum: &str) -> Trio {
    let store = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let targets: Vec<HttpTarget> = (1..=3)
        .map(|i| HttpTarget::start(&format!("127.0.{net}.{i}"), Reply::ok()))
        .collect();
    let sources: Vec<IpAddr> = (11..=13)
        .map(|i| format!("127.0.{net}.{i}").parse().unwrap())
        .collect();
    let gateways = probed_gateways(&targets);
    let replicas = (0..3)
        .map(|i| {
            Gslb::start(&format!(
                r#"[health]
source_address = "{source}"
[admin]
listen = "127.0.0.1:0"
state_file = "{state}"
[cluster]
name = "ns{n}"
servers = ["{url}"]
bucket = "quorum_{net}"
quorum = "{quorum}"
heartbeat = "{HEARTBEAT_MS}ms"
timeout = "1s"
{ZONE}
[[check]]
name = "hc"
kind = "http"
path = "/hc"
interval = "{INTERVAL_MS}ms"
timeout = "{TIMEOUT_MS}ms"
rise = 1
fall = 1
{gateways}
[[service]]
name = "app.gslb.test"
answers = 3
check = "hc"
all_down = "fail_closed"
endpoints = [{{ gateway = "g0" }}, {{ gateway = "g1" }}, {{ gateway = "g2" }}]
"#,
                source = sources[i],
                state = dir.path().join(format!("{i}.json")).display(),
                n = i + 1,
                url = store.url(),
            ))
        })
        .collect::<Vec<_>>();
    let t = Trio {
        _store: store,
        _dir: dir,
        targets,
        replicas,
        sources,
    };
    // Everyone counts everyone before the test starts.
    for g in &t.replicas {
        wait_until(Duration::from_secs(10), || {
            state(g)["cluster"]["live_replicas"]
                .as_array()
                .is_some_and(|l| l.len() == 2)
        })
        .unwrap_or_else(|| panic!("the replicas never saw each other:\n{}", g.logs()));
    }
    t
}

/// The probe part of `/v1/state` for gateway `gw` of the one service.
fn probe(g: &Gslb, gw: &str) -> Value {
    endpoint(&state(g), "app.gslb.test.", gw)["probe"].clone()
}

/// `[[gateway]]` g0, g1, ... at 192.0.2.1, .2, ..., each probed at its target.
pub(crate) fn probed_gateways(targets: &[HttpTarget]) -> String {
    let mut gateways = String::new();
    for (i, t) in targets.iter().enumerate() {
        gateways += &format!(
            "[[gateway]]\nname = \"g{i}\"\naddresses = [\"192.0.2.{}\"]\nprobe = \"{}\"\n",
            i + 1,
            t.addr
        );
    }
    gateways
}

const ALL: [&str; 3] = ["192.0.2.1", "192.0.2.2", "192.0.2.3"];

/// Holds `cond` for `d`, checking every 50 ms.
fn holds(d: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < d {
        if !cond() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

#[test]
fn a_majority_outvotes_one_broken_vantage_point() {
    if !nats::available() {
        return;
    }
    let t = trio(30, "majority");
    let (a, b, c) = (&t.replicas[0], &t.replicas[1], &t.replicas[2]);

    // g0 refuses B only: B's probe says down, the others say up; g0 stays everywhere.
    t.targets[0].refuse_from(Some(t.sources[1]));
    wait_until(Duration::from_secs(5), || {
        probe(b, "g0")["own_up"] == json!(false)
    })
    .unwrap_or_else(|| panic!("B never saw g0 down:\n{}", b.logs()));
    assert!(
        holds(Duration::from_secs(2), || t
            .replicas
            .iter()
            .all(|g| answers(g) == set(&ALL))),
        "g0 left some replica's answers"
    );
    let p = probe(b, "g0");
    assert_eq!(p["decided_by"], json!("quorum"), "{p}");
    assert_eq!(p["up"], json!(true), "{p}");
    assert_eq!(
        p["verdicts"],
        json!({"ns1": true, "ns2": false, "ns3": true}),
        "{p}"
    );
    assert_eq!(metric(b, "gslb_cluster_verdict_disagreements"), 1.0);
    assert_eq!(
        metric(b, "gslb_cluster_fenced"),
        0.0,
        "one target of three is no reason to fence"
    );
    assert_eq!(probe(a, "g0")["verdicts"]["ns2"], json!(false));
    assert_eq!(metric(a, "gslb_cluster_verdict_disagreements"), 0.0);
    let explained = http(
        b.admin.unwrap(),
        "GET",
        "/v1/explain?name=app.gslb.test",
        &[],
    )
    .body;
    assert!(
        explained.contains(
            "the quorum (majority) decided up: this replica's probe says down; ns1 up, ns3 up"
        ),
        "{explained}"
    );

    // Every target refuses B: B is the broken one. It fences itself and stops counting;
    // with majority nothing changes in the answers.
    for x in &t.targets {
        x.refuse_from(Some(t.sources[1]));
    }
    wait_until(Duration::from_secs(5), || {
        metric(b, "gslb_cluster_fenced") == 1.0
    })
    .unwrap_or_else(|| panic!("B never fenced itself:\n{}", b.logs()));
    assert!(b.logs().contains("fencing itself"), "{}", b.logs());
    assert_eq!(state(b)["cluster"]["fenced"], json!(true));
    wait_until(Duration::from_secs(5), || {
        state(a)["cluster"]["live_replicas"] == json!(["ns3"])
    })
    .unwrap_or_else(|| panic!("A still counts B: {}", state(a)["cluster"]));
    for g in &t.replicas {
        assert_eq!(answers(g), set(&ALL));
    }
    // B's view agrees again: it counts again.
    for x in &t.targets {
        x.refuse_from(None);
    }
    wait_until(Duration::from_secs(5), || {
        metric(b, "gslb_cluster_fenced") == 0.0
    })
    .unwrap_or_else(|| panic!("B stayed fenced:\n{}", b.logs()));
    wait_until(Duration::from_secs(5), || {
        state(a)["cluster"]["live_replicas"] == json!(["ns2", "ns3"])
    })
    .unwrap_or_else(|| panic!("A never counted B again: {}", state(a)["cluster"]));

    // g2 down for everyone: it leaves every replica's answers within
    // interval × fall + timeout + one heartbeat.
    let bound = Duration::from_millis(INTERVAL_MS + TIMEOUT_MS + HEARTBEAT_MS);
    let without = set(&["192.0.2.1", "192.0.2.2"]);
    let down = Instant::now();
    t.targets[2].set(Reply::no_upstreams());
    for (name, g) in [("A", a), ("B", b), ("C", c)] {
        wait_until(Duration::from_secs(5), || answers(g) == without)
            .unwrap_or_else(|| panic!("{name} still answers g2:\n{}", g.logs()));
    }
    let took = down.elapsed();
    eprintln!(
        "g2 down for everyone: gone from all three replicas after {took:?} (bound {bound:?})"
    );
    // The bound is what the design promises; the margin is the test's own polling:
    // one 25 ms wait per replica, each answer queried after the last.
    assert!(
        took <= bound + Duration::from_millis(3 * 25),
        "{took:?} > {bound:?}"
    );

    // A replica that dies stops counting once its verdicts lapse: three heartbeats
    // after its last report, noticed at the next heartbeat.
    let mut t = t;
    drop(t.replicas.pop());
    let died = Instant::now();
    let a = &t.replicas[0];
    wait_until(Duration::from_secs(5), || {
        state(a)["cluster"]["live_replicas"] == json!(["ns2"])
    })
    .unwrap_or_else(|| panic!("A still counts the dead C: {}", state(a)["cluster"]));
    let gone = died.elapsed();
    eprintln!(
        "C killed: A stopped counting it after {gone:?} (lapse {:?})",
        Duration::from_millis(3 * HEARTBEAT_MS)
    );
    assert!(
        gone >= Duration::from_millis(2 * HEARTBEAT_MS),
        "{gone:?}: counted out too early"
    );
    assert!(
        gone <= Duration::from_millis(4 * HEARTBEAT_MS + 400),
        "{gone:?}"
    );
}

#[test]
fn with_all_one_broken_vantage_point_removes_a_target() {
    if !nats::available() {
        return;
    }
    let t = trio(31, "all");
    t.targets[0].refuse_from(Some(t.sources[1]));
    let without = set(&["192.0.2.2", "192.0.2.3"]);
    for (i, g) in t.replicas.iter().enumerate() {
        wait_until(Duration::from_secs(5), || answers(g) == without)
            .unwrap_or_else(|| panic!("replica {i} still answers g0:\n{}", g.logs()));
    }
    let p = probe(&t.replicas[0], "g0");
    assert_eq!(p["own_up"], json!(true), "{p}");
    assert_eq!(p["up"], json!(false), "{p}");
    assert_eq!(p["decided_by"], json!("quorum"), "{p}");
    // The refusal ends: g0 comes back everywhere.
    t.targets[0].refuse_from(None);
    for (i, g) in t.replicas.iter().enumerate() {
        wait_until(Duration::from_secs(5), || answers(g) == set(&ALL))
            .unwrap_or_else(|| panic!("replica {i} never took g0 back:\n{}", g.logs()));
    }
}

/// `selection = "consistent"`: 1,000 client subnets (ECS /24s) get the same answer from
/// all three replicas, again on a second round, with an ECS scope of /24; their shares
/// over the gateways are within ±5 points of the weights; and a gateway drained on one
/// replica moves only the clients it had.
#[test]
fn consistent_selection_agrees_across_replicas() {
    use hickory_proto::op::Edns;
    use hickory_proto::rr::RecordType;
    use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    use crate::common::{Transport, a_records, exchange, query_msg};

    if !nats::available() {
        return;
    }
    let store = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let weights = [("g1", 50u32), ("g2", 30), ("g3", 20)];
    let mut gateways = String::new();
    for (i, (name, _)) in weights.iter().enumerate() {
        gateways += &format!(
            "[[gateway]]\nname = \"{name}\"\naddresses = [\"192.0.2.{}\"]\n",
            i + 1
        );
    }
    let endpoints: Vec<String> = weights
        .iter()
        .map(|(n, w)| format!("{{ gateway = \"{n}\", weight = {w} }}"))
        .collect();
    let replicas: Vec<Gslb> = (1..=3)
        .map(|n| {
            Gslb::start(&format!(
                r#"[admin]
listen = "127.0.0.1:0"
state_file = "{}"
[cluster]
name = "ns{n}"
servers = ["{}"]
bucket = "consistent"
timeout = "1s"
{ZONE}
{gateways}
[[service]]
name = "app.gslb.test"
selection = "consistent"
endpoints = [{}]
"#,
                dir.path().join(format!("{n}.json")).display(),
                store.url(),
                endpoints.join(", ")
            ))
        })
        .collect();
    let ask = |g: &Gslb, subnet: Ipv4Addr| -> (Vec<Ipv4Addr>, u8) {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        e.options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::new(subnet.into(), 24, 0)));
        let m = exchange(
            g.addr,
            &query_msg("app.gslb.test", RecordType::A, Some(e)),
            Transport::Udp,
        );
        let scope = match m.edns.as_ref().and_then(|o| o.option(EdnsCode::Subnet)) {
            Some(EdnsOption::Subnet(s)) => s.scope_prefix(),
            _ => panic!("no ECS in the reply"),
        };
        (a_records(&m), scope)
    };
    let subnets: Vec<Ipv4Addr> = (0..1000u32)
        .map(|i| Ipv4Addr::new(10, (i / 256) as u8, (i % 256) as u8, 0))
        .collect();
    let mut first: BTreeMap<Ipv4Addr, Ipv4Addr> = BTreeMap::new();
    for round in 0..2 {
        for s in &subnets {
            for g in &replicas {
                let (a, scope) = ask(g, *s);
                assert_eq!(a.len(), 1, "one answer");
                assert_eq!(scope, 24, "the answer depends on the /24");
                let was = *first.entry(*s).or_insert(a[0]);
                assert_eq!(a[0], was, "round {round}: {s}/24 got {} and {was}", a[0]);
            }
        }
    }
    let mut count: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
    for a in first.values() {
        *count.entry(*a).or_default() += 1;
    }
    for (i, (name, w)) in weights.iter().enumerate() {
        let got = count
            .get(&Ipv4Addr::new(192, 0, 2, i as u8 + 1))
            .copied()
            .unwrap_or(0) as f64
            / 10.0;
        eprintln!("{name}: weight {w}%, {got:.1}% of 1,000 client subnets");
        assert!((got - f64::from(*w)).abs() <= 5.0, "{name}: {got}% vs {w}%");
    }
    // Explain says what a client gets, as the DNS front does.
    let name_of = |a: Ipv4Addr| weights[usize::from(a.octets()[3]) - 1].0;
    for s in &subnets[..20] {
        let e = http(
            replicas[1].admin.unwrap(),
            "GET",
            &format!("/v1/explain?name=app.gslb.test&client=192.0.2.53&ecs={s}/24"),
            &[],
        )
        .json();
        let fams = find(&e, "families").expect("families");
        assert_eq!(
            fams[0]["consistent_answer"],
            json!([name_of(first[s])]),
            "{e}"
        );
    }
    // g3 drained (through ns1, so every replica): its clients move, nobody else does.
    let (status, body) = crate::cluster::post(&replicas[0], "/v1/drain?gateway=g3");
    assert_eq!(status, 200, "{body}");
    let g3 = Ipv4Addr::new(192, 0, 2, 3);
    for g in &replicas {
        wait_until(Duration::from_secs(5), || {
            state(g)["overrides"]["gateways"] == json!({"g3": "drain"})
        })
        .unwrap_or_else(|| panic!("the drain never arrived:\n{}", g.logs()));
    }
    let mut moved = 0;
    for s in &subnets {
        for g in &replicas {
            let (a, _) = ask(g, *s);
            if first[s] == g3 {
                assert_ne!(a[0], g3, "{s}/24 still on the drained gateway");
            } else {
                assert_eq!(a[0], first[s], "{s}/24 moved off a gateway that stayed");
            }
        }
        moved += usize::from(first[s] == g3);
    }
    eprintln!("drain of g3 moved {moved} of 1,000 client subnets, exactly those it had");
}

/// The first value under `key`, anywhere in `v`.
fn find<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => m.get(key).or_else(|| m.values().find_map(|x| find(x, key))),
        Value::Array(a) => a.iter().find_map(|x| find(x, key)),
        _ => None,
    }
}
