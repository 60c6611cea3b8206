//! Any text as a config file: parsed and compiled, or rejected with a located error.
//! Must never panic; an error's line and column lie inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = gslb::config::parse(std::path::Path::new("fuzz.toml"), text) {
        let shown = e.to_string();
        assert!(shown.starts_with("fuzz.toml"), "{shown}");
        assert!(e.line <= text.lines().count() + 1, "{shown}");
    }
});
