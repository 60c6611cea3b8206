//! Faults of the shared store, under load: three real `gslb` replicas answer ~2,000
//! queries a second between them while the store (a real `nats-server`) dies and comes
//! back, or while a 3-node NATS cluster loses a member. Nothing may be lost: every query
//! answered, no endpoint flapping in the answers, a drain refused with a clear error
//! while it cannot be stored, everything converged once the store is back.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

use crate::cluster::{answers, metric, post, set};
use crate::common::nats::{self, Nats};
use crate::common::{Gslb, HttpTarget, Reply, ZONE, a_records, query_msg, wait_until};
use crate::ops::state;
use crate::quorum::probed_gateways;

/// Three gateways with an HTTP check each (targets on `127.0.<net>.1..3`), answers = 3,
/// so every answer holds every gateway in force: any change shows in every reply.
fn replica_cfg(
    n: usize,
    servers: &[String],
    dir: &std::path::Path,
    targets: &[HttpTarget],
    replicas: usize,
) -> String {
    let gateways = probed_gateways(targets);
    let servers: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        r#"[admin]
listen = "127.0.0.1:0"
state_file = "{state}"
[cluster]
name = "ns{n}"
servers = [{servers}]
bucket = "faults"
replicas = {replicas}
heartbeat = "500ms"
timeout = "2s"
{ZONE}
[[check]]
name = "hc"
kind = "http"
path = "/hc"
interval = "300ms"
timeout = "200ms"
rise = 2
fall = 2
{gateways}
[[service]]
name = "app.gslb.test"
answers = 3
check = "hc"
endpoints = [{{ gateway = "g0" }}, {{ gateway = "g1" }}, {{ gateway = "g2" }}]
"#,
        state = dir.join(format!("{n}.json")).display(),
        servers = servers.join(", "),
    )
}

/// One client per replica, each one query at a time, paced so the three together send
/// about `rate` queries a second. Each records every reply that was not a good answer,
/// and every change of the answered set.
struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<thread::JoinHandle<Seen>>,
}

#[derive(Default)]
struct Seen {
    sent: usize,
    problems: Vec<String>,
    /// The answer sets in the order they appeared (consecutive repeats folded).
    sets: Vec<BTreeSet<Ipv4Addr>>,
}

impl Load {
    fn start(replicas: &[Gslb], rate: u32) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let every = Duration::from_secs(1) * replicas.len() as u32 / rate;
        let clients = replicas
            .iter()
            .map(|g| {
                let (stop, addr): (_, SocketAddr) = (stop.clone(), g.addr);
                thread::spawn(move || {
                    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
                    sock.connect(addr).unwrap();
                    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut seen = Seen::default();
                    let mut buf = [0u8; 4096];
                    let mut next = Instant::now();
                    while !stop.load(Ordering::SeqCst) {
                        let q = query_msg("app.gslb.test", RecordType::A, None);
                        sock.send(&q.to_vec().unwrap()).unwrap();
                        seen.sent += 1;
                        match sock.recv(&mut buf) {
                            Err(e) => seen
                                .problems
                                .push(format!("query {}: no reply: {e}", seen.sent)),
                            Ok(n) => match Message::from_vec(&buf[..n]) {
                                Ok(m)
                                    if m.metadata.id == q.metadata.id
                                        && m.metadata.response_code == ResponseCode::NoError
                                        && !m.answers.is_empty() =>
                                {
                                    let got: BTreeSet<Ipv4Addr> =
                                        a_records(&m).into_iter().collect();
                                    if seen.sets.last() != Some(&got) {
                                        seen.sets.push(got);
                                    }
                                }
                                other => seen
                                    .problems
                                    .push(format!("query {}: bad reply {other:?}", seen.sent)),
                            },
                        }
                        next += every;
                        if let Some(wait) = next.checked_duration_since(Instant::now()) {
                            thread::sleep(wait);
                        }
                    }
                    seen
                })
            })
            .collect();
        Load { stop, clients }
    }

    fn finish(self, started: Instant) -> Vec<Seen> {
        self.stop.store(true, Ordering::SeqCst);
        let seen: Vec<Seen> = self
            .clients
            .into_iter()
            .map(|c| c.join().unwrap())
            .collect();
        let sent: usize = seen.iter().map(|s| s.sent).sum();
        let lost: usize = seen.iter().map(|s| s.problems.len()).sum();
        eprintln!(
            "load: {sent} queries in {:.1?} ({:.0} q/s), {lost} not answered correctly",
            started.elapsed(),
            sent as f64 / started.elapsed().as_secs_f64()
        );
        for s in &seen {
            assert!(
                s.problems.is_empty(),
                "{} problems: {:?}",
                s.problems.len(),
                &s.problems[..s.problems.len().min(5)]
            );
        }
        seen
    }
}

fn ips(list: &[&str]) -> BTreeSet<Ipv4Addr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

/// When each probe's verdict last changed, per replica: equal before and after means no
/// verdict flipped meanwhile.
fn verdict_times(replicas: &[Gslb]) -> Vec<Value> {
    replicas
        .iter()
        .map(|g| {
            let st = state(g);
            st["services"][0]["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["probe"]["changed_unix"].clone())
                .collect()
        })
        .collect()
}

fn wait_all(replicas: &[Gslb], within: Duration, what: &str, cond: impl Fn(&Gslb) -> bool) {
    for g in replicas {
        wait_until(within, || cond(g)).unwrap_or_else(|| panic!("{what}:\n{}", g.logs()));
    }
}

fn live(g: &Gslb) -> usize {
    let st = state(g);
    st["cluster"]["live_replicas"]
        .as_array()
        .map_or(0, Vec::len)
}

/// Three replicas (replica `i` given the servers `servers(i)`) over three probed
/// gateways, counting each other, with g0 drained through the first and in force on
/// all. `settle` bounds the wait for them to count each other; `store_logs` is printed
/// when the drain never arrives.
struct Three {
    _dir: tempfile::TempDir,
    _targets: Vec<HttpTarget>,
    replicas: Vec<Gslb>,
    /// `verdict_times` once settled: no verdict may change from here on.
    before: Vec<Value>,
}

fn three_with_g0_drained(
    net: u8,
    servers: impl Fn(usize) -> Vec<String>,
    bucket_replicas: usize,
    settle: Duration,
    store_logs: impl Fn() -> String,
) -> Three {
    let dir = tempfile::tempdir().unwrap();
    let targets: Vec<HttpTarget> = (1..=3)
        .map(|i| HttpTarget::start(&format!("127.0.{net}.{i}"), Reply::ok()))
        .collect();
    let replicas: Vec<Gslb> = (0..3)
        .map(|i| {
            Gslb::start(&replica_cfg(
                i + 1,
                &servers(i),
                dir.path(),
                &targets,
                bucket_replicas,
            ))
        })
        .collect();
    wait_all(&replicas, settle, "never counted the others", |g| {
        live(g) == 2
    });
    // Replicas count each other before the bucket's stream has elected its own leader
    // (a stream of three replicas can take seconds more): until it has, a drain is
    // refused whole, with the reason, and nothing changes. The setup waits that out;
    // any other answer fails at once.
    let started = std::time::Instant::now();
    for refusals in 0.. {
        let (status, body) = post(&replicas[0], "/v1/drain?gateway=g0");
        if status == 200 {
            eprintln!(
                "first drain stored after {refusals} refusals, {:?}",
                started.elapsed()
            );
            break;
        }
        let refused_whole = status == 503
            && body["error"]
                .as_str()
                .is_some_and(|e| e.contains("nothing changed on any replica"));
        assert!(refused_whole, "{status} {body}");
        assert!(
            started.elapsed() < settle,
            "the store refused the first drain for {settle:?}: {body}\nstore:\n{}",
            store_logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for g in &replicas {
        if wait_until(Duration::from_secs(5), || answers(g) == drained()).is_none() {
            panic!(
                "drain never arrived:\n{}\nstore:\n{}",
                g.logs(),
                store_logs()
            );
        }
    }
    let before = verdict_times(&replicas);
    Three {
        _dir: dir,
        _targets: targets,
        replicas,
        before,
    }
}

/// The answers while g0 is drained.
fn drained() -> BTreeSet<String> {
    set(&["192.0.2.2", "192.0.2.3"])
}

#[test]
fn store_outage_under_load_loses_nothing() {
    if !nats::available() {
        return;
    }
    let mut store = Nats::start();
    let url = store.url();
    let t = three_with_g0_drained(
        32,
        |_| vec![url.clone()],
        1,
        Duration::from_secs(10),
        || store.logs(),
    );
    let Three {
        _dir,
        _targets,
        replicas,
        before,
    } = t;
    let drained = drained();

    let started = Instant::now();
    let load = Load::start(&replicas, 2000);
    thread::sleep(Duration::from_secs(1));

    // The store dies: every replica keeps answering, a drain is refused, each replica
    // turns alone (its own verdicts, which agree with everyone's).
    store.kill();
    wait_all(
        &replicas,
        Duration::from_secs(5),
        "never saw the store go",
        |g| metric(g, "gslb_cluster_store_up") == 0.0,
    );
    let (status, body) = post(&replicas[1], "/v1/drain?gateway=g1");
    assert_eq!(status, 503, "{body}");
    let why = body["error"].as_str().unwrap_or_default();
    assert!(why.contains("nothing changed on any replica"), "{why}");
    wait_all(
        &replicas,
        Duration::from_secs(5),
        "never judged alone",
        |g| metric(g, "gslb_cluster_alone") == 1.0,
    );
    thread::sleep(Duration::from_secs(1));

    // The store returns: the replicas reconnect and count each other again, with
    // nothing changed in the answers.
    store.resume();
    let back = Instant::now();
    wait_all(&replicas, Duration::from_secs(15), "never converged", |g| {
        metric(g, "gslb_cluster_store_up") == 1.0
            && metric(g, "gslb_cluster_alone") == 0.0
            && live(g) == 2
    });
    eprintln!(
        "store back: all three replicas combined again after {:?}",
        back.elapsed()
    );
    for g in &replicas {
        assert_eq!(answers(g), drained);
    }
    // An undrain through C reaches everyone.
    let (status, body) = post(&replicas[2], "/v1/undrain?gateway=g0");
    assert_eq!(status, 200, "{body}");
    let all = set(&["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
    wait_all(
        &replicas,
        Duration::from_secs(5),
        "undrain never arrived",
        |g| answers(g) == all,
    );
    thread::sleep(Duration::from_millis(300));

    let seen = load.finish(started);
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(
            s.sets,
            [
                ips(&["192.0.2.2", "192.0.2.3"]),
                ips(&["192.0.2.1", "192.0.2.2", "192.0.2.3"])
            ],
            "replica {i}'s answers changed other than by the undrain"
        );
    }
    assert_eq!(verdict_times(&replicas), before, "a probe verdict flipped");
}

#[test]
fn a_three_node_store_losing_a_member_changes_nothing() {
    if !nats::available() {
        return;
    }
    let mut nodes = Nats::cluster(3);
    let urls: Vec<String> = nodes.iter().map(Nats::url).collect();
    // Each replica lists the nodes in its own order, so they spread over them; the
    // JetStream cluster elects its leaders first, so the replicas get time to settle.
    let t = three_with_g0_drained(
        33,
        |i| {
            let mut mine = urls.clone();
            mine.rotate_left(i);
            mine
        },
        3,
        Duration::from_secs(30),
        || nodes.iter().map(Nats::logs).collect::<Vec<_>>().join("\n"),
    );
    let Three {
        _dir,
        _targets,
        replicas,
        before,
    } = t;

    let started = Instant::now();
    let load = Load::start(&replicas, 2000);
    thread::sleep(Duration::from_millis(500));
    nodes[0].kill();
    let killed = Instant::now();
    // A drain right away: stored at once, or (when the lost node led the bucket's
    // stream, until a new leader is elected) refused with the reason, never half-done.
    let mut refused = Vec::new();
    let stored_after = loop {
        let (status, body) = post(&replicas[1], "/v1/drain?gateway=g1");
        if status == 200 {
            break killed.elapsed();
        }
        assert_eq!(status, 503, "{body}");
        refused.push(body["error"].as_str().unwrap_or_default().to_string());
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "drains refused for 20 s: {refused:?}"
        );
        thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "member killed: a drain was stored {stored_after:?} later, after {} refusals{}",
        refused.len(),
        refused
            .first()
            .map(|r| format!(" (first: {r})"))
            .unwrap_or_default()
    );
    for r in &refused {
        assert!(r.contains("nothing changed on any replica"), "{r}");
    }
    let only = set(&["192.0.2.3"]);
    wait_all(
        &replicas,
        Duration::from_secs(5),
        "drain never arrived",
        |g| answers(g) == only,
    );
    // Verdicts keep flowing: everyone still counts everyone.
    wait_all(
        &replicas,
        Duration::from_secs(10),
        "stopped counting the others",
        |g| live(g) == 2,
    );
    thread::sleep(Duration::from_millis(300));

    let seen = load.finish(started);
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(
            s.sets,
            [ips(&["192.0.2.2", "192.0.2.3"]), ips(&["192.0.2.3"])],
            "replica {i}'s answers changed other than by the drain"
        );
    }
    assert_eq!(verdict_times(&replicas), before, "a probe verdict flipped");
    let recovered = |what: &str| replicas.iter().filter(|g| g.logs().contains(what)).count();
    eprintln!(
        "replicas whose overrides watch missed the change (read instead): {}; whose verdicts watch went deaf (reopened): {}",
        recovered("the watch of the shared overrides missed a change"),
        recovered("the watch of the verdicts stopped delivering")
    );
    let st = state(&replicas[2]);
    assert_eq!(
        st["overrides"]["gateways"],
        json!({"g0": "drain", "g1": "drain"}),
        "{st}"
    );
}
