mod common;

use common::*;
use hickory_proto::rr::RecordType;
use std::time::Duration;

#[test]
fn answers_and_fails_over() {
    let a = HttpTarget::start("127.0.0.21", Reply::ok());
    let b = HttpTarget::start("127.0.0.22", Reply::ok());
    let cfg = format!(
        r#"{ZONE}
[[gateway]]
name = "a"
addresses = ["192.0.2.1"]
probe = "{}"
[[gateway]]
name = "b"
addresses = ["192.0.2.2"]
probe = "{}"
[[check]]
name = "hc"
kind = "http"
path = "/hc"
interval = "200ms"
timeout = "100ms"
[[service]]
name = "app.gslb.test"
check = "hc"
endpoints = [{{ gateway = "a" }}, {{ gateway = "b" }}]
"#,
        a.addr, b.addr
    );
    let g = Gslb::start(&cfg);
    let set = answered_set(g.addr, "app.gslb.test", 50);
    assert_eq!(set.len(), 2, "{set:?}");
    a.set(Reply::no_upstreams());
    let t = wait_until(Duration::from_secs(3), || {
        answered_set(g.addr, "app.gslb.test", 20).len() == 1
    });
    assert!(t.is_some(), "logs: {}", g.logs());
    g.wait_log(
        "is now DOWN: http 503 \"no healthy upstreams\"",
        Duration::from_secs(1),
    );
    let m = query(g.addr, "app.gslb.test", RecordType::AAAA);
    assert!(m.answers.is_empty());
}
