use crate::common::*;
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
timeout = "150ms"
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

/// `--log-format json` writes one JSON object per log line (with the flip reason in
/// its message), and no colour codes anywhere.
#[test]
fn json_logs_on_request() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let t = TcpTarget::start("127.0.0.23");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.toml");
    std::fs::write(
        &path,
        format!(
            r#"[server]
listen = ["127.0.0.1:0"]
udp_sockets = 1
{ZONE}
[[gateway]]
name = "a"
addresses = ["192.0.2.1"]
probe = "{}"
[[check]]
name = "t"
kind = "tcp"
interval = "200ms"
timeout = "100ms"
rise = 1
fall = 1
[[service]]
name = "app.gslb.test"
check = "t"
endpoints = [{{ gateway = "a" }}]
"#,
            t.addr
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--log-format", "json", "-c"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    t.close(); // the target goes away: one DOWN line with its reason
    let mut lines = BufReader::new(stderr).lines();
    let mut seen_down = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        assert!(!line.contains('\u{1b}'), "colour code in {line:?}");
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{v}");
        let msg = v["fields"]["message"].as_str().unwrap_or("");
        if msg.contains("is now DOWN: connect refused") {
            assert_eq!(v["level"], "WARN", "{v}");
            seen_down = true;
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen_down, "no JSON line with the DOWN flip");
}
