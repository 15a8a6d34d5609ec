//! Incoming event → what to do. Pure: no I/O, no clock.
//!
//! Accepted shapes:
//! - EventBridge "AWS API Call via CloudTrail" from `aws.iam` (user events are reconciled one user at a time;
//!   the event's own tag list is never trusted, IAM is re-read);
//! - EventBridge "Scheduled Event" from `aws.events` (full reconcile);
//! - a manual payload `{"action":"reconcile", "user"?: NAME, "users"?: [NAMES], "role"?: NAME,
//!   "roles"?: [NAMES], "dryRun"?: bool, "force"?: bool, "forceAt"?: RFC 3339 UTC}` (`force` needs
//!   `forceAt`, the time the person made it: a retry of the invocation long after is refused).

use crate::core::grants::PrincipalKind;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// CloudTrail events about one IAM user (`requestParameters.userName`) that can change who is an admin.
pub const USER_EVENT_NAMES: [&str; 7] = [
    "TagUser",
    "UntagUser",
    "CreateUser",
    "DeleteUser",
    "UpdateUser",
    "AddUserToGroup",
    "RemoveUserFromGroup",
];
/// CloudTrail events about one IAM role (`requestParameters.roleName`). `UpdateRole` changes neither tags
/// nor path and is not one of them.
pub const ROLE_EVENT_NAMES: [&str; 4] = ["TagRole", "UntagRole", "CreateRole", "DeleteRole"];
/// CloudTrail events about a group as a whole (a rename or deletion changes who is in an admin group by
/// name): a full reconcile.
pub const GROUP_EVENT_NAMES: [&str; 2] = ["DeleteGroup", "UpdateGroup"];

/// Every CloudTrail event name the function acts on (the EventBridge rule in `template.yaml` lists them).
pub fn handled_event_names() -> impl Iterator<Item = &'static str> {
    USER_EVENT_NAMES
        .into_iter()
        .chain(ROLE_EVENT_NAMES)
        .chain(GROUP_EVENT_NAMES)
}

/// An IAM principal named by an event or a manual run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Named {
    pub kind: PrincipalKind,
    pub name: String,
}

impl Named {
    pub fn user(name: &str) -> Self {
        Named {
            kind: PrincipalKind::User,
            name: name.to_string(),
        }
    }

    pub fn role(name: &str) -> Self {
        Named {
            kind: PrincipalKind::Role,
            name: name.to_string(),
        }
    }
}

impl std::fmt::Display for Named {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            PrincipalKind::User => write!(f, "user {}", self.name),
            PrincipalKind::Role => write!(f, "role {}", self.name),
        }
    }
}

/// What an invocation was asked to do, by whom, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub action: Action,
    /// Where the request came from (audit records carry it).
    pub trigger: Trigger,
    /// What the event itself asks; the caller ORs it with the configured `DRY_RUN`.
    pub dry_run: bool,
    /// Override the removal guard for this one run (manual payload `force` or the CLI's `--force`).
    pub force: bool,
    /// When the person made a manual payload's `force` (`forceAt`): the run refuses a force older than
    /// [`FORCE_MAX_AGE`], so a Lambda retry cannot apply it to a different plan long after.
    pub force_at: Option<jiff::Timestamp>,
    /// The AWS accounts the event says it is about (the EventBridge envelope's `account`, CloudTrail's
    /// `recipientAccountId`): an event of another account is ignored.
    pub accounts: Vec<String>,
    /// The account this invocation runs in, when the runtime tells it (the Lambda function's ARN); the
    /// configured account (`FUNCTION_ROLE_ARN`) otherwise.
    pub home_account: Option<String>,
}

/// How long a manual payload's `force` is honoured after its `forceAt` (and how far ahead of the
/// function's clock `forceAt` may be, for a person's clock that runs fast).
pub const FORCE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(5 * 60);
pub const FORCE_CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Reconcile every managed cluster against every IAM user and role.
    ReconcileAll,
    /// Reconcile only these IAM users and roles (a user's rename names both the old and the new name).
    ReconcileNamed(Vec<Named>),
    /// Nothing to do; the reason is logged and returned.
    Ignore(String),
}

/// The provenance of an intent, as audit records show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    /// `cloudtrail`, `schedule`, `manual` (a Lambda payload), `expiry` (the expiry wake-up) or `cli`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
    /// CloudTrail `eventID`, or the EventBridge event id of a schedule, or the Lambda request id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_time: Option<String>,
    /// Who made the IAM call (CloudTrail `userIdentity`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    /// `userIdentity.arn` (for an assumed role: the session ARN).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// `userIdentity.type`: `IAMUser`, `AssumedRole`, `Root`, `AWSService`, …
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// For an assumed role: the role behind the session (`sessionContext.sessionIssuer.arn`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer_arn: Option<String>,
    /// `userIdentity.invokedBy`, when an AWS service made the call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoked_by: Option<String>,
}

impl Trigger {
    pub fn of_kind(kind: &'static str) -> Self {
        Trigger {
            kind,
            ..Default::default()
        }
    }
}

impl Intent {
    fn new(action: Action, trigger: Trigger) -> Self {
        Intent {
            action,
            trigger,
            dry_run: false,
            force: false,
            force_at: None,
            accounts: Vec::new(),
            home_account: None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("event is not valid JSON: {0}")]
    NotJson(String),
    #[error(
        "unrecognised event ({found}); expected an EventBridge \"AWS API Call via CloudTrail\" event from aws.iam, \
         a \"Scheduled Event\" from aws.events, or {{\"action\":\"reconcile\",\"user\"?:NAME,\"dryRun\"?:bool}}"
    )]
    Unrecognised { found: String },
    #[error("malformed {kind} event: {reason}")]
    Malformed { kind: &'static str, reason: String },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CloudTrailDetail {
    event_source: Option<String>,
    event_name: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
    #[serde(rename = "eventID")]
    event_id: Option<String>,
    event_time: Option<String>,
    #[serde(rename = "sourceIPAddress")]
    source_ip_address: Option<String>,
    user_identity: Option<UserIdentity>,
    request_parameters: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserIdentity {
    #[serde(rename = "type")]
    kind: Option<String>,
    arn: Option<String>,
    invoked_by: Option<String>,
    session_context: Option<SessionContext>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionContext {
    session_issuer: Option<SessionIssuer>,
}

#[derive(Debug, Deserialize)]
struct SessionIssuer {
    arn: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ManualPayload {
    action: String,
    user: Option<String>,
    users: Option<Vec<String>>,
    role: Option<String>,
    roles: Option<Vec<String>>,
    dry_run: Option<bool>,
    force: Option<bool>,
    /// When the person made the force (RFC 3339 UTC).
    force_at: Option<String>,
    /// `"expiry"`: the one-time schedule the function keeps at the next expiry invoked it.
    reason: Option<String>,
}

/// What the expiry wake-up sends (`reason` makes the trigger `expiry`; it is a full reconcile, no force).
pub const EXPIRY_PAYLOAD: &str = r#"{"action":"reconcile","reason":"expiry"}"#;

/// Parses raw event bytes (the CLI's `handle-event` path).
pub fn parse_bytes(bytes: &[u8]) -> Result<Intent, EventError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| EventError::NotJson(e.to_string()))?;
    parse(&v)
}

/// Decides what an event asks for. `dry_run` in the result is what the event itself asks; the caller ORs
/// it with the configured `DRY_RUN`.
pub fn parse(event: &Value) -> Result<Intent, EventError> {
    let Some(obj) = event.as_object() else {
        return Err(EventError::Unrecognised {
            found: format!("a JSON {}", json_kind(event)),
        });
    };
    if obj.contains_key("action") {
        return parse_manual(event);
    }
    if obj.contains_key("detail-type") || obj.contains_key("source") {
        let envelope: EventBridgeEvent<Value> =
            serde_json::from_value(event.clone()).map_err(|e| EventError::Malformed {
                kind: "EventBridge",
                reason: e.to_string(),
            })?;
        let source = envelope.source.as_str();
        let detail_type = envelope.detail_type.as_str();
        let mut accounts: Vec<String> = envelope.account.iter().cloned().collect();
        if let Some(recipient) = envelope
            .detail
            .get("recipientAccountId")
            .and_then(Value::as_str)
        {
            accounts.push(recipient.to_string());
        }
        let intent = match (source, detail_type) {
            ("aws.events", "Scheduled Event") => {
                let trigger = Trigger {
                    event_id: envelope.id.clone(),
                    event_time: envelope
                        .time
                        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
                    ..Trigger::of_kind("schedule")
                };
                Ok(Intent::new(Action::ReconcileAll, trigger))
            }
            ("aws.iam", "AWS API Call via CloudTrail") => parse_cloudtrail(envelope.detail),
            _ => Err(EventError::Unrecognised {
                found: format!("EventBridge source {source:?}, detail-type {detail_type:?}"),
            }),
        };
        return intent.map(|i| Intent { accounts, ..i });
    }
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).take(5).collect();
    keys.sort_unstable();
    Err(EventError::Unrecognised {
        found: format!("an object with keys {keys:?}"),
    })
}

fn parse_manual(event: &Value) -> Result<Intent, EventError> {
    let p: ManualPayload =
        serde_json::from_value(event.clone()).map_err(|e| EventError::Malformed {
            kind: "manual",
            reason: e.to_string(),
        })?;
    if p.action != "reconcile" {
        return Err(EventError::Malformed {
            kind: "manual",
            reason: format!(
                "unknown action {:?}; the only action is \"reconcile\"",
                p.action
            ),
        });
    }
    let kind = match p.reason.as_deref() {
        None => "manual",
        Some("expiry") => "expiry",
        Some(other) => {
            return Err(EventError::Malformed {
                kind: "manual",
                reason: format!("unknown reason {other:?}; the only one is \"expiry\""),
            });
        }
    };
    let force = p.force.unwrap_or(false);
    if force && kind == "expiry" {
        return Err(EventError::Malformed {
            kind: "manual",
            reason: "force is never part of the expiry wake-up (the guard applies to expiries as to any \
                     removal); a person forces a run with {\"action\":\"reconcile\",\"force\":true,\"forceAt\":…}"
                .into(),
        });
    }
    let force_at = match (&p.force_at, force) {
        (None, true) => {
            return Err(EventError::Malformed {
                kind: "manual",
                reason: "force needs forceAt, the time you made it (RFC 3339 UTC, e.g. \
                         \"forceAt\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\"): a force is honoured for 5 minutes, so a \
                         retry of the invocation cannot apply it to a different plan later"
                    .into(),
            });
        }
        (Some(t), _) => {
            Some(
                crate::core::settings::parse_utc(t).ok_or_else(|| EventError::Malformed {
                    kind: "manual",
                    reason: format!(
                        "forceAt {t:?} is not an RFC 3339 UTC time such as 2026-12-07T10:00:00Z"
                    ),
                })?,
            )
        }
        (None, false) => None,
    };
    let users = p.user.into_iter().chain(p.users.unwrap_or_default());
    let roles = p.role.into_iter().chain(p.roles.unwrap_or_default());
    let mut named: Vec<Named> = users
        .map(|n| Named::user(&n))
        .chain(roles.map(|n| Named::role(&n)))
        .collect();
    for n in &named {
        check_name("manual", n)?;
    }
    named.sort();
    named.dedup();
    let action = if named.is_empty() {
        Action::ReconcileAll
    } else {
        Action::ReconcileNamed(named)
    };
    Ok(Intent {
        dry_run: p.dry_run.unwrap_or(false),
        force,
        force_at,
        ..Intent::new(action, Trigger::of_kind(kind))
    })
}

fn parse_cloudtrail(detail: Value) -> Result<Intent, EventError> {
    let d: CloudTrailDetail =
        serde_json::from_value(detail).map_err(|e| EventError::Malformed {
            kind: "CloudTrail",
            reason: format!("detail: {e}"),
        })?;
    let name = d
        .event_name
        .as_deref()
        .ok_or_else(|| EventError::Malformed {
            kind: "CloudTrail",
            reason: "detail.eventName is missing".into(),
        })?;
    if let Some(src) = d.event_source.as_deref()
        && src != "iam.amazonaws.com"
    {
        return Err(EventError::Malformed {
            kind: "CloudTrail",
            reason: format!("detail.eventSource is {src:?}, expected \"iam.amazonaws.com\""),
        });
    }
    let id = d.event_id.as_deref().unwrap_or("?");
    let trigger = Trigger {
        event_name: Some(name.to_string()),
        event_id: d.event_id.clone(),
        event_time: d.event_time.clone(),
        actor: d.user_identity.as_ref().map(|u| Actor {
            arn: u.arn.clone(),
            kind: u.kind.clone(),
            issuer_arn: u
                .session_context
                .as_ref()
                .and_then(|c| c.session_issuer.as_ref())
                .and_then(|i| i.arn.clone()),
            invoked_by: u.invoked_by.clone(),
        }),
        source_ip: d.source_ip_address.clone(),
        ..Trigger::of_kind("cloudtrail")
    };
    if let Some(code) = d.error_code.as_deref() {
        let reason = format!(
            "{name} (event {id}) failed with {code}: {}; nothing changed in IAM",
            d.error_message.as_deref().unwrap_or("no message")
        );
        return Ok(Intent::new(Action::Ignore(reason), trigger));
    }
    if GROUP_EVENT_NAMES.contains(&name) {
        return Ok(Intent::new(Action::ReconcileAll, trigger));
    }
    let kind = if USER_EVENT_NAMES.contains(&name) {
        PrincipalKind::User
    } else if ROLE_EVENT_NAMES.contains(&name) {
        PrincipalKind::Role
    } else {
        let reason = format!("{name} (event {id}) does not affect cluster admins");
        return Ok(Intent::new(Action::Ignore(reason), trigger));
    };
    let params = d.request_parameters.unwrap_or(Value::Null);
    let field = |k: &str| -> Result<Option<String>, EventError> {
        match params.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(EventError::Malformed {
                kind: "CloudTrail",
                reason: format!(
                    "requestParameters.{k} is a {}, expected a string",
                    json_kind(other)
                ),
            }),
        }
    };
    let key = match kind {
        PrincipalKind::User => "userName",
        PrincipalKind::Role => "roleName",
    };
    let first = field(key)?.ok_or_else(|| EventError::Malformed {
        kind: "CloudTrail",
        reason: format!("{name} without requestParameters.{key}"),
    })?;
    let mut named = vec![Named { kind, name: first }];
    if name == "UpdateUser"
        && let Some(new) = field("newUserName")?
    {
        named.push(Named::user(&new));
    }
    for n in &named {
        check_name("CloudTrail", n)?;
    }
    named.sort();
    named.dedup();
    Ok(Intent::new(Action::ReconcileNamed(named), trigger))
}

/// IAM user and role names: 1-64 characters of `[A-Za-z0-9+=,.@_-]`.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
}

fn check_name(kind: &'static str, n: &Named) -> Result<(), EventError> {
    if valid_user_name(&n.name) {
        Ok(())
    } else {
        let what = match n.kind {
            PrincipalKind::User => "user",
            PrincipalKind::Role => "role",
        };
        Err(EventError::Malformed {
            kind,
            reason: format!("{:?} is not a valid IAM {what} name", n.name),
        })
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn sample(name: &str) -> Vec<u8> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("events")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn users(names: &[&str]) -> Action {
        Action::ReconcileNamed(names.iter().map(|s| Named::user(s)).collect())
    }

    fn roles(names: &[&str]) -> Action {
        Action::ReconcileNamed(names.iter().map(|s| Named::role(s)).collect())
    }

    /// What the tests compare: the action, and for an ignored event the reason.
    fn action(bytes: &[u8]) -> Result<Action, EventError> {
        parse_bytes(bytes).map(|i| i.action)
    }

    #[test]
    fn sample_events() {
        let cases: &[(&str, Result<Action, &str>)] = &[
            ("tag-user.json", Ok(users(&["new-admin-test"]))),
            ("untag-user.json", Ok(users(&["new-admin-test"]))),
            ("create-user-with-tags.json", Ok(users(&["carol"]))),
            ("delete-user.json", Ok(users(&["new-admin-test"]))),
            ("update-user-rename.json", Ok(users(&["bob", "robert"]))),
            ("update-user-path.json", Ok(users(&["carol"]))),
            ("scheduled.json", Ok(Action::ReconcileAll)),
            ("manual-reconcile.json", Ok(Action::ReconcileAll)),
            ("manual-user-dry-run.json", Ok(users(&["new-admin-test"]))),
            ("tag-user-failed.json", Err("ignore:AccessDenied")),
            ("create-role.json", Ok(roles(&["ci-deployer"]))),
            ("create-role-with-tags.json", Ok(roles(&["team-admin"]))),
            (
                "create-role-sso.json",
                Ok(roles(&["AWSReservedSSO_Platform_Admin_0123456789abcdef"])),
            ),
            (
                "delete-role-sso.json",
                Ok(roles(&["AWSReservedSSO_Platform_Admin_0123456789abcdef"])),
            ),
            ("tag-role.json", Ok(roles(&["team-admin"]))),
            ("untag-role.json", Ok(roles(&["team-admin"]))),
            ("delete-role.json", Ok(roles(&["team-admin"]))),
            ("update-role.json", Err("ignore:does not affect")),
            ("add-user-to-group.json", Ok(users(&["dave"]))),
            ("remove-user-from-group.json", Ok(users(&["dave"]))),
            ("update-group-rename.json", Ok(Action::ReconcileAll)),
            ("delete-group.json", Ok(Action::ReconcileAll)),
            (
                "malformed-no-username.json",
                Err("without requestParameters.userName"),
            ),
            ("malformed-not-json.txt", Err("not valid JSON")),
            ("malformed-unknown.json", Err("unrecognised event")),
            ("malformed-manual.json", Err("unknown action")),
            ("s3-put-object.json", Err("unrecognised event")),
        ];
        for (file, want) in cases {
            let got = action(&sample(file));
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(&g, w, "{file}"),
                (Ok(Action::Ignore(reason)), Err(needle)) if needle.starts_with("ignore:") => {
                    assert!(reason.contains(&needle[7..]), "{file}: {reason}")
                }
                (Err(e), Err(needle)) => {
                    assert!(e.to_string().contains(needle), "{file}: {e} lacks {needle}")
                }
                (g, w) => panic!("{file}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn inline_table() {
        use serde_json::json;
        let ct = |name: &str, params: Value| {
            json!({"version":"0","id":"x","detail-type":"AWS API Call via CloudTrail","source":"aws.iam",
                   "account":"123456789012","time":"2026-11-29T00:00:00Z","region":"us-east-1","resources":[],
                   "detail":{"eventSource":"iam.amazonaws.com","eventName":name,"requestParameters":params}})
        };
        let cases: Vec<(Value, Result<Action, &str>)> = vec![
            (json!([]), Err("a JSON array")),
            (json!("reconcile"), Err("a JSON string")),
            (
                json!({"action":"reconcile","user":"a b"}),
                Err("not a valid IAM user name"),
            ),
            (
                json!({"action":"reconcile","extra":1}),
                Err("unknown field"),
            ),
            (
                json!({"action":"reconcile","users":["b","a","b"]}),
                Ok(users(&["a", "b"])),
            ),
            (
                json!({"action":"reconcile","user":"a","role":"a","roles":["r"]}),
                Ok(Action::ReconcileNamed(vec![
                    Named::user("a"),
                    Named::role("a"),
                    Named::role("r"),
                ])),
            ),
            (
                json!({"action":"reconcile","role":"a/b"}),
                Err("not a valid IAM role name"),
            ),
            (
                ct("TagRole", json!({"userName":"a"})),
                Err("without requestParameters.roleName"),
            ),
            (
                serde_json::from_str(EXPIRY_PAYLOAD).unwrap(),
                Ok(Action::ReconcileAll),
            ),
            (
                json!({"action":"reconcile","reason":"later"}),
                Err("unknown reason"),
            ),
            (ct("TagUser", json!({"userName": 5})), Err("is a number")),
            (
                ct("TagUser", json!(null)),
                Err("without requestParameters.userName"),
            ),
            (ct("UpdateUser", json!({"userName":"a"})), Ok(users(&["a"]))),
            (
                ct("UpdateUser", json!({"userName":"a","newUserName":"a"})),
                Ok(users(&["a"])),
            ),
            (
                ct("TagUser", json!({"userName":"x".repeat(65)})),
                Err("not a valid IAM user name"),
            ),
            (
                json!({"detail-type":"AWS API Call via CloudTrail","source":"aws.iam","detail":
                    {"eventSource":"s3.amazonaws.com","eventName":"TagUser"}}),
                Err("eventSource"),
            ),
            (
                json!({"detail-type":"Scheduled Event","source":"aws.events","detail":{}}),
                Ok(Action::ReconcileAll),
            ),
            (
                json!({"detail-type":"Scheduled Event","source":"custom","detail":{}}),
                Err("unrecognised"),
            ),
        ];
        for (ev, want) in cases {
            match (parse(&ev).map(|i| i.action), want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{ev}"),
                (Err(e), Err(needle)) => assert!(e.to_string().contains(needle), "{ev}: {e}"),
                (g, w) => panic!("{ev}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn every_handled_event_name_is_acted_on() {
        use serde_json::json;
        for name in handled_event_names() {
            let ev = json!({"detail-type":"AWS API Call via CloudTrail","source":"aws.iam","detail":
                {"eventSource":"iam.amazonaws.com","eventName":name,
                 "requestParameters":{"userName":"u","roleName":"r","groupName":"g"}}});
            let action = parse(&ev).map(|i| i.action);
            match action {
                Ok(Action::ReconcileAll) => assert!(GROUP_EVENT_NAMES.contains(&name)),
                Ok(Action::ReconcileNamed(n)) => {
                    let want = if ROLE_EVENT_NAMES.contains(&name) {
                        Named::role("r")
                    } else {
                        Named::user("u")
                    };
                    assert_eq!(n, vec![want], "{name}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        assert_eq!(handled_event_names().count(), 13);
    }

    #[test]
    fn provenance_is_kept() {
        let i = parse_bytes(&sample("tag-user.json")).unwrap();
        let t = &i.trigger;
        assert_eq!(t.kind, "cloudtrail");
        assert_eq!(t.event_name.as_deref(), Some("TagUser"));
        assert_eq!(
            t.event_id.as_deref(),
            Some("0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b")
        );
        assert_eq!(t.event_time.as_deref(), Some("2026-11-29T10:15:30Z"));
        assert_eq!(t.source_ip.as_deref(), Some("198.51.100.23"));
        let actor = t.actor.as_ref().unwrap();
        assert_eq!(
            actor.arn.as_deref(),
            Some("arn:aws:sts::123456789012:assumed-role/PlatformAdmins/jane")
        );
        assert_eq!(actor.kind.as_deref(), Some("AssumedRole"));
        assert_eq!(
            actor.issuer_arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/PlatformAdmins")
        );

        let s = parse_bytes(&sample("scheduled.json")).unwrap();
        assert_eq!(s.trigger.kind, "schedule");
        assert_eq!(
            s.trigger.event_id.as_deref(),
            Some("89d1a02d-5ec7-412e-82f5-13505f849b41")
        );
        assert!(s.trigger.actor.is_none());
        assert!(!s.force && !s.dry_run);

        // An ignored (failed) call still says who tried.
        let f = parse_bytes(&sample("tag-user-failed.json")).unwrap();
        assert!(matches!(f.action, Action::Ignore(_)));
        assert!(f.trigger.actor.is_some());
    }

    #[test]
    fn manual_flags() {
        let m = parse(&serde_json::json!({"action":"reconcile","force":true,"forceAt":"2026-12-07T10:00:00Z"}))
            .unwrap();
        assert_eq!(m.action, Action::ReconcileAll);
        assert!(m.force && !m.dry_run);
        assert_eq!(m.force_at, "2026-12-07T10:00:00Z".parse().ok());
        assert_eq!(m.trigger.kind, "manual");
        // A force says when a person made it; the expiry wake-up never forces.
        for (bad, needle) in [
            (
                serde_json::json!({"action":"reconcile","force":true}),
                "force needs forceAt",
            ),
            (
                serde_json::json!({"action":"reconcile","force":true,"forceAt":"2026-12-07T10:00:00+01:00"}),
                "not an RFC 3339 UTC time",
            ),
            (
                serde_json::json!({"action":"reconcile","reason":"expiry","force":true,"forceAt":"2026-12-07T10:00:00Z"}),
                "never part of the expiry wake-up",
            ),
        ] {
            let e = parse(&bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}: {e}");
        }
        // The accounts an event names, for the check against the function's own.
        let mut ev: Value = serde_json::from_slice(&sample("tag-user.json")).unwrap();
        ev["account"] = "210987654321".into();
        let i = parse(&ev).unwrap();
        assert!(
            i.accounts.contains(&"210987654321".to_string()),
            "{:?}",
            i.accounts
        );
        let m = parse_bytes(&sample("manual-user-dry-run.json")).unwrap();
        assert!(m.dry_run && !m.force);
        assert!(parse(&serde_json::json!({"action":"reconcile","force":"yes"})).is_err());
    }
}
