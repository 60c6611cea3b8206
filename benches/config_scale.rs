//! How the cost of a probe flip and the server's memory grow with the configuration:
//! N services (3 endpoints each) over 1,000 gateways, one TCP check per gateway.
//!
//! ```text
//! cargo bench --bench config_scale                 # N = 100, 1,000, 10,000
//! CONFIG_SCALE_N=10000 cargo bench --bench config_scale
//! benches/config_scale_instr.sh                    # instructions per query, callgrind
//! ```
//!
//! For each N, in process: the plan is compiled from TOML, and the snapshot built from
//! scratch (what a reload costs); then one target at a time is flipped and the snapshot
//! rebuilt from the previous one with the gateway-up metrics of the services it built
//! afresh, which is what the publisher does per flip (`Publisher::republish`, less the
//! cluster's quorum). Reported: the median and the worst of 50 flips, and how many
//! services a flip rebuilt. Then the real release binary is started with the same
//! config (its probes fail at once against closed loopback ports, then wait 60 s) and
//! its RSS read from /proc after it settled.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;

use gslb::config;
use gslb::dns::Handler;
use gslb::metrics::Metrics;
use gslb::overrides::Overrides;
use gslb::snapshot::{Snapshot, Zones};

const GATEWAYS: usize = 1000;
const FLIPS: usize = 50;

fn config(services: usize) -> String {
    let mut c = String::from(
        r#"[server]
listen = ["127.0.0.1:0"]
[[zone]]
origin = "gslb.test"
ns = [{ name = "ns1", addresses = ["192.0.2.53"] }]
[[check]]
name = "hc"
kind = "tcp"
interval = "60s"
timeout = "1s"
"#,
    );
    for g in 0..GATEWAYS {
        // Closed ports on loopback: each probe fails at once.
        c += &format!(
            "[[gateway]]\nname = \"g{g}\"\naddresses = [\"10.{}.{}.1\"]\nprobe = \"127.0.{}.{}:9\"\n",
            g / 256,
            g % 256,
            100 + g / 250,
            1 + g % 250
        );
    }
    for s in 0..services {
        let e: Vec<String> = (0..3)
            .map(|k| format!("{{ gateway = \"g{}\" }}", (s * 7 + k * 331) % GATEWAYS))
            .collect();
        c += &format!(
            "[[service]]\nname = \"s{s}.gslb.test\"\ncheck = \"hc\"\nendpoints = [{}]\n",
            e.join(", ")
        );
    }
    c
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn in_process(n: usize, text: &str) -> (Duration, Duration, Duration, usize) {
    let r0 = rss_kb();
    let plan = Arc::new(config::parse(Path::new("<bench>"), text).expect("valid config"));
    let r1 = rss_kb();
    let metrics = Metrics::new();
    let pm = Arc::new(metrics.for_plan(&plan));
    let r2 = rss_kb();
    let zones = Arc::new(Zones::build(&plan));
    let r3 = rss_kb();
    let mut health = vec![true; plan.targets.len()];
    let t = Instant::now();
    let (mut snap, all) = Snapshot::rebuild(
        None,
        plan.clone(),
        zones.clone(),
        pm.clone(),
        &health,
        &Overrides::default(),
    );
    assert_eq!(all.len(), n);
    pm.endpoints_ready(&all, |s, e| snap.services[s].endpoints[e].ready());
    let full = t.elapsed();
    if std::env::var_os("CONFIG_SCALE_BREAKDOWN").is_some() {
        eprintln!(
            "RSS growth, KiB: plan {}, plan metrics {}, zones {}, tables and endpoint gauges {}",
            r1 - r0,
            r2 - r1,
            r3 - r2,
            rss_kb() - r3
        );
    }
    let mut times = Vec::new();
    let mut rebuilt = 0;
    for i in 0..FLIPS {
        let target = (i * 37) % health.len();
        health[target] = !health[target];
        let t = Instant::now();
        let (next, built) = Snapshot::rebuild(
            Some(&snap),
            plan.clone(),
            zones.clone(),
            pm.clone(),
            &health,
            &Overrides::default(),
        );
        pm.endpoints_ready(&built, |s, e| next.services[s].endpoints[e].ready());
        times.push(t.elapsed());
        rebuilt = rebuilt.max(built.len());
        snap = next;
    }
    let worst = *times.iter().max().unwrap();
    (full, median(&mut times), worst, rebuilt)
}

/// A handler over `text`'s snapshot and A queries for up to 1,000 of its services
/// (cycled, so a big config is not answered from one hot cache line), each checked to
/// get a real answer.
fn handler_and_queries(n: usize, text: &str) -> (Handler, Vec<Request>) {
    let plan = Arc::new(config::parse(Path::new("<bench>"), text).expect("valid config"));
    let zones = Arc::new(Zones::build(&plan));
    let metrics = Arc::new(Metrics::new().for_plan(&plan));
    let health = vec![true; plan.targets.len()];
    let snap = Snapshot::build(plan, zones, metrics, &health, &Overrides::default());
    let h = Handler::new(Arc::new(ArcSwap::from_pointee(snap)));
    let src = "127.0.0.1:53000".parse().unwrap();
    let names = n.min(1000);
    let reqs: Vec<Request> = (0..names)
        .map(|k| {
            let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
            let name = format!("s{}.gslb.test.", k * (n / names));
            m.add_query(Query::query(
                Name::from_ascii(&name).unwrap(),
                RecordType::A,
            ));
            let mut e = Edns::new();
            e.set_max_payload(1232);
            m.set_edns(e);
            Request::from_bytes(m.to_vec().unwrap(), src, Protocol::Udp).unwrap()
        })
        .collect();
    let mut out = Vec::with_capacity(4096);
    // Every answer is a real one.
    for r in &reqs {
        h.respond(r, Protocol::Udp, &mut out).expect("a response");
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.answers.len(), 1);
    }
    (h, reqs)
}

/// `count` answers, cycling over `reqs`. Not inlined: `benches/config_scale_instr.sh`
/// counts the instructions inside it with callgrind's `--toggle-collect`.
#[inline(never)]
fn respond_loop(h: &Handler, reqs: &[Request], count: usize) {
    let mut out = Vec::with_capacity(4096);
    for i in 0..count {
        h.respond(&reqs[i % reqs.len()], Protocol::Udp, &mut out);
        std::hint::black_box(out.len());
    }
}

/// Nanoseconds per `Handler::respond`, median of 5 runs of 100,000.
fn per_query(n: usize, text: &str) -> f64 {
    let (h, reqs) = handler_and_queries(n, text);
    let mut runs: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            respond_loop(&h, &reqs, 100_000);
            t.elapsed().as_nanos() as f64 / 100_000.0
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[2]
}

/// The binary's VmRSS and its anonymous part (RssAnon: heap, stacks), in KiB; the rest
/// is file-backed pages of the executable and libc, the same whatever the config.
fn rss_of_binary(text: &str) -> Option<(u64, u64)> {
    let bin = std::env::var("GSLB_BIN")
        .unwrap_or_else(|_| format!("{}/target/release/gslb", env!("CARGO_MANIFEST_DIR")));
    let dir = tempfile::tempdir().ok()?;
    let path = dir.path().join("scale.toml");
    std::fs::File::create(&path)
        .ok()?
        .write_all(text.as_bytes())
        .ok()?;
    let mut child = Command::new(&bin)
        .args(["serve", "-c"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_secs(4));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).ok();
    let _ = child.kill();
    let _ = child.wait();
    let status = status?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
    };
    Some((field("VmRSS:")?, field("RssAnon:")?))
}

fn main() {
    let ns: Vec<usize> = match std::env::var("CONFIG_SCALE_N") {
        Ok(v) => v.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) => vec![100, 1000, 10_000],
    };
    // For callgrind (benches/config_scale_instr.sh): one config, every query answered
    // once (by `handler_and_queries`), then CONFIG_SCALE_INSTR answers inside
    // `respond_loop`, the only function counted.
    if let Some(count) = std::env::var("CONFIG_SCALE_INSTR")
        .ok()
        .and_then(|c| c.parse().ok())
    {
        let (h, reqs) = handler_and_queries(ns[0], &config(ns[0]));
        respond_loop(&h, &reqs, count);
        return;
    }
    let one = per_query(1, &config(1));
    println!(
        "| services | gateways | full build | flip: median | flip: worst | services rebuilt per flip (max) | RSS idle | of it anonymous | respond | vs 1 service |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!("| 1 | {GATEWAYS} | | | | | | | {one:.0} ns | 1.00 |");
    for n in ns {
        let text = config(n);
        let (full, med, worst, rebuilt) = in_process(n, &text);
        let rss = rss_of_binary(&text).map_or("n/a | n/a".to_string(), |(all, anon)| {
            format!(
                "{:.1} MiB | {:.1} MiB",
                all as f64 / 1024.0,
                anon as f64 / 1024.0
            )
        });
        let q = per_query(n, &text);
        println!(
            "| {n} | {GATEWAYS} | {:.2} ms | {:.3} ms | {:.3} ms | {rebuilt} | {rss} | {q:.0} ns | {:.2} |",
            full.as_secs_f64() * 1e3,
            med.as_secs_f64() * 1e3,
            worst.as_secs_f64() * 1e3,
            q / one,
        );
    }
}
