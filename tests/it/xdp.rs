//! The AF_XDP listener (`[server] xdp_interface`, issue 11), on the real loopback
//! interface (generic mode) and on a veth pair into a network namespace the test
//! creates (native mode): the real binary attaches its XDP program, a real client
//! sends queries over UDP, and the admin metrics say which way each went.
//!
//! Attaching a program needs root (CAP_BPF and CAP_NET_ADMIN): without it the tests
//! are skipped, except in CI. `lo` takes one XDP program at a time and its sysctls
//! are shared, so the tests that attach to it hold [`LoForXdp`]; the veth pair is this
//! process's own. Clients, listeners and health targets live on 127.0.30.0/24.

use std::process::Command;
use std::time::Duration;

use hickory_proto::op::Edns;
use hickory_proto::rr::{RData, RecordType};

use crate::common::*;
use crate::locality::{echoed, ecs_edns};
use crate::ops::metric;

/// Held by every test that attaches to `lo` or sets its sysctls (`cargo test` runs
/// tests in parallel).
static LO: std::sync::Mutex<()> = std::sync::Mutex::new(());

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

/// Whether the test can go on: it needs root for `what`. Without root it is skipped,
/// except in CI, where that is a failure.
fn root_or_skip(what: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} needs root, and CI is set"
    );
    eprintln!("skipped: {what} needs root");
    false
}

/// `lo` ready for an XDP listener, for as long as it is held: the lock of every test
/// that attaches to `lo`, and `route_localnet` and `accept_local` on.
struct LoForXdp {
    _lock: std::sync::MutexGuard<'static, ()>,
    _route: LoSysctl,
    _local: LoSysctl,
}

impl LoForXdp {
    fn take() -> LoForXdp {
        let lock = LO.lock().unwrap_or_else(|e| e.into_inner());
        LoForXdp {
            _lock: lock,
            _route: LoSysctl::set("route_localnet"),
            _local: LoSysctl::set("accept_local"),
        }
    }
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
    if !root_or_skip("attaching an XDP program") {
        return;
    }
    let _lo = LoForXdp::take();
    assert!(!xdp_on_lo(), "an XDP program is already attached to lo");
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

/// Runs `gslb serve` on `server` (a `[server]` table) and one zone, requires it to
/// fail, and returns what it said.
fn start_fails(server: &str) -> String {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gslb.toml");
    let zone = "[[zone]]\norigin = \"xdp.test\"\nns = [{ name = \"ns1\", addresses = [\"192.0.2.53\"] }]\n";
    std::fs::write(&path, format!("{server}\n{zone}")).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "-c"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run gslb");
    // A gslb that starts after all serves until it is stopped: give it 10 s.
    let mut status = None;
    wait_until(Duration::from_secs(10), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("gslb started and kept serving");
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success(), "gslb started: {err}");
    err
}

#[test]
fn an_xdp_interface_that_does_not_exist_stops_startup_with_its_name() {
    let err = start_fails(
        r#"
[server]
listen = ["127.0.30.2:0"]
xdp_interface = "nosuch0"
"#,
    );
    assert!(
        err.contains("cannot serve over XDP on nosuch0") && err.contains("no network interface"),
        "{err}"
    );
}

/// A veth pair the test creates, as a container's link: `gxPID.0` (10.53.N.1/30)
/// here and `gxPID.1` (10.53.N.2/30) in the network namespace `gslb-xdp-PID`, N taken
/// from the process id too, so that two runs of the suite do not meet. Dropping it
/// deletes the namespace, and with it both ends.
struct VethNs {
    ns: String,
    here: String,
    there: String,
    /// 10.53.N.1, the address on `here`.
    addr: std::net::Ipv4Addr,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl VethNs {
    fn create() -> VethNs {
        let pid = std::process::id();
        let n = 64 + pid % 128;
        let v = VethNs {
            ns: format!("gslb-xdp-{pid}"),
            here: format!("gx{pid}.0"),
            there: format!("gx{pid}.1"),
            addr: std::net::Ipv4Addr::new(10, 53, n as u8, 1),
        };
        ip(&["netns", "add", &v.ns]);
        ip(&[
            "link", "add", &v.here, "type", "veth", "peer", "name", &v.there, "netns", &v.ns,
        ]);
        ip(&["addr", "add", &format!("10.53.{n}.1/30"), "dev", &v.here]);
        ip(&["link", "set", &v.here, "up"]);
        let far = format!("10.53.{n}.2/30");
        for a in [
            &["addr", "add", &far, "dev", &v.there][..],
            &["link", "set", &v.there, "up"],
            &["link", "set", "lo", "up"],
        ] {
            let mut all = vec!["-n", &v.ns];
            all.extend_from_slice(a);
            ip(&all);
        }
        v
    }

    /// Runs `f` on a thread inside the namespace: its sockets are the namespace's.
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.ns);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(path).expect("open netns");
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("client thread")
    }
}

impl Drop for VethNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.here])
            .output();
    }
}

#[test]
fn native_mode_on_a_veth_answers_another_namespace_over_xdp() {
    if !root_or_skip("a namespace and an XDP program") {
        return;
    }
    let veth = VethNs::create();
    let config = r#"
[server]
listen = ["{ADDR}:0"]
udp_sockets = 1
xdp_interface = "{IF}"
xdp_mode = "native"

[admin]
listen = "127.0.30.1:0"

[[zone]]
origin = "xdp.test"
ns = [{ name = "ns1", addresses = ["192.0.2.53"] }]
record = [{ name = "www", type = "A", value = "192.0.2.80" }]
"#
    .replace("{ADDR}", &veth.addr.to_string())
    .replace("{IF}", &veth.here);
    let mut g = Gslb::start(&config);
    g.wait_log(
        "DNS over XDP: serving a receive queue queue=0 mode=Native",
        Duration::from_secs(5),
    );
    let link = Command::new("ip")
        .args(["link", "show", &veth.here])
        .output()
        .unwrap();
    let link = String::from_utf8_lossy(&link.stdout).to_string();
    // `ip` says "xdp" for a driver-mode program and "xdpgeneric" for a generic one.
    assert!(
        link.contains(" xdp ") && !link.contains("xdpgeneric"),
        "not attached in native mode: {link}"
    );

    // The other namespace's stack leaves the UDP checksum unfinished over a veth: the
    // queries must be taken all the same, and answered over XDP.
    let before = frames(&g, "answered");
    let dropped = frames(&g, "dropped");
    const N: usize = 20;
    let to = g.addr;
    // Up to the first query without its answer (each waits 2 s for it).
    let answers = veth.run(move || {
        let mut got = Vec::new();
        for i in 0..N {
            let mut edns = Edns::new();
            edns.set_max_payload(1232);
            let q = query_msg("www.xdp.test", RecordType::A, (i % 2 == 0).then_some(edns));
            let reply = udp_raw_from(
                "0.0.0.0:0",
                to,
                &q.to_vec().unwrap(),
                Duration::from_secs(2),
            )
            .and_then(|r| hickory_proto::op::Message::from_vec(&r).ok())
            .filter(|m| m.metadata.id == q.metadata.id)
            .map(|m| a_records(&m));
            let last = reply.is_none();
            got.push(reply);
            if last {
                break;
            }
        }
        got
    });
    assert_eq!(answers.len(), N, "no answer to query {}", answers.len() - 1);
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(
            a.as_deref(),
            Some(&[std::net::Ipv4Addr::new(192, 0, 2, 80)][..]),
            "query {i}; logs:\n{}",
            g.logs()
        );
    }
    let answered = frames(&g, "answered") - before;
    assert!(answered >= N as f64, "{answered} of {N} answered over XDP");
    assert_eq!(frames(&g, "dropped"), dropped, "queries were dropped");

    g.signal("TERM");
    assert!(
        g.wait_exit(Duration::from_secs(10)).is_some(),
        "gslb did not stop"
    );
}

#[test]
fn native_mode_on_lo_stops_startup_with_the_reason() {
    if !root_or_skip("attaching an XDP program") {
        return;
    }
    let _lo = LoForXdp::take();
    let err = start_fails(
        r#"
[server]
listen = ["127.0.30.3:0"]
xdp_interface = "lo"
xdp_mode = "native"
"#,
    );
    assert!(
        err.contains("cannot serve over XDP on lo") && err.contains("xdp_mode = \"generic\""),
        "{err}"
    );
    assert!(!xdp_on_lo(), "a program stayed on lo");
}
