//! Helpers shared by `tls` and `hostile`: certificates made with
//! rcgen, a recording HTTP/HTTPS/TLS server (std threads + rustls), misbehaving
//! servers, and log helpers. Used from the test modules with
//! `use crate::common::tls::*;`.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

// ------------------------------------------------------------------------ certificates

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Sets a certificate's validity window (Unix seconds). rcgen's date-time type comes
/// from the `time` crate, which is not ours to name, but it adds std durations.
fn set_validity(p: &mut CertificateParams, v: Validity) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    p.not_before = epoch + Duration::from_secs(v.not_before as u64);
    p.not_after = epoch + Duration::from_secs(v.not_after as u64);
}

/// A validity window in Unix seconds.
#[derive(Clone, Copy, Debug)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

impl Validity {
    /// Valid from a day ago for a year.
    pub fn current() -> Validity {
        let now = unix_now();
        Validity {
            not_before: now - 86_400,
            not_after: now + 365 * 86_400,
        }
    }
    /// Expired a month ago.
    pub fn expired() -> Validity {
        let now = unix_now();
        Validity {
            not_before: now - 60 * 86_400,
            not_after: now - 30 * 86_400,
        }
    }
    /// Valid now, ending `secs` from now.
    pub fn ending_in(secs: i64) -> Validity {
        let now = unix_now();
        Validity {
            not_before: now - 86_400,
            not_after: now + secs,
        }
    }
}

/// A leaf certificate with its key.
#[derive(Clone)]
pub struct Leaf {
    pub cert: CertificateDer<'static>,
    pub key_pkcs8: Vec<u8>,
    /// The same certificate and key as PEM, for servers that read files.
    pub cert_pem: String,
    pub key_pem: String,
    /// notAfter as Unix seconds (whole seconds, as encoded).
    pub not_after: i64,
}

fn leaf_params(names: &[&str], v: Validity) -> CertificateParams {
    let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("leaf params");
    p.distinguished_name
        .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
    set_validity(&mut p, v);
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p
}

/// A test certificate authority.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(cn: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = unix_now();
        set_validity(
            &mut p,
            Validity {
                not_before: now - 7 * 86_400,
                not_after: now + 2 * 365 * 86_400,
            },
        );
        let key = KeyPair::generate().unwrap();
        Ca {
            issuer: CertifiedIssuer::self_signed(p, key).expect("CA"),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate as PEM into `dir`; its absolute path.
    pub fn write_pem(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, self.pem()).unwrap();
        path
    }

    /// A leaf for `names` signed by this CA.
    pub fn issue(&self, names: &[&str], v: Validity) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let cert = leaf_params(names, v).signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: cert.der().clone(),
            key_pkcs8: key.serialize_der(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_after: v.not_after,
        }
    }
}

/// A self-signed leaf (not from any CA).
pub fn self_signed(names: &[&str], v: Validity) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let cert = leaf_params(names, v).self_signed(&key).unwrap();
    Leaf {
        cert: cert.der().clone(),
        key_pkcs8: key.serialize_der(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_after: v.not_after,
    }
}

/// A rustls server configuration presenting `leaf` (TLS 1.2 and 1.3, ring).
pub fn server_config(leaf: &Leaf) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.cert.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_pkcs8.clone())),
        )
        .expect("server config");
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

// ------------------------------------------------------------------ recording server

/// One HTTP request as the server saw it.
#[derive(Clone, Debug)]
pub struct Request {
    /// The SNI of the TLS connection it came over (None for plain HTTP or no SNI).
    pub sni: Option<String>,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Decides the answer to a request: (status, body).
pub type Router = Arc<dyn Fn(&Request) -> (u16, String) + Send + Sync>;

pub fn always(status: u16, body: &str) -> Router {
    let body = body.to_string();
    Arc::new(move |_| (status, body.clone()))
}

/// A real server on `ip:0`: plain HTTP/1.1, or TLS (handshake, then HTTP/1.1 if the
/// client sends a request). Records the SNI of every handshake and every request.
pub struct Server {
    pub addr: SocketAddr,
    tls: Option<Arc<Mutex<Arc<ServerConfig>>>>,
    /// SNI of every completed handshake, in order.
    pub handshakes: Arc<Mutex<Vec<Option<String>>>>,
    /// SNI of every handshake that failed (the client rejected us, or went away).
    pub failed_handshakes: Arc<Mutex<Vec<Option<String>>>>,
    pub requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    pub fn http(ip: &str, router: Router) -> Server {
        Server::start(ip, None, router)
    }

    pub fn https(ip: &str, leaf: &Leaf, router: Router) -> Server {
        Server::start(ip, Some(server_config(leaf)), router)
    }

    fn start(ip: &str, tls: Option<Arc<ServerConfig>>, router: Router) -> Server {
        let listener = TcpListener::bind((ip.parse::<IpAddr>().unwrap(), 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let tls = tls.map(|c| Arc::new(Mutex::new(c)));
        let server = Server {
            addr,
            tls: tls.clone(),
            handshakes: Arc::default(),
            failed_handshakes: Arc::default(),
            requests: Arc::default(),
            stop: Arc::default(),
        };
        let (hs, fhs, reqs, stop) = (
            server.handshakes.clone(),
            server.failed_handshakes.clone(),
            server.requests.clone(),
            server.stop.clone(),
        );
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let cfg = tls.as_ref().map(|t| t.lock().unwrap().clone());
                        let (hs, fhs, reqs, router) =
                            (hs.clone(), fhs.clone(), reqs.clone(), router.clone());
                        thread::spawn(move || serve_conn(s, cfg, &hs, &fhs, &reqs, &router));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        server
    }

    /// Presents `leaf` from the next connection on.
    pub fn set_cert(&self, leaf: &Leaf) {
        *self.tls.as_ref().expect("a TLS server").lock().unwrap() = server_config(leaf);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    pub fn handshakes(&self) -> Vec<Option<String>> {
        self.handshakes.lock().unwrap().clone()
    }

    pub fn failed_handshakes(&self) -> Vec<Option<String>> {
        self.failed_handshakes.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve_conn(
    tcp: TcpStream,
    tls: Option<Arc<ServerConfig>>,
    hs: &Mutex<Vec<Option<String>>>,
    fhs: &Mutex<Vec<Option<String>>>,
    reqs: &Mutex<Vec<Request>>,
    router: &Router,
) {
    let mut tcp = tcp;
    tcp.set_nonblocking(false).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let Some(cfg) = tls else {
        serve_http(&mut tcp, None, reqs, router);
        return;
    };
    let mut conn = ServerConnection::new(cfg).unwrap();
    let mut ok = true;
    while conn.is_handshaking() {
        match conn.complete_io(&mut tcp) {
            Ok((0, 0)) => {
                ok = false; // EOF
                break;
            }
            Ok(_) => {}
            Err(_) => {
                ok = false;
                break;
            }
        }
    }
    let sni = conn.server_name().map(str::to_string);
    if !ok {
        fhs.lock().unwrap().push(sni);
        return;
    }
    hs.lock().unwrap().push(sni.clone());
    let mut s = StreamOwned::new(conn, tcp);
    serve_http(&mut s, sni, reqs, router);
    s.conn.send_close_notify();
    let _ = s.flush();
}

fn serve_http<S: Read + Write>(
    s: &mut S,
    sni: Option<String>,
    reqs: &Mutex<Vec<Request>>,
    router: &Router,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return, // a `tls` probe: handshake only
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 64 * 1024 {
            return;
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let req = Request {
        sni,
        method,
        path,
        headers,
    };
    let (status, body) = router(&req);
    reqs.lock().unwrap().push(req);
    let resp = format!(
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes());
    let _ = s.flush();
}

// ------------------------------------------------------------------ hostile servers

/// How a hostile server misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Reads whatever comes and never answers (nor closes).
    Hang,
    /// Reads the request, then sends a valid response one byte per second.
    SlowHeaders,
    /// Answers 200 with a body that never ends.
    EndlessBody,
    /// Reads the first bytes (the request or the ClientHello), then closes with
    /// SO_LINGER 0, which sends a TCP RST.
    Reset,
}

/// A misbehaving server on one or more listeners. Counts connections and the bytes
/// that arrived first on each (to tell a ClientHello from an HTTP request).
pub struct Hostile {
    pub addrs: Vec<SocketAddr>,
    /// Connections accepted.
    pub accepted: Arc<AtomicUsize>,
    /// Connections whose first byte was 0x16 (a TLS handshake record).
    pub tls_hellos: Arc<AtomicUsize>,
    /// Connections whose first bytes were an HTTP request line.
    pub http_requests: Arc<AtomicUsize>,
    /// Hung connections currently held open.
    pub held: Arc<AtomicUsize>,
    /// Body bytes written by `EndlessBody`.
    pub body_bytes: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Hostile {
    pub fn start(ip: &str, how: Misbehaviour) -> Hostile {
        Hostile::start_many(ip, 1, how)
    }

    /// `n` listeners on `ip`, served by one thread (plus one per connection for the
    /// misbehaviours that need a steady writer).
    pub fn start_many(ip: &str, n: usize, how: Misbehaviour) -> Hostile {
        let listeners: Vec<TcpListener> = (0..n)
            .map(|_| {
                let l = TcpListener::bind((ip.parse::<IpAddr>().unwrap(), 0)).unwrap();
                l.set_nonblocking(true).unwrap();
                l
            })
            .collect();
        let h = Hostile {
            addrs: listeners.iter().map(|l| l.local_addr().unwrap()).collect(),
            accepted: Arc::default(),
            tls_hellos: Arc::default(),
            http_requests: Arc::default(),
            held: Arc::default(),
            body_bytes: Arc::default(),
            stop: Arc::default(),
        };
        let (accepted, tls_hellos, http_requests, held, body_bytes, stop) = (
            h.accepted.clone(),
            h.tls_hellos.clone(),
            h.http_requests.clone(),
            h.held.clone(),
            h.body_bytes.clone(),
            h.stop.clone(),
        );
        thread::spawn(move || {
            // Hung connections: (stream, first bytes seen yet).
            let mut hung: Vec<(TcpStream, bool)> = Vec::new();
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::SeqCst) {
                let mut busy = false;
                for l in &listeners {
                    while let Ok((s, _)) = l.accept() {
                        busy = true;
                        accepted.fetch_add(1, Ordering::SeqCst);
                        if how == Misbehaviour::Hang {
                            s.set_nonblocking(true).unwrap();
                            hung.push((s, false));
                        } else {
                            let (t, r, b, st) = (
                                tls_hellos.clone(),
                                http_requests.clone(),
                                body_bytes.clone(),
                                stop.clone(),
                            );
                            thread::spawn(move || misbehave(s, how, &t, &r, &b, &st));
                        }
                    }
                }
                // Drain what the hung connections send; forget the ones the peer closed.
                hung.retain_mut(|(s, seen)| match s.read(&mut buf) {
                    Ok(0) => false,
                    Ok(n) => {
                        if !*seen {
                            *seen = true;
                            classify(&buf[..n], &tls_hellos, &http_requests);
                        }
                        true
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => true,
                    Err(_) => false,
                });
                held.store(hung.len(), Ordering::SeqCst);
                if !busy {
                    thread::sleep(Duration::from_millis(5));
                }
            }
        });
        h
    }

    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn classify(first: &[u8], tls: &AtomicUsize, http: &AtomicUsize) {
    if first.first() == Some(&0x16) {
        tls.fetch_add(1, Ordering::SeqCst);
    } else if first.starts_with(b"GET ") || first.starts_with(b"HEAD ") {
        http.fetch_add(1, Ordering::SeqCst);
    }
}

fn misbehave(
    mut s: TcpStream,
    how: Misbehaviour,
    tls: &AtomicUsize,
    http: &AtomicUsize,
    body_bytes: &AtomicUsize,
    stop: &AtomicBool,
) {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    // Read the first bytes: the request head (usually one segment) or the ClientHello.
    let mut buf = [0u8; 4096];
    let n = match s.read(&mut buf) {
        Ok(0) | Err(_) => return,
        Ok(n) => n,
    };
    classify(&buf[..n], tls, http);
    match how {
        Misbehaviour::Hang => unreachable!("served by the accept thread"),
        Misbehaviour::SlowHeaders => {
            let resp = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
            for b in resp {
                if stop.load(Ordering::SeqCst) || s.write_all(&[*b]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_secs(1));
            }
        }
        Misbehaviour::EndlessBody => {
            // No content-length: the body runs until we close, which we never do.
            let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n";
            if s.write_all(head).is_err() {
                return;
            }
            let chunk = vec![b'x'; 16 * 1024];
            while !stop.load(Ordering::SeqCst) {
                match s.write(&chunk) {
                    Ok(n) => {
                        body_bytes.fetch_add(n, Ordering::SeqCst);
                    }
                    Err(_) => return,
                }
            }
        }
        Misbehaviour::Reset => {
            let sock = socket2::Socket::from(s);
            sock.set_linger(Some(Duration::ZERO)).unwrap();
            drop(sock); // close with linger 0: RST instead of FIN
        }
    }
}

// ----------------------------------------------------------------------------- logs

/// One `probe done` debug line: (ok, ms).
pub fn probes_of(logs: &str, label: &str) -> Vec<(bool, u64)> {
    let needle = format!("probe done target={label} ");
    logs.lines()
        .filter_map(|l| {
            let rest = &l[l.find(&needle)? + needle.len()..];
            let ok = rest.contains("ok=true");
            let ms = rest
                .split_whitespace()
                .find_map(|w| w.strip_prefix("ms="))?
                .parse()
                .ok()?;
            Some((ok, ms))
        })
        .collect()
}

/// A plain HTTP/1.1 GET over a fresh TCP connection; (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let Some((len, rest)) = s.split_once("\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            return out;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
}
