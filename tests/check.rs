//! `gslb check`: every rejection names `<path>:<line>:<col>: <message>` at the offending
//! value, exits non-zero, and every shipped example config passes.

mod common;

use common::*;

/// Runs `gslb check` on `text`, expects failure, and returns the diagnostic line after
/// asserting it names `line`:`col` and contains `message`.
fn rejects(text: &str, line: usize, col: usize, message: &str) -> String {
    let (ok, out, path) = check_config(text);
    assert!(!ok, "config was accepted:\n{text}\noutput: {out}");
    let prefix = format!("{}:{line}:{col}: ", path.display());
    let diag = out
        .lines()
        .find(|l| l.contains(&prefix))
        .unwrap_or_else(|| panic!("no diagnostic at {prefix:?} in output:\n{out}"));
    let msg = &diag[diag.find(&prefix).unwrap() + prefix.len()..];
    assert!(
        msg.contains(message),
        "message {msg:?} does not contain {message:?}"
    );
    // Exactly one diagnostic line, and it is the located one.
    assert_eq!(out.trim().lines().count(), 1, "output: {out}");
    diag.to_string()
}

/// The 1-based line and column of the first occurrence of `needle` in `text`, so that
/// each hard-coded location below is also checked against the fixture itself.
fn locate(text: &str, needle: &str) -> (usize, usize) {
    let off = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in fixture"));
    let before = &text[..off];
    let line = before.matches('\n').count() + 1;
    let col = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    (line, col)
}

#[test]
fn unknown_key() {
    let text = r#"[[zone]]
origin = "gslb.test"
ns = [{ name = "ns1", addresses = ["192.0.2.53"] }]

[[gateway]]
name = "a"
adress = ["192.0.2.1"]
"#;
    assert_eq!(locate(text, "adress"), (7, 1));
    rejects(text, 7, 1, "unknown field `adress`");

    // Inside an inline table too, and in [server].
    let text = r#"[server]
listen = ["127.0.0.1:0"]
tcp_idle_timout = "3s"
"#;
    assert_eq!(locate(text, "tcp_idle_timout"), (3, 1));
    rejects(text, 3, 1, "unknown field `tcp_idle_timout`");

    let text = r#"[[zone]]
origin = "gslb.test"
ns = [{ name = "ns1", adresses = ["192.0.2.53"] }]
"#;
    assert_eq!(locate(text, "adresses"), (3, 23));
    rejects(text, 3, 23, "unknown field `adresses`");
}

#[test]
fn check_timeout_not_shorter_than_interval() {
    let text = r#"[[check]]
name = "hc"
kind = "tcp"
port = 80
interval = "1s"
timeout = "1s"
"#;
    assert_eq!(locate(text, "timeout = \"1s\""), (6, 1));
    rejects(
        text,
        6,
        11,
        "timeout (1s) must be shorter than the interval (1s)",
    );

    let text = r#"[[check]]
name = "hc"
kind = "http"
interval = "500ms"
timeout = "2s"
"#;
    assert_eq!(locate(text, "\"2s\""), (5, 11));
    rejects(
        text,
        5,
        11,
        "timeout (2s) must be shorter than the interval (500ms)",
    );
}

#[test]
fn defaulted_timeout_points_at_the_interval() {
    // timeout defaults to 1s; the value written in the file is the interval.
    let text = r#"[[check]]
name = "hc"
kind = "tcp"
port = 80
interval = "500ms"
"#;
    assert_eq!(locate(text, "\"500ms\""), (5, 12));
    rejects(
        text,
        5,
        12,
        "timeout (1s) must be shorter than the interval (500ms)",
    );
}

#[test]
fn endpoint_names_unknown_gateway() {
    let text = r#"[[zone]]
origin = "gslb.test"
ns = [{ name = "ns1", addresses = ["192.0.2.53"] }]

[[gateway]]
name = "east"
addresses = ["192.0.2.1"]

[[service]]
name = "app.gslb.test"
endpoints = [{ gateway = "east" }, { gateway = "west" }]
"#;
    assert_eq!(locate(text, "\"west\""), (11, 48));
    rejects(text, 11, 48, "unknown gateway \"west\"");
}

#[test]
fn service_names_unknown_check() {
    let text = r#"[[zone]]
origin = "gslb.test"
ns = [{ name = "ns1", addresses = ["192.0.2.53"] }]

[[gateway]]
name = "east"
addresses = ["192.0.2.1"]

[[check]]
name = "hc"
kind = "tcp"
port = 443

[[service]]
name = "app.gslb.test"
check = "hcc"
endpoints = [{ gateway = "east" }]
"#;
    assert_eq!(locate(text, "\"hcc\""), (16, 9));
    rejects(text, 16, 9, "unknown check \"hcc\"");
}

#[test]
fn service_outside_every_zone() {
    let text = r#"[[zone]]
origin = "gslb.test"
ns = [{ name = "ns1", addresses = ["192.0.2.53"] }]

[[gateway]]
name = "east"
addresses = ["192.0.2.1"]

[[service]]
name = "app.example.test"
endpoints = [{ gateway = "east" }]
"#;
    assert_eq!(locate(text, "\"app.example.test\""), (10, 8));
    rejects(
        text,
        10,
        8,
        "service app.example.test. is outside every configured zone",
    );

    // A parent of the zone is not inside it either.
    let text = r#"[[zone]]
origin = "gslb.test"
ns = [{ name = "ns1", addresses = ["192.0.2.53"] }]
[[gateway]]
name = "east"
addresses = ["192.0.2.1"]
[[service]]
name = "test"
endpoints = [{ gateway = "east" }]
"#;
    assert_eq!(locate(text, "\"test\""), (8, 8));
    rejects(text, 8, 8, "service test. is outside every configured zone");
}

#[test]
fn duplicate_names() {
    let text = r#"[[zone]]
origin = "gslb.test"
ns = [{ name = "ns1", addresses = ["192.0.2.53"] }]

[[gateway]]
name = "east"
addresses = ["192.0.2.1"]

[[gateway]]
name = "east"
addresses = ["192.0.2.2"]
"#;
    // The second definition's value: line 10, after `name = `.
    assert_eq!(
        locate(text, "name = \"east\"\naddresses = [\"192.0.2.2\"]"),
        (10, 1)
    );
    rejects(text, 10, 8, "duplicate gateway name \"east\"");

    // A service at the owner name of a static record.
    let text = r#"[[zone]]
origin = "gslb.test"
ns = [{ name = "ns1", addresses = ["192.0.2.53"] }]
record = [
  { name = "www", type = "A", value = "192.0.2.80" },
]

[[gateway]]
name = "east"
addresses = ["192.0.2.1"]

[[service]]
name = "WWW.gslb.test."
endpoints = [{ gateway = "east" }]
"#;
    assert_eq!(locate(text, "\"WWW.gslb.test.\""), (13, 8));
    rejects(
        text,
        13,
        8,
        "duplicate name www.gslb.test.: already used by a static record",
    );

    // Two services with one name.
    let text = r#"[[zone]]
origin = "gslb.test"
ns = [{ name = "ns1", addresses = ["192.0.2.53"] }]
[[gateway]]
name = "east"
addresses = ["192.0.2.1"]
[[service]]
name = "app.gslb.test"
endpoints = [{ gateway = "east" }]
[[service]]
name =   "app.gslb.test."
endpoints = [{ gateway = "east" }]
"#;
    assert_eq!(locate(text, "\"app.gslb.test.\""), (11, 10));
    rejects(
        text,
        11,
        10,
        "duplicate name app.gslb.test.: already used by another service",
    );
}

#[test]
fn addresses_that_do_not_parse() {
    let text = r#"[[zone]]
origin = "gslb.test"
ns = [{ name = "ns1", addresses = ["192.0.2.53"] }]

[[gateway]]
name = "east"
addresses = ["192.0.2.1", "2001:db8::zz"]
"#;
    assert_eq!(locate(text, "\"2001:db8::zz\""), (7, 27));
    rejects(text, 7, 27, "invalid IP address \"2001:db8::zz\"");

    // Glue address of a name server.
    let text = r#"[[zone]]
origin = "gslb.test"
ttl = "1h"
ns = [
  { name = "ns1", addresses = ["192.0.2.53"] },
  { name = "ns2", addresses = ["2001:db8::53", "192.0.2.256"] },
]
"#;
    assert_eq!(locate(text, "\"192.0.2.256\""), (6, 48));
    rejects(text, 6, 48, "invalid IP address \"192.0.2.256\"");
}

#[test]
fn bad_duration_strings() {
    let text = r#"[[check]]
name = "hc"
kind = "tcp"
port = 80
interval = "2 parsecs"
"#;
    assert_eq!(locate(text, "\"2 parsecs\""), (5, 12));
    rejects(text, 5, 12, "invalid duration \"2 parsecs\"");

    // A duration without a unit, in a plain (unspanned) field.
    let text = r#"[[zone]]
origin = "gslb.test"
ttl = "300"
ns = [{ name = "ns1", addresses = ["192.0.2.53"] }]
"#;
    assert_eq!(locate(text, "\"300\""), (3, 7));
    rejects(text, 3, 7, "invalid duration \"300\": missing unit");

    let text = r#"[server]
listen = ["127.0.0.1:0"]
tcp_idle_timeout = "1m30"
"#;
    assert_eq!(locate(text, "\"1m30\""), (3, 20));
    rejects(text, 3, 20, "invalid duration \"1m30\": missing unit");
}

#[test]
fn accepts_every_shipped_config() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let out = std::process::Command::new(BIN)
            .args(["check", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{} rejected: {}{}",
            path.display(),
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.starts_with(&format!("{}: ok", path.display())),
            "{}: {stdout}",
            path.display()
        );
        seen += 1;
    }
    assert!(seen >= 1, "no configs in {}", dir.display());
}
