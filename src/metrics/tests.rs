//! Unit tests of the metric families' reload bookkeeping.

use std::path::Path;

use super::*;

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

/// A reload keeps the gslb_endpoint_up series of the endpoints it keeps (a scrape in
/// between never sees the gauge empty) and removes those of the ones it drops.
#[test]
fn a_reload_keeps_kept_endpoints_up_series() {
    let m = Metrics::new();
    let (old, new) = (
        plan(r#"{ gateway = "a" }, { gateway = "b" }"#),
        plan(r#"{ gateway = "a" }"#),
    );
    m.endpoints_ready(
        &old,
        &ServiceId::all(old.services.len()).collect::<Vec<_>>(),
        |_, _| true,
    );
    m.forget_removed(&old, &new);
    let text = m.render();
    let up = |ep: &str| {
        text.lines().any(|l| {
            l.starts_with("gslb_endpoint_up{") && l.contains(&format!("endpoint=\"{ep}\""))
        })
    };
    assert!(up("a"), "{text}");
    assert!(!up("b"), "{text}");
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
