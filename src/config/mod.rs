//! Configuration: the TOML schema (`schema`), human durations (`duration`) and the
//! validation that turns a file into a `Plan` (`compile`). Every error names the file,
//! line and column it is about, so `gslb check` reads like a compiler.

mod check;
mod cluster;
pub mod compile;
pub mod duration;
mod identity;
pub mod schema;
mod settings;
mod zone;

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::plan::Plan;

/// A configuration problem with its location in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no location (the file could not be read).
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// Turns byte offsets into `file:line:col` errors.
pub(crate) struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
}

impl<'a> Locator<'a> {
    pub(crate) fn new(file: &'a Path, text: &'a str) -> Self {
        Locator { file, text }
    }

    pub(crate) fn file_path(&self) -> &Path {
        self.file
    }

    pub(crate) fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let (line, column) = if span == (0..0) {
            // Defaults carry an empty span: point at the top of the file.
            (1, 1)
        } else {
            line_col(self.text, span.start)
        };
        ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Reads, parses and validates a configuration file.
pub fn load(path: &Path) -> Result<Plan, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        message: format!("cannot read: {e}"),
    })?;
    let plan = parse(path, &text);
    drop(text);
    if let Some(release) = AFTER_LOAD.get() {
        release();
    }
    plan
}

/// Run after every `load`, once the parse's working memory is freed (see `after_each_load`).
static AFTER_LOAD: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Sets what `load` runs after each parse: the binary gives back the memory the parse
/// freed (an allocator call this library, free of unsafe code, does not make itself).
pub fn after_each_load(f: fn()) {
    let _ = AFTER_LOAD.set(f);
}

/// Runs what `after_each_load` set once more, for memory freed after a load: a reload's
/// previous plan, zones and tables, once the new snapshot has replaced them.
pub fn release_freed_memory() {
    if let Some(release) = AFTER_LOAD.get() {
        release();
    }
}

/// Parses and validates configuration text; `path` is used in messages only.
pub fn parse(path: &Path, text: &str) -> Result<Plan, ConfigError> {
    let loc = Locator::new(path, text);
    let file: schema::File = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        // toml's message is multi-line with a source excerpt; keep the first line, we
        // give the location ourselves.
        let msg = e
            .message()
            .lines()
            .next()
            .unwrap_or("invalid TOML")
            .to_string();
        let mut err = loc.error(span.clone(), msg);
        if span == (0..0) {
            err.line = 1;
            err.column = 1;
        }
        err
    })?;
    compile::compile(&loc, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let t = "a = 1\nbé = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(line_col(t, 9), (2, 3));
    }
}
