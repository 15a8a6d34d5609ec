//! A small, deterministic YAML emitter for JSON values, used to re-render `mapUsers`.
//!
//! EKS reads `aws-auth` with a YAML 1.1 parser (go-yaml via sigs.k8s.io/yaml), so any string that a YAML 1.1
//! or 1.2 reader could take for something else (`yes`, `on`, `null`, `1e3`, `{{SessionName}}`, `a: b`, …) is
//! written as a double-quoted JSON string, which both read back as the same string. Plain scalars are used
//! only for a conservative safe alphabet, which keeps ordinary entries readable.

use serde_json::Value;
use std::fmt::Write;

/// Renders a top-level value as a YAML document (block style, 2-space indent, trailing newline).
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Array(a) if !a.is_empty() => seq(&mut out, a, 0),
        Value::Object(o) if !o.is_empty() => map(&mut out, o, 0),
        other => {
            scalar(&mut out, other);
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn seq(out: &mut String, items: &[Value], ind: usize) {
    for item in items {
        indent(out, ind);
        out.push_str("- ");
        match item {
            // The first key shares the dash's line; the rest align under it.
            Value::Object(o) if !o.is_empty() => {
                let mut first = true;
                for (k, v) in o {
                    if !first {
                        indent(out, ind + 2);
                    }
                    first = false;
                    entry(out, k, v, ind + 2);
                }
            }
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                seq(out, a, ind + 2);
            }
            other => {
                scalar(out, other);
                out.push('\n');
            }
        }
    }
}

fn map(out: &mut String, o: &serde_json::Map<String, Value>, ind: usize) {
    for (k, v) in o {
        indent(out, ind);
        entry(out, k, v, ind);
    }
}

/// `key: value` where the key starts at the current position and `ind` is that key's column.
fn entry(out: &mut String, k: &str, v: &Value, ind: usize) {
    string(out, k);
    out.push(':');
    match v {
        Value::Object(o) if !o.is_empty() => {
            out.push('\n');
            map(out, o, ind + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            seq(out, a, ind + 2);
        }
        other => {
            out.push(' ');
            scalar(out, other);
            out.push('\n');
        }
    }
}

fn scalar(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => string(out, s),
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

/// Words that a YAML reader (1.1 or 1.2) may resolve to a boolean or null rather than a string.
const RESERVED: [&str; 12] = [
    "y", "n", "yes", "no", "on", "off", "true", "false", "null", "nil", "none", "~",
];

/// Whether `s` could be read as something other than a string (those words, in any case).
pub(crate) fn is_reserved_word(s: &str) -> bool {
    s.len() <= 5 && RESERVED.iter().any(|r| r.eq_ignore_ascii_case(s))
}

fn plain_ok(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.first().is_some_and(u8::is_ascii_alphabetic)
        && bytes.iter().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b':' | b'/' | b'_' | b'.' | b'@' | b'+' | b'=' | b'-')
        })
        && !s.ends_with(':')
        && !is_reserved_word(s)
}

fn string(out: &mut String, s: &str) {
    if plain_ok(s) {
        out.push_str(s);
        return;
    }
    // JSON string syntax is a valid YAML double-quoted scalar, except that YAML needs non-printable and
    // some line-break characters escaped, which serde_json does for control characters; escape the rest.
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20
                || c == '\u{7f}'
                || c == '\u{85}'
                || c == '\u{2028}'
                || c == '\u{2029}'
                || c == '\u{feff}' =>
            {
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
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn renders_a_users_block() {
        let v = json!([
            {"userarn": "arn:aws:iam::123456789012:user/alice", "username": "alice", "groups": ["system:masters"]},
            {"userARN": "arn:aws:iam::123456789012:user/x", "username": "{{SessionName}}", "groups": [], "extra": {"a": 1, "b": null}}
        ]);
        let want = "\
- userarn: arn:aws:iam::123456789012:user/alice
  username: alice
  groups:
    - system:masters
- userARN: arn:aws:iam::123456789012:user/x
  username: \"{{SessionName}}\"
  groups: []
  extra:
    a: 1
    b: null
";
        assert_eq!(to_yaml(&v), want);
    }

    fn string(s: &str) -> String {
        let mut out = String::new();
        super::string(&mut out, s);
        out
    }

    #[test]
    fn ambiguous_strings_are_quoted() {
        for s in [
            "yes", "No", "on", "null", "~", "1e3", "0x10", "", " a", "a: b", "a #b", "-", "x:",
            "@a", "*a", "&a", "!a", "'a", "%a",
        ] {
            assert!(string(s).starts_with('"'), "{s:?} must be quoted");
        }
        for s in [
            "alice",
            "system:masters",
            "arn:aws:iam::1:user/a/b",
            "a.b@c+d=e",
        ] {
            assert_eq!(string(s), s);
        }
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "\\PC{0,12}".prop_map(Value::String),
            prop::sample::select(vec![
                "yes",
                "on",
                "~",
                "null",
                "1.5",
                "{{AccountID}}",
                "a: b",
                "- x",
                "#c",
                "\"q\"",
                "a\nb"
            ])
            .prop_map(|s| Value::String(s.to_string())),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("[a-zA-Z_][a-zA-Z0-9_ :-]{0,8}", inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trips_through_a_yaml_parser(v in arb_json()) {
            let text = to_yaml(&v);
            let back: Value = serde_saphyr::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            prop_assert_eq!(back, v, "{}", text);
        }
    }
}
