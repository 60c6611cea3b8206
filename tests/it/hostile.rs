//! Targets that misbehave: hang, dribble their headers, send an endless body, stall the
//! TLS handshake, reset connections, and two hundred of them hanging at once. Each
//! fails with its own precise reason, and a healthy target probed at the same time on
//! the same interval keeps its schedule and its place in the answers throughout.
//! Probe targets live on 127.0.0.210-127.0.0.254; answers are 192.0.2.x.

use crate::common::tls::*;
use crate::common::*;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

// Generous against scheduler stalls of a busy shared CI machine: a healthy loopback
// probe must never come near the timeout, and a reset must stay far below half of it.
const INTERVAL_MS: u64 = 700;
const TIMEOUT_MS: u64 = 600;
/// The reason a probe that hit the timeout gives.
fn timeout_reason() -> String {
    format!("timeout after {TIMEOUT_MS}ms")
}

/// How long the healthy target's schedule is watched.
const WINDOW: Duration = Duration::from_secs(6);

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn logs(g: &Gslb) -> String {
    g.logs()
}

/// A check with the common schedule (rise = fall = 2) and `body` for the rest.
fn check(name: &str, body: &str) -> String {
    format!(
        "[[check]]\nname = \"{name}\"\ninterval = \"{INTERVAL_MS}ms\"\ntimeout = \"{TIMEOUT_MS}ms\"\nrise = 2\nfall = 2\n{body}\n"
    )
}

/// Hostile gateways `<name>0`, `<name>1`, ... (answers 192.0.2.x from `base` + 1 up) in
/// one fail_closed service `<name>.gslb.test` judged by `check_name`.
fn hostile_part(addrs: &[SocketAddr], name: &str, check_name: &str, base: usize) -> String {
    let mut s = String::new();
    for (i, a) in addrs.iter().enumerate() {
        s += &format!(
            "[[gateway]]\nname = \"{name}{i}\"\naddresses = [\"192.0.{}.{}\"]\nprobe = \"{a}\"\n\n",
            2 + (i + base) / 250,
            (i + base) % 250 + 1
        );
    }
    let eps: Vec<String> = (0..addrs.len())
        .map(|i| format!("{{ gateway = \"{name}{i}\" }}"))
        .collect();
    s += &format!(
        "[[service]]\nname = \"{name}.gslb.test\"\ncheck = \"{check_name}\"\nall_down = \"fail_closed\"\nendpoints = [{}]\n\n",
        eps.join(", ")
    );
    s
}

/// The config: the healthy gateway `ok` (192.0.2.1, its own http check `hc` with the
/// same schedule, service `healthy.gslb.test`) plus `rest`.
fn config(healthy: &HttpTarget, rest: &str) -> String {
    format!(
        "{ZONE}\n[[gateway]]\nname = \"ok\"\naddresses = [\"192.0.2.1\"]\nprobe = \"{}\"\n\n{}[[service]]\nname = \"healthy.gslb.test\"\ncheck = \"hc\"\nall_down = \"fail_closed\"\nendpoints = [{{ gateway = \"ok\" }}]\n\n{rest}",
        healthy.addr,
        check("hc", "kind = \"http\"\npath = \"/hc\"\n"),
    )
}

/// Watches the healthy target for `WINDOW` while the hostile ones are probed: it stays
/// in the answers on every query, and is probed once per interval (at least 90% of
/// elapsed / interval, at most one more than that). `tick` runs on every round.
fn watch_healthy(g: &Gslb, healthy: &HttpTarget, mut tick: impl FnMut()) {
    let ok = wait_until(Duration::from_secs(10), || {
        healthy.hits.load(Ordering::SeqCst) >= 1
    });
    assert!(ok.is_some(), "healthy target never probed; {}", logs(g));
    let h0 = healthy.hits.load(Ordering::SeqCst);
    let t0 = Instant::now();
    let want: BTreeSet<Ipv4Addr> = [ip("192.0.2.1")].into();
    let mut rounds = 0;
    while t0.elapsed() < WINDOW {
        let got = answered_set(g.addr, "healthy.gslb.test", 1);
        assert_eq!(
            got,
            want,
            "healthy target left the answers {:?} into the window; logs:\n{}",
            t0.elapsed(),
            logs(g)
        );
        tick();
        rounds += 1;
        thread::sleep(Duration::from_millis(20));
    }
    let hits = healthy.hits.load(Ordering::SeqCst) - h0;
    let elapsed = t0.elapsed();
    let expected = elapsed.as_secs_f64() * 1000.0 / INTERVAL_MS as f64;
    eprintln!(
        "healthy: {hits} probes in {elapsed:?} ({expected:.1} intervals), {rounds} answers checked"
    );
    assert!(
        hits as f64 >= expected * 0.9 && hits as f64 <= expected + 1.5,
        "healthy target probed {hits} times in {elapsed:?} ({expected:.1} intervals); logs:\n{}",
        logs(g)
    );
    let text = logs(g);
    assert!(
        !text.contains(&format!("target ok {} (check hc) is now", healthy.addr)),
        "{text}"
    );
    assert!(
        probes_of(&text, &format!("ok {} (check hc)", healthy.addr))
            .iter()
            .all(|p| p.0),
        "a healthy probe failed: {text}"
    );
}

fn down_line(gw: &str, addr: SocketAddr, check: &str, reason: &str, service: &str) -> String {
    format!("target {gw} {addr} (check {check}) is now DOWN: {reason} (services: {service}.)")
}

/// Asserts the one DOWN line of a single hostile target, its empty answer, and that
/// every probe of it failed; returns its probes (ok, ms).
fn assert_down(g: &Gslb, addr: SocketAddr, check: &str, reason: &str) -> Vec<(bool, u64)> {
    let line = down_line("bad0", addr, check, reason, "bad.gslb.test");
    g.wait_log(&line, Duration::from_secs(5));
    let text = logs(g);
    assert_eq!(text.matches("is now DOWN").count(), 1, "{text}");
    assert!(!text.contains("is now UP"), "{text}");
    assert!(answered_set(g.addr, "bad.gslb.test", 1).is_empty());
    let probes = probes_of(&text, &format!("bad0 {addr} (check {check})"));
    assert!(
        probes.len() >= 3 && probes.iter().all(|p| !p.0),
        "{probes:?}"
    );
    probes
}

// ------------------------------------------------------------------------------ tests

/// A target that accepts and never answers: `timeout after <TIMEOUT_MS>ms`, each probe taking
/// the whole timeout and no more.
#[test]
fn hung_http_target_times_out() {
    let healthy = HttpTarget::start("127.0.0.210", Reply::ok());
    let bad = Hostile::start("127.0.0.211", Misbehaviour::Hang);
    let g = Gslb::start(&config(
        &healthy,
        &format!(
            "{}{}",
            check("bad", "kind = \"http\"\npath = \"/hc\"\n"),
            hostile_part(&[bad.addr()], "bad", "bad", 10)
        ),
    ));
    watch_healthy(&g, &healthy, || {});
    let probes = assert_down(&g, bad.addr(), "bad", &timeout_reason());
    assert!(
        probes.iter().all(|p| p.1 >= TIMEOUT_MS),
        "a hung probe ended before its timeout: {probes:?}"
    );
    // The requests really arrived and were left unanswered.
    assert!(bad.http_requests.load(Ordering::SeqCst) >= 3);
}

/// A target that sends its response headers one byte per second: `timeout after <TIMEOUT_MS>ms`.
#[test]
fn slow_headers_time_out() {
    let healthy = HttpTarget::start("127.0.0.212", Reply::ok());
    let bad = Hostile::start("127.0.0.213", Misbehaviour::SlowHeaders);
    let g = Gslb::start(&config(
        &healthy,
        &format!(
            "{}{}",
            check("bad", "kind = \"http\"\npath = \"/hc\"\n"),
            hostile_part(&[bad.addr()], "bad", "bad", 10)
        ),
    ));
    watch_healthy(&g, &healthy, || {});
    let probes = assert_down(&g, bad.addr(), "bad", &timeout_reason());
    assert!(probes.iter().all(|p| p.1 >= TIMEOUT_MS), "{probes:?}");
    assert!(bad.http_requests.load(Ordering::SeqCst) >= 3);
}

/// A 200 with an endless body while the check wants "ok" in it: the probe stops at the
/// body limit and fails with the `body lacks` reason at once, not with a timeout.
#[test]
fn endless_body_fails_at_the_limit() {
    let healthy = HttpTarget::start("127.0.0.214", Reply::ok());
    let bad = Hostile::start("127.0.0.215", Misbehaviour::EndlessBody);
    let g = Gslb::start(&config(
        &healthy,
        &format!(
            "{}{}",
            check(
                "bad",
                "kind = \"http\"\npath = \"/hc\"\nexpect_body = \"ok\"\nbody_limit = 10000\n"
            ),
            hostile_part(&[bad.addr()], "bad", "bad", 10)
        ),
    ));
    watch_healthy(&g, &healthy, || {});
    let probes = assert_down(
        &g,
        bad.addr(),
        "bad",
        "http 200 body lacks \"ok\" in its first 10000 bytes",
    );
    // Quick: well under the timeout (reading 10 kB over loopback takes a few ms).
    assert!(
        probes.iter().all(|p| p.1 < TIMEOUT_MS / 2),
        "endless-body probes took too long: {probes:?}"
    );
    // The server really kept sending (more than the limit), and the probe hung up.
    assert!(bad.body_bytes.load(Ordering::SeqCst) > 10_000);
    assert!(!logs(&g).contains("timeout after"));
}

/// A `tls` check against a server that accepts TCP, reads the ClientHello and never
/// sends a ServerHello: `timeout after <TIMEOUT_MS>ms`.
#[test]
fn stalled_tls_handshake_times_out() {
    let healthy = HttpTarget::start("127.0.0.216", Reply::ok());
    let bad = Hostile::start("127.0.0.217", Misbehaviour::Hang);
    let g = Gslb::start(&config(
        &healthy,
        &format!(
            "{}{}",
            check(
                "bad",
                "kind = \"tls\"\nsni = \"gw.test\"\ninsecure = true\n"
            ),
            hostile_part(&[bad.addr()], "bad", "bad", 10)
        ),
    ));
    watch_healthy(&g, &healthy, || {});
    let probes = assert_down(&g, bad.addr(), "bad", &timeout_reason());
    assert!(probes.iter().all(|p| p.1 >= TIMEOUT_MS), "{probes:?}");
    // What arrived was a TLS handshake record (the ClientHello), never an HTTP request.
    assert!(bad.tls_hellos.load(Ordering::SeqCst) >= 3);
    assert_eq!(bad.http_requests.load(Ordering::SeqCst), 0);
}

/// A server that accepts, reads the request (or the ClientHello), then closes with
/// SO_LINGER 0 — a TCP RST. The TCP connect itself succeeds (the kernel completes the
/// handshake before accept), so the reset is seen on the read: an `http` check says
/// `http reset` (the reset comes while hyper waits for the response, not during
/// connect, so not `connect reset`), a `tls` check says `tls handshake reset`, and a
/// `tcp` check, which only connects, passes.
#[test]
fn reset_connections_are_reported() {
    let healthy = HttpTarget::start("127.0.0.218", Reply::ok());
    let bad = Hostile::start("127.0.0.219", Misbehaviour::Reset);
    let addr = bad.addr();
    let g = Gslb::start(&config(
        &healthy,
        &format!(
            "{}{}{}{}{}{}",
            check("rsthttp", "kind = \"http\"\npath = \"/hc\"\n"),
            check(
                "rsttls",
                "kind = \"tls\"\nsni = \"gw.test\"\ninsecure = true\n"
            ),
            check("rsttcp", "kind = \"tcp\"\n"),
            hostile_part(&[addr], "h", "rsthttp", 10),
            hostile_part(&[addr], "t", "rsttls", 11),
            hostile_part(&[addr], "c", "rsttcp", 12),
        ),
    ));
    watch_healthy(&g, &healthy, || {});
    g.wait_log(
        &down_line("h0", addr, "rsthttp", "http reset", "h.gslb.test"),
        Duration::from_secs(5),
    );
    g.wait_log(
        &down_line("t0", addr, "rsttls", "tls handshake reset", "t.gslb.test"),
        Duration::from_secs(5),
    );
    let text = logs(&g);
    assert_eq!(text.matches("is now DOWN").count(), 2, "{text}");
    assert!(answered_set(g.addr, "h.gslb.test", 1).is_empty());
    assert!(answered_set(g.addr, "t.gslb.test", 1).is_empty());
    // The tcp check connects and is content.
    assert_eq!(
        answered_set(g.addr, "c.gslb.test", 1),
        [ip("192.0.2.13")].into()
    );
    let tcp = probes_of(&text, &format!("c0 {addr} (check rsttcp)"));
    assert!(tcp.len() >= 3 && tcp.iter().all(|p| p.0), "{tcp:?}");
    for l in [
        format!("h0 {addr} (check rsthttp)"),
        format!("t0 {addr} (check rsttls)"),
    ] {
        let p = probes_of(&text, &l);
        // A reset is immediate: nothing waits for the timeout.
        assert!(
            p.len() >= 3 && p.iter().all(|x| !x.0 && x.1 < TIMEOUT_MS / 2),
            "{l}: {p:?}"
        );
    }
    assert!(bad.http_requests.load(Ordering::SeqCst) >= 3);
    assert!(bad.tls_hellos.load(Ordering::SeqCst) >= 3);
}

/// Two hundred hung targets (each probe holds its connection for the whole timeout)
/// next to one healthy target, with enough probe slots: the healthy target's schedule
/// is unaffected, and every hung one goes DOWN with a timeout.
#[test]
fn two_hundred_hung_targets() {
    const N: usize = 200;
    let healthy = HttpTarget::start("127.0.0.220", Reply::ok());
    let bad = Hostile::start_many("127.0.0.250", N, Misbehaviour::Hang);
    let g = Gslb::start(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets = 1\n\n[health]\nmax_concurrent_probes = 1024\n\n{}",
        config(
            &healthy,
            &format!(
                "{}{}",
                check("bad", "kind = \"http\"\npath = \"/hc\"\n"),
                hostile_part(&bad.addrs, "bad", "bad", 10)
            ),
        )
    ));
    g.wait_log("serving", Duration::from_secs(5));
    assert!(
        logs(&g).contains(&format!("targets={}", N + 1)),
        "{}",
        logs(&g)
    );
    let mut max_held = 0;
    watch_healthy(&g, &healthy, || {
        max_held = max_held.max(bad.held.load(Ordering::SeqCst));
    });
    let all_down = wait_until(Duration::from_secs(5), || {
        logs(&g)
            .matches(&format!("is now DOWN: {}", timeout_reason()))
            .count()
            == N
    });
    assert!(all_down.is_some(), "{}", logs(&g));
    let text = logs(&g);
    assert_eq!(text.matches("is now DOWN").count(), N, "{text}");
    for (i, a) in bad.addrs.iter().enumerate() {
        assert!(
            text.contains(&down_line(
                &format!("bad{i}"),
                *a,
                "bad",
                &timeout_reason(),
                "bad.gslb.test"
            )),
            "bad{i} {a}"
        );
    }
    assert!(answered_set(g.addr, "bad.gslb.test", 1).is_empty());
    // The hung probes really ran side by side: each holds a connection for TIMEOUT_MS
    // of every INTERVAL_MS, so well over a hundred were open at once.
    eprintln!(
        "hung connections: {} accepted, at most {max_held} held at once",
        bad.accepted.load(Ordering::SeqCst)
    );
    assert!(max_held >= N / 2, "at most {max_held} hung probes at once");
    assert!(bad.http_requests.load(Ordering::SeqCst) >= 3 * N);
}
