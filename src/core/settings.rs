//! Settings shared by the Lambda and the CLI, read from environment variables.
//!
//! Parsing is pure: [`Settings::from_lookup`] takes a lookup function so tests need no process env.

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
pub const DEFAULT_MAX_REMOVALS: &str = "10";
/// Seconds a cluster may take (read, plan, write) unless `CLUSTER_TIMEOUT_SECONDS` says otherwise.
pub const DEFAULT_CLUSTER_TIMEOUT_SECONDS: &str = "20";
/// The log filter unless `LOG_LEVEL` says otherwise.
pub const DEFAULT_LOG_LEVEL: &str = "info";
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
    #[error("{var} is empty: set it to {meaning}")]
    Missing {
        var: &'static str,
        meaning: &'static str,
    },
    #[error("{var}={value:?} is not valid: {reason}")]
    Invalid {
        var: &'static str,
        value: String,
        reason: String,
    },
}

/// What an unset (or blank) variable means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unset {
    /// A run cannot go on without it.
    Required,
    /// This text, parsed and checked like a given value.
    Default(&'static str),
    /// Unset: this text; set but blank: a value in itself, parsed too (`EVENT_BUS=""` is off).
    DefaultUnlessBlank(&'static str),
    /// No value: the setting is off, or the template sets it (the text says which, empty for plain off).
    Absent(&'static str),
    /// Made from other settings; the text says how (Markdown, as the README shows it).
    Derived(&'static str),
}

/// One environment variable, declared once: its name, what unset means, what it means, and how its text
/// becomes a value (with the reason an operator reads when it cannot).
pub struct Setting<T> {
    pub var: &'static str,
    pub unset: Unset,
    pub meaning: &'static str,
    parse: fn(&str) -> Result<T, String>,
}

/// A setting as documentation sees it, whatever its value type (the table behind `--help` and the README).
pub trait Declared: Sync {
    fn var(&self) -> &'static str;
    fn unset(&self) -> Unset;
    fn meaning(&self) -> &'static str;
}

impl<T> Declared for Setting<T> {
    fn var(&self) -> &'static str {
        self.var
    }
    fn unset(&self) -> Unset {
        self.unset
    }
    fn meaning(&self) -> &'static str {
        self.meaning
    }
}

impl Unset {
    /// The default as the README's Configuration table writes it.
    pub fn markdown(self) -> String {
        match self {
            Unset::Required => "(required)".into(),
            Unset::Default(t) | Unset::DefaultUnlessBlank(t) => format!("`{t}`"),
            Unset::Absent("") => "(none)".into(),
            Unset::Absent(why) => format!("(none; {why})"),
            Unset::Derived(how) => how.into(),
        }
    }
}

impl<T> Setting<T> {
    /// The variable's value: parsed from its text, or from the default when unset; `None` only for a setting
    /// without a value when unset ([`Unset::Absent`], [`Unset::Derived`]).
    pub fn read(&self, get: &dyn Fn(&str) -> Option<String>) -> Result<Option<T>, ConfigError> {
        let given = get(self.var).map(|v| v.trim().to_string());
        let text = match (given, self.unset) {
            (Some(v), Unset::DefaultUnlessBlank(_)) => v,
            (Some(v), _) if !v.is_empty() => v,
            (_, Unset::Required) => {
                return Err(ConfigError::Missing {
                    var: self.var,
                    meaning: self.meaning,
                });
            }
            (_, Unset::Default(d) | Unset::DefaultUnlessBlank(d)) => d.to_string(),
            (_, Unset::Absent(_) | Unset::Derived(_)) => return Ok(None),
        };
        (self.parse)(&text)
            .map(Some)
            .map_err(|reason| ConfigError::Invalid {
                var: self.var,
                value: text,
                reason,
            })
    }

    /// The value of a setting that always has one (required, or with a default).
    pub fn value(&self, get: &dyn Fn(&str) -> Option<String>) -> Result<T, ConfigError> {
        self.read(get)?.ok_or(ConfigError::Missing {
            var: self.var,
            meaning: self.meaning,
        })
    }
}

/// Every setting the function reads, in the order `--help` and the README list them.
pub static SETTINGS: [&dyn Declared; 23] = [
    &CLUSTER_NAMES,
    &ADMIN_TAG_KEY,
    &ADMIN_EXPIRY_TAG_KEY,
    &MAX_GRANT_HOURS,
    &EVENT_BUS,
    &EXPIRY_SCHEDULE_GROUP,
    &EXPIRY_SCHEDULE_NAME,
    &EXPIRY_SCHEDULE_ROLE_ARN,
    &EXPIRY_SCHEDULE_TARGET_ARN,
    &ADMIN_GROUPS,
    &USERNAME_TEMPLATE,
    &USERNAME_TEMPLATE_ROLE,
    &ADMIN_PERMISSION_SETS,
    &ADMIN_IAM_GROUPS,
    &ADMIN_GROUP_MEMBER_PATH,
    &FUNCTION_ROLE_ARN,
    &ACCESS_STORE,
    &ACCESS_POLICIES,
    &DRY_RUN,
    &DEPLOYMENT_ID,
    &MAX_REMOVALS,
    &CLUSTER_TIMEOUT_SECONDS,
    &LOG_LEVEL,
];

pub static CLUSTER_NAMES: Setting<Vec<String>> = Setting {
    var: "CLUSTER_NAMES",
    unset: Unset::Required,
    meaning: "the space-separated names of the EKS clusters to manage",
    parse: parse_clusters,
};
pub static ADMIN_TAG_KEY: Setting<String> = Setting {
    var: "ADMIN_TAG_KEY",
    unset: Unset::Default(DEFAULT_TAG_KEY),
    meaning: "the IAM tag key that grants admin (on users and roles)",
    parse: parse_tag_key,
};
pub static ADMIN_EXPIRY_TAG_KEY: Setting<String> = Setting {
    var: "ADMIN_EXPIRY_TAG_KEY",
    unset: Unset::Derived("`ADMIN_TAG_KEY` + `-expires`"),
    meaning: "the IAM tag key holding when a tag grant expires (an RFC 3339 UTC time), other than ADMIN_TAG_KEY",
    parse: parse_tag_key,
};
pub static MAX_GRANT_HOURS: Setting<Duration> = Setting {
    var: "MAX_GRANT_HOURS",
    unset: Unset::Absent(""),
    meaning: "when set (1-8784), every tag grant must expire within this many hours",
    parse: parse_max_grant,
};
pub static EVENT_BUS: Setting<Option<String>> = Setting {
    var: "EVENT_BUS",
    unset: Unset::DefaultUnlessBlank(DEFAULT_EVENT_BUS),
    meaning: "the EventBridge bus (name or ARN) every audit record is put on as an event; empty: none",
    parse: parse_event_bus,
};
pub static EXPIRY_SCHEDULE_GROUP: Setting<String> = expiry_schedule_var(
    "EXPIRY_SCHEDULE_GROUP",
    "the expiry wake-up's EventBridge Scheduler schedule group (all four EXPIRY_SCHEDULE_ variables or none)",
);
pub static EXPIRY_SCHEDULE_NAME: Setting<String> = expiry_schedule_var(
    "EXPIRY_SCHEDULE_NAME",
    "the expiry wake-up's one-time schedule",
);
pub static EXPIRY_SCHEDULE_ROLE_ARN: Setting<String> = expiry_schedule_var(
    "EXPIRY_SCHEDULE_ROLE_ARN",
    "the role EventBridge Scheduler invokes the function with",
);
pub static EXPIRY_SCHEDULE_TARGET_ARN: Setting<String> = expiry_schedule_var(
    "EXPIRY_SCHEDULE_TARGET_ARN",
    "the function's ARN, which the wake-up invokes",
);
pub static ADMIN_GROUPS: Setting<Vec<String>> = Setting {
    var: "ADMIN_GROUPS",
    unset: Unset::Default(DEFAULT_GROUPS),
    meaning: "the space-separated Kubernetes groups of an admin",
    parse: parse_k8s_groups,
};
pub static USERNAME_TEMPLATE: Setting<String> = Setting {
    var: "USERNAME_TEMPLATE",
    unset: Unset::Default(DEFAULT_USERNAME_TEMPLATE),
    meaning: "the Kubernetes username of a user's grant; placeholders {{UserName}}, {{AccountID}}",
    parse: |t| check_template(t, &TEMPLATE_PLACEHOLDERS).map(|()| t.to_string()),
};
pub static USERNAME_TEMPLATE_ROLE: Setting<String> = Setting {
    var: "USERNAME_TEMPLATE_ROLE",
    unset: Unset::Default(DEFAULT_USERNAME_TEMPLATE_ROLE),
    meaning: "the Kubernetes username of a role's grant; {{RoleName}}, {{AccountID}}, and EKS's own {{SessionName}}, \
              {{SessionNameRaw}}",
    parse: |t| check_template(t, &ROLE_TEMPLATE_PLACEHOLDERS).map(|()| t.to_string()),
};
pub static ADMIN_PERMISSION_SETS: Setting<Vec<String>> = Setting {
    var: "ADMIN_PERMISSION_SETS",
    unset: Unset::Absent(""),
    meaning: "the space-separated IAM Identity Center permission-set names whose roles in this account are admins",
    parse: |t| {
        iam_names(
            t,
            32,
            "a permission-set name has 1-32 letters, digits or +=,.@_-",
        )
    },
};
pub static ADMIN_IAM_GROUPS: Setting<Vec<String>> = Setting {
    var: "ADMIN_IAM_GROUPS",
    unset: Unset::Absent(""),
    meaning: "the space-separated IAM group names whose members are admins",
    parse: |t| {
        iam_names(
            t,
            128,
            "an IAM group name has 1-128 letters, digits or +=,.@_-",
        )
    },
};
pub static ADMIN_GROUP_MEMBER_PATH: Setting<String> = Setting {
    var: "ADMIN_GROUP_MEMBER_PATH",
    unset: Unset::Default(DEFAULT_ADMIN_GROUP_MEMBER_PATH),
    meaning: "the IAM path an admin group's member must be under to be granted; /: any path, unprotected by the \
              shipped policies",
    parse: parse_member_path,
};
pub static FUNCTION_ROLE_ARN: Setting<(String, String)> = Setting {
    var: "FUNCTION_ROLE_ARN",
    unset: Unset::Absent("the template sets it"),
    meaning: "the function's own role: never made an admin; its account is the function's",
    parse: parse_function_role,
};
pub static ACCESS_STORE: Setting<AccessStore> = Setting {
    var: "ACCESS_STORE",
    unset: Unset::Default("auto"),
    meaning: "auto (by each cluster's authentication mode), aws-auth or access-entries",
    parse: parse_access_store,
};
pub static ACCESS_POLICIES: Setting<Vec<AccessPolicy>> = Setting {
    var: "ACCESS_POLICIES",
    unset: Unset::Default(DEFAULT_ACCESS_POLICIES),
    meaning: "the comma-separated EKS access policies of an access-entry grant, each cluster-scoped unless followed \
              by =ns1 ns2",
    parse: parse_access_policies,
};
pub static DRY_RUN: Setting<bool> = Setting {
    var: "DRY_RUN",
    unset: Unset::Default("false"),
    meaning: "true: plan and report, never write",
    parse: |t| parse_bool(t).ok_or_else(|| "expected true or false".into()),
};
pub static DEPLOYMENT_ID: Setting<String> = Setting {
    var: "DEPLOYMENT_ID",
    unset: Unset::Default(DEFAULT_DEPLOYMENT_ID),
    meaning: "names this deployment's marks and ownership records",
    parse: |t| {
        valid_deployment_id(t).then(|| t.to_string()).ok_or_else(|| {
            "expected 1-40 lowercase letters, digits or '-', starting with a letter and not ending with '-'".into()
        })
    },
};
pub static MAX_REMOVALS: Setting<Option<usize>> = Setting {
    var: "MAX_REMOVALS",
    unset: Unset::Default(DEFAULT_MAX_REMOVALS),
    meaning: "removals one full reconcile may make per cluster before the guard refuses them; 0: no cap",
    parse: |t| match t.parse::<usize>() {
        Ok(0) => Ok(None),
        Ok(n) => Ok(Some(n)),
        Err(_) => Err("expected a whole number (0: no cap)".into()),
    },
};
pub static CLUSTER_TIMEOUT_SECONDS: Setting<Duration> = Setting {
    var: "CLUSTER_TIMEOUT_SECONDS",
    unset: Unset::Default(DEFAULT_CLUSTER_TIMEOUT_SECONDS),
    meaning: "the longest one cluster may take (its read and its write), 1-900 seconds",
    parse: |t| match t.parse::<u64>() {
        Ok(n @ 1..=900) => Ok(Duration::from_secs(n)),
        _ => Err("expected whole seconds from 1 to 900".into()),
    },
};
/// Read by the log set-up (a `tracing` filter), declared here so that it is listed with the others.
pub static LOG_LEVEL: Setting<String> = Setting {
    var: "LOG_LEVEL",
    unset: Unset::Default(DEFAULT_LOG_LEVEL),
    meaning: "error, warn, info, debug (tracing filter syntax)",
    parse: |t| Ok(t.to_string()),
};

/// One of the four variables of the expiry wake-up.
const fn expiry_schedule_var(var: &'static str, meaning: &'static str) -> Setting<String> {
    Setting {
        var,
        unset: Unset::Absent("the template sets it"),
        meaning,
        parse: |t| Ok(t.to_string()),
    }
}

/// `--help`'s list of settings: each variable, its default and its meaning.
pub fn help_text() -> String {
    let mut out =
        String::from("Settings (environment variables, the same for the Lambda and the CLI):\n");
    for s in SETTINGS {
        let unset = s.unset().markdown().replace('`', "");
        out.push_str(&format!(
            "  {} [default: {unset}]\n      {}\n",
            s.var(),
            s.meaning()
        ));
    }
    out
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
    /// The access levels the grants are made of. Today always the one [`crate::core::levels::legacy_level`]
    /// made from the variables above (`ACCESS_LEVELS` is not read yet).
    pub levels: Vec<crate::core::levels::Level>,
    /// Whether the levels were declared (`ACCESS_LEVELS`) rather than made from today's variables: only then
    /// do the stores record each grant's levels (`eks-admin-sync-levels`), so that a deployment without
    /// levels writes what it wrote before them. Always `false` until `ACCESS_LEVELS` is read.
    pub levels_declared: bool,
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
    fn read(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let vars = [
            &EXPIRY_SCHEDULE_GROUP,
            &EXPIRY_SCHEDULE_NAME,
            &EXPIRY_SCHEDULE_ROLE_ARN,
            &EXPIRY_SCHEDULE_TARGET_ARN,
        ];
        let mut vals = Vec::with_capacity(vars.len());
        for v in vars {
            vals.push(v.read(get)?);
        }
        if vals.iter().all(Option::is_none) {
            return Ok(None);
        }
        if let Some(i) = vals.iter().position(Option::is_none) {
            return Err(ConfigError::Invalid {
                var: vars[i].var,
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

    /// Reads settings through `get`, which returns a variable's value if it is set: each as declared in
    /// [`SETTINGS`], then the rules that tie two of them together.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get: &dyn Fn(&str) -> Option<String> = &get;
        let tag_key = ADMIN_TAG_KEY.value(get)?;
        let expiry_tag_key = expiry_tag_key(get, &tag_key)?;
        let (function_role, account) = FUNCTION_ROLE_ARN.read(get)?.unzip();
        let mut settings = Settings {
            clusters: CLUSTER_NAMES.value(get)?,
            tag_key,
            expiry_tag_key,
            max_grant: MAX_GRANT_HOURS.read(get)?,
            event_bus: EVENT_BUS.value(get)?,
            expiry_schedule: ExpirySchedule::read(get)?,
            groups: ADMIN_GROUPS.value(get)?,
            username_template: USERNAME_TEMPLATE.value(get)?,
            role_username_template: USERNAME_TEMPLATE_ROLE.value(get)?,
            permission_sets: ADMIN_PERMISSION_SETS.read(get)?.unwrap_or_default(),
            iam_groups: ADMIN_IAM_GROUPS.read(get)?.unwrap_or_default(),
            group_member_path: ADMIN_GROUP_MEMBER_PATH.value(get)?,
            function_role,
            account,
            dry_run: DRY_RUN.value(get)?,
            max_removals: MAX_REMOVALS.value(get)?,
            cluster_timeout: CLUSTER_TIMEOUT_SECONDS.value(get)?,
            deployment_id: DEPLOYMENT_ID.value(get)?,
            access_store: ACCESS_STORE.value(get)?,
            access_policies: ACCESS_POLICIES.value(get)?,
            levels: Vec::new(),
            levels_declared: false,
        };
        settings.levels = vec![crate::core::levels::legacy_level(&settings)];
        Ok(settings)
    }

    /// Whether any level is granted by IAM group membership (a user's groups must then be read).
    pub fn names_iam_groups(&self) -> bool {
        self.levels.iter().any(|l| !l.iam_groups.is_empty())
    }

    pub fn manages(&self, cluster: &str) -> bool {
        self.clusters.iter().any(|c| c == cluster)
    }
}

/// `ADMIN_EXPIRY_TAG_KEY`, or the admin tag key + `-expires`; never the admin tag key itself (IAM tag keys
/// are case-insensitive).
fn expiry_tag_key(
    get: &dyn Fn(&str) -> Option<String>,
    tag_key: &str,
) -> Result<String, ConfigError> {
    let key = ADMIN_EXPIRY_TAG_KEY
        .read(get)?
        .unwrap_or_else(|| format!("{tag_key}-expires"));
    if let Err(reason) = parse_tag_key(&key) {
        return Err(ConfigError::Invalid {
            var: ADMIN_EXPIRY_TAG_KEY.var,
            value: key,
            reason: format!(
                "{reason} (made from ADMIN_TAG_KEY + -expires: set ADMIN_EXPIRY_TAG_KEY)"
            ),
        });
    }
    if key.eq_ignore_ascii_case(tag_key) {
        return Err(ConfigError::Invalid {
            var: ADMIN_EXPIRY_TAG_KEY.var,
            value: key,
            reason:
                "expected an IAM tag key other than ADMIN_TAG_KEY (IAM tag keys ignore letter case)"
                    .into(),
        });
    }
    Ok(key)
}

fn parse_clusters(text: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for c in text.split_whitespace() {
        if !valid_cluster_name(c) {
            return Err(format!(
                "{c:?}: an EKS cluster name has 1-100 letters, digits, '-' or '_' and starts with a letter or digit \
                 (separate names with spaces)"
            ));
        }
        if !out.iter().any(|o| o == c) {
            out.push(c.to_string());
        }
    }
    Ok(out)
}

fn parse_tag_key(text: &str) -> Result<String, String> {
    if text.chars().count() > 128 {
        return Err("IAM tag keys have at most 128 characters".into());
    }
    Ok(text.to_string())
}

fn parse_max_grant(text: &str) -> Result<Duration, String> {
    match text.parse::<u64>() {
        Ok(h @ 1..=MAX_GRANT_HOURS_LIMIT) => Ok(Duration::from_secs(h * 3600)),
        _ => Err(format!(
            "expected whole hours from 1 to {MAX_GRANT_HOURS_LIMIT}, or unset for no limit"
        )),
    }
}

fn parse_event_bus(text: &str) -> Result<Option<String>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let ok = text.len() <= 1600
        && (text.starts_with("arn:")
            || text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c)));
    ok.then(|| Some(text.to_string()))
        .ok_or_else(|| "expected an event bus name or ARN (empty: do not publish)".into())
}

fn parse_k8s_groups(text: &str) -> Result<Vec<String>, String> {
    let groups: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    if groups.is_empty() {
        return Err("at least one Kubernetes group is needed".into());
    }
    Ok(groups)
}

fn parse_member_path(text: &str) -> Result<String, String> {
    valid_iam_path(text).then(|| text.to_string()).ok_or_else(|| {
        "expected an IAM path: / or /name/…/ (1-512 characters, each segment of letters, digits or +=,.@_-)"
            .into()
    })
}

/// The function's role name and account, from its ARN.
fn parse_function_role(text: &str) -> Result<(String, String), String> {
    let (account, _, name) = crate::core::grants::parse_role_arn(text)
        .ok_or("expected an IAM role ARN (arn:aws:iam::ACCOUNT:role/PATH/NAME)")?;
    Ok((name.to_string(), account.to_string()))
}

fn parse_access_store(text: &str) -> Result<AccessStore, String> {
    match text {
        "auto" => Ok(AccessStore::Auto),
        "aws-auth" => Ok(AccessStore::AwsAuth),
        "access-entries" => Ok(AccessStore::AccessEntries),
        _ => Err("expected auto, aws-auth or access-entries".into()),
    }
}

/// `ACCESS_POLICIES`: comma-separated policies, each a name under [`ACCESS_POLICY_ARN_PREFIX`] or a full
/// ARN, cluster-scoped unless followed by `=ns1 ns2` (namespace scope), e.g.
/// `AmazonEKSClusterAdminPolicy` or `AmazonEKSAdminPolicy=team-a team-b, AmazonEKSViewPolicy`.
pub fn parse_access_policies(raw: &str) -> Result<Vec<AccessPolicy>, String> {
    let mut out: Vec<AccessPolicy> = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, namespaces) = match item.split_once('=') {
            Some((n, ns)) => (n.trim(), Some(ns)),
            None => (item, None),
        };
        let arn = crate::core::levels::policy_arn(name)?;
        let scope = match namespaces {
            None => PolicyScope::Cluster,
            Some(ns) => {
                let mut list: Vec<String> = ns.split_whitespace().map(str::to_string).collect();
                list.sort();
                list.dedup();
                if list.is_empty() {
                    return Err(format!("{name}= names no namespace"));
                }
                if let Some(bad) = list
                    .iter()
                    .find(|n| !crate::core::levels::valid_namespace(n))
                {
                    return Err(format!("{bad:?} is not a Kubernetes namespace name"));
                }
                PolicyScope::Namespaces { namespaces: list }
            }
        };
        if out.iter().any(|p| p.arn == arn) {
            return Err(format!("{name} is given twice"));
        }
        out.push(AccessPolicy { arn, scope });
    }
    if out.is_empty() {
        return Err("at least one access policy is needed".into());
    }
    out.sort();
    Ok(out)
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
fn iam_names(text: &str, max: usize, reason: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for n in text.split_whitespace() {
        let ok = n.len() <= max
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
        if !ok {
            return Err(format!("{n:?}: {reason} (separate names with spaces)"));
        }
        if !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    Ok(out)
}

/// A username template: every `{{...}}` one of `placeholders`, no spaces.
fn check_template(t: &str, placeholders: &[&str]) -> Result<(), String> {
    // Every `{{...}}` must be one we expand; anything else would end up in the username verbatim,
    // or be expanded by EKS itself at authentication time (e.g. `{{SessionName}}`), which is not meant here.
    let mut rest = t;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start..];
        let Some(end) = after.find("}}") else {
            return Err("unclosed '{{'".into());
        };
        let placeholder = &after[..end + 2];
        if !placeholders.contains(&placeholder) {
            return Err(format!(
                "unknown placeholder {placeholder}; use {}",
                placeholders.join(" or ")
            ));
        }
        rest = &after[end + 2..];
    }
    if t.chars().any(char::is_whitespace) {
        return Err("a username cannot contain spaces".into());
    }
    Ok(())
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
    fn derived_expiry_key_is_checked_too() {
        let long = "k".repeat(125);
        let e = settings(&[("CLUSTER_NAMES", "a"), ("ADMIN_TAG_KEY", &long)]).unwrap_err();
        assert!(e.to_string().contains("ADMIN_EXPIRY_TAG_KEY"), "{e}");
        let s = settings(&[
            ("CLUSTER_NAMES", "a"),
            ("ADMIN_TAG_KEY", &long),
            ("ADMIN_EXPIRY_TAG_KEY", "until"),
        ])
        .unwrap();
        assert_eq!(s.expiry_tag_key, "until");
    }

    /// Every declared default is a value its own parser takes, so an unset variable can never fail a start.
    #[test]
    fn every_setting_is_declared_once_and_its_default_parses() {
        let mut vars: Vec<&str> = SETTINGS.iter().map(|s| s.var()).collect();
        vars.sort();
        vars.dedup();
        assert_eq!(vars.len(), SETTINGS.len(), "a variable declared twice");
        let s = settings(&[("CLUSTER_NAMES", "a")]).unwrap();
        assert_eq!(s.access_policies.len(), 1);
        let help = help_text();
        for d in SETTINGS {
            assert!(help.contains(d.var()), "{} missing from --help", d.var());
            assert!(!d.meaning().is_empty());
        }
        assert!(help.contains("MAX_REMOVALS [default: 10]"), "{help}");
    }

    /// The README's Configuration table lists exactly the declared settings (plus the AWS SDK's and TLS
    /// variables, which are not ours), each with its declared default.
    #[test]
    fn readme_lists_every_setting_with_its_default() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let table = readme
            .split("## Configuration")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .unwrap();
        let mut rows = std::collections::BTreeMap::new();
        for line in table.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.split(" | ").collect();
            let var = cells[0].trim_start_matches("| ").trim_matches('`');
            rows.insert(var.to_string(), cells[1].to_string());
        }
        let not_ours = ["AWS_REGION", "SSL_CERT_FILE"];
        for d in SETTINGS {
            let Some(default) = rows.remove(d.var()) else {
                panic!("README's Configuration table lacks {}", d.var());
            };
            assert_eq!(default, d.unset().markdown(), "{}'s default", d.var());
        }
        rows.retain(|var, _| !not_ours.iter().any(|n| var.starts_with(n)));
        assert!(
            rows.is_empty(),
            "README lists undeclared settings: {rows:?}"
        );
    }

    /// The template sets exactly the declared settings on the function.
    #[test]
    fn template_sets_every_setting() {
        let template =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml")).unwrap();
        let (_, after) = template
            .split_once("      Environment:\n        Variables:\n")
            .unwrap();
        let mut set: Vec<&str> = after
            .lines()
            .take_while(|l| l.starts_with("          "))
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.trim().split_once(':').map(|(k, _)| k))
            .collect();
        set.sort();
        let mut declared: Vec<&str> = SETTINGS.iter().map(|s| s.var()).collect();
        declared.sort();
        assert_eq!(set, declared);
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
