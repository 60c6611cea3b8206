//! Health checking end to end: the real binary against real HTTP and TCP targets, each
//! gateway probed on its own loopback address (127.0.0.30-127.0.0.79 belong to this file).
//! Answer addresses are documentation addresses (192.0.2.x): handed out, never contacted.

use crate::common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn ips(list: &[&str]) -> BTreeSet<Ipv4Addr> {
    list.iter().map(|s| ip(s)).collect()
}

/// The A addresses of one answer, in order.
fn answer(g: &Gslb, name: &str) -> Vec<Ipv4Addr> {
    let m = query(g.addr, name, RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
    a_records(&m)
}

/// The A addresses of one answer as a set; panics on a duplicate address.
fn answer_set(g: &Gslb, name: &str) -> BTreeSet<Ipv4Addr> {
    let v = answer(g, name);
    let s: BTreeSet<Ipv4Addr> = v.iter().copied().collect();
    assert_eq!(s.len(), v.len(), "duplicate address in one answer: {v:?}");
    s
}

/// Queries `name` once per round (5 ms apart) until `cond` holds on one answer, or
/// `within` has passed since `t0`. Returns the time from `t0` to the first answer that
/// satisfied `cond`. `seen` receives every answer on the way.
fn poll_answer(
    g: &Gslb,
    name: &str,
    t0: Instant,
    within: Duration,
    mut cond: impl FnMut(&BTreeSet<Ipv4Addr>) -> bool,
    mut seen: impl FnMut(&BTreeSet<Ipv4Addr>),
) -> Option<Duration> {
    while t0.elapsed() < within {
        let s = answer_set(g, name);
        let at = t0.elapsed();
        seen(&s);
        if cond(&s) {
            return Some(at);
        }
        thread::sleep(Duration::from_millis(5));
    }
    None
}

/// Waits until `t` has been probed at least `n` times (the engine is running).
fn wait_hits(t: &HttpTarget, n: usize, g: &Gslb) {
    let ok = wait_until(Duration::from_secs(10), || {
        t.hits.load(Ordering::SeqCst) >= n
    });
    assert!(
        ok.is_some(),
        "target {} not probed {n} times; logs:\n{}",
        t.addr,
        g.logs()
    );
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ------------------------------------------------------------------------------- tests

/// 1. Answers follow the weights: 50/50 and 80/20, 2000 UDP queries each, every share
///    within ±5 percentage points of its weight.
#[test]
fn weighted_shares_follow_weights() {
    let cfg = format!(
        r#"{ZONE}
[[gateway]]
name = "e1"
addresses = ["192.0.2.1"]
[[gateway]]
name = "e2"
addresses = ["192.0.2.2"]
[[gateway]]
name = "s1"
addresses = ["192.0.2.3"]
[[gateway]]
name = "s2"
addresses = ["192.0.2.4"]
[[service]]
name = "even.gslb.test"
endpoints = [{{ gateway = "e1", weight = 50 }}, {{ gateway = "e2", weight = 50 }}]
[[service]]
name = "skew.gslb.test"
endpoints = [{{ gateway = "s1", weight = 80 }}, {{ gateway = "s2", weight = 20 }}]
"#
    );
    let g = Gslb::start(&cfg);
    const N: usize = 2000;
    const THREADS: usize = 4;
    let count = |name: &'static str| -> BTreeMap<Ipv4Addr, usize> {
        let addr = g.addr;
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                thread::spawn(move || {
                    let mut c = BTreeMap::new();
                    for _ in 0..N / THREADS {
                        let m = query(addr, name, RecordType::A);
                        let a = a_records(&m);
                        assert_eq!(a.len(), 1, "answers = 1 gives one record: {a:?}");
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
        assert_eq!(total.values().sum::<usize>(), N);
        total
    };
    for (name, want) in [
        ("even.gslb.test", [("192.0.2.1", 50.0), ("192.0.2.2", 50.0)]),
        ("skew.gslb.test", [("192.0.2.3", 80.0), ("192.0.2.4", 20.0)]),
    ] {
        let got = count(name);
        assert_eq!(
            got.keys().copied().collect::<BTreeSet<_>>(),
            ips(&[want[0].0, want[1].0]),
            "{name}: {got:?}"
        );
        for (a, weight) in want {
            let share = got[&ip(a)] as f64 * 100.0 / N as f64;
            assert!(
                (share - weight).abs() <= 5.0,
                "{name}: {a} got {share:.1}% of {N}, weight {weight}%: {got:?}"
            );
        }
    }
}

/// 2. A 503 "no healthy upstreams" takes the endpoint out of the answers, logging the
///    reason, and a 200 brings it back; no answer in between holds anything else. The
///    flip times (within interval × fall + timeout, interval × rise + timeout) are
///    asserted exactly on the paused clock by `paused_http_503_flips_on_the_exact_probe`.
#[test]
fn http_503_fails_over_and_recovers() {
    let a = HttpTarget::start("127.0.0.30", Reply::ok());
    let b = HttpTarget::start("127.0.0.31", Reply::ok());
    let cfg = format!(
        r#"{ZONE}
[[gateway]]
name = "a"
addresses = ["192.0.2.30"]
probe = "{}"
[[gateway]]
name = "b"
addresses = ["192.0.2.31"]
probe = "{}"
[[check]]
name = "hc"
kind = "http"
path = "/hc"
interval = "500ms"
timeout = "200ms"
rise = 3
fall = 2
[[service]]
name = "app.gslb.test"
check = "hc"
answers = 2
endpoints = [{{ gateway = "a" }}, {{ gateway = "b" }}]
"#,
        a.addr, b.addr
    );
    let g = Gslb::start(&cfg);
    let both = ips(&["192.0.2.30", "192.0.2.31"]);
    let only_b = ips(&["192.0.2.31"]);
    // answers = 2 with two healthy endpoints: every answer holds both, so one query
    // tells the state exactly.
    assert_eq!(answer_set(&g, "app.gslb.test"), both);
    wait_hits(&a, 2, &g);
    wait_hits(&b, 2, &g);
    assert_eq!(answer_set(&g, "app.gslb.test"), both, "{}", g.logs());

    // Failover.
    let t0 = Instant::now();
    a.set(Reply::no_upstreams());
    let mut odd = Vec::new();
    let down = poll_answer(
        &g,
        "app.gslb.test",
        t0,
        Duration::from_secs(10),
        |s| *s == only_b,
        |s| {
            if *s != both && *s != only_b {
                odd.push(s.clone())
            }
        },
    )
    .unwrap_or_else(|| panic!("a never left the answers; logs:\n{}", g.logs()));
    assert!(odd.is_empty(), "unexpected answers: {odd:?}");
    // How long it took is asserted exactly, in process, by
    // `paused_http_503_flips_on_the_exact_probe`.
    eprintln!("failover took {down:?}");
    let down_line = format!(
        "target a {} (check hc) is now DOWN: http 503 \"no healthy upstreams\" (services: app.gslb.test.)",
        a.addr
    );
    g.wait_log(&down_line, Duration::from_secs(2));
    assert_eq!(g.logs().matches("is now DOWN").count(), 1, "{}", g.logs());
    // b never flipped.
    assert!(!g.logs().contains(&format!("{} (check hc) is now", b.addr)));
    // It stays out while the target keeps failing.
    for _ in 0..20 {
        assert_eq!(answer_set(&g, "app.gslb.test"), only_b);
        thread::sleep(ms(10));
    }

    // Recovery.
    let t1 = Instant::now();
    a.set(Reply::ok());
    let mut odd = Vec::new();
    let up = poll_answer(
        &g,
        "app.gslb.test",
        t1,
        Duration::from_secs(10),
        |s| *s == both,
        |s| {
            if *s != both && *s != only_b {
                odd.push(s.clone())
            }
        },
    )
    .unwrap_or_else(|| panic!("a never came back; logs:\n{}", g.logs()));
    assert!(odd.is_empty(), "unexpected answers: {odd:?}");
    eprintln!("recovery took {up:?}");
    g.wait_log(
        &format!(
            "target a {} (check hc) is now UP (services: app.gslb.test.)",
            a.addr
        ),
        Duration::from_secs(2),
    );
    for _ in 0..20 {
        assert_eq!(answer_set(&g, "app.gslb.test"), both);
        thread::sleep(ms(10));
    }
}

/// 4. Configured headers are really sent: a target that answers 200 only with
///    `X-HealthCheck: true` (404 otherwise) stays in the service whose check sends the
///    header and leaves the one whose check does not.
#[test]
fn check_headers_are_sent() {
    let needs_header = Reply {
        status: 200,
        body: "ok".into(),
        require_header: Some(("X-HealthCheck".into(), "true".into())),
    };
    let h = HttpTarget::start("127.0.0.34", needs_header);
    let c = HttpTarget::start("127.0.0.35", Reply::ok());
    let cfg = format!(
        r#"{ZONE}
[[gateway]]
name = "hdr"
addresses = ["192.0.2.34"]
probe = "{}"
[[gateway]]
name = "ctl"
addresses = ["192.0.2.35"]
probe = "{}"
[[check]]
name = "with"
kind = "http"
path = "/hc"
interval = "300ms"
timeout = "250ms"
headers = {{ "X-HealthCheck" = "true" }}
[[check]]
name = "without"
kind = "http"
path = "/hc"
interval = "300ms"
timeout = "250ms"
[[service]]
name = "with.gslb.test"
check = "with"
answers = 2
endpoints = [{{ gateway = "hdr" }}, {{ gateway = "ctl" }}]
[[service]]
name = "without.gslb.test"
check = "without"
answers = 2
endpoints = [{{ gateway = "hdr" }}, {{ gateway = "ctl" }}]
"#,
        h.addr, c.addr
    );
    let interval = ms(300);
    let g = Gslb::start(&cfg);
    let both = ips(&["192.0.2.34", "192.0.2.35"]);
    let only_ctl = ips(&["192.0.2.35"]);
    let t0 = Instant::now();
    let mut with_lost = Vec::new();
    let dropped = poll_answer(
        &g,
        "without.gslb.test",
        t0,
        Duration::from_secs(10),
        |s| *s == only_ctl,
        |_| {
            let s = answer_set(&g, "with.gslb.test");
            if s != both {
                with_lost.push((t0.elapsed(), s));
            }
        },
    );
    assert!(
        dropped.is_some(),
        "the check without the header kept the endpoint; logs:\n{}",
        g.logs()
    );
    // Keep watching for a few more intervals: the check with the header keeps it.
    let t1 = Instant::now();
    while t1.elapsed() < interval * 4 {
        let s = answer_set(&g, "with.gslb.test");
        if s != both {
            with_lost.push((t0.elapsed(), s));
        }
        assert_eq!(answer_set(&g, "without.gslb.test"), only_ctl);
        thread::sleep(ms(5));
    }
    assert!(
        with_lost.is_empty(),
        "the check with the header lost the endpoint: {with_lost:?}; logs:\n{}",
        g.logs()
    );
    let logs = g.logs();
    assert!(
        logs.contains(&format!(
            "target hdr {} (check without) is now DOWN: http 404 \"route not found\" (services: without.gslb.test.)",
            h.addr
        )),
        "logs:\n{logs}"
    );
    assert_eq!(logs.matches("is now DOWN").count(), 1, "logs:\n{logs}");
    // Both checks really probed the same target (two probe targets, same address).
    assert!(h.hits.load(Ordering::SeqCst) >= 4);
}

/// 6. Every endpoint down: fail_open answers with all of them, fail_closed answers
///    NOERROR with no answers and the SOA in authority.
#[test]
fn all_down_fail_open_and_fail_closed() {
    let targets: Vec<HttpTarget> = ["127.0.0.38", "127.0.0.39", "127.0.0.40"]
        .iter()
        .map(|a| HttpTarget::start(a, Reply::ok()))
        .collect();
    let cfg = format!(
        r#"{ZONE}
[[gateway]]
name = "x"
addresses = ["192.0.2.38"]
probe = "{}"
[[gateway]]
name = "y"
addresses = ["192.0.2.39"]
probe = "{}"
[[gateway]]
name = "z"
addresses = ["192.0.2.40"]
probe = "{}"
[[check]]
name = "hc"
kind = "http"
path = "/hc"
interval = "300ms"
timeout = "250ms"
[[service]]
name = "open.gslb.test"
check = "hc"
all_down = "fail_open"
endpoints = [{{ gateway = "x" }}, {{ gateway = "y" }}, {{ gateway = "z" }}]
[[service]]
name = "closed.gslb.test"
check = "hc"
all_down = "fail_closed"
answers = 3
endpoints = [{{ gateway = "x" }}, {{ gateway = "y" }}, {{ gateway = "z" }}]
"#,
        targets[0].addr, targets[1].addr, targets[2].addr
    );
    let g = Gslb::start(&cfg);
    let all = ips(&["192.0.2.38", "192.0.2.39", "192.0.2.40"]);
    // Healthy: fail_closed answers with all three (answers = 3).
    for t in &targets {
        wait_hits(t, 1, &g);
    }
    assert_eq!(answer_set(&g, "closed.gslb.test"), all);

    for t in &targets {
        t.set(Reply::no_upstreams());
    }
    let t0 = Instant::now();
    let gone = poll_answer(
        &g,
        "closed.gslb.test",
        t0,
        Duration::from_secs(10),
        |s| s.is_empty(),
        |_| {},
    );
    assert!(gone.is_some(), "fail_closed never emptied; {}", g.logs());
    // Wait for all three flips (one snapshot may fold several).
    let three_down = wait_until(Duration::from_secs(5), || {
        g.logs().matches("is now DOWN").count() == 3
    });
    assert!(three_down.is_some(), "{}", g.logs());
    for t in &targets {
        assert!(
            g.logs()
                .contains(&format!("{} (check hc) is now DOWN: http 503", t.addr)),
            "{}",
            g.logs()
        );
    }

    // fail_closed: NOERROR, empty answer, the zone's SOA (negative TTL 15 s) in authority.
    for _ in 0..20 {
        let m = query(g.addr, "closed.gslb.test", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative, "{m:?}");
        assert!(m.answers.is_empty(), "{m:?}");
        assert_eq!(m.authorities.len(), 1, "{m:?}");
        let soa = &m.authorities[0];
        assert_eq!(soa.name.to_ascii(), "gslb.test.");
        assert_eq!(soa.record_type(), RecordType::SOA);
        assert!(matches!(soa.data, RData::SOA(_)));
        assert_eq!(soa.ttl, 15, "negative TTL = SOA minimum");
    }

    // fail_open: one address per answer (answers = 1), all three over many queries.
    let mut counts: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
    for _ in 0..300 {
        let a = answer(&g, "open.gslb.test");
        assert_eq!(a.len(), 1, "{a:?}");
        *counts.entry(a[0]).or_default() += 1;
    }
    assert_eq!(
        counts.keys().copied().collect::<BTreeSet<_>>(),
        all,
        "{counts:?}"
    );
    // Equal weights: each about a third (expected 100 of 300; 50 is > 7 sigma away).
    for (a, n) in &counts {
        assert!(*n >= 50, "{a} only {n} of 300 under fail-open: {counts:?}");
    }
    // Still fail-closed and still all down: nothing flipped back meanwhile.
    assert!(answer_set(&g, "closed.gslb.test").is_empty());
    assert!(!g.logs().contains("is now UP"));
}

/// 7. `answers = 2`: exactly two distinct addresses per response out of three healthy
///    endpoints; with one down, exactly the two healthy ones.
#[test]
fn answers_two_of_three() {
    let targets: Vec<HttpTarget> = ["127.0.0.41", "127.0.0.42", "127.0.0.43"]
        .iter()
        .map(|a| HttpTarget::start(a, Reply::ok()))
        .collect();
    let cfg = format!(
        r#"{ZONE}
[[gateway]]
name = "p"
addresses = ["192.0.2.41"]
probe = "{}"
[[gateway]]
name = "q"
addresses = ["192.0.2.42"]
probe = "{}"
[[gateway]]
name = "r"
addresses = ["192.0.2.43"]
probe = "{}"
[[check]]
name = "hc"
kind = "http"
path = "/hc"
interval = "300ms"
timeout = "250ms"
[[service]]
name = "two.gslb.test"
check = "hc"
answers = 2
endpoints = [{{ gateway = "p" }}, {{ gateway = "q" }}, {{ gateway = "r" }}]
"#,
        targets[0].addr, targets[1].addr, targets[2].addr
    );
    let g = Gslb::start(&cfg);
    let all = ips(&["192.0.2.41", "192.0.2.42", "192.0.2.43"]);
    for t in &targets {
        wait_hits(t, 1, &g);
    }
    let mut pairs: BTreeMap<BTreeSet<Ipv4Addr>, usize> = BTreeMap::new();
    for _ in 0..300 {
        let v = answer(&g, "two.gslb.test");
        assert_eq!(v.len(), 2, "{v:?}");
        let s: BTreeSet<Ipv4Addr> = v.iter().copied().collect();
        assert_eq!(s.len(), 2, "two distinct addresses: {v:?}");
        assert!(s.is_subset(&all), "{v:?}");
        *pairs.entry(s).or_default() += 1;
    }
    // All three pairs occur (each has probability 1/3; 300 draws).
    assert_eq!(pairs.len(), 3, "{pairs:?}");

    targets[2].set(Reply::no_upstreams());
    let healthy = ips(&["192.0.2.41", "192.0.2.42"]);
    let t0 = Instant::now();
    let down = poll_answer(
        &g,
        "two.gslb.test",
        t0,
        Duration::from_secs(10),
        |s| *s == healthy,
        |s| assert_eq!(s.len(), 2, "{s:?}"),
    );
    assert!(down.is_some(), "r never left; logs:\n{}", g.logs());
    g.wait_log(
        &format!("target r {} (check hc) is now DOWN", targets[2].addr),
        Duration::from_secs(2),
    );
    // The flip is logged just before the publisher stores the next snapshot, and the
    // poll above can match by chance (the healthy pair is one of three), so wait for
    // the published state before demanding it on every answer.
    let settled = wait_until(Duration::from_secs(2), || {
        (0..20).all(|_| {
            answer(&g, "two.gslb.test")
                .iter()
                .copied()
                .collect::<BTreeSet<_>>()
                == healthy
        })
    });
    assert!(settled.is_some(), "r still answered; logs:\n{}", g.logs());
    for _ in 0..100 {
        let v = answer(&g, "two.gslb.test");
        assert_eq!(v.len(), 2, "{v:?}");
        assert_eq!(v.iter().copied().collect::<BTreeSet<_>>(), healthy, "{v:?}");
    }
}

/// 9. IPv6 probes, and a probe address that differs from the answer addresses: the
///    gateway answers with 192.0.2.61 and 2001:db8::61 but is probed at [::1]:port
///    (an internal VIP, say); when that target fails, both the A and the AAAA answers
///    lose it, while the other gateway (probed over IPv4) stays.
#[test]
fn ipv6_probe_address_separate_from_answers() {
    let v6 = HttpTarget::start("::1", Reply::ok());
    let v4 = HttpTarget::start("127.0.0.62", Reply::ok());
    assert!(v6.addr.is_ipv6());
    let cfg = format!(
        r#"{ZONE}
[[gateway]]
name = "six"
addresses = ["192.0.2.61", "2001:db8::61"]
probe = "{}"
[[gateway]]
name = "four"
addresses = ["192.0.2.62", "2001:db8::62"]
probe = "{}"
[[check]]
name = "hc"
kind = "http"
path = "/hc"
interval = "300ms"
timeout = "250ms"
rise = 1
fall = 2
[[service]]
name = "dual.gslb.test"
check = "hc"
answers = 2
endpoints = [{{ gateway = "six" }}, {{ gateway = "four" }}]
"#,
        v6.addr, v4.addr
    );
    let g = Gslb::start(&cfg);
    wait_hits(&v6, 1, &g);
    let both4 = ips(&["192.0.2.61", "192.0.2.62"]);
    assert_eq!(answer_set(&g, "dual.gslb.test"), both4);
    let aaaa = |g: &Gslb| -> BTreeSet<std::net::Ipv6Addr> {
        aaaa_records(&query(g.addr, "dual.gslb.test", RecordType::AAAA))
            .into_iter()
            .collect()
    };
    let six: std::net::Ipv6Addr = "2001:db8::61".parse().unwrap();
    let four: std::net::Ipv6Addr = "2001:db8::62".parse().unwrap();
    assert_eq!(aaaa(&g), [six, four].into_iter().collect());

    v6.set(Reply::no_upstreams());
    let gone = wait_until(Duration::from_secs(3), || {
        answer_set(&g, "dual.gslb.test") == ips(&["192.0.2.62"])
    });
    assert!(gone.is_some(), "logs:\n{}", g.logs());
    assert_eq!(aaaa(&g), [four].into_iter().collect());
    g.wait_log(
        &format!("target six {} (check hc) is now DOWN: http 503", v6.addr),
        Duration::from_secs(2),
    );

    v6.set(Reply::ok());
    let back = wait_until(Duration::from_secs(3), || {
        answer_set(&g, "dual.gslb.test") == both4
    });
    assert!(back.is_some(), "logs:\n{}", g.logs());
    assert_eq!(aaaa(&g), [six, four].into_iter().collect());
}

use crate::common::paused;
use crate::common::paused::{Hang, Probed};

/// Two gateways `a` and `b` probed at `a_addr` and `b_addr` by check `hc` (`check` is
/// the rest of its table), in one service with both endpoints.
fn two_gateways(service: &str, a_addr: SocketAddr, b_addr: SocketAddr, check: &str) -> String {
    format!(
        r#"{ZONE}
[[gateway]]
name = "a"
addresses = ["192.0.2.1"]
probe = "{a_addr}"
[[gateway]]
name = "b"
addresses = ["192.0.2.2"]
probe = "{b_addr}"
[[check]]
name = "hc"
jitter = "0s"
{check}
[[service]]
name = "{service}"
check = "hc"
answers = 2
endpoints = [{{ gateway = "a" }}, {{ gateway = "b" }}]
"#
    )
}

/// 2 (timing, in process; the answers and log lines are checked end to end in #2). A
/// 503 "no healthy upstreams" takes the target DOWN on exactly the `fall`-th failed
/// probe, within interval × fall + timeout of the change, with the reason in the log; a
/// 200 brings it back on exactly the `rise`-th passing probe. Probes run at 0, 500,
/// 1000 ... ms (no jitter).
#[test]
fn paused_http_503_flips_on_the_exact_probe() {
    let a = HttpTarget::start("127.0.0.46", Reply::ok());
    let b = HttpTarget::start("127.0.0.47", Reply::ok());
    let cfg = two_gateways(
        "app.gslb.test",
        a.addr,
        b.addr,
        "kind = \"http\"\npath = \"/hc\"\ninterval = \"500ms\"\ntimeout = \"200ms\"\nrise = 3\nfall = 2",
    );
    let (interval, timeout, rise, fall) = (500u64, 200u64, 3u64, 2u64);
    paused::run(|logs| async move {
        let p = Probed::start(&cfg);
        let (ta, tb) = (p.target(a.addr, "hc"), p.target(b.addr, "hc"));
        let both = [ta, tb];
        p.round(0, &both, 1).await;
        p.round(500, &both, 2).await;
        assert!(p.up(ta) && p.up(tb));

        // Failover: the target fails from just after the probe at 500 ms on.
        a.set(Reply::no_upstreams());
        let switched = p.now_ms();
        let mut down_at = None;
        for (k, ms) in (1000..=2000).step_by(interval as usize).enumerate() {
            p.round(ms, &both, 3 + k as u64).await;
            assert!(p.up(tb), "b flipped at {ms}ms");
            if !p.up(ta) && down_at.is_none() {
                down_at = Some(ms);
            }
            // It stays out while the target keeps failing.
            assert_eq!(p.up(ta), ms < 1500, "a at {ms}ms");
        }
        let down = down_at.unwrap() - switched;
        // Exactly `fall` intervals: the failed probes at 1000 and 1500 ms.
        assert_eq!(down, interval * fall);
        assert!(down <= interval * fall + timeout);
        assert!(down >= interval * (fall - 1) - timeout);
        let text = logs.text();
        let down_line = format!(
            "target a {} (check hc) is now DOWN: http 503 \"no healthy upstreams\" (services: app.gslb.test.)",
            a.addr
        );
        assert!(text.contains(&down_line), "{text}");
        assert_eq!(text.matches("is now DOWN").count(), 1, "{text}");
        assert!(!text.contains(&format!("{} (check hc) is now", b.addr)));
        assert_eq!(p.outcome("hc", "failure"), 3);
        assert_eq!(p.transitions("hc", "down"), 1);

        // Recovery: passing from just after the probe at 2000 ms on.
        a.set(Reply::ok());
        let switched = p.now_ms();
        let mut up_at = None;
        for (k, ms) in (2500..=4000).step_by(interval as usize).enumerate() {
            p.round(ms, &both, 6 + k as u64).await;
            if p.up(ta) && up_at.is_none() {
                up_at = Some(ms);
            }
            assert_eq!(p.up(ta), ms >= 3500, "a at {ms}ms");
        }
        let up = up_at.unwrap() - switched;
        assert_eq!(up, interval * rise);
        assert!(up <= interval * rise + timeout);
        assert!(up >= interval * (rise - 1) - timeout);
        let text = logs.text();
        assert!(
            text.contains(&format!(
                "target a {} (check hc) is now UP (services: app.gslb.test.)",
                a.addr
            )),
            "{text}"
        );
        assert_eq!(p.transitions("hc", "up"), 1);
        // Every probe reached its target: 9 rounds, 9 requests each.
        assert_eq!(a.hits.load(Ordering::SeqCst), 9);
        assert_eq!(b.hits.load(Ordering::SeqCst), 9);
    });
}

/// A target's first result sets its state (issue 10): with fall = 3, a gateway that
/// answers 503 from the start is DOWN after its first probe, not its third, and one that
/// answers 200 stays UP; hysteresis applies from then on (one failed probe of the
/// healthy one does not flip it).
#[test]
fn paused_first_result_sets_the_state() {
    let a = HttpTarget::start("127.0.0.48", Reply::no_upstreams());
    let b = HttpTarget::start("127.0.0.49", Reply::ok());
    let cfg = two_gateways(
        "first.gslb.test",
        a.addr,
        b.addr,
        "kind = \"http\"\npath = \"/hc\"\ninterval = \"500ms\"\ntimeout = \"200ms\"\nrise = 3\nfall = 3",
    );
    paused::run(|logs| async move {
        let p = Probed::start(&cfg);
        let (ta, tb) = (p.target(a.addr, "hc"), p.target(b.addr, "hc"));
        let both = [ta, tb];
        p.round(0, &both, 1).await;
        assert!(!p.up(ta), "a never reachable, yet UP after its first probe");
        assert!(p.up(tb));
        assert_eq!(p.transitions("hc", "down"), 1);
        let text = logs.text();
        assert!(
            text.contains(&format!("target a {} (check hc) is now DOWN", a.addr)),
            "{text}"
        );
        // From the second probe on, hysteresis: one failure of b moves nothing.
        b.set(Reply::no_upstreams());
        p.round(500, &both, 2).await;
        assert!(p.up(tb));
        assert!(!p.up(ta));
        b.set(Reply::ok());
        p.round(1000, &both, 3).await;
        assert!(p.up(tb));
        // And a needs `rise` passing probes to come back.
        a.set(Reply::ok());
        p.round(1500, &both, 4).await;
        p.round(2000, &both, 5).await;
        assert!(!p.up(ta));
        p.round(2500, &both, 6).await;
        assert!(p.up(ta));
    });
}

/// 3. A 503 seen by exactly one probe (shorter than one interval) does not take the
///    endpoint out when fall = 2: the probe that saw it failed, the following ones
///    passed, nothing flipped, and the target was UP at every probe.
#[test]
fn short_503_blip_does_not_remove_endpoint() {
    let a = HttpTarget::start("127.0.0.32", Reply::ok());
    let b = HttpTarget::start("127.0.0.33", Reply::ok());
    let cfg = two_gateways(
        "blip.gslb.test",
        a.addr,
        b.addr,
        "kind = \"http\"\npath = \"/hc\"\ninterval = \"500ms\"\ntimeout = \"200ms\"\nrise = 2\nfall = 2",
    );
    paused::run(|logs| async move {
        let p = Probed::start(&cfg);
        let (ta, tb) = (p.target(a.addr, "hc"), p.target(b.addr, "hc"));
        let both = [ta, tb];
        // The outcomes of a's probes so far, from the debug log (true = ok).
        let probes_of_a = || -> Vec<bool> {
            let needle = format!("probe done target=a {} ", a.addr);
            logs.text()
                .lines()
                .filter(|l| l.contains(&needle))
                .map(|l| l.contains("ok=true"))
                .collect()
        };
        p.round(0, &both, 1).await;
        p.round(500, &both, 2).await;
        let before = probes_of_a();
        assert_eq!(before, [true, true]);

        // Between two probes, the target answers the next request, and only that one,
        // with 503: exactly the probe at 1000 ms sees the blip.
        let h0 = a.hits.load(Ordering::SeqCst);
        a.set_once(Reply::no_upstreams());
        for (k, ms) in [1000, 1500, 2000, 2500].into_iter().enumerate() {
            p.round(ms, &both, 3 + k as u64).await;
            assert!(p.up(ta) && p.up(tb), "endpoint left at {ms}ms after a blip");
        }
        // Probes went on after the blip (so fall = 2 had its chance) ...
        assert!(a.hits.load(Ordering::SeqCst) >= h0 + 3);
        assert_eq!(a.hits.load(Ordering::SeqCst), h0 + 4);
        // ... and of a's probes from the blip on, exactly the first failed (it saw the
        // 503) and the following ones passed; nothing flipped.
        let after = probes_of_a()[before.len()..].to_vec();
        assert_eq!(after, [false, true, true, true]);
        assert!(after.len() >= 3 && !after[0] && after[1..].iter().all(|ok| *ok));
        let text = logs.text();
        assert!(!text.contains("is now DOWN"), "{text}");
        assert!(!text.contains("is now UP"), "{text}");
        assert_eq!(p.outcome("hc", "failure"), 1);
    });
}

/// 5. A TCP check: while the listener accepts the endpoint stays; when it goes away the
///    target is DOWN on the `fall`-th refused connect, within interval × fall +
///    timeout, and the log says why (`connect refused`).
#[test]
fn tcp_check_detects_closed_listener() {
    let t = TcpTarget::start("127.0.0.36");
    let c = TcpTarget::start("127.0.0.37");
    let cfg = format!(
        r#"{ZONE}
[[gateway]]
name = "t"
addresses = ["192.0.2.36"]
probe = "{}"
[[gateway]]
name = "c"
addresses = ["192.0.2.37"]
probe = "{}"
[[check]]
name = "tcp"
kind = "tcp"
interval = "300ms"
timeout = "250ms"
jitter = "0s"
fall = 2
[[service]]
name = "tcp.gslb.test"
check = "tcp"
answers = 2
endpoints = [{{ gateway = "t" }}, {{ gateway = "c" }}]
"#,
        t.addr, c.addr
    );
    let (interval, timeout, fall) = (300u64, 250u64, 2u64);
    paused::run(|logs| async move {
        let p = Probed::start(&cfg);
        let (tt, tc) = (p.target(t.addr, "tcp"), p.target(c.addr, "tcp"));
        let both = [tt, tc];
        // A few probes pass: the endpoint stays while the listener accepts.
        for (k, ms) in [0, 300, 600].into_iter().enumerate() {
            p.round(ms, &both, 1 + k as u64).await;
            assert!(p.up(tt) && p.up(tc), "{ms}ms");
        }
        assert!(!logs.text().contains("is now DOWN"));

        t.close();
        // The listener is really gone before the next probe.
        paused::until("listener closed", || {
            std::net::TcpStream::connect(t.addr).is_err()
        })
        .await;
        let closed = p.now_ms();
        p.round(900, &both, 4).await;
        assert!(p.up(tt), "one refused connect is not fall = 2");
        p.round(1200, &both, 5).await;
        assert!(!p.up(tt) && p.up(tc));
        let down = 1200 - closed;
        assert_eq!(down, interval * fall);
        assert!(
            down <= interval * fall + timeout,
            "tcp failover took {down}ms"
        );
        let text = logs.text();
        assert!(
            text.contains(&format!(
                "target t {} (check tcp) is now DOWN: connect refused (services: tcp.gslb.test.)",
                t.addr
            )),
            "{text}"
        );
        assert_eq!(text.matches("is now DOWN").count(), 1, "{text}");
    });
}

/// 8. One probe target shared by several services and gateways is probed once per
///    interval in total, not once per service or endpoint: exactly one probe per
///    interval over three seconds, and one flip that names both services.
#[test]
fn shared_target_probed_once_per_interval() {
    let t = HttpTarget::start("127.0.0.44", Reply::ok());
    let cfg = format!(
        r#"{ZONE}
[[gateway]]
name = "g1"
addresses = ["192.0.2.44"]
probe = "{0}"
[[gateway]]
name = "g2"
addresses = ["192.0.2.45"]
probe = "{0}"
[[check]]
name = "hc"
kind = "http"
path = "/hc"
interval = "200ms"
timeout = "150ms"
jitter = "0s"
fall = 2
[[service]]
name = "s1.gslb.test"
check = "hc"
endpoints = [{{ gateway = "g1" }}]
[[service]]
name = "s2.gslb.test"
check = "hc"
endpoints = [{{ gateway = "g1" }}, {{ gateway = "g2" }}]
"#,
        t.addr
    );
    paused::run(|logs| async move {
        let p = Probed::start(&cfg);
        // Three endpoints in two services over two gateways: one probe target.
        assert_eq!(p.plan.targets.len(), 1);
        assert_eq!(p.metrics.targets.get(), 1);
        // 0, 200, ..., 3000 ms: 16 probes, each one request; per-service probing would
        // make twice as many, per-endpoint three times.
        for k in 0..=15u64 {
            p.round(k * 200, &[0], k + 1).await;
        }
        assert_eq!(t.hits.load(Ordering::SeqCst), 16);
        assert_eq!(p.outcome("hc", "success"), 16);

        // One target, so one flip, naming both services.
        t.set(Reply::no_upstreams());
        p.round(3200, &[0], 17).await;
        p.round(3400, &[0], 18).await;
        assert!(!p.up(0));
        let text = logs.text();
        assert!(
            text.contains(&format!(
                "target g1,g2 {} (check hc) is now DOWN: http 503 \"no healthy upstreams\" (services: s1.gslb.test., s2.gslb.test.)",
                t.addr
            )),
            "{text}"
        );
        assert_eq!(text.matches("is now DOWN").count(), 1, "{text}");
    });
}

/// 10. Timeouts on a hung target (accepts, reads, never answers): each probe fails at
///     exactly its timeout with `timeout after 200ms`, and the target is DOWN at the
///     `fall`-th one, at interval × (fall - 1) + timeout. The hung target never delays
///     a healthy one probed on the same schedule. A timeout whose timer fired far too
///     late (the runtime stalled past timeout + slack) is inconclusive: counted as
///     such, kept out of the verdict.
#[test]
fn paused_hung_target_times_out_exactly() {
    let hung = Hang::start("127.0.0.48");
    let ok = HttpTarget::start("127.0.0.49", Reply::ok());
    let cfg = two_gateways(
        "hang.gslb.test",
        hung.addr,
        ok.addr,
        "kind = \"http\"\npath = \"/hc\"\ninterval = \"1s\"\ntimeout = \"200ms\"\nrise = 1\nfall = 2",
    );
    paused::run(|logs| async move {
        let p = Probed::start(&cfg);
        let (th, tok) = (p.target(hung.addr, "hc"), p.target(ok.addr, "hc"));

        // 0 ms: both probes start; the healthy one is done at once, the hung one waits.
        p.round(0, &[tok], 1).await;
        paused::until("first request to the hung target", || hung.accepted() == 1).await;
        assert_eq!(p.probes(th), 0);
        p.advance_to(199).await;
        assert_eq!(p.probes(th), 0, "a probe ended before its timeout");
        p.round(200, &[th], 1).await;
        let d = p.states[th].detail();
        let reason = d.last.unwrap().unwrap_err();
        assert_eq!(reason.to_string(), "timeout after 200ms");
        assert_eq!(d.last_duration, Some(Duration::from_millis(200)));
        // Never reachable: its first result sets it DOWN, whatever fall says.
        assert!(
            !p.up(th),
            "a target that never answered is DOWN after its first probe"
        );
        assert_eq!(p.outcome("hc", "timeout"), 1);

        // 1000 ms: the healthy target is probed on time although the hung one hangs again.
        p.round(1000, &[tok], 2).await;
        paused::until("second request to the hung target", || hung.accepted() == 2).await;
        p.round(1200, &[th], 2).await;
        assert!(!p.up(th) && p.up(tok));
        let text = logs.text();
        assert!(
            text.contains(&format!(
                "target a {} (check hc) is now DOWN: timeout after 200ms (services: hang.gslb.test.)",
                hung.addr
            )),
            "{text}"
        );
        assert_eq!(p.outcome("hc", "timeout"), 2);

        // 2000 ms: the timer fires 300 ms after the probe began, late but within
        // timeout + slack (200 + 100 ms): still the target's timeout.
        p.round(2000, &[tok], 3).await;
        paused::until("third request to the hung target", || hung.accepted() == 3).await;
        p.round(2300, &[th], 3).await;
        assert_eq!(p.outcome("hc", "timeout"), 3);
        assert_eq!(p.outcome("hc", "inconclusive"), 0);

        // 3000 ms: this time the runtime "stalls" and the timer fires 301 ms after the
        // probe began, past timeout + slack: inconclusive.
        p.round(3000, &[tok], 4).await;
        paused::until("fourth request to the hung target", || hung.accepted() == 4).await;
        let late_before = p.metrics.probes_late.get();
        p.advance_to(3301).await;
        paused::until("the inconclusive probe", || {
            p.outcome("hc", "inconclusive") == 1
        })
        .await;
        assert_eq!(p.probes(th), 3, "an inconclusive probe is not a result");
        assert_eq!(p.outcome("hc", "timeout"), 3);
        assert_eq!(p.metrics.probes_late.get(), late_before + 1);
        assert!(!p.up(th));
        assert_eq!(p.transitions("hc", "down"), 1);
        assert_eq!(p.outcome("hc", "success"), 4);
    });
}

/// 11. A reload keeps what it can: the same check on the same address keeps its task
///     and state; a changed check (a new timeout) starts a new probe that inherits the
///     verdict, so the change does not flap it.
#[test]
fn paused_reload_keeps_and_inherits_verdicts() {
    let a = HttpTarget::start("127.0.0.50", Reply::no_upstreams());
    let b = HttpTarget::start("127.0.0.51", Reply::ok());
    let check = |timeout: &str| {
        format!(
            "kind = \"http\"\npath = \"/hc\"\ninterval = \"1s\"\ntimeout = \"{timeout}\"\nrise = 1\nfall = 1"
        )
    };
    let first = two_gateways("app.gslb.test", a.addr, b.addr, &check("200ms"));
    let second = two_gateways("app.gslb.test", a.addr, b.addr, &check("300ms"));
    paused::run(|_logs| async move {
        let mut p = Probed::start(&first);
        let (ta, tb) = (p.target(a.addr, "hc"), p.target(b.addr, "hc"));
        p.round(0, &[ta, tb], 1).await;
        assert!(!p.up(ta) && p.up(tb));

        // The same config again: the very same states, no new probe.
        let old = p.reload(&first);
        assert!(Arc::ptr_eq(&old[ta], &p.states[ta]));
        assert!(Arc::ptr_eq(&old[tb], &p.states[tb]));

        // A new timeout: new probes, which start from the old verdicts.
        let old = p.reload(&second);
        assert!(!Arc::ptr_eq(&old[ta], &p.states[ta]));
        assert!(!p.up(ta) && p.up(tb));
        assert!(!p.states[ta].probed() && !p.states[tb].probed());
        // They probe from now on: a fails again, b passes.
        p.round(0, &[ta, tb], 1).await;
        assert!(!p.up(ta) && p.up(tb));
        assert_eq!(p.transitions("hc", "down"), 1, "inheriting is not flipping");
    });
}

/// 12. `max_concurrent_probes` bounds the probes in flight: with one slot held by a
///     hung target, a healthy target's probe waits for it, starts exactly when the hung
///     probe times out, and is counted late (its lag, 200 ms, is over a tenth of the
///     interval); its own result is unaffected.
#[test]
fn paused_probe_waiting_for_a_slot_is_late() {
    let hung = Hang::start("127.0.0.52");
    let ok = HttpTarget::start("127.0.0.53", Reply::ok());
    let check = "kind = \"http\"\npath = \"/hc\"\ninterval = \"1s\"\ntimeout = \"200ms\"\nrise = 1\nfall = 1";
    let both = format!(
        "[health]\nmax_concurrent_probes = 1\n{}",
        two_gateways("slot.gslb.test", hung.addr, ok.addr, check)
    );
    // The same, without the healthy gateway's endpoint: only the hung target.
    let only_hung = both.replace(
        "endpoints = [{ gateway = \"a\" }, { gateway = \"b\" }]",
        "endpoints = [{ gateway = \"a\" }]",
    );
    paused::run(|logs| async move {
        let mut p = Probed::start(&only_hung);
        assert_eq!(p.plan.targets.len(), 1);
        paused::until("the hung probe holds the slot", || hung.accepted() == 1).await;
        // The healthy target joins while the only slot is taken.
        p.reload(&both);
        let (th, tok) = (p.target(hung.addr, "hc"), p.target(ok.addr, "hc"));
        assert_eq!(p.metrics.probes_late.get(), 0);
        p.advance_to(199).await;
        assert_eq!(ok.hits.load(Ordering::SeqCst), 0, "probed without a slot");
        // 200 ms: the hung probe times out and hands the slot on.
        p.round(200, &[th, tok], 1).await;
        assert_eq!(ok.hits.load(Ordering::SeqCst), 1);
        assert_eq!(p.states[tok].detail().last, Some(Ok(())));
        assert!(p.up(tok) && !p.up(th));
        assert_eq!(p.metrics.probes_late.get(), 1);
        assert_eq!(p.metrics.probe_lag.get_sample_count(), 2);
        assert!((p.metrics.probe_lag.get_sample_sum() - 0.2).abs() < 1e-9);
        assert!(
            logs.text()
                .contains("probes are falling behind their schedule: target b "),
            "{}",
            logs.text()
        );
    });
}
