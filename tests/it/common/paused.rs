//! In process, on a paused clock: the health engine of a config, run in the test's
//! process on tokio's paused clock against real targets (std-thread HTTP, TCP and TLS
//! servers on loopback), so tests assert exact probe counts and flip times.
//!
//! Why the clock stays still while a probe is on the wire: with a paused clock tokio
//! advances time by itself whenever the runtime is idle, and a runtime waiting for a
//! loopback peer is idle, so the next timer (the probe's timeout) would fire at once and
//! turn a healthy target into a spurious timeout. `freeze` keeps one blocking
//! task parked for the whole test, which tokio takes as work in flight and so never
//! auto-advances; the runtime still waits for I/O in real time. Time then moves only
//! when a test calls `advance`, and every step first waits (in real time, bounded only
//! to turn a hang into a failure) until the probes due at that step have finished. A
//! probe that answers takes zero paused time; one that hangs takes exactly its timeout
//! once the test advances past it. Nothing here stands in for a probe: every result
//! comes from the real tcp/http/tls probe talking to a real socket.
#![allow(dead_code)]

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gslb::health::{Engine, TargetState};
use gslb::metrics::Metrics;
use gslb::plan::Plan;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Log lines of the engine, captured in process.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `body` on a current-thread runtime with a paused clock, with the engine's
/// log lines (debug and up) captured in `Logs`.
pub fn run<F: std::future::Future<Output = ()>>(body: impl FnOnce(Logs) -> F) {
    let logs = Logs::default();
    let sink = logs.0.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || LogWriter(sink.clone()))
        .with_ansi(false)
        .without_time()
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(body(logs));
}

/// Keeps tokio from auto-advancing the paused clock while it lives (see above).
pub struct Freeze(Option<std::sync::mpsc::Sender<()>>);

pub fn freeze() -> Freeze {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    tokio::task::spawn_blocking(move || {
        let _ = rx.recv();
    });
    Freeze(Some(tx))
}

impl Drop for Freeze {
    fn drop(&mut self) {
        self.0.take();
    }
}

/// Waits in real time (the paused clock does not move) until `cond` holds. The
/// bound only turns a hang into a failure; nothing is asserted about real time.
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let give_up = std::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(
            std::time::Instant::now() < give_up,
            "never happened: {what}"
        );
        tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(1)))
            .await
            .unwrap();
    }
}

/// The engine of one config, started at `t0` on the paused clock.
pub struct Probed {
    pub plan: Arc<Plan>,
    pub states: Arc<[Arc<TargetState>]>,
    pub metrics: Arc<Metrics>,
    pub t0: Instant,
    engine: Engine,
    _freeze: Freeze,
}

impl Probed {
    pub fn start(config: &str) -> Probed {
        let plan =
            gslb::config::parse(Path::new("test.toml"), config).unwrap_or_else(|e| panic!("{e}"));
        let plan = Arc::new(plan);
        let metrics = Metrics::new();
        let freeze = freeze();
        let mut engine = Engine::new(
            Arc::new(Notify::new()),
            metrics.clone(),
            plan.health.max_concurrent_probes,
        );
        let t0 = Instant::now();
        let states = engine.apply(&plan);
        Probed {
            plan,
            states,
            metrics,
            t0,
            engine,
            _freeze: freeze,
        }
    }

    /// Loads `config` again and applies it to the running engine (a reload): from
    /// then on `plan` and `states` are the new ones. Returns the old states.
    pub fn reload(&mut self, config: &str) -> Arc<[Arc<TargetState>]> {
        let plan =
            gslb::config::parse(Path::new("test.toml"), config).unwrap_or_else(|e| panic!("{e}"));
        self.plan = Arc::new(plan);
        let states = self.engine.apply(&self.plan);
        std::mem::replace(&mut self.states, states)
    }

    /// The index of the target probing `addr` with the check named `check`.
    pub fn target(&self, addr: SocketAddr, check: &str) -> usize {
        self.plan
            .targets
            .iter()
            .position(|t| t.addr == addr && self.plan.checks[t.check].name == check)
            .expect("no such target")
    }

    pub fn up(&self, t: usize) -> bool {
        self.states[t].is_up()
    }

    pub fn probes(&self, t: usize) -> u64 {
        self.states[t].detail().probes
    }

    /// Milliseconds of paused time since the engine started.
    pub fn now_ms(&self) -> u64 {
        (Instant::now() - self.t0).as_millis() as u64
    }

    /// Moves the paused clock to `ms` after the start.
    pub async fn advance_to(&self, ms: u64) {
        let at = self.t0 + Duration::from_millis(ms);
        let now = Instant::now();
        assert!(at >= now, "the clock only moves forward");
        tokio::time::advance(at - now).await;
    }

    /// Moves the clock to `ms` and waits until each of `targets` has finished `n`
    /// probes (exactly: one more would mean a probe ran off schedule).
    pub async fn round(&self, ms: u64, targets: &[usize], n: u64) {
        self.advance_to(ms).await;
        for &t in targets {
            until(&format!("probe {n} of target {t} at {ms}ms"), || {
                self.probes(t) >= n
            })
            .await;
            assert_eq!(self.probes(t), n, "target {t} at {ms}ms");
        }
    }

    /// A series of the probe metrics of `check`: outcome counts.
    pub fn outcome(&self, check: &str, outcome: &str) -> u64 {
        self.sum("gslb_probe_results_total", check, outcome)
    }

    /// The sum over targets of the `check` series of family `name` whose last label is
    /// `last`, as a scrape exports them.
    fn sum(&self, name: &str, check: &str, last: &str) -> u64 {
        self.metrics
            .registry
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric())
            .filter(|m| {
                let labels = m.get_label();
                labels
                    .iter()
                    .any(|l| l.name() == "check" && l.value() == check)
                    && labels
                        .iter()
                        .any(|l| (l.name() == "outcome" || l.name() == "to") && l.value() == last)
            })
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    /// Flips of `check` to `to` ("up" or "down").
    pub fn transitions(&self, check: &str, to: &str) -> u64 {
        self.sum("gslb_target_transitions_total", check, to)
    }
}

/// A TCP server that accepts connections, reads what comes, and never answers: a
/// hung target. Counts the connections it accepted.
pub struct Hang {
    pub addr: SocketAddr,
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl Hang {
    pub fn start(ip: &str) -> Hang {
        let listener = TcpListener::bind((ip.parse::<IpAddr>().unwrap(), 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            for s in listener.incoming().map_while(Result::ok) {
                held.push(s);
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        Hang { addr, accepted }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}
