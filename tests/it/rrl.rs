//! Response rate limiting, black-box: a flood from one address at 10× the budget gets
//! at most budget × window full answers, the rest dropped or slipped (TC=1); a client
//! in another prefix at a normal rate is answered every time; a client with a valid
//! DNS cookie in the flooded prefix is not limited.
//!
//! Clients live on 127.0.7.0/24 (the flooded prefix) and 127.0.8.0/24.

use crate::common::*;
use crate::ops::{metric, scrape};

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};

const RATE: usize = 20;
const WINDOW: usize = 2;

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    sent: usize,
    full: usize,
    slipped: usize,
}

/// Sends `count` queries from `from`, `gap` apart, and counts the replies, full and
/// truncated, that arrive until 500 ms after the last.
fn run_client(from: &str, to: SocketAddr, count: usize, gap: Duration, q: Message) -> Tally {
    let s = UdpSocket::bind((from, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (s, tally, done) = (s.try_clone().unwrap(), tally.clone(), done.clone());
        thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut quiet_since = None;
            loop {
                match s.recv(&mut buf) {
                    Ok(n) => {
                        let m = Message::from_vec(&buf[..n]).unwrap();
                        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
                        let mut t = tally.lock().unwrap();
                        if m.metadata.truncation {
                            assert!(m.answers.is_empty(), "a slip carries no records");
                            t.slipped += 1;
                        } else {
                            assert_eq!(m.answers.len(), 1);
                            t.full += 1;
                        }
                        quiet_since = None;
                    }
                    Err(_) if done.load(Ordering::SeqCst) => {
                        let since = *quiet_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > Duration::from_millis(500) {
                            return;
                        }
                    }
                    Err(_) => {}
                }
            }
        })
    };
    let bytes = q.to_vec().unwrap();
    let start = Instant::now();
    for i in 0..count {
        let due = start + gap * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        s.send_to(&bytes, to).unwrap();
    }
    done.store(true, Ordering::SeqCst);
    reader.join().unwrap();
    let mut t = *tally.lock().unwrap();
    t.sent = count;
    t
}

fn with_cookie(cookie: &[u8]) -> Message {
    let mut e = Edns::new();
    e.set_max_payload(1232);
    e.options_mut().insert(EdnsOption::Unknown(
        u16::from(EdnsCode::Cookie),
        cookie.to_vec(),
    ));
    query_msg("app.gslb.test", RecordType::A, Some(e))
}

#[test]
fn a_flood_is_limited_and_other_clients_are_not() {
    let g = Gslb::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[rrl]\nresponses_per_second = {RATE}\n\
         window = \"{WINDOW}s\"\nslip = 2\n{ZONE}\n\
         [[gateway]]\nname = \"a\"\naddresses = [\"192.0.2.1\"]\n\
         [[service]]\nname = \"app.gslb.test\"\nendpoints = [{{ gateway = \"a\" }}]\n"
    ));
    // The cookie client learns its server cookie before the flood.
    let cs = UdpSocket::bind("127.0.7.2:0").unwrap();
    cs.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    cs.send_to(&with_cookie(&[7; 8]).to_vec().unwrap(), g.addr)
        .unwrap();
    let mut buf = [0u8; 2048];
    let n = cs.recv(&mut buf).unwrap();
    let reply = Message::from_vec(&buf[..n]).unwrap();
    let cookie = match reply.edns.unwrap().option(EdnsCode::Cookie) {
        Some(EdnsOption::Unknown(_, c)) => c.clone(),
        other => panic!("no cookie: {other:?}"),
    };
    drop(cs);

    let addr = g.addr;
    // 10× the budget for the window: 200 queries a second for 2 s.
    let flood = thread::spawn(move || {
        let q = query_msg("app.gslb.test", RecordType::A, None);
        run_client(
            "127.0.7.1",
            addr,
            10 * RATE * WINDOW,
            Duration::from_millis(5),
            q,
        )
    });
    // Another prefix at half the budget, and the cookie client at the flood's rate.
    let normal = thread::spawn(move || {
        let q = query_msg("app.gslb.test", RecordType::A, None);
        run_client("127.0.8.1", addr, RATE, Duration::from_millis(100), q)
    });
    let proven = thread::spawn(move || {
        run_client(
            "127.0.7.2",
            addr,
            10 * RATE * WINDOW,
            Duration::from_millis(5),
            with_cookie(&cookie),
        )
    });
    let (flood, normal, proven) = (
        flood.join().unwrap(),
        normal.join().unwrap(),
        proven.join().unwrap(),
    );
    eprintln!("flood {flood:?}\nnormal {normal:?}\ncookie {proven:?}");

    assert!(
        flood.full <= RATE * WINDOW,
        "{flood:?}: more than budget × window answered"
    );
    assert!(
        flood.full >= RATE / 2,
        "{flood:?}: the budget itself was not answered"
    );
    assert!(flood.slipped > 0, "{flood:?}: nothing slipped");
    let dropped = flood.sent - flood.full - flood.slipped;
    assert!(dropped > 0, "{flood:?}: nothing dropped");
    // slip = 2: every second limited response slips (loopback may lose a few).
    assert!(
        flood.slipped.abs_diff(dropped) <= flood.sent / 20,
        "{flood:?}"
    );
    assert_eq!(
        normal.full, normal.sent,
        "{normal:?}: the other prefix was limited"
    );
    assert_eq!(
        proven.full, proven.sent,
        "{proven:?}: a valid cookie was limited"
    );

    let text = scrape(&g);
    let m =
        |action: &str| metric(&text, "gslb_dns_rrl_total", &[("action", action)]).unwrap() as usize;
    assert_eq!(m("slipped"), flood.slipped);
    assert_eq!(m("dropped"), dropped);
}
