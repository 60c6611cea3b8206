//! Several replicas that act as one: three real `gslb` binaries share their operator
//! overrides through a real `nats-server` (Debian's, JetStream on loopback). Skipped
//! without `nats-server` on PATH, except in CI.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

use crate::common::nats::{self, Nats};
use crate::common::{Gslb, HttpTarget, Reply, ZONE, a_records, query, wait_until};
use crate::ops::http;

const GATEWAYS: &str = r#"[[gateway]]
name = "a"
addresses = ["192.0.2.1"]
[[gateway]]
name = "b"
addresses = ["192.0.2.2"]
[[service]]
name = "app.gslb.test"
answers = 2
endpoints = [{ gateway = "a" }, { gateway = "b" }]
"#;

fn replica_cfg(name: &str, nats: &str, state_file: &std::path::Path) -> String {
    format!(
        r#"[admin]
listen = "127.0.0.1:0"
state_file = "{}"
[cluster]
name = "{name}"
servers = ["{nats}"]
bucket = "gslb_test"
timeout = "1s"
{ZONE}
{GATEWAYS}"#,
        state_file.display()
    )
}

pub(crate) fn answers(g: &Gslb) -> BTreeSet<String> {
    a_records(&query(g.addr, "app.gslb.test", RecordType::A))
        .iter()
        .map(|a| a.to_string())
        .collect()
}

pub(crate) fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

pub(crate) fn post(g: &Gslb, target: &str) -> (u16, Value) {
    let r = http(g.admin.unwrap(), "POST", target, &[]);
    (r.status, r.json())
}

pub(crate) fn metric(g: &Gslb, name: &str) -> f64 {
    let r = http(g.admin.unwrap(), "GET", "/metrics", &[]);
    r.body
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Three replicas, one store: a drain POSTed to A changes B's and C's answers; a drain
/// while the store is down is refused on every replica and applied nowhere; C
/// restarted while the store is down still honours the drain (its local copy); when
/// the store returns, an undrain through C reaches A and B.
#[test]
fn replicas_share_drains_through_the_store() {
    if !nats::available() {
        return;
    }
    let mut store = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| dir.path().join(format!("{n}.json")))
        .collect();
    let cfgs: Vec<String> = ["ns1", "ns2", "ns3"]
        .iter()
        .zip(&files)
        .map(|(n, f)| replica_cfg(n, &store.url(), f))
        .collect();
    let a = Gslb::start(&cfgs[0]);
    let b = Gslb::start(&cfgs[1]);
    let mut c = Gslb::start(&cfgs[2]);
    let both = set(&["192.0.2.1", "192.0.2.2"]);
    for g in [&a, &b, &c] {
        assert_eq!(answers(g), both);
        wait_until(Duration::from_secs(10), || {
            metric(g, "gslb_cluster_store_up") == 1.0
        })
        .unwrap_or_else(|| panic!("store_up never 1:\n{}", g.logs()));
    }

    // A drain through A: answered only once the store took it, then everywhere.
    let posted = Instant::now();
    let (status, body) = post(&a, "/v1/drain?gateway=a");
    assert_eq!(status, 200, "{body}");
    assert_eq!(answers(&a), set(&["192.0.2.2"]), "A applies its own write");
    for (name, g) in [("B", &b), ("C", &c)] {
        let took = wait_until(Duration::from_secs(5), || answers(g) == set(&["192.0.2.2"]))
            .unwrap_or_else(|| panic!("{name} never applied the drain:\n{}", g.logs()));
        eprintln!(
            "drain POSTed to A reached {name}'s answers after {took:?} (from the POST: {:?})",
            posted.elapsed()
        );
    }
    assert!(metric(&c, "gslb_cluster_overrides_revision") >= 1.0);
    let st = crate::ops::state(&c);
    assert_eq!(st["cluster"]["replica"], json!("ns3"), "{st}");
    assert_eq!(st["cluster"]["store_reachable"], json!(true), "{st}");
    assert_eq!(st["overrides"]["gateways"], json!({"a": "drain"}), "{st}");
    // Every replica keeps its local copy.
    for f in &files {
        wait_until(Duration::from_secs(5), || {
            std::fs::read_to_string(f).is_ok_and(|t| t.contains("\"a\": \"drain\""))
        })
        .unwrap_or_else(|| panic!("{} holds no drain", f.display()));
    }

    // The store goes away: every replica keeps serving the drain, and a change is
    // refused with the reason, on no replica applied.
    store.kill();
    wait_until(Duration::from_secs(5), || {
        metric(&b, "gslb_cluster_store_up") == 0.0
    })
    .unwrap_or_else(|| panic!("B never saw the store go:\n{}", b.logs()));
    let (status, body) = post(&b, "/v1/drain?gateway=b");
    assert_eq!(status, 503, "{body}");
    let why = body["error"].as_str().unwrap_or_default();
    assert!(why.contains("nothing changed on any replica"), "{why}");
    for g in [&a, &b, &c] {
        assert_eq!(answers(g), set(&["192.0.2.2"]));
    }

    // C restarts while the store is down: it serves the drain from its local copy.
    drop(c);
    c = Gslb::start(&cfgs[2]);
    assert_eq!(
        answers(&c),
        set(&["192.0.2.2"]),
        "C forgot the drain:\n{}",
        c.logs()
    );
    assert_eq!(metric(&c, "gslb_cluster_store_up"), 0.0);

    // The store returns: the replicas reconnect, and an undrain through C reaches A
    // and B; nothing flapped meanwhile (answers stayed drained until the undrain).
    store.resume();
    for g in [&a, &b, &c] {
        wait_until(Duration::from_secs(10), || {
            metric(g, "gslb_cluster_store_up") == 1.0
        })
        .unwrap_or_else(|| panic!("never reconnected:\n{}", g.logs()));
        assert_eq!(answers(g), set(&["192.0.2.2"]));
    }
    let (status, body) = post(&c, "/v1/undrain?gateway=a");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["in_force"], json!("none"));
    for g in [&a, &b, &c] {
        wait_until(Duration::from_secs(5), || answers(g) == both)
            .unwrap_or_else(|| panic!("the undrain never arrived:\n{}", g.logs()));
    }
}

/// `[health] source_address`: probes of a check connect from the configured address
/// (what gives each replica on one host its own vantage point); a target refusing
/// that address only is DOWN for this replica.
#[test]
fn probes_connect_from_the_source_address() {
    let t = HttpTarget::start("127.0.7.1", Reply::ok());
    let other = HttpTarget::start("127.0.7.2", Reply::ok());
    let cfg = format!(
        r#"[health]
source_address = ["127.0.7.9", "::1"]
[admin]
listen = "127.0.0.1:0"
{ZONE}
[[check]]
name = "hc"
kind = "http"
path = "/hc"
interval = "200ms"
timeout = "150ms"
rise = 1
fall = 1
[[gateway]]
name = "a"
addresses = ["192.0.2.1"]
probe = "{}"
[[gateway]]
name = "b"
addresses = ["192.0.2.2"]
probe = "{}"
[[service]]
name = "app.gslb.test"
answers = 2
check = "hc"
endpoints = [{{ gateway = "a" }}, {{ gateway = "b" }}]
"#,
        t.addr, other.addr
    );
    let g = Gslb::start(&cfg);
    wait_until(Duration::from_secs(5), || {
        t.peers.lock().unwrap().len() >= 2
    })
    .expect("probes arrive");
    let from: BTreeSet<_> = t.peers.lock().unwrap().iter().copied().collect();
    assert_eq!(from, BTreeSet::from(["127.0.7.9".parse().unwrap()]));
    assert_eq!(answers(&g), set(&["192.0.2.1", "192.0.2.2"]));
    t.refuse_from(Some("127.0.7.9".parse().unwrap()));
    wait_until(Duration::from_secs(5), || {
        answers(&g) == set(&["192.0.2.2"])
    })
    .unwrap_or_else(|| panic!("a stayed in:\n{}", g.logs()));
}

/// A replica that was away from the store while a drain was made (here: not running)
/// reads it when it comes back, although its own state file does not hold it: the
/// watch starts from the current value, not from the store's end.
#[test]
fn a_replica_back_from_away_reads_what_changed_meanwhile() {
    if !nats::available() {
        return;
    }
    let store = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = |n: &str| replica_cfg(n, &store.url(), &dir.path().join(format!("{n}.json")));
    let a = Gslb::start(&cfg("ns1"));
    let c = Gslb::start(&cfg("ns3"));
    for g in [&a, &c] {
        wait_until(Duration::from_secs(10), || {
            metric(g, "gslb_cluster_store_up") == 1.0
        })
        .unwrap_or_else(|| panic!("store_up never 1:\n{}", g.logs()));
    }
    drop(c);
    let (status, body) = post(&a, "/v1/drain?gateway=a");
    assert_eq!(status, 200, "{body}");
    let c = Gslb::start(&cfg("ns3"));
    wait_until(Duration::from_secs(5), || {
        answers(&c) == set(&["192.0.2.2"])
    })
    .unwrap_or_else(|| {
        panic!(
            "C never read the drain made while it was away:\n{}",
            c.logs()
        )
    });
}

/// `[cluster] tls_ca_file`: a store that speaks TLS only, with a certificate from our
/// CA, is used (a drain through A reaches B); a replica trusting another CA never
/// talks to it, and its drain is refused with the reason, never applied.
#[test]
fn the_store_over_tls_is_verified() {
    use crate::common::tls::{Ca, Validity};
    if !nats::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("gslb test store CA");
    let leaf = ca.issue(&["127.0.0.1", "localhost"], Validity::current());
    let (cert, key) = (dir.path().join("store.pem"), dir.path().join("store.key"));
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    let store = Nats::start_tls(&cert, &key);
    let ours = ca.write_pem(dir.path(), "ca.pem");
    let theirs = Ca::new("someone else").write_pem(dir.path(), "other.pem");
    let cfg = |n: &str, ca: &std::path::Path| {
        replica_cfg(n, &store.url(), &dir.path().join(format!("{n}.json"))).replace(
            "timeout = \"1s\"",
            &format!("timeout = \"1s\"\ntls_ca_file = \"{}\"", ca.display()),
        )
    };
    let a = Gslb::start(&cfg("ns1", &ours));
    let b = Gslb::start(&cfg("ns2", &ours));
    let stranger = Gslb::start(&cfg("ns3", &theirs));
    for g in [&a, &b] {
        wait_until(Duration::from_secs(10), || {
            metric(g, "gslb_cluster_store_up") == 1.0
        })
        .unwrap_or_else(|| panic!("never reached the TLS store:\n{}", g.logs()));
    }
    let (status, body) = post(&a, "/v1/drain?gateway=a");
    assert_eq!(status, 200, "{body}");
    wait_until(Duration::from_secs(5), || {
        answers(&b) == set(&["192.0.2.2"])
    })
    .unwrap_or_else(|| panic!("B never applied the drain:\n{}", b.logs()));
    // The stranger cannot verify the store: no connection, its drain refused.
    assert_eq!(metric(&stranger, "gslb_cluster_store_up"), 0.0);
    let (status, body) = post(&stranger, "/v1/drain?gateway=b");
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("nothing changed on any replica"),
        "{body}"
    );
    assert_eq!(answers(&stranger), set(&["192.0.2.1", "192.0.2.2"]));
    assert_eq!(answers(&a), set(&["192.0.2.2"]));
}
