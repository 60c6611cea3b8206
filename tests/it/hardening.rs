//! Safe on the open Internet, black-box: TCP clients that trickle, send short frames or
//! hold idle connections cannot keep real queries out, and a flood of connections under
//! a small descriptor limit cannot starve the health probes.
//!
//! Clients and probe targets live on 127.0.5.0/24 and 127.0.6.0/24 (this file's range).

use crate::common::*;
use crate::ops::{metric, scrape};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

fn cfg(server_extra: &str, body: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets = 1\n{server_extra}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n{ZONE}\n\
         [[gateway]]\nname = \"a\"\naddresses = [\"192.0.2.1\"]\n{body}\n\
         [[service]]\nname = \"app.gslb.test\"\nendpoints = [{{ gateway = \"a\" }}]\n"
    )
}

/// Whether the server has closed `s` (EOF or reset), waiting up to `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 512];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => panic!("the server sent something"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => true,
        Err(_) => false,
    }
}

fn closed_count(g: &Gslb, reason: &str) -> f64 {
    metric(
        &scrape(g),
        "gslb_dns_tcp_closed_total",
        &[("reason", reason)],
    )
    .unwrap_or(-1.0)
}

/// A query over TCP from 127.0.0.1 that must be answered, and how long it took.
fn tcp_answer_time(g: &Gslb) -> Duration {
    let t = Instant::now();
    let m = exchange(
        g.addr,
        &query_msg("app.gslb.test", RecordType::A, None),
        Transport::Tcp,
    );
    assert_eq!(
        a_records(&m),
        vec!["192.0.2.1".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    t.elapsed()
}

/// A message that trickles in (one byte every 100 ms) is cut at `tcp_message_timeout`
/// from its first byte, although every byte restarts no timer; a zero-length frame
/// closes the connection at once. Both are counted.
#[test]
fn trickling_and_short_frames_are_cut_off() {
    let g = Gslb::start(&cfg(
        "tcp_message_timeout = \"600ms\"\ntcp_idle_timeout = \"10s\"",
        "",
    ));
    let mut s = connect_from("127.0.5.1", g.addr);
    let frame = {
        let q = query_msg("app.gslb.test", RecordType::A, None)
            .to_vec()
            .unwrap();
        let mut f = (q.len() as u16).to_be_bytes().to_vec();
        f.extend(q);
        f
    };
    let started = Instant::now();
    let mut cut = None;
    for b in &frame {
        if s.write_all(&[*b]).is_err() {
            cut = Some(started.elapsed());
            break;
        }
        if closed_within(&mut s, Duration::from_millis(100)) {
            cut = Some(started.elapsed());
            break;
        }
    }
    let cut = cut.expect("a message trickled in whole over 2 s was answered");
    assert!(
        cut >= Duration::from_millis(500) && cut < Duration::from_millis(1500),
        "cut after {cut:?}, the deadline is 600 ms"
    );
    assert_eq!(closed_count(&g, "message_timeout"), 1.0);

    let mut s = connect_from("127.0.5.2", g.addr);
    s.write_all(&[0, 0]).unwrap();
    assert!(
        closed_within(&mut s, Duration::from_secs(2)),
        "a zero-length frame was kept"
    );
    assert_eq!(closed_count(&g, "short_frame"), 1.0);
    tcp_answer_time(&g);
}

/// Full of idle connections, the server gives the newcomer the slot of the one idle
/// longest, overall and within one source; the evicted connection is closed and
/// counted. With every slot idle, a real query waits for nothing.
#[test]
fn idle_connections_make_room_for_new_clients() {
    let g = Gslb::start(&cfg(
        "tcp_max_connections = 8\ntcp_max_connections_per_source = 3",
        "",
    ));
    // Eight idle connections from four sources, two each, oldest first.
    let mut held: Vec<TcpStream> = Vec::new();
    for i in 0..8 {
        held.push(connect_from(&format!("127.0.5.{}", 10 + i / 2), g.addr));
        thread::sleep(Duration::from_millis(20));
    }
    // The server has them all once a query on the last one is answered.
    wait_until(Duration::from_secs(3), || {
        metric(&scrape(&g), "gslb_dns_tcp_connections", &[]) == Some(8.0)
    })
    .expect("eight connections open");
    // A newcomer: answered, and the oldest connection pays for it.
    assert!(tcp_answer_time(&g) < Duration::from_secs(2));
    assert!(
        closed_within(&mut held[0], Duration::from_secs(2)),
        "the oldest was kept"
    );
    assert!(!closed_within(&mut held[1], Duration::from_millis(100)));
    assert_eq!(closed_count(&g, "evicted"), 1.0);
}

/// One source at its cap gives up its own connection idle longest, not someone else's.
#[test]
fn a_source_at_its_cap_makes_room_from_its_own() {
    let g = Gslb::start(&cfg(
        "tcp_max_connections = 100\ntcp_max_connections_per_source = 3",
        "",
    ));
    let mut other = connect_from("127.0.5.30", g.addr);
    thread::sleep(Duration::from_millis(20));
    let mut mine = vec![connect_from("127.0.5.40", g.addr)];
    thread::sleep(Duration::from_millis(20));
    mine.push(connect_from("127.0.5.40", g.addr));
    mine.push(connect_from("127.0.5.40", g.addr));
    let _fourth = connect_from("127.0.5.40", g.addr);
    assert!(
        closed_within(&mut mine[0], Duration::from_secs(2)),
        "its own oldest stays"
    );
    assert!(!closed_within(&mut mine[1], Duration::from_millis(100)));
    assert!(!closed_within(&mut other, Duration::from_millis(100)));
    assert_eq!(closed_count(&g, "evicted"), 1.0);
}

/// With `ulimit -n 1024`, the TCP cap is sized so that probes keep their descriptors:
/// 1,100 idle connections held from 50 addresses leave a healthy target UP for five
/// probe intervals with no failed probe, and a TCP query is answered within 2 s.
#[test]
fn a_connection_flood_under_a_small_fd_limit_starves_no_probe() {
    // This process holds 1,100 connections too.
    rlimit::increase_nofile_limit(4096).unwrap();
    let up = TcpTarget::start("127.0.6.1");
    let body = format!(
        "probe = \"{}\"\n[[check]]\nname = \"tcp\"\nkind = \"tcp\"\ninterval = \"200ms\"\n\
         timeout = \"150ms\"\nrise = 1\nfall = 1",
        up.addr
    );
    let text = cfg("", &body).replace(
        "endpoints = [{ gateway = \"a\" }]",
        "check = \"tcp\"\nendpoints = [{ gateway = \"a\" }]",
    );
    let g = Gslb::start_with_nofile(&text, 1024);
    g.wait_log("tcp_max_connections lowered", Duration::from_secs(5));
    let results = |outcome: &str| {
        metric(
            &scrape(&g),
            "gslb_probe_results_total",
            &[
                ("check", "tcp"),
                ("target", &up.addr.to_string()),
                ("outcome", outcome),
            ],
        )
        .unwrap_or(0.0)
    };
    wait_until(Duration::from_secs(5), || results("success") >= 1.0).expect("a first probe");

    // Not even inconclusive (a probe that found no descriptor): the probes' reserve held.
    let bad = || results("failure") + results("timeout") + results("inconclusive");
    let (ok0, bad0) = (results("success"), bad());
    let mut held = Vec::new();
    for i in 0..1100 {
        held.push(connect_from(&format!("127.0.5.{}", 100 + i % 50), g.addr));
    }
    let took = tcp_answer_time(&g);
    assert!(took < Duration::from_secs(2), "a TCP query took {took:?}");
    thread::sleep(Duration::from_millis(5 * 200 + 100));
    let (ok1, bad1) = (results("success"), bad());
    assert_eq!(
        bad1 - bad0,
        0.0,
        "probes failed during the flood; logs:\n{}",
        g.logs()
    );
    assert!(ok1 - ok0 >= 4.0, "{} probes in five intervals", ok1 - ok0);
    let up_now = metric(
        &scrape(&g),
        "gslb_endpoint_up",
        &[
            ("service", "app.gslb.test."),
            ("endpoint", "a"),
            ("region", ""),
        ],
    );
    assert_eq!(up_now, Some(1.0));
    let m = query(g.addr, "app.gslb.test", RecordType::A);
    assert_eq!(a_records(&m).len(), 1);
    drop(held);
}

/// Listening on 0.0.0.0, each reply leaves from the address its query was sent to
/// (IP_PKTINFO): a query to 127.0.0.2 or 127.0.6.9 is answered from there, not from
/// 127.0.0.1, or the client (a resolver talking to an anycast or secondary address)
/// drops it.
#[test]
fn wildcard_listen_replies_from_the_address_queried() {
    let g = Gslb::start(&format!(
        "[server]\nlisten = [\"0.0.0.0:0\"]\nudp_sockets = 1\n{ZONE}\n\
         [[gateway]]\nname = \"a\"\naddresses = [\"192.0.2.1\"]\n\
         [[service]]\nname = \"app.gslb.test\"\nendpoints = [{{ gateway = \"a\" }}]\n"
    ));
    let port = g.addr.port();
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    for to in ["127.0.0.2", "127.0.6.9", "127.0.0.1"] {
        let dest = SocketAddr::new(to.parse().unwrap(), port);
        let q = query_msg("app.gslb.test", RecordType::A, None);
        client.send_to(&q.to_vec().unwrap(), dest).unwrap();
        let mut buf = [0u8; 1024];
        let (n, from) = client.recv_from(&mut buf).expect("a reply");
        assert_eq!(from, dest, "the reply to {dest} came from {from}");
        let m = hickory_proto::op::Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(m.metadata.id, q.metadata.id);
        assert_eq!(m.answers.len(), 1);
    }
}

/// `gslb check` judges a config by the descriptor limit `serve` will run under: 100 UDP
/// sockets on two addresses cannot fit in 256 descriptors beside the probes, and a
/// TCP cap that does not fit is reported as lowered.
#[test]
fn check_refuses_what_the_descriptor_limit_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    let run = |server: &str| {
        let path = dir.path().join("gslb.toml");
        std::fs::write(&path, format!("[server]\n{server}\n{ZONE}")).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 256 && exec \"$0\" check -c \"$1\"")
            .arg(BIN)
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).to_string();
        (out.status.success(), text)
    };
    let (ok, text) = run(
        "listen = [\"127.0.0.1:53\", \"[::1]:53\"]\nudp_sockets = 100\n[health]\nmax_concurrent_probes = 16",
    );
    assert!(!ok, "accepted: {text}");
    assert!(
        text.contains("file descriptor limit (256)") && text.contains("udp_sockets"),
        "{text}"
    );
    let (ok, text) =
        run("listen = [\"127.0.0.1:53\"]\nudp_sockets = 2\n[health]\nmax_concurrent_probes = 16");
    assert!(ok, "{text}");
    assert!(
        text.contains("tcp_max_connections 1024 will be lowered to"),
        "{text}"
    );
}
