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
        plan(r#"{ gateway = "a" }, { gateway = "b" }"#),
        plan(r#"{ gateway = "a" }"#),
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

/// A zone a reload drops takes its request series with it.
#[test]
fn a_reload_removes_the_series_of_dropped_zones() {
    let m = Metrics::new();
    let old = plan(r#"{ gateway = "a" }"#);
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
