//! Scraped by a real Prometheus: Debian's `prometheus` runs the README's scrape config
//! (bearer token from a file) against the admin listener, and the test reads back,
//! through Prometheus' own query API, `gslb_endpoint_up` per endpoint and a per-target
//! probe rate. Skipped without `prometheus` on PATH, except in CI.
//!
//! Probe targets and Prometheus itself live on 127.0.3.0/24 (this file's range).

use crate::common::*;
use crate::ops::http;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const TOKEN: &str = "prometheus-scrape-token-0123";

/// The README's scrape config, with the test's admin address and token file.
fn readme_scrape_config(admin: &str, token_file: &str) -> String {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("```yaml\nscrape_configs:")
        .expect("README has a ```yaml scrape_configs block");
    let block = &readme[start + "```yaml\n".len()..];
    let block = &block[..block.find("```").expect("block ends")];
    assert!(block.contains("127.0.0.1:9153") && block.contains("credentials_file:"));
    let block = block
        .replace("127.0.0.1:9153", admin)
        .replace("/etc/prometheus/gslb-admin-token", token_file);
    format!("global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n{block}")
}

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs an instant query; returns `data.result`.
fn query(prom: std::net::SocketAddr, q: &str) -> Vec<Value> {
    let enc: String = form_urlencoded::byte_serialize(q.as_bytes()).collect();
    let r = http(prom, "GET", &format!("/api/v1/query?query={enc}"), &[]);
    assert_eq!(r.status, 200, "{q}: {r:?}");
    let v: Value = serde_json::from_str(&r.body).expect("JSON");
    assert_eq!(v["status"], "success", "{q}: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// `{labels} value` per series, sorted, with the labels that matter.
fn series(result: &[Value], labels: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = result
        .iter()
        .map(|s| {
            let l: Vec<String> = labels
                .iter()
                .map(|k| format!("{k}={}", s["metric"][*k].as_str().unwrap_or("-")))
                .collect();
            format!("{} {}", l.join(","), s["value"][1].as_str().unwrap_or("?"))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_real_prometheus_scrapes_with_the_readme_config() {
    let found = Command::new("prometheus")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "prometheus is not on PATH, and CI is set (install Debian's prometheus package)"
        );
        eprintln!("NOTE: prometheus not on PATH; skipping the scrape test");
        return;
    }
    let up = TcpTarget::start("127.0.3.1");
    // Nothing listens on 127.0.3.2: a refused connection, every probe.
    let cfg = format!(
        r#"[admin]
listen = "127.0.0.1:0"
token = "{TOKEN}"
{ZONE}
[[gateway]]
name = "live"
region = "eu"
addresses = ["192.0.2.1"]
probe = "{}"
[[gateway]]
name = "dead"
region = "us"
addresses = ["192.0.2.2"]
probe = "127.0.3.2:9"
[[check]]
name = "tcp"
kind = "tcp"
interval = "200ms"
timeout = "150ms"
rise = 1
fall = 1
[[service]]
name = "app.gslb.test"
check = "tcp"
endpoints = [{{ gateway = "live" }}, {{ gateway = "dead" }}]
"#,
        up.addr
    );
    let g = Gslb::start(&cfg);
    let admin = g.admin.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let prom_cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        readme_scrape_config(&admin.to_string(), token_file.to_str().unwrap()),
    )
    .unwrap();
    let prom_addr: std::net::SocketAddr = "127.0.3.9:9090".parse().unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prom = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus"),
    );
    let prom_log =
        || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();

    // Prometheus scrapes every second; a rate needs two scrapes in its window.
    let mut last = (Vec::new(), Vec::new());
    let settled = wait_until(Duration::from_secs(30), || {
        let ready = std::net::TcpStream::connect_timeout(&prom_addr, Duration::from_millis(200))
            .is_ok()
            && http(prom_addr, "GET", "/-/ready", &[]).status == 200;
        if !ready {
            return false;
        }
        let endpoints = series(
            &query(prom_addr, "gslb_endpoint_up"),
            &["job", "service", "endpoint", "region"],
        );
        let rates = series(
            &query(
                prom_addr,
                "sum by (target, outcome) (rate(gslb_probe_results_total[5s])) > 0",
            ),
            &["target", "outcome"],
        );
        // Five scrapes inside the rate's window, so the rate is not an early estimate.
        let scrapes = query(prom_addr, "count_over_time(gslb_build_info[5s]) >= 5");
        let done = endpoints.len() == 2 && rates.len() == 2 && !scrapes.is_empty();
        last = (endpoints, rates);
        done
    });
    assert!(
        settled.is_some(),
        "Prometheus never had both series: last {last:?}\nprometheus log:\n{}\ngslb logs:\n{}",
        prom_log(),
        g.logs()
    );
    let (endpoints, rates) = last;
    assert_eq!(
        endpoints,
        vec![
            "job=gslb,service=app.gslb.test.,endpoint=dead,region=us 0",
            "job=gslb,service=app.gslb.test.,endpoint=live,region=eu 1",
        ]
    );
    // One series per target, each with its own outcome: the counters say which
    // gateway fails. Five probes a second each, give or take the scrape jitter.
    let live = format!("target={},outcome=success", up.addr);
    let dead = "target=127.0.3.2:9,outcome=failure";
    assert_eq!(rates.len(), 2, "{rates:?}");
    for (line, want) in rates.iter().zip([live.as_str(), dead]) {
        let (labels, value) = line.rsplit_once(' ').unwrap();
        assert_eq!(labels, want, "{rates:?}");
        let rate: f64 = value.parse().unwrap();
        assert!((2.5..=10.0).contains(&rate), "{line}: about 5 probes/s");
    }

    // And the token is what let it in: Prometheus' own view of the target says up.
    let targets = http(prom_addr, "GET", "/api/v1/targets", &[]);
    let v: Value = serde_json::from_str(&targets.body).unwrap();
    let active = &v["data"]["activeTargets"][0];
    assert_eq!(active["health"], "up", "{active}");
}
