//! A fast reader for the one YAML shape `aws-auth` lists almost always have (what eksctl, the EKS docs and
//! our own emitter write): a block sequence of flat mappings whose values are plain or simply quoted
//! scalars, or lists of them. It returns `None` for anything else — comments, anchors, tags, block scalars,
//! nested mappings, numbers, booleans, escapes, odd indentation — and the caller then uses the full YAML
//! parser. Whatever it accepts, it reads exactly as the full parser does (checked by a differential
//! property test against serde-saphyr), only 10-20x faster.

use serde_json::{Map, Value};

/// The list's items if `text` is in the simple shape; `None` means "use the full parser".
pub fn parse(text: &str) -> Option<Vec<Value>> {
    if text.bytes().any(|b| {
        matches!(
            b,
            b'\t' | b'\r' | b'#' | b'&' | b'*' | b'!' | b'|' | b'>' | b'%' | b'\\' | b'`' | b'@'
        )
    }) {
        return None;
    }
    let mut items: Vec<Value> = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() {
            continue;
        }
        let rest = line.strip_prefix("- ")?;
        if rest.trim().is_empty() {
            return None;
        }
        match split_key(rest) {
            // `- key: value` starts a mapping item; its other keys follow at indent 2.
            Some((key, value)) => {
                let mut map = Map::new();
                insert(&mut map, key, value, &mut lines)?;
                while let Some(next) = lines.peek() {
                    if next.trim().is_empty() {
                        lines.next();
                        continue;
                    }
                    let Some(body) = next.strip_prefix("  ") else {
                        break;
                    };
                    if body.starts_with(' ') || body.starts_with('-') {
                        return None;
                    }
                    let (k, v) = split_key(body)?;
                    lines.next();
                    insert(&mut map, k, v, &mut lines)?;
                }
                items.push(Value::Object(map));
            }
            // `- scalar` (e.g. mapAccounts).
            None => items.push(scalar(rest)?),
        }
    }
    // A blank document is null to YAML; the caller decides what that means.
    (!items.is_empty()).then_some(items)
}

/// `key: value` or `key:`; keys are simple identifiers.
fn split_key(s: &str) -> Option<(&str, &str)> {
    let colon = s.find(':')?;
    let key = &s[..colon];
    let value = &s[colon + 1..];
    let mut chars = key.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    (ok && (value.is_empty() || value.starts_with(' '))).then_some((key, value))
}

fn insert<'a>(
    map: &mut Map<String, Value>,
    key: &str,
    value: &str,
    lines: &mut std::iter::Peekable<impl Iterator<Item = &'a str>>,
) -> Option<()> {
    if map.contains_key(key) {
        return None; // duplicate keys: let the full parser report them
    }
    let value = value.trim();
    let v = if value.is_empty() {
        // `key:` then a block list at indent 2 or 4, or nothing (null).
        let mut list = Vec::new();
        let mut item_indent = None;
        while let Some(next) = lines.peek() {
            let indent = next.len() - next.trim_start_matches(' ').len();
            let body = next.trim_start_matches(' ');
            if !(body.starts_with("- ") && (indent == 2 || indent == 4)) {
                break;
            }
            if *item_indent.get_or_insert(indent) != indent {
                return None;
            }
            let item = body[2..].trim();
            if split_key(item).is_some() || item.starts_with('[') {
                return None;
            }
            list.push(scalar(item)?);
            lines.next();
        }
        if list.is_empty() {
            Value::Null
        } else {
            Value::Array(list)
        }
    } else if let Some(inner) = value.strip_prefix('[') {
        let inner = inner.strip_suffix(']')?.trim();
        if inner.is_empty() {
            Value::Array(Vec::new())
        } else {
            let items: Option<Vec<Value>> = inner
                .split(',')
                .map(|s| {
                    let s = s.trim();
                    if s.contains(['[', ']', '{', '}', '\'', '"']) {
                        return None;
                    }
                    scalar(s)
                })
                .collect();
            Value::Array(items?)
        }
    } else if value == "{}" {
        Value::Object(Map::new())
    } else {
        scalar(value)?
    };
    map.insert(key.to_string(), v);
    Some(())
}

/// A string scalar: plain (starting with a letter), or quoted without escapes. Anything else: `None`.
fn scalar(s: &str) -> Option<Value> {
    let s = s.trim();
    if let Some(inner) = s.strip_prefix('"') {
        let inner = inner.strip_suffix('"')?;
        return (!inner.contains('"')).then(|| Value::String(inner.to_string()));
    }
    if let Some(inner) = s.strip_prefix('\'') {
        let inner = inner.strip_suffix('\'')?;
        return (!inner.contains('\'')).then(|| Value::String(inner.to_string()));
    }
    let mut chars = s.chars();
    let plain = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && !s.contains(": ")
        && !s.ends_with(':')
        && !s
            .bytes()
            .any(|b| matches!(b, b'[' | b']' | b',' | b'\'' | b'"'))
        && !crate::yaml::is_reserved_word(s);
    plain.then(|| Value::String(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn full(text: &str) -> Option<Value> {
        serde_saphyr::from_str::<Value>(text).ok()
    }

    #[test]
    fn reads_the_usual_shapes() {
        let cases = [
            "- userarn: arn:aws:iam::1:user/a\n  username: a\n  groups:\n    - system:masters\n",
            "- userarn: arn:aws:iam::1:user/a\n  username: a\n  groups:\n  - system:masters\n  - ops\n",
            "- rolearn: arn:aws:iam::1:role/node\n  username: system:node:{{EC2PrivateDNSName}}\n  groups: [system:bootstrappers, system:nodes]\n",
            "- userARN: arn:aws:iam::1:user/x\n  username: \"{{SessionName}}\"\n  groups: []\n  extra: {}\n  empty:\n",
            "- '111122223333'\n- \"444455556666\"\n",
            "\n- username: 'it''s'\n",
        ];
        for text in cases {
            match parse(text) {
                Some(v) => assert_eq!(Some(Value::Array(v)), full(text), "{text}"),
                None => assert!(text.contains("''"), "{text} should take the fast path"),
            }
        }
        assert_eq!(
            parse(cases[0]).map(Value::Array),
            Some(
                json!([{"userarn": "arn:aws:iam::1:user/a", "username": "a", "groups": ["system:masters"]}])
            )
        );
    }

    #[test]
    fn declines_what_it_does_not_fully_understand() {
        for text in [
            "# comment\n- a: b\n",
            "- a: b # trailing\n",
            "- a: 1\n",
            "- a: yes\n",
            "- a: True\n",
            "- a: &x b\n",
            "- a: |\n    b\n",
            "- a:\n    b: c\n",
            "- a: b\n  a: c\n",
            "- a: b\n   c: d\n",
            "  - a: b\n",
            "a: b\n",
            "- 123456789012\n",
            "- a: \"b\\nc\"\n",
            "- a: [b, [c]]\n",
            "- a: b: c\n",
            "---\n- a: b\n",
            "- a: b\r\n",
            "-a: b\n",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }

    fn arb_scalar() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z][a-zA-Z0-9:/_.=+{}@ -]{0,12}",
            prop::sample::select(vec![
                "yes",
                "No",
                "true",
                "null",
                "~",
                "on",
                "1e3",
                "0x1",
                "-a",
                "a #b",
                "a: b",
                "x:",
                "[a]",
                "{{SessionName}}",
                "'q'",
                "\"q\"",
                "a,b"
            ])
            .prop_map(String::from),
        ]
    }

    fn render_value(s: &str, style: u8) -> String {
        match style % 3 {
            0 => s.to_string(),
            1 => format!("'{s}'"),
            _ => format!("\"{s}\""),
        }
    }

    /// Hand-written-looking documents in many styles (not only our emitter's).
    fn arb_doc() -> impl Strategy<Value = String> {
        let entry = (
            prop::collection::vec(
                ("[a-zA-Z][a-zA-Z0-9_]{0,6}", arb_scalar(), any::<u8>()),
                1..4,
            ),
            prop::collection::vec((arb_scalar(), any::<u8>()), 0..3),
            0u8..4,
        );
        prop::collection::vec(entry, 0..5).prop_map(|entries| {
            let mut out = String::new();
            for (fields, groups, list_style) in entries {
                for (i, (k, v, st)) in fields.iter().enumerate() {
                    out.push_str(if i == 0 { "- " } else { "  " });
                    out.push_str(&format!("{k}: {}\n", render_value(v, *st)));
                }
                match list_style {
                    0 => {
                        out.push_str("  groups:\n");
                        for (g, st) in &groups {
                            out.push_str(&format!("    - {}\n", render_value(g, *st)));
                        }
                    }
                    1 => {
                        out.push_str("  groups:\n");
                        for (g, st) in &groups {
                            out.push_str(&format!("  - {}\n", render_value(g, *st)));
                        }
                    }
                    2 => {
                        let items: Vec<String> = groups.iter().map(|(g, _)| g.clone()).collect();
                        out.push_str(&format!("  groups: [{}]\n", items.join(", ")));
                    }
                    _ => {}
                }
            }
            out
        })
    }

    /// Keeps the differential test honest: a good share of its documents must take the fast path.
    #[test]
    fn the_differential_test_exercises_the_fast_path() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let (mut fast, n) = (0, 500);
        for _ in 0..n {
            let text = arb_doc().new_tree(&mut runner).unwrap().current();
            fast += usize::from(parse(&text).is_some());
        }
        assert!(
            fast > n / 10,
            "only {fast} of {n} generated documents took the fast path"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Differential: whenever the fast reader answers, the full parser answers the same.
        #[test]
        fn agrees_with_the_full_parser(text in arb_doc()) {
            if let Some(fast) = parse(&text) {
                let slow = full(&text);
                prop_assert_eq!(Some(Value::Array(fast)), slow, "{}", text);
            }
        }

        /// Our own emitter's output always takes the fast path when its strings are plain-safe or quotable.
        #[test]
        fn emitter_output_round_trips(names in prop::collection::vec("[a-z][a-z0-9-]{0,10}", 0..20)) {
            let v = Value::Array(names.iter().map(|n| json!({
                "userarn": format!("arn:aws:iam::123456789012:user/{n}"),
                "username": n,
                "groups": ["system:masters"],
            })).collect());
            let text = crate::yaml::to_yaml(&v);
            let fast = parse(&text);
            prop_assert!(fast.is_some() || names.is_empty() || names.iter().any(|n| crate::yaml::is_reserved_word(n)), "{}", text);
            if let Some(fast) = fast {
                prop_assert_eq!(Value::Array(fast), v);
            }
        }
    }
}
