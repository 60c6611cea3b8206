//! What a server says about itself: its NSID and CH-class names, its version, and the
//! secret its DNS cookies are made with.

use super::schema::ServerDef;
use super::{ConfigError, Locator};

type Result<T> = std::result::Result<T, ConfigError>;

/// NSID payloads are opaque, but operators read them: keep them short and printable.
const MAX_NSID: usize = 128;

pub(super) fn nsid(loc: &Locator<'_>, s: &ServerDef) -> Result<Option<String>> {
    let Some(n) = &s.nsid else {
        return Ok(None);
    };
    let v = n.get_ref().trim();
    if v.is_empty() || v.len() > MAX_NSID || !v.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(loc.error(
            n.span(),
            format!("nsid must be 1 to {MAX_NSID} printable ASCII characters"),
        ));
    }
    Ok(Some(v.to_string()))
}

pub(super) fn version(s: &ServerDef) -> Option<String> {
    match &s.version {
        None => Some(format!("gslb {}", env!("CARGO_PKG_VERSION"))),
        Some(v) if v.trim().is_empty() => None,
        // One TXT character-string holds 255 bytes.
        Some(v) => Some(v.trim().chars().take(200).collect()),
    }
}

pub(super) fn cookie_secrets(loc: &Locator<'_>, s: &ServerDef) -> Result<Vec<[u8; 16]>> {
    let Some(f) = &s.cookie_secret_file else {
        return Ok(Vec::new());
    };
    let path = {
        let p = std::path::Path::new(f.get_ref());
        if p.is_relative() {
            let dir = loc
                .file_path()
                .parent()
                .unwrap_or(std::path::Path::new("."));
            dir.join(p)
        } else {
            p.to_path_buf()
        }
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        loc.error(
            f.span(),
            format!("cannot read cookie_secret_file {}: {e}", path.display()),
        )
    })?;
    parse_secrets(&text).map_err(|e| {
        loc.error(
            f.span(),
            format!("cookie_secret_file {}: {e}", path.display()),
        )
    })
}

/// One secret per line, 32 hex digits each; blank lines and `#` comments skipped.
pub fn parse_secrets(text: &str) -> std::result::Result<Vec<[u8; 16]>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bytes = (0..line.len())
            .step_by(2)
            .map(|j| {
                line.get(j..j + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect::<Option<Vec<u8>>>();
        match bytes.as_deref().map(<[u8; 16]>::try_from) {
            Some(Ok(s)) => out.push(s),
            _ => {
                return Err(format!(
                    "line {}: a secret is 32 hex digits (16 bytes)",
                    i + 1
                ));
            }
        }
    }
    if out.is_empty() {
        return Err("no secret in the file".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::parse_secrets;

    #[test]
    fn secret_files() {
        let two = parse_secrets(
            "# rotated 2026-12-01\ne5e973e5a6b2a43f48e7dc849e37bfcf\n\ndd3bdf9344b678b185a6f5cb60fca715\n",
        )
        .unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two[0][0], 0xe5);
        assert!(parse_secrets("e5e973").unwrap_err().contains("line 1"));
        assert!(parse_secrets("\n").is_err());
    }
}
