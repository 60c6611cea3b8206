//! Shared harness for the black-box tests: start the real `gslb` binary on a port-0
//! loopback address, talk DNS to it with a real client (hickory-proto messages over std
//! sockets), and run real HTTP and TCP targets for its health checks.
#![allow(dead_code)]

pub mod nats;
pub mod paused;
pub mod tls;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};

pub const BIN: &str = env!("CARGO_BIN_EXE_gslb");

/// A running `gslb serve` process; killed on drop.
pub struct Gslb {
    child: Child,
    pub addr: SocketAddr,
    /// The admin listener, when the config has an `[admin]` table.
    pub admin: Option<SocketAddr>,
    pub config_path: std::path::PathBuf,
    pub dir: tempfile::TempDir,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Gslb {
    /// Starts `gslb serve` with `body` as the config. Unless `body` has its own
    /// `[server]` table, one listening on 127.0.0.1:0 with a single UDP socket is added.
    pub fn start(body: &str) -> Gslb {
        Gslb::spawn(body, None)
    }

    /// Like `start`, under `ulimit -n nofile` (soft and hard: the server cannot raise it).
    pub fn start_with_nofile(body: &str, nofile: u64) -> Gslb {
        Gslb::spawn(body, Some(nofile))
    }

    fn spawn(body: &str, nofile: Option<u64>) -> Gslb {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gslb.toml");
        let text = if body.contains("[server]") {
            body.to_string()
        } else {
            format!("[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets = 1\n\n{body}")
        };
        std::fs::write(&path, &text).expect("write config");
        let mut cmd = match nofile {
            None => {
                let mut c = Command::new(BIN);
                c.args(["serve", "-c"]).arg(&path);
                c
            }
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" serve -c \"$1\""))
                    .arg(BIN)
                    .arg(&path);
                c
            }
        };
        let mut child = cmd
            .env("RUST_LOG", "info,gslb=debug,hickory_server=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gslb");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let wants_admin = text.contains("[admin]");
        thread::spawn(move || {
            let (mut dns, mut admin) = (None, None);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let addr = |rest: &str| -> SocketAddr {
                    rest.split_whitespace().next().unwrap().parse().unwrap()
                };
                if let Some(rest) = line.strip_prefix("gslb: listening on ") {
                    dns = dns.or(Some(addr(rest)));
                } else if let Some(rest) = line.strip_prefix("gslb: admin listening on ") {
                    admin = Some(addr(rest));
                }
                if let Some(d) = dns
                    && (admin.is_some() || !wants_admin)
                {
                    let _ = tx.send((d, admin));
                    dns = None;
                    admin = None;
                }
            }
        });
        let (addr, admin) = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "gslb did not start; logs:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        Gslb {
            child,
            addr,
            admin,
            config_path: path,
            dir,
            logs,
        }
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Waits until a log line contains `needle`; panics with the logs after `within`.
    pub fn wait_log(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.logs().contains(needle) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "no log line with {needle:?} within {within:?}; logs:\n{}",
            self.logs()
        );
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`HUP`, `TERM`, ...).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit; its exit status, or None after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Gslb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `gslb check -c` on `text`; returns (success, stdout + stderr, config path).
pub fn check_config(text: &str) -> (bool, String, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Keep the dir alive until the command ran; the path is only for messages.
    let p = path.clone();
    drop(dir);
    (out.status.success(), text, p)
}

// ---------------------------------------------------------------------------- DNS client

/// A query message for `name`/`qtype`, RD clear, random ID, optional EDNS.
pub fn query_msg(name: &str, qtype: RecordType, edns: Option<Edns>) -> Message {
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(e) = edns {
        m.set_edns(e);
    }
    m
}

fn rand_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish() as u16
}

/// Sends raw bytes over UDP; the reply, or None after `wait`.
pub fn udp_raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    udp_raw_from("127.0.0.1:0", addr, bytes, wait)
}

/// [`udp_raw`] from a socket bound to `bind` (`"0.0.0.0:0"`: the source the route
/// gives, for a client that is not on loopback).
pub fn udp_raw_from(bind: &str, addr: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind(bind).unwrap();
    sock.set_read_timeout(Some(wait)).unwrap();
    sock.send_to(bytes, addr).unwrap();
    let mut buf = vec![0u8; 65_535];
    match sock.recv_from(&mut buf) {
        Ok((n, _)) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

/// Sends raw bytes as one TCP DNS message; the reply bytes.
pub fn tcp_raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp_send(&mut s, bytes);
    tcp_recv(&mut s).expect("tcp reply")
}

pub fn tcp_send(s: &mut TcpStream, bytes: &[u8]) {
    let mut frame = (bytes.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(bytes);
    s.write_all(&frame).unwrap();
}

pub fn tcp_recv(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).ok()?;
    Some(buf)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// A TCP connection to `to` from the loopback address `from`.
pub fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(from.parse().unwrap(), 0).into())
        .unwrap();
    s.connect_timeout(&to.into(), Duration::from_secs(5))
        .unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Sends `msg` and parses the reply; checks that the ID matches.
pub fn exchange(addr: SocketAddr, msg: &Message, t: Transport) -> Message {
    let bytes = msg.to_vec().unwrap();
    let reply = match t {
        Transport::Udp => {
            // One retry covers a rare loopback drop under load.
            udp_raw(addr, &bytes, Duration::from_secs(2))
                .or_else(|| udp_raw(addr, &bytes, Duration::from_secs(2)))
                .expect("no UDP reply")
        }
        Transport::Tcp => tcp_raw(addr, &bytes),
    };
    let m = Message::from_vec(&reply).expect("reply parses");
    assert_eq!(m.metadata.id, msg.metadata.id, "reply ID");
    m
}

pub fn query(addr: SocketAddr, name: &str, qtype: RecordType) -> Message {
    exchange(addr, &query_msg(name, qtype, None), Transport::Udp)
}

pub fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

pub fn aaaa_records(m: &Message) -> Vec<Ipv6Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::AAAA(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// The set of A addresses answered for `name` right now (several queries, since each
/// answer holds a weighted draw).
pub fn answered_set(
    addr: SocketAddr,
    name: &str,
    queries: usize,
) -> std::collections::BTreeSet<Ipv4Addr> {
    (0..queries)
        .flat_map(|_| a_records(&query(addr, name, RecordType::A)))
        .collect()
}

/// Polls until `cond` holds on the answered set, returning the time it took.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if cond() {
            return Some(start.elapsed());
        }
        thread::sleep(Duration::from_millis(25));
    }
    None
}

// ------------------------------------------------------------------------ health targets

/// What an HTTP target answers.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    /// When set, the target answers `status` only if this header (name, value) is
    /// present, and 404 otherwise.
    pub require_header: Option<(String, String)>,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply {
            status: 200,
            body: "ok".into(),
            require_header: None,
        }
    }
    pub fn no_upstreams() -> Reply {
        Reply {
            status: 503,
            body: "no healthy upstreams".into(),
            require_header: None,
        }
    }
}

/// A real HTTP/1.1 server on `ip:0`, answering every request from a settable `Reply`.
pub struct HttpTarget {
    pub addr: SocketAddr,
    reply: Arc<Mutex<Reply>>,
    once: Arc<Mutex<Option<Reply>>>,
    stop: Arc<AtomicBool>,
    pub hits: Arc<std::sync::atomic::AtomicUsize>,
    /// The source address of every connection accepted, in order.
    pub peers: Arc<Mutex<Vec<IpAddr>>>,
    /// Connections from this address are closed without an answer.
    refuse: Arc<Mutex<Option<IpAddr>>>,
}

impl HttpTarget {
    pub fn start(ip: &str, reply: Reply) -> HttpTarget {
        let listener = TcpListener::bind((ip.parse::<IpAddr>().unwrap(), 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let reply = Arc::new(Mutex::new(reply));
        let once = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let refuse = Arc::new(Mutex::new(None));
        let (r, o, st, h) = (reply.clone(), once.clone(), stop.clone(), hits.clone());
        let (ps, rf) = (peers.clone(), refuse.clone());
        thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, peer)) => {
                        ps.lock().unwrap().push(peer.ip());
                        if *rf.lock().unwrap() == Some(peer.ip()) {
                            drop(s);
                            continue;
                        }
                        let (r, o, h) = (r.clone(), o.clone(), h.clone());
                        thread::spawn(move || serve_http(s, &r, &o, &h));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
            // Dropping the listener here closes the port.
        });
        HttpTarget {
            addr,
            reply,
            once,
            stop,
            hits,
            peers,
            refuse,
        }
    }

    /// From now on, connections from `from` are closed unanswered (`None`: none are).
    pub fn refuse_from(&self, from: Option<IpAddr>) {
        *self.refuse.lock().unwrap() = from;
    }

    pub fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
        *self.once.lock().unwrap() = None;
    }

    /// The next request (and only that one) gets `reply`; later ones get the current
    /// reply again. Decided in the server under one lock, so exactly one probe sees it
    /// however late the test thread runs.
    pub fn set_once(&self, reply: Reply) {
        *self.once.lock().unwrap() = Some(reply);
    }

    /// Stops accepting and closes the listening socket.
    pub fn close(&self) {
        self.stop.store(true, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(30));
    }
}

impl Drop for HttpTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve_http(
    mut s: TcpStream,
    reply: &Mutex<Reply>,
    once: &Mutex<Option<Reply>>,
    hits: &std::sync::atomic::AtomicUsize,
) {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 16 * 1024 {
            return;
        }
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let head = String::from_utf8_lossy(&buf).to_string();
    let r = once
        .lock()
        .unwrap()
        .take()
        .unwrap_or_else(|| reply.lock().unwrap().clone());
    let (status, body) = match &r.require_header {
        Some((name, value)) => {
            let present = head.lines().skip(1).any(|l| {
                l.split_once(':')
                    .is_some_and(|(k, v)| k.trim().eq_ignore_ascii_case(name) && v.trim() == value)
            });
            if present {
                (r.status, r.body.clone())
            } else {
                (404, "route not found".to_string())
            }
        }
        None => (r.status, r.body.clone()),
    };
    let resp = format!(
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes());
}

/// A TCP listener that accepts and closes connections; `close()` takes it away.
pub struct TcpTarget {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl TcpTarget {
    pub fn start(ip: &str) -> TcpTarget {
        let listener = TcpListener::bind((ip.parse::<IpAddr>().unwrap(), 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => drop(s),
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TcpTarget { addr, stop }
    }

    pub fn close(&self) {
        self.stop.store(true, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(30));
    }
}

impl Drop for TcpTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A zone header for test configs: `gslb.test.` with one in-zone NS.
pub const ZONE: &str = r#"
[[zone]]
origin = "gslb.test"
ttl = "1h"
ns = [{ name = "ns1", addresses = ["127.0.0.1"] }]
soa = { minimum = "15s" }
"#;
