//! `gslb check`: every rejection names `<path>:<line>:<col>: <message>` at the offending
//! value, exits non-zero, and every shipped example config passes.
//!
//! The rejections are data (`tests/data/check/`, see its README), checked in process;
//! a few tests run the real binary for its exit codes and output.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::BIN;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/check")
}

/// The cases in `tests/data/check/`, sorted by name: (name, config text, expected line).
fn cases() -> Vec<(String, String, String)> {
    let dir = data_dir();
    let read =
        |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("toml" | "expected")
            )
        })
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for path in &files {
        let is_toml = path.extension().is_some_and(|e| e == "toml");
        let twin = path.with_extension(if is_toml { "expected" } else { "toml" });
        assert!(
            twin.exists(),
            "{} has no twin {}",
            path.display(),
            twin.display()
        );
        if is_toml {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let expected = read(&twin).trim_end_matches(['\n', '\r']).to_string();
            cases.push((name, read(path), expected));
        }
    }
    assert!(!cases.is_empty(), "no cases in {}", dir.display());
    cases
}

/// The line of `text` that `diag` (`file:LINE:COL: ...`) points at, with a caret under
/// the column, so a failure shows what each location names.
fn show_location(text: &str, diag: &str) -> String {
    let mut parts = diag.splitn(4, ':').skip(1);
    let at = |p: Option<&str>| p.and_then(|n| n.parse::<usize>().ok()).filter(|&n| n > 0);
    let (Some(line), Some(col)) = (at(parts.next()), at(parts.next())) else {
        return "    (no LINE:COL)".into();
    };
    match text.lines().nth(line - 1) {
        Some(l) => format!("    {l}\n    {}^", " ".repeat(col - 1)),
        None => format!("    (the file has no line {line})"),
    }
}

/// Every bad config is rejected with exactly its expected `file:line:col: message`.
/// All cases run; the failure lists each one that differs.
#[test]
fn bad_configs_give_the_expected_diagnostic() {
    let cases = cases();
    let mut failures = Vec::new();
    for (name, text, expected) in &cases {
        let file = format!("{name}.toml");
        let actual = match gslb::config::parse(Path::new(&file), text) {
            Ok(_) => "(accepted)".to_string(),
            Err(e) => e.to_string(),
        };
        if actual != *expected {
            failures.push(format!(
                "case {name}:\n  expected: {expected}\n{}\n  actual:   {actual}\n{}",
                show_location(text, expected),
                show_location(text, &actual),
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases in {} failed:\n\n{}",
        failures.len(),
        cases.len(),
        data_dir().display(),
        failures.join("\n\n")
    );
}

/// Runs `gslb check ARGS...`.
fn gslb_check(args: &[&OsStr]) -> Output {
    Command::new(BIN).arg("check").args(args).output().unwrap()
}

/// The binary prints a bad file's diagnostic once, on stderr, with its path as given,
/// and exits 1.
#[test]
fn binary_rejects_a_bad_file_with_one_located_line() {
    let name = "unknown_key_gateway";
    let path = data_dir().join(format!("{name}.toml"));
    let expected = std::fs::read_to_string(data_dir().join(format!("{name}.expected"))).unwrap();
    let expected =
        expected
            .trim_end()
            .replacen(&format!("{name}.toml:"), &format!("{}:", path.display()), 1);
    let out = gslb_check(&["-c".as_ref(), path.as_ref()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("gslb: {expected}\n")
    );
}

/// Every shipped example config (and the compose demo's replicas) passes: exit 0 and
/// one `<path>: ok (...)` line.
#[test]
fn accepts_every_shipped_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("config");
    let mut seen = 0;
    let shipped = std::fs::read_dir(&dir)
        .unwrap()
        .chain(std::fs::read_dir(root.join("docker/compose")).unwrap());
    for entry in shipped {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let out = gslb_check(&["--config".as_ref(), path.as_ref()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{} rejected: {}{}",
            path.display(),
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.starts_with(&format!("{}: ok (", path.display())) && stdout.lines().count() == 1,
            "{}: {stdout}",
            path.display()
        );
        seen += 1;
    }
    assert!(
        seen >= 5,
        "only {seen} configs in {} and docker/compose",
        dir.display()
    );
}

/// A command-line mistake exits 2 and names the missing flag; every command has a
/// `--help`, which exits 0.
#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let out = gslb_check(&[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--config <FILE>"), "{stderr}");

    for command in ["serve", "check", "explain", "demo", "version"] {
        let out = Command::new(BIN)
            .args([command, "--help"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{command}: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("Usage: gslb {command}")),
            "{command}: {stdout}"
        );
    }
}
