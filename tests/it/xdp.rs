//! The AF_XDP listener (`[server] xdp_interface`, issue 11), on the real loopback
//! interface: the real binary attaches its XDP program to `lo`, a real client sends
//! queries over UDP, and the admin metrics say which way each went.
//!
//! Attaching a program needs root (CAP_BPF and CAP_NET_ADMIN): without it the test is
//! skipped, except in CI. Only one test here attaches (an interface takes one XDP
//! program at a time). Clients, listeners and health targets live on 127.0.30.0/24.

use std::process::Command;
use std::time::Duration;

use hickory_proto::op::Edns;
use hickory_proto::rr::{RData, RecordType};

use crate::common::*;
use crate::locality::{echoed, ecs_edns};
use crate::ops::metric;

/// Sets a sysctl of `lo` for the test and puts back the value it found.
struct LoSysctl {
    path: String,
    old: String,
}

impl LoSysctl {
    fn set(key: &str) -> LoSysctl {
        let path = format!("/proc/sys/net/ipv4/conf/lo/{key}");
        let old = std::fs::read_to_string(&path).expect("read sysctl");
        std::fs::write(&path, "1").expect("write sysctl");
        LoSysctl { path, old }
    }
}

impl Drop for LoSysctl {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.path, self.old.trim());
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"))
    })
}

fn xdp_on_lo() -> bool {
    let out = Command::new("ip").args(["link", "show", "lo"]).output();
    out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("xdp"))
}

fn frames(g: &Gslb, outcome: &str) -> f64 {
    let text = crate::ops::scrape(g);
    metric(&text, "gslb_dns_xdp_frames_total", &[("outcome", outcome)]).unwrap_or(0.0)
}

/// TXT strings of 250 bytes: a reply larger than a frame (1,792 bytes from the packet).
const BIG_TXT: usize = 9;

fn config() -> String {
    let big: Vec<String> = (0..BIG_TXT)
        .map(|i| format!("\"{}\"", char::from(b'a' + i as u8).to_string().repeat(250)))
        .collect();
    format!(
        r#"
[server]
listen = ["127.0.30.1:0"]
udp_sockets = 1
max_udp_payload = 4096
xdp_interface = "lo"

[admin]
listen = "127.0.30.1:0"

[[zone]]
origin = "xdp.test"
ns = [{{ name = "ns1", addresses = ["192.0.2.53"] }}]
record = [
  {{ name = "www", type = "A", value = "192.0.2.80" }},
  {{ name = "big", type = "TXT", value = [{}] }},
]

[[check]]
name = "hc"
kind = "http"
path = "/hc"
interval = "200ms"
timeout = "150ms"
rise = 1
fall = 1

[[gateway]]
name = "up"
addresses = ["192.0.2.11"]
probe = "{{UP}}"

[[gateway]]
name = "gone"
addresses = ["192.0.2.12"]
probe = "{{GONE}}"

[[service]]
name = "app.xdp.test"
check = "hc"
answers = 2
endpoints = [{{ gateway = "up" }}, {{ gateway = "gone" }}]
"#,
        big.join(", ")
    )
}

#[test]
fn queries_are_answered_over_xdp_and_what_it_leaves_goes_through_the_kernel() {
    if !is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "attaching an XDP program needs root, and CI is set"
        );
        eprintln!("skipped: attaching an XDP program needs root");
        return;
    }
    assert!(!xdp_on_lo(), "an XDP program is already attached to lo");
    let _route = LoSysctl::set("route_localnet");
    let _local = LoSysctl::set("accept_local");
    let up = HttpTarget::start("127.0.30.11", Reply::ok());
    let gone = HttpTarget::start("127.0.30.12", Reply::no_upstreams());
    let config = config()
        .replace("{UP}", &up.addr.to_string())
        .replace("{GONE}", &gone.addr.to_string());
    let mut g = Gslb::start(&config);
    assert!(xdp_on_lo(), "the program is attached while gslb serves");
    g.wait_log(
        "DNS over XDP: serving a receive queue",
        Duration::from_secs(5),
    );

    // The gateway whose clusters are gone leaves the answers, over XDP as anywhere.
    let only_up = wait_until(Duration::from_secs(10), || {
        a_records(&query(g.addr, "app.xdp.test", RecordType::A))
            == [std::net::Ipv4Addr::new(192, 0, 2, 11)]
    });
    assert!(
        only_up.is_some(),
        "the 503 gateway never left the answers; logs:\n{}",
        g.logs()
    );
    let before = frames(&g, "answered");
    const N: usize = 50;
    for i in 0..N {
        let name = if i % 2 == 0 {
            "app.xdp.test"
        } else {
            "WwW.XdP.tEsT"
        };
        let m = query(g.addr, name, RecordType::A);
        assert_eq!(m.answers.len(), 1, "{name}: {m:?}");
    }
    // The general path too (SOA, which the fast path leaves to it), with EDNS.
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    let m = exchange(
        g.addr,
        &query_msg("xdp.test", RecordType::SOA, Some(edns)),
        Transport::Udp,
    );
    assert_eq!(m.answers.len(), 1, "{m:?}");
    // ECS on the fast path: answered, and the client subnet echoed with its prefix.
    let m = exchange(
        g.addr,
        &query_msg(
            "app.xdp.test",
            RecordType::A,
            ecs_edns(Some("198.51.100.0/24")),
        ),
        Transport::Udp,
    );
    assert_eq!(a_records(&m), [std::net::Ipv4Addr::new(192, 0, 2, 11)]);
    let e = echoed(&m).unwrap_or_else(|| panic!("ECS not echoed: {m:?}"));
    assert_eq!(e.addr(), std::net::IpAddr::from([198, 51, 100, 0]));
    assert_eq!(e.source_prefix(), 24);
    let sent = N + 2;
    let answered = frames(&g, "answered") - before;
    assert!(
        answered >= sent as f64,
        "{answered} of {sent} queries answered over XDP"
    );

    // A reply larger than a frame leaves through the kernel's socket, whole.
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    let m = exchange(
        g.addr,
        &query_msg("big.xdp.test", RecordType::TXT, Some(edns)),
        Transport::Udp,
    );
    assert!(!m.metadata.truncation, "not truncated: {:?}", m.metadata);
    let strings = match &m.answers[0].data {
        RData::TXT(t) => t.txt_data.len(),
        other => panic!("not TXT: {other:?}"),
    };
    assert_eq!(strings, BIG_TXT);
    assert!(
        frames(&g, "kernel") >= 1.0,
        "the big reply did not go through the kernel"
    );

    // Garbage to the port is dropped without a reply, and the listener goes on.
    let dropped = frames(&g, "dropped");
    assert_eq!(
        udp_raw(g.addr, &[0xff; 7], Duration::from_millis(300)),
        None
    );
    assert!(frames(&g, "dropped") > dropped);
    assert_eq!(
        query(g.addr, "www.xdp.test", RecordType::A).answers.len(),
        1
    );
    // TCP is the kernel's, as before.
    let m = exchange(
        g.addr,
        &query_msg("www.xdp.test", RecordType::A, None),
        Transport::Tcp,
    );
    assert_eq!(m.answers.len(), 1);

    // Stopping gslb detaches the program: lo is as it was.
    g.signal("TERM");
    assert!(
        g.wait_exit(Duration::from_secs(10)).is_some(),
        "gslb did not stop"
    );
    assert!(
        wait_until(Duration::from_secs(5), || !xdp_on_lo()).is_some(),
        "the XDP program stayed attached to lo after gslb stopped"
    );
}

#[test]
fn an_xdp_interface_that_does_not_exist_stops_startup_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gslb.toml");
    std::fs::write(
        &path,
        r#"
[server]
listen = ["127.0.30.2:0"]
xdp_interface = "nosuch0"

[[zone]]
origin = "xdp.test"
ns = [{ name = "ns1", addresses = ["192.0.2.53"] }]
"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "-c"])
        .arg(&path)
        .output()
        .expect("run gslb");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "gslb started without its interface: {err}"
    );
    assert!(
        err.contains("cannot serve over XDP on nosuch0") && err.contains("no network interface"),
        "{err}"
    );
}
