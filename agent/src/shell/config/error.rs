//! Why a configuration cannot be used, always as one line that names the
//! file and the key, so a supervisor's log shows at once what to fix.

use std::path::PathBuf;

/// Why a configuration cannot be used; each names the file or the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file (or a file it names) cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// One line: where, which key, what is wrong.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("{key}: {message}")]
    Invalid {
        /// The key, as written in the file (`cloud.keep_alive_secs`).
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

pub(super) fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// `value` of `key` within `range`, or an error naming both.
pub(super) fn in_range(
    key: &'static str,
    value: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!(
                "{value} is out of range: from {} to {}",
                range.start(),
                range.end()
            ),
        ))
    }
}

/// The parser's error as one line: `line N: key: message` (the parser's own
/// text is a multi-line snippet with a caret).
pub(super) fn one_line(text: &str, error: &toml::de::Error) -> String {
    let message = error
        .message()
        .lines()
        .next()
        .unwrap_or("not valid TOML")
        .trim();
    let Some(at) = error.span().map(|s| s.start.min(text.len())) else {
        return message.to_string();
    };
    let before = text.get(..at).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    match key_at(text, line) {
        Some(key) => format!("line {line}: {key}: {message}"),
        None => format!("line {line}: {message}"),
    }
}

/// The dotted key defined on `line` (1-based): the table header above it
/// and the key before its `=`, or the header itself.
fn key_at(text: &str, line: usize) -> Option<String> {
    let mut table = String::new();
    for (n, raw) in text.lines().enumerate().take(line) {
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.starts_with('[') {
            table = content
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
            if n + 1 == line {
                return Some(table);
            }
        } else if n + 1 == line {
            let key = content.split_once('=')?.0.trim().trim_matches('"');
            return Some(if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_for(text: &str) -> String {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Cloud {
            port: u16,
        }
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct File {
            serial: String,
            cloud: Cloud,
        }
        let e = toml::from_str::<File>(text).unwrap_err();
        one_line(text, &e)
    }

    #[test]
    fn errors_are_one_line_naming_the_key() {
        let e = error_for("serial = \"A\"\n[cloud]\nport = 70000\n");
        assert!(e.starts_with("line 3: cloud.port: "), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = error_for("serial = \"A\"\n[cloud]\nport = 1\nextra = 2\n");
        assert!(e.starts_with("line 4: cloud.extra: unknown field"), "{e}");
        let e = error_for("serial = \"A\n");
        assert!(e.starts_with("line 1: "), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
}
