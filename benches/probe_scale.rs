//! Health-engine scale: N HTTP targets on loopback, probed every second by the real
//! release `gslb` binary. Reports the CPU gslb spends, its memory, and how late probes
//! start against their schedule, for each N.
//!
//! Run: `cargo bench --bench probe_scale` (N = 100, 1000, 5000; about 2 minutes).
//! Options, as arguments after `--` or as environment variables:
//!   --n 100,1000,5000        PROBE_SCALE_N           target counts, one table row each
//!   --secs 20                PROBE_SCALE_SECS        measured window per N
//!   --warmup 3               PROBE_SCALE_WARMUP      seconds between the first full probe
//!                                                    round and the window
//!   --repeat 1               PROBE_SCALE_REPEAT      runs per N (interleaved); with more than
//!                                                    one, the least disturbed run of each N is
//!                                                    printed again as a table of its own
//!   --max-probes 1024        PROBE_SCALE_MAX_PROBES  [health] max_concurrent_probes
//!   --quiet-wait 60          PROBE_SCALE_QUIET_WAIT  wait up to this long for all CPUs to be
//!                                                    under 10% busy before each run (0 = no)
//!   --timeline               PROBE_SCALE_TIMELINE=1  print one line per second of the window
//!   --no-pin                 PROBE_SCALE_PIN=0       do not use taskset
//!   --keep                   PROBE_SCALE_KEEP=1      keep the work directory (configs, gslb logs)
//!   GSLB_BIN=path            the gslb binary; default: the one cargo built for this bench
//!                            (`target/release/gslb`: benches use the release profile)
//!
//! What it does, per N: binds N listeners in this process (one per target, on
//! 127.0.{1..9}.{1..50}, ports 20000 + i/450), each answering `GET /hc` with
//! `200 OK` and a 3-byte body, then closing; writes a config with N gateways whose
//! `probe` is a target, one `http` check (interval 1s, timeout 500ms, jitter 900ms),
//! services of 10 endpoints, `[admin] listen = "127.0.0.1:0"`; starts gslb (pinned to
//! the last allowed CPU when taskset exists and there are at least 2 CPUs; this process
//! and its targets go on the others), waits for the first full probe round plus the
//! warm-up, then measures over the window: gslb utime+stime (/proc/PID/stat), RSS,
//! probes completed and their outcomes (`gslb_probe_results_total`), schedule lag
//! (`gslb_probe_schedule_lag_seconds`, `gslb_probes_late_total`) and probe duration
//! (`gslb_probe_duration_seconds`), all as deltas over the window.
//!
//! The soft RLIMIT_NOFILE is raised to the hard limit at start (children inherit it);
//! if the hard limit is below what N needs, run `ulimit -n 65536` (as root) first.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ------------------------------------------------------------------------- libc bits
// std links libc already; these are the few calls we need, declared by hand so the
// bench adds no dependency. Values are Linux (x86_64 and aarch64).

#[repr(C)]
struct RLimit {
    cur: u64,
    max: u64,
}

const RLIMIT_NOFILE: i32 = 7;
const SC_CLK_TCK: i32 = 2;
const PR_SET_PDEATHSIG: i32 = 1;
const SIGTERM: u64 = 15;

unsafe extern "C" {
    fn prctl(option: i32, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> i32;
    fn getrlimit(resource: i32, rlim: *mut RLimit) -> i32;
    fn setrlimit(resource: i32, rlim: *const RLimit) -> i32;
    fn sysconf(name: i32) -> i64;
}

/// Raises the soft open-files limit as far as allowed; returns the new soft limit.
fn raise_nofile(want: u64) -> u64 {
    let mut r = RLimit { cur: 0, max: 0 };
    // SAFETY: plain syscalls on a struct we own, with the layout of `struct rlimit`.
    unsafe {
        if getrlimit(RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        if r.cur >= want {
            return r.cur;
        }
        // Root may raise the hard limit too; everyone else up to the hard limit.
        let up = RLimit {
            cur: want,
            max: r.max.max(want),
        };
        if setrlimit(RLIMIT_NOFILE, &up) == 0 {
            return want;
        }
        let up = RLimit {
            cur: r.max,
            max: r.max,
        };
        if setrlimit(RLIMIT_NOFILE, &up) == 0 {
            return r.max;
        }
        r.cur
    }
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { sysconf(SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

// ------------------------------------------------------------------------- options

struct Opts {
    ns: Vec<usize>,
    secs: u64,
    warmup: u64,
    max_probes: usize,
    pin: bool,
    keep: bool,
    timeline: bool,
    quiet_wait: u64,
    repeat: usize,
    bin: PathBuf,
}

fn opts() -> Opts {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut n = env("PROBE_SCALE_N").unwrap_or_else(|| "100,1000,5000".into());
    let mut secs = env("PROBE_SCALE_SECS").unwrap_or_else(|| "20".into());
    let mut warmup = env("PROBE_SCALE_WARMUP").unwrap_or_else(|| "3".into());
    let mut max_probes = env("PROBE_SCALE_MAX_PROBES").unwrap_or_else(|| "1024".into());
    let mut pin = env("PROBE_SCALE_PIN").is_none_or(|v| v != "0");
    let mut keep = env("PROBE_SCALE_KEEP").is_some_and(|v| v != "0");
    let mut timeline = env("PROBE_SCALE_TIMELINE").is_some_and(|v| v != "0");
    let mut quiet_wait = env("PROBE_SCALE_QUIET_WAIT").unwrap_or_else(|| "60".into());
    let mut repeat = env("PROBE_SCALE_REPEAT").unwrap_or_else(|| "1".into());
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| {
            args.next()
                .unwrap_or_else(|| die(&format!("{name} needs a value")))
        };
        match a.as_str() {
            "--n" => n = val("--n"),
            "--secs" => secs = val("--secs"),
            "--warmup" => warmup = val("--warmup"),
            "--max-probes" => max_probes = val("--max-probes"),
            "--no-pin" => pin = false,
            "--keep" => keep = true,
            "--timeline" => timeline = true,
            "--quiet-wait" => quiet_wait = val("--quiet-wait"),
            "--repeat" => repeat = val("--repeat"),
            "--bench" => {}                        // added by `cargo bench`
            other if other.starts_with("--") => {} // other harness flags: ignore
            other => die(&format!("unexpected argument {other:?}")),
        }
    }
    let num = |what: &str, s: &str| -> u64 {
        s.trim()
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| die(&format!("{what}: {s:?} is not a number")))
    };
    let ns: Vec<usize> = n.split(',').map(|s| num("N", s) as usize).collect();
    if ns.iter().any(|&n| n == 0 || n > 9 * 50 * 60) {
        die("each N must be between 1 and 27000");
    }
    let bin = env("GSLB_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_gslb")));
    Opts {
        ns,
        secs: num("secs", &secs).max(1),
        warmup: num("warmup", &warmup),
        max_probes: num("max-probes", &max_probes).max(1) as usize,
        pin,
        keep,
        timeline,
        quiet_wait: num("quiet-wait", &quiet_wait),
        repeat: num("repeat", &repeat).max(1) as usize,
        bin,
    }
}

fn die(msg: &str) -> ! {
    eprintln!("probe_scale: {msg}");
    std::process::exit(2);
}

// ------------------------------------------------------------------------- CPUs

fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or("")
        .trim();
    let mut cpus = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    cpus.extend(a..=b);
                }
            }
            None => cpus.extend(part.parse::<usize>().ok()),
        }
    }
    cpus
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn cpu_list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// utime + stime (ticks) of a process, all threads.
fn proc_ticks(pid: &str) -> Option<u64> {
    proc_user_sys(pid).map(|(u, s)| u + s)
}

/// (utime, stime) in ticks of a process, all threads.
fn proc_user_sys(pid: &str) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the command: state is field 3, utime 14, stime 15.
    Some((f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?))
}

fn proc_status(pid: &str, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix(key))?;
    line.trim_start_matches(':')
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Tick counters of one CPU from /proc/stat.
#[derive(Clone, Copy)]
struct CpuTicks {
    /// Everything but idle and iowait.
    busy: u64,
    total: u64,
    /// irq + softirq: on loopback, much of the TCP work of the process on this CPU.
    irq: u64,
    /// Time the hypervisor ran something else while this CPU wanted to run.
    steal: u64,
}

/// Busy time on gslb's CPU that gslb is not charged for, in % of the interval.
#[derive(Clone, Copy)]
struct Disturbance {
    irq: f64,
    steal: f64,
    /// Other processes (and anything else not counted above).
    other: f64,
}

impl Disturbance {
    fn new(a: Option<CpuTicks>, b: Option<CpuTicks>, gslb_ticks: u64) -> Option<Disturbance> {
        let (a, b) = (a?, b?);
        if b.total <= a.total {
            return None;
        }
        let total = (b.total - a.total) as f64;
        let irq = (b.irq - a.irq) as f64;
        let steal = (b.steal - a.steal) as f64;
        let rest = (b.busy - a.busy) as f64 - irq - steal - gslb_ticks as f64;
        Some(Disturbance {
            irq: irq / total * 100.0,
            steal: steal / total * 100.0,
            other: (rest / total * 100.0).max(0.0),
        })
    }
}

fn cpu_ticks(cpu: usize) -> Option<CpuTicks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat
        .lines()
        .find(|l| l.starts_with(&format!("cpu{cpu} ")))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let f = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest is included in user).
    let total: u64 = (0..8).map(f).sum();
    Some(CpuTicks {
        busy: total - f(3) - f(4),
        total,
        irq: f(5) + f(6),
        steal: f(7),
    })
}

// ------------------------------------------------------------------------- targets

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";
const NOT_FOUND: &[u8] =
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

#[derive(Default)]
struct TargetStats {
    served: AtomicU64,
    bad: AtomicU64,
    accept_errors: AtomicU64,
}

fn target_addr(i: usize, port_shift: u16) -> SocketAddr {
    // 9 /24s × 50 hosts = 450 addresses; the port moves on every 450 targets.
    let ip = Ipv4Addr::new(127, 0, 1 + (i % 9) as u8, 1 + ((i / 9) % 50) as u8);
    SocketAddr::V4(SocketAddrV4::new(ip, 20000 + (i / 450) as u16 + port_shift))
}

/// Binds N listeners; on a port clash the whole set moves up by 100 ports and retries.
async fn bind_targets(n: usize) -> Vec<tokio::net::TcpListener> {
    'shift: for attempt in 0..20u16 {
        let shift = attempt * 100;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let addr = target_addr(i, shift);
            let sock = tokio::net::TcpSocket::new_v4().expect("socket");
            let _ = sock.set_reuseaddr(true);
            let bound = sock.bind(addr).and_then(|_| sock.listen(1024));
            match bound {
                Ok(l) => out.push(l),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue 'shift,
                Err(e) => die(&format!(
                    "cannot listen on {addr}: {e} (open files limit? try `ulimit -n 65536`)"
                )),
            }
        }
        return out;
    }
    die("no free port range for the targets (tried 20000..22000 + i/450)");
}

async fn serve_target(l: tokio::net::TcpListener, stats: Arc<TargetStats>) {
    loop {
        let mut s = match l.accept().await {
            Ok((s, _)) => s,
            Err(_) => {
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // One probe per target at a time: handle it inline, bounded by 1 s.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let mut buf = [0u8; 2048];
            let mut len = 0;
            let complete = loop {
                match s.read(&mut buf[len..]).await {
                    Ok(0) | Err(_) => break false,
                    Ok(k) => len += k,
                }
                if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    break true;
                }
                if len == buf.len() {
                    break false;
                }
            };
            let good = complete && buf[..len].starts_with(b"GET /hc ");
            let resp = if good { RESPONSE } else { NOT_FOUND };
            if s.write_all(resp).await.is_ok() && good {
                stats.served.fetch_add(1, Ordering::Relaxed);
            } else {
                stats.bad.fetch_add(1, Ordering::Relaxed);
            }
            let _ = s.shutdown().await;
        })
        .await;
    }
}

// ------------------------------------------------------------------------- config

fn write_config(path: &Path, targets: &[SocketAddr], max_probes: usize) {
    let mut c = String::new();
    let _ = writeln!(
        c,
        r#"# Written by benches/probe_scale.rs: {n} http targets on loopback.
[server]
listen = ["127.0.0.1:0"]
udp_sockets = 1

[admin]
listen = "127.0.0.1:0"

[health]
max_concurrent_probes = {max_probes}

[[zone]]
origin = "scale.bench.test"
ttl = "1h"
ns = [{{ name = "ns1", addresses = ["127.0.0.1"] }}]

[[check]]
name = "hc"
kind = "http"
path = "/hc"
interval = "1s"
timeout = "500ms"
jitter = "900ms"
rise = 2
fall = 2
"#,
        n = targets.len()
    );
    for (i, t) in targets.iter().enumerate() {
        // Answer addresses from 198.18.0.0/15, one per gateway.
        let a = 0xC612_0000u32 + 1 + i as u32;
        let _ = writeln!(
            c,
            "[[gateway]]\nname = \"g{i}\"\naddresses = [\"{}\"]\nprobe = \"{t}\"\n",
            Ipv4Addr::from(a)
        );
    }
    for (s, chunk) in (0..targets.len())
        .collect::<Vec<_>>()
        .chunks(10)
        .enumerate()
    {
        let eps: Vec<String> = chunk
            .iter()
            .map(|i| format!("{{ gateway = \"g{i}\" }}"))
            .collect();
        let _ = writeln!(
            c,
            "[[service]]\nname = \"s{s}.scale.bench.test\"\ncheck = \"hc\"\nanswers = 2\nendpoints = [{}]\n",
            eps.join(", ")
        );
    }
    std::fs::write(path, c).unwrap_or_else(|e| die(&format!("cannot write config: {e}")));
}

// ------------------------------------------------------------------------- metrics

/// One scrape of /metrics: (name, labels, value) rows.
struct Scrape(Vec<(String, String, f64)>);

fn scrape(admin: SocketAddr) -> Result<Scrape, String> {
    let mut s = TcpStream::connect_timeout(&admin, Duration::from_secs(5))
        .map_err(|e| format!("connect {admin}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    // HTTP/1.0: the body comes close-delimited or with a length, never chunked.
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: gslb\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP header end")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!(
            "/metrics: {}",
            head.lines().next().unwrap_or_default()
        ));
    }
    let mut rows = Vec::new();
    for line in body.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (name, labels) = match key.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (key, ""),
        };
        let v = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or(f64::NAN),
        };
        rows.push((name.to_string(), labels.to_string(), v));
    }
    Ok(Scrape(rows))
}

fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
    })
}

impl Scrape {
    fn sum(&self, name: &str, filter: impl Fn(&str) -> bool) -> f64 {
        self.0
            .iter()
            .filter(|(n, l, _)| n == name && filter(l))
            .map(|r| r.2)
            .sum()
    }
    fn get(&self, name: &str) -> f64 {
        self.sum(name, |_| true)
    }
    fn outcome(&self, o: &str) -> f64 {
        self.sum("gslb_probe_results_total", |l| {
            label(l, "outcome") == Some(o)
        })
    }
    fn probes(&self) -> f64 {
        self.get("gslb_probe_results_total")
    }
    /// Cumulative buckets of a histogram, summed over label sets, by upper bound.
    fn buckets(&self, hist: &str) -> Vec<(f64, f64)> {
        let name = format!("{hist}_bucket");
        let mut by_le: Vec<(f64, f64)> = Vec::new();
        for (n, l, v) in &self.0 {
            if *n != name {
                continue;
            }
            let le = match label(l, "le") {
                Some("+Inf") => f64::INFINITY,
                Some(x) => x.parse().unwrap_or(f64::NAN),
                None => continue,
            };
            match by_le.iter_mut().find(|(b, _)| *b == le) {
                Some(e) => e.1 += v,
                None => by_le.push((le, *v)),
            }
        }
        by_le.sort_by(|a, b| a.0.total_cmp(&b.0));
        by_le
    }
}

/// A histogram's change between two scrapes.
struct HistDelta {
    count: f64,
    sum: f64,
    buckets: Vec<(f64, f64)>,
}

impl HistDelta {
    fn new(a: &Scrape, b: &Scrape, hist: &str) -> HistDelta {
        let ba = a.buckets(hist);
        let bb = b.buckets(hist);
        let buckets = bb
            .iter()
            .map(|(le, v)| {
                let before = ba.iter().find(|(l, _)| l == le).map_or(0.0, |x| x.1);
                (*le, v - before)
            })
            .collect();
        HistDelta {
            count: b.get(&format!("{hist}_count")) - a.get(&format!("{hist}_count")),
            sum: b.get(&format!("{hist}_sum")) - a.get(&format!("{hist}_sum")),
            buckets,
        }
    }
    fn mean(&self) -> f64 {
        if self.count > 0.0 {
            self.sum / self.count
        } else {
            f64::NAN
        }
    }
    /// The upper bound of the bucket holding quantile q, and the lower bound (for "+Inf").
    fn quantile_bucket(&self, q: f64) -> (f64, f64) {
        let rank = q * self.count;
        let mut lower = 0.0;
        for &(le, cum) in &self.buckets {
            if cum >= rank && cum > 0.0 {
                return (lower, le);
            }
            lower = le;
        }
        (lower, f64::INFINITY)
    }
    /// Share of observations at or under `bound` (a bucket bound).
    fn share_under(&self, bound: f64) -> f64 {
        let c = self
            .buckets
            .iter()
            .find(|(le, _)| (*le - bound).abs() < 1e-12)
            .map_or(f64::NAN, |x| x.1);
        if self.count > 0.0 {
            c / self.count
        } else {
            f64::NAN
        }
    }
}

fn fmt_q((lower, upper): (f64, f64)) -> String {
    if upper.is_infinite() {
        format!(">{}", lower * 1e3)
    } else {
        format!("<={}", upper * 1e3)
    }
}

// ------------------------------------------------------------------------- timeline

/// Prints one line per second of the window (scraping /metrics every second costs gslb
/// a little CPU, so this is off by default).
fn timeline(admin: SocketAddr, pid: &str, cpu: Option<usize>, n: usize, secs: u64, tck: f64) {
    let start = Instant::now();
    let mut prev = (scrape(admin).ok(), proc_ticks(pid), cpu.and_then(cpu_ticks));
    for i in 1..=secs {
        let next = start + Duration::from_secs(i);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let cur = (scrape(admin).ok(), proc_ticks(pid), cpu.and_then(cpu_ticks));
        if let ((Some(a), Some(g0), c0), (Some(b), Some(g1), c1)) = (&prev, &cur) {
            let lag = HistDelta::new(a, b, "gslb_probe_schedule_lag_seconds");
            let fails = |s: &Scrape| s.outcome("failure") + s.outcome("timeout");
            let dist = Disturbance::new(*c0, *c1, g1 - g0).map_or("-".into(), |d| {
                format!(
                    "irq {:.0}% steal {:.0}% other {:.0}%",
                    d.irq, d.steal, d.other
                )
            });
            println!(
                "  N={n} t={i:>3}s probes {:>6} fail {:>5} late {:>5} lag mean {:>8.2} ms p99 {:>7} ms | gslb CPU {:>5.1}% | its CPU also: {dist}",
                b.probes() - a.probes(),
                fails(b) - fails(a),
                b.get("gslb_probes_late_total") - a.get("gslb_probes_late_total"),
                lag.mean() * 1e3,
                fmt_q(lag.quantile_bucket(0.99)),
                (g1 - g0) as f64 / tck * 100.0,
            );
        }
        prev = cur;
    }
}

/// Waits (up to `max` seconds) until every CPU has been under 10% busy for a second,
/// so that a run does not start in the middle of somebody's build. Returns the wait.
fn wait_quiet(cpus: &[usize], max: u64) -> Option<f64> {
    let start = Instant::now();
    loop {
        let a: Vec<_> = cpus.iter().map(|&c| cpu_ticks(c)).collect();
        std::thread::sleep(Duration::from_secs(1));
        let b: Vec<_> = cpus.iter().map(|&c| cpu_ticks(c)).collect();
        let quiet = a.iter().zip(&b).all(|(x, y)| match (x, y) {
            (Some(x), Some(y)) if y.total > x.total => {
                ((y.busy - x.busy) as f64 / (y.total - x.total) as f64) < 0.10
            }
            _ => true,
        });
        if quiet {
            return Some(start.elapsed().as_secs_f64());
        }
        if start.elapsed().as_secs() >= max {
            return None;
        }
    }
}

// ------------------------------------------------------------------------- one run

struct Row {
    n: usize,
    secs: f64,
    probes: f64,
    served: f64,
    cpu_pct: f64,
    sys_share: f64,
    us_per_probe: f64,
    rss_kib: u64,
    threads: u64,
    lag: HistDelta,
    late: f64,
    dur: HistDelta,
    fail_window: f64,
    fail_total: f64,
    first_round: f64,
    dist: Option<Disturbance>,
    startup: String,
    target_cpu_pct: f64,
    target_bad: u64,
    notes: Vec<String>,
    quiet: Option<f64>,
    /// 1-based run number of this N (see --repeat).
    run: usize,
}

/// Kills gslb when dropped, so that a panic or an early return leaves nothing behind.
struct Gslb(Child);

impl Drop for Gslb {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_one(o: &Opts, n: usize, gslb_cpu: Option<usize>, cpus: &[usize], work: &Path) -> Row {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stats = Arc::new(TargetStats::default());
    let listeners = rt.block_on(bind_targets(n));
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr"))
        .collect();
    for l in listeners {
        rt.spawn(serve_target(l, stats.clone()));
    }

    let cfg = work.join(format!("probe_scale_{n}.toml"));
    let log = work.join(format!("gslb_{n}.log"));
    write_config(&cfg, &addrs, o.max_probes);
    let quiet = if o.quiet_wait > 0 {
        wait_quiet(cpus, o.quiet_wait)
    } else {
        Some(0.0)
    };

    let mut cmd = match gslb_cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string()]).arg(&o.bin);
            c
        }
        None => Command::new(&o.bin),
    };
    cmd.arg("serve")
        .arg("-c")
        .arg(&cfg)
        .env("RUST_LOG", "info,hickory_server=warn,hickory_proto=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log file"));
    let spawned = Instant::now();
    let c_spawn = gslb_cpu.and_then(cpu_ticks);
    // If this process dies without cleaning up (SIGKILL, say), gslb gets SIGTERM.
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
            Ok(())
        });
    }
    let mut child = Gslb(
        cmd.spawn()
            .unwrap_or_else(|e| die(&format!("cannot start {}: {e}", o.bin.display()))),
    );
    // Every exit from here on stops gslb first.
    let fail = |child: Gslb, msg: String| -> ! {
        drop(child);
        die(&msg)
    };
    let pid = child.0.id().to_string();

    // Read stdout until the admin address shows up; then keep draining it.
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("gslb: admin listening on ") {
                let _ = tx.send(a.trim().to_string());
            }
        }
    });
    // Startup builds one HTTP client per target before the admin listener comes up;
    // that takes seconds at large N, more on a busy machine.
    let startup_limit = Duration::from_secs(120 + n as u64 / 25);
    let admin: SocketAddr = match rx.recv_timeout(startup_limit) {
        Ok(a) => a.parse().expect("admin address"),
        Err(_) => {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            fail(
                child,
                format!(
                    "gslb did not report its admin address within {} s; its log:\n{tail}",
                    startup_limit.as_secs()
                ),
            );
        }
    };

    // Warm up: every target probed at least once, then a few more rounds.
    let deadline = Instant::now() + Duration::from_secs(60);
    let first_round = loop {
        if let Ok(s) = scrape(admin)
            && s.probes() >= n as f64
        {
            break spawned.elapsed().as_secs_f64();
        }
        if Instant::now() > deadline {
            fail(
                child,
                format!("N={n}: fewer than N probes done 60 s after the admin listener came up"),
            );
        }
        if let Ok(Some(st)) = child.0.try_wait() {
            fail(
                child,
                format!("N={n}: gslb exited early ({st}); see {}", log.display()),
            );
        }
        // A scrape is not free at large N (about 0.85 MB of text at N=5000), so poll gently.
        std::thread::sleep(Duration::from_millis(500));
    };
    let g_first = proc_ticks(&pid).unwrap_or(0);
    let dist_startup = Disturbance::new(c_spawn, gslb_cpu.and_then(cpu_ticks), g_first);
    std::thread::sleep(Duration::from_secs(o.warmup));

    // The window.
    let tck = clk_tck();
    let a = match scrape(admin) {
        Ok(s) => s,
        Err(e) => fail(child, e),
    };
    let t0 = Instant::now();
    let (u0, s0) = proc_user_sys(&pid).unwrap_or((0, 0));
    let self0 = proc_ticks("self").unwrap_or(0);
    let c0 = gslb_cpu.and_then(cpu_ticks);
    let served0 = stats.served.load(Ordering::Relaxed);
    if o.timeline {
        timeline(admin, &pid, gslb_cpu, n, o.secs, tck);
    } else {
        std::thread::sleep(Duration::from_secs(o.secs));
    }
    let (u1, s1) = proc_user_sys(&pid).unwrap_or((0, 0));
    let (g0, g1) = (u0 + s0, u1 + s1);
    let self1 = proc_ticks("self").unwrap_or(0);
    let c1 = gslb_cpu.and_then(cpu_ticks);
    let served1 = stats.served.load(Ordering::Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    let b = match scrape(admin) {
        Ok(s) => s,
        Err(e) => fail(child, e),
    };
    let rss_kib = proc_status(&pid, "VmRSS").unwrap_or(0);
    let threads = proc_status(&pid, "Threads").unwrap_or(0);

    let gslb_s = (g1 - g0) as f64 / tck;
    let probes = b.probes() - a.probes();
    let fails = |s: &Scrape| s.outcome("failure") + s.outcome("timeout");
    let dist = Disturbance::new(c0, c1, g1 - g0);
    let startup = format!(
        "startup: admin up and every target probed once {first_round:.1} s after spawn; gslb used {:.1} CPU-s \
         until then{}; failures before the window (startup + warm-up): {}",
        g_first as f64 / tck,
        dist_startup.map_or(String::new(), |d| format!(
            " (its CPU meanwhile: irq {:.0}%, steal {:.0}%, other {:.0}%)",
            d.irq, d.steal, d.other
        )),
        fails(&a)
    );

    let mut notes = Vec::new();
    let targets = b.get("gslb_probe_targets");
    if targets as usize != n {
        notes.push(format!("gslb_probe_targets = {targets}, expected {n}"));
    }
    let down = b.sum("gslb_target_transitions_total", |l| {
        label(l, "to") == Some("down")
    });
    if down > 0.0 {
        notes.push(format!("{down} target transitions to DOWN since start"));
    }
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let warns: Vec<&str> = log_text
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    if !warns.is_empty() {
        notes.push(format!("{} WARN/ERROR log lines; first ones:", warns.len()));
        for w in warns.iter().take(5) {
            notes.push(format!("    {w}"));
        }
    }
    let bad = stats.bad.load(Ordering::Relaxed) + stats.accept_errors.load(Ordering::Relaxed);

    drop(child); // SIGTERM, wait
    rt.shutdown_timeout(Duration::from_secs(2)); // closes the listeners
    if !o.keep {
        let _ = std::fs::remove_file(&cfg);
        let _ = std::fs::remove_file(&log);
    }

    Row {
        n,
        secs,
        probes,
        served: (served1 - served0) as f64,
        cpu_pct: gslb_s / secs * 100.0,
        sys_share: if g1 > g0 {
            (s1 - s0) as f64 / (g1 - g0) as f64 * 100.0
        } else {
            f64::NAN
        },
        us_per_probe: if probes > 0.0 {
            gslb_s * 1e6 / probes
        } else {
            f64::NAN
        },
        rss_kib,
        threads,
        lag: HistDelta::new(&a, &b, "gslb_probe_schedule_lag_seconds"),
        late: b.get("gslb_probes_late_total") - a.get("gslb_probes_late_total"),
        dur: HistDelta::new(&a, &b, "gslb_probe_duration_seconds"),
        fail_window: fails(&b) - fails(&a),
        fail_total: fails(&b),
        first_round,
        dist,
        startup,
        target_cpu_pct: (self1 - self0) as f64 / tck / secs * 100.0,
        target_bad: bad,
        notes,
        quiet,
        run: 1,
    }
}

// ------------------------------------------------------------------------- output

fn print_header() {
    let header = format!(
        "{:>5} | {:>8} | {:>8} | {:>5} | {:>7} | {:>8} | {:>7} | {:>8} | {:>9} | {:>7} | {:>6} | {:>5} | {:>8} | {:>8} | {:>9} | {:>7} | {:>7} | {:>7} | {:>7}",
        "N",
        "probes/s",
        "gslb CPU",
        "sys",
        "us/prb",
        "RSS MiB",
        "KiB/tgt",
        "lag mean",
        "lag p99",
        "<=1ms",
        "late",
        "fail",
        "dur mean",
        "dur p99",
        "startup",
        "irq",
        "steal",
        "other",
        "tgt CPU"
    );
    println!("{header}");
    println!(
        "{:>5} | {:>8} | {:>8} | {:>5} | {:>7} | {:>8} | {:>7} | {:>8} | {:>9} | {:>7} | {:>6} | {:>5} | {:>8} | {:>8} | {:>9} | {:>7} | {:>7} | {:>7} | {:>7}",
        "",
        "",
        "% 1 core",
        "share",
        "",
        "",
        "",
        "ms",
        "ms bucket",
        "lag",
        "",
        "",
        "ms",
        "ms bucket",
        "s",
        "gslb CPU",
        "gslb CPU",
        "gslb CPU",
        "% core"
    );
    println!("{}", "-".repeat(header.len()));
}

impl Row {
    /// Steal or other processes took more than 10% of gslb's CPU during the window.
    fn disturbed(&self) -> bool {
        self.dist.is_some_and(|d| d.steal + d.other > 10.0)
    }
    fn disturbance(&self) -> f64 {
        self.dist.map_or(0.0, |d| d.steal + d.other)
    }
}

fn print_row(r: &Row) {
    println!(
        "{:>5} | {:>8.1} | {:>7.2}% | {:>4.0}% | {:>7.1} | {:>8.1} | {:>7.1} | {:>8.3} | {:>9} | {:>6.1}% | {:>6} | {:>5} | {:>8.2} | {:>8} | {:>9.2} | {:>7} | {:>7} | {:>7} | {:>6.1}%{}",
        r.n,
        r.probes / r.secs,
        r.cpu_pct,
        r.sys_share,
        r.us_per_probe,
        r.rss_kib as f64 / 1024.0,
        r.rss_kib as f64 / r.n as f64,
        r.lag.mean() * 1e3,
        fmt_q(r.lag.quantile_bucket(0.99)),
        r.lag.share_under(0.001) * 100.0,
        r.late,
        r.fail_window,
        r.dur.mean() * 1e3,
        fmt_q(r.dur.quantile_bucket(0.99)),
        r.first_round,
        r.dist.map_or("-".to_string(), |d| format!("{:.1}%", d.irq)),
        r.dist
            .map_or("-".to_string(), |d| format!("{:.1}%", d.steal)),
        r.dist
            .map_or("-".to_string(), |d| format!("{:.1}%", d.other)),
        r.target_cpu_pct,
        if r.disturbed() { " !" } else { "" },
    );
}

// ------------------------------------------------------------------------- main

fn main() {
    let o = opts();
    if !o.bin.exists() {
        die(&format!(
            "{} not found: run `cargo build --release` or set GSLB_BIN",
            o.bin.display()
        ));
    }
    let max_n = o.ns.iter().copied().max().unwrap_or(0) as u64;
    let want_fds = (2 * max_n + 4096).max(65536);
    let nofile = raise_nofile(want_fds);
    if nofile < 2 * max_n + 1024 {
        eprintln!(
            "probe_scale: open files limit is {nofile}, N={max_n} wants about {}; run `ulimit -n 65536` first",
            2 * max_n + 1024
        );
    }

    // Pinning: gslb on the last allowed CPU, this process (targets) on the rest.
    let cpus = allowed_cpus();
    let gslb_cpu = if o.pin && cpus.len() >= 2 && have("taskset") {
        let gslb = *cpus.last().unwrap();
        let rest = &cpus[..cpus.len() - 1];
        // Before any runtime exists, so every thread we start inherits the mask.
        let ok = Command::new("taskset")
            .args(["-cp", &cpu_list(rest), &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(gslb)
    } else {
        None
    };
    let work = std::env::temp_dir().join(format!("probe_scale.{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap_or_else(|e| die(&format!("{}: {e}", work.display())));

    println!(
        "probe_scale: gslb {} | check: http GET /hc, interval 1s, timeout 500ms, jitter 900ms | \
         max_concurrent_probes {} | window {} s, from {} s after the first full round | \
         RLIMIT_NOFILE {nofile}",
        o.bin.display(),
        o.max_probes,
        o.secs,
        o.warmup
    );
    match gslb_cpu {
        Some(c) => println!(
            "pinning: gslb on CPU {c}, targets (this process) on CPU {}",
            cpu_list(&cpus[..cpus.len() - 1])
        ),
        None => println!("pinning: none (taskset missing, --no-pin, or a single CPU)"),
    }
    println!();
    print_header();

    // Interleaved (100, 1000, 5000, 100, ...) so that a noisy minute hits every N alike.
    let mut rows: Vec<Row> = Vec::new();
    for rep in 0..o.repeat {
        for &n in &o.ns {
            let mut r = run_one(&o, n, gslb_cpu, &cpus, &work);
            r.run = rep + 1;
            print_row(&r);
            rows.push(r);
        }
    }

    // With repeats: the least disturbed run of each N, as a table of its own.
    let best: Vec<&Row> =
        o.ns.iter()
            .filter_map(|&n| {
                rows.iter()
                    .filter(|r| r.n == n)
                    .min_by(|a, b| a.disturbance().total_cmp(&b.disturbance()))
            })
            .collect();
    if o.repeat > 1 {
        println!();
        println!("least disturbed run of each N (lowest steal + other):");
        print_header();
        for r in &best {
            print_row(r);
        }
    }

    println!();
    let mut details = String::new();
    for r in &rows {
        let run = if o.repeat > 1 {
            format!(" run {}", r.run)
        } else {
            String::new()
        };
        let _ = writeln!(
            details,
            "N={}{run}: {:.1} s window, {} probes ({:.3} per target per s), {} requests served by \
             targets, {} failures since start, {} bad requests at targets, gslb threads {}",
            r.n,
            r.secs,
            r.probes,
            r.probes / r.secs / r.n as f64,
            r.served,
            r.fail_total,
            r.target_bad,
            r.threads
        );
        let _ = writeln!(details, "  {}", r.startup);
        match r.quiet {
            Some(w) if w > 1.5 => {
                let _ = writeln!(
                    details,
                    "  waited {w:.0} s for the CPUs to go quiet before starting"
                );
            }
            Some(_) => {}
            None => {
                let _ = writeln!(
                    details,
                    "  the CPUs were still busy after {} s of waiting: started anyway",
                    o.quiet_wait
                );
            }
        }
        for note in &r.notes {
            let _ = writeln!(details, "  {note}");
        }
    }
    for w in best.windows(2) {
        let (a, b) = (w[0], w[1]);
        if b.n != a.n {
            let _ = writeln!(
                details,
                "RSS growth {} -> {}: {:.1} KiB per added target",
                a.n,
                b.n,
                (b.rss_kib as f64 - a.rss_kib as f64) / (b.n as f64 - a.n as f64)
            );
        }
    }
    print!("{details}");
    println!(
        "columns: gslb CPU = (utime+stime delta)/window as % of one core; sys share = stime part \
         of it; us/prb = gslb CPU per completed probe; lag/dur p99 = upper bound of the histogram \
         bucket holding the 99th percentile; <=1ms lag = share of probes that started within 1 ms \
         of schedule; late = gslb_probes_late_total delta (>100 ms); fail = failure+timeout \
         results in the window; startup = s from spawn until the admin listener was up and every \
         target had been probed once; irq = irq+softirq time on gslb's CPU (on loopback mostly \
         the TCP work of gslb's own connections, not included in gslb CPU); steal = hypervisor \
         steal on gslb's CPU; other = remaining busy time on gslb's CPU not charged to gslb \
         (other processes); tgt CPU = this process (the targets). A row ending in ! had more \
         than 10% steal + other on gslb's CPU: its lag and failures say more about the machine \
         than about gslb."
    );
    if o.keep {
        println!("kept: {}", work.display());
    } else {
        let _ = std::fs::remove_dir(&work);
    }
}
