//! The `kube-system/aws-auth` ConfigMap ↔ model. Pure.
//!
//! Rules (mirroring how aws-iam-authenticator reads the ConfigMap):
//! - `mapUsers`, `mapRoles`, `mapAccounts` are YAML (or JSON) lists; keys inside entries are
//!   case-insensitive; unknown fields are kept.
//! - Users are granted in `mapUsers` (`userarn`, the ARN as IAM gives it), roles in `mapRoles` (`rolearn`
//!   **without** the role's path: EKS matches a session on `role/NAME`). A list is rewritten only when an
//!   owned entry in it changes. In the usual YAML shape (see [`crate::fastyaml`]) the text is spliced: every
//!   entry we do not change (node roles, their `{{EC2PrivateDNSName}}` templates), and every comment and
//!   blank line, stays byte for byte; changed entries are rewritten in place and new ones appended. Any
//!   other list (JSON, or YAML the fast reader declines) is re-rendered in its format: foreign entries keep
//!   their position, key spelling, key order, unknown fields and values, but YAML comments are lost.
//! - `mapAccounts` and every other key are never touched (parsed only to refuse working on a document EKS
//!   cannot read fully).
//! - Node rows of `mapRoles` (username `system:node:…` or group `system:nodes`) name the roles nodes sign in
//!   with: those roles are never made admins.
//! - Ownership is kept twice, so that losing either one never makes revocation silent:
//!   - every entry this deployment writes carries the field `eks-admin-sync: <DEPLOYMENT_ID>` (EKS ignores
//!     unknown fields), so `kubectl replace` or a GitOps tool dropping the annotation changes nothing;
//!   - the annotation [`record_annotation`] (one per deployment; EKS ignores annotations) records the
//!     principals and the tag key: `{"v":2,"tagKey":"…","arns":[…]}`. The first version's plain JSON list
//!     is still read, and its entries (which carry no mark yet) are ours and get the mark on the next write.
//! - An entry whose mark names another value is someone else's (another deployment, or a person who took
//!   it over). An entry the record names but that lacks our mark is unclear and left alone.

use crate::core::grants::{
    ArnKey, Grant, LEVELS_RECORD_KEY, PrincipalKind, Source, role_name_of_arn,
};
use crate::core::plan::{Change, ClusterState, CurrentEntry, Owner, Plan};
use crate::store::aws_auth::{fastyaml, yaml};
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "aws-auth";
/// The default deployment's record (the name the first version used for its plain list).
pub const OWNED_ANNOTATION: &str = "eks-admin-sync/owned-user-arns";
/// The field that marks an entry as one deployment's: its value is the `DEPLOYMENT_ID`.
pub const MARK_FIELD: &str = "eks-admin-sync";
/// The field holding the IAM user or role id an entry was granted to (EKS ignores it; it matches by ARN).
/// The name is the first version's, kept so its entries still read.
pub const ID_FIELD: &str = "eks-admin-sync-user-id";
/// The field holding the source the grant was made by (`tag:<key>`, `permission-set:<name>`,
/// `iam-group:<name>`): what the removal guard judges a revocation by. EKS ignores it, as every unknown field.
pub const SOURCE_FIELD: &str = "eks-admin-sync-source";
pub const MAP_USERS: &str = "mapUsers";
pub const MAP_ROLES: &str = "mapRoles";
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
        "kube-system/aws-auth annotation {annotation} is not an ownership record ({message}); fix or remove it, nothing was written"
    )]
    Ownership { annotation: String, message: String },
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

/// The annotation holding one deployment's ownership record.
pub fn record_annotation(deployment: &str) -> String {
    if deployment == crate::core::settings::DEFAULT_DEPLOYMENT_ID {
        OWNED_ANNOTATION.to_string()
    } else {
        format!("{OWNED_ANNOTATION}.{deployment}")
    }
}

/// Which deployment reads and writes the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub id: String,
    pub tag_key: String,
}

/// The ownership record as read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Record {
    arns: Vec<String>,
    /// `None` for the first version's plain list.
    tag_key: Option<String>,
    legacy: bool,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordV2 {
    v: u32,
    #[serde(rename = "tagKey")]
    tag_key: String,
    arns: Vec<String>,
}

fn parse_record(annotation: &str, text: &str) -> Result<Record, AwsAuthError> {
    let err = |message: String| AwsAuthError::Ownership {
        annotation: annotation.to_string(),
        message,
    };
    if text.trim_start().starts_with('[') {
        let arns = serde_json::from_str::<Vec<String>>(text).map_err(|e| err(e.to_string()))?;
        return Ok(Record {
            arns,
            tag_key: None,
            legacy: true,
        });
    }
    let r: RecordV2 = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
    if r.v != 2 {
        return Err(err(format!(
            "version {} is newer than this function understands",
            r.v
        )));
    }
    Ok(Record {
        arns: r.arns,
        tag_key: Some(r.tag_key),
        legacy: false,
    })
}

/// The parts of `aws-auth` this function reads.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsAuth {
    /// `mapUsers` then `mapRoles` as the planner sees them (entries in document order, owners worked out)
    /// and the record.
    state: ClusterState,
    /// `mapUsers` and `mapRoles` as they are written, to write them back.
    lists: [List; 2],
    record: Record,
    me: Deployment,
}

/// One list we write (`mapUsers` or `mapRoles`): its text or values, and which of the state's entries
/// are its own.
#[derive(Debug, Clone, PartialEq)]
struct List {
    key: &'static str,
    body: Body,
    entries: Range<usize>,
}

impl List {
    fn kind(&self) -> PrincipalKind {
        if self.key == MAP_ROLES {
            PrincipalKind::Role
        } else {
            PrincipalKind::User
        }
    }

    fn arn_field(&self) -> &'static str {
        arn_field(self.kind())
    }
}

fn arn_field(kind: PrincipalKind) -> &'static str {
    match kind {
        PrincipalKind::User => "userarn",
        PrincipalKind::Role => "rolearn",
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Body {
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
    pub map_roles: Option<String>,
    pub owned_annotation: Option<String>,
}

impl Update {
    pub fn is_empty(&self) -> bool {
        self.map_users.is_none() && self.map_roles.is_none() && self.owned_annotation.is_none()
    }

    /// The data keys to write, with their new text.
    pub fn data(&self) -> impl Iterator<Item = (&'static str, &String)> {
        [(MAP_USERS, &self.map_users), (MAP_ROLES, &self.map_roles)]
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
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

/// Texts EKS reads as "no entries": blank, or an empty quoted string (`""`, `''`) or two backticks, which
/// people write to clear a key.
pub fn reads_as_empty(text: &str) -> bool {
    matches!(text.trim(), "" | "\"\"" | "''" | "``")
}

/// Parses one list-valued key as EKS would: JSON or YAML text, empty means no entries.
fn parse_list<'a>(key: &'static str, text: &'a str) -> Result<Parsed<'a>, AwsAuthError> {
    if reads_as_empty(text) {
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

/// An entry as read, before its owner is worked out: the planner's view and its mark.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Read {
    entry: CurrentEntry,
    mark: Option<String>,
}

/// How the planner sees an entry read by the full parser.
fn entry_of_value(v: &Value, arn_field: &str) -> Read {
    let obj = v.as_object();
    let get = |name: &str| obj.and_then(|o| field(o, name));
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mark = get(MARK_FIELD).map(text);
    let id = get(ID_FIELD).map(text);
    let source = get(SOURCE_FIELD)
        .and_then(Value::as_str)
        .and_then(Source::parse);
    let levels_record = get(LEVELS_RECORD_KEY)
        .and_then(Value::as_str)
        .map(str::to_string);
    let entry = CurrentEntry {
        policies: None,
        source,
        levels_record,
        arn: get(arn_field)
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
        id,
        owner: Owner::Foreign,
        held_by: None,
    };
    Read { entry, mark }
}

/// How the planner sees an entry read by the fast reader (the same as [`entry_of_value`] of its value).
fn entry_of_item(item: &fastyaml::Item<'_>, arn_field: &str) -> Read {
    use fastyaml::Node;
    let text = |n: &Node| match n {
        Node::Str(s) => (*s).to_string(),
        other => other.to_value().to_string(),
    };
    let mark = item.field(MARK_FIELD).map(text);
    let id = item.field(ID_FIELD).map(text);
    let source = match item.field(SOURCE_FIELD) {
        Some(Node::Str(s)) => Source::parse(s),
        _ => None,
    };
    let levels_record = match item.field(LEVELS_RECORD_KEY) {
        Some(Node::Str(s)) => Some((*s).to_string()),
        _ => None,
    };
    let entry = CurrentEntry {
        policies: None,
        source,
        levels_record,
        arn: match item.field(arn_field) {
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
        id,
        owner: Owner::Foreign,
        held_by: None,
    };
    Read { entry, mark }
}

/// Whose an entry is: our mark → ours; another mark → someone else's (a person who took it over, or another
/// deployment); no mark → ours if the first version's record names it, unclear if our record names it (and
/// no marked row of ours is there for the principal), foreign otherwise.
fn owner_of(read: &Read, record: &Record, recorded: &HashSet<ArnKey>, deployment: &str) -> Owner {
    match (&read.mark, &read.entry.arn) {
        (Some(m), _) if m == deployment => Owner::Us { marked: true },
        (Some(_), _) | (None, None) => Owner::Foreign,
        (None, Some(arn)) => {
            if !recorded.contains(&ArnKey(arn)) {
                Owner::Foreign
            } else if record.legacy {
                Owner::Us { marked: false }
            } else {
                Owner::Unclear
            }
        }
    }
}

/// Whether a `mapRoles` row signs nodes in (EKS's node rows: `system:node:{{EC2PrivateDNSName}}` with
/// `system:nodes`, Fargate's `system:node:{{SessionName}}`).
fn is_node_row(e: &CurrentEntry) -> bool {
    e.username
        .as_deref()
        .is_some_and(|u| u.starts_with("system:node:"))
        || e.groups.iter().any(|g| g == "system:nodes")
}

/// What a plan does to one existing entry.
#[derive(Debug, Clone, Copy)]
enum Action<'p> {
    Keep,
    Drop,
    Replace(&'p Grant),
}

impl AwsAuth {
    /// Reads the ConfigMap as `me` sees it; `None` (not found) is an empty document.
    pub fn parse(cm: Option<&ConfigMap>, me: &Deployment) -> Result<Self, AwsAuthError> {
        let empty = BTreeMap::new();
        let data = cm.and_then(|c| c.data.as_ref()).unwrap_or(&empty);
        let mut entries: Vec<Read> = Vec::new();
        let mut lists = [MAP_USERS, MAP_ROLES].map(|key| List {
            key,
            body: Body::Values(Vec::new(), Format::Yaml),
            entries: 0..0,
        });
        for key in LIST_KEYS {
            let Some(text) = data.get(key) else { continue };
            // mapAccounts is only checked: EKS must be able to read the whole document.
            let parsed = parse_list(key, text)?;
            let Some(list) = lists.iter_mut().find(|l| l.key == key) else {
                continue;
            };
            let field = list.arn_field();
            let start = entries.len();
            list.body = match parsed {
                Parsed::Fast(items) => {
                    entries.extend(items.iter().map(|e| entry_of_item(&e.item, field)));
                    Body::Text {
                        text: text.clone(),
                        spans: items.into_iter().map(|e| e.span).collect(),
                    }
                }
                Parsed::Values(items, format) => {
                    entries.extend(items.iter().map(|v| entry_of_value(v, field)));
                    Body::Values(items, format)
                }
            };
            list.entries = start..entries.len();
        }
        let node_roles = lists[1]
            .entries
            .clone()
            .filter_map(|i| {
                let e = &entries[i].entry;
                is_node_row(e)
                    .then(|| e.arn.as_deref().and_then(role_name_of_arn))
                    .flatten()
                    .map(str::to_string)
            })
            .collect();
        let annotation = record_annotation(&me.id);
        let record = match cm
            .and_then(|c| c.metadata.annotations.as_ref())
            .and_then(|a| a.get(&annotation))
        {
            None => Record::default(),
            Some(text) => parse_record(&annotation, text)?,
        };
        // A principal the record names whose marked row is here: an unmarked row of it beside that one is
        // someone else's (a node row EKS added for a role, a person's row), not ours with its mark lost.
        let marked: HashSet<String> = entries
            .iter()
            .filter(|r| r.mark.as_deref() == Some(me.id.as_str()))
            .filter_map(|r| r.entry.arn.as_ref().map(|a| a.to_ascii_lowercase()))
            .collect();
        // Looked up once per unmarked entry: a set, not a scan of the record (3000 entries: 0.2 ms, not 300).
        let recorded: HashSet<ArnKey> = record
            .arns
            .iter()
            .filter(|a| marked.is_empty() || !marked.contains(&a.to_ascii_lowercase()))
            .map(|a| ArnKey(a))
            .collect();
        let entries = entries
            .into_iter()
            .map(|r: Read| CurrentEntry {
                owner: owner_of(&r, &record, &recorded, &me.id),
                held_by: r.mark.as_ref().filter(|m| **m != me.id).map(|m| {
                    format!("eks-admin-sync deployment {m:?} (or a person who took it over)")
                }),
                ..r.entry
            })
            .collect();
        Ok(AwsAuth {
            state: ClusterState {
                entries,
                recorded: record.arns.clone(),
                record_tag_key: record.tag_key.clone(),
                node_roles,
                ..Default::default()
            },
            lists,
            record,
            me: me.clone(),
        })
    }

    /// The document as the planner sees it.
    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    /// The `mapUsers` then `mapRoles` entries as the planner sees them, in document order.
    pub fn current(&self) -> &[CurrentEntry] {
        &self.state.entries
    }

    fn canonical(&self, g: &Grant) -> Value {
        let mut v = json!({arn_field(g.kind): g.arn, "username": g.username, "groups": g.groups, MARK_FIELD: self.me.id});
        if let Some(id) = &g.id {
            v[ID_FIELD] = json!(id);
        }
        if let Some(source) = &g.source {
            v[SOURCE_FIELD] = json!(source.to_string());
        }
        if let Some(record) = &g.levels_record {
            v[LEVELS_RECORD_KEY] = json!(record);
        }
        v
    }

    /// What `plan` does to each existing entry, and the mappings it adds (in the plan's order: by key).
    fn actions<'p>(&self, plan: &'p Plan) -> (Vec<Action<'p>>, Vec<&'p Grant>) {
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
            .state
            .entries
            .iter()
            .map(|e| {
                // A plan changes only this deployment's entries: another entry of the same principal (a
                // node row, a person's) stays whatever the plan says of the principal.
                let Some(key) = e
                    .arn
                    .as_deref()
                    .filter(|_| matches!(e.owner, Owner::Us { .. }))
                    .map(ArnKey)
                else {
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

    /// The entries read by a full parser after applying the list's actions, foreign ones untouched.
    fn apply(&self, items: &[Value], actions: &[Action<'_>], adds: &[&Grant]) -> Vec<Value> {
        let mut out = Vec::with_capacity(items.len() + adds.len());
        for (v, action) in items.iter().zip(actions) {
            match action {
                Action::Keep => out.push(v.clone()),
                Action::Drop => {}
                Action::Replace(m) => out.push(self.canonical(m)),
            }
        }
        out.extend(adds.iter().map(|g| self.canonical(g)));
        out
    }

    /// A list's new text, or `None` when the plan does not change it. Text read by the fast reader is
    /// spliced: untouched entries and every comment and blank line stay byte for byte, replaced entries are
    /// written in place, new ones at the end.
    fn list_text(
        &self,
        list: &List,
        actions: &[Action<'_>],
        adds: &[&Grant],
    ) -> Result<Option<String>, AwsAuthError> {
        let actions = &actions[list.entries.clone()];
        let adds: Vec<&Grant> = adds
            .iter()
            .filter(|g| g.kind == list.kind())
            .copied()
            .collect();
        if adds.is_empty() && actions.iter().all(|a| matches!(a, Action::Keep)) {
            return Ok(None);
        }
        let text = match &list.body {
            Body::Text { text, spans } => {
                let mut out = String::with_capacity(text.len() + 128 * adds.len());
                let mut pos = 0;
                for (span, action) in spans.iter().zip(actions) {
                    let replacement = match action {
                        Action::Keep => continue,
                        Action::Drop => None,
                        Action::Replace(m) => Some(*m),
                    };
                    out.push_str(&text[pos..span.start]);
                    if let Some(m) = replacement {
                        out.push_str(&yaml::to_yaml(&json!([self.canonical(m)])));
                    }
                    pos = span.end;
                }
                out.push_str(&text[pos..]);
                if !adds.is_empty() {
                    if !out.is_empty() && !out.ends_with('\n') {
                        out.push('\n');
                    }
                    let added: Vec<Value> = adds.iter().map(|g| self.canonical(g)).collect();
                    out.push_str(&yaml::to_yaml(&Value::Array(added)));
                }
                out
            }
            Body::Values(items, Format::Yaml) => {
                yaml::to_yaml(&Value::Array(self.apply(items, actions, &adds)))
            }
            Body::Values(items, Format::Json) => {
                let mut s =
                    serde_json::to_string_pretty(&Value::Array(self.apply(items, actions, &adds)))
                        .map_err(|e| AwsAuthError::Render {
                            what: list.key,
                            message: e.to_string(),
                        })?;
                s.push('\n');
                s
            }
        };
        Ok(Some(text))
    }

    /// What to write for `plan`, given the ConfigMap's current data; `Update::is_empty()` means no write.
    pub fn render(
        &self,
        data: Option<&BTreeMap<String, String>>,
        plan: &Plan,
    ) -> Result<Update, AwsAuthError> {
        let mut update = Update::default();
        if !plan.changes.is_empty() {
            let (actions, adds) = self.actions(plan);
            update.map_users = self.list_text(&self.lists[0], &actions, &adds)?;
            update.map_roles = self.list_text(&self.lists[1], &actions, &adds)?;
            let written: usize = update.data().map(|(k, v)| k.len() + v.len()).sum();
            let others: usize = data
                .into_iter()
                .flatten()
                .filter(|(k, _)| update.data().all(|(w, _)| w != k.as_str()))
                .map(|(k, v)| k.len() + v.len())
                .sum();
            let size = others + written;
            if size > MAX_DATA_BYTES {
                return Err(AwsAuthError::TooLarge {
                    what: "data",
                    size,
                    limit: MAX_DATA_BYTES,
                });
            }
        }
        let same_arns = {
            let before: std::collections::BTreeSet<&str> =
                self.record.arns.iter().map(String::as_str).collect();
            let after: std::collections::BTreeSet<&str> =
                plan.owned_after.iter().map(String::as_str).collect();
            before == after
        };
        let same_key = self.record.tag_key.as_deref() == Some(self.me.tag_key.as_str());
        // An empty record need not be written, unless one is there to be emptied.
        let absent =
            self.record.arns.is_empty() && self.record.tag_key.is_none() && !self.record.legacy;
        let unchanged = (same_arns && same_key) || (absent && plan.owned_after.is_empty());
        if !unchanged {
            let text = serde_json::to_string(&json!({
                "v": 2,
                "tagKey": self.me.tag_key,
                "arns": plan.owned_after,
            }))
            .map_err(|e| AwsAuthError::Render {
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
pub fn updated(cm: Option<&ConfigMap>, update: &Update, annotation: &str) -> ConfigMap {
    let mut out = cm.cloned().unwrap_or_else(|| {
        let mut c = ConfigMap::default();
        c.metadata.name = Some(NAME.into());
        c.metadata.namespace = Some(NAMESPACE.into());
        c
    });
    for (key, text) in update.data() {
        out.data
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), text.clone());
    }
    if let Some(text) = &update.owned_annotation {
        out.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(annotation.into(), text.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::{Scope, plan};

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

    fn me() -> Deployment {
        Deployment {
            id: "default".into(),
            tag_key: "eks-cluster-admin".into(),
        }
    }

    fn alice() -> Grant {
        Grant {
            arn: ALICE.into(),
            username: "alice".into(),
            groups: vec!["system:masters".into()],
            id: None,
            policies: vec![],
            ..Default::default()
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
            let e = AwsAuth::parse(Some(&c), &me()).unwrap_err().to_string();
            assert!(e.contains(needle), "{e} lacks {needle}");
            assert!(e.contains("nothing was written"), "{e}");
        }
    }

    #[test]
    fn reads_entries_like_eks() {
        let users = "- userARN: arn:aws:iam::123456789012:user/Hand\n  UserName: hand\n  GROUPS: [a, b]\n  note: kept\n- {}\n- just-a-string\n";
        let doc = AwsAuth::parse(
            Some(&cm(&[("mapUsers", users), ("mapRoles", NODE_ROLES)], None)),
            &me(),
        )
        .unwrap();
        let cur = doc.current();
        assert_eq!(cur.len(), 4, "three mapUsers entries, then the node role");
        assert_eq!(
            cur[0].arn.as_deref(),
            Some("arn:aws:iam::123456789012:user/Hand")
        );
        assert_eq!(cur[0].username.as_deref(), Some("hand"));
        assert_eq!(cur[0].groups, vec!["a", "b"]);
        assert_eq!(cur[1].arn, None);
        assert_eq!(cur[2].arn, None);
        assert_eq!(
            cur[3].arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/eks-node")
        );
        assert_eq!(cur[3].owner, Owner::Foreign);
        assert_eq!(doc.state().node_roles, vec!["eks-node"]);
    }

    #[test]
    fn a_node_row_beside_our_marked_row_is_someone_elses_and_only_ours_is_dropped() {
        // Our row for a role, recorded; since, EKS added the role's node row (a node group uses it).
        let ours = "- rolearn: arn:aws:iam::123456789012:role/ops\n  username: ops:{{SessionName}}\n  groups:\n    - system:masters\n  eks-admin-sync: default\n  eks-admin-sync-source: tag:eks-cluster-admin\n";
        let node = NODE_ROLES.replace("eks-node", "ops");
        let roles = format!("{ours}{node}");
        let record =
            r#"{"v":2,"tagKey":"eks-cluster-admin","arns":["arn:aws:iam::123456789012:role/ops"]}"#;
        let c = cm(&[("mapRoles", &roles)], Some(record));
        let doc = AwsAuth::parse(Some(&c), &me()).unwrap();
        let owners: Vec<Owner> = doc.current().iter().map(|e| e.owner).collect();
        assert_eq!(owners, [Owner::Us { marked: true }, Owner::Foreign]);
        assert_eq!(
            doc.current()[0].source,
            Some(crate::core::grants::Source::Tag("eks-cluster-admin".into()))
        );
        // The plan removes our row (the role now signs nodes in); the node row stays byte for byte.
        let p = plan(doc.state(), &[role_grant("ops")], &Scope::All);
        assert_eq!(p.revocations(), 1);
        let update = doc.render(c.data.as_ref(), &p).unwrap();
        assert_eq!(update.map_roles.as_deref(), Some(node.as_str()));
        // Without our marked row, an unmarked row of a recorded principal is still unclear.
        let c = cm(&[("mapRoles", &node)], Some(record));
        let doc = AwsAuth::parse(Some(&c), &me()).unwrap();
        assert_eq!(doc.current()[0].owner, Owner::Unclear);
    }

    #[test]
    fn a_rows_levels_record_is_read_by_both_readers_and_written_only_when_asked() {
        let block = "- rolearn: arn:aws:iam::123456789012:role/ops\n  username: ops:{{SessionName}}\n  groups:\n    - system:masters\n  eks-admin-sync: default\n  eks-admin-sync-source: tag:eks-cluster-admin\n  eks-admin-sync-levels: admin:tag/view:iam-group:devs\n";
        let flow = r#"[{"rolearn": "arn:aws:iam::123456789012:role/ops", "username": "ops:{{SessionName}}", "groups": ["system:masters"], "eks-admin-sync": "default", "eks-admin-sync-levels": "admin:tag/view:iam-group:devs"}]"#;
        for roles in [block, flow] {
            let c = cm(&[("mapRoles", roles)], None);
            let doc = AwsAuth::parse(Some(&c), &me()).unwrap();
            assert_eq!(
                doc.current()[0].levels_record.as_deref(),
                Some("admin:tag/view:iam-group:devs"),
                "{roles}"
            );
        }
        let doc = AwsAuth::parse(Some(&cm(&[], None)), &me()).unwrap();
        assert!(
            doc.canonical(&role_grant("ops"))
                .get(LEVELS_RECORD_KEY)
                .is_none()
        );
        let declared = Grant {
            levels_record: Some("admin:tag".into()),
            ..role_grant("ops")
        };
        assert_eq!(doc.canonical(&declared)[LEVELS_RECORD_KEY], "admin:tag");
    }

    fn role_grant(name: &str) -> Grant {
        Grant {
            arn: format!("arn:aws:iam::123456789012:role/{name}"),
            kind: PrincipalKind::Role,
            username: format!("{name}:{{{{SessionName}}}}"),
            groups: vec!["system:masters".into()],
            id: Some("AROAEXAMPLE".into()),
            ..Default::default()
        }
    }

    #[test]
    fn roles_go_to_map_roles_and_node_rows_stay_byte_for_byte() {
        let roles = format!(
            "# nodes: do not touch\n{NODE_ROLES}- rolearn: arn:aws:iam::123456789012:role/fargate\n  username: system:node:{{{{SessionName}}}}\n  groups: [system:bootstrappers, system:nodes, system:node-proxier]\n"
        );
        let users =
            "- userarn: arn:aws:iam::123456789012:user/hand\n  username: hand\n  groups: [a]\n";
        let c = cm(&[("mapUsers", users), ("mapRoles", &roles)], None);
        let doc = AwsAuth::parse(Some(&c), &me()).unwrap();
        assert_eq!(doc.state().node_roles, vec!["eks-node", "fargate"]);
        let add = plan(doc.state(), &[role_grant("team-admin")], &Scope::All);
        let u = doc.render(c.data.as_ref(), &add).unwrap();
        assert_eq!(u.map_users, None, "mapUsers is not rewritten for a role");
        let text = u.map_roles.unwrap();
        assert!(text.starts_with(&roles), "{text}");
        let tail = &text[roles.len()..];
        assert!(
            tail.starts_with("- rolearn: arn:aws:iam::123456789012:role/team-admin\n"),
            "{tail}"
        );
        assert!(tail.contains("eks-admin-sync: default"), "{tail}");
        assert!(tail.contains("AROAEXAMPLE"), "{tail}");
        // Read back: ours, and the removal takes exactly our row out again.
        let record = serde_json::to_string(
            &json!({"v":2,"tagKey":"eks-cluster-admin","arns":[role_grant("team-admin").arn]}),
        )
        .unwrap();
        let c2 = cm(&[("mapUsers", users), ("mapRoles", &text)], Some(&record));
        let doc2 = AwsAuth::parse(Some(&c2), &me()).unwrap();
        let ours: Vec<&CurrentEntry> = doc2
            .current()
            .iter()
            .filter(|e| matches!(e.owner, Owner::Us { marked: true }))
            .collect();
        assert_eq!(ours.len(), 1);
        assert_eq!(ours[0].id.as_deref(), Some("AROAEXAMPLE"));
        let remove = plan(doc2.state(), &[], &Scope::All);
        assert_eq!(remove.removals(), 1);
        let u = doc2.render(c2.data.as_ref(), &remove).unwrap();
        assert_eq!(u.map_roles.as_deref(), Some(roles.as_str()));
        assert_eq!(u.map_users, None);
    }

    #[test]
    fn a_node_role_is_never_granted() {
        let c = cm(&[("mapRoles", NODE_ROLES)], None);
        let doc = AwsAuth::parse(Some(&c), &me()).unwrap();
        let p = plan(doc.state(), &[role_grant("EKS-Node")], &Scope::All);
        assert!(p.changes.is_empty());
        assert_eq!(p.skipped.len(), 1);
        assert_eq!(p.skipped[0].kind, crate::core::plan::SkipKind::NodeRole);
    }

    #[test]
    fn missing_configmap_and_empty_values() {
        for c in [
            None,
            Some(cm(&[], None)),
            Some(cm(&[("mapUsers", "")], None)),
            Some(cm(&[("mapUsers", "[]")], None)),
            // What EKS reads as empty, too.
            Some(cm(&[("mapUsers", "\"\"")], None)),
            Some(cm(&[("mapUsers", "''\n")], None)),
            Some(cm(&[("mapUsers", "``")], None)),
            Some(cm(&[("mapUsers", "  \n \n")], None)),
            Some(cm(&[("mapRoles", "''"), ("mapAccounts", "\"\"")], None)),
        ] {
            let doc = AwsAuth::parse(c.as_ref(), &me()).unwrap();
            assert!(doc.current().is_empty());
            assert!(doc.state().recorded.is_empty());
            // And a grant on it writes a fresh list.
            let p = plan(doc.state(), &[alice()], &Scope::All);
            let text = doc
                .render(c.as_ref().and_then(|c| c.data.as_ref()), &p)
                .unwrap()
                .map_users
                .unwrap();
            // `[]` is JSON and stays JSON; every other empty spelling becomes a fresh YAML list.
            let v: Value = serde_saphyr::from_str(&text).unwrap();
            assert_eq!(
                v,
                json!([{"userarn": ALICE, "username": "alice", "groups": ["system:masters"], "eks-admin-sync": "default"}])
            );
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
        let doc = AwsAuth::parse(Some(&c), &me()).unwrap();
        let p = plan(doc.state(), &[alice()], &Scope::All);
        let u = doc.render(c.data.as_ref(), &p).unwrap();
        let text = u.map_users.unwrap();
        assert_eq!(
            text,
            format!(
                "{users}- userarn: arn:aws:iam::123456789012:user/alice\n  username: alice\n  groups:\n    - system:masters\n  eks-admin-sync: default\n"
            )
        );
        assert_eq!(
            u.owned_annotation.as_deref(),
            Some(
                r#"{"v":2,"tagKey":"eks-cluster-admin","arns":["arn:aws:iam::123456789012:user/alice"]}"#
            )
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
        let doc = AwsAuth::parse(Some(&c), &me()).unwrap();
        assert!(matches!(doc.lists[0].body, Body::Text { .. }));
        // Alice's groups are repaired in place, bob is no longer desired, carol is new.
        let carol = Grant {
            arn: "arn:aws:iam::123456789012:user/carol".into(),
            username: "carol".into(),
            groups: vec!["system:masters".into()],
            id: None,
            policies: vec![],
            ..Default::default()
        };
        let p = plan(doc.state(), &[alice(), carol], &Scope::All);
        let text = doc.render(c.data.as_ref(), &p).unwrap().map_users.unwrap();
        assert_eq!(
            text,
            format!(
                "# Break-glass access. Ask #platform before editing.\n\
                 - userarn: {ALICE}\n  username: alice\n  groups:\n    - system:masters\n  eks-admin-sync: default\n\
                 \n# Contractor\n\
                 - userArn: arn:aws:iam::123456789012:user/contractor  # until March\n\
                 \x20 username: '{{{{SessionName}}}}'\n  groups: [contractors]\n\
                 # end\n\
                 - userarn: arn:aws:iam::123456789012:user/carol\n  username: carol\n  groups:\n    - system:masters\n  eks-admin-sync: default\n"
            )
        );
    }

    /// YAML the fast reader declines is read by the full parser (and re-rendered on change).
    #[test]
    fn unusual_yaml_goes_to_the_full_parser() {
        let users = "- userarn: arn:aws:iam::123456789012:user/q\n  username: q # Quinn's, a quote in a comment\n  groups: [a]\n";
        let doc = AwsAuth::parse(Some(&cm(&[("mapUsers", users)], None)), &me()).unwrap();
        assert!(matches!(doc.lists[0].body, Body::Values(_, Format::Yaml)));
        assert_eq!(doc.current()[0].username.as_deref(), Some("q"));
    }

    /// What Terraform's `yamlencode` writes (quoted keys, keys sorted) takes the splice too.
    #[test]
    fn terraform_yamlencode_text_is_spliced() {
        let users = "- \"groups\":\n  - \"system:masters\"\n  \"userarn\": \"arn:aws:iam::123456789012:user/tf\"\n  \"username\": \"tf\"\n";
        let c = cm(&[("mapUsers", users)], None);
        let doc = AwsAuth::parse(Some(&c), &me()).unwrap();
        assert!(matches!(doc.lists[0].body, Body::Text { .. }));
        assert_eq!(
            doc.current()[0].arn.as_deref(),
            Some("arn:aws:iam::123456789012:user/tf")
        );
        let p = plan(doc.state(), &[alice()], &Scope::All);
        let text = doc.render(c.data.as_ref(), &p).unwrap().map_users.unwrap();
        assert_eq!(
            text,
            format!(
                "{users}- userarn: {ALICE}\n  username: alice\n  groups:\n    - system:masters\n  eks-admin-sync: default\n"
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
            "- userarn: arn:aws:iam::1:user/jane@corp.com\n  username: jane@corp.com\n  groups: [a]\n  eks-admin-sync: default\n",
        ] {
            let fast: Vec<Read> = fastyaml::parse(text)
                .unwrap()
                .iter()
                .map(|e| entry_of_item(&e.item, "userarn"))
                .collect();
            let Value::Array(items) = serde_saphyr::from_str::<Value>(text).unwrap() else {
                panic!("{text} is not a list");
            };
            let full: Vec<Read> = items.iter().map(|v| entry_of_value(v, "userarn")).collect();
            assert_eq!(fast, full, "{text}");
        }
    }

    const RECORD_ALICE: &str =
        r#"{"v":2,"tagKey":"eks-cluster-admin","arns":["arn:aws:iam::123456789012:user/alice"]}"#;

    #[test]
    fn no_change_means_no_write() {
        let users = format!(
            "- userarn: {ALICE}\n  username: alice\n  groups:\n    - system:masters\n  eks-admin-sync: default\n"
        );
        let c = cm(&[("mapUsers", &users)], Some(RECORD_ALICE));
        let doc = AwsAuth::parse(Some(&c), &me()).unwrap();
        let p = plan(doc.state(), &[alice()], &Scope::All);
        assert!(p.changes.is_empty());
        assert!(doc.render(c.data.as_ref(), &p).unwrap().is_empty());
    }

    /// The first version's plain list and unmarked entries: ours, rewritten once with the mark and a v2 record.
    #[test]
    fn first_version_record_is_migrated() {
        let users =
            format!("- userarn: {ALICE}\n  username: alice\n  groups:\n    - system:masters\n");
        let c = cm(&[("mapUsers", &users)], Some(&format!(r#"["{ALICE}"]"#)));
        let doc = AwsAuth::parse(Some(&c), &me()).unwrap();
        assert_eq!(doc.current()[0].owner, Owner::Us { marked: false });
        let p = plan(doc.state(), &[alice()], &Scope::All);
        let u = doc.render(c.data.as_ref(), &p).unwrap();
        assert_eq!(
            u.map_users.unwrap(),
            format!("{users}  eks-admin-sync: default\n")
        );
        assert_eq!(u.owned_annotation.as_deref(), Some(RECORD_ALICE));
    }

    /// Who owns what, by mark and record.
    #[test]
    fn ownership_rules() {
        let entry = |mark: Option<&str>| {
            let m = mark
                .map(|m| format!("  eks-admin-sync: {m}\n"))
                .unwrap_or_default();
            format!("- userarn: {ALICE}\n  username: alice\n  groups:\n    - system:masters\n{m}")
        };
        let viewers = Deployment {
            id: "viewers".into(),
            tag_key: "eks-cluster-viewer".into(),
        };
        let default = me();
        let cases: Vec<(Option<&str>, Option<&str>, &Deployment, Owner)> = vec![
            // The annotation was lost (kubectl replace, GitOps): the mark still says whose it is.
            (Some("default"), None, &default, Owner::Us { marked: true }),
            // Another deployment's entry, whatever our record says.
            (
                Some("viewers"),
                Some(RECORD_ALICE),
                &default,
                Owner::Foreign,
            ),
            (Some("default"), None, &viewers, Owner::Foreign),
            // A person took it over by changing the mark.
            (
                Some("released"),
                Some(RECORD_ALICE),
                &default,
                Owner::Foreign,
            ),
            // Our record names it but the mark is gone: nobody can tell, hands off.
            (None, Some(RECORD_ALICE), &default, Owner::Unclear),
            // Neither: someone else's.
            (None, None, &default, Owner::Foreign),
        ];
        for (mark, record, who, want) in cases {
            let c = cm(&[("mapUsers", &entry(mark))], record);
            let doc = AwsAuth::parse(Some(&c), who).unwrap();
            assert_eq!(
                doc.current()[0].owner,
                want,
                "mark {mark:?}, record {record:?}, {}",
                who.id
            );
        }
        // Each deployment has its own record: the viewers' record is not ours.
        assert_eq!(
            record_annotation("viewers"),
            "eks-admin-sync/owned-user-arns.viewers"
        );
        let mut c = cm(&[("mapUsers", &entry(None))], None);
        c.metadata.annotations =
            Some([(record_annotation("viewers"), RECORD_ALICE.to_string())].into());
        let doc = AwsAuth::parse(Some(&c), &me()).unwrap();
        assert_eq!(doc.current()[0].owner, Owner::Foreign);
        assert!(doc.state().recorded.is_empty());
        let doc = AwsAuth::parse(Some(&c), &viewers).unwrap();
        assert_eq!(doc.current()[0].owner, Owner::Unclear);
        assert_eq!(
            doc.state().record_tag_key.as_deref(),
            Some("eks-cluster-admin")
        );
    }

    /// The user id is written with the grant and read back; a replaced principal's entry is rewritten.
    #[test]
    fn user_id_round_trip() {
        let c = cm(&[("mapRoles", NODE_ROLES)], None);
        let doc = AwsAuth::parse(Some(&c), &me()).unwrap();
        let g = Grant {
            id: Some("AIDAOLD".into()),
            ..alice()
        };
        let p = plan(doc.state(), std::slice::from_ref(&g), &Scope::All);
        let u = doc.render(c.data.as_ref(), &p).unwrap();
        let text = u.map_users.clone().unwrap();
        assert!(
            text.ends_with("  eks-admin-sync: default\n  eks-admin-sync-user-id: AIDAOLD\n"),
            "{text}"
        );
        let after = updated(Some(&c), &u, OWNED_ANNOTATION);
        let doc = AwsAuth::parse(Some(&after), &me()).unwrap();
        assert_eq!(doc.current()[0].id.as_deref(), Some("AIDAOLD"));
        let new = Grant {
            id: Some("AIDANEW".into()),
            ..alice()
        };
        let p = plan(doc.state(), &[new], &Scope::All);
        assert_eq!(p.replaced.len(), 1);
        let text = doc
            .render(after.data.as_ref(), &p)
            .unwrap()
            .map_users
            .unwrap();
        assert_eq!(text.matches("userarn").count(), 1, "{text}");
        assert!(text.contains("eks-admin-sync-user-id: AIDANEW") && !text.contains("AIDAOLD"));
    }

    /// IAM user names may hold `@`, `.`, `+`, `=`, `,`: such entries still take the splice.
    #[test]
    fn at_signs_keep_the_splice() {
        let users = "# people\n- userarn: arn:aws:iam::123456789012:user/jane@corp.com\n  username: jane@corp.com  # on call\n  groups: [viewers]\n";
        let c = cm(&[("mapUsers", users)], None);
        let doc = AwsAuth::parse(Some(&c), &me()).unwrap();
        assert!(matches!(doc.lists[0].body, Body::Text { .. }));
        let g = Grant {
            arn: "arn:aws:iam::123456789012:user/a.b+c=d,e@f".into(),
            username: "a.b+c=d,e@f".into(),
            groups: vec!["system:masters".into()],
            id: None,
            policies: vec![],
            ..Default::default()
        };
        let p = plan(doc.state(), &[g], &Scope::All);
        let text = doc.render(c.data.as_ref(), &p).unwrap().map_users.unwrap();
        assert!(text.starts_with(users), "{text}");
        let after = cm(&[("mapUsers", &text)], None);
        let doc = AwsAuth::parse(Some(&after), &me()).unwrap();
        assert!(
            matches!(doc.lists[0].body, Body::Text { .. }),
            "our own output takes the splice: {text}"
        );
    }

    #[test]
    fn json_stays_json() {
        let users =
            r#"[{"userarn":"arn:aws:iam::123456789012:user/tf","username":"tf","groups":["x"]}]"#;
        let c = cm(&[("mapUsers", users)], None);
        let doc = AwsAuth::parse(Some(&c), &me()).unwrap();
        let p = plan(doc.state(), &[alice()], &Scope::All);
        let text = doc.render(c.data.as_ref(), &p).unwrap().map_users.unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v[0]["username"], "tf");
        assert_eq!(v[1]["userarn"], ALICE);
    }

    #[test]
    fn refuses_oversized_write() {
        let big = "x".repeat(MAX_DATA_BYTES - 50);
        let c = cm(&[("mapRoles", "[]"), ("padding", &big)], None);
        let doc = AwsAuth::parse(Some(&c), &me()).unwrap();
        let p = plan(doc.state(), &[alice()], &Scope::All);
        let e = doc.render(c.data.as_ref(), &p).unwrap_err();
        assert!(matches!(e, AwsAuthError::TooLarge { .. }), "{e}");
    }
}
