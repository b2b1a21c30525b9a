//! The answer of a `ctl` command as a small tree, printed either as JSON
//! (`--json`, one line, for scripts) or as indented `key: value` lines for
//! a person. A hand-written writer for these few shapes: a JSON library
//! would cost flash for nothing else.

use std::fmt::{self, Write};

/// A value of the answer.
pub(crate) enum Value {
    Null,
    Bool(bool),
    Number(u64),
    Signed(i64),
    Text(String),
    List(Vec<Value>),
    Object(Vec<(&'static str, Value)>),
}

impl Value {
    pub(crate) fn text(s: impl fmt::Display) -> Value {
        Value::Text(s.to_string())
    }

    /// Compact JSON.
    pub(crate) fn json(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    fn write_json(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Signed(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Text(s) => json_string(s, out),
            Value::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
            Value::Object(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    json_string(key, out);
                    out.push(':');
                    value.write_json(out);
                }
                out.push('}');
            }
        }
    }

    /// Indented `key: value` lines; list items start with `-`.
    pub(crate) fn human(&self) -> String {
        let mut out = String::new();
        self.write_human(0, &mut out);
        out
    }

    fn write_human(&self, indent: usize, out: &mut String) {
        match self {
            Value::Object(fields) => {
                for (key, value) in fields {
                    let _ = write!(out, "{:indent$}{key}:", "");
                    value.write_nested(indent, out);
                }
            }
            Value::List(items) => {
                for item in items {
                    let _ = write!(out, "{:indent$}-", "");
                    item.write_nested(indent, out);
                }
            }
            scalar => {
                let _ = writeln!(out, "{:indent$}{}", "", scalar.scalar());
            }
        }
    }

    /// After a key or a list dash: a scalar on the same line, anything
    /// else on the lines below, indented.
    fn write_nested(&self, indent: usize, out: &mut String) {
        match self {
            Value::Object(v) if !v.is_empty() => {
                out.push('\n');
                self.write_human(indent + 2, out);
            }
            Value::List(v) if !v.is_empty() => {
                out.push('\n');
                self.write_human(indent + 2, out);
            }
            Value::List(_) => out.push_str(" none\n"),
            other => {
                let _ = writeln!(out, " {}", other.scalar());
            }
        }
    }

    fn scalar(&self) -> String {
        match self {
            Value::Null => "none".into(),
            Value::Bool(b) => (if *b { "yes" } else { "no" }).into(),
            Value::Number(n) => n.to_string(),
            Value::Signed(n) => n.to_string(),
            Value::Text(s) => s.clone(),
            Value::List(_) | Value::Object(_) => String::new(),
        }
    }
}

fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_human_renderings() {
        let value = Value::Object(vec![
            ("serial", Value::text("NVR-1")),
            ("online", Value::Bool(true)),
            ("seq", Value::Number(4)),
            ("note", Value::text("a \"b\"\n")),
            (
                "shares",
                Value::List(vec![Value::Object(vec![("account", Value::text("bob"))])]),
            ),
            ("none", Value::List(vec![])),
            ("window", Value::Null),
        ]);
        assert_eq!(
            value.json(),
            r#"{"serial":"NVR-1","online":true,"seq":4,"note":"a \"b\"\n","shares":[{"account":"bob"}],"none":[],"window":null}"#
        );
        assert_eq!(
            value.human(),
            "serial: NVR-1\nonline: yes\nseq: 4\nnote: a \"b\"\n\nshares:\n  -\n    account: bob\nnone: none\nwindow: none\n"
        );
    }
}
