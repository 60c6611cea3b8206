//! Unit tests of the metric families' reload bookkeeping.

use std::path::Path;

use super::*;
use crate::plan::{EndpointId, ServiceId};

fn plan(endpoints: &str) -> Plan {
    let text = format!(
        r#"
[[zone]]
origin = "gslb.test"
ns = [{{ name = "ns1", addresses = ["192.0.2.53"] }}]
[[gateway]]
name = "a"
addresses = ["192.0.2.1"]
[[gateway]]
name = "b"
addresses = ["192.0.2.2"]
[[service]]
name = "app.gslb.test"
endpoints = [{endpoints}]
"#
    );
    crate::config::parse(Path::new("t.toml"), &text).unwrap()
}

/// A reload keeps the gslb_endpoint_up series and the answer counts of the endpoints
/// it keeps (a scrape in between never sees the gauge empty, nor a counter reset) and
/// drops those of the ones it drops.
#[test]
fn a_reload_keeps_kept_endpoints_series() {
    let m = Metrics::new();
    let (old, new) = (
        Arc::new(plan(r#"{ gateway = "a" }, { gateway = "b" }"#)),
        Arc::new(plan(r#"{ gateway = "a" }"#)),
    );
    let pm = m.for_plan(&old);
    pm.endpoints_ready(&[ServiceId(0)], |_, _| true);
    pm.answered(ServiceId(0), EndpointId(0));
    pm.answered(ServiceId(0), EndpointId(1));
    let text = m.render();
    assert!(
        text.contains("gslb_answers_total{endpoint=\"b\",service=\"app.gslb.test.\"} 1"),
        "{text}"
    );
    let _new_pm = m.for_plan(&new);
    // Counted through the old plan's handles after the new plan's were made: not lost.
    pm.answered(ServiceId(0), EndpointId(0));
    m.forget_removed(&old, &new);
    let text = m.render();
    let up = |ep: &str| {
        text.lines().any(|l| {
            l.starts_with("gslb_endpoint_up{") && l.contains(&format!("endpoint=\"{ep}\""))
        })
    };
    assert!(up("a"), "{text}");
    assert!(!up("b"), "{text}");
    assert!(
        text.contains("gslb_endpoint_up{endpoint=\"a\",region=\"\",service=\"app.gslb.test.\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("gslb_answers_total{endpoint=\"a\",service=\"app.gslb.test.\"} 2"),
        "{text}"
    );
    assert!(!text.contains("endpoint=\"b\""), "{text}");
    assert!(
        text.contains("gslb_fail_open_answers_total{service=\"app.gslb.test.\"} 0"),
        "{text}"
    );
}

/// Counts through every generation of a service's endpoint list add up, in whatever
/// order the generations' snapshots go away, and the counters of a generation no
/// snapshot holds any more are folded into the current ones at the service's next
/// change, so that a service carries at most one generation besides live ones.
#[test]
fn answer_counts_survive_successive_reloads_of_a_service() {
    let m = Metrics::new();
    let answers = |m: &Metrics, ep: &str| -> u64 {
        let text = m.render();
        let line = format!("gslb_answers_total{{endpoint=\"{ep}\",service=\"app.gslb.test.\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .unwrap_or_else(|| panic!("no {line} in {text}"))
            .parse()
            .unwrap()
    };
    let g1 = Arc::new(plan(r#"{ gateway = "a" }, { gateway = "b" }"#));
    let pm1 = m.for_plan(&g1);
    pm1.answered(ServiceId(0), EndpointId(0));
    pm1.answered(ServiceId(0), EndpointId(1));
    let g2 = Arc::new(plan(r#"{ gateway = "a" }"#));
    let pm2 = m.for_plan(&g2);
    // A query still answered from the first generation's snapshot.
    pm1.answered(ServiceId(0), EndpointId(0));
    pm2.answered(ServiceId(0), EndpointId(0));
    assert_eq!(answers(&m, "a"), 3);
    assert_eq!(m.services.lock().unwrap().carried_len(), 1);
    drop(pm1);
    let g3 = Arc::new(plan(r#"{ gateway = "b" }, { gateway = "a" }"#));
    let pm3 = m.for_plan(&g3);
    // The first generation is folded in; the second, still held by pm2, is carried.
    assert_eq!(m.services.lock().unwrap().carried_len(), 1);
    pm2.answered(ServiceId(0), EndpointId(0));
    pm3.answered(ServiceId(0), EndpointId(1));
    pm3.answered(ServiceId(0), EndpointId(0));
    assert_eq!(answers(&m, "a"), 5);
    // b's count went with the generation that dropped b.
    assert_eq!(answers(&m, "b"), 1);
    // An unchanged reload shares the counters and carries what its predecessor did.
    let g4 = Arc::new(plan(r#"{ gateway = "b" }, { gateway = "a" }"#));
    let pm4 = m.for_plan(&g4);
    pm2.answered(ServiceId(0), EndpointId(0));
    pm4.answered(ServiceId(0), EndpointId(1));
    assert_eq!(answers(&m, "a"), 7);
    drop((pm2, pm3));
    let g5 = Arc::new(plan(r#"{ gateway = "a" }"#));
    let _pm5 = m.for_plan(&g5);
    assert_eq!(m.services.lock().unwrap().carried_len(), 1);
    assert_eq!(answers(&m, "a"), 7);
    drop(pm4);
}

/// A zone a reload drops takes its request series with it.
#[test]
fn a_reload_removes_the_series_of_dropped_zones() {
    let m = Metrics::new();
    let old = Arc::new(plan(r#"{ gateway = "a" }"#));
    let pm = m.for_plan(&old);
    pm.request(
        Some(crate::plan::ZoneId(0)),
        Transport::Udp,
        None,
        hickory_proto::op::ResponseCode::NoError,
        0.0,
    );
    assert!(m.render().contains("zone=\"gslb.test.\""));
    let mut new = plan(r#"{ gateway = "a" }"#);
    new.zones.clear();
    new.services.clear();
    m.forget_removed(&old, &new);
    assert!(
        !m.render().contains("zone=\"gslb.test.\""),
        "{}",
        m.render()
    );
}

/// The per-target probe counters: a recorder made again for the same check and target
/// (a task restarted by a reload) counts on from where the last one was, every outcome
/// and flip is exported from the start, and a reload that stops probing the target
/// drops its series.
#[test]
fn probe_series_follow_the_probed_targets() {
    let text = |check: &str| {
        format!(
            r#"
[[zone]]
origin = "gslb.test"
ns = [{{ name = "ns1", addresses = ["192.0.2.53"] }}]
[[check]]
name = "{check}"
kind = "tcp"
port = 80
[[gateway]]
name = "a"
addresses = ["192.0.2.1"]
[[service]]
name = "app.gslb.test"
check = "{check}"
endpoints = [{{ gateway = "a" }}]
"#
        )
    };
    let old = crate::config::parse(Path::new("t.toml"), &text("hc")).unwrap();
    let new = crate::config::parse(Path::new("t.toml"), &text("other")).unwrap();
    let m = Metrics::new();
    let target = cert_target_label(old.targets[0].addr, None);
    let first = m.probe_recorder("hc", &target);
    first.result(ProbeOutcome::Success);
    first.flipped(false);
    let again = m.probe_recorder("hc", &target);
    again.result(ProbeOutcome::Success);
    // Labels sorted by name, as the exposition writes them.
    let results = |outcome: &str| {
        format!(
            "gslb_probe_results_total{{check=\"hc\",outcome=\"{outcome}\",target=\"{target}\"}}"
        )
    };
    let flips = |to: &str| {
        format!("gslb_target_transitions_total{{check=\"hc\",target=\"{target}\",to=\"{to}\"}}")
    };
    let rendered = m.render();
    for (line, value) in [
        (results("success"), 2),
        (results("timeout"), 0),
        (flips("down"), 1),
        (flips("up"), 0),
    ] {
        assert!(
            rendered.contains(&format!("{line} {value}\n")),
            "{line} {value} in {rendered}"
        );
    }
    m.forget_removed(&old, &new);
    let rendered = m.render();
    assert!(!rendered.contains("check=\"hc\""), "{rendered}");
}
