//! Access levels: what a grant gives, per level (admin, edit, view, …), and which sources grant each. Pure.
//!
//! The grants are made of levels ([`crate::core::grants`]: each principal holds the union of its levels); the
//! stores record a grant's levels (`eks-admin-sync-levels`) and the guard holds a removal back by any recorded
//! level's suspect source, both only once levels are declared. The guard does not yet judge an update that
//! drops one level, and the audit, the metrics and the RBAC of `aws-auth` clusters do not speak of levels, so
//! the function reads no `ACCESS_LEVELS` variable and runs one level, [`legacy_level`], built from today's
//! variables (`ADMIN_TAG_KEY`, `ADMIN_PERMISSION_SETS`, `ADMIN_IAM_GROUPS`, `ADMIN_GROUPS`, `ACCESS_POLICIES`).
//!
//! A level, as `ACCESS_LEVELS` (a JSON list) will declare it:
//!
//! ```json
//! {"name": "edit", "tagKey": "eks-edit", "accessPolicies": ["AmazonEKSEditPolicy=@tag"], "clusterRole": "edit=@tag"}
//! ```
//!
//! - `name`: 1-20 of `a-z0-9-`, starting with a letter.
//! - Every grant records the levels it holds in one EKS tag value (256 characters at most): the longest record
//!   the levels can make must fit (rule `levels-record-fits`).
//! - Sources: `tagKey` (and `expiryTagKey`, default the tag key + `-expires`), `permissionSets`, `iamGroups`.
//! - On access-entry clusters: `accessPolicies`, each `Name` (cluster-wide), `Name=ns1 ns2` (those namespaces)
//!   or `Name=@tag` (the namespaces the principal's tag value names); `groups` (Kubernetes groups, on both
//!   stores; never `system:`, which EKS refuses on an entry).
//! - On `aws-auth` clusters: `groups`, `awsAuthGroups` (only there, e.g. `system:masters`), and `clusterRole`:
//!   `view`, `edit` or `admin`, scoped like a policy (`edit=@tag`): the function binds the level's group to
//!   that ClusterRole (cluster-wide by the bootstrap's binding, in namespaces by RoleBindings it keeps).
//!
//! The tag value of a level: today's `true` or cluster names; a level scoped by the tag adds namespaces to
//! each, `CLUSTER=NS+NS` or `true=NS+NS` (IAM tag values allow `=` and `+`, not `,`), e.g.
//! `prod=team-a+team-b staging=team-a`.

use crate::core::settings::{
    ACCESS_POLICY_ARN_PREFIX, AccessPolicy, PolicyScope, Settings, parse_bool,
};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// Where a level's policy or ClusterRole applies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum LevelScope {
    Cluster,
    /// These namespaces (sorted, no duplicates).
    Namespaces(Vec<String>),
    /// The namespaces the principal's tag value names for the cluster.
    FromTag,
}

/// An access policy of a level, by ARN.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LevelPolicy {
    pub arn: String,
    pub scope: LevelScope,
}

/// The Kubernetes ClusterRoles a level may bind on `aws-auth` clusters: the user-facing roles, never
/// `cluster-admin` (admin on `aws-auth` is `system:masters` in `awsAuthGroups`), so that the function's own
/// RBAC can bind nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClusterRole {
    View,
    Edit,
    Admin,
}

impl ClusterRole {
    pub fn name(self) -> &'static str {
        match self {
            ClusterRole::View => "view",
            ClusterRole::Edit => "edit",
            ClusterRole::Admin => "admin",
        }
    }
}

/// One access level, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    pub name: String,
    pub tag_key: Option<String>,
    /// The tag holding the tag grant's expiry (set when `tag_key` is).
    pub expiry_tag_key: Option<String>,
    pub permission_sets: Vec<String>,
    pub iam_groups: Vec<String>,
    pub policies: Vec<LevelPolicy>,
    /// Kubernetes groups on both stores.
    pub groups: Vec<String>,
    /// Kubernetes groups only on `aws-auth` rows.
    pub aws_auth_groups: Vec<String>,
    pub cluster_role: Option<(ClusterRole, LevelScope)>,
}

impl Level {
    /// Whether any policy or the ClusterRole takes its namespaces from the tag.
    pub fn scoped_by_tag(&self) -> bool {
        self.policies.iter().any(|p| p.scope == LevelScope::FromTag)
            || self
                .cluster_role
                .as_ref()
                .is_some_and(|(_, s)| *s == LevelScope::FromTag)
    }

    /// Every tag key the level reads (its grant and its expiry).
    fn tag_keys(&self) -> impl Iterator<Item = &str> {
        self.tag_key
            .iter()
            .chain(&self.expiry_tag_key)
            .map(String::as_str)
    }
}

/// A level as `ACCESS_LEVELS` spells it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LevelSpec {
    name: String,
    tag_key: Option<String>,
    expiry_tag_key: Option<String>,
    #[serde(default)]
    permission_sets: Vec<String>,
    #[serde(default)]
    iam_groups: Vec<String>,
    #[serde(default)]
    access_policies: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    aws_auth_groups: Vec<String>,
    cluster_role: Option<String>,
}

/// A rule every configuration of levels must keep, by name (the start-up error names it).
type Rule = (&'static str, fn(&[Level]) -> Result<(), String>);

/// The rules, checked in this order after each level was read.
const RULES: [Rule; 8] = [
    ("level-names", level_names),
    ("has-a-source", has_a_source),
    ("grants-something", grants_something),
    ("tag-keys-distinct", tag_keys_distinct),
    ("no-system-group-on-entries", no_system_group_on_entries),
    ("tag-scope-needs-the-tag", tag_scope_needs_the_tag),
    ("one-scope-per-policy", one_scope_per_policy),
    ("levels-record-fits", levels_record_fits),
];

/// `ACCESS_LEVELS`: a JSON list of levels, each read and then all checked by [`RULES`]; the reason names the
/// level and the rule.
pub fn parse_levels(text: &str) -> Result<Vec<Level>, String> {
    let specs: Vec<LevelSpec> = serde_json::from_str(text).map_err(|e| {
        format!("expected a JSON list of levels ({e}), e.g. [{{\"name\":\"view\",\"tagKey\":\"eks-view\",\"accessPolicies\":[\"AmazonEKSViewPolicy\"],\"clusterRole\":\"view\"}}]")
    })?;
    if specs.is_empty() {
        return Err("at least one level is needed".into());
    }
    let levels = specs
        .into_iter()
        .map(level_of_spec)
        .collect::<Result<Vec<_>, _>>()?;
    for (name, rule) in RULES {
        rule(&levels).map_err(|why| format!("rule {name}: {why}"))?;
    }
    Ok(levels)
}

/// One level's fields, each checked on its own.
fn level_of_spec(s: LevelSpec) -> Result<Level, String> {
    let named = |why: String| format!("level {:?}: {why}", s.name);
    let tag_key = s
        .tag_key
        .as_deref()
        .map(tag_key)
        .transpose()
        .map_err(named)?;
    let expiry_tag_key = match (&tag_key, s.expiry_tag_key.as_deref()) {
        (None, Some(_)) => return Err(named("expiryTagKey without tagKey".into())),
        (None, None) => None,
        (Some(_), Some(k)) => Some(self::tag_key(k).map_err(named)?),
        (Some(k), None) => Some(self::tag_key(&format!("{k}-expires")).map_err(named)?),
    };
    let mut policies = Vec::new();
    for p in &s.access_policies {
        let (name, scope) = scoped(p).map_err(named)?;
        policies.push(LevelPolicy {
            arn: policy_arn(name).map_err(named)?,
            scope,
        });
    }
    policies.sort();
    let cluster_role = match s.cluster_role.as_deref() {
        None => None,
        Some(text) => {
            let (role, scope) = scoped(text).map_err(named)?;
            let role = match role {
                "view" => ClusterRole::View,
                "edit" => ClusterRole::Edit,
                "admin" => ClusterRole::Admin,
                other => {
                    return Err(named(format!(
                        "clusterRole {other:?}: expected view, edit or admin (cluster admin on aws-auth is \
                         awsAuthGroups [\"system:masters\"])"
                    )));
                }
            };
            Some((role, scope))
        }
    };
    for g in s.groups.iter().chain(&s.aws_auth_groups) {
        if g.is_empty() || g.chars().any(char::is_whitespace) {
            return Err(named(format!("{g:?} is not a Kubernetes group name")));
        }
    }
    Ok(Level {
        name: s.name,
        tag_key,
        expiry_tag_key,
        permission_sets: s.permission_sets,
        iam_groups: s.iam_groups,
        policies,
        groups: s.groups,
        aws_auth_groups: s.aws_auth_groups,
        cluster_role,
    })
}

fn tag_key(k: &str) -> Result<String, String> {
    let k = k.trim();
    if k.is_empty() || k.chars().count() > 128 {
        return Err(format!("{k:?} is not an IAM tag key (1-128 characters)"));
    }
    Ok(k.to_string())
}

/// `NAME`, `NAME=ns1 ns2` or `NAME=@tag`.
fn scoped(text: &str) -> Result<(&str, LevelScope), String> {
    let Some((name, ns)) = text.split_once('=') else {
        return Ok((text.trim(), LevelScope::Cluster));
    };
    if ns.trim() == "@tag" {
        return Ok((name.trim(), LevelScope::FromTag));
    }
    let mut list: Vec<String> = ns.split_whitespace().map(str::to_string).collect();
    list.sort();
    list.dedup();
    if list.is_empty() {
        return Err(format!(
            "{text:?} names no namespace (NAME=ns1 ns2, or NAME=@tag)"
        ));
    }
    if let Some(bad) = list.iter().find(|n| !valid_namespace(n)) {
        return Err(format!(
            "{bad:?} in {text:?} is not a Kubernetes namespace name (a DNS label)"
        ));
    }
    Ok((name.trim(), LevelScope::Namespaces(list)))
}

/// A policy name under [`ACCESS_POLICY_ARN_PREFIX`], or its full ARN (whether EKS offers it is checked
/// against `ListAccessPolicies` before anything is written).
pub(crate) fn policy_arn(name: &str) -> Result<String, String> {
    let arn = if name.starts_with("arn:") {
        name.to_string()
    } else {
        format!("{ACCESS_POLICY_ARN_PREFIX}{name}")
    };
    let last = arn.rsplit('/').next().unwrap_or_default();
    let ok = arn.starts_with("arn:aws")
        && arn.contains(":eks::aws:cluster-access-policy/")
        && !last.is_empty()
        && last.bytes().all(|b| b.is_ascii_alphanumeric());
    ok.then_some(arn).ok_or_else(|| {
        format!("{name:?} is not an EKS access policy (a name such as AmazonEKSClusterAdminPolicy, or its ARN)")
    })
}

/// A DNS-1123 label, as Kubernetes namespace names are.
pub fn valid_namespace(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !n.starts_with('-')
        && !n.ends_with('-')
}

fn level_names(levels: &[Level]) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for l in levels {
        let b = l.name.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 20
            && b[0].is_ascii_lowercase()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
        if !ok {
            return Err(format!(
                "{:?} is not a level name (1-20 of a-z, 0-9 and '-', starting with a letter)",
                l.name
            ));
        }
        if !seen.insert(&l.name) {
            return Err(format!("level {:?} is declared twice", l.name));
        }
    }
    Ok(())
}

fn has_a_source(levels: &[Level]) -> Result<(), String> {
    match levels
        .iter()
        .find(|l| l.tag_key.is_none() && l.permission_sets.is_empty() && l.iam_groups.is_empty())
    {
        Some(l) => Err(format!(
            "level {:?} has no source: give it a tagKey, permissionSets or iamGroups",
            l.name
        )),
        None => Ok(()),
    }
}

fn grants_something(levels: &[Level]) -> Result<(), String> {
    match levels.iter().find(|l| {
        l.policies.is_empty()
            && l.groups.is_empty()
            && l.aws_auth_groups.is_empty()
            && l.cluster_role.is_none()
    }) {
        Some(l) => Err(format!(
            "level {:?} grants nothing: give it accessPolicies (access entries) and a clusterRole, groups or \
             awsAuthGroups (aws-auth)",
            l.name
        )),
        None => Ok(()),
    }
}

/// IAM tag keys ignore letter case: two levels reading one key would grant each other's level.
fn tag_keys_distinct(levels: &[Level]) -> Result<(), String> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for l in levels {
        for k in l.tag_keys() {
            if let Some(other) = seen.insert(k.to_ascii_lowercase(), &l.name) {
                return Err(format!(
                    "tag key {k:?} is read by level {other:?} and level {:?} (a grant key or an expiry key): each \
                     level needs its own keys",
                    l.name
                ));
            }
        }
    }
    Ok(())
}

/// EKS refuses `system:` groups on an access entry (`InvalidParameterException`); on `aws-auth` they belong
/// in `awsAuthGroups`.
fn no_system_group_on_entries(levels: &[Level]) -> Result<(), String> {
    for l in levels {
        if let Some(g) = l.groups.iter().find(|g| g.starts_with("system:")) {
            return Err(format!(
                "level {:?}: group {g:?} would be written on access entries, where EKS refuses system: groups; \
                 put it in awsAuthGroups (aws-auth only) and give the level an access policy instead",
                l.name
            ));
        }
    }
    Ok(())
}

/// Only a tag names namespaces: a level scoped by the tag is granted by its tag alone.
fn tag_scope_needs_the_tag(levels: &[Level]) -> Result<(), String> {
    for l in levels.iter().filter(|l| l.scoped_by_tag()) {
        if l.tag_key.is_none() || !l.permission_sets.is_empty() || !l.iam_groups.is_empty() {
            return Err(format!(
                "level {:?} takes its namespaces from the tag (=@tag), so only its tagKey can grant it (a \
                 permission set or group names no namespace)",
                l.name
            ));
        }
    }
    Ok(())
}

/// EKS associates a policy once per entry: one level cannot name a policy twice.
fn one_scope_per_policy(levels: &[Level]) -> Result<(), String> {
    for l in levels {
        let mut arns: Vec<&str> = l.policies.iter().map(|p| p.arn.as_str()).collect();
        arns.sort_unstable();
        if let Some(w) = arns.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!(
                "level {:?} names {} twice: give it one scope",
                l.name, w[0]
            ));
        }
    }
    Ok(())
}

/// EKS tag values hold at most 256 characters (EKS `TagResource`), and an entry records every level it holds
/// in one (`crate::core::grants::levels_record`): `LEVEL:tag`, `LEVEL:permission-set:NAME` or
/// `LEVEL:iam-group:NAME`, joined by `/`. The longest record the levels can make must fit.
fn levels_record_fits(levels: &[Level]) -> Result<(), String> {
    const MAX: usize = 256;
    let longest = |names: &[String], prefix: &str| {
        names
            .iter()
            .map(|n| prefix.len() + n.len())
            .max()
            .unwrap_or(0)
    };
    let parts: usize = levels
        .iter()
        .map(|l| {
            let tag = if l.tag_key.is_some() { "tag".len() } else { 0 };
            let made = tag
                .max(longest(&l.permission_sets, "permission-set:"))
                .max(longest(&l.iam_groups, "iam-group:"));
            l.name.len() + 1 + made
        })
        .sum();
    let worst = parts + levels.len().saturating_sub(1);
    if worst > MAX {
        return Err(format!(
            "a principal holding every level would record {worst} characters of levels on its access entry (a tag \
             value holds {MAX}): shorten level names, or the permission-set and group names that grant them"
        ));
    }
    Ok(())
}

/// The one level a deployment without `ACCESS_LEVELS` runs: today's admin grant, from today's variables. It
/// writes exactly what those variables write: `ADMIN_GROUPS` on `aws-auth` rows (in its order), and its groups
/// but the `system:` ones with `ACCESS_POLICIES` on access entries.
pub fn legacy_level(s: &Settings) -> Level {
    // An aws-auth row gets `awsAuthGroups` then `groups`, each once: all of ADMIN_GROUPS in its own order.
    let plain: Vec<String> = s
        .groups
        .iter()
        .filter(|g| !g.starts_with("system:"))
        .cloned()
        .collect();
    Level {
        name: "admin".into(),
        tag_key: Some(s.tag_key.clone()),
        expiry_tag_key: Some(s.expiry_tag_key.clone()),
        permission_sets: s.permission_sets.clone(),
        iam_groups: s.iam_groups.clone(),
        policies: s.access_policies.iter().map(level_policy).collect(),
        groups: plain,
        aws_auth_groups: s.groups.clone(),
        cluster_role: None,
    }
}

fn level_policy(p: &AccessPolicy) -> LevelPolicy {
    LevelPolicy {
        arn: p.arn.clone(),
        scope: match &p.scope {
            PolicyScope::Cluster => LevelScope::Cluster,
            PolicyScope::Namespaces { namespaces } => LevelScope::Namespaces(namespaces.clone()),
        },
    }
}

/// What a level's tag value grants: per managed cluster, the namespaces it names (empty: the whole cluster,
/// for a level not scoped by the tag), and notes on what was ignored.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Targets {
    pub clusters: BTreeMap<String, BTreeSet<String>>,
    pub notes: Vec<String>,
}

/// Reads a level's tag value: `true`, or cluster names, each with `=NS+NS` when the level is scoped by the tag
/// (`true=NS+NS` for every managed cluster). An item that does not fit the level is left out with a note:
/// namespaces on a cluster-wide level (granting the whole cluster would be more than was asked), none on a
/// level scoped by the tag, a cluster not managed here, a namespace that is not a DNS label.
pub fn targets(value: &str, level: &Level, managed: &[String]) -> Targets {
    let mut out = Targets::default();
    let v = value.trim();
    match parse_bool(v) {
        Some(false) => {
            out.notes.push("value is false".into());
            return out;
        }
        _ if v.is_empty() => {
            out.notes.push("value is empty".into());
            return out;
        }
        _ => {}
    }
    let by_tag = level.scoped_by_tag();
    let mut unknown: Vec<&str> = Vec::new();
    for item in v.split_whitespace() {
        let (target, namespaces) = match item.split_once('=') {
            Some((t, ns)) => (t, Some(ns)),
            None => (item, None),
        };
        // `true` alone is every managed cluster, as is `true=NS+NS`; a `true` among cluster names names
        // no cluster (which one was meant is not clear, so none is granted more than the names say).
        let every = parse_bool(target) == Some(true) && (namespaces.is_some() || v == item);
        let clusters: Vec<&String> = if every {
            managed.iter().collect()
        } else if let Some(c) = managed.iter().find(|c| *c == target) {
            vec![c]
        } else {
            unknown.push(target);
            continue;
        };
        let names = match (by_tag, namespaces) {
            (false, None) => BTreeSet::new(),
            (false, Some(_)) => {
                out.notes.push(format!(
                    "{item:?} names namespaces, but level {} is cluster-wide; not granted there",
                    level.name
                ));
                continue;
            }
            (true, None) => {
                out.notes.push(format!(
                    "{item:?} names no namespace, and level {} grants only in namespaces ({target}=ns1+ns2)",
                    level.name
                ));
                continue;
            }
            (true, Some(ns)) => match namespace_list(ns) {
                Ok(list) => list,
                Err(note) => {
                    out.notes.push(format!("{item:?}: {note}"));
                    continue;
                }
            },
        };
        for c in clusters {
            out.clusters
                .entry(c.clone())
                .or_default()
                .extend(names.iter().cloned());
        }
    }
    if !unknown.is_empty() {
        out.notes.push(format!(
            "names clusters this function does not manage: {} (managed: {}; use spaces, not commas)",
            unknown.join(" "),
            managed.join(" ")
        ));
    }
    out
}

/// `ns1+ns2`: DNS labels, at least one.
fn namespace_list(text: &str) -> Result<BTreeSet<String>, String> {
    let list: BTreeSet<String> = text
        .split('+')
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    if list.is_empty() {
        return Err("names no namespace".into());
    }
    match list.iter().find(|n| !valid_namespace(n)) {
        Some(bad) => Err(format!(
            "{bad:?} is not a Kubernetes namespace name (a DNS label)"
        )),
        None => Ok(list),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE: &str = r#"[
        {"name": "admin", "tagKey": "eks-cluster-admin", "iamGroups": ["platform"],
         "accessPolicies": ["AmazonEKSClusterAdminPolicy"], "awsAuthGroups": ["system:masters"]},
        {"name": "view", "tagKey": "eks-view", "permissionSets": ["Developer"],
         "accessPolicies": ["AmazonEKSViewPolicy"], "clusterRole": "view"},
        {"name": "edit", "tagKey": "eks-edit", "accessPolicies": ["AmazonEKSEditPolicy=@tag"],
         "clusterRole": "edit=@tag"}
    ]"#;

    fn err(text: &str) -> String {
        parse_levels(text).unwrap_err()
    }

    #[test]
    fn three_levels_read() {
        let levels = parse_levels(THREE).unwrap();
        assert_eq!(levels.len(), 3);
        let edit = &levels[2];
        assert_eq!(edit.expiry_tag_key.as_deref(), Some("eks-edit-expires"));
        assert_eq!(
            edit.policies,
            vec![LevelPolicy {
                arn: format!("{ACCESS_POLICY_ARN_PREFIX}AmazonEKSEditPolicy"),
                scope: LevelScope::FromTag
            }]
        );
        assert_eq!(
            edit.cluster_role,
            Some((ClusterRole::Edit, LevelScope::FromTag))
        );
        assert!(edit.scoped_by_tag() && !levels[1].scoped_by_tag());
        assert_eq!(levels[0].aws_auth_groups, vec!["system:masters"]);
    }

    /// Each named rule, and each field's own check, refuses with a reason that names it.
    #[test]
    fn every_rule_refuses_what_it_names() {
        // Two levels, each granted by a group with a long name: 2 × (1 + 1 + 10 + 128) + 1 > 256.
        let g = "g".repeat(128);
        let too_long = format!(
            r#"[{{"name":"a","iamGroups":["{g}"],"clusterRole":"view"}},{{"name":"b","iamGroups":["{g}"],"clusterRole":"edit"}}]"#
        );
        let cases: &[(&str, &str)] = &[
            ("{}", "JSON list"),
            ("[]", "at least one level"),
            (
                r#"[{"name":"view","tagkey":"x","clusterRole":"view"}]"#,
                "unknown field",
            ),
            (
                r#"[{"name":"View","tagKey":"x","clusterRole":"view"}]"#,
                "rule level-names",
            ),
            (
                r#"[{"name":"v","tagKey":"a","clusterRole":"view"},{"name":"v","tagKey":"b","clusterRole":"view"}]"#,
                "declared twice",
            ),
            (
                r#"[{"name":"v","clusterRole":"view"}]"#,
                "rule has-a-source",
            ),
            (r#"[{"name":"v","tagKey":"a"}]"#, "rule grants-something"),
            (
                r#"[{"name":"a","tagKey":"k","clusterRole":"view"},{"name":"b","tagKey":"K","clusterRole":"edit"}]"#,
                "rule tag-keys-distinct",
            ),
            (
                r#"[{"name":"a","tagKey":"k","clusterRole":"view"},{"name":"b","tagKey":"k-expires","clusterRole":"edit"}]"#,
                "rule tag-keys-distinct",
            ),
            (
                r#"[{"name":"a","tagKey":"k","groups":["system:masters"]}]"#,
                "rule no-system-group-on-entries",
            ),
            (
                r#"[{"name":"a","tagKey":"k","iamGroups":["devs"],"clusterRole":"edit=@tag"}]"#,
                "rule tag-scope-needs-the-tag",
            ),
            (
                r#"[{"name":"a","tagKey":"k","accessPolicies":["AmazonEKSViewPolicy","AmazonEKSViewPolicy=x"]}]"#,
                "rule one-scope-per-policy",
            ),
            (
                r#"[{"name":"a","tagKey":"k","accessPolicies":["AmazonEKSViewPolicy=Team_A"]}]"#,
                "not a Kubernetes namespace name",
            ),
            (
                r#"[{"name":"a","tagKey":"k","accessPolicies":["arn:aws:iam::aws:policy/AdministratorAccess"]}]"#,
                "not an EKS access policy",
            ),
            (
                r#"[{"name":"a","tagKey":"k","clusterRole":"cluster-admin"}]"#,
                "expected view, edit or admin",
            ),
            (
                r#"[{"name":"a","expiryTagKey":"e","clusterRole":"view"}]"#,
                "expiryTagKey without tagKey",
            ),
            (
                r#"[{"name":"a","tagKey":"k","groups":["two words"]}]"#,
                "not a Kubernetes group name",
            ),
            (&too_long, "rule levels-record-fits"),
        ];
        for (text, needle) in cases {
            let e = err(text);
            assert!(e.contains(needle), "{text}: {e:?} lacks {needle:?}");
        }
    }

    #[test]
    fn the_legacy_level_is_todays_grant() {
        let s = Settings::from_lookup(|k| match k {
            "CLUSTER_NAMES" => Some("prod".into()),
            "ADMIN_GROUPS" => Some("system:masters ops".into()),
            "ADMIN_IAM_GROUPS" => Some("eks-admins".into()),
            "ACCESS_POLICIES" => {
                Some("AmazonEKSClusterAdminPolicy, AmazonEKSAdminPolicy=team-a".into())
            }
            _ => None,
        })
        .unwrap();
        let l = legacy_level(&s);
        assert_eq!(l.tag_key.as_deref(), Some("eks-cluster-admin"));
        assert_eq!(
            l.expiry_tag_key.as_deref(),
            Some("eks-cluster-admin-expires")
        );
        assert_eq!(l.iam_groups, vec!["eks-admins"]);
        assert_eq!(l.groups, vec!["ops"]);
        assert_eq!(l.aws_auth_groups, vec!["system:masters", "ops"]);
        assert_eq!(l.policies.len(), 2);
        assert!(l.policies.contains(&LevelPolicy {
            arn: format!("{ACCESS_POLICY_ARN_PREFIX}AmazonEKSAdminPolicy"),
            scope: LevelScope::Namespaces(vec!["team-a".into()])
        }));
        // It passes the rules a declared level must pass.
        for (name, rule) in RULES {
            assert_eq!(rule(std::slice::from_ref(&l)), Ok(()), "{name}");
        }
    }

    fn managed() -> Vec<String> {
        vec!["prod".into(), "staging".into()]
    }

    #[test]
    fn tag_values_of_a_cluster_wide_level() {
        let levels = parse_levels(THREE).unwrap();
        let view = &levels[1];
        let t = targets("true", view, &managed());
        assert_eq!(t.clusters.keys().collect::<Vec<_>>(), ["prod", "staging"]);
        assert!(t.clusters.values().all(BTreeSet::is_empty) && t.notes.is_empty());
        // `true` among names is not every cluster.
        let t = targets("prod true", view, &managed());
        assert_eq!(t.clusters.keys().collect::<Vec<_>>(), ["prod"]);
        assert!(
            t.notes[0].contains("does not manage: true"),
            "{:?}",
            t.notes
        );
        let t = targets("prod dev prod=team-a", view, &managed());
        assert_eq!(t.clusters.keys().collect::<Vec<_>>(), ["prod"]);
        assert_eq!(t.notes.len(), 2, "{:?}", t.notes);
        assert!(t.notes[0].contains("cluster-wide") && t.notes[1].contains("does not manage: dev"));
        assert!(targets("false", view, &managed()).clusters.is_empty());
        assert!(targets(" ", view, &managed()).clusters.is_empty());
    }

    proptest::proptest! {
        /// Whatever a tag holds (IAM's tag-value characters), a level grants only managed clusters, namespaces
        /// only where it is scoped by the tag, and only DNS-label namespaces; every item it leaves out has a note.
        #[test]
        fn tag_values_grant_no_more_than_they_name(value in "[a-zA-Z0-9 _.:/=+@-]{0,40}") {
            let levels = parse_levels(THREE).unwrap();
            for level in &levels[1..] {
                let t = targets(&value, level, &managed());
                for (cluster, namespaces) in &t.clusters {
                    proptest::prop_assert!(managed().contains(cluster));
                    proptest::prop_assert_eq!(level.scoped_by_tag(), !namespaces.is_empty());
                    proptest::prop_assert!(namespaces.iter().all(|n| valid_namespace(n)));
                    proptest::prop_assert!(value.contains(cluster.as_str()) || value.to_ascii_lowercase().contains("true"));
                }
                let items = value.split_whitespace().count();
                proptest::prop_assert!(t.notes.len() <= items.max(1));
            }
        }
    }

    #[test]
    fn tag_values_of_a_level_scoped_by_the_tag() {
        let levels = parse_levels(THREE).unwrap();
        let edit = &levels[2];
        let t = targets(
            "prod=team-a+team-b staging=team-a prod=team-c",
            edit,
            &managed(),
        );
        assert_eq!(
            t.clusters["prod"].iter().collect::<Vec<_>>(),
            ["team-a", "team-b", "team-c"]
        );
        assert_eq!(t.clusters["staging"].iter().collect::<Vec<_>>(), ["team-a"]);
        let t = targets("true=team-a", edit, &managed());
        assert_eq!(t.clusters.len(), 2);
        for bad in ["prod", "prod=", "prod=Team_A", "prod=team-a,team-b"] {
            let t = targets(bad, edit, &managed());
            assert!(t.clusters.is_empty() && t.notes.len() == 1, "{bad}: {t:?}");
        }
    }
}
