//! Audit records and metrics, made from the plans and outcomes of one invocation. Pure: the caller prints
//! them (one JSON line each) and the report carries them.
//!
//! Audit record schema (`"audit": "eks-admin-sync/v1"`), one per grant, revoke, update, skip and guard:
//! `time`, `deployment`, `cluster`, `store`, `action` (`grant` | `revoke` | `expire` (a revoke because the
//! grant's expiry passed) | `update` | `skip` | `guard` | `migrate`: an `aws-auth` mapping removed because the
//! principal's access entry now holds its grant),
//! `principal` (ARN), `principalKind` (`user` or `role`), `source` (what makes it an admin:
//! `tag:<ADMIN_TAG_KEY>`, `permission-set:<NAME>` or `iam-group:<NAME>`, on grants and updates), `principalId`
//! (the IAM user or role id, `AIDA…` / `AROA…`, when known), `username`, `usernameBefore` (updates that change it), `groupsBefore`, `groupsAfter`,
//! `reason` (skips, guards, forced revokes), `dryRun`, `applied` (the store was written), `trigger`
//! (`kind`, `eventName`, `eventId`, `eventTime`, `actor` {`arn`, `type`, `issuerArn`, `invokedBy`},
//! `sourceIp`).
//!
//! Metrics are CloudWatch Embedded Metric Format lines: namespace [`NAMESPACE`], dimensions
//! `[Deployment, Cluster]` and `[Deployment]`, metrics Granted, Revoked, Expired, Updated, Migrated, Skipped,
//! Guarded, Failed (counts) and Duration (milliseconds), one line per cluster and invocation.

use crate::core::event::Trigger;
use crate::core::grants::{PrincipalKind, Source};
use crate::core::guard::{Guarded, Refused};
use crate::core::plan::{Change, Plan, Retirement, Skip};
use serde::Serialize;
use serde_json::{Value, json};

pub const SCHEMA: &str = "eks-admin-sync/v1";
pub const NAMESPACE: &str = "EksAdminSync";
pub const METRICS: [&str; 8] = [
    "Granted", "Revoked", "Expired", "Updated", "Migrated", "Skipped", "Guarded", "Failed",
];
/// The store name on records of retired `aws-auth` mappings (on a cluster access entries serve).
pub const AWS_AUTH: &str = "aws-auth";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub audit: &'static str,
    pub time: String,
    pub deployment: String,
    pub cluster: String,
    pub store: &'static str,
    pub action: &'static str,
    pub principal: String,
    /// `user` or `role`.
    pub principal_kind: PrincipalKind,
    /// What makes the principal an admin (`tag:<KEY>`, `permission-set:<NAME>`, `iam-group:<NAME>`): on
    /// grants and updates the source now; on revokes, expiries, migrations and refusals the source the
    /// store recorded for the grant (absent when the grant does not say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// On an update that changes the recorded source: the source before (`unrecorded` for a grant written
    /// before grants recorded their source).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_before: Option<String>,
    /// The IAM user id the grant is bound to (`AIDA…`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username_before: Option<String>,
    pub groups_before: Option<Vec<String>>,
    pub groups_after: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub dry_run: bool,
    pub applied: bool,
    pub trigger: Trigger,
}

/// The context shared by one cluster's records.
pub struct Context<'a> {
    pub time: &'a str,
    pub deployment: &'a str,
    pub cluster: &'a str,
    pub store: &'static str,
    pub dry_run: bool,
    pub applied: bool,
    pub trigger: &'a Trigger,
    /// ARNs whose tag grant expired: their removal is audited as `expire`.
    pub expired: &'a [String],
}

/// Why an expired grant is removed.
const EXPIRED: &str = "the grant's expiry (the expiry tag) has passed";

fn is_expired(expired: &[String], arn: &str) -> bool {
    expired.iter().any(|a| a.eq_ignore_ascii_case(arn))
}

impl Context<'_> {
    fn record(&self, action: &'static str, principal: &str) -> AuditRecord {
        AuditRecord {
            audit: SCHEMA,
            time: self.time.to_string(),
            deployment: self.deployment.to_string(),
            cluster: self.cluster.to_string(),
            store: self.store,
            action,
            principal: principal.to_string(),
            principal_kind: PrincipalKind::of_arn(principal).unwrap_or_default(),
            source: None,
            source_before: None,
            principal_id: None,
            username: None,
            username_before: None,
            groups_before: None,
            groups_after: None,
            reason: None,
            dry_run: self.dry_run,
            applied: self.applied,
            trigger: self.trigger.clone(),
        }
    }
}

/// Why a replaced principal's old grant went (a record of its removal and of its new grant say so).
fn replaced_reason(plan: &Plan, arn: &str) -> Option<String> {
    plan.replaced.iter().find(|r| r.arn == arn).map(|r| {
        format!(
            "another IAM principal now holds this ARN (id {} was granted, id {} holds it now: deleted and \
             re-created, or renamed onto the name): the old grant is revoked and the new holder decided afresh",
            r.old_id, r.new_id
        )
    })
}

/// The message a forced run's removals carry.
fn forced_message(guard: Option<&Guarded>) -> Option<String> {
    guard.filter(|g| g.forced).map(|g| g.message.clone())
}

/// The record of one change of the cluster's own store, as it lands (or, in a dry run, as planned).
pub fn change_record(
    ctx: &Context,
    plan: &Plan,
    guard: Option<&Guarded>,
    c: &Change,
) -> AuditRecord {
    match c {
        Change::Add(g) => AuditRecord {
            source: g.source.clone(),
            principal_id: g.id.clone(),
            username: Some(g.username.clone()),
            groups_after: Some(g.groups.clone()),
            reason: replaced_reason(plan, &g.arn),
            ..ctx.record("grant", &g.arn)
        },
        Change::Update { from, to } => AuditRecord {
            source: to.source.clone(),
            source_before: from
                .source
                .clone()
                .filter(|_| from.source != to.source)
                .map(|s| s.to_string())
                .or_else(|| {
                    (from.source.is_none() && to.source.is_some()).then(|| "unrecorded".to_string())
                }),
            principal_id: to.id.clone(),
            username: Some(to.username.clone()),
            username_before: (from.username != to.username).then(|| from.username.clone()),
            groups_before: Some(from.groups.clone()),
            groups_after: Some(to.groups.clone()),
            ..ctx.record("update", &to.arn)
        },
        Change::Remove(g) => {
            let expiry = is_expired(ctx.expired, &g.arn);
            AuditRecord {
                source: g.source.clone(),
                principal_id: g.id.clone(),
                username: Some(g.username.clone()),
                groups_before: Some(g.groups.clone()),
                reason: replaced_reason(plan, &g.arn)
                    .or_else(|| forced_message(guard))
                    .or_else(|| expiry.then(|| EXPIRED.to_string())),
                ..ctx.record(if expiry { "expire" } else { "revoke" }, &g.arn)
            }
        }
    }
}

/// The record of one retired `aws-auth` mapping (on a cluster access entries serve): a move or a revocation.
pub fn retired_record(
    ctx: &Context,
    retire: &Retirement,
    guard: Option<&Guarded>,
    c: &Change,
) -> AuditRecord {
    let g = c.grant();
    let moved = retire.migrated.contains(&g.arn);
    let expiry = !moved && is_expired(ctx.expired, &g.arn);
    AuditRecord {
        store: AWS_AUTH,
        source: g.source.clone(),
        principal_id: g.id.clone(),
        username: Some(g.username.clone()),
        groups_before: Some(g.groups.clone()),
        reason: Some(if moved {
            "moved to an access entry: the aws-auth mapping is removed once the entry and its access policies \
             are in place"
                .into()
        } else if expiry {
            EXPIRED.into()
        } else {
            forced_message(guard).unwrap_or_else(|| {
                "aws-auth mapping revoked (in API_AND_CONFIG_MAP mode EKS still reads aws-auth for a principal \
                 without an access entry)"
                    .into()
            })
        }),
        ..ctx.record(
            if moved {
                "migrate"
            } else if expiry {
                "expire"
            } else {
                "revoke"
            },
            &g.arn,
        )
    }
}

/// One record per change, skip and refused change of a cluster's final plan.
pub fn records(ctx: &Context, plan: &Plan, guard: Option<&Guarded>) -> Vec<AuditRecord> {
    let mut out: Vec<AuditRecord> = plan
        .changes
        .iter()
        .map(|c| change_record(ctx, plan, guard, c))
        .collect();
    if let Some(r) = plan.retire.as_deref() {
        out.extend(
            r.plan
                .changes
                .iter()
                .map(|c| retired_record(ctx, r, guard, c)),
        );
    }
    out.extend(unwritten_records(ctx, plan, guard));
    out
}

/// The records of what was not written: skips (of the store and of retired mappings) and refusals.
pub fn unwritten_records(ctx: &Context, plan: &Plan, guard: Option<&Guarded>) -> Vec<AuditRecord> {
    let skip = |sk: &Skip, store: &'static str| AuditRecord {
        store,
        principal_id: sk.current.as_ref().and_then(|g| g.id.clone()),
        source: sk.current.as_ref().and_then(|g| g.source.clone()),
        username: sk.current.as_ref().map(|g| g.username.clone()),
        groups_before: sk.current.as_ref().map(|g| g.groups.clone()),
        groups_after: sk.current.as_ref().map(|g| g.groups.clone()),
        reason: Some(sk.reason.clone()),
        applied: false,
        ..ctx.record("skip", &sk.arn)
    };
    let mut out = Vec::new();
    if let Some(r) = plan.retire.as_deref() {
        out.extend(r.plan.skipped.iter().map(|sk| skip(sk, AWS_AUTH)));
    }
    out.extend(plan.skipped.iter().map(|sk| skip(sk, ctx.store)));
    if let Some(g) = guard.filter(|g| !g.forced) {
        for Refused { grant, rule } in &g.refused {
            out.push(AuditRecord {
                source: grant.source.clone(),
                principal_id: grant.id.clone(),
                username: Some(grant.username.clone()),
                groups_before: Some(grant.groups.clone()),
                groups_after: Some(grant.groups.clone()),
                reason: Some(g.message_of(*rule).to_string()),
                applied: false,
                ..ctx.record("guard", &grant.arn)
            });
        }
    }
    out
}

/// Per-cluster counts for the metrics line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub granted: usize,
    /// Removals that are not expiries.
    pub revoked: usize,
    /// Removals because a grant's expiry passed.
    pub expired: usize,
    pub updated: usize,
    /// `aws-auth` mappings moved to access entries.
    pub migrated: usize,
    pub skipped: usize,
    /// 1 when the guard refused something on the cluster.
    pub guarded: usize,
    /// 1 when the cluster failed.
    pub failed: usize,
}

impl Counts {
    pub fn of(plan: &Plan, guard: Option<&Guarded>, expired: &[String]) -> Self {
        let mut c = Counts {
            skipped: plan.skipped.len(),
            guarded: usize::from(guard.is_some_and(|g| !g.forced)),
            ..Default::default()
        };
        for ch in &plan.changes {
            match ch {
                Change::Add(_) => c.granted += 1,
                Change::Update { .. } => c.updated += 1,
                Change::Remove(g) if is_expired(expired, &g.arn) => c.expired += 1,
                Change::Remove(_) => c.revoked += 1,
            }
        }
        if let Some(r) = plan.retire.as_deref() {
            c.skipped += r.plan.skipped.len();
            c.migrated += r
                .plan
                .changes
                .iter()
                .filter(|ch| r.migrated.contains(&ch.grant().arn))
                .count();
            for g in r.revocations() {
                if is_expired(expired, &g.arn) {
                    c.expired += 1;
                } else {
                    c.revoked += 1;
                }
            }
        }
        c
    }
}

/// The EventBridge `source` of the events the function puts on the bus.
pub const EVENT_SOURCE: &str = "eks-admin-sync";

/// The EventBridge `detail-type` of an audit record's event.
pub fn detail_type(action: &str) -> &'static str {
    match action {
        "grant" => "EKS admin access granted",
        "revoke" => "EKS admin access revoked",
        "expire" => "EKS admin access expired",
        "update" => "EKS admin access updated",
        "guard" => "EKS admin access guarded",
        "migrate" => "EKS admin access migrated",
        _ => "EKS admin access skipped",
    }
}

/// What putting an invocation's audit records on the event bus came to (the report's `events`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Published {
    pub bus: String,
    /// Events the bus accepted.
    pub published: usize,
    /// Events it did not accept after the retries (their records are still in the logs).
    pub failed: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// The metric line of one invocation's publishing (dimension `[Deployment]`): `EventsPublished` and
/// `EventsNotPublished`.
pub fn published_metric_line(timestamp_ms: u64, deployment: &str, p: &Published) -> Value {
    json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Deployment"]],
                "Metrics": [
                    {"Name": "EventsPublished", "Unit": "Count"},
                    {"Name": "EventsNotPublished", "Unit": "Count"},
                ],
            }],
        },
        "Deployment": deployment,
        "EventsPublished": p.published,
        "EventsNotPublished": p.failed,
    })
}

/// One CloudWatch Embedded Metric Format line for one cluster.
pub fn metric_line(
    timestamp_ms: u64,
    deployment: &str,
    cluster: &str,
    counts: &Counts,
    duration_ms: u64,
) -> Value {
    let mut metrics: Vec<Value> = METRICS
        .iter()
        .map(|m| json!({"Name": m, "Unit": "Count"}))
        .collect();
    metrics.push(json!({"Name": "Duration", "Unit": "Milliseconds"}));
    json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Deployment", "Cluster"], ["Deployment"]],
                "Metrics": metrics,
            }],
        },
        "Deployment": deployment,
        "Cluster": cluster,
        "Granted": counts.granted,
        "Revoked": counts.revoked,
        "Expired": counts.expired,
        "Updated": counts.updated,
        "Migrated": counts.migrated,
        "Skipped": counts.skipped,
        "Guarded": counts.guarded,
        "Failed": counts.failed,
        "Duration": duration_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::grants::Grant;
    use crate::core::guard::{Rule, RuleMessage};
    use crate::core::plan::SkipKind;

    fn g(n: &str, groups: &[&str]) -> Grant {
        Grant {
            arn: format!("arn:aws:iam::123456789012:user/{n}"),
            username: n.into(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            id: None,
            policies: vec![],
            ..Default::default()
        }
    }

    #[test]
    fn one_record_per_change_skip_and_refusal() {
        let trigger = Trigger {
            event_id: Some("e-1".into()),
            ..Trigger::of_kind("cloudtrail")
        };
        let ctx = Context {
            time: "2026-12-01T00:00:00Z",
            deployment: "default",
            cluster: "prod",
            store: "aws-auth",
            dry_run: false,
            applied: true,
            trigger: &trigger,
            expired: &[],
        };
        let plan = Plan {
            changes: vec![
                Change::Add(g("a", &["system:masters"])),
                Change::Update {
                    from: g("b", &["viewers"]),
                    to: g("b", &["system:masters"]),
                },
                Change::Remove(g("c", &["system:masters"])),
            ],
            skipped: vec![Skip {
                arn: g("d", &[]).arn,
                kind: SkipKind::Foreign,
                current: Some(g("d", &["ops"])),
                reason: "foreign".into(),
            }],
            ..Default::default()
        };
        let guard = Guarded {
            rule: Rule::MaxRemovals,
            rules: vec![RuleMessage {
                rule: Rule::MaxRemovals,
                message: "rule max-removals".into(),
            }],
            count: 1,
            forced: false,
            refused: vec![Refused {
                grant: Grant {
                    source: Some(Source::IamGroup("ops".into())),
                    ..g("e", &["system:masters"])
                },
                rule: Rule::MaxRemovals,
            }],
            message: "rule max-removals; to let it through".into(),
        };
        let r = records(&ctx, &plan, Some(&guard));
        let actions: Vec<&str> = r.iter().map(|x| x.action).collect();
        assert_eq!(actions, ["grant", "update", "revoke", "skip", "guard"]);
        assert_eq!(
            r[1].groups_before.as_deref(),
            Some(&["viewers".to_string()][..])
        );
        assert_eq!(
            r[1].groups_after.as_deref(),
            Some(&["system:masters".to_string()][..])
        );
        assert!(r[2].groups_after.is_none());
        assert!(r[0].applied && !r[3].applied && !r[4].applied);
        assert_eq!(r[4].reason.as_deref(), Some("rule max-removals"));
        assert_eq!(r[4].source, Some(Source::IamGroup("ops".into())));
        let v = serde_json::to_value(&r[0]).unwrap();
        assert_eq!(v["audit"], SCHEMA);
        assert_eq!(v["trigger"]["eventId"], "e-1");
        assert_eq!(v["groupsBefore"], Value::Null);
        assert_eq!(v["principalKind"], "user");
        assert_eq!(v.get("source"), None, "a grant without a source says none");
        // A desired grant carries its source; a revocation the source its store recorded (none when the
        // grant does not say); an update that records a source says what was recorded before.
        let tag = Source::Tag("eks-cluster-admin".into());
        let group = Source::IamGroup("platform".into());
        let more = Plan {
            changes: vec![
                Change::Add(Grant {
                    source: Some(tag.clone()),
                    ..g("a", &[])
                }),
                Change::Remove(g("c", &[])),
                Change::Remove(Grant {
                    source: Some(group.clone()),
                    ..g("d", &[])
                }),
                Change::Update {
                    from: g("e", &[]),
                    to: Grant {
                        source: Some(tag.clone()),
                        ..g("e", &[])
                    },
                },
                Change::Update {
                    from: Grant {
                        source: Some(group.clone()),
                        ..g("f", &[])
                    },
                    to: Grant {
                        source: Some(tag.clone()),
                        ..g("f", &[])
                    },
                },
            ],
            ..Default::default()
        };
        let r = records(&ctx, &more, None);
        let v: Vec<Value> = r.iter().map(|x| serde_json::to_value(x).unwrap()).collect();
        assert_eq!(v[0]["source"], "tag:eks-cluster-admin");
        assert_eq!(v[1].get("source"), None);
        assert_eq!(v[2]["source"], "iam-group:platform");
        assert_eq!(v[3]["sourceBefore"], "unrecorded");
        assert_eq!(v[4]["sourceBefore"], "iam-group:platform");
        assert_eq!(v[4]["source"], "tag:eks-cluster-admin");
        assert_eq!(v[0].get("sourceBefore"), None);
        assert!(v.iter().all(|x| x["principalKind"] == "user"));

        let c = Counts::of(&plan, Some(&guard), &[]);
        assert_eq!(
            (c.granted, c.updated, c.revoked, c.skipped, c.guarded),
            (1, 1, 1, 1, 1)
        );
    }

    #[test]
    fn metric_line_is_emf() {
        let counts = Counts {
            granted: 2,
            failed: 1,
            ..Default::default()
        };
        let v = metric_line(1_764_547_200_000, "default", "prod", &counts, 42);
        let spec = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(spec["Namespace"], NAMESPACE);
        // Every metric named in the spec has a numeric value at the top level, and every dimension a string.
        for m in spec["Metrics"].as_array().unwrap() {
            assert!(v[m["Name"].as_str().unwrap()].is_u64(), "{m}");
        }
        for set in spec["Dimensions"].as_array().unwrap() {
            for d in set.as_array().unwrap() {
                assert!(v[d.as_str().unwrap()].is_string());
            }
        }
        assert_eq!(v["Granted"], 2);
        assert_eq!(v["Failed"], 1);
        assert_eq!(v["Duration"], 42);
    }
}
