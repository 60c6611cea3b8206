//! TLS and HTTPS health checks end to end: the real binary against real rustls servers
//! presenting certificates made here with rcgen (a test CA, leaves for the right and
//! the wrong name, expired, self-signed, about to expire), plus per-service Host/SNI
//! routing and the User-Agent. Probe targets live on 127.0.0.181-127.0.0.199; answer
//! addresses are documentation addresses (192.0.2.x), handed out and never contacted.

use crate::common::paused;
use crate::common::tls::*;
use crate::common::*;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

const INTERVAL: &str = "500ms";
const TIMEOUT: &str = "400ms";
/// Generous bound for any flip: fall/rise = 2 at 500 ms takes about a second.
const FLIP: Duration = Duration::from_secs(10);

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// The A addresses for `name` (one query; every service here has one endpoint and is
/// fail_closed, so the answer is the endpoint when UP and empty when DOWN).
fn answered(g: &Gslb, name: &str) -> BTreeSet<Ipv4Addr> {
    answered_set(g.addr, name, 1)
}

fn gateway(name: &str, answer: &str, probe: SocketAddr) -> String {
    format!("[[gateway]]\nname = \"{name}\"\naddresses = [\"{answer}\"]\nprobe = \"{probe}\"\n\n")
}

fn service(name: &str, check: &str, gw: &str, extra: &str) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\ncheck = \"{check}\"\nall_down = \"fail_closed\"\n{extra}endpoints = [{{ gateway = \"{gw}\" }}]\n\n"
    )
}

/// A check with the common timing (rise = fall = 2) and `body` for the rest.
fn check(name: &str, body: &str) -> String {
    format!(
        "[[check]]\nname = \"{name}\"\ninterval = \"{INTERVAL}\"\ntimeout = \"{TIMEOUT}\"\nrise = 2\nfall = 2\n{body}\n"
    )
}

fn label(gw: &str, addr: SocketAddr, check: &str) -> String {
    format!("{gw} {addr} (check {check})")
}

fn down_line(label: &str, reason: &str, service: &str) -> String {
    format!("target {label} is now DOWN: {reason} (services: {service}.)")
}

fn logs(g: &Gslb) -> String {
    g.logs()
}

/// Waits until `label` has at least `n` successful probes in the debug log.
fn wait_ok_probes(g: &Gslb, label: &str, n: usize) {
    let ok = wait_until(FLIP, || {
        probes_of(&logs(g), label).iter().filter(|p| p.0).count() >= n
    });
    assert!(
        ok.is_some(),
        "{label}: fewer than {n} successful probes; logs:\n{}",
        logs(g)
    );
}

/// The `serving` startup line.
fn serving_line(g: &Gslb) -> String {
    g.wait_log("serving", Duration::from_secs(5));
    logs(g)
        .lines()
        .find(|l| l.contains(" serving "))
        .unwrap()
        .to_string()
}

// ------------------------------------------------------------------------------ tests

/// 1. `tls` checks: a valid chain from the test CA keeps the endpoint; a leaf for
///    another name, an expired leaf and a self-signed leaf each remove it with their
///    own reason; `insecure` accepts the self-signed one; the system roots do not know
///    the test CA. Then the valid server swaps to a wrong-name leaf (DOWN with that
///    reason) and back (UP): every probe is a fresh handshake.
#[test]
fn tls_check_verdicts_and_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("gslb test CA");
    let ca_file = ca.write_pem(dir.path(), "ca.pem");
    let good = ca.issue(&["gw.test"], Validity::current());
    let other = ca.issue(&["other.test"], Validity::current());
    let expired = ca.issue(&["gw.test"], Validity::expired());
    let selfie = self_signed(&["gw.test"], Validity::current());
    // The handshake is all a `tls` probe does; these servers never see a request.
    let nothing = always(500, "unexpected request");
    let s_valid = Server::https("127.0.0.181", &good, nothing.clone());
    let s_wrong = Server::https("127.0.0.182", &other, nothing.clone());
    let s_expired = Server::https("127.0.0.183", &expired, nothing.clone());
    let s_self = Server::https("127.0.0.184", &selfie, nothing.clone());

    let ca_path = ca_file.display().to_string();
    let cfg = format!(
        "{ZONE}\n{}{}{}{}{}{}{}{}{}{}{}{}{}",
        gateway("valid", "192.0.2.181", s_valid.addr),
        gateway("wrong", "192.0.2.182", s_wrong.addr),
        gateway("expired", "192.0.2.183", s_expired.addr),
        gateway("selfsigned", "192.0.2.184", s_self.addr),
        check(
            "ca",
            &format!("kind = \"tls\"\nsni = \"gw.test\"\nca_file = \"{ca_path}\"\n")
        ),
        check(
            "insecure",
            "kind = \"tls\"\nsni = \"gw.test\"\ninsecure = true\n"
        ),
        check("sys", "kind = \"tls\"\nsni = \"gw.test\"\n"),
        service("valid.gslb.test", "ca", "valid", ""),
        service("wrong.gslb.test", "ca", "wrong", ""),
        service("expired.gslb.test", "ca", "expired", ""),
        service("selfsigned.gslb.test", "ca", "selfsigned", ""),
        service("insecure.gslb.test", "insecure", "selfsigned", ""),
        service("sysroots.gslb.test", "sys", "valid", ""),
    );
    let g = Gslb::start(&cfg);
    assert!(serving_line(&g).contains("targets=6"), "{}", logs(&g));

    let removed = [
        (
            label("wrong", s_wrong.addr, "ca"),
            "tls certificate not valid for gw.test",
            "wrong.gslb.test",
        ),
        (
            label("expired", s_expired.addr, "ca"),
            "tls certificate expired",
            "expired.gslb.test",
        ),
        (
            label("selfsigned", s_self.addr, "ca"),
            "tls certificate from an unknown issuer",
            "selfsigned.gslb.test",
        ),
        (
            label("valid", s_valid.addr, "sys"),
            "tls certificate from an unknown issuer",
            "sysroots.gslb.test",
        ),
    ];
    for (l, reason, svc) in &removed {
        g.wait_log(&down_line(l, reason, svc), FLIP);
    }
    let kept = [
        (label("valid", s_valid.addr, "ca"), "valid.gslb.test"),
        (
            label("selfsigned", s_self.addr, "insecure"),
            "insecure.gslb.test",
        ),
    ];
    for (l, _) in &kept {
        wait_ok_probes(&g, l, 3);
    }
    let text = logs(&g);
    assert_eq!(text.matches("is now DOWN").count(), 4, "{text}");
    for (l, svc) in &kept {
        assert!(!text.contains(&format!("target {l} is now")), "{text}");
        assert!(!answered(&g, svc).is_empty(), "{svc} lost its endpoint");
    }
    assert_eq!(answered(&g, "valid.gslb.test"), [ip("192.0.2.181")].into());
    assert_eq!(
        answered(&g, "insecure.gslb.test"),
        [ip("192.0.2.184")].into()
    );
    for (_, _, svc) in &removed {
        assert!(answered(&g, svc).is_empty(), "{svc} still answered");
    }
    // Every failed probe of a removed target failed for the same reason: the DOWN line
    // is the only state line, and the probes really failed (not just once).
    for (l, _, _) in &removed {
        let p = probes_of(&text, l);
        assert!(p.len() >= 2 && p.iter().all(|x| !x.0), "{l}: {p:?}");
    }

    // Server side: SNI gw.test on every handshake; handshakes completed only where the
    // client accepted the certificate.
    let sni = Some("gw.test".to_string());
    let hs = s_valid.handshakes();
    assert!(hs.len() >= 3 && hs.iter().all(|s| *s == sni), "{hs:?}");
    // The system-roots check reached the valid server and rejected it.
    let f = s_valid.failed_handshakes();
    assert!(f.len() >= 2 && f.iter().all(|s| *s == sni), "{f:?}");
    assert!(
        s_wrong.handshakes().is_empty(),
        "{:?}",
        s_wrong.handshakes()
    );
    assert!(s_expired.handshakes().is_empty());
    assert!(s_wrong.failed_handshakes().len() >= 2);
    assert!(s_expired.failed_handshakes().len() >= 2);
    // The self-signed server: accepted by `insecure`, rejected by `ca`.
    assert!(s_self.handshakes().len() >= 3);
    assert!(s_self.failed_handshakes().len() >= 2);
    for s in [&s_valid, &s_wrong, &s_expired, &s_self] {
        assert!(s.requests().is_empty());
    }

    // The valid server now presents a leaf for other.test: same address, same check.
    let l_valid = label("valid", s_valid.addr, "ca");
    s_valid.set_cert(&other);
    g.wait_log(
        &down_line(
            &l_valid,
            "tls certificate not valid for gw.test",
            "valid.gslb.test",
        ),
        FLIP,
    );
    assert!(
        wait_until(FLIP, || answered(&g, "valid.gslb.test").is_empty()).is_some(),
        "{}",
        logs(&g)
    );
    s_valid.set_cert(&good);
    g.wait_log(
        &format!("target {l_valid} is now UP (services: valid.gslb.test.)"),
        FLIP,
    );
    assert!(
        wait_until(FLIP, || answered(&g, "valid.gslb.test")
            == [ip("192.0.2.181")].into())
        .is_some()
    );
    // The system-roots target on the same server never came back.
    assert!(!logs(&g).contains(&format!(
        "target {} is now UP",
        label("valid", s_valid.addr, "sys")
    )));
    assert!(answered(&g, "sysroots.gslb.test").is_empty());
}

/// 2. `https` checks over a real HTTPS server answering `/hc`: valid keeps, expired and
///    wrong name remove with the TLS reason (no request is ever made), self-signed is
///    an unknown issuer unless `insecure`.
#[test]
fn https_check_verdicts_and_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("gslb https CA");
    let ca_file = ca.write_pem(dir.path(), "ca.pem");
    let ok = always(200, "ok");
    let s_valid = Server::https(
        "127.0.0.185",
        &ca.issue(&["gw.test"], Validity::current()),
        ok.clone(),
    );
    let s_expired = Server::https(
        "127.0.0.186",
        &ca.issue(&["gw.test"], Validity::expired()),
        ok.clone(),
    );
    let s_wrong = Server::https(
        "127.0.0.187",
        &ca.issue(&["other.test"], Validity::current()),
        ok.clone(),
    );
    let s_self = Server::https(
        "127.0.0.188",
        &self_signed(&["gw.test"], Validity::current()),
        ok.clone(),
    );
    let ca_path = ca_file.display().to_string();
    let cfg = format!(
        "{ZONE}\n{}{}{}{}{}{}{}{}{}{}{}",
        gateway("valid", "192.0.2.185", s_valid.addr),
        gateway("expired", "192.0.2.186", s_expired.addr),
        gateway("wrong", "192.0.2.187", s_wrong.addr),
        gateway("selfsigned", "192.0.2.188", s_self.addr),
        check(
            "hs",
            &format!(
                "kind = \"https\"\npath = \"/hc\"\nsni = \"gw.test\"\nca_file = \"{ca_path}\"\nexpect_body = \"ok\"\n"
            )
        ),
        check(
            "hsi",
            "kind = \"https\"\npath = \"/hc\"\nsni = \"gw.test\"\ninsecure = true\n"
        ),
        service("valid.gslb.test", "hs", "valid", ""),
        service("expired.gslb.test", "hs", "expired", ""),
        service("wrong.gslb.test", "hs", "wrong", ""),
        service("selfsigned.gslb.test", "hs", "selfsigned", ""),
        service("insecure.gslb.test", "hsi", "selfsigned", ""),
    );
    let g = Gslb::start(&cfg);
    let removed = [
        (
            label("expired", s_expired.addr, "hs"),
            "tls certificate expired",
            "expired.gslb.test",
        ),
        (
            label("wrong", s_wrong.addr, "hs"),
            "tls certificate not valid for gw.test",
            "wrong.gslb.test",
        ),
        (
            label("selfsigned", s_self.addr, "hs"),
            "tls certificate from an unknown issuer",
            "selfsigned.gslb.test",
        ),
    ];
    for (l, reason, svc) in &removed {
        g.wait_log(&down_line(l, reason, svc), FLIP);
    }
    let l_valid = label("valid", s_valid.addr, "hs");
    let l_insecure = label("selfsigned", s_self.addr, "hsi");
    wait_ok_probes(&g, &l_valid, 3);
    wait_ok_probes(&g, &l_insecure, 3);
    let text = logs(&g);
    assert_eq!(text.matches("is now DOWN").count(), 3, "{text}");
    assert!(
        !text.contains(&format!("target {l_valid} is now")),
        "{text}"
    );
    assert!(
        !text.contains(&format!("target {l_insecure} is now")),
        "{text}"
    );
    assert_eq!(answered(&g, "valid.gslb.test"), [ip("192.0.2.185")].into());
    assert_eq!(
        answered(&g, "insecure.gslb.test"),
        [ip("192.0.2.188")].into()
    );
    for (_, _, svc) in &removed {
        assert!(answered(&g, svc).is_empty(), "{svc} still answered");
    }

    // The valid server saw real requests for /hc over TLS with SNI gw.test, and the
    // Host of the URL (name and port, as no `host` is configured).
    let reqs = s_valid.requests();
    assert!(reqs.len() >= 3, "{reqs:?}");
    let host = format!("gw.test:{}", s_valid.addr.port());
    for r in &reqs {
        assert_eq!(r.method, "GET", "{r:?}");
        assert_eq!(r.path, "/hc", "{r:?}");
        assert_eq!(r.sni.as_deref(), Some("gw.test"), "{r:?}");
        assert_eq!(r.header("host"), Some(host.as_str()), "{r:?}");
    }
    // The rejected servers never got a request: the TLS verdict came first.
    assert!(s_expired.requests().is_empty());
    assert!(s_wrong.requests().is_empty());
    // The self-signed server got requests only from the insecure check.
    assert!(s_self.requests().len() >= 3);
    assert!(s_self.failed_handshakes().len() >= 2);
}

/// 3. One HTTPS gateway that routes by Host and SNI (`a.example.test` healthy,
///    `b.example.test` 503 "no healthy upstreams"): a `per_service` check judges it per
///    service, two probes through the same address, and only service B drops it. A
///    check that is not per-service is one probe shared by both services.
#[test]
fn per_service_host_and_sni_routing() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("gslb routing CA");
    let ca_file = ca.write_pem(dir.path(), "ca.pem");
    let leaf = ca.issue(&["a.example.test", "b.example.test"], Validity::current());
    let router: Router = Arc::new(|r: &Request| {
        let host = r.header("host").unwrap_or("");
        let host = host.split(':').next().unwrap();
        if r.sni.as_deref() != Some(host) {
            return (421, "misdirected request".into());
        }
        match host {
            "a.example.test" => (200, "ok".into()),
            "b.example.test" => (503, "no healthy upstreams".into()),
            _ => (404, "no route".into()),
        }
    });
    let srv = Server::https("127.0.0.189", &leaf, router);
    let ca_path = ca_file.display().to_string();
    let services = format!(
        "{}{}",
        service(
            "a.gslb.test",
            "ps",
            "gw",
            "host = \"a.example.test\"\nanswers = 1\n"
        ),
        service(
            "b.gslb.test",
            "ps",
            "gw",
            "host = \"b.example.test\"\nanswers = 1\n"
        ),
    );
    let cfg = format!(
        "{ZONE}\n{}{}{services}",
        gateway("gw", "192.0.2.189", srv.addr),
        check(
            "ps",
            &format!(
                "kind = \"https\"\npath = \"/hc\"\nper_service = true\nca_file = \"{ca_path}\"\n"
            )
        ),
    );
    let g = Gslb::start(&cfg);
    let serving = serving_line(&g);
    assert!(serving.contains("targets=2"), "{serving}");
    let la = format!("gw {} (check ps, host a.example.test)", srv.addr);
    let lb = format!("gw {} (check ps, host b.example.test)", srv.addr);
    g.wait_log(
        &down_line(&lb, "http 503 \"no healthy upstreams\"", "b.gslb.test"),
        FLIP,
    );
    wait_ok_probes(&g, &la, 3);
    let text = logs(&g);
    assert_eq!(text.matches("is now DOWN").count(), 1, "{text}");
    assert!(!text.contains(&format!("target {la} is now")), "{text}");
    assert_eq!(answered(&g, "a.gslb.test"), [ip("192.0.2.189")].into());
    assert!(answered(&g, "b.gslb.test").is_empty());

    // The server saw both names, each as SNI and as Host on the same connection.
    let reqs = srv.requests();
    let seen: BTreeSet<(Option<String>, Option<String>)> = reqs
        .iter()
        .map(|r| (r.sni.clone(), r.header("host").map(str::to_string)))
        .collect();
    let want: BTreeSet<(Option<String>, Option<String>)> = ["a.example.test", "b.example.test"]
        .iter()
        .map(|n| (Some(n.to_string()), Some(n.to_string())))
        .collect();
    assert_eq!(seen, want, "{reqs:?}");
    for name in ["a.example.test", "b.example.test"] {
        let n = reqs
            .iter()
            .filter(|r| r.sni.as_deref() == Some(name))
            .count();
        assert!(n >= 2, "{name}: {n} requests");
    }
    assert!(reqs.iter().all(|r| r.path == "/hc"));
    drop(g);

    // Not per-service, with a fixed Host (and so SNI): one probe target for both
    // services, which share its verdict.
    let before = srv.requests().len();
    let cfg = format!(
        "{ZONE}\n{}{}{services}",
        gateway("gw", "192.0.2.189", srv.addr),
        check(
            "ps",
            &format!(
                "kind = \"https\"\npath = \"/hc\"\nhost = \"a.example.test\"\nca_file = \"{ca_path}\"\n"
            )
        ),
    );
    let g = Gslb::start(&cfg);
    let serving = serving_line(&g);
    assert!(serving.contains("targets=1"), "{serving}");
    let shared = label("gw", srv.addr, "ps");
    wait_ok_probes(&g, &shared, 3);
    assert!(!logs(&g).contains("is now"), "{}", logs(&g));
    assert_eq!(answered(&g, "a.gslb.test"), [ip("192.0.2.189")].into());
    assert_eq!(answered(&g, "b.gslb.test"), [ip("192.0.2.189")].into());
    let reqs = srv.requests()[before..].to_vec();
    assert!(reqs.len() >= 3);
    assert!(
        reqs.iter()
            .all(|r| r.sni.as_deref() == Some("a.example.test")
                && r.header("host") == Some("a.example.test")),
        "{reqs:?}"
    );
}

/// 4. A certificate expiring in about three days, inside a seven-day warning window:
///    the endpoint stays UP, one warning line per target (not one per probe), and the
///    expiry time is exported. A certificate with 30 days left raises no warning.
#[test]
fn certificate_expiry_warning() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("gslb expiry CA");
    let ca_file = ca.write_pem(dir.path(), "ca.pem");
    // Three days and half an hour: the line says "3d 0h" for the next half hour.
    let soon = ca.issue(&["gw.test"], Validity::ending_in(3 * 86_400 + 1800));
    let later = ca.issue(&["gw.test"], Validity::ending_in(30 * 86_400));
    let s_soon = Server::https("127.0.0.190", &soon, always(200, "ok"));
    let s_later = Server::https("127.0.0.191", &later, always(200, "ok"));
    let ca_path = ca_file.display().to_string();
    let cfg = format!(
        "{ZONE}\n[admin]\nlisten = \"127.0.0.1:0\"\n\n{}{}{}{}{}{}{}",
        gateway("soon", "192.0.2.190", s_soon.addr),
        gateway("later", "192.0.2.191", s_later.addr),
        check(
            "exp",
            &format!(
                "kind = \"tls\"\nsni = \"gw.test\"\nca_file = \"{ca_path}\"\ncert_expiry_warning = \"7d\"\n"
            )
        ),
        check(
            "exphttps",
            &format!(
                "kind = \"https\"\npath = \"/hc\"\nsni = \"gw.test\"\nca_file = \"{ca_path}\"\ncert_expiry_warning = \"7d\"\n"
            )
        ),
        service("soon.gslb.test", "exp", "soon", ""),
        service("later.gslb.test", "exp", "later", ""),
        service("soonhttps.gslb.test", "exphttps", "soon", ""),
    );
    let g = Gslb::start(&cfg);
    let l_tls = label("soon", s_soon.addr, "exp");
    let l_https = label("soon", s_soon.addr, "exphttps");
    let l_later = label("later", s_later.addr, "exp");
    for l in [&l_tls, &l_https, &l_later] {
        wait_ok_probes(&g, l, 4);
    }
    let text = logs(&g);
    assert!(!text.contains("is now DOWN"), "{text}");
    assert_eq!(answered(&g, "soon.gslb.test"), [ip("192.0.2.190")].into());
    assert_eq!(
        answered(&g, "soonhttps.gslb.test"),
        [ip("192.0.2.190")].into()
    );
    assert_eq!(answered(&g, "later.gslb.test"), [ip("192.0.2.191")].into());
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("tls certificate expires in"))
        .collect();
    assert_eq!(
        warnings.len(),
        2,
        "one per target, not per probe: {warnings:#?}"
    );
    for l in [&l_tls, &l_https] {
        let want = format!(
            "target {l}: tls certificate expires in 3d 0h (within the 7-day warning window); the check still passes"
        );
        assert_eq!(
            warnings.iter().filter(|w| w.contains(&want)).count(),
            1,
            "{want}\n{warnings:#?}"
        );
    }
    assert!(!text.contains(&format!("target {l_later}:")), "{text}");

    // The expiry times on /metrics: the leaves' notAfter as Unix seconds.
    let admin = g.admin.expect("admin listener");
    let (status, body) = http_get(admin, "/metrics");
    assert_eq!(status, 200, "{body}");
    let gauge = |check: &str, target: SocketAddr| -> f64 {
        let prefix = format!(
            "gslb_probe_certificate_expiry_timestamp_seconds{{check=\"{check}\",target=\"{target}\"}} "
        );
        let line = body
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in /metrics:\n{body}"));
        line[prefix.len()..].trim().parse().unwrap()
    };
    assert_eq!(gauge("exp", s_soon.addr), soon.not_after as f64);
    assert_eq!(gauge("exphttps", s_soon.addr), soon.not_after as f64);
    assert_eq!(gauge("exp", s_later.addr), later.not_after as f64);
}

/// 5. The User-Agent of http probes: a check's own `user_agent`, else `[health]
///    user_agent`, else `gslb/<version> health-check`; recorded by the targets.
#[test]
fn user_agent_is_sent() {
    let s_own = Server::http("127.0.0.192", always(200, "ok"));
    let s_default = Server::http("127.0.0.193", always(200, "ok"));
    let cfg = format!(
        "{ZONE}\n{}{}{}{}{}{}",
        gateway("own", "192.0.2.192", s_own.addr),
        gateway("dflt", "192.0.2.193", s_default.addr),
        check(
            "ua",
            "kind = \"http\"\npath = \"/hc\"\nuser_agent = \"probe-test/1\"\n"
        ),
        check("plain", "kind = \"http\"\npath = \"/hc\"\n"),
        service("own.gslb.test", "ua", "own", ""),
        service("dflt.gslb.test", "plain", "dflt", ""),
    );
    let g = Gslb::start(&cfg);
    for s in [&s_own, &s_default] {
        assert!(
            wait_until(FLIP, || s.requests().len() >= 3).is_some(),
            "{}",
            logs(&g)
        );
    }
    let uas = |s: &Server| -> Vec<Option<String>> {
        s.requests()
            .iter()
            .map(|r| r.header("user-agent").map(str::to_string))
            .collect()
    };
    let own = uas(&s_own);
    assert!(
        own.iter().all(|u| u.as_deref() == Some("probe-test/1")),
        "{own:?}"
    );
    let default = format!("gslb/{} health-check", env!("CARGO_PKG_VERSION"));
    let dflt = uas(&s_default);
    assert!(
        dflt.iter()
            .all(|u| u.as_deref() == Some(default.as_str()) && default.starts_with("gslb/")),
        "{dflt:?}"
    );
    drop(g);

    // A fleet-wide default; a check's own user_agent still wins.
    let (own_before, dflt_before) = (s_own.requests().len(), s_default.requests().len());
    let g = Gslb::start(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets = 1\n\n[health]\nuser_agent = \"fleet/2\"\n\n{cfg}"
    ));
    for (s, n) in [(&s_own, own_before), (&s_default, dflt_before)] {
        assert!(
            wait_until(FLIP, || s.requests().len() >= n + 3).is_some(),
            "{}",
            logs(&g)
        );
    }
    let own = uas(&s_own)[own_before..].to_vec();
    assert!(
        own.iter().all(|u| u.as_deref() == Some("probe-test/1")),
        "{own:?}"
    );
    let dflt = uas(&s_default)[dflt_before..].to_vec();
    assert!(
        dflt.iter().all(|u| u.as_deref() == Some("fleet/2")),
        "{dflt:?}"
    );
}

/// 6. (in process, paused clock) The CA bundle is read once per config load, never by
///    a probe: rewriting the file changes nothing until the next load, which then makes
///    a new probe with the new trust anchors (starting from the old verdict); loading
///    an unchanged bundle keeps the running probe.
#[test]
fn rotated_ca_bundle_takes_effect_at_the_next_load() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = Ca::new("gslb rotation CA 1");
    let new_ca = Ca::new("gslb rotation CA 2");
    let ca_file = old_ca.write_pem(dir.path(), "ca.pem");
    let srv = Server::https(
        "127.0.0.194",
        &old_ca.issue(&["gw.test"], Validity::current()),
        always(500, "unexpected request"),
    );
    let cfg = format!(
        "{ZONE}\n{}{}{}",
        gateway("gw", "192.0.2.194", srv.addr),
        check(
            "ca",
            &format!(
                "kind = \"tls\"\nsni = \"gw.test\"\nca_file = \"{}\"\njitter = \"0s\"\n",
                ca_file.display()
            )
        ),
        service("rot.gslb.test", "ca", "gw", ""),
    );
    let l = label("gw", srv.addr, "ca");
    paused::run(|logs| async move {
        let mut p = paused::Probed::start(&cfg);
        p.round(0, &[0], 1).await;
        assert_eq!(p.states[0].detail().last, Some(Ok(())));

        // The file now holds another CA; the running probe keeps what was loaded.
        new_ca.write_pem(dir.path(), "ca.pem");
        p.round(500, &[0], 2).await;
        assert_eq!(p.states[0].detail().last, Some(Ok(())));

        // The next load reads it: a new probe, UP as the old one was, which fails.
        let old = p.reload(&cfg);
        assert!(!Arc::ptr_eq(&old[0], &p.states[0]));
        assert!(p.up(0));
        p.round(500, &[0], 1).await;
        let reason = p.states[0].detail().last.unwrap().unwrap_err();
        assert_eq!(reason.to_string(), "tls certificate from an unknown issuer");
        assert!(p.up(0), "fall = 2");
        p.round(1000, &[0], 2).await;
        assert!(!p.up(0));
        let text = logs.text();
        let down = down_line(
            &l,
            "tls certificate from an unknown issuer",
            "rot.gslb.test",
        );
        assert!(text.contains(&down), "{text}");

        // The same bundle loaded again: the same probe goes on.
        let old = p.reload(&cfg);
        assert!(Arc::ptr_eq(&old[0], &p.states[0]));
        // Two handshakes completed, two were rejected (the server records them in its
        // own thread, maybe after the probe is done); the server saw no request.
        paused::until("handshakes recorded", || {
            srv.handshakes().len() + srv.failed_handshakes().len() >= 4
        })
        .await;
        assert_eq!(srv.handshakes().len(), 2);
        assert_eq!(srv.failed_handshakes().len(), 2);
        assert!(srv.requests().is_empty());
    });
}
