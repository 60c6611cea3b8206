//! Running it in production: the admin API (liveness, readiness, state, explain,
//! overrides, bearer token), overrides across reloads and restarts, reloads under load,
//! the Prometheus metrics (and `promtool check metrics` on them) and SIGTERM.
//!
//! Probe targets are real servers on 127.0.0.130-127.0.0.180 (this file's range);
//! answer addresses are documentation addresses (192.0.2.x), handed out, never
//! contacted. Admin calls go through a tiny blocking HTTP/1.1 client over std sockets.

use crate::common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

// ------------------------------------------------------------------------- HTTP client

#[derive(Debug)]
pub(crate) struct HttpResp {
    pub(crate) status: u16,
    /// Lower-cased names.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl HttpResp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// One request on a fresh connection (`Connection: close`), read to EOF. `Host` is the
/// address unless `extra` gives one.
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    extra: &[(&str, &str)],
) -> HttpResp {
    // A listener on 0.0.0.0 is reached over loopback.
    let addr = if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
    } else {
        addr
    };
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nConnection: close\r\n");
    if !extra.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    if method != "GET" {
        req.push_str("Content-Length: 0\r\n");
    }
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("{method} {target}: read: {e}"));
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {target}: no header end in {raw:?}"));
    let head = String::from_utf8(raw[..end].to_vec()).unwrap();
    let mut body = raw[end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(
        parts.next(),
        Some("HTTP/1.1"),
        "status line {status_line:?}"
    );
    let status: u16 = parts.next().unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body);
    } else if let Some(len) = find("content-length") {
        assert_eq!(body.len(), len.parse::<usize>().unwrap(), "body length");
    }
    HttpResp {
        status,
        headers,
        body: String::from_utf8(body).expect("UTF-8 body"),
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").expect("chunk size");
        let size_text = std::str::from_utf8(&b[..eol]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        b = &b[eol + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

fn get(admin: SocketAddr, target: &str) -> HttpResp {
    http(admin, "GET", target, &[])
}

fn post(admin: SocketAddr, target: &str) -> HttpResp {
    http(admin, "POST", target, &[])
}

/// A POST that must succeed; returns its JSON.
fn post_ok(admin: SocketAddr, target: &str) -> Value {
    let r = post(admin, target);
    assert_eq!(r.status, 200, "POST {target}: {r:?}");
    r.json()
}

fn get_json(admin: SocketAddr, target: &str) -> Value {
    let r = get(admin, target);
    assert_eq!(r.status, 200, "GET {target}: {r:?}");
    r.json()
}

pub(crate) fn state(g: &Gslb) -> Value {
    get_json(g.admin.expect("admin listener"), "/v1/state")
}

/// The `/v1/state` entry of `gateway` in `service`.
pub(crate) fn endpoint<'a>(state: &'a Value, service: &str, gateway: &str) -> &'a Value {
    let svc = state["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == service)
        .unwrap_or_else(|| panic!("no service {service} in {state:#}"));
    svc["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["gateway"] == gateway)
        .unwrap_or_else(|| panic!("no endpoint {gateway} in {svc:#}"))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

// ----------------------------------------------------------------------------- metrics

type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the text exposition into (name, labels, value); comments skipped.
fn samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').expect("closing brace");
                (name.to_string(), parse_labels(inner))
            }
        };
        out.push((name, labels, value));
    }
    out
}

fn parse_labels(mut s: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    while !s.is_empty() {
        let (k, rest) = s.split_once("=\"").expect("label key");
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().expect("label value end") {
                (i, '"') => break i,
                (_, '\\') => value.push(chars.next().unwrap().1),
                (_, c) => value.push(c),
            }
        };
        m.insert(k.to_string(), value);
        s = rest[end + 1..].trim_start_matches(',');
    }
    m
}

/// The value of the series `name` whose labels are exactly `labels`.
pub(crate) fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples(text)
        .into_iter()
        .find(|(n, l, _)| n == name && *l == want)
        .map(|(_, _, v)| v)
}

/// Sum over the series of `name` that carry (at least) `labels`.
fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text)
        .into_iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

pub(crate) fn scrape(g: &Gslb) -> String {
    let r = get(g.admin.expect("admin listener"), "/metrics");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    r.body
}

// --------------------------------------------------------------------------------- DNS

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn ips(list: &[&str]) -> BTreeSet<Ipv4Addr> {
    list.iter().map(|s| ip(s)).collect()
}

/// One UDP query, no retry: a lost reply fails the test instead of being retried.
fn udp_once(addr: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let msg = query_msg(name, qtype, None);
    let reply = udp_raw(addr, &msg.to_vec().unwrap(), Duration::from_secs(3))
        .unwrap_or_else(|| panic!("no UDP reply for {name} {qtype}"));
    let m = Message::from_vec(&reply).expect("reply parses");
    assert_eq!(m.metadata.id, msg.metadata.id);
    m
}

/// The A set of one answer (NOERROR required).
fn answer_set(g: &Gslb, name: &str) -> BTreeSet<Ipv4Addr> {
    let m = udp_once(g.addr, name, RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
    let v = a_records(&m);
    let s: BTreeSet<Ipv4Addr> = v.iter().copied().collect();
    assert_eq!(s.len(), v.len(), "duplicate address: {v:?}");
    s
}

/// `n` answers for `name`, each of which must be exactly `want`.
fn assert_answers(g: &Gslb, name: &str, want: &[&str], n: usize) {
    let want = ips(want);
    for i in 0..n {
        let got = answer_set(g, name);
        assert_eq!(got, want, "{name}, query {i} of {n}; logs:\n{}", g.logs());
    }
}

fn count_logs(g: &Gslb, needle: &str) -> usize {
    g.logs().matches(needle).count()
}

fn wait_ready(g: &Gslb) {
    let admin = g.admin.unwrap();
    let ok = wait_until(Duration::from_secs(10), || {
        get(admin, "/readyz").status == 200
    });
    assert!(ok.is_some(), "never ready; logs:\n{}", g.logs());
}

// ------------------------------------------------------------------------ slow target

/// An HTTP target that holds its first reply for `first_delay`, then answers 200 at once.
struct SlowFirstTarget {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl SlowFirstTarget {
    fn start(ip: &str, first_delay: Duration) -> SlowFirstTarget {
        let listener = TcpListener::bind((ip.parse::<IpAddr>().unwrap(), 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, st) = (hits.clone(), stop.clone());
        thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let h = h.clone();
                        thread::spawn(move || {
                            s.set_nonblocking(false).unwrap();
                            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                            let mut buf = Vec::new();
                            let mut chunk = [0u8; 1024];
                            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                                match s.read(&mut chunk) {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                                }
                            }
                            if h.fetch_add(1, Ordering::SeqCst) == 0 {
                                thread::sleep(first_delay);
                            }
                            let _ = s.write_all(
                                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                            );
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        SlowFirstTarget { addr, hits, stop }
    }
}

impl Drop for SlowFirstTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

// ------------------------------------------------------------------------------- tests

/// 1. Every admin endpoint: `/livez`, `/readyz` (503 until the first probe round is
///    done, then 200), `/metrics`, `/v1/state`, `/v1/explain`, 404 and 405.
#[test]
fn admin_endpoints_livez_readyz_state_explain_and_errors() {
    const FIRST_DELAY: Duration = Duration::from_secs(2);
    let slow = SlowFirstTarget::start("127.0.0.130", FIRST_DELAY);
    let bad = HttpTarget::start("127.0.0.131", Reply::no_upstreams());
    let cfg = format!(
        r#"[admin]
listen = "127.0.0.1:0"
{ZONE}
[[gateway]]
name = "slow"
addresses = ["192.0.2.130"]
probe = "{slow}"
[[gateway]]
name = "bad"
addresses = ["192.0.2.131"]
probe = "{bad}"
[[gateway]]
name = "p1"
addresses = ["192.0.2.132"]
[[gateway]]
name = "p2"
addresses = ["192.0.2.133", "2001:db8::133"]
[[check]]
name = "hc"
kind = "http"
path = "/hc"
interval = "3s"
timeout = "2500ms"
jitter = "0s"
rise = 1
fall = 1
[[service]]
name = "app.gslb.test"
check = "hc"
endpoints = [{{ gateway = "slow", weight = 3 }}, {{ gateway = "bad", weight = 1 }}]
[[service]]
name = "mix.gslb.test"
endpoints = [{{ gateway = "p1", weight = 3 }}, {{ gateway = "p2", weight = 1 }}]
"#,
        slow = slow.addr,
        bad = bad.addr
    );
    let t_spawn = Instant::now();
    let unix_spawn = unix_now();
    let g = Gslb::start(&cfg);
    let admin = g.admin.expect("admin listener");

    // Liveness: always 200.
    let r = get(admin, "/livez");
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"), "{r:?}");

    // Readiness: the slow target holds its first reply for FIRST_DELAY, so the first
    // probe round cannot be over yet.
    let r = get(admin, "/readyz");
    let at = t_spawn.elapsed();
    assert_eq!(r.status, 503, "readyz {at:?} after spawn: {r:?}");
    assert!(
        r.body
            .starts_with("not ready: first probe round not finished (")
            && r.body.ends_with(" of 2 targets pending)\n"),
        "{r:?}"
    );
    assert_eq!(state(&g)["ready"], false);
    let mut saw_503 = 1;
    let ready_at = loop {
        let r = get(admin, "/readyz");
        match r.status {
            200 => {
                assert_eq!(r.body, "ready\n");
                break t_spawn.elapsed();
            }
            503 => saw_503 += 1,
            other => panic!("readyz {other}: {r:?}"),
        }
        assert!(
            t_spawn.elapsed() < Duration::from_secs(10),
            "never ready; logs:\n{}",
            g.logs()
        );
        thread::sleep(Duration::from_millis(50));
    };
    eprintln!("readyz: 503 ×{saw_503}, then 200 at {ready_at:?} after spawn");
    assert!(ready_at >= FIRST_DELAY, "ready at {ready_at:?}");
    assert!(
        ready_at < FIRST_DELAY + Duration::from_millis(1500),
        "ready at {ready_at:?}"
    );
    assert!(slow.hits.load(Ordering::SeqCst) >= 1);
    for _ in 0..3 {
        assert_eq!(get(admin, "/readyz").status, 200, "readiness went back");
    }

    // /metrics answers with the text format.
    let m = scrape(&g);
    assert!(m.contains("# TYPE gslb_dns_requests_total counter"), "{m}");

    // /v1/state: every endpoint of every service.
    let st = state(&g);
    let now = unix_now();
    assert_eq!(st["ready"], true);
    assert_eq!(st["config"], g.config_path.display().to_string());
    assert_eq!(st["overrides"], json!({"gateways": {}, "endpoints": {}}));
    let names: Vec<&str> = st["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app.gslb.test.", "mix.gslb.test."]);
    let svc_app = &st["services"][0];
    assert_eq!(svc_app["endpoints"].as_array().unwrap().len(), 2);
    assert_eq!(svc_app["decision_v4"], "Healthy");

    let e = endpoint(&st, "app.gslb.test.", "slow");
    assert_eq!(e["health"], "up", "{e:#}");
    assert_eq!(e["admin"], Value::Null);
    assert_eq!(e["ready"], true);
    assert_eq!(e["weight"], 3);
    assert_eq!(e["effective_weight"], 3);
    assert_eq!(e["addresses"], json!(["192.0.2.130"]));
    assert_eq!(e["probe"]["target"], slow.addr.to_string());
    assert_eq!(e["probe"]["check"], "hc");
    assert_eq!(e["probe"]["up"], true);
    assert_eq!(e["probe"]["last_result"], "ok");
    assert!(
        e["probe"]["last_duration_seconds"].as_f64().unwrap() > 0.0,
        "{e:#}"
    );
    assert!(
        e["probe"]["last_probe_unix"].as_f64().unwrap() <= now,
        "{e:#}"
    );
    // Never flipped: changed_unix is when the target was first seen.
    let changed = e["probe"]["changed_unix"].as_f64().unwrap();
    assert!(changed >= unix_spawn - 0.5 && changed <= now, "{e:#}");

    let e = endpoint(&st, "app.gslb.test.", "bad");
    assert_eq!(e["health"], "down", "{e:#}");
    assert_eq!(e["admin"], Value::Null);
    assert_eq!(e["ready"], false);
    assert_eq!(e["weight"], 1);
    assert_eq!(e["effective_weight"], 0);
    assert_eq!(e["probe"]["up"], false);
    assert_eq!(
        e["probe"]["last_result"],
        r#"http 503 "no healthy upstreams""#
    );
    let changed = e["probe"]["changed_unix"].as_f64().unwrap();
    let last = e["probe"]["last_probe_unix"].as_f64().unwrap();
    assert!(
        changed >= unix_spawn && changed <= last && last <= now,
        "{e:#}"
    );

    let e = endpoint(&st, "mix.gslb.test.", "p1");
    assert_eq!(e["health"], "unchecked");
    assert_eq!(e["probe"], Value::Null);
    assert_eq!(e["effective_weight"], 3);
    let e = endpoint(&st, "mix.gslb.test.", "p2");
    assert_eq!(e["health"], "unchecked");
    assert_eq!(e["effective_weight"], 1);
    assert_eq!(e["addresses"], json!(["192.0.2.133", "2001:db8::133"]));

    // DNS agrees: only the healthy endpoint is answered.
    assert_answers(&g, "app.gslb.test", &["192.0.2.130"], 20);

    // /v1/explain: the decision trace.
    let x = get_json(admin, "/v1/explain?name=APP.gslb.test&client=198.51.100.7");
    assert_eq!(x["name"], "app.gslb.test.");
    assert_eq!(x["client"], "198.51.100.7");
    assert_eq!(x["ecs"], Value::Null);
    let v = &x["verdict"];
    assert_eq!(v["result"], "service", "{x:#}");
    assert_eq!(v["zone"], "gslb.test.");
    assert_eq!(v["service"], "app.gslb.test.");
    assert_eq!(v["ttl"], 30);
    assert_eq!(v["answers_per_response"], 1);
    let eps: Vec<(String, String, u64, bool)> = v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["gateway"].as_str().unwrap().to_string(),
                e["health"].as_str().unwrap().to_string(),
                e["weight"].as_u64().unwrap(),
                e["ready"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        eps,
        [
            ("slow".to_string(), "up".to_string(), 3, true),
            ("bad".to_string(), "down".to_string(), 1, false)
        ]
    );
    assert_eq!(v["families"][0]["qtype"], "A");
    assert_eq!(v["families"][0]["decision"], "Healthy");
    assert_eq!(
        v["families"][0]["candidates"],
        json!([{"gateway": "slow", "region": null, "weight": 3, "share": 1.0}])
    );
    assert_eq!(v["families"][1]["qtype"], "AAAA");
    assert_eq!(v["families"][1]["decision"], "NoAddresses");
    assert_eq!(v["families"][1]["candidates"], json!([]));

    let x = get_json(admin, "/v1/explain?name=mix.gslb.test&client=2001:db8::1");
    assert_eq!(x["client"], "2001:db8::1");
    let f = &x["verdict"]["families"];
    assert_eq!(
        f[0]["candidates"],
        json!([
            {"gateway": "p1", "region": null, "weight": 3, "share": 0.75},
            {"gateway": "p2", "region": null, "weight": 1, "share": 0.25}
        ])
    );
    assert_eq!(
        f[1]["candidates"],
        json!([{"gateway": "p2", "region": null, "weight": 1, "share": 1.0}])
    );
    // Without ?client= the caller's address is used; ECS is echoed.
    let x = get_json(admin, "/v1/explain?name=mix.gslb.test&ecs=203.0.113.0%2F24");
    assert_eq!(x["client"], "127.0.0.1");
    assert_eq!(x["ecs"], "203.0.113.0/24");
    let x = get_json(admin, "/v1/explain?name=nope.gslb.test");
    assert_eq!(
        x["verdict"],
        json!({"result": "NXDOMAIN", "zone": "gslb.test."})
    );
    let x = get_json(admin, "/v1/explain?name=example.com");
    assert_eq!(x["verdict"]["result"], "REFUSED");
    for bad_req in [
        "/v1/explain",
        "/v1/explain?name=app.gslb.test&client=not-an-ip",
        "/v1/explain?name=app.gslb.test&ecs=203.0.113.1%2F24",
    ] {
        let r = get(admin, bad_req);
        assert_eq!(r.status, 400, "{bad_req}: {r:?}");
        assert!(r.json()["error"].is_string());
    }

    // Unknown path: 404; wrong method: 405 (and nothing happens).
    for path in ["/", "/nope", "/v1/states", "/metrics/x"] {
        let r = get(admin, path);
        assert_eq!(r.status, 404, "{path}: {r:?}");
        assert_eq!(r.json(), json!({"error": "no such endpoint"}));
    }
    for (method, path, want) in [
        ("POST", "/livez", "use GET"),
        ("POST", "/readyz", "use GET"),
        ("PUT", "/v1/state", "use GET"),
        ("DELETE", "/metrics", "use GET"),
        ("POST", "/v1/explain?name=app.gslb.test", "use GET"),
        ("GET", "/v1/drain?gateway=slow", "use POST"),
        ("GET", "/v1/force-down?gateway=slow", "use POST"),
        ("PUT", "/v1/undrain?gateway=slow", "use POST"),
    ] {
        let r = http(admin, method, path, &[]);
        assert_eq!(r.status, 405, "{method} {path}: {r:?}");
        assert_eq!(r.json(), json!({ "error": want }));
    }
    assert_eq!(
        state(&g)["overrides"],
        json!({"gateways": {}, "endpoints": {}})
    );
    assert_answers(&g, "app.gslb.test", &["192.0.2.130"], 5);
}

/// 2. Drain, undrain, endpoint-scoped drain, force-down, force-up, unknown names.
#[test]
fn drain_undrain_and_forced_states() {
    let ta = HttpTarget::start("127.0.0.135", Reply::ok());
    let tb = HttpTarget::start("127.0.0.136", Reply::ok());
    let tc = HttpTarget::start("127.0.0.137", Reply::no_upstreams());
    let cfg = format!(
        r#"[admin]
listen = "127.0.0.1:0"
state_file = "state.json"
{ZONE}
[[gateway]]
name = "a"
addresses = ["192.0.2.1"]
probe = "{ta}"
[[gateway]]
name = "b"
addresses = ["192.0.2.2"]
probe = "{tb}"
[[gateway]]
name = "c"
addresses = ["192.0.2.3"]
probe = "{tc}"
[[check]]
name = "hc"
kind = "http"
path = "/hc"
interval = "300ms"
timeout = "200ms"
rise = 1
fall = 1
[[service]]
name = "one.gslb.test"
check = "hc"
answers = 3
endpoints = [{{ gateway = "a" }}, {{ gateway = "b" }}]
[[service]]
name = "two.gslb.test"
check = "hc"
answers = 3
endpoints = [{{ gateway = "a" }}, {{ gateway = "b" }}]
[[service]]
name = "three.gslb.test"
check = "hc"
answers = 3
endpoints = [{{ gateway = "a" }}, {{ gateway = "c" }}]
"#,
        ta = ta.addr,
        tb = tb.addr,
        tc = tc.addr
    );
    let g = Gslb::start(&cfg);
    let admin = g.admin.unwrap();
    wait_ready(&g);
    // answers = 3 ≥ every pool: each answer holds every candidate, so one answer shows
    // the whole set; many queries make sure no draw ever brings a drained one back.
    let ok = wait_until(Duration::from_secs(5), || {
        answer_set(&g, "three.gslb.test") == ips(&["192.0.2.1"])
    });
    assert!(ok.is_some(), "c never went down; logs:\n{}", g.logs());
    const N: usize = 40;
    let baseline = |g: &Gslb| {
        assert_answers(g, "one.gslb.test", &["192.0.2.1", "192.0.2.2"], N);
        assert_answers(g, "two.gslb.test", &["192.0.2.1", "192.0.2.2"], N);
        assert_answers(g, "three.gslb.test", &["192.0.2.1"], N);
    };
    baseline(&g);
    // The state file lives next to the config (relative path) and mirrors overrides.
    let state_file = g.dir.path().join("state.json");
    let file_overrides = || -> Value {
        serde_json::from_str(&std::fs::read_to_string(&state_file).expect("state file"))
            .expect("state file is JSON")
    };
    let check_overrides = |want: Value| {
        assert_eq!(state(&g)["overrides"], want);
        assert_eq!(file_overrides(), want);
    };

    // Gateway drain: a leaves every service that uses it.
    let r = post_ok(admin, "/v1/drain?gateway=a");
    assert_eq!(
        r,
        json!({"ok": true, "scope": {"gateway": "a"}, "state": "drain", "in_force": "drain"})
    );
    assert_answers(&g, "one.gslb.test", &["192.0.2.2"], N);
    assert_answers(&g, "two.gslb.test", &["192.0.2.2"], N);
    // three: a drained, c down: fail-open, but drained endpoints stay out even then.
    assert_answers(&g, "three.gslb.test", &["192.0.2.3"], N);
    let st = state(&g);
    for svc in ["one.gslb.test.", "two.gslb.test.", "three.gslb.test."] {
        let e = endpoint(&st, svc, "a");
        assert_eq!(e["admin"], "drain", "{svc}: {e:#}");
        assert_eq!(e["health"], "up", "{svc}: {e:#}");
        assert_eq!(e["ready"], false);
        assert_eq!(e["effective_weight"], 0);
    }
    assert_eq!(endpoint(&st, "one.gslb.test.", "b")["effective_weight"], 1);
    check_overrides(json!({"gateways": {"a": "drain"}, "endpoints": {}}));
    let x = get_json(admin, "/v1/explain?name=one.gslb.test&client=192.0.2.99");
    assert_eq!(x["verdict"]["endpoints"][0]["admin"], "drain");
    assert_eq!(x["verdict"]["endpoints"][0]["ready"], false);
    assert_eq!(
        x["verdict"]["families"][0]["candidates"],
        json!([{"gateway": "b", "region": null, "weight": 1, "share": 1.0}])
    );
    // Draining twice is fine.
    post_ok(admin, "/v1/drain?gateway=a");

    // Undrain brings it back everywhere.
    let r = post_ok(admin, "/v1/undrain?gateway=a");
    assert_eq!(
        r,
        json!({"ok": true, "scope": {"gateway": "a"}, "state": "none", "in_force": "none"})
    );
    baseline(&g);
    check_overrides(json!({"gateways": {}, "endpoints": {}}));

    // Endpoint drain: only that service.
    let r = post_ok(admin, "/v1/drain?service=one.gslb.test&gateway=a");
    assert_eq!(
        r,
        json!({"ok": true, "scope": {"service": "one.gslb.test.", "gateway": "a"}, "state": "drain", "in_force": "drain"})
    );
    assert_answers(&g, "one.gslb.test", &["192.0.2.2"], N);
    assert_answers(&g, "two.gslb.test", &["192.0.2.1", "192.0.2.2"], N);
    assert_answers(&g, "three.gslb.test", &["192.0.2.1"], N);
    check_overrides(json!({"gateways": {}, "endpoints": {"one.gslb.test.": {"a": "drain"}}}));
    post_ok(admin, "/v1/undrain?service=one.gslb.test.&gateway=a");
    baseline(&g);
    check_overrides(json!({"gateways": {}, "endpoints": {}}));

    // Undraining one endpoint of a drained gateway: the reply says what is in force,
    // and the endpoint stays out.
    post_ok(admin, "/v1/drain?gateway=a");
    let r = post_ok(admin, "/v1/undrain?service=one.gslb.test&gateway=a");
    assert_eq!(r["state"], "none", "{r}");
    assert_eq!(r["in_force"], "drain", "{r}");
    assert!(
        r["note"]
            .as_str()
            .is_some_and(|n| n.contains("gateway a is drain as a whole")),
        "{r}"
    );
    assert_answers(&g, "one.gslb.test", &["192.0.2.2"], N);
    // And a gateway call lists the endpoint overrides that still beat it.
    post_ok(admin, "/v1/force-down?service=two.gslb.test&gateway=a");
    let r = post_ok(admin, "/v1/undrain?gateway=a");
    assert_eq!(r["in_force"], "none", "{r}");
    assert_eq!(
        r["endpoint_overrides"],
        json!({"two.gslb.test.": "force_down"}),
        "{r}"
    );
    post_ok(admin, "/v1/undrain?service=two.gslb.test&gateway=a");
    baseline(&g);
    check_overrides(json!({"gateways": {}, "endpoints": {}}));

    // Force-down takes a healthy endpoint out.
    post_ok(admin, "/v1/force-down?gateway=b");
    assert_answers(&g, "one.gslb.test", &["192.0.2.1"], N);
    assert_answers(&g, "two.gslb.test", &["192.0.2.1"], N);
    let st = state(&g);
    let e = endpoint(&st, "two.gslb.test.", "b");
    assert_eq!(
        (
            &e["health"],
            &e["admin"],
            &e["ready"],
            &e["effective_weight"]
        ),
        (&json!("up"), &json!("force_down"), &json!(false), &json!(0))
    );
    post_ok(admin, "/v1/undrain?gateway=b");
    baseline(&g);

    // Force-up keeps an endpoint whose probe fails.
    assert!(tc.hits.load(Ordering::SeqCst) > 0);
    post_ok(admin, "/v1/force-up?service=three.gslb.test&gateway=c");
    assert_answers(&g, "three.gslb.test", &["192.0.2.1", "192.0.2.3"], N);
    let st = state(&g);
    let e = endpoint(&st, "three.gslb.test.", "c");
    assert_eq!(
        (
            &e["health"],
            &e["admin"],
            &e["ready"],
            &e["effective_weight"]
        ),
        (&json!("down"), &json!("force_up"), &json!(true), &json!(1))
    );
    assert_eq!(
        e["probe"]["last_result"],
        r#"http 503 "no healthy upstreams""#
    );
    // It stays in while its probes keep failing (several more intervals).
    let hits = tc.hits.load(Ordering::SeqCst);
    thread::sleep(Duration::from_millis(700));
    assert!(
        tc.hits.load(Ordering::SeqCst) >= hits + 2,
        "c is still probed"
    );
    assert_answers(&g, "three.gslb.test", &["192.0.2.1", "192.0.2.3"], N);
    check_overrides(json!({"gateways": {}, "endpoints": {"three.gslb.test.": {"c": "force_up"}}}));
    post_ok(admin, "/v1/undrain?service=three.gslb.test&gateway=c");
    baseline(&g);

    // Unknown names: 404, and nothing changes.
    post_ok(admin, "/v1/drain?gateway=b");
    for (target, msg) in [
        ("/v1/drain?gateway=zzz", r#"unknown gateway "zzz""#),
        ("/v1/force-down?gateway=zzz", r#"unknown gateway "zzz""#),
        (
            "/v1/drain?service=nope.gslb.test&gateway=a",
            r#"unknown service "nope.gslb.test.""#,
        ),
        (
            "/v1/force-up?service=three.gslb.test&gateway=b",
            r#"service three.gslb.test. has no endpoint on gateway "b""#,
        ),
    ] {
        let r = post(admin, target);
        assert_eq!(r.status, 404, "{target}: {r:?}");
        assert_eq!(r.json(), json!({ "error": msg }), "{target}");
    }
    let r = post(admin, "/v1/drain");
    assert_eq!(r.status, 400, "{r:?}");
    let r = post(admin, "/v1/drain?service=one.gslb.test");
    assert_eq!(r.status, 400, "{r:?}");
    check_overrides(json!({"gateways": {"b": "drain"}, "endpoints": {}}));
    assert_answers(&g, "one.gslb.test", &["192.0.2.1"], N);
    post_ok(admin, "/v1/undrain?gateway=b");
    baseline(&g);
    check_overrides(json!({"gateways": {}, "endpoints": {}}));
    assert!(
        g.logs().contains("admin override applied"),
        "mutating calls are logged"
    );
}

/// 3. Overrides survive a reload (SIGHUP) and a restart (state file).
#[test]
fn overrides_survive_reload_and_restart() {
    let keep = tempfile::tempdir().unwrap();
    let state_path = keep.path().join("overrides.json");
    let cfg = |ttl: u32| {
        format!(
            r#"[admin]
listen = "127.0.0.1:0"
state_file = "{}"
{ZONE}
[[gateway]]
name = "a"
addresses = ["192.0.2.1"]
[[gateway]]
name = "b"
addresses = ["192.0.2.2"]
[[gateway]]
name = "c"
addresses = ["192.0.2.3"]
[[service]]
name = "one.gslb.test"
ttl = "{ttl}s"
answers = 3
endpoints = [{{ gateway = "a" }}, {{ gateway = "b" }}]
[[service]]
name = "two.gslb.test"
ttl = "{ttl}s"
answers = 3
endpoints = [{{ gateway = "a" }}, {{ gateway = "b" }}, {{ gateway = "c" }}]
"#,
            state_path.display()
        )
    };
    let g = Gslb::start(&cfg(30));
    let admin = g.admin.unwrap();
    assert_answers(&g, "one.gslb.test", &["192.0.2.1", "192.0.2.2"], 5);
    assert!(!state_path.exists(), "no state file before any override");
    post_ok(admin, "/v1/drain?gateway=a");
    post_ok(admin, "/v1/drain?service=two.gslb.test&gateway=c");
    let want = json!({"gateways": {"a": "drain"}, "endpoints": {"two.gslb.test.": {"c": "drain"}}});
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    assert_eq!(on_disk, want);
    assert_answers(&g, "one.gslb.test", &["192.0.2.2"], 20);
    assert_answers(&g, "two.gslb.test", &["192.0.2.2"], 20);

    // Reload with another TTL: the TTL changes, the overrides stay.
    std::fs::write(&g.config_path, cfg(60)).unwrap();
    g.signal("HUP");
    g.wait_log(
        &format!("configuration reloaded from {}", g.config_path.display()),
        Duration::from_secs(5),
    );
    let m = udp_once(g.addr, "one.gslb.test", RecordType::A);
    assert_eq!(m.answers[0].ttl, 60, "the reload applied");
    assert_answers(&g, "one.gslb.test", &["192.0.2.2"], 20);
    assert_answers(&g, "two.gslb.test", &["192.0.2.2"], 20);
    assert_eq!(state(&g)["overrides"], want);

    // Restart: SIGKILL (no chance to save anything on the way out), then a new process
    // on the same config text and state file. Its very first answers honour the drain.
    let text = std::fs::read_to_string(&g.config_path).unwrap();
    drop(g);
    let g2 = Gslb::start(&text);
    assert_eq!(answer_set(&g2, "one.gslb.test"), ips(&["192.0.2.2"]));
    assert_eq!(answer_set(&g2, "two.gslb.test"), ips(&["192.0.2.2"]));
    assert_answers(&g2, "one.gslb.test", &["192.0.2.2"], 20);
    assert_answers(&g2, "two.gslb.test", &["192.0.2.2"], 20);
    assert_eq!(state(&g2)["overrides"], want);
    // And the restarted process can undo them.
    post_ok(g2.admin.unwrap(), "/v1/undrain?gateway=a");
    assert_answers(&g2, "one.gslb.test", &["192.0.2.1", "192.0.2.2"], 5);
    assert_answers(&g2, "two.gslb.test", &["192.0.2.1", "192.0.2.2"], 5);
}

/// 4. With a token, every admin call but /livez and /readyz needs it (the scheme in any
///    case); a `Host` that names another site is refused (DNS rebinding); refusals are
///    logged at most once a second. `gslb check` refuses a non-loopback listener without
///    a token, a token under 16 bytes, and `token` with `token_file`; it reads
///    `token_file`.
#[test]
fn bearer_token_guards_the_admin_api() {
    const TOKEN: &str = "s3cret-admin-token";
    let cfg = format!(
        r#"[admin]
listen = "0.0.0.0:0"
token = "{TOKEN}"
hosts = ["gslb-admin.internal"]
{ZONE}
{TWO_GATEWAYS}"#
    );
    let g = Gslb::start(&cfg);
    let admin = g.admin.unwrap();
    assert!(admin.ip().is_unspecified(), "{admin}");
    let auth = format!("Bearer {TOKEN}");
    let with_token = [("Authorization", auth.as_str())];
    let state = || {
        let r = http(admin, "GET", "/v1/state", &with_token);
        assert_eq!(r.status, 200, "{r:?}");
        r.json()
    };
    let none = json!({"gateways": {}, "endpoints": {}});
    let refused = json!({"error": "this call needs Authorization: Bearer <token>"});
    let short = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
    let long = format!("Bearer {TOKEN}2");
    let basic = format!("Basic {TOKEN}");
    for headers in [
        vec![],
        vec![("Authorization", "Bearer wrong")],
        vec![("Authorization", short.as_str())],
        vec![("Authorization", long.as_str())],
        vec![("Authorization", basic.as_str())],
        vec![("Authorization", TOKEN)],
        vec![("X-Token", TOKEN)],
    ] {
        let r = http(admin, "POST", "/v1/drain?gateway=a", &headers);
        assert_eq!(r.status, 401, "{headers:?}: {r:?}");
        assert_eq!(r.json(), refused);
        assert_eq!(state()["overrides"], none, "{headers:?}");
    }
    assert_answers(&g, "app.gslb.test", &["192.0.2.1", "192.0.2.2"], 5);
    assert!(
        g.logs()
            .contains("admin call refused: missing or wrong bearer token")
    );

    // The scheme is case-insensitive (RFC 9110 §11.1).
    let lower = format!("bearer {TOKEN}");
    let r = http(
        admin,
        "POST",
        "/v1/drain?gateway=a",
        &[("Authorization", lower.as_str())],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        state()["overrides"],
        json!({"gateways": {"a": "drain"}, "endpoints": {}})
    );
    assert_answers(&g, "app.gslb.test", &["192.0.2.2"], 10);
    let r = post(admin, "/v1/undrain?gateway=a");
    assert_eq!(r.status, 401, "undrain needs the token too: {r:?}");
    assert_answers(&g, "app.gslb.test", &["192.0.2.2"], 5);

    // Reads need it too, except the probes of liveness and readiness.
    for path in ["/livez", "/readyz"] {
        assert_eq!(get(admin, path).status, 200, "{path}");
    }
    for path in ["/metrics", "/v1/state", "/v1/explain?name=app.gslb.test"] {
        let r = get(admin, path);
        assert_eq!(r.status, 401, "{path}: {r:?}");
        assert_eq!(r.json(), refused, "{path}");
        assert_eq!(http(admin, "GET", path, &with_token).status, 200, "{path}");
    }

    // Host must name the listener: an address, localhost, or a configured name.
    for host in ["127.0.0.1:9", "localhost", "gslb-admin.internal:1234"] {
        let r = http(admin, "GET", "/readyz", &[("Host", host)]);
        assert_eq!(r.status, 200, "{host}: {r:?}");
    }
    for host in ["evil.example", "evil.example:80", "localhost.evil.example"] {
        for (method, path) in [
            ("GET", "/livez"),
            ("GET", "/v1/state"),
            ("POST", "/v1/undrain?gateway=a"),
        ] {
            let mut h = vec![("Host", host)];
            h.extend(with_token);
            let r = http(admin, method, path, &h);
            assert_eq!(r.status, 403, "{host} {path}: {r:?}");
        }
    }
    assert_answers(&g, "app.gslb.test", &["192.0.2.2"], 5);

    // A flood of refused calls is logged at most about once a second.
    let before = g.logs().matches("admin call refused").count();
    let t0 = Instant::now();
    for _ in 0..100 {
        assert_eq!(get(admin, "/metrics").status, 401);
    }
    let lines = g.logs().matches("admin call refused").count() - before;
    let allowed = 2 + t0.elapsed().as_secs() as usize;
    assert!(
        lines <= allowed,
        "{lines} log lines for 100 refusals in {:?}",
        t0.elapsed()
    );

    // gslb check: non-loopback without a token is an error with a location.
    let base = |admin: &str| format!("{admin}\n{ZONE}");
    let (ok, out, path) = check_config(&base("[admin]\nlisten = \"0.0.0.0:9100\""));
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "{}:2:10: an admin listener that is not on loopback needs a token",
            path.display()
        )),
        "{out}"
    );
    let (ok, out, _) = check_config(&base(
        "[admin]\nlisten = \"192.0.2.1:9100\"\ntoken = \"  \"",
    ));
    assert!(!ok && out.contains("needs a token"), "blank token: {out}");
    let (ok, out, path) = check_config(&base("[admin]\nlisten = \"[::]:9100\"\ntoken = \"t\""));
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "{}:3:9: the admin token must be at least 16 bytes (it has 1)",
            path.display()
        )),
        "{out}"
    );
    let (ok, out, _) = check_config(&base(&format!(
        "[admin]\nlisten = \"[::]:9100\"\ntoken = \"{TOKEN}\""
    )));
    assert!(ok, "{out}");
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let (ok, out, _) = check_config(&base(&format!(
        "[admin]\nlisten = \"[::]:9100\"\ntoken_file = {:?}",
        token_file.display().to_string()
    )));
    assert!(ok, "token_file: {out}");
    let (ok, out, _) = check_config(&base(&format!(
        "[admin]\nlisten = \"[::]:9100\"\ntoken = \"{TOKEN}\"\ntoken_file = {:?}",
        token_file.display().to_string()
    )));
    assert!(
        !ok && out.contains("give token or token_file, not both"),
        "{out}"
    );
    let (ok, out, _) = check_config(&base(
        "[admin]\nlisten = \"[::]:9100\"\ntoken_file = \"/nonexistent/admin.token\"",
    ));
    assert!(
        !ok && out.contains("cannot read token_file /nonexistent/admin.token"),
        "{out}"
    );
    let (ok, out, _) = check_config(&base("[admin]\nlisten = \"127.0.0.1:9100\""));
    assert!(ok, "loopback needs no token: {out}");
    let (ok, out, _) = check_config(&base("[admin]\nlisten = \"[::1]:9100\""));
    assert!(ok, "loopback needs no token: {out}");
}

/// Two unchecked gateways, a and b, both in the answers of app.gslb.test.
const TWO_GATEWAYS: &str = r#"[[gateway]]
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

/// An override that cannot be saved to `state_file` is refused (500, with the reason)
/// and changes nothing: it would be lost at the next restart. Once the file can be
/// written again, the same call succeeds and is on disk.
#[test]
fn an_override_that_cannot_be_saved_is_refused() {
    let cfg = format!(
        r#"[admin]
listen = "127.0.0.1:0"
state_file = "gone/state.json"
{ZONE}
{TWO_GATEWAYS}"#
    );
    let g = Gslb::start(&cfg);
    let admin = g.admin.unwrap();
    let r = post(admin, "/v1/drain?gateway=a");
    assert_eq!(r.status, 500, "{r:?}");
    let why = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(
        why.contains("cannot save state file") && why.contains("nothing changed"),
        "{why}"
    );
    assert_eq!(
        state(&g)["overrides"],
        json!({"gateways": {}, "endpoints": {}})
    );
    assert_answers(&g, "app.gslb.test", &["192.0.2.1", "192.0.2.2"], 5);
    assert!(g.logs().contains("cannot save state file"), "{}", g.logs());

    std::fs::create_dir(g.dir.path().join("gone")).unwrap();
    post_ok(admin, "/v1/drain?gateway=a");
    assert_answers(&g, "app.gslb.test", &["192.0.2.2"], 5);
    let saved: Value = serde_json::from_str(
        &std::fs::read_to_string(g.dir.path().join("gone/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(saved, json!({"gateways": {"a": "drain"}, "endpoints": {}}));
}

/// An empty, corrupt or newer-format state file: `gslb check` fails with the file's
/// line and column, and `serve` refuses to start rather than serve without the drains
/// it may hold (a drain keeps traffic off a gateway under maintenance). A state file
/// that cannot be written is a warning from `gslb check`.
#[test]
fn unreadable_state_files_stop_check_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gslb.toml");
    std::fs::write(
        &cfg,
        format!("[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\nstate_file = \"state.json\"\n{ZONE}"),
    )
    .unwrap();
    let state = dir.path().join("state.json");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(crate::common::BIN)
            .args(args)
            .arg("-c")
            .arg(&cfg)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    for (what, content, located) in [
        (
            "empty",
            "",
            format!("{}: state file: the file is empty", state.display()),
        ),
        (
            "corrupt",
            "{\"gateways\": {\"a\": \"dra",
            format!("{}:1:", state.display()),
        ),
        (
            "newer format",
            "{\"gateways\": {},\n \"version\": 2}",
            format!("{}:2:", state.display()),
        ),
    ] {
        std::fs::write(&state, content).unwrap();
        let (code, out) = run(&["check"]);
        assert_eq!(code, Some(1), "{what}: {out}");
        assert!(out.contains(&located), "{what}: want {located:?} in {out}");
        let (code, out) = run(&["serve"]);
        assert_ne!(code, Some(0), "{what}: serve must not start: {out}");
        assert!(
            out.contains("not serving without the drains it may hold")
                && !out.contains("gslb: listening on"),
            "{what}: {out}"
        );
        // The file is left as it was, for the operator to restore.
        assert_eq!(std::fs::read_to_string(&state).unwrap(), content);
    }
    std::fs::write(&state, "{\"gateways\": {\"a\": \"drain\"}}").unwrap();
    let (code, out) = run(&["check"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("warning"), "{out}");
    // A directory that is not there: saves would fail, so check warns.
    std::fs::write(
        &cfg,
        format!("[admin]\nlisten = \"127.0.0.1:0\"\nstate_file = \"gone/state.json\"\n{ZONE}"),
    )
    .unwrap();
    let (code, out) = run(&["check"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("warning: state_file") && out.contains("gone/state.json cannot be written"),
        "{out}"
    );
}

/// The status of `GET path` over a connection from `from`, or `None` when the server
/// closed it without a reply.
fn get_from(from: &str, to: SocketAddr, path: &str) -> Option<u16> {
    let mut s = connect_from(from, to);
    let req = format!("GET {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return None;
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let head = String::from_utf8_lossy(&raw);
    head.split(' ').nth(1).and_then(|c| c.parse().ok())
}

/// A kept-alive connection from `from` on which the server answered `GET /livez`: it
/// holds an admin slot for as long as it stays open. `None` when the server closed it.
fn hold_from(from: &str, to: SocketAddr) -> Option<TcpStream> {
    let mut s = connect_from(from, to);
    let req = format!("GET /livez HTTP/1.1\r\nHost: {to}\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if raw.len() >= end + 4 + len {
                assert!(text.starts_with("http/1.1 200"), "{text}");
                return Some(s);
            }
        }
    }
}

/// One address holds at most 16 admin connections: a client holding them all cannot
/// lock another client out of /metrics, and it gets its slots back when it lets go.
/// Each held connection is proven to hold its slot (the server answered on it and keeps
/// it open), so the 17th is refused at once, with no waiting.
#[test]
fn one_peer_cannot_take_every_admin_connection() {
    let g = Gslb::start(&format!("[admin]\nlisten = \"127.0.0.1:0\"\n{ZONE}"));
    let admin = g.admin.unwrap();
    let held: Vec<TcpStream> = (0..16)
        .map(|i| {
            hold_from("127.0.0.170", admin).unwrap_or_else(|| panic!("connection {i} refused"))
        })
        .collect();
    assert_eq!(
        get_from("127.0.0.170", admin, "/livez"),
        None,
        "a 17th connection from one address was served"
    );
    assert_eq!(get_from("127.0.0.171", admin, "/metrics"), Some(200));
    assert_eq!(get_from("127.0.0.1", admin, "/livez"), Some(200));
    drop(held);
    // The server frees the slots when it sees the connections close.
    let back = wait_until(Duration::from_secs(3), || {
        get_from("127.0.0.170", admin, "/livez") == Some(200)
    });
    assert!(back.is_some(), "the address did not get its slots back");
}

/// `gslb ctl`: the admin API from the command line, with the token read from the config
/// file (`--admin` because the file's port is 0). Exit 0 when the server accepted the
/// call, 1 with its reason otherwise.
#[test]
fn ctl_drives_the_admin_api() {
    const TOKEN: &str = "ctl-admin-token-0123";
    let body = format!(
        r#"[admin]
listen = "127.0.0.1:0"
token = "{TOKEN}"
{ZONE}
{TWO_GATEWAYS}"#
    );
    let g = Gslb::start(&body);
    let admin = g.admin.unwrap().to_string();
    let ctl = |args: &[&str]| {
        let out = Command::new(crate::common::BIN)
            .arg("ctl")
            .arg("-c")
            .arg(&g.config_path)
            .args(["--admin", admin.as_str()])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, err) = ctl(&["drain", "a"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["in_force"], "drain", "{v}");
    assert_answers(&g, "app.gslb.test", &["192.0.2.2"], 5);

    let (code, out, _) = ctl(&["undrain", "a", "--service", "app.gslb.test"]);
    assert_eq!(code, Some(0));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["state"].as_str(), v["in_force"].as_str()),
        (Some("none"), Some("drain"))
    );

    let (code, out, _) = ctl(&["state"]);
    assert_eq!(code, Some(0));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["overrides"]["gateways"], json!({"a": "drain"}));

    let (code, _, _) = ctl(&["undrain", "a"]);
    assert_eq!(code, Some(0));
    assert_answers(&g, "app.gslb.test", &["192.0.2.1", "192.0.2.2"], 5);

    // Refusals carry the server's reason.
    let (code, _, err) = ctl(&["drain", "nope"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("404: unknown gateway \"nope\""), "{err}");
    let (code, _, err) = ctl(&["--token", "wrong-token-wrong-token", "state"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("401: this call needs Authorization: Bearer <token>"),
        "{err}"
    );

    // Reload: a good file is applied, a bad one refused with its location.
    let (code, out, err) = ctl(&["reload"]);
    assert_eq!(code, Some(0), "{out}{err}");
    std::fs::write(
        &g.config_path,
        format!(
            "{}\n[[gateway]]\nname = 3\n",
            std::fs::read_to_string(&g.config_path).unwrap()
        ),
    )
    .unwrap();
    // (`ctl -c` would stop at the bad file itself: give the token instead.)
    let out = Command::new(crate::common::BIN)
        .args(["ctl", "--admin", admin.as_str(), "--token", TOKEN, "reload"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("422: ") && err.contains("gslb.toml:27:8"),
        "{err}"
    );
    assert_answers(&g, "app.gslb.test", &["192.0.2.1", "192.0.2.2"], 5);
}

/// Probe counters are per target, so an operator sees which gateway fails; a reload
/// that drops a target removes its series.
#[test]
fn probe_counters_are_per_target_and_leave_with_it() {
    let t = HttpTarget::start("127.0.0.164", Reply::ok());
    let u = HttpTarget::start("127.0.0.165", Reply::no_upstreams());
    let cfg = |with_b: bool| {
        let mut c = format!(
            r#"[admin]
listen = "127.0.0.1:0"
{ZONE}
[[gateway]]
name = "a"
addresses = ["192.0.2.1"]
probe = "{}"
[[gateway]]
name = "b"
addresses = ["192.0.2.2"]
probe = "{}"
[[check]]
name = "hc"
kind = "http"
path = "/hc"
interval = "200ms"
timeout = "150ms"
"#,
            t.addr, u.addr
        );
        c.push_str(if with_b {
            "[[service]]\nname = \"app.gslb.test\"\ncheck = \"hc\"\nendpoints = [{ gateway = \"a\" }, { gateway = \"b\" }]\n"
        } else {
            "[[service]]\nname = \"app.gslb.test\"\ncheck = \"hc\"\nendpoints = [{ gateway = \"a\" }]\n"
        });
        c
    };
    let g = Gslb::start(&cfg(true));
    wait_ready(&g);
    let (ta, tb) = (t.addr.to_string(), u.addr.to_string());
    let ok = wait_until(Duration::from_secs(5), || {
        let m = scrape(&g);
        metric_sum(
            &m,
            "gslb_probe_results_total",
            &[("target", &tb), ("outcome", "failure")],
        ) >= 2.0
            && metric_sum(
                &m,
                "gslb_probe_results_total",
                &[("target", &ta), ("outcome", "success")],
            ) >= 2.0
    });
    assert!(ok.is_some(), "{}", scrape(&g));
    let m = scrape(&g);
    assert_eq!(
        metric_sum(
            &m,
            "gslb_probe_results_total",
            &[("target", &ta), ("outcome", "failure")]
        ),
        0.0
    );
    assert_eq!(
        metric_sum(
            &m,
            "gslb_target_transitions_total",
            &[("target", &tb), ("to", "down")]
        ),
        1.0,
        "{m}"
    );
    std::fs::write(
        &g.config_path,
        format!(
            "[server]\nlisten = [\"127.0.0.1:{}\"]\nudp_sockets = 1\n\n{}",
            g.addr.port(),
            cfg(false)
        ),
    )
    .unwrap();
    g.signal("HUP");
    g.wait_log("configuration reloaded from", Duration::from_secs(5));
    let m = scrape(&g);
    assert!(!m.contains(&format!("target=\"{tb}\"")), "{m}");
    assert!(m.contains(&format!("target=\"{ta}\"")), "{m}");
}

/// Reload honesty: settings that need a restart are named in the log, and a reload
/// that drops more than half of the services says which (a file cut short that still
/// parses is the usual cause). A reload that changes neither says neither.
#[test]
fn reload_names_restart_only_settings_and_big_drops() {
    let cfg = |server: &str, services: &[&str]| {
        let mut c = format!(
            "[server]\nlisten = [\"127.0.0.1:PORT\"]\nudp_sockets = 1\n{server}\n{ZONE}\n[[gateway]]\nname = \"a\"\naddresses = [\"192.0.2.1\"]\n"
        );
        for s in services {
            c.push_str(&format!(
                "[[service]]\nname = \"{s}.gslb.test\"\nendpoints = [{{ gateway = \"a\" }}]\n"
            ));
        }
        c
    };
    let first = cfg("", &["s1", "s2", "s3"]).replace("PORT", "0");
    let g = Gslb::start(&first);
    let reload = |text: String| {
        let before = g.logs().matches("configuration reloaded from").count();
        // Port 0 as at the start: the listen addresses are unchanged.
        std::fs::write(&g.config_path, text.replace("PORT", "0")).unwrap();
        g.signal("HUP");
        let done = wait_until(Duration::from_secs(5), || {
            g.logs().matches("configuration reloaded from").count() > before
        });
        assert!(done.is_some(), "{}", g.logs());
    };
    reload(cfg("", &["s1", "s2", "s3"]));
    assert!(!g.logs().contains("need a restart"), "{}", g.logs());
    assert!(!g.logs().contains("reload drops"), "{}", g.logs());

    reload(cfg(
        "tcp_idle_timeout = \"3s\"\ngrace_period = \"1s\"",
        &["s1"],
    ));
    let logs = g.logs();
    assert!(
        logs.contains(
            "these settings changed but need a restart to take effect: [server] tcp_idle_timeout, [server] grace_period"
        ),
        "{logs}"
    );
    assert!(
        logs.contains("reload drops 2 of 3 services: s2.gslb.test., s3.gslb.test."),
        "{logs}"
    );
    // Applied all the same: the file parsed.
    assert_eq!(
        udp_once(g.addr, "s2.gslb.test", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
}

/// Messages that get no reply are counted as what they are: a runt (shorter than a
/// header) and a response (QR=1, parsed or not) under gslb_dns_dropped_total, not as
/// FORMERR.
#[test]
fn unanswered_messages_are_counted_as_what_they_are() {
    let g = Gslb::start(&format!("[admin]\nlisten = \"127.0.0.1:0\"\n{ZONE}"));
    let formerr = |m: &str| metric_sum(m, "gslb_dns_requests_total", &[("rcode", "FORMERR")]);
    let before = scrape(&g);
    let mut response = query_msg("www.gslb.test", RecordType::A, None);
    response.metadata.message_type = hickory_proto::op::MessageType::Response;
    let parsed = response.to_vec().unwrap();
    let mut garbage = vec![0x12, 0x34, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    garbage.extend_from_slice(&[0xff; 9]); // a question that does not parse
    for bytes in [&parsed[..], &garbage[..], &[1, 2, 3, 4, 5][..]] {
        assert!(udp_raw(g.addr, bytes, Duration::from_millis(300)).is_none());
    }
    let after = scrape(&g);
    let dropped =
        |m: &str, r: &str| metric(m, "gslb_dns_dropped_total", &[("reason", r)]).unwrap_or(0.0);
    assert_eq!(
        dropped(&after, "response") - dropped(&before, "response"),
        2.0,
        "{after}"
    );
    assert_eq!(
        dropped(&after, "runt") - dropped(&before, "runt"),
        1.0,
        "{after}"
    );
    assert_eq!(formerr(&after), formerr(&before), "{after}");
}

/// Until a target's first probe finishes, its endpoints are answered as if healthy;
/// /readyz says not ready until `ready_deadline`, then ready with how many targets are
/// still unprobed, and gslb_probe_targets_unprobed counts them.
#[test]
fn unprobed_targets_are_answered_as_healthy_and_say_so() {
    let hang = crate::common::paused::Hang::start("127.0.0.166");
    let cfg = format!(
        r#"[admin]
listen = "127.0.0.1:0"
ready_deadline = "1s"
{ZONE}
[[gateway]]
name = "a"
addresses = ["192.0.2.1"]
probe = "{}"
[[check]]
name = "slow"
kind = "http"
path = "/hc"
interval = "20s"
timeout = "10s"
[[service]]
name = "app.gslb.test"
check = "slow"
endpoints = [{{ gateway = "a" }}]
"#,
        hang.addr
    );
    let g = Gslb::start(&cfg);
    let admin = g.admin.unwrap();
    let r = get(admin, "/readyz");
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body.contains("1 of 1 targets pending"), "{r:?}");
    assert_answers(&g, "app.gslb.test", &["192.0.2.1"], 3);
    let ready = wait_until(Duration::from_secs(5), || {
        get(admin, "/readyz").status == 200
    });
    assert!(ready.is_some());
    let r = get(admin, "/readyz");
    assert!(
        r.body
            .contains("1 of 1 targets not yet probed; their endpoints are answered as if healthy"),
        "{r:?}"
    );
    assert_eq!(
        metric(&scrape(&g), "gslb_probe_targets_unprobed", &[]),
        Some(1.0)
    );
}

/// The config of the reload-under-load test. `version` picks the TTL and the name of
/// a static record; `broken` adds a syntax error (1) or an unknown key (2). Returns the
/// text and the 1-based line of the error.
fn reload_cfg(ta: SocketAddr, tb: SocketAddr, version: u32, broken: u8) -> (String, usize) {
    let ttl_line = match broken {
        1 => format!("ttl = \"{}s", 30 + version),
        _ => format!("ttl = \"{}s\"", 30 + version),
    };
    let extra = if broken == 2 { "colour = \"blue\"" } else { "" };
    let text = format!(
        r#"[server]
listen = ["127.0.0.1:0"]
udp_sockets = 1

[admin]
listen = "127.0.0.1:0"

[[zone]]
origin = "gslb.test"
ttl = "1h"
ns = [{{ name = "ns1", addresses = ["127.0.0.1"] }}]
soa = {{ minimum = "15s" }}

[[zone.record]]
name = "r{version}"
type = "A"
value = "192.0.2.200"

[[gateway]]
name = "a"
addresses = ["192.0.2.1"]
probe = "{ta}"

[[gateway]]
name = "b"
addresses = ["192.0.2.2"]
probe = "{tb}"

[[check]]
name = "hc"
kind = "http"
path = "/hc"
interval = "500ms"
timeout = "400ms"
rise = 2
fall = 3

[[service]]
name = "app.gslb.test"
check = "hc"
{ttl_line}
{extra}
endpoints = [{{ gateway = "a" }}, {{ gateway = "b" }}]
"#
    );
    let marker = if broken == 2 {
        "colour".to_string()
    } else {
        format!("ttl = \"{}s", 30 + version)
    };
    let line = text
        .lines()
        .position(|l| l.starts_with(&marker))
        .expect("marker")
        + 1;
    (text, line)
}

/// 5. Twenty reloads (good and broken files alternately) while two clients query
///    without pause: every query answered correctly, no probe state flips, every
///    broken file logged with its location and counted.
#[test]
fn reload_under_load_loses_nothing() {
    let ta = HttpTarget::start("127.0.0.140", Reply::ok());
    let tb = HttpTarget::start("127.0.0.141", Reply::ok());
    let (text, _) = reload_cfg(ta.addr, tb.addr, 0, 0);
    let g = Gslb::start(&text);
    wait_ready(&g);
    let st0 = state(&g);
    let changed0: Vec<f64> = ["a", "b"]
        .iter()
        .map(|gw| {
            let e = endpoint(&st0, "app.gslb.test.", gw);
            assert_eq!(e["health"], "up", "{e:#}");
            e["probe"]["changed_unix"].as_f64().unwrap()
        })
        .collect();
    let last0 = endpoint(&st0, "app.gslb.test.", "a")["probe"]["last_probe_unix"]
        .as_f64()
        .unwrap();

    // Two clients, each one query at a time, no retries: with one outstanding query per
    // socket on loopback nothing should ever be lost.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, addr) = (stop.clone(), g.addr);
            thread::spawn(move || {
                let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
                sock.connect(addr).unwrap();
                sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let want = ips(&["192.0.2.1", "192.0.2.2"]);
                let (mut sent, mut answered) = (0usize, 0usize);
                let mut problems = Vec::new();
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::SeqCst) {
                    let q = query_msg("app.gslb.test", RecordType::A, None);
                    sock.send(&q.to_vec().unwrap()).unwrap();
                    sent += 1;
                    match sock.recv(&mut buf) {
                        Err(e) => problems.push(format!("query {sent}: no reply: {e}")),
                        Ok(n) => {
                            let m = Message::from_vec(&buf[..n]).expect("reply parses");
                            let a = a_records(&m);
                            if m.metadata.id == q.metadata.id
                                && m.metadata.response_code == ResponseCode::NoError
                                && m.metadata.authoritative
                                && a.len() == 1
                                && want.contains(&a[0])
                            {
                                answered += 1;
                            } else {
                                problems.push(format!("query {sent}: bad reply {m:?}"));
                            }
                        }
                    }
                }
                (sent, answered, problems)
            })
        })
        .collect();

    const RELOADS: u32 = 20;
    let path = g.config_path.display().to_string();
    let mut version = 0;
    for i in 0..RELOADS {
        thread::sleep(Duration::from_millis(60));
        let good = i % 2 == 0;
        let broken = if good { 0 } else { 1 + ((i / 2) % 2) as u8 };
        if good {
            version += 1;
        }
        let (text, line) = reload_cfg(ta.addr, tb.addr, version, broken);
        let (ok0, bad0) = (
            count_logs(&g, "configuration reloaded from"),
            count_logs(&g, "reload rejected, keeping previous config:"),
        );
        std::fs::write(&g.config_path, &text).unwrap();
        g.signal("HUP");
        let done = wait_until(Duration::from_secs(5), || {
            count_logs(&g, "configuration reloaded from") > ok0
                || count_logs(&g, "reload rejected, keeping previous config:") > bad0
        });
        assert!(done.is_some(), "reload {i} not logged; logs:\n{}", g.logs());
        let logs = g.logs();
        let (ok1, bad1) = (
            logs.matches("configuration reloaded from").count(),
            logs.matches("reload rejected, keeping previous config:")
                .count(),
        );
        if good {
            assert_eq!(
                (ok1, bad1),
                (ok0 + 1, bad0),
                "reload {i} should succeed:\n{logs}"
            );
        } else {
            assert_eq!(
                (ok1, bad1),
                (ok0, bad0 + 1),
                "reload {i} should fail:\n{logs}"
            );
            // toml points at the end of the line of an unterminated string, and at
            // the key of an unknown field.
            let col = if broken == 1 {
                format!("ttl = \"{}s", 30 + version).len() + 1
            } else {
                1
            };
            let want = format!(
                "reload rejected, keeping previous config: {path}:{line}:{col}: {}",
                if broken == 1 {
                    "invalid basic string, expected `\"`"
                } else {
                    "unknown field `colour`"
                }
            );
            let last = logs
                .lines()
                .rfind(|l| l.contains("reload rejected"))
                .unwrap();
            assert!(last.contains(&want), "want {want:?} in\n{last}");
        }
        // The config in force: the last good one, whatever the last file was.
        let r = udp_once(g.addr, &format!("r{version}.gslb.test"), RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(a_records(&r), [ip("192.0.2.200")], "reload {i}");
        let m = udp_once(g.addr, "app.gslb.test", RecordType::A);
        assert_eq!(m.answers[0].ttl, 30 + version, "reload {i}");
        if version > 1 {
            let old = udp_once(
                g.addr,
                &format!("r{}.gslb.test", version - 1),
                RecordType::A,
            );
            assert_eq!(old.metadata.response_code, ResponseCode::NXDomain);
        }
    }
    thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::SeqCst);
    let (mut sent, mut answered) = (0, 0);
    let mut problems = Vec::new();
    for c in clients {
        let (s, a, p) = c.join().unwrap();
        sent += s;
        answered += a;
        problems.extend(p);
    }
    eprintln!("reload under load: {sent} queries sent, {answered} answered correctly");
    assert!(
        problems.is_empty(),
        "{} problems: {:?}",
        problems.len(),
        &problems[..problems.len().min(10)]
    );
    assert_eq!(sent, answered);
    assert!(sent >= 200, "too little load to mean anything: {sent}");

    // Probe state untouched: no flips logged, changed times unchanged, probes went on.
    let logs = g.logs();
    assert!(
        !logs.contains("is now DOWN") && !logs.contains("is now UP"),
        "{logs}"
    );
    let st = state(&g);
    for (gw, before) in ["a", "b"].iter().zip(&changed0) {
        let e = endpoint(&st, "app.gslb.test.", gw);
        assert_eq!(e["health"], "up", "{e:#}");
        assert_eq!(
            e["probe"]["changed_unix"].as_f64().unwrap(),
            *before,
            "{gw}"
        );
    }
    let last = endpoint(&st, "app.gslb.test.", "a")["probe"]["last_probe_unix"]
        .as_f64()
        .unwrap();
    assert!(last > last0, "probes kept running");

    let m = scrape(&g);
    assert_eq!(
        metric(&m, "gslb_config_reloads_total", &[("result", "failure")]),
        Some((RELOADS / 2) as f64)
    );
    // The initial load counts as a success too.
    assert_eq!(
        metric(&m, "gslb_config_reloads_total", &[("result", "success")]),
        Some((RELOADS / 2 + 1) as f64)
    );
    assert_eq!(
        metric_sum(&m, "gslb_target_transitions_total", &[]),
        0.0,
        "no transitions"
    );
}

/// 6. The metrics: request counters by label, answers per endpoint, health gauges and
///    probe counters, reloads, build info, fail-open answers; no client or query name.
#[test]
fn metrics_count_what_happens() {
    let t1 = HttpTarget::start("127.0.0.150", Reply::ok());
    let t2 = HttpTarget::start("127.0.0.151", Reply::ok());
    let t3 = HttpTarget::start("127.0.0.152", Reply::ok());
    let cfg = |solo_ttl: u32| {
        format!(
            r#"[admin]
listen = "127.0.0.1:0"
{ZONE}
[[gateway]]
name = "a"
addresses = ["192.0.2.1"]
probe = "{}"
[[gateway]]
name = "b"
addresses = ["192.0.2.2"]
probe = "{}"
[[gateway]]
name = "c"
region = "eu"
addresses = ["192.0.2.3"]
probe = "{}"
[[check]]
name = "hc"
kind = "http"
path = "/hc"
interval = "200ms"
timeout = "150ms"
rise = 1
fall = 2
[[service]]
name = "app.gslb.test"
check = "hc"
endpoints = [{{ gateway = "a" }}, {{ gateway = "b" }}]
[[service]]
name = "solo.gslb.test"
ttl = "{solo_ttl}s"
check = "hc"
endpoints = [{{ gateway = "c" }}]
"#,
            t1.addr, t2.addr, t3.addr
        )
    };
    let g = Gslb::start(&cfg(30));
    wait_ready(&g);
    let noerror_a = [
        ("zone", "gslb.test."),
        ("proto", "udp"),
        ("qtype", "A"),
        ("rcode", "NOERROR"),
    ];
    let get0 =
        |m: &str, name: &str, labels: &[(&str, &str)]| metric(m, name, labels).unwrap_or(0.0);

    let m0 = scrape(&g);
    assert_eq!(
        metric(
            &m0,
            "gslb_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0),
        "{m0}"
    );
    for (svc, ep, region) in [
        ("app.gslb.test.", "a", ""),
        ("app.gslb.test.", "b", ""),
        ("solo.gslb.test.", "c", "eu"),
    ] {
        assert_eq!(
            metric(
                &m0,
                "gslb_endpoint_up",
                &[("service", svc), ("endpoint", ep), ("region", region)]
            ),
            Some(1.0),
            "{svc} {ep}"
        );
    }
    assert_eq!(metric(&m0, "gslb_probe_targets", &[]), Some(3.0));

    // Requests by zone, transport, type and rcode; answers by endpoint.
    const N: usize = 37;
    let mut by_addr: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
    for _ in 0..N {
        let m = udp_once(g.addr, "app.gslb.test", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        for a in a_records(&m) {
            *by_addr.entry(a).or_default() += 1;
        }
    }
    for _ in 0..3 {
        let m = exchange(
            g.addr,
            &query_msg("app.gslb.test", RecordType::A, None),
            Transport::Tcp,
        );
        for a in a_records(&m) {
            *by_addr.entry(a).or_default() += 1;
        }
    }
    for _ in 0..5 {
        let m = udp_once(g.addr, "nope.gslb.test", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }
    for _ in 0..4 {
        let m = udp_once(g.addr, "www.example.com", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    }
    for _ in 0..2 {
        let m = udp_once(g.addr, "app.gslb.test", RecordType::AAAA);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
    }
    let m1 = scrape(&g);
    let delta =
        |name: &str, labels: &[(&str, &str)]| get0(&m1, name, labels) - get0(&m0, name, labels);
    assert_eq!(delta("gslb_dns_requests_total", &noerror_a), N as f64);
    assert_eq!(
        delta(
            "gslb_dns_requests_total",
            &[
                ("zone", "gslb.test."),
                ("proto", "tcp"),
                ("qtype", "A"),
                ("rcode", "NOERROR")
            ]
        ),
        3.0
    );
    assert_eq!(
        delta(
            "gslb_dns_requests_total",
            &[
                ("zone", "gslb.test."),
                ("proto", "udp"),
                ("qtype", "A"),
                ("rcode", "NXDOMAIN")
            ]
        ),
        5.0
    );
    assert_eq!(
        delta(
            "gslb_dns_requests_total",
            &[
                ("zone", ""),
                ("proto", "udp"),
                ("qtype", "A"),
                ("rcode", "REFUSED")
            ]
        ),
        4.0
    );
    assert_eq!(
        delta(
            "gslb_dns_requests_total",
            &[
                ("zone", "gslb.test."),
                ("proto", "udp"),
                ("qtype", "AAAA"),
                ("rcode", "NOERROR")
            ]
        ),
        2.0
    );
    // Nothing else was counted.
    let total = |m: &str| metric_sum(m, "gslb_dns_requests_total", &[]);
    assert_eq!(total(&m1) - total(&m0), (N + 3 + 5 + 4 + 2) as f64);
    let answered: usize = by_addr.values().sum();
    assert_eq!(answered, N + 3);
    assert_eq!(
        metric_sum(&m1, "gslb_answers_total", &[("service", "app.gslb.test.")])
            - metric_sum(&m0, "gslb_answers_total", &[("service", "app.gslb.test.")]),
        answered as f64,
        "answers sum to the records handed out"
    );
    for (ep, addr) in [("a", "192.0.2.1"), ("b", "192.0.2.2")] {
        assert_eq!(
            delta(
                "gslb_answers_total",
                &[("service", "app.gslb.test."), ("endpoint", ep)]
            ),
            by_addr.get(&ip(addr)).copied().unwrap_or(0) as f64,
            "endpoint {ep}: {by_addr:?}"
        );
    }
    assert_eq!(
        delta(
            "gslb_fail_open_answers_total",
            &[("service", "app.gslb.test.")]
        ),
        0.0
    );

    // A target starts failing: gauge 1 → 0, failures counted, one transition down.
    let fail0 = metric_sum(
        &m1,
        "gslb_probe_results_total",
        &[("check", "hc"), ("outcome", "failure")],
    );
    assert_eq!(fail0, 0.0);
    let ok0 = metric_sum(
        &m1,
        "gslb_probe_results_total",
        &[("check", "hc"), ("outcome", "success")],
    );
    assert!(ok0 >= 3.0, "{ok0}");
    let c_up = [
        ("service", "solo.gslb.test."),
        ("endpoint", "c"),
        ("region", "eu"),
    ];
    assert_eq!(metric(&m1, "gslb_endpoint_up", &c_up), Some(1.0));
    t3.set(Reply::no_upstreams());
    let went = wait_until(Duration::from_secs(5), || {
        metric(&scrape(&g), "gslb_endpoint_up", &c_up) == Some(0.0)
    });
    assert!(went.is_some(), "gauge never went to 0; logs:\n{}", g.logs());
    let m2 = scrape(&g);
    let fail1 = metric_sum(
        &m2,
        "gslb_probe_results_total",
        &[("check", "hc"), ("outcome", "failure")],
    );
    assert!(fail1 >= 2.0, "fall = 2 needs two failures: {fail1}");
    assert_eq!(
        metric_sum(
            &m2,
            "gslb_target_transitions_total",
            &[("check", "hc"), ("to", "down")]
        ),
        1.0
    );
    assert_eq!(
        metric_sum(
            &m2,
            "gslb_target_transitions_total",
            &[("check", "hc"), ("to", "up")]
        ),
        0.0
    );
    for ep in ["a", "b"] {
        assert_eq!(
            metric(
                &m2,
                "gslb_endpoint_up",
                &[
                    ("service", "app.gslb.test."),
                    ("endpoint", ep),
                    ("region", "")
                ]
            ),
            Some(1.0)
        );
    }
    thread::sleep(Duration::from_millis(450));
    let fail2 = metric_sum(
        &scrape(&g),
        "gslb_probe_results_total",
        &[("check", "hc"), ("outcome", "failure")],
    );
    assert!(
        fail2 > fail1,
        "failures keep being counted: {fail1} then {fail2}"
    );

    // Fail-open: solo has nothing healthy and still answers; each answer is counted.
    const M: usize = 9;
    for _ in 0..M {
        assert_eq!(answer_set(&g, "solo.gslb.test"), ips(&["192.0.2.3"]));
    }
    let m3 = scrape(&g);
    let d3 =
        |name: &str, labels: &[(&str, &str)]| get0(&m3, name, labels) - get0(&m2, name, labels);
    assert_eq!(
        d3(
            "gslb_fail_open_answers_total",
            &[("service", "solo.gslb.test.")]
        ),
        M as f64
    );
    assert_eq!(
        d3(
            "gslb_fail_open_answers_total",
            &[("service", "app.gslb.test.")]
        ),
        0.0
    );
    assert_eq!(
        d3(
            "gslb_answers_total",
            &[("service", "solo.gslb.test."), ("endpoint", "c")]
        ),
        M as f64
    );
    assert_eq!(state(&g)["services"][1]["decision_v4"], "FailOpen");

    // A good reload: success counted, timestamp moves, health state kept.
    let success0 = metric(&m3, "gslb_config_reloads_total", &[("result", "success")]).unwrap();
    assert_eq!(success0, 1.0, "the initial load");
    let ts0 = metric(
        &m3,
        "gslb_config_last_reload_success_timestamp_seconds",
        &[],
    )
    .unwrap();
    assert!(ts0 > 1.6e9 && ts0 <= unix_now(), "{ts0}");
    thread::sleep(Duration::from_millis(20));
    std::fs::write(&g.config_path, cfg(45)).unwrap();
    g.signal("HUP");
    g.wait_log("configuration reloaded from", Duration::from_secs(5));
    let m4 = scrape(&g);
    assert_eq!(
        metric(&m4, "gslb_config_reloads_total", &[("result", "success")]),
        Some(2.0)
    );
    assert_eq!(
        get0(&m4, "gslb_config_reloads_total", &[("result", "failure")]),
        0.0
    );
    let ts1 = metric(
        &m4,
        "gslb_config_last_reload_success_timestamp_seconds",
        &[],
    )
    .unwrap();
    assert!(ts1 > ts0, "timestamp moved: {ts0} then {ts1}");
    assert_eq!(metric(&m4, "gslb_endpoint_up", &c_up), Some(0.0));
    assert_eq!(
        udp_once(g.addr, "solo.gslb.test", RecordType::A).answers[0].ttl,
        45
    );

    // No client address or query name, anywhere in the samples.
    let allowed: BTreeSet<&str> = [
        "zone", "proto", "qtype", "rcode", "service", "endpoint", "region", "check", "outcome",
        "to", "result", "version", "le", "reason", "action",
    ]
    .into_iter()
    .collect();
    for (name, labels, _) in samples(&m4) {
        assert!(name.starts_with("gslb_"), "{name}");
        for (k, v) in &labels {
            if k == "target" {
                // Probe series name the configured probe address, never a client's.
                assert!(
                    name.starts_with("gslb_probe_results_total")
                        || name.starts_with("gslb_target_transitions_total"),
                    "label target on {name}"
                );
                assert!(v.parse::<SocketAddr>().is_ok(), "{name}{{target={v:?}}}");
                continue;
            }
            assert!(allowed.contains(k.as_str()), "label {k} on {name}");
            assert!(
                !v.contains("127.0.0.") && !v.contains("nope") && !v.contains("example"),
                "{name}{{{k}={v:?}}}"
            );
        }
    }
    for line in m4.lines().filter(|l| !l.starts_with('#')) {
        // The probe address in `target` (checked above) is configuration, not a client.
        let l = match line.find("target=\"") {
            Some(i) => {
                let end = line[i + 8..].find('"').map_or(line.len(), |j| i + 9 + j);
                format!("{}{}", &line[..i], &line[end..])
            }
            None => line.to_string(),
        };
        assert!(
            !l.contains("127.0.0.") && !l.contains("nope.gslb") && !l.contains("example.com"),
            "{line}"
        );
    }
}

/// 7. `promtool check metrics` accepts a scrape (skipped without promtool, except in CI).
#[test]
fn promtool_accepts_the_exposition() {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is not on PATH, and CI is set (install Debian's prometheus package)"
        );
        eprintln!("NOTE: promtool not on PATH; skipping `promtool check metrics`");
        return;
    }
    let t = HttpTarget::start("127.0.0.160", Reply::ok());
    let u = HttpTarget::start("127.0.0.161", Reply::no_upstreams());
    let cfg = format!(
        r#"[admin]
listen = "127.0.0.1:0"
{ZONE}
[[gateway]]
name = "a"
region = "eu"
addresses = ["192.0.2.1"]
probe = "{}"
[[gateway]]
name = "b"
addresses = ["192.0.2.2"]
probe = "{}"
[[check]]
name = "hc"
kind = "http"
path = "/hc"
interval = "200ms"
timeout = "150ms"
rise = 1
fall = 1
[[service]]
name = "app.gslb.test"
check = "hc"
endpoints = [{{ gateway = "a" }}, {{ gateway = "b" }}]
"#,
        t.addr, u.addr
    );
    let g = Gslb::start(&cfg);
    wait_ready(&g);
    // Every family gets samples: queries, answers, a transition, a reload.
    for name in ["app.gslb.test", "nope.gslb.test", "example.com"] {
        udp_once(g.addr, name, RecordType::A);
    }
    exchange(
        g.addr,
        &query_msg("app.gslb.test", RecordType::AAAA, None),
        Transport::Tcp,
    );
    g.signal("HUP");
    g.wait_log("configuration reloaded from", Duration::from_secs(5));
    let body = scrape(&g);
    assert!(
        body.contains(&format!(
            "gslb_target_transitions_total{{check=\"hc\",target=\"{}\",to=\"down\"}} 1",
            u.addr
        )),
        "{body}"
    );
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool: {:?}\n{text}\n--- scrape:\n{body}",
        out.status
    );
    let problems: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(problems.is_empty(), "promtool complains:\n{text}");
}

/// The config of the SIGTERM tests: grace period 3 s.
const GRACE: Duration = Duration::from_secs(3);

fn term_cfg() -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]
udp_sockets = 1
grace_period = "3s"
# Longer than the grace period: these tests are about the grace period.
tcp_message_timeout = "10s"
{ZONE}
[[gateway]]
name = "a"
addresses = ["192.0.2.1"]
[[service]]
name = "app.gslb.test"
endpoints = [{{ gateway = "a" }}]
"#
    )
}

fn frame(m: &Message) -> Vec<u8> {
    let bytes = m.to_vec().unwrap();
    let mut f = (bytes.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(&bytes);
    f
}

/// 8a. SIGTERM while a TCP query is half sent: the query is answered, then exit 0.
#[test]
fn sigterm_finishes_the_tcp_query_in_flight() {
    let mut g = Gslb::start(&term_cfg());
    let mut s = TcpStream::connect(g.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_nodelay(true).unwrap();
    let q1 = query_msg("app.gslb.test", RecordType::A, None);
    s.write_all(&frame(&q1)).unwrap();
    let r1 = Message::from_vec(&tcp_recv(&mut s).expect("first answer")).unwrap();
    assert_eq!(r1.metadata.id, q1.metadata.id);
    assert_eq!(a_records(&r1), [ip("192.0.2.1")]);

    let q2 = query_msg("app.gslb.test", RecordType::A, None);
    let f2 = frame(&q2);
    let half = f2.len() / 2;
    s.write_all(&f2[..half]).unwrap();
    thread::sleep(Duration::from_millis(200));
    let term_at = Instant::now();
    g.signal("TERM");
    g.wait_log("SIGTERM", Duration::from_secs(2));
    thread::sleep(Duration::from_millis(200));
    assert!(g.is_running(), "exited with a query in flight");
    s.write_all(&f2[half..]).unwrap();
    let r2 = Message::from_vec(&tcp_recv(&mut s).expect("answer to the query in flight")).unwrap();
    assert_eq!(r2.metadata.id, q2.metadata.id);
    assert_eq!(r2.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&r2), [ip("192.0.2.1")]);
    let st = g
        .wait_exit(GRACE + Duration::from_millis(500))
        .unwrap_or_else(|| panic!("still running {:?} after SIGTERM", term_at.elapsed()));
    let took = term_at.elapsed();
    eprintln!("SIGTERM with a query in flight: exit {st:?} {took:?} after the signal");
    assert_eq!(st.code(), Some(0), "logs:\n{}", g.logs());
    assert!(took <= GRACE + Duration::from_millis(500), "{took:?}");
    // The connection is closed after the answer.
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap_or(0), 0);
}

/// 8b. A client that never finishes its query is cut off at the grace period: exit 0
///     no later than grace + margin. A plain SIGTERM with no client exits 0 at once.
#[test]
fn sigterm_exits_zero_within_the_grace_period() {
    let mut g = Gslb::start(&term_cfg());
    let mut s = TcpStream::connect(g.addr).unwrap();
    let f = frame(&query_msg("app.gslb.test", RecordType::A, None));
    s.write_all(&f[..f.len() / 2]).unwrap();
    thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    g.signal("TERM");
    let st = g
        .wait_exit(GRACE + Duration::from_secs(2))
        .expect("exit after the grace period");
    let took = t.elapsed();
    eprintln!("SIGTERM with a stuck client: exit {st:?} after {took:?} (grace {GRACE:?})");
    assert_eq!(st.code(), Some(0), "logs:\n{}", g.logs());
    assert!(
        took >= GRACE - Duration::from_millis(100),
        "{took:?}: the grace period was not given"
    );
    assert!(took <= GRACE + Duration::from_millis(750), "{took:?}");
    assert!(g.logs().contains("grace period of 3s over"), "{}", g.logs());
    drop(s);

    let mut g = Gslb::start(&term_cfg());
    assert_eq!(answer_set(&g, "app.gslb.test"), ips(&["192.0.2.1"]));
    let t = Instant::now();
    g.signal("TERM");
    let st = g.wait_exit(Duration::from_secs(3)).expect("exit");
    let took = t.elapsed();
    eprintln!("plain SIGTERM: exit {st:?} after {took:?}");
    assert_eq!(st.code(), Some(0), "logs:\n{}", g.logs());
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(g.logs().contains("stopped"));
}

/// 8c. Signals sent as soon as the process has announced its addresses are handled:
///     a SIGHUP reloads (it must not take the default action and kill the process), a
///     SIGTERM exits 0 (not "killed by signal").
#[test]
fn signals_right_after_startup_are_handled() {
    for i in 0..20 {
        let mut g = Gslb::start(&term_cfg());
        g.signal("HUP");
        let done = wait_until(Duration::from_secs(5), || {
            g.logs().contains("configuration reloaded from") || !g.is_running()
        });
        assert!(done.is_some(), "round {i}: no reload; logs:\n{}", g.logs());
        assert!(
            g.is_running(),
            "round {i}: SIGHUP right after startup killed the process: {:?}; logs:\n{}",
            g.wait_exit(Duration::from_millis(100)),
            g.logs()
        );
        assert_eq!(answer_set(&g, "app.gslb.test"), ips(&["192.0.2.1"]));
    }
    for i in 0..20 {
        let mut g = Gslb::start(&term_cfg());
        g.signal("TERM");
        let st = g.wait_exit(Duration::from_secs(3)).expect("exit");
        assert_eq!(st.code(), Some(0), "round {i}: {st:?}; logs:\n{}", g.logs());
    }
}

/// A reload that removes a service and a gateway also removes their series from
/// `/metrics` (answers, fail-open, endpoint up), so config churn does not leave stale
/// series behind; the surviving service keeps counting.
#[test]
fn reload_forgets_series_of_removed_services() {
    let cfg = |with_two: bool| {
        let mut c = format!(
            r#"[server]
listen = ["127.0.0.1:0"]
udp_sockets = 1
[admin]
listen = "127.0.0.1:0"
{ZONE}
[[gateway]]
name = "g1"
addresses = ["192.0.2.1"]
[[gateway]]
name = "g2"
addresses = ["192.0.2.2"]
[[service]]
name = "one.gslb.test"
endpoints = [{{ gateway = "g1" }}]
"#
        );
        if with_two {
            c.push_str(
                "[[service]]\nname = \"two.gslb.test\"\nendpoints = [{ gateway = \"g2\" }]\n",
            );
        }
        c
    };
    let g = Gslb::start(&cfg(true));
    for name in ["one.gslb.test", "two.gslb.test"] {
        assert_eq!(udp_once(g.addr, name, RecordType::A).answers.len(), 1);
    }
    let text = scrape(&g);
    let two = [("service", "two.gslb.test."), ("endpoint", "g2")];
    let two_up = [
        ("service", "two.gslb.test."),
        ("endpoint", "g2"),
        ("region", ""),
    ];
    assert_eq!(
        metric(&text, "gslb_answers_total", &two),
        Some(1.0),
        "{text}"
    );
    assert!(
        metric(&text, "gslb_endpoint_up", &two_up).is_some(),
        "{text}"
    );
    assert!(
        metric(
            &text,
            "gslb_fail_open_answers_total",
            &[("service", "two.gslb.test.")]
        )
        .is_some(),
        "{text}"
    );

    std::fs::write(&g.config_path, cfg(false)).unwrap();
    g.signal("HUP");
    g.wait_log(
        &format!("configuration reloaded from {}", g.config_path.display()),
        Duration::from_secs(5),
    );
    assert_eq!(
        udp_once(g.addr, "one.gslb.test", RecordType::A)
            .answers
            .len(),
        1
    );
    let text = scrape(&g);
    assert_eq!(metric(&text, "gslb_answers_total", &two), None, "{text}");
    assert_eq!(metric(&text, "gslb_endpoint_up", &two_up), None, "{text}");
    assert_eq!(
        metric(
            &text,
            "gslb_fail_open_answers_total",
            &[("service", "two.gslb.test.")]
        ),
        None,
        "{text}"
    );
    let one = [("service", "one.gslb.test."), ("endpoint", "g1")];
    assert_eq!(
        metric(&text, "gslb_answers_total", &one),
        Some(2.0),
        "{text}"
    );
}
