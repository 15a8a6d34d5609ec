//! A fast reader for the one YAML shape `aws-auth` lists almost always have (what eksctl, the EKS docs and
//! our own emitter and Terraform's `yamlencode` write): a block sequence of flat mappings whose keys and
//! values are plain or simply quoted scalars, or lists of them, with full-line comments and blank lines
//! anywhere, and most trailing comments. It returns `None` for anything else — anchors, tags, block
//! scalars, nested mappings, numbers, booleans, escapes, non-ASCII, odd indentation — and the caller then
//! uses the full YAML parser. Whatever it accepts, it reads exactly as the full parser does (checked by a
//! differential property test against serde-saphyr), borrowing from the text instead of allocating, and it
//! reports where each entry's lines are so that a rewrite can keep untouched entries and every comment byte
//! for byte.

use serde_json::{Map, Value};
use std::ops::Range;

/// A value inside an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node<'a> {
    /// `key:` with nothing after it.
    Null,
    Str(&'a str),
    /// A block list or a flow list (`[a, b]`, `[]`) of strings.
    List(Vec<&'a str>),
    /// `{}`.
    EmptyMap,
}

/// One item of the top-level list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item<'a> {
    /// Fields in document order.
    Map(Vec<(&'a str, Node<'a>)>),
    /// A bare string (as in `mapAccounts`).
    Scalar(&'a str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Byte range of the entry's own lines: from its `- ` line through its last content line and that
    /// line's newline. Comment and blank lines before the entry or after its last field are outside.
    pub span: Range<usize>,
    pub item: Item<'a>,
}

impl Node<'_> {
    pub fn to_value(&self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Str(s) => Value::String((*s).to_string()),
            Node::List(l) => {
                Value::Array(l.iter().map(|s| Value::String((*s).to_string())).collect())
            }
            Node::EmptyMap => Value::Object(Map::new()),
        }
    }
}

impl<'a> Item<'a> {
    /// The field `name` matched case-insensitively, as EKS matches keys; the last spelling wins.
    pub fn field(&self, name: &str) -> Option<&Node<'a>> {
        match self {
            Item::Map(fields) => fields
                .iter()
                .rev()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, n)| n),
            Item::Scalar(_) => None,
        }
    }

    pub fn to_value(&self) -> Value {
        match self {
            Item::Map(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, n)| ((*k).to_string(), n.to_value()))
                    .collect(),
            ),
            Item::Scalar(s) => Value::String((*s).to_string()),
        }
    }
}

/// Bytes that send a content line to the full parser: YAML indicators this reader does not handle,
/// escapes, tabs, control characters and anything outside ASCII (YAML 1.1 line breaks such as U+2028 among
/// them). `@` and `` ` `` are reserved only at the start of a plain scalar, which [`scalar`] refuses
/// anyway; inside one (`jane@corp.com`, an IAM user name) they are ordinary characters.
const fn declined_bytes() -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = b < 0x20 || b >= 0x7f;
        b += 1;
    }
    let indicators = b"#&*!|>%\\";
    let mut i = 0;
    while i < indicators.len() {
        t[indicators[i] as usize] = true;
        i += 1;
    }
    t
}
static DECLINED: [bool; 256] = declined_bytes();

#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    start: usize,
    /// Just past the line's newline (or the end of the text).
    end: usize,
    /// The line without its newline and without a trailing comment.
    s: &'a str,
}

struct Lines<'a> {
    text: &'a str,
    pos: usize,
    /// Set when a content line holds a byte this reader does not handle.
    declined: bool,
}

impl<'a> Lines<'a> {
    /// The next line that is not blank or a full-line comment, without consuming it. Blank and comment
    /// lines before it are consumed: they carry no structure in YAML.
    fn peek(&mut self) -> Option<Line<'a>> {
        loop {
            let rest = self.text.get(self.pos..)?;
            if rest.is_empty() {
                return None;
            }
            let (s, end) = match rest.find('\n') {
                Some(i) => (&rest[..i], self.pos + i + 1),
                None => (rest, self.text.len()),
            };
            let body = s.trim_start_matches(' ');
            if body.is_empty() || body.starts_with('#') {
                self.pos = end;
                continue;
            }
            // A trailing comment (` #` to the end of the line) is dropped from what is read. It is looked
            // for only after the line's last quote, where it cannot be inside a quoted string; any other
            // `#` stays in the content, which then goes to the full parser.
            let content = if s.as_bytes().contains(&b'#') {
                let after_quotes = s
                    .bytes()
                    .rposition(|b| b == b'"' || b == b'\'')
                    .map_or(0, |q| q + 1);
                match s[after_quotes..].find(" #") {
                    Some(i) => s[..after_quotes + i].trim_end(),
                    None => s,
                }
            } else {
                s
            };
            if content.bytes().any(|b| DECLINED[usize::from(b)]) {
                self.declined = true;
                return None;
            }
            return Some(Line {
                start: self.pos,
                end,
                s: content,
            });
        }
    }
}

/// The list's entries if `text` is in the simple shape; `None` means "use the full parser". A text of only
/// blank and comment lines is an empty list (the full parser reads it as null).
pub fn parse(text: &str) -> Option<Vec<Entry<'_>>> {
    if text.contains('\r') {
        return None;
    }
    let mut lines = Lines {
        text,
        pos: 0,
        declined: false,
    };
    let mut entries = Vec::new();
    while let Some(line) = lines.peek() {
        let rest = line.s.strip_prefix("- ")?;
        if rest.trim().is_empty() {
            return None;
        }
        lines.pos = line.end;
        let (item, end) = match split_key(rest) {
            // `- key: value` starts a mapping item; its other keys follow at indent 2.
            Some((key, value)) => {
                let mut fields = Vec::with_capacity(4);
                let mut end = field(&mut fields, key, value, &mut lines, line.end)?;
                while let Some(next) = lines.peek() {
                    let Some(body) = next.s.strip_prefix("  ") else {
                        break;
                    };
                    if body.starts_with(' ') || body.starts_with('-') {
                        return None;
                    }
                    let (k, v) = split_key(body)?;
                    lines.pos = next.end;
                    end = field(&mut fields, k, v, &mut lines, next.end)?;
                }
                (Item::Map(fields), end)
            }
            // `- scalar` (e.g. mapAccounts).
            None => (Item::Scalar(scalar(rest)?), line.end),
        };
        entries.push(Entry {
            span: line.start..end,
            item,
        });
    }
    (!lines.declined).then_some(entries)
}

/// `key: value` or `key:`; keys are simple identifiers, plain or quoted (Terraform's `yamlencode` writes
/// `"userarn": "…"`).
fn split_key(s: &str) -> Option<(&str, &str)> {
    let (key, value) = match s.as_bytes().first() {
        Some(&q @ (b'"' | b'\'')) => {
            let close = s[1..].find(char::from(q))? + 1;
            (&s[1..close], s[close + 1..].strip_prefix(':')?)
        }
        _ => {
            let colon = s.find(':')?;
            (&s[..colon], &s[colon + 1..])
        }
    };
    let bytes = key.as_bytes();
    let ok = bytes.first().is_some_and(u8::is_ascii_alphabetic)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-');
    (ok && (value.is_empty() || value.starts_with(' '))).then_some((key, value))
}

/// Reads one field's value (and the block list under it, if any); returns the end of its last line.
fn field<'a>(
    fields: &mut Vec<(&'a str, Node<'a>)>,
    key: &'a str,
    value: &'a str,
    lines: &mut Lines<'a>,
    mut end: usize,
) -> Option<usize> {
    if fields.iter().any(|(k, _)| *k == key) {
        return None; // duplicate keys: let the full parser report them
    }
    let value = value.trim();
    let node = if value.is_empty() {
        // `key:` then a block list at indent 2 or 4, or nothing (null).
        let mut list = Vec::new();
        let mut item_indent = None;
        while let Some(next) = lines.peek() {
            let body = next.s.trim_start_matches(' ');
            let indent = next.s.len() - body.len();
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
            lines.pos = next.end;
            end = next.end;
        }
        if list.is_empty() {
            Node::Null
        } else {
            Node::List(list)
        }
    } else if let Some(inner) = value.strip_prefix('[') {
        let inner = inner.strip_suffix(']')?.trim();
        if inner.is_empty() {
            Node::List(Vec::new())
        } else {
            let items: Option<Vec<&str>> = inner
                .split(',')
                .map(|s| {
                    let s = s.trim();
                    if s.bytes()
                        .any(|b| matches!(b, b'[' | b']' | b'{' | b'}' | b'\'' | b'"'))
                    {
                        return None;
                    }
                    scalar(s)
                })
                .collect();
            Node::List(items?)
        }
    } else if value == "{}" {
        Node::EmptyMap
    } else {
        Node::Str(scalar(value)?)
    };
    fields.push((key, node));
    Some(end)
}

/// A string scalar: plain (starting with a letter), or quoted without escapes. Anything else: `None`.
fn scalar(s: &str) -> Option<&str> {
    let s = s.trim();
    if let Some(inner) = s.strip_prefix('"') {
        let inner = inner.strip_suffix('"')?;
        return (!inner.contains('"')).then_some(inner);
    }
    if let Some(inner) = s.strip_prefix('\'') {
        let inner = inner.strip_suffix('\'')?;
        return (!inner.contains('\'')).then_some(inner);
    }
    let plain = s.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
        && !s.contains(": ")
        && !s.ends_with(':')
        // `,` is an ordinary character in a block plain scalar (IAM user names may hold one); flow list
        // items reach here already split on it.
        && !s
            .bytes()
            .any(|b| matches!(b, b'[' | b']' | b'\'' | b'"'))
        && !crate::store::aws_auth::yaml::is_reserved_word(s);
    plain.then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn fast(text: &str) -> Option<Value> {
        parse(text).map(|entries| Value::Array(entries.iter().map(|e| e.item.to_value()).collect()))
    }

    /// The full parser's reading; a document of only comments is null to it, an empty list to us.
    fn full(text: &str) -> Option<Value> {
        match serde_saphyr::from_str::<Value>(text).ok()? {
            Value::Null => Some(Value::Array(Vec::new())),
            v => Some(v),
        }
    }

    #[test]
    fn reads_the_usual_shapes() {
        let cases = [
            "- userarn: arn:aws:iam::1:user/a\n  username: a\n  groups:\n    - system:masters\n",
            "- userarn: arn:aws:iam::1:user/a\n  username: a\n  groups:\n  - system:masters\n  - ops\n",
            "- rolearn: arn:aws:iam::1:role/node\n  username: system:node:{{EC2PrivateDNSName}}\n  groups: [system:bootstrappers, system:nodes]\n",
            "- userARN: arn:aws:iam::1:user/x\n  username: \"{{SessionName}}\"\n  groups: []\n  extra: {}\n  empty:\n",
            "- '111122223333'\n- \"444455556666\"\n",
            "# break-glass users, ask #platform\n\n- userarn: arn:aws:iam::1:user/a\n  # temporary\n  username: a\n  groups:\n  # - system:masters\n    - ops\n#- userarn: arn:aws:iam::1:user/old\n",
            "# nothing here yet\n",
            "- \"groups\":\n  - \"system:masters\"\n  \"userarn\": \"arn:aws:iam::1:user/tf\"\n  \"username\": \"tf\"\n",
            "- 'userarn': arn\n  username: someone\n",
            "- a: 'b' # after the quotes\n  c: \"d\"  # also after\n",
            "- userarn: arn:aws:iam::1:user/jane   # on call\n  groups: # none yet\n  - ops #x\n  name: b #: [c\n",
            "\n- username: 'it''s'\n",
        ];
        for text in cases {
            match fast(text) {
                Some(v) => assert_eq!(Some(v), full(text), "{text}"),
                None => assert!(text.contains("''"), "{text} should take the fast path"),
            }
        }
        assert_eq!(
            fast(cases[0]),
            Some(
                json!([{"userarn": "arn:aws:iam::1:user/a", "username": "a", "groups": ["system:masters"]}])
            )
        );
    }

    #[test]
    fn spans_cover_each_entry_and_leave_comments_outside() {
        let text = "# header\n- userarn: a\n  groups:\n    - x\n\n# about b\n- userarn: b\n  username: b\n# trailer";
        let entries = parse(text).unwrap();
        let spans: Vec<&str> = entries.iter().map(|e| &text[e.span.clone()]).collect();
        assert_eq!(
            spans,
            [
                "- userarn: a\n  groups:\n    - x\n",
                "- userarn: b\n  username: b\n"
            ]
        );
        let last = "- a\n- b";
        let entries = parse(last).unwrap();
        assert_eq!(&last[entries[1].span.clone()], "- b");
    }

    #[test]
    fn declines_what_it_does_not_fully_understand() {
        for text in [
            "- a: 'b # inside the quotes'\n",
            "- a: b # it's a comment with a quote\n",
            "- a: \"b\"#glued\n",
            "- a: \"b\" # a comment with \"quotes\"\n",
            "- a: b#c\n",
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
            "- a: caf\u{e9}\n",
            "- a: b\u{2028}c\n",
            "- a: b\u{1}\n",
            "- a:\tb\n",
            "- \"a\" : b\n",
            "- \"a b\": c\n",
            "- \"a\": b\n  a: c\n",
            "- \"a:b\n",
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
                "a,b",
                "a#b"
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

    /// Comment and blank lines as people leave them: at any indentation, commented-out entries.
    fn arb_trivia() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "",
            "  ",
            "# note",
            "  # indented note",
            "    #deeper: [x",
            "#- userarn: arn:aws:iam::1:user/old",
            "# a: 'b' | c & *d",
        ])
        .prop_map(String::from)
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
        (
            prop::collection::vec(entry, 0..5),
            prop::collection::vec((any::<prop::sample::Index>(), arb_trivia()), 0..4),
            prop::collection::vec(
                (
                    any::<prop::sample::Index>(),
                    prop_oneof![
                        4 => prop::sample::select(vec![" # note", "   #x", " #: [y", " #"]),
                        1 => Just("# glued"),
                    ]
                    .prop_map(String::from),
                ),
                0..3,
            ),
            any::<bool>(),
        )
            .prop_map(|(entries, trivia, trailing, final_newline)| {
                let mut lines: Vec<String> = Vec::new();
                for (fields, groups, list_style) in entries {
                    for (i, (k, v, st)) in fields.iter().enumerate() {
                        let lead = if i == 0 { "- " } else { "  " };
                        let k = render_value(k, st / 3);
                        lines.push(format!("{lead}{k}: {}", render_value(v, *st)));
                    }
                    match list_style {
                        0 | 1 => {
                            lines.push("  groups:".into());
                            let ind = if list_style == 0 { "    " } else { "  " };
                            for (g, st) in &groups {
                                lines.push(format!("{ind}- {}", render_value(g, *st)));
                            }
                        }
                        2 => {
                            let items: Vec<String> =
                                groups.iter().map(|(g, _)| g.clone()).collect();
                            lines.push(format!("  groups: [{}]", items.join(", ")));
                        }
                        _ => {}
                    }
                }
                for (at, c) in trailing {
                    if !lines.is_empty() {
                        let i = at.index(lines.len());
                        lines[i].push_str(&c);
                    }
                }
                for (at, t) in trivia {
                    let i = at.index(lines.len() + 1);
                    lines.insert(i, t);
                }
                let mut out = lines.join("\n");
                if final_newline && !out.is_empty() {
                    out.push('\n');
                }
                out
            })
    }

    /// Keeps the differential test honest: a good share of its documents must take the fast path.
    #[test]
    fn the_differential_test_exercises_the_fast_path() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let (mut fast_path, n) = (0, 500);
        let (mut commented, mut trailing) = (0, 0);
        for _ in 0..n {
            let text = arb_doc().new_tree(&mut runner).unwrap().current();
            let took = parse(&text).is_some();
            fast_path += usize::from(took);
            commented += usize::from(took && text.contains('#'));
            trailing += usize::from(
                took && text
                    .lines()
                    .any(|l| !l.trim_start().starts_with('#') && l.contains(" #")),
            );
        }
        assert!(
            trailing > n / 40,
            "only {trailing} of {n} documents with trailing comments took the fast path"
        );
        assert!(
            fast_path > n / 10,
            "only {fast_path} of {n} generated documents took the fast path"
        );
        assert!(
            commented > n / 40,
            "only {commented} of {n} documents with comments took the fast path"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Differential: whenever the fast reader answers, the full parser answers the same; each entry's
        /// span alone reads as that entry, and everything outside the spans is blank or comment lines.
        #[test]
        fn agrees_with_the_full_parser(text in arb_doc()) {
            if let Some(entries) = parse(&text) {
                let fast = Value::Array(entries.iter().map(|e| e.item.to_value()).collect());
                prop_assert_eq!(Some(fast), full(&text), "{}", text);
                let mut pos = 0;
                for e in &entries {
                    let alone = full(&text[e.span.clone()]);
                    prop_assert_eq!(alone, Some(json!([e.item.to_value()])), "{}", text);
                    for line in text[pos..e.span.start].lines() {
                        let t = line.trim_start();
                        prop_assert!(t.is_empty() || t.starts_with('#'), "{:?} in {}", line, text);
                    }
                    pos = e.span.end;
                }
                for line in text[pos..].lines() {
                    let t = line.trim_start();
                    prop_assert!(t.is_empty() || t.starts_with('#'), "{:?} in {}", line, text);
                }
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
            let text = crate::store::aws_auth::yaml::to_yaml(&v);
            let fast = fast(&text);
            prop_assert!(fast.is_some() || names.is_empty() || names.iter().any(|n| crate::store::aws_auth::yaml::is_reserved_word(n)), "{}", text);
            if let Some(fast) = fast {
                prop_assert_eq!(fast, v);
            }
        }
    }
}
