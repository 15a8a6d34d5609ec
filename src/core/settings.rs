//! Settings shared by the Lambda and the CLI, read from environment variables.
//!
//! Parsing is pure: [`Settings::from_lookup`] takes a lookup function so tests need no process env.

use std::collections::BTreeSet;
use std::time::Duration;

/// Tag key that marks an IAM user as cluster admin, unless `ADMIN_TAG_KEY` says otherwise.
pub const DEFAULT_TAG_KEY: &str = "eks-cluster-admin";
/// Groups given to an admin, unless `ADMIN_GROUPS` says otherwise.
pub const DEFAULT_GROUPS: &str = "system:masters";
/// Username written into `mapUsers`, unless `USERNAME_TEMPLATE` says otherwise.
pub const DEFAULT_USERNAME_TEMPLATE: &str = "{{UserName}}";
/// Username of a role's grant, unless `USERNAME_TEMPLATE_ROLE` says otherwise: the role and the person
/// behind the session (EKS expands `{{SessionName}}` at authentication time; pin it in the role's trust
/// policy so that it names a person, see the README).
pub const DEFAULT_USERNAME_TEMPLATE_ROLE: &str = "{{RoleName}}:{{SessionName}}";

/// Where audit records go as events, unless `EVENT_BUS` says otherwise (empty: nowhere).
pub const DEFAULT_EVENT_BUS: &str = "default";
/// Where admin groups' members live unless `ADMIN_GROUP_MEMBER_PATH` says otherwise: the shipped policies deny
/// taking over any user under it (keys, passwords, policies, rename, delete) to all but the platform.
pub const DEFAULT_ADMIN_GROUP_MEMBER_PATH: &str = "/eks-admins/";
/// The longest grant `MAX_GRANT_HOURS` may allow (a year).
pub const MAX_GRANT_HOURS_LIMIT: u64 = 24 * 366;

/// Removals one full reconcile may make on one cluster before the guard refuses them, unless
/// `MAX_REMOVALS` says otherwise (`0`: no cap).
pub const DEFAULT_MAX_REMOVALS: usize = 10;
/// Time a cluster may take (read, plan, write) unless `CLUSTER_TIMEOUT_SECONDS` says otherwise.
pub const DEFAULT_CLUSTER_TIMEOUT: Duration = Duration::from_secs(20);
/// Names this deployment's ownership records unless `DEPLOYMENT_ID` says otherwise.
pub const DEFAULT_DEPLOYMENT_ID: &str = "default";

/// Access policies an access-entry grant gets, unless `ACCESS_POLICIES` says otherwise.
pub const DEFAULT_ACCESS_POLICIES: &str = "AmazonEKSClusterAdminPolicy";
/// Where EKS's managed access policies live; a short name in `ACCESS_POLICIES` is taken from here.
pub const ACCESS_POLICY_ARN_PREFIX: &str = "arn:aws:eks::aws:cluster-access-policy/";

/// Which store holds a cluster's grants (`ACCESS_STORE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessStore {
    /// By the cluster's authentication mode: `CONFIG_MAP` → `aws-auth`; `API_AND_CONFIG_MAP` and `API` →
    /// access entries (with this deployment's `aws-auth` entries migrated in `API_AND_CONFIG_MAP`).
    Auto,
    /// Always `aws-auth` (refused on an `API` cluster, which does not read it).
    AwsAuth,
    /// Always access entries (refused on a `CONFIG_MAP` cluster, which has none).
    AccessEntries,
}

/// Where an access policy applies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum PolicyScope {
    #[serde(rename = "cluster")]
    Cluster,
    #[serde(rename = "namespace")]
    Namespaces { namespaces: Vec<String> },
}

/// An EKS access policy with its scope, as an access-entry grant carries it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicy {
    pub arn: String,
    pub scope: PolicyScope,
}

/// Placeholders a username template may contain.
const TEMPLATE_PLACEHOLDERS: [&str; 2] = ["{{UserName}}", "{{AccountID}}"];
/// What a role's username may hold: ours, and the session placeholders EKS expands when the role signs in.
const ROLE_TEMPLATE_PLACEHOLDERS: [&str; 4] = [
    "{{RoleName}}",
    "{{AccountID}}",
    "{{SessionName}}",
    "{{SessionNameRaw}}",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "CLUSTER_NAMES is empty: set it to the space-separated names of the EKS clusters to manage"
    )]
    NoClusters,
    #[error("{var}={value:?} is not valid: {reason}")]
    Invalid {
        var: &'static str,
        value: String,
        reason: String,
    },
}

/// Everything the function needs to know besides AWS credentials and endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Clusters this function manages, in the order given (duplicates removed).
    pub clusters: Vec<String>,
    pub tag_key: String,
    pub groups: Vec<String>,
    pub username_template: String,
    pub dry_run: bool,
    /// Removals a full reconcile may make per cluster before the guard refuses them; `None`: no cap.
    pub max_removals: Option<usize>,
    /// The longest one cluster may take in one invocation (the Lambda's remaining time may cut it shorter).
    pub cluster_timeout: Duration,
    /// Which deployment this is: its entries and ownership records carry this id, so two deployments
    /// (say with different tag keys) can share a cluster without touching each other's entries.
    pub deployment_id: String,
    /// Which store serves each cluster.
    pub access_store: AccessStore,
    /// The access policies an access-entry grant gets (sorted, no duplicates).
    pub access_policies: Vec<AccessPolicy>,
    /// Username template of a role's grant (`{{RoleName}}`, `{{AccountID}}` expanded here; `{{SessionName}}`,
    /// `{{SessionNameRaw}}` by EKS).
    pub role_username_template: String,
    /// IAM Identity Center permission sets whose roles are admins (`ADMIN_PERMISSION_SETS`).
    pub permission_sets: Vec<String>,
    /// IAM groups whose members are admins (`ADMIN_IAM_GROUPS`).
    pub iam_groups: Vec<String>,
    /// The IAM path an admin group's member must be under to be granted (`ADMIN_GROUP_MEMBER_PATH`, default
    /// [`DEFAULT_ADMIN_GROUP_MEMBER_PATH`]): IAM conditions cannot see group membership, so the policies protect
    /// members by this path instead. `/`: any path (members then unprotected by the shipped policies).
    pub group_member_path: String,
    /// The function's own role name (from `FUNCTION_ROLE_ARN`): never an admin, whatever it carries.
    pub function_role: Option<String>,
    /// The AWS account the function serves (from `FUNCTION_ROLE_ARN`): events of another account are
    /// ignored. In Lambda the function's own ARN tells it too.
    pub account: Option<String>,
    /// The tag holding a tag grant's expiry, an RFC 3339 UTC time (`ADMIN_EXPIRY_TAG_KEY`, default the
    /// admin tag key + `-expires`).
    pub expiry_tag_key: String,
    /// The longest a tag grant may last (`MAX_GRANT_HOURS`): when set, a tag grant without an expiry, or
    /// with one further away, is refused. `None`: no limit.
    pub max_grant: Option<Duration>,
    /// The EventBridge bus every audit record is put on as an event (`EVENT_BUS`: unset is the account's
    /// `default` bus, empty is off).
    pub event_bus: Option<String>,
    /// The one-time EventBridge Scheduler schedule that invokes the function at the next expiry
    /// (`EXPIRY_SCHEDULE_*`, set by the template); `None`: expiries wait for the next run.
    pub expiry_schedule: Option<ExpirySchedule>,
}

/// Where the expiry wake-up lives and what it invokes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpirySchedule {
    pub group: String,
    pub name: String,
    /// The role EventBridge Scheduler assumes to invoke the function.
    pub role_arn: String,
    /// The function's ARN.
    pub target_arn: String,
}

impl ExpirySchedule {
    /// All four variables, or none (a partial set is a mistake worth a clear error).
    fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        const VARS: [&str; 4] = [
            "EXPIRY_SCHEDULE_GROUP",
            "EXPIRY_SCHEDULE_NAME",
            "EXPIRY_SCHEDULE_ROLE_ARN",
            "EXPIRY_SCHEDULE_TARGET_ARN",
        ];
        let vals: Vec<Option<String>> = VARS.iter().map(|v| non_empty(get, v)).collect();
        if vals.iter().all(Option::is_none) {
            return Ok(None);
        }
        if let Some(i) = vals.iter().position(Option::is_none) {
            return Err(ConfigError::Invalid {
                var: VARS[i],
                value: String::new(),
                reason: "the expiry wake-up needs all of EXPIRY_SCHEDULE_GROUP, _NAME, _ROLE_ARN and _TARGET_ARN (or none)".into(),
            });
        }
        let mut v = vals.into_iter().flatten();
        let mut next = || v.next().unwrap_or_default();
        Ok(Some(ExpirySchedule {
            group: next(),
            name: next(),
            role_arn: next(),
            target_arn: next(),
        }))
    }
}

impl Settings {
    /// Reads settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `get`, which returns a variable's value if it is set.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut seen = BTreeSet::new();
        let clusters: Vec<String> = get("CLUSTER_NAMES")
            .unwrap_or_default()
            .split_whitespace()
            .filter(|c| seen.insert(c.to_string()))
            .map(str::to_string)
            .collect();
        if clusters.is_empty() {
            return Err(ConfigError::NoClusters);
        }
        for c in &clusters {
            if !valid_cluster_name(c) {
                return Err(ConfigError::Invalid {
                    var: "CLUSTER_NAMES",
                    value: c.clone(),
                    reason: "an EKS cluster name has 1-100 letters, digits, '-' or '_' and starts with a letter or digit".into(),
                });
            }
        }

        let tag_key = non_empty(&get, "ADMIN_TAG_KEY").unwrap_or_else(|| DEFAULT_TAG_KEY.into());
        if tag_key.len() > 128 {
            return Err(ConfigError::Invalid {
                var: "ADMIN_TAG_KEY",
                value: tag_key,
                reason: "IAM tag keys have at most 128 characters".into(),
            });
        }

        let expiry_tag_key =
            non_empty(&get, "ADMIN_EXPIRY_TAG_KEY").unwrap_or_else(|| format!("{tag_key}-expires"));
        if expiry_tag_key.len() > 128 || expiry_tag_key.eq_ignore_ascii_case(&tag_key) {
            return Err(ConfigError::Invalid {
                var: "ADMIN_EXPIRY_TAG_KEY",
                value: expiry_tag_key,
                reason: "expected an IAM tag key (at most 128 characters) other than ADMIN_TAG_KEY"
                    .into(),
            });
        }
        let max_grant = match non_empty(&get, "MAX_GRANT_HOURS") {
            None => None,
            Some(v) => match v.parse::<u64>() {
                Ok(h @ 1..=MAX_GRANT_HOURS_LIMIT) => Some(Duration::from_secs(h * 3600)),
                _ => {
                    return Err(ConfigError::Invalid {
                        var: "MAX_GRANT_HOURS",
                        value: v,
                        reason: format!(
                            "expected whole hours from 1 to {MAX_GRANT_HOURS_LIMIT}, or unset for no limit"
                        ),
                    });
                }
            },
        };

        // Unset: the default bus; set but empty: off (so `non_empty` does not apply).
        let event_bus = match get("EVENT_BUS") {
            None => Some(DEFAULT_EVENT_BUS.to_string()),
            Some(v) if v.trim().is_empty() => None,
            Some(v) => {
                let v = v.trim().to_string();
                let ok = v.len() <= 1600
                    && (v.starts_with("arn:")
                        || v.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c)));
                if !ok {
                    return Err(ConfigError::Invalid {
                        var: "EVENT_BUS",
                        value: v,
                        reason: "expected an event bus name or ARN (empty: do not publish)".into(),
                    });
                }
                Some(v)
            }
        };

        let expiry_schedule = ExpirySchedule::from_lookup(&get)?;

        let groups_raw = non_empty(&get, "ADMIN_GROUPS").unwrap_or_else(|| DEFAULT_GROUPS.into());
        let groups: Vec<String> = groups_raw.split_whitespace().map(str::to_string).collect();
        if groups.is_empty() {
            return Err(ConfigError::Invalid {
                var: "ADMIN_GROUPS",
                value: groups_raw,
                reason: "at least one Kubernetes group is needed".into(),
            });
        }

        let username_template = non_empty(&get, "USERNAME_TEMPLATE")
            .unwrap_or_else(|| DEFAULT_USERNAME_TEMPLATE.into());
        check_template(
            "USERNAME_TEMPLATE",
            &username_template,
            &TEMPLATE_PLACEHOLDERS,
        )?;
        let role_username_template = non_empty(&get, "USERNAME_TEMPLATE_ROLE")
            .unwrap_or_else(|| DEFAULT_USERNAME_TEMPLATE_ROLE.into());
        check_template(
            "USERNAME_TEMPLATE_ROLE",
            &role_username_template,
            &ROLE_TEMPLATE_PLACEHOLDERS,
        )?;
        let permission_sets = names(
            &get,
            "ADMIN_PERMISSION_SETS",
            32,
            "a permission-set name has 1-32 letters, digits or +=,.@_-",
        )?;
        let iam_groups = names(
            &get,
            "ADMIN_IAM_GROUPS",
            128,
            "an IAM group name has 1-128 letters, digits or +=,.@_-",
        )?;
        let group_member_path = non_empty(&get, "ADMIN_GROUP_MEMBER_PATH")
            .unwrap_or_else(|| DEFAULT_ADMIN_GROUP_MEMBER_PATH.into());
        if !valid_iam_path(&group_member_path) {
            return Err(ConfigError::Invalid {
                var: "ADMIN_GROUP_MEMBER_PATH",
                value: group_member_path,
                reason: "expected an IAM path: / or /name/…/ (1-512 characters, each segment of letters, digits or \
                         +=,.@_-)"
                    .into(),
            });
        }
        let (function_role, account) = match non_empty(&get, "FUNCTION_ROLE_ARN") {
            None => (None, None),
            Some(arn) => {
                let (account, _, name) =
                    crate::core::grants::parse_role_arn(&arn).ok_or_else(|| {
                        ConfigError::Invalid {
                            var: "FUNCTION_ROLE_ARN",
                            value: arn.clone(),
                            reason:
                                "expected an IAM role ARN (arn:aws:iam::ACCOUNT:role/PATH/NAME)"
                                    .into(),
                        }
                    })?;
                (Some(name.to_string()), Some(account.to_string()))
            }
        };

        let dry_run = match non_empty(&get, "DRY_RUN") {
            None => false,
            Some(v) => parse_bool(&v).ok_or_else(|| ConfigError::Invalid {
                var: "DRY_RUN",
                value: v.clone(),
                reason: "expected true or false".into(),
            })?,
        };

        let max_removals = match non_empty(&get, "MAX_REMOVALS") {
            None => Some(DEFAULT_MAX_REMOVALS),
            Some(v) => match v.parse::<usize>() {
                Ok(0) => None,
                Ok(n) => Some(n),
                Err(_) => {
                    return Err(ConfigError::Invalid {
                        var: "MAX_REMOVALS",
                        value: v,
                        reason: "expected a whole number (0: no cap)".into(),
                    });
                }
            },
        };

        let cluster_timeout = match non_empty(&get, "CLUSTER_TIMEOUT_SECONDS") {
            None => DEFAULT_CLUSTER_TIMEOUT,
            Some(v) => match v.parse::<u64>() {
                Ok(n @ 1..=900) => Duration::from_secs(n),
                _ => {
                    return Err(ConfigError::Invalid {
                        var: "CLUSTER_TIMEOUT_SECONDS",
                        value: v,
                        reason: "expected whole seconds from 1 to 900".into(),
                    });
                }
            },
        };

        let deployment_id =
            non_empty(&get, "DEPLOYMENT_ID").unwrap_or_else(|| DEFAULT_DEPLOYMENT_ID.into());
        if !valid_deployment_id(&deployment_id) {
            return Err(ConfigError::Invalid {
                var: "DEPLOYMENT_ID",
                value: deployment_id,
                reason: "expected 1-40 lowercase letters, digits or '-', starting with a letter and not ending with '-'".into(),
            });
        }

        let access_store = match non_empty(&get, "ACCESS_STORE").as_deref() {
            None | Some("auto") => AccessStore::Auto,
            Some("aws-auth") => AccessStore::AwsAuth,
            Some("access-entries") => AccessStore::AccessEntries,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: "ACCESS_STORE",
                    value: other.into(),
                    reason: "expected auto, aws-auth or access-entries".into(),
                });
            }
        };
        let access_policies = parse_access_policies(
            &non_empty(&get, "ACCESS_POLICIES").unwrap_or_else(|| DEFAULT_ACCESS_POLICIES.into()),
        )?;

        Ok(Settings {
            access_store,
            access_policies,
            clusters,
            tag_key,
            groups,
            username_template,
            dry_run,
            max_removals,
            cluster_timeout,
            deployment_id,
            role_username_template,
            permission_sets,
            iam_groups,
            group_member_path,
            function_role,
            account,
            expiry_tag_key,
            max_grant,
            event_bus,
            expiry_schedule,
        })
    }

    pub fn manages(&self, cluster: &str) -> bool {
        self.clusters.iter().any(|c| c == cluster)
    }
}

/// `ACCESS_POLICIES`: comma-separated policies, each a name under [`ACCESS_POLICY_ARN_PREFIX`] or a full
/// ARN, cluster-scoped unless followed by `=ns1 ns2` (namespace scope), e.g.
/// `AmazonEKSClusterAdminPolicy` or `AmazonEKSAdminPolicy=team-a team-b, AmazonEKSViewPolicy`.
pub fn parse_access_policies(raw: &str) -> Result<Vec<AccessPolicy>, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        var: "ACCESS_POLICIES",
        value: raw.to_string(),
        reason,
    };
    let mut out: Vec<AccessPolicy> = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, namespaces) = match item.split_once('=') {
            Some((n, ns)) => (n.trim(), Some(ns)),
            None => (item, None),
        };
        let arn = if name.starts_with("arn:") {
            name.to_string()
        } else {
            format!("{ACCESS_POLICY_ARN_PREFIX}{name}")
        };
        let policy_name = arn.rsplit('/').next().unwrap_or_default();
        let arn_ok = arn.starts_with("arn:aws")
            && arn.contains(":eks::aws:cluster-access-policy/")
            && !policy_name.is_empty()
            && policy_name.bytes().all(|b| b.is_ascii_alphanumeric());
        if !arn_ok {
            return Err(invalid(format!(
                "{name:?} is not an EKS access policy (a name such as AmazonEKSClusterAdminPolicy, or its ARN)"
            )));
        }
        let scope = match namespaces {
            None => PolicyScope::Cluster,
            Some(ns) => {
                let mut list: Vec<String> = ns.split_whitespace().map(str::to_string).collect();
                list.sort();
                list.dedup();
                if list.is_empty() {
                    return Err(invalid(format!("{name}= names no namespace")));
                }
                if let Some(bad) = list.iter().find(|n| !valid_namespace(n)) {
                    return Err(invalid(format!(
                        "{bad:?} is not a Kubernetes namespace name"
                    )));
                }
                PolicyScope::Namespaces { namespaces: list }
            }
        };
        if out.iter().any(|p| p.arn == arn) {
            return Err(invalid(format!("{name} is given twice")));
        }
        out.push(AccessPolicy { arn, scope });
    }
    if out.is_empty() {
        return Err(invalid("at least one access policy is needed".into()));
    }
    out.sort();
    Ok(out)
}

/// A DNS-1123 label (Kubernetes namespace names; `*` prefixes are not supported here).
fn valid_namespace(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !n.starts_with('-')
        && !n.ends_with('-')
}

fn non_empty(get: &impl Fn(&str) -> Option<String>, key: &str) -> Option<String> {
    get(key)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// An RFC 3339 time in UTC with seconds (`2026-12-02T18:00:00Z`), as the expiry tag and a manual
/// payload's `forceAt` take it; an offset, a date alone or anything else is `None`.
pub fn parse_utc(v: &str) -> Option<jiff::Timestamp> {
    let v = v.trim();
    v.strip_suffix('Z')
        .filter(|_| v.len() >= 20 && v.as_bytes().get(10) == Some(&b'T'))
        .and_then(|_| v.parse::<jiff::Timestamp>().ok())
}

/// An IAM path: `/`, or `/a/b/` with segments of `[\w+=,.@-]` (IAM's own rule), at most 512 characters.
pub fn valid_iam_path(p: &str) -> bool {
    p.len() <= 512
        && p.starts_with('/')
        && p.ends_with('/')
        && (p == "/"
            || p[1..p.len() - 1].split('/').all(|seg| {
                !seg.is_empty()
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
            }))
}

/// `true`/`false` in any case, as the tag contract and `DRY_RUN` use.
pub fn parse_bool(v: &str) -> Option<bool> {
    if v.eq_ignore_ascii_case("true") {
        Some(true)
    } else if v.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Deployment ids end up in annotation names and entry fields: keep them short and plain.
pub fn valid_deployment_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 40
        && b[0].is_ascii_lowercase()
        && !id.ends_with('-')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// EKS cluster names: 1-100 characters, `^[0-9A-Za-z][A-Za-z0-9\-_]*`.
pub fn valid_cluster_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 100
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// IAM names (`[\w+=,.@-]`), space-separated, duplicates removed.
fn names(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    max: usize,
    reason: &str,
) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::new();
    for n in non_empty(get, var).unwrap_or_default().split_whitespace() {
        let ok = n.len() <= max
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
        if !ok {
            return Err(ConfigError::Invalid {
                var,
                value: n.to_string(),
                reason: reason.to_string(),
            });
        }
        if !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    Ok(out)
}

fn check_template(var: &'static str, t: &str, placeholders: &[&str]) -> Result<(), ConfigError> {
    // Every `{{...}}` must be one we expand; anything else would end up in the username verbatim,
    // or be expanded by EKS itself at authentication time (e.g. `{{SessionName}}`), which is not meant here.
    let mut rest = t;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start..];
        let Some(end) = after.find("}}") else {
            return Err(invalid_template(var, t, "unclosed '{{'"));
        };
        let placeholder = &after[..end + 2];
        if !placeholders.contains(&placeholder) {
            return Err(invalid_template(
                var,
                t,
                &format!(
                    "unknown placeholder {placeholder}; use {}",
                    placeholders.join(" or ")
                ),
            ));
        }
        rest = &after[end + 2..];
    }
    if t.chars().any(char::is_whitespace) {
        return Err(invalid_template(var, t, "a username cannot contain spaces"));
    }
    Ok(())
}

fn invalid_template(var: &'static str, t: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        var,
        value: t.to_string(),
        reason: reason.to_string(),
    }
}

/// Expands a role's username template (the session placeholders are left for EKS).
pub fn render_role_username(template: &str, role_name: &str, account_id: &str) -> String {
    template
        .replace("{{RoleName}}", role_name)
        .replace("{{AccountID}}", account_id)
}

/// Expands a username template for one user.
pub fn render_username(template: &str, user_name: &str, account_id: &str) -> String {
    template
        .replace("{{UserName}}", user_name)
        .replace("{{AccountID}}", account_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let s = settings(&[("CLUSTER_NAMES", "prod")]).unwrap();
        assert_eq!(s.clusters, vec!["prod"]);
        assert_eq!(s.tag_key, "eks-cluster-admin");
        assert_eq!(s.groups, vec!["system:masters"]);
        assert_eq!(s.username_template, "{{UserName}}");
        assert!(!s.dry_run);
        assert_eq!(s.max_removals, Some(10));
        assert_eq!(s.cluster_timeout, Duration::from_secs(20));
        assert_eq!(s.deployment_id, "default");
        assert_eq!(s.access_store, AccessStore::Auto);
        assert_eq!(s.expiry_tag_key, "eks-cluster-admin-expires");
        assert_eq!(s.max_grant, None);
        assert_eq!(s.event_bus.as_deref(), Some("default"));
        assert_eq!(s.expiry_schedule, None);
        let partial = settings(&[("CLUSTER_NAMES", "prod"), ("EXPIRY_SCHEDULE_GROUP", "g")]);
        assert!(
            partial
                .unwrap_err()
                .to_string()
                .contains("EXPIRY_SCHEDULE_NAME")
        );
        let off = settings(&[("CLUSTER_NAMES", "prod"), ("EVENT_BUS", "")]).unwrap();
        assert_eq!(off.event_bus, None);
        assert!(settings(&[("CLUSTER_NAMES", "prod"), ("EVENT_BUS", "my bus")]).is_err());
        assert_eq!(s.role_username_template, "{{RoleName}}:{{SessionName}}");
        assert!(
            s.permission_sets.is_empty() && s.iam_groups.is_empty() && s.function_role.is_none()
        );
        assert_eq!(
            s.access_policies,
            vec![AccessPolicy {
                arn: "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy".into(),
                scope: PolicyScope::Cluster
            }]
        );
    }

    #[test]
    fn access_settings() {
        let with = |k: &str, v: &str| settings(&[("CLUSTER_NAMES", "prod"), (k, v)]);
        assert_eq!(
            with("ACCESS_STORE", "aws-auth").unwrap().access_store,
            AccessStore::AwsAuth
        );
        assert_eq!(
            with("ACCESS_STORE", "access-entries").unwrap().access_store,
            AccessStore::AccessEntries
        );
        assert!(with("ACCESS_STORE", "configmap").is_err());
        let p = with(
            "ACCESS_POLICIES",
            "AmazonEKSViewPolicy, AmazonEKSAdminPolicy=team-b team-a team-a",
        )
        .unwrap()
        .access_policies;
        assert_eq!(
            p,
            vec![
                AccessPolicy {
                    arn: format!("{ACCESS_POLICY_ARN_PREFIX}AmazonEKSAdminPolicy"),
                    scope: PolicyScope::Namespaces {
                        namespaces: vec!["team-a".into(), "team-b".into()]
                    }
                },
                AccessPolicy {
                    arn: format!("{ACCESS_POLICY_ARN_PREFIX}AmazonEKSViewPolicy"),
                    scope: PolicyScope::Cluster
                },
            ]
        );
        let full = "arn:aws-us-gov:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy";
        assert_eq!(
            with("ACCESS_POLICIES", full).unwrap().access_policies[0].arn,
            full
        );
        for bad in [
            "arn:aws:iam::aws:policy/AdministratorAccess",
            "AmazonEKSViewPolicy=",
            "AmazonEKSViewPolicy=Team_A",
            "AmazonEKSViewPolicy,AmazonEKSViewPolicy",
            "Amazon EKS",
            ",",
        ] {
            let e = with("ACCESS_POLICIES", bad).unwrap_err().to_string();
            assert!(e.contains("ACCESS_POLICIES"), "{bad}: {e}");
        }
    }

    #[test]
    fn table() {
        type Case<'a> = (&'a [(&'a str, &'a str)], Result<(), &'a str>);
        let cases: &[Case] = &[
            (&[], Err("CLUSTER_NAMES is empty")),
            (&[("CLUSTER_NAMES", "  ")], Err("CLUSTER_NAMES is empty")),
            (&[("CLUSTER_NAMES", "a,b")], Err("CLUSTER_NAMES")),
            (&[("CLUSTER_NAMES", "-a")], Err("CLUSTER_NAMES")),
            (&[("CLUSTER_NAMES", "a b a")], Ok(())),
            (&[("CLUSTER_NAMES", "a"), ("DRY_RUN", "TRUE")], Ok(())),
            (
                &[("CLUSTER_NAMES", "a"), ("DRY_RUN", "yes")],
                Err("DRY_RUN"),
            ),
            (
                &[
                    ("CLUSTER_NAMES", "a"),
                    ("USERNAME_TEMPLATE", "{{AccountID}}:{{UserName}}"),
                ],
                Ok(()),
            ),
            (
                &[
                    ("CLUSTER_NAMES", "a"),
                    ("USERNAME_TEMPLATE", "{{SessionName}}"),
                ],
                Err("unknown placeholder"),
            ),
            (
                &[("CLUSTER_NAMES", "a"), ("USERNAME_TEMPLATE", "x{{UserName")],
                Err("unclosed"),
            ),
            (
                &[
                    ("CLUSTER_NAMES", "a"),
                    (
                        "USERNAME_TEMPLATE_ROLE",
                        "{{AccountID}}:{{RoleName}}:{{SessionNameRaw}}",
                    ),
                ],
                Ok(()),
            ),
            (
                &[
                    ("CLUSTER_NAMES", "a"),
                    ("USERNAME_TEMPLATE_ROLE", "{{UserName}}"),
                ],
                Err("USERNAME_TEMPLATE_ROLE"),
            ),
            (
                &[
                    ("CLUSTER_NAMES", "a"),
                    ("ADMIN_PERMISSION_SETS", "Platform_Admin Read.Only"),
                    ("ADMIN_IAM_GROUPS", "eks-admins ops@corp"),
                ],
                Ok(()),
            ),
            (
                &[
                    ("CLUSTER_NAMES", "a"),
                    ("ADMIN_PERMISSION_SETS", "Admin,Ops Admin/x"),
                ],
                Err("ADMIN_PERMISSION_SETS"),
            ),
            (
                &[
                    ("CLUSTER_NAMES", "a"),
                    ("ADMIN_PERMISSION_SETS", &"x".repeat(33)),
                ],
                Err("1-32"),
            ),
            (
                &[("CLUSTER_NAMES", "a"), ("ADMIN_IAM_GROUPS", "a/b")],
                Err("ADMIN_IAM_GROUPS"),
            ),
            (
                &[
                    ("CLUSTER_NAMES", "a"),
                    (
                        "FUNCTION_ROLE_ARN",
                        "arn:aws:iam::123456789012:role/service/fn",
                    ),
                ],
                Ok(()),
            ),
            (
                &[
                    ("CLUSTER_NAMES", "a"),
                    ("FUNCTION_ROLE_ARN", "arn:aws:iam::123456789012:user/fn"),
                ],
                Err("FUNCTION_ROLE_ARN"),
            ),
            (&[("CLUSTER_NAMES", "a"), ("MAX_GRANT_HOURS", "12")], Ok(())),
            (
                &[("CLUSTER_NAMES", "a"), ("MAX_GRANT_HOURS", "0")],
                Err("MAX_GRANT_HOURS"),
            ),
            (
                &[("CLUSTER_NAMES", "a"), ("MAX_GRANT_HOURS", "8785")],
                Err("MAX_GRANT_HOURS"),
            ),
            (
                &[
                    ("CLUSTER_NAMES", "a"),
                    ("ADMIN_EXPIRY_TAG_KEY", "EKS-Cluster-Admin"),
                ],
                Err("ADMIN_EXPIRY_TAG_KEY"),
            ),
            (
                &[
                    ("CLUSTER_NAMES", "a"),
                    ("ADMIN_GROUPS", "system:masters  ops"),
                ],
                Ok(()),
            ),
            (&[("CLUSTER_NAMES", "a"), ("MAX_REMOVALS", "0")], Ok(())),
            (
                &[("CLUSTER_NAMES", "a"), ("MAX_REMOVALS", "-1")],
                Err("MAX_REMOVALS"),
            ),
            (
                &[("CLUSTER_NAMES", "a"), ("CLUSTER_TIMEOUT_SECONDS", "0")],
                Err("CLUSTER_TIMEOUT_SECONDS"),
            ),
            (
                &[("CLUSTER_NAMES", "a"), ("CLUSTER_TIMEOUT_SECONDS", "5")],
                Ok(()),
            ),
            (
                &[("CLUSTER_NAMES", "a"), ("DEPLOYMENT_ID", "viewers")],
                Ok(()),
            ),
            (
                &[("CLUSTER_NAMES", "a"), ("DEPLOYMENT_ID", "Viewers")],
                Err("DEPLOYMENT_ID"),
            ),
            (
                &[("CLUSTER_NAMES", "a"), ("DEPLOYMENT_ID", "a/b")],
                Err("DEPLOYMENT_ID"),
            ),
        ];
        for (vars, want) in cases {
            match (settings(vars), want) {
                (Ok(_), Ok(())) => {}
                (Err(e), Err(needle)) => {
                    assert!(
                        e.to_string().contains(needle),
                        "{vars:?}: {e} lacks {needle}"
                    )
                }
                (got, want) => panic!("{vars:?}: got {got:?}, want {want:?}"),
            }
        }
        let s = settings(&[
            ("CLUSTER_NAMES", "a b a"),
            ("ADMIN_GROUPS", "system:masters  ops"),
        ])
        .unwrap();
        assert_eq!(s.clusters, vec!["a", "b"]);
        assert_eq!(s.groups, vec!["system:masters", "ops"]);
        let s = settings(&[("CLUSTER_NAMES", "a"), ("MAX_REMOVALS", "0")]).unwrap();
        assert_eq!(s.max_removals, None, "0 means no cap");
    }

    #[test]
    fn username_rendering() {
        assert_eq!(render_username("{{UserName}}", "alice", "1"), "alice");
        assert_eq!(
            render_username("iam:{{AccountID}}:{{UserName}}", "alice", "123456789012"),
            "iam:123456789012:alice"
        );
    }
}
