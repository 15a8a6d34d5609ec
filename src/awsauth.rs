//! The `kube-system/aws-auth` ConfigMap ↔ model. Pure.
//!
//! Rules (mirroring how aws-iam-authenticator reads the ConfigMap):
//! - `mapUsers`, `mapRoles`, `mapAccounts` are YAML (or JSON) lists; keys inside entries are
//!   case-insensitive; unknown fields are kept.
//! - Only `mapUsers` is ever rewritten, and only when an owned entry changes. In the usual YAML shape (see
//!   [`crate::fastyaml`]) the text is spliced: every entry we do not change, and every comment and blank
//!   line, stays byte for byte; changed entries are rewritten in place and new ones appended. Any other
//!   `mapUsers` (JSON, or YAML the fast reader declines) is re-rendered in its format: foreign entries keep
//!   their position, key spelling, key order, unknown fields and values, but YAML comments are lost.
//! - `mapRoles`, `mapAccounts` and every other key are never touched (they are parsed only to refuse
//!   working on a document EKS cannot read fully).
//! - Ownership lives in an annotation (EKS ignores annotations): a JSON list of the user ARNs we wrote.

use crate::desired::Mapping;
use crate::plan::{ArnKey, Change, CurrentEntry, Plan};
use crate::{fastyaml, yaml};
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "aws-auth";
pub const OWNED_ANNOTATION: &str = "eks-admin-sync/owned-user-arns";
pub const MAP_USERS: &str = "mapUsers";
const LIST_KEYS: [&str; 3] = ["mapUsers", "mapRoles", "mapAccounts"];
/// The API server's limit on a ConfigMap's data (data + binaryData).
pub const MAX_DATA_BYTES: usize = 1024 * 1024;
/// The API server's limit on all annotations of one object.
pub const MAX_ANNOTATION_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AwsAuthError {
    #[error("kube-system/aws-auth data.{key} cannot be parsed{}: {message}; fix it by hand, nothing was written", at(*line, *column))]
    Parse {
        key: &'static str,
        line: Option<u64>,
        column: Option<u64>,
        message: String,
    },
    #[error(
        "kube-system/aws-auth data.{key} is a {found}, expected a list; fix it by hand, nothing was written"
    )]
    NotAList {
        key: &'static str,
        found: &'static str,
    },
    #[error(
        "kube-system/aws-auth annotation {OWNED_ANNOTATION} is not a JSON list of ARNs ({0}); fix or remove it, nothing was written"
    )]
    Ownership(String),
    #[error("cannot render kube-system/aws-auth {what}: {message}; nothing was written")]
    Render { what: &'static str, message: String },
    #[error(
        "refusing to write kube-system/aws-auth: {what} would be {size} bytes, over the {limit}-byte limit"
    )]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
}

fn at(line: Option<u64>, column: Option<u64>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" at line {l}, column {c}"),
        (Some(l), None) => format!(" at line {l}"),
        _ => String::new(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Yaml,
    Json,
}

/// The parts of `aws-auth` this function reads.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsAuth {
    /// `mapUsers` as the planner sees it, one per entry in document order.
    entries: Vec<CurrentEntry>,
    /// `mapUsers` as it is written, to write it back.
    users: Users,
    owned: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Users {
    /// Read by the fast reader: the text and each entry's byte range in it.
    Text {
        text: String,
        spans: Vec<Range<usize>>,
    },
    /// Read by a full parser: the entries, re-rendered in the same format on change.
    Values(Vec<Value>, Format),
}

/// What to write back; `None` fields stay as they are.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    pub map_users: Option<String>,
    pub owned_annotation: Option<String>,
}

impl Update {
    pub fn is_empty(&self) -> bool {
        self.map_users.is_none() && self.owned_annotation.is_none()
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "mapping",
    }
}

/// One list-valued key, read as EKS reads it.
enum Parsed<'a> {
    /// The usual YAML shape, read by the fast reader with each entry's place in the text.
    Fast(Vec<fastyaml::Entry<'a>>),
    /// JSON, or YAML the fast reader declines, read by a full parser.
    Values(Vec<Value>, Format),
}

fn parse_error(key: &'static str, e: &serde_saphyr::Error) -> AwsAuthError {
    let loc = e.location();
    AwsAuthError::Parse {
        key,
        line: loc.as_ref().map(|l| l.line()),
        column: loc.as_ref().map(|l| l.column()),
        message: e
            .to_string()
            .lines()
            .next()
            .unwrap_or("syntax error")
            .to_string(),
    }
}

/// Parses one list-valued key as EKS would: JSON or YAML text, empty means no entries.
fn parse_list<'a>(key: &'static str, text: &'a str) -> Result<Parsed<'a>, AwsAuthError> {
    if text.trim().is_empty() {
        return Ok(Parsed::Values(Vec::new(), Format::Yaml));
    }
    // YAML lists start with `- ` or a comment, JSON ones with `[`: try the likely reader first.
    if !text.trim_start().starts_with('[')
        && let Some(entries) = fastyaml::parse(text)
    {
        return Ok(Parsed::Fast(entries));
    }
    let (v, format) = match serde_json::from_str::<Value>(text) {
        Ok(v) => (v, Format::Json),
        Err(_) => (
            serde_saphyr::from_str::<Value>(text).map_err(|e| parse_error(key, &e))?,
            Format::Yaml,
        ),
    };
    match v {
        Value::Array(a) => Ok(Parsed::Values(a, format)),
        Value::Null => Ok(Parsed::Values(Vec::new(), format)),
        other => Err(AwsAuthError::NotAList {
            key,
            found: kind(&other),
        }),
    }
}

/// A field of an entry, matched case-insensitively; the last spelling wins.
fn field<'a>(entry: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    entry
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .next_back()
}

/// How the planner sees an entry read by the full parser.
fn entry_of_value(v: &Value) -> CurrentEntry {
    let obj = v.as_object();
    let get = |name: &str| obj.and_then(|o| field(o, name));
    CurrentEntry {
        arn: get("userarn")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        username: get("username").and_then(Value::as_str).map(str::to_string),
        groups: get("groups")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// How the planner sees an entry read by the fast reader (the same as [`entry_of_value`] of its value).
fn entry_of_item(item: &fastyaml::Item<'_>) -> CurrentEntry {
    use fastyaml::Node;
    CurrentEntry {
        arn: match item.field("userarn") {
            Some(Node::Str(s)) if !s.is_empty() => Some((*s).to_string()),
            _ => None,
        },
        username: match item.field("username") {
            Some(Node::Str(s)) => Some((*s).to_string()),
            _ => None,
        },
        groups: match item.field("groups") {
            Some(Node::List(l)) => l.iter().map(|s| (*s).to_string()).collect(),
            _ => Vec::new(),
        },
    }
}

fn canonical(m: &Mapping) -> Value {
    json!({"userarn": m.arn, "username": m.username, "groups": m.groups})
}

/// What a plan does to one existing `mapUsers` entry.
#[derive(Debug, Clone, Copy)]
enum Action<'p> {
    Keep,
    Drop,
    Replace(&'p Mapping),
}

impl AwsAuth {
    /// Reads the ConfigMap; `None` (not found) is an empty document.
    pub fn parse(cm: Option<&ConfigMap>) -> Result<Self, AwsAuthError> {
        let empty = BTreeMap::new();
        let data = cm.and_then(|c| c.data.as_ref()).unwrap_or(&empty);
        let mut entries = Vec::new();
        let mut users = Users::Values(Vec::new(), Format::Yaml);
        for key in LIST_KEYS {
            let Some(text) = data.get(key) else { continue };
            // mapRoles and mapAccounts are only checked: EKS must be able to read the whole document.
            let parsed = parse_list(key, text)?;
            if key != MAP_USERS {
                continue;
            }
            users = match parsed {
                Parsed::Fast(items) => {
                    entries = items.iter().map(|e| entry_of_item(&e.item)).collect();
                    Users::Text {
                        text: text.clone(),
                        spans: items.into_iter().map(|e| e.span).collect(),
                    }
                }
                Parsed::Values(items, format) => {
                    entries = items.iter().map(entry_of_value).collect();
                    Users::Values(items, format)
                }
            };
        }
        let owned = match cm
            .and_then(|c| c.metadata.annotations.as_ref())
            .and_then(|a| a.get(OWNED_ANNOTATION))
        {
            None => Vec::new(),
            Some(text) => serde_json::from_str::<Vec<String>>(text)
                .map_err(|e| AwsAuthError::Ownership(e.to_string()))?,
        };
        Ok(AwsAuth {
            entries,
            users,
            owned,
        })
    }

    pub fn owned(&self) -> &[String] {
        &self.owned
    }

    /// The `mapUsers` entries as the planner sees them, in document order.
    pub fn current(&self) -> &[CurrentEntry] {
        &self.entries
    }

    /// What `plan` does to each existing entry, and the mappings it adds (in the plan's order: by key).
    fn actions<'p>(&self, plan: &'p Plan) -> (Vec<Action<'p>>, Vec<&'p Mapping>) {
        let mut removes = HashSet::new();
        let mut updates = HashMap::new();
        let mut adds = Vec::new();
        for c in &plan.changes {
            match c {
                Change::Remove(m) => {
                    removes.insert(ArnKey(&m.arn));
                }
                Change::Update { to, .. } => {
                    updates.insert(ArnKey(&to.arn), to);
                }
                Change::Add(m) => adds.push(m),
            }
        }
        let actions = self
            .entries
            .iter()
            .map(|e| {
                let Some(key) = e.arn.as_deref().map(ArnKey) else {
                    return Action::Keep;
                };
                if removes.contains(&key) {
                    Action::Drop
                } else if let Some(to) = updates.get(&key) {
                    Action::Replace(to)
                } else {
                    Action::Keep
                }
            })
            .collect();
        (actions, adds)
    }

    /// The entries read by a full parser after applying `plan`, foreign ones untouched.
    fn apply(&self, items: &[Value], plan: &Plan) -> Vec<Value> {
        let (actions, adds) = self.actions(plan);
        let mut out = Vec::with_capacity(items.len() + adds.len());
        for (v, action) in items.iter().zip(&actions) {
            match action {
                Action::Keep => out.push(v.clone()),
                Action::Drop => {}
                Action::Replace(m) => out.push(canonical(m)),
            }
        }
        out.extend(adds.into_iter().map(canonical));
        out
    }

    /// The new `mapUsers` text. Text read by the fast reader is spliced: untouched entries and every comment
    /// and blank line stay byte for byte, replaced entries are written in place, new ones at the end.
    fn users_text(&self, plan: &Plan) -> Result<String, AwsAuthError> {
        match &self.users {
            Users::Text { text, spans } => {
                let (actions, adds) = self.actions(plan);
                let mut out = String::with_capacity(text.len() + 128 * adds.len());
                let mut pos = 0;
                for (span, action) in spans.iter().zip(&actions) {
                    let replacement = match action {
                        Action::Keep => continue,
                        Action::Drop => None,
                        Action::Replace(m) => Some(*m),
                    };
                    out.push_str(&text[pos..span.start]);
                    if let Some(m) = replacement {
                        out.push_str(&yaml::to_yaml(&json!([canonical(m)])));
                    }
                    pos = span.end;
                }
                out.push_str(&text[pos..]);
                if !adds.is_empty() {
                    if !out.is_empty() && !out.ends_with('\n') {
                        out.push('\n');
                    }
                    let added: Vec<Value> = adds.into_iter().map(canonical).collect();
                    out.push_str(&yaml::to_yaml(&Value::Array(added)));
                }
                Ok(out)
            }
            Users::Values(items, Format::Yaml) => {
                Ok(yaml::to_yaml(&Value::Array(self.apply(items, plan))))
            }
            Users::Values(items, Format::Json) => {
                let mut s = serde_json::to_string_pretty(&Value::Array(self.apply(items, plan)))
                    .map_err(|e| AwsAuthError::Render {
                        what: "data.mapUsers",
                        message: e.to_string(),
                    })?;
                s.push('\n');
                Ok(s)
            }
        }
    }

    /// What to write for `plan`, given the ConfigMap's current data; `Update::is_empty()` means no write.
    pub fn render(
        &self,
        data: Option<&BTreeMap<String, String>>,
        plan: &Plan,
    ) -> Result<Update, AwsAuthError> {
        let mut update = Update::default();
        if !plan.changes.is_empty() {
            let text = self.users_text(plan)?;
            let others: usize = data
                .into_iter()
                .flatten()
                .filter(|(k, _)| k.as_str() != MAP_USERS)
                .map(|(k, v)| k.len() + v.len())
                .sum();
            let size = others + MAP_USERS.len() + text.len();
            if size > MAX_DATA_BYTES {
                return Err(AwsAuthError::TooLarge {
                    what: "data",
                    size,
                    limit: MAX_DATA_BYTES,
                });
            }
            update.map_users = Some(text);
        }
        if plan.owned_changed(&self.owned) {
            let text =
                serde_json::to_string(&plan.owned_after).map_err(|e| AwsAuthError::Render {
                    what: "the ownership annotation",
                    message: e.to_string(),
                })?;
            if text.len() > MAX_ANNOTATION_BYTES {
                return Err(AwsAuthError::TooLarge {
                    what: "the ownership annotation",
                    size: text.len(),
                    limit: MAX_ANNOTATION_BYTES,
                });
            }
            update.owned_annotation = Some(text);
        }
        Ok(update)
    }
}

/// The ConfigMap as it will be after `update` (what the API server stores after our merge patch).
pub fn updated(cm: Option<&ConfigMap>, update: &Update) -> ConfigMap {
    let mut out = cm.cloned().unwrap_or_else(|| {
        let mut c = ConfigMap::default();
        c.metadata.name = Some(NAME.into());
        c.metadata.namespace = Some(NAMESPACE.into());
        c
    });
    if let Some(text) = &update.map_users {
        out.data
            .get_or_insert_with(BTreeMap::new)
            .insert(MAP_USERS.into(), text.clone());
    }
    if let Some(text) = &update.owned_annotation {
        out.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(OWNED_ANNOTATION.into(), text.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::Mapping;
    use crate::plan::{Scope, plan};

    const ALICE: &str = "arn:aws:iam::123456789012:user/alice";

    fn cm(data: &[(&str, &str)], owned: Option<&str>) -> ConfigMap {
        let mut c = ConfigMap {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        };
        if let Some(o) = owned {
            c.metadata.annotations = Some([(OWNED_ANNOTATION.to_string(), o.to_string())].into());
        }
        c
    }

    fn alice() -> Mapping {
        Mapping {
            arn: ALICE.into(),
            username: "alice".into(),
            groups: vec!["system:masters".into()],
        }
    }

    const NODE_ROLES: &str = "- rolearn: arn:aws:iam::123456789012:role/eks-node\n  username: system:node:{{EC2PrivateDNSName}}\n  groups:\n    - system:bootstrappers\n    - system:nodes\n";

    #[test]
    fn parse_errors_say_where() {
        let cases: Vec<(ConfigMap, &str)> = vec![
            (
                cm(&[("mapUsers", "- userarn: a\n  groups: [x\n")], None),
                "data.mapUsers cannot be parsed at line",
            ),
            (
                cm(&[("mapRoles", "- rolearn: a\n - bad: : :\n")], None),
                "data.mapRoles cannot be parsed",
            ),
            (
                cm(&[("mapUsers", "userarn: a\n")], None),
                "data.mapUsers is a mapping, expected a list",
            ),
            (
                cm(&[("mapAccounts", "\"123\"")], None),
                "data.mapAccounts is a string",
            ),
            (
                cm(&[], Some("not json")),
                "annotation eks-admin-sync/owned-user-arns",
            ),
        ];
        for (c, needle) in cases {
            let e = AwsAuth::parse(Some(&c)).unwrap_err().to_string();
            assert!(e.contains(needle), "{e} lacks {needle}");
            assert!(e.contains("nothing was written"), "{e}");
        }
    }

    #[test]
    fn reads_entries_like_eks() {
        let users = "- userARN: arn:aws:iam::123456789012:user/Hand\n  UserName: hand\n  GROUPS: [a, b]\n  note: kept\n- {}\n- just-a-string\n";
        let doc = AwsAuth::parse(Some(&cm(
            &[("mapUsers", users), ("mapRoles", NODE_ROLES)],
            None,
        )))
        .unwrap();
        let cur = doc.current();
        assert_eq!(cur.len(), 3);
        assert_eq!(
            cur[0].arn.as_deref(),
            Some("arn:aws:iam::123456789012:user/Hand")
        );
        assert_eq!(cur[0].username.as_deref(), Some("hand"));
        assert_eq!(cur[0].groups, vec!["a", "b"]);
        assert_eq!(cur[1].arn, None);
        assert_eq!(cur[2].arn, None);
    }

    #[test]
    fn missing_configmap_and_empty_values() {
        for c in [
            None,
            Some(cm(&[], None)),
            Some(cm(&[("mapUsers", "")], None)),
            Some(cm(&[("mapUsers", "[]")], None)),
        ] {
            let doc = AwsAuth::parse(c.as_ref()).unwrap();
            assert!(doc.current().is_empty());
            assert!(doc.owned().is_empty());
        }
    }

    #[test]
    fn add_keeps_foreign_entries_and_other_keys_untouched() {
        let users = "- userARN: arn:aws:iam::123456789012:user/hand\n  username: '{{SessionName}}'\n  groups: [viewers]\n  userid: AIDAEXAMPLE\n";
        let c = cm(
            &[
                ("mapUsers", users),
                ("mapRoles", NODE_ROLES),
                ("mapAccounts", "- \"111122223333\"\n"),
            ],
            None,
        );
        let doc = AwsAuth::parse(Some(&c)).unwrap();
        let p = plan(doc.current(), doc.owned(), &[alice()], &Scope::All);
        let u = doc.render(c.data.as_ref(), &p).unwrap();
        let text = u.map_users.unwrap();
        assert_eq!(
            text,
            format!(
                "{users}- userarn: arn:aws:iam::123456789012:user/alice\n  username: alice\n  groups:\n    - system:masters\n"
            )
        );
        assert_eq!(
            u.owned_annotation.as_deref(),
            Some(r#"["arn:aws:iam::123456789012:user/alice"]"#)
        );
    }

    /// Comments, blank lines and foreign entries stay byte for byte; owned entries change in place.
    #[test]
    fn splices_yaml_and_keeps_comments() {
        let bob = "arn:aws:iam::123456789012:user/bob";
        let users = format!(
            "# Break-glass access. Ask #platform before editing.\n\
             - userarn: {ALICE}\n  username: alice\n  groups:\n  # hand-edited during INC-42\n  - viewers\n\
             \n# Contractor\n\
             - userArn: arn:aws:iam::123456789012:user/contractor  # until March\n\
             \x20 username: '{{{{SessionName}}}}'\n  groups: [contractors]\n\
             - userarn: {bob}\n  username: bob\n  groups:\n    - system:masters\n# end\n"
        );
        let c = cm(
            &[("mapUsers", &users)],
            Some(&format!(r#"["{ALICE}","{bob}"]"#)),
        );
        let doc = AwsAuth::parse(Some(&c)).unwrap();
        assert!(matches!(doc.users, Users::Text { .. }));
        // Alice's groups are repaired in place, bob is no longer desired, carol is new.
        let carol = Mapping {
            arn: "arn:aws:iam::123456789012:user/carol".into(),
            username: "carol".into(),
            groups: vec!["system:masters".into()],
        };
        let p = plan(doc.current(), doc.owned(), &[alice(), carol], &Scope::All);
        let text = doc.render(c.data.as_ref(), &p).unwrap().map_users.unwrap();
        assert_eq!(
            text,
            format!(
                "# Break-glass access. Ask #platform before editing.\n\
                 - userarn: {ALICE}\n  username: alice\n  groups:\n    - system:masters\n\
                 \n# Contractor\n\
                 - userArn: arn:aws:iam::123456789012:user/contractor  # until March\n\
                 \x20 username: '{{{{SessionName}}}}'\n  groups: [contractors]\n\
                 # end\n\
                 - userarn: arn:aws:iam::123456789012:user/carol\n  username: carol\n  groups:\n    - system:masters\n"
            )
        );
    }

    /// YAML the fast reader declines is read by the full parser (and re-rendered on change).
    #[test]
    fn unusual_yaml_goes_to_the_full_parser() {
        let users = "- userarn: arn:aws:iam::123456789012:user/q\n  username: q # Quinn's, a quote in a comment\n  groups: [a]\n";
        let doc = AwsAuth::parse(Some(&cm(&[("mapUsers", users)], None))).unwrap();
        assert!(matches!(doc.users, Users::Values(_, Format::Yaml)));
        assert_eq!(doc.current()[0].username.as_deref(), Some("q"));
    }

    /// What Terraform's `yamlencode` writes (quoted keys, keys sorted) takes the splice too.
    #[test]
    fn terraform_yamlencode_text_is_spliced() {
        let users = "- \"groups\":\n  - \"system:masters\"\n  \"userarn\": \"arn:aws:iam::123456789012:user/tf\"\n  \"username\": \"tf\"\n";
        let c = cm(&[("mapUsers", users)], None);
        let doc = AwsAuth::parse(Some(&c)).unwrap();
        assert!(matches!(doc.users, Users::Text { .. }));
        assert_eq!(
            doc.current()[0].arn.as_deref(),
            Some("arn:aws:iam::123456789012:user/tf")
        );
        let p = plan(doc.current(), doc.owned(), &[alice()], &Scope::All);
        let text = doc.render(c.data.as_ref(), &p).unwrap().map_users.unwrap();
        assert_eq!(
            text,
            format!(
                "{users}- userarn: {ALICE}\n  username: alice\n  groups:\n    - system:masters\n"
            )
        );
    }

    /// The fast reader and the full parser give the planner the same view of the same entries.
    #[test]
    fn fast_and_full_readings_agree() {
        for text in [
            "- userARN: arn:aws:iam::1:user/a\n  UserName: a\n  GROUPS: [x, z]\n  userarn: arn:aws:iam::1:user/b\n",
            "- userarn: ''\n  username:\n  groups: {}\n- plain\n- groups:\n  - g\n",
            "- userarn: arn:aws:iam::1:user/a\n  groups: []\n  username: \"{{SessionName}}\"\n",
        ] {
            let fast: Vec<CurrentEntry> = fastyaml::parse(text)
                .unwrap()
                .iter()
                .map(|e| entry_of_item(&e.item))
                .collect();
            let Value::Array(items) = serde_saphyr::from_str::<Value>(text).unwrap() else {
                panic!("{text} is not a list");
            };
            let full: Vec<CurrentEntry> = items.iter().map(entry_of_value).collect();
            assert_eq!(fast, full, "{text}");
        }
    }

    #[test]
    fn no_change_means_no_write() {
        let users = "- userarn: arn:aws:iam::123456789012:user/alice\n  username: alice\n  groups:\n    - system:masters\n";
        let c = cm(
            &[("mapUsers", users)],
            Some(r#"["arn:aws:iam::123456789012:user/alice"]"#),
        );
        let doc = AwsAuth::parse(Some(&c)).unwrap();
        let p = plan(doc.current(), doc.owned(), &[alice()], &Scope::All);
        assert!(doc.render(c.data.as_ref(), &p).unwrap().is_empty());
    }

    #[test]
    fn json_stays_json() {
        let users =
            r#"[{"userarn":"arn:aws:iam::123456789012:user/tf","username":"tf","groups":["x"]}]"#;
        let c = cm(&[("mapUsers", users)], None);
        let doc = AwsAuth::parse(Some(&c)).unwrap();
        let p = plan(doc.current(), doc.owned(), &[alice()], &Scope::All);
        let text = doc.render(c.data.as_ref(), &p).unwrap().map_users.unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v[0]["username"], "tf");
        assert_eq!(v[1]["userarn"], ALICE);
    }

    #[test]
    fn refuses_oversized_write() {
        let big = "x".repeat(MAX_DATA_BYTES - 50);
        let c = cm(&[("mapRoles", "[]"), ("padding", &big)], None);
        let doc = AwsAuth::parse(Some(&c)).unwrap();
        let p = plan(doc.current(), doc.owned(), &[alice()], &Scope::All);
        let e = doc.render(c.data.as_ref(), &p).unwrap_err();
        assert!(matches!(e, AwsAuthError::TooLarge { .. }), "{e}");
    }
}
