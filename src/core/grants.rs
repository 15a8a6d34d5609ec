//! IAM facts → the grants each managed cluster should have. Pure.
//!
//! A grant speaks of a principal and what it should be given (username, groups), not of how a store writes
//! it: `aws-auth` writes a `mapUsers` row, access entries an entry and its policies.

use crate::core::levels::{self, Level, LevelScope};
use crate::core::settings::{
    AccessPolicy, PolicyScope, Settings, parse_utc, render_role_username, render_username,
};
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};

/// The kind of IAM principal a grant is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    #[default]
    User,
    Role,
}

impl PrincipalKind {
    /// The kind an IAM ARN names (`…:user/…`, `…:role/…`), if either.
    pub fn of_arn(arn: &str) -> Option<Self> {
        let resource = arn.splitn(6, ':').nth(5)?;
        if resource.starts_with("user/") {
            Some(PrincipalKind::User)
        } else if resource.starts_with("role/") {
            Some(PrincipalKind::Role)
        } else {
            None
        }
    }
}

/// What makes a principal an admin.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// The tag key it carries (with a value naming the cluster, or `true`): users and roles.
    Tag(String),
    /// The IAM Identity Center permission set its role was made for (`ADMIN_PERMISSION_SETS`).
    PermissionSet(String),
    /// The IAM group the user is a member of (`ADMIN_IAM_GROUPS`).
    IamGroup(String),
}

impl Source {
    /// Whether this source could have granted `g`, when `g` does not say which source made it (a grant
    /// written before grants recorded their source): a permission set counts for every Identity Center
    /// role, a group for every user, the tag for anyone.
    pub fn could_grant(&self, g: &Grant) -> bool {
        match self {
            Source::Tag(_) => true,
            Source::PermissionSet(_) => {
                g.kind == PrincipalKind::Role
                    && role_name_of_arn(&g.arn)
                        .and_then(permission_set_of_name)
                        .is_some()
            }
            Source::IamGroup(_) => g.kind == PrincipalKind::User,
        }
    }

    /// Whether both are the same kind of source (the tag, a permission set, a group).
    pub fn same_kind(&self, other: &Source) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }

    /// The source as `tag:<key>`, `permission-set:<name>` or `iam-group:<name>` reads back; `None` for
    /// anything else (a grant whose source cannot be read is judged as one that does not say).
    pub fn parse(text: &str) -> Option<Source> {
        let (kind, name) = text.split_once(':')?;
        if name.is_empty() {
            return None;
        }
        match kind {
            "tag" => Some(Source::Tag(name.to_string())),
            "permission-set" => Some(Source::PermissionSet(name.to_string())),
            "iam-group" => Some(Source::IamGroup(name.to_string())),
            _ => None,
        }
    }

    /// The source as an access-entry tag value holds it. Tag values may hold letters, digits, spaces and
    /// `+ - = . _ : / @` (EKS `TagResource`, AWS tag restrictions), not the `,` that IAM allows in
    /// permission-set and group names: a `,` is written as a space, which no such name can hold.
    pub fn to_tag_value(&self) -> String {
        match self {
            Source::Tag(_) => self.to_string(),
            Source::PermissionSet(_) | Source::IamGroup(_) => self.to_string().replace(',', " "),
        }
    }

    /// The source an access-entry tag value holds (see [`Source::to_tag_value`]).
    pub fn from_tag_value(value: &str) -> Option<Source> {
        match Source::parse(value)? {
            Source::PermissionSet(n) => Some(Source::PermissionSet(n.replace(' ', ","))),
            Source::IamGroup(n) => Some(Source::IamGroup(n.replace(' ', ","))),
            tag => Some(tag),
        }
    }
}

/// The field (`aws-auth`) and tag (access entries) that record a grant's levels beside its marks, when the
/// deployment declares levels: see [`levels_record`].
pub const LEVELS_RECORD_KEY: &str = "eks-admin-sync-levels";

/// The levels a grant holds as both stores record them: `LEVEL:tag`, `LEVEL:permission-set:NAME` or
/// `LEVEL:iam-group:NAME`, joined by `/`, which no level name and no IAM name holds. A level's tag key is its
/// configuration's, so `tag` names none; a `,` of a name is written as a space (tag values allow spaces, IAM
/// names hold none), as in [`Source::to_tag_value`].
pub fn levels_record(held: &[LevelGrant]) -> String {
    held.iter()
        .map(|h| match &h.source {
            Source::Tag(_) => format!("{}:tag", h.level),
            other => format!("{}:{}", h.level, other.to_tag_value()),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// What a levels record says made each level, in its order: `None` for a part that cannot be read or a tag of
/// a level no longer configured (the guard judges such a level as one that does not say what made it).
pub fn read_levels_record(text: &str, levels: &[Level]) -> Vec<(String, Option<Source>)> {
    text.split('/')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (level, made) = part.split_once(':').unwrap_or((part, ""));
            let source = if made == "tag" {
                levels
                    .iter()
                    .find(|l| l.name == level)
                    .and_then(|l| l.tag_key.clone())
                    .map(Source::Tag)
            } else {
                Source::from_tag_value(made).filter(|s| !matches!(s, Source::Tag(_)))
            };
            (level.to_string(), source)
        })
        .collect()
}

/// The one rule by which a configured permission-set or group name names what IAM has: exactly, letter
/// case included (IAM compares ARNs in policies case-sensitively, so the SCP's group ARNs match this way).
/// Granting and the removal guard both use it: a name that grants nobody is the name the guard suspects.
pub fn names_match(configured: &str, in_iam: &str) -> bool {
    configured == in_iam
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Tag(key) => write!(f, "tag:{key}"),
            Source::PermissionSet(name) => write!(f, "permission-set:{name}"),
            Source::IamGroup(name) => write!(f, "iam-group:{name}"),
        }
    }
}

/// Where IAM Identity Center keeps the roles it makes for permission sets (a region segment may follow).
pub const SSO_ROLE_PATH: &str = "/aws-reserved/sso.amazonaws.com/";
/// The name prefix of those roles: `AWSReservedSSO_<permission set>_<suffix>`.
pub const SSO_ROLE_PREFIX: &str = "AWSReservedSSO_";
/// Where AWS keeps service-linked roles (EKS refuses entries for them; never admins).
pub const SERVICE_LINKED_PATH: &str = "/aws-service-role/";

/// The permission set an Identity Center role name was made for: between the prefix and the **last** `_`
/// (permission-set names may contain `_`; the suffix never does).
pub fn permission_set_of_name(role_name: &str) -> Option<&str> {
    let rest = role_name.strip_prefix(SSO_ROLE_PREFIX)?;
    let (set, suffix) = rest.rsplit_once('_')?;
    (!set.is_empty() && !suffix.is_empty()).then_some(set)
}

impl serde::Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What IAM says about one principal (from `GetUser` or `GetAccountAuthorizationDetails`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub kind: PrincipalKind,
    pub name: String,
    /// The ARN exactly as IAM returns it, path included.
    pub arn: String,
    /// IAM's unique id (`AIDA…`), when IAM returned it.
    pub id: Option<String>,
    pub tags: Vec<(String, String)>,
    /// A user's IAM groups (names), when IAM was asked (roles have none).
    pub groups: Vec<String>,
}

impl Principal {
    /// The permission set this role was made for by IAM Identity Center, if it is such a role.
    pub fn permission_set(&self) -> Option<&str> {
        if self.kind != PrincipalKind::Role || !self.path().starts_with(SSO_ROLE_PATH) {
            return None;
        }
        permission_set_of_name(&self.name)
    }

    /// The principal's path (`/` or `/team/…/`), from its ARN.
    pub fn path(&self) -> String {
        let resource = self.arn.splitn(6, ':').nth(5).unwrap_or_default();
        let after_kind = resource.split_once('/').map_or("", |(_, rest)| rest);
        match after_kind.rfind('/') {
            Some(i) => format!("/{}", &after_kind[..=i]),
            None => "/".into(),
        }
    }

    /// The value of the admin tag, if the user carries the key at all (matched case-insensitively).
    pub fn tag_value<'a>(&'a self, key: &str) -> Option<&'a str> {
        self.tags
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

/// What one principal should be given on one cluster (or, in a plan, what it has).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Grant {
    /// The principal's ARN exactly as IAM returns it (path included).
    pub arn: String,
    pub kind: PrincipalKind,
    /// What makes it an admin (desired grants); `None` on what a store holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    pub username: String,
    pub groups: Vec<String>,
    /// IAM's unique id of the principal (`AIDA…`), when known: a grant is bound to the principal, not
    /// only to its ARN (a user deleted and re-created, or renamed onto the name, gets a new id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// EKS access policies (access entries only; empty for `aws-auth`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<AccessPolicy>,
    /// When a tag grant expires (RFC 3339 UTC, from `ADMIN_EXPIRY_TAG_KEY`); `None`: it does not. Not
    /// written to any store: IAM says it, and the run at that time revokes. With several levels, the first
    /// of their expiries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// The levels IAM grants (desired grants; empty on what a store holds), in the configured order. `source`
    /// is the first one's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub levels: Vec<LevelGrant>,
    /// The levels as the stores record them ([`levels_record`]): on a desired grant when the deployment
    /// declares levels, on a held one when its store recorded them; `None` otherwise (nothing is written).
    #[serde(skip)]
    pub levels_record: Option<String>,
}

/// One level a principal holds on a cluster: what granted it, until when, and where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct LevelGrant {
    pub level: String,
    pub source: Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// The namespaces the tag names, for a level scoped by the tag (sorted); empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

/// The grants for one cluster, plus why some tagged users were left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub grants: Vec<Grant>,
    pub notes: Vec<String>,
    /// ARNs whose tag grant has expired (and that nothing else makes an admin): their removal is an
    /// expiry, audited as `expire`.
    pub expired: Vec<String>,
}

impl Desired {
    /// The earliest expiry among the grants, if any expires.
    pub fn next_expiry(&self) -> Option<&str> {
        self.grants
            .iter()
            .filter_map(|g| g.expires.as_deref())
            .min()
    }
}

/// An expiry as the grant and the notes write it.
fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Why a tag grant is not (or no longer) in effect, from its expiry tag.
enum Refused {
    /// The expiry has passed: the grant's removal is an expiry.
    Expired(String),
    /// The value cannot be read, or is further away than `MAX_GRANT_HOURS` allows.
    Invalid(String),
}

/// The expiry of a tag grant: `Ok(None)` when it does not expire.
fn expiry_of(
    p: &Principal,
    level: &Level,
    settings: &Settings,
    now: jiff::Timestamp,
) -> Result<Option<jiff::Timestamp>, Refused> {
    let Some(key) = level.expiry_tag_key.as_deref() else {
        return Ok(None);
    };
    let Some(raw) = p.tag_value(key) else {
        return match settings.max_grant {
            Some(max) => Err(Refused::Invalid(format!(
                "has no {key} tag, and MAX_GRANT_HOURS={} requires every grant to expire; not an admin",
                max.as_secs() / 3600
            ))),
            None => Ok(None),
        };
    };
    let t = parse_utc(raw).ok_or_else(|| {
            Refused::Invalid(format!(
                "tag {key}={raw:?} is not an RFC 3339 UTC time such as 2026-12-02T18:00:00Z; not an admin"
            ))
        })?;
    if t <= now {
        return Err(Refused::Expired(format!(
            "tag {key}={raw:?}: the grant expired at {}; not an admin",
            rfc3339(t)
        )));
    }
    if let Some(max) = settings.max_grant
        && let Ok(limit) = now.checked_add(jiff::SignedDuration::from_secs(
            i64::try_from(max.as_secs()).unwrap_or(i64::MAX),
        ))
        && t > limit
    {
        return Err(Refused::Invalid(format!(
            "tag {key}={raw:?} is further away than MAX_GRANT_HOURS={} allows (until {}); not an admin",
            max.as_secs() / 3600,
            rfc3339(limit)
        )));
    }
    Ok(Some(t))
}

/// An ARN that compares, orders and hashes ignoring ASCII case, as EKS matches ARNs: the same order and
/// equality as its lowercase copy, without making one. The one ARN key of the project.
#[derive(Debug, Clone, Copy)]
pub struct ArnKey<'a>(pub &'a str);

impl PartialEq for ArnKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        // Mostly the same spelling: a plain comparison first is much cheaper than the byte-wise one.
        self.0 == other.0 || self.0.eq_ignore_ascii_case(other.0)
    }
}

impl Eq for ArnKey<'_> {}

impl Ord for ArnKey<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        // ARNs share long prefixes: skip identical 8-byte blocks (identical bytes are identical in
        // lowercase too), then compare the rest byte by byte in lowercase.
        let mut i = 0;
        while i + 8 <= a.len().min(b.len()) && a[i..i + 8] == b[i..i + 8] {
            i += 8;
        }
        a[i..]
            .iter()
            .map(u8::to_ascii_lowercase)
            .cmp(b[i..].iter().map(u8::to_ascii_lowercase))
    }
}

impl PartialOrd for ArnKey<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Hash for ArnKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut buf = [0u8; 64];
        for chunk in self.0.as_bytes().chunks(buf.len()) {
            let lower = &mut buf[..chunk.len()];
            lower.copy_from_slice(chunk);
            lower.make_ascii_lowercase();
            state.write(lower);
        }
        state.write_usize(self.0.len());
    }
}

/// Account id and resource of an IAM ARN `arn:PARTITION:iam::ACCOUNT:RESOURCE`.
fn parse_iam_arn(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (arn_lit, partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let ok = arn_lit == "arn"
        && partition.starts_with("aws")
        && service == "iam"
        && region.is_empty()
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit());
    ok.then_some((account, resource))
}

/// Account id, path (`/` or `/a/b/`) and name from an IAM ARN of `kind` (`user`, `role`).
fn parse_named_arn<'a>(arn: &'a str, kind: &str) -> Option<(&'a str, &'a str, &'a str)> {
    let (account, resource) = parse_iam_arn(arn)?;
    let rest = resource.strip_prefix(kind)?;
    if !rest.starts_with('/') {
        return None;
    }
    let cut = rest.rfind('/')?;
    let (path, name) = (&rest[..=cut], &rest[cut + 1..]);
    (!name.is_empty()).then_some((account, path, name))
}

/// Account id and user name from an IAM user ARN `arn:PARTITION:iam::ACCOUNT:user/PATH/NAME`.
pub fn parse_user_arn(arn: &str) -> Option<(&str, &str)> {
    parse_named_arn(arn, "user").map(|(account, _, name)| (account, name))
}

/// The user-name segment of a user ARN, for matching owned entries to an event's user name.
pub fn user_name_of_arn(arn: &str) -> Option<&str> {
    parse_user_arn(arn).map(|(_, n)| n)
}

/// Account id, path (`/` or `/a/b/`) and role name from an IAM role ARN `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME`.
pub fn parse_role_arn(arn: &str) -> Option<(&str, &str, &str)> {
    parse_named_arn(arn, "role")
}

/// The role-name segment of a role ARN (path or not).
pub fn role_name_of_arn(arn: &str) -> Option<&str> {
    parse_role_arn(arn).map(|(_, _, n)| n)
}

/// The kind and name an IAM user or role ARN names.
pub fn principal_of_arn(arn: &str) -> Option<(PrincipalKind, &str)> {
    user_name_of_arn(arn)
        .map(|n| (PrincipalKind::User, n))
        .or_else(|| role_name_of_arn(arn).map(|n| (PrincipalKind::Role, n)))
}

/// The ARN as `aws-auth` must hold it: a role's without its path (EKS matches a session on `role/NAME`,
/// aws-iam-authenticator #268), a user's as IAM gives it.
pub fn aws_auth_arn(arn: &str) -> std::borrow::Cow<'_, str> {
    match parse_role_arn(arn) {
        Some((_, path, name)) if path != "/" => {
            let head = &arn[..arn.len() - path.len() - name.len() - "role".len()];
            std::borrow::Cow::Owned(format!("{head}role/{name}"))
        }
        _ => std::borrow::Cow::Borrowed(arn),
    }
}

/// Why a role is never an admin, whatever it carries: `None` when it may be one.
fn never_admin(p: &Principal, settings: &Settings) -> Option<&'static str> {
    if p.kind != PrincipalKind::Role {
        return None;
    }
    if p.path().starts_with(SERVICE_LINKED_PATH) {
        return Some("is a service-linked role");
    }
    if settings
        .function_role
        .as_deref()
        .is_some_and(|f| f.eq_ignore_ascii_case(&p.name))
    {
        return Some("is this function's own role");
    }
    None
}

/// What one level is for one principal on one cluster.
#[derive(Default)]
struct Verdict {
    source: Option<Source>,
    /// The tag grant's expiry.
    expires: Option<String>,
    /// The tag granted this cluster until an expiry that has passed.
    expired: bool,
    /// The namespaces the tag names (a level scoped by the tag).
    namespaces: BTreeSet<String>,
}

fn kind_word(p: &Principal) -> &'static str {
    match p.kind {
        PrincipalKind::User => "user",
        PrincipalKind::Role => "role",
    }
}

/// What gives `p` this level on `cluster`, if anything: its tag first (while its expiry has not passed), then
/// its permission set, then its first group of the level. Notes say why a tag was (partly) ignored.
fn level_verdict(
    p: &Principal,
    level: &Level,
    settings: &Settings,
    cluster: &str,
    now: jiff::Timestamp,
    notes: &mut Vec<String>,
) -> Verdict {
    let mut verdict = Verdict::default();
    if let Some((source, namespaces)) = tag_source(p, level, settings, cluster, notes) {
        match expiry_of(p, level, settings, now) {
            Ok(t) => {
                verdict.source = Some(source);
                verdict.expires = t.map(rfc3339);
                verdict.namespaces = namespaces;
                return verdict;
            }
            Err(Refused::Expired(n)) => {
                notes.push(format!("{} {}: {n}", kind_word(p), p.name));
                verdict.expired = true;
            }
            Err(Refused::Invalid(n)) => notes.push(format!("{} {}: {n}", kind_word(p), p.name)),
        }
    }
    verdict.source = other_source(p, level, settings, notes);
    verdict.expired &= verdict.source.is_none();
    verdict
}

/// The level's tag source and the namespaces it names, when the tag names `cluster` (and the principal may
/// be granted at all).
fn tag_source(
    p: &Principal,
    level: &Level,
    settings: &Settings,
    cluster: &str,
    notes: &mut Vec<String>,
) -> Option<(Source, BTreeSet<String>)> {
    let key = level.tag_key.as_deref()?;
    let value = p.tag_value(key)?;
    if let Some(why) = never_admin(p, settings) {
        notes.push(format!(
            "role {}: carries {key} but {why}; never an admin",
            p.name
        ));
        return None;
    }
    let targets = levels::targets(value, level, &settings.clusters);
    for n in targets.notes {
        notes.push(format!(
            "{} {}: tag {key}={value:?} {n}",
            kind_word(p),
            p.name
        ));
    }
    let namespaces = targets.clusters.get(cluster)?.clone();
    Some((Source::Tag(key.to_string()), namespaces))
}

/// A source of the level by name: the permission set a role was made for, or a group of the level a user is
/// in (under the admin-group member path).
fn other_source(
    p: &Principal,
    level: &Level,
    settings: &Settings,
    notes: &mut Vec<String>,
) -> Option<Source> {
    // Names match exactly, as the SCP's group ARNs do (IAM compares ARNs case-sensitively in policies).
    if let Some(set) = p.permission_set()
        && let Some(named) = level.permission_sets.iter().find(|s| names_match(s, set))
    {
        return Some(Source::PermissionSet(named.clone()));
    }
    if p.kind == PrincipalKind::User {
        let group = level
            .iam_groups
            .iter()
            .find(|g| p.groups.iter().any(|m| names_match(g, m)))?;
        // IAM conditions cannot see group membership: the policies protect members by their path, so only a
        // member under that path is granted (the policy and the grant agree).
        if !p.path().starts_with(&settings.group_member_path) {
            notes.push(format!(
                "user {}: in admin group {group} but not under {} (where the shipped policies protect admin-group \
                 members from takeover); not an admin through the group: move it there with `aws iam update-user \
                 --user-name {} --new-path {}`",
                p.name, settings.group_member_path, p.name, settings.group_member_path
            ));
            return None;
        }
        return Some(Source::IamGroup(group.clone()));
    }
    None
}

/// The principal's grant without its levels, or a note saying why IAM's answer cannot be granted.
fn grant_of_principal(p: &Principal, settings: &Settings) -> Result<Grant, String> {
    let (arn_name, username) = match p.kind {
        PrincipalKind::User => {
            let Some((account, name)) = parse_user_arn(&p.arn) else {
                return Err(format!(
                    "user {}: IAM returned an ARN that is not a user ARN: {:?}; skipped",
                    p.name, p.arn
                ));
            };
            (
                name,
                render_username(&settings.username_template, &p.name, account),
            )
        }
        PrincipalKind::Role => {
            let Some((account, _, name)) = parse_role_arn(&p.arn) else {
                return Err(format!(
                    "role {}: IAM returned an ARN that is not a role ARN: {:?}; skipped",
                    p.name, p.arn
                ));
            };
            let username = render_role_username(&settings.role_username_template, &p.name, account);
            (name, username)
        }
    };
    if !arn_name.eq_ignore_ascii_case(&p.name) {
        return Err(format!(
            "{}: ARN {} names another principal; skipped",
            p.name, p.arn
        ));
    }
    Ok(Grant {
        arn: p.arn.clone(),
        kind: p.kind,
        username,
        id: p.id.clone(),
        ..Grant::default()
    })
}

/// The levels `p` holds on `cluster`, in the configured order, and whether a level's tag grant expired with
/// nothing else granting the principal anything.
fn held_levels(
    p: &Principal,
    settings: &Settings,
    cluster: &str,
    now: jiff::Timestamp,
    notes: &mut Vec<String>,
) -> (Vec<LevelGrant>, bool) {
    let mut held = Vec::new();
    let mut expired = false;
    for level in &settings.levels {
        let v = level_verdict(p, level, settings, cluster, now, notes);
        expired |= v.expired;
        if let Some(source) = v.source {
            held.push(LevelGrant {
                level: level.name.clone(),
                source,
                expires: v.expires,
                namespaces: v.namespaces.into_iter().collect(),
            });
        }
    }
    let expired = expired && held.is_empty();
    (held, expired)
}

/// The levels of `g` as configured (a level no longer configured gives nothing).
fn configured<'a>(
    g: &'a Grant,
    settings: &'a Settings,
) -> impl Iterator<Item = (&'a LevelGrant, &'a Level)> {
    g.levels.iter().filter_map(|h| {
        settings
            .levels
            .iter()
            .find(|l| l.name == h.level)
            .map(|l| (h, l))
    })
}

/// Strings in order, each once.
fn dedup_in_order<'a>(items: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if !out.contains(i) {
            out.push(i.clone());
        }
    }
    out
}

/// A grant with its levels: the first level's source, the first expiry, and the Kubernetes groups of an
/// `aws-auth` row (each level's `awsAuthGroups`, then its `groups`, in the configured order).
fn with_levels(base: Grant, held: Vec<LevelGrant>, settings: &Settings) -> Grant {
    let mut g = Grant {
        source: held.first().map(|h| h.source.clone()),
        expires: held.iter().filter_map(|h| h.expires.clone()).min(),
        levels_record: settings.levels_declared.then(|| levels_record(&held)),
        levels: held,
        ..base
    };
    g.groups = dedup_in_order(
        configured(&g, settings).flat_map(|(_, l)| l.aws_auth_groups.iter().chain(&l.groups)),
    );
    g
}

/// Grants for `cluster` from the given principals (ARNs as IAM gives them, paths included), at `now`.
pub fn desired_for_cluster(
    principals: &[Principal],
    settings: &Settings,
    cluster: &str,
    now: jiff::Timestamp,
) -> Desired {
    let mut out = Desired::default();
    for p in principals {
        let (held, expired) = held_levels(p, settings, cluster, now, &mut out.notes);
        if expired {
            out.expired.push(p.arn.clone());
        }
        if held.is_empty() {
            continue;
        }
        match grant_of_principal(p, settings) {
            Ok(base) => out.grants.push(with_levels(base, held, settings)),
            Err(note) => out.notes.push(note),
        }
    }
    out.grants.sort();
    out.grants.dedup_by(|a, b| ArnKey(&a.arn) == ArnKey(&b.arn));
    out
}

/// The same grants as `aws-auth` holds them: role ARNs without their path.
pub fn aws_auth_grants(desired: &Desired) -> Desired {
    let mut grants: Vec<Grant> = desired
        .grants
        .iter()
        .map(|g| Grant {
            arn: aws_auth_arn(&g.arn).into_owned(),
            ..g.clone()
        })
        .collect();
    grants.sort_by(|a, b| ArnKey(&a.arn).cmp(&ArnKey(&b.arn)));
    Desired {
        grants,
        notes: desired.notes.clone(),
        expired: desired
            .expired
            .iter()
            .map(|a| aws_auth_arn(a).into_owned())
            .collect(),
    }
}

/// Usernames EKS refuses in an access entry.
pub const RESERVED_USERNAME_PREFIXES: [&str; 5] = ["system:", "eks:", "aws:", "amazon:", "iam:"];

/// The same grants as an access entry holds them: each level's `groups` (never `system:` ones, which EKS
/// refuses: a declared level may not name one there, and the legacy level leaves `ADMIN_GROUPS`' out; admin
/// rights come from the access policies) and its access policies, a policy scoped by the tag
/// on the namespaces the principal's tag names; a policy two levels give is associated once, cluster-wide if
/// either says so, else on both levels' namespaces. A grant whose username EKS would refuse is dropped with a
/// note.
pub fn access_entry_grants(desired: &Desired, settings: &Settings) -> Desired {
    let mut out = Desired {
        grants: Vec::with_capacity(desired.grants.len()),
        notes: Vec::new(),
        expired: desired.expired.clone(),
    };
    for g in &desired.grants {
        let lower = g.username.to_ascii_lowercase();
        if let Some(p) = RESERVED_USERNAME_PREFIXES
            .iter()
            .find(|p| lower.starts_with(**p))
        {
            out.notes.push(format!(
                "{}: username {:?} starts with {p:?}, which EKS refuses in an access entry; not granted on clusters \
                 served by access entries (change USERNAME_TEMPLATE)",
                g.arn, g.username
            ));
            continue;
        }
        let groups = dedup_in_order(configured(g, settings).flat_map(|(_, l)| &l.groups));
        out.grants.push(Grant {
            groups,
            policies: entry_policies(g, settings),
            ..g.clone()
        });
    }
    out
}

/// The access policies of a grant's levels, each once (see [`access_entry_grants`]), sorted.
fn entry_policies(g: &Grant, settings: &Settings) -> Vec<AccessPolicy> {
    let mut by_arn: std::collections::BTreeMap<&str, Option<BTreeSet<String>>> =
        std::collections::BTreeMap::new();
    for (held, level) in configured(g, settings) {
        for p in &level.policies {
            let namespaces: Option<BTreeSet<String>> = match &p.scope {
                LevelScope::Cluster => None,
                LevelScope::Namespaces(list) => Some(list.iter().cloned().collect()),
                LevelScope::FromTag => Some(held.namespaces.iter().cloned().collect()),
            };
            let merged = match (by_arn.remove(p.arn.as_str()), namespaces) {
                (Some(None), _) | (_, None) => None,
                (Some(Some(mut a)), Some(b)) => {
                    a.extend(b);
                    Some(a)
                }
                (None, Some(b)) => Some(b),
            };
            by_arn.insert(&p.arn, merged);
        }
    }
    let mut out: Vec<AccessPolicy> = by_arn
        .into_iter()
        .filter(|(_, ns)| ns.as_ref().is_none_or(|n| !n.is_empty()))
        .map(|(arn, ns)| AccessPolicy {
            arn: arn.to_string(),
            scope: match ns {
                None => PolicyScope::Cluster,
                Some(n) => PolicyScope::Namespaces {
                    namespaces: n.into_iter().collect(),
                },
            },
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The time the tests run at.
    const NOW: jiff::Timestamp = jiff::Timestamp::constant(1_796_000_000, 0);

    #[test]
    fn principal_kind_and_path_from_the_arn() {
        assert_eq!(
            PrincipalKind::of_arn("arn:aws:iam::123456789012:user/team/a"),
            Some(PrincipalKind::User)
        );
        assert_eq!(
            PrincipalKind::of_arn(
                "arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_0123"
            ),
            Some(PrincipalKind::Role)
        );
        assert_eq!(
            PrincipalKind::of_arn("arn:aws:sts::123456789012:assumed-role/r/s"),
            None
        );
        let p = |arn: &str| Principal {
            kind: PrincipalKind::User,
            name: "a".into(),
            arn: arn.into(),
            id: None,
            tags: vec![],
            groups: vec![],
        };
        assert_eq!(p("arn:aws:iam::123456789012:user/a").path(), "/");
        assert_eq!(
            p("arn:aws:iam::123456789012:user/team/dev/a").path(),
            "/team/dev/"
        );
        assert_eq!(Source::Tag("k".into()).to_string(), "tag:k");
    }

    fn settings(clusters: &str) -> Settings {
        Settings::from_lookup(|k| (k == "CLUSTER_NAMES").then(|| clusters.to_string())).unwrap()
    }

    fn user(name: &str, tags: &[(&str, &str)]) -> Principal {
        Principal {
            kind: PrincipalKind::User,
            name: name.into(),
            arn: format!("arn:aws:iam::123456789012:user/{name}"),
            id: None,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            groups: vec![],
        }
    }

    #[test]
    fn sources_read_back_as_written() {
        for src in [
            Source::Tag("eks-cluster-admin".into()),
            Source::Tag("team:admin key".into()),
            Source::PermissionSet("Platform_Admin".into()),
            Source::PermissionSet("a,b@c".into()),
            Source::IamGroup("ops,oncall".into()),
        ] {
            assert_eq!(Source::parse(&src.to_string()), Some(src.clone()), "{src}");
            let tag = src.to_tag_value();
            // What EKS accepts in a tag value (letters, digits, spaces and + - = . _ : / @).
            assert!(
                tag.chars()
                    .all(|c| c.is_alphanumeric() || " +-=._:/@".contains(c)),
                "{tag}"
            );
            assert_eq!(Source::from_tag_value(&tag), Some(src.clone()), "{tag}");
        }
        for bad in ["", "tag", "tag:", "group:x", "permission-set"] {
            assert_eq!(Source::parse(bad), None, "{bad:?}");
        }
        assert!(names_match("Admin", "Admin") && !names_match("admin", "Admin"));
    }

    #[test]
    fn tag_values() {
        let s = settings("prod staging");
        let cases: &[(&str, &[&str], Option<&str>)] = &[
            ("true", &["prod", "staging"], None),
            ("TRUE", &["prod", "staging"], None),
            (" True ", &["prod", "staging"], None),
            ("false", &[], Some("false")),
            ("", &[], Some("empty")),
            ("   ", &[], Some("empty")),
            ("prod", &["prod"], None),
            ("prod  staging", &["prod", "staging"], None),
            ("prod,staging", &[], Some("prod,staging")),
            ("prod dev", &["prod"], Some("dev")),
            ("prod true", &["prod"], Some("does not manage: true")),
            ("Prod", &[], Some("Prod")),
            ("yes", &[], Some("yes")),
        ];
        for (value, want, note) in cases {
            let t = levels::targets(value, &s.levels[0], &s.clusters);
            let got: Vec<&str> = t.clusters.keys().map(String::as_str).collect();
            assert_eq!(&got, want, "{value:?}");
            assert!(t.notes.len() <= 1, "{value:?}: {:?}", t.notes);
            match (t.notes.first(), note) {
                (None, None) => {}
                (Some(n), Some(needle)) => assert!(n.contains(needle), "{value:?}: {n}"),
                (n, want) => panic!("{value:?}: note {n:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn arn_parsing() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            (
                "arn:aws:iam::123456789012:user/alice",
                Some(("123456789012", "alice")),
            ),
            (
                "arn:aws:iam::123456789012:user/team/a/alice",
                Some(("123456789012", "alice")),
            ),
            (
                "arn:aws-cn:iam::123456789012:user/alice",
                Some(("123456789012", "alice")),
            ),
            ("arn:aws:iam::123456789012:role/alice", None),
            ("arn:aws:sts::123456789012:assumed-role/r/s", None),
            ("arn:aws:iam::12345:user/alice", None),
            ("arn:aws:iam::123456789012:user/", None),
            ("not-an-arn", None),
        ];
        for (arn, want) in cases {
            assert_eq!(parse_user_arn(arn), *want, "{arn}");
        }
    }

    #[test]
    fn desired_per_cluster() {
        let s = settings("prod staging");
        let users = vec![
            user("zed", &[("eks-cluster-admin", "true")]),
            user("amy", &[("EKS-Cluster-Admin", "staging")]),
            user("bob", &[("team", "x")]),
            user("cat", &[("eks-cluster-admin", "false")]),
            Principal {
                kind: PrincipalKind::User,
                name: "dan".into(),
                arn: "arn:aws:iam::123456789012:user/ops/dan".into(),
                id: None,
                tags: vec![("eks-cluster-admin".into(), "prod".into())],
                groups: vec![],
            },
            Principal {
                kind: PrincipalKind::User,
                name: "eve".into(),
                arn: "garbage".into(),
                id: None,
                tags: vec![("eks-cluster-admin".into(), "true".into())],
                groups: vec![],
            },
        ];
        let prod = desired_for_cluster(&users, &s, "prod", NOW);
        let arns: Vec<&str> = prod.grants.iter().map(|m| m.arn.as_str()).collect();
        assert_eq!(
            arns,
            vec![
                "arn:aws:iam::123456789012:user/ops/dan",
                "arn:aws:iam::123456789012:user/zed"
            ]
        );
        assert_eq!(prod.grants[0].username, "dan");
        assert_eq!(prod.grants[0].groups, vec!["system:masters"]);
        assert!(
            prod.notes
                .iter()
                .any(|n| n.contains("cat") && n.contains("false"))
        );
        assert!(
            prod.notes
                .iter()
                .any(|n| n.contains("eve") && n.contains("not a user ARN"))
        );

        let staging = desired_for_cluster(&users, &s, "staging", NOW);
        let names: Vec<&str> = staging.grants.iter().map(|m| m.username.as_str()).collect();
        assert_eq!(names, vec!["amy", "zed"]);
    }

    #[test]
    fn username_template_uses_account() {
        let s = Settings::from_lookup(|k| match k {
            "CLUSTER_NAMES" => Some("prod".into()),
            "USERNAME_TEMPLATE" => Some("{{AccountID}}:{{UserName}}".into()),
            _ => None,
        })
        .unwrap();
        let d = desired_for_cluster(
            &[user("amy", &[("eks-cluster-admin", "true")])],
            &s,
            "prod",
            NOW,
        );
        assert_eq!(d.grants[0].username, "123456789012:amy");
    }

    /// Settings with three levels: admin by tag or group, view by tag or permission set, edit in the
    /// namespaces the tag names.
    fn three_levels() -> Settings {
        let mut s = Settings::from_lookup(|k| match k {
            "CLUSTER_NAMES" => Some("prod staging".into()),
            "ADMIN_GROUP_MEMBER_PATH" => Some("/".into()),
            _ => None,
        })
        .unwrap();
        s.levels = levels::parse_levels(
            r#"[
            {"name": "admin", "tagKey": "eks-cluster-admin", "iamGroups": ["platform"],
             "accessPolicies": ["AmazonEKSClusterAdminPolicy"], "awsAuthGroups": ["system:masters"]},
            {"name": "view", "tagKey": "eks-view", "permissionSets": ["Developer"],
             "accessPolicies": ["AmazonEKSViewPolicy", "AmazonEKSEditPolicy=shared"], "groups": ["viewers"]},
            {"name": "edit", "tagKey": "eks-edit", "accessPolicies": ["AmazonEKSEditPolicy=@tag"],
             "groups": ["editors"]}
        ]"#,
        )
        .unwrap();
        s
    }

    fn policy(name: &str, namespaces: &[&str]) -> AccessPolicy {
        AccessPolicy {
            arn: format!("{}{name}", crate::core::settings::ACCESS_POLICY_ARN_PREFIX),
            scope: if namespaces.is_empty() {
                PolicyScope::Cluster
            } else {
                PolicyScope::Namespaces {
                    namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
                }
            },
        }
    }

    #[test]
    fn a_principal_holds_the_union_of_its_levels() {
        let s = three_levels();
        let mut ann = user(
            "ann",
            &[
                ("eks-view", "true"),
                ("eks-edit", "prod=team-a+team-b staging=team-a"),
                ("eks-edit-expires", "2027-01-01T00:00:00Z"),
            ],
        );
        ann.groups = vec!["platform".into()];
        let d = desired_for_cluster(std::slice::from_ref(&ann), &s, "prod", NOW);
        let g = &d.grants[0];
        let held: Vec<(&str, String)> = g
            .levels
            .iter()
            .map(|l| (l.level.as_str(), l.source.to_string()))
            .collect();
        assert_eq!(
            held,
            [
                ("admin", "iam-group:platform".to_string()),
                ("view", "tag:eks-view".into()),
                ("edit", "tag:eks-edit".into())
            ]
        );
        assert_eq!(
            g.source,
            Some(Source::IamGroup("platform".into())),
            "the first level's"
        );
        assert_eq!(g.expires.as_deref(), Some("2027-01-01T00:00:00Z"));
        assert_eq!(g.levels[2].namespaces, ["team-a", "team-b"]);
        // One aws-auth row carries every group; one entry every policy, each once.
        assert_eq!(g.groups, ["system:masters", "viewers", "editors"]);
        let e = access_entry_grants(&d, &s);
        assert_eq!(e.grants[0].groups, ["viewers", "editors"]);
        assert_eq!(
            e.grants[0].policies,
            [
                policy("AmazonEKSClusterAdminPolicy", &[]),
                policy("AmazonEKSEditPolicy", &["shared", "team-a", "team-b"]),
                policy("AmazonEKSViewPolicy", &[]),
            ]
        );
        // On staging the tag names team-a only.
        let d = desired_for_cluster(&[ann], &s, "staging", NOW);
        let e = access_entry_grants(&d, &s);
        assert!(
            e.grants[0]
                .policies
                .contains(&policy("AmazonEKSEditPolicy", &["shared", "team-a"]))
        );
    }

    #[test]
    fn levels_are_recorded_only_when_declared_and_read_back() {
        let mut s = three_levels();
        let mut ann = user("ann", &[("eks-view", "true"), ("eks-edit", "prod=team-a")]);
        ann.groups = vec!["platform".into()];
        let d = desired_for_cluster(std::slice::from_ref(&ann), &s, "prod", NOW);
        assert_eq!(
            d.grants[0].levels_record, None,
            "made from today's variables: nothing new is written"
        );
        s.levels_declared = true;
        let d = desired_for_cluster(&[ann], &s, "prod", NOW);
        let record = d.grants[0].levels_record.clone().unwrap();
        assert_eq!(record, "admin:iam-group:platform/view:tag/edit:tag");
        assert_eq!(
            read_levels_record(&record, &s.levels),
            [
                (
                    "admin".to_string(),
                    Some(Source::IamGroup("platform".into()))
                ),
                ("view".into(), Some(Source::Tag("eks-view".into()))),
                ("edit".into(), Some(Source::Tag("eks-edit".into())))
            ]
        );
        // A name with a comma travels as a space (tag values hold no comma) and reads back with it.
        let held = [LevelGrant {
            level: "view".into(),
            source: Source::PermissionSet("Dev,Ops".into()),
            expires: None,
            namespaces: vec![],
        }];
        assert_eq!(levels_record(&held), "view:permission-set:Dev Ops");
        assert_eq!(
            read_levels_record("view:permission-set:Dev Ops", &s.levels),
            [(
                "view".to_string(),
                Some(Source::PermissionSet("Dev,Ops".into()))
            )]
        );
        // A level no longer configured, or a part that cannot be read, says nothing of its source.
        assert_eq!(
            read_levels_record("gone:tag/x/view:tag:eks-view", &s.levels),
            [
                ("gone".to_string(), None),
                ("x".into(), None),
                ("view".into(), None)
            ]
        );
    }

    #[test]
    fn each_level_is_judged_on_its_own() {
        let s = three_levels();
        // The edit level expired; the view level holds: not an expiry, the grant stays with view alone.
        let bob = user(
            "bob",
            &[
                ("eks-view", "prod"),
                ("eks-edit", "prod=team-a"),
                ("eks-edit-expires", "2020-01-01T00:00:00Z"),
            ],
        );
        // Only the edit level, expired: the principal's removal is an expiry.
        let cid = user(
            "cid",
            &[
                ("eks-edit", "prod=team-a"),
                ("eks-edit-expires", "2020-01-01T00:00:00Z"),
            ],
        );
        // A namespace-scoped level without namespaces grants nothing, with a note.
        let dan = user("dan", &[("eks-edit", "prod")]);
        let d = desired_for_cluster(&[bob, cid, dan], &s, "prod", NOW);
        assert_eq!(d.grants.len(), 1);
        assert_eq!(
            d.grants[0]
                .levels
                .iter()
                .map(|l| l.level.as_str())
                .collect::<Vec<_>>(),
            ["view"]
        );
        assert_eq!(d.expired, ["arn:aws:iam::123456789012:user/cid"]);
        assert!(
            d.notes
                .iter()
                .any(|n| n.starts_with("user dan: tag eks-edit=\"prod\"")
                    && n.contains("names no namespace")),
            "{:?}",
            d.notes
        );
        assert!(
            d.notes
                .iter()
                .any(|n| n.starts_with("user bob:") && n.contains("expired")),
            "{:?}",
            d.notes
        );
    }

    #[test]
    fn access_entry_shape() {
        let s = Settings::from_lookup(|k| match k {
            "CLUSTER_NAMES" => Some("prod".into()),
            "ADMIN_GROUPS" => Some("system:masters platform-admins".into()),
            "USERNAME_TEMPLATE" => Some("{{UserName}}".into()),
            _ => None,
        })
        .unwrap();
        let tagged = [("eks-cluster-admin", "true")];
        let d = desired_for_cluster(
            &[user("amy", &tagged), user("system:bob", &tagged)],
            &s,
            "prod",
            NOW,
        );
        let e = access_entry_grants(&d, &s);
        assert_eq!(e.grants.len(), 1);
        assert_eq!(e.grants[0].username, "amy");
        assert_eq!(e.grants[0].groups, vec!["platform-admins"]);
        assert_eq!(e.grants[0].policies, s.access_policies);
        assert_eq!(e.notes.len(), 1);
        assert!(e.notes[0].contains("system:bob") && e.notes[0].contains("refuses"));
        // The aws-auth shape keeps every group and has no policies.
        assert!(
            d.grants
                .iter()
                .all(|g| g.policies.is_empty() && g.groups.len() == 2)
        );
    }

    fn role(name: &str, path: &str, tags: &[(&str, &str)]) -> Principal {
        Principal {
            kind: PrincipalKind::Role,
            name: name.into(),
            arn: format!("arn:aws:iam::123456789012:role{path}{name}"),
            id: Some(format!("AROA{}", name.len())),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            groups: vec![],
        }
    }

    #[test]
    fn role_arns_and_permission_set_names() {
        let arn = "arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_Platform_Admin_0123456789abcdef";
        assert_eq!(
            parse_role_arn(arn),
            Some((
                "123456789012",
                "/aws-reserved/sso.amazonaws.com/eu-west-1/",
                "AWSReservedSSO_Platform_Admin_0123456789abcdef"
            ))
        );
        assert_eq!(
            aws_auth_arn(arn),
            "arn:aws:iam::123456789012:role/AWSReservedSSO_Platform_Admin_0123456789abcdef"
        );
        assert_eq!(
            aws_auth_arn("arn:aws-cn:iam::123456789012:role/team/x"),
            "arn:aws-cn:iam::123456789012:role/x"
        );
        let user = "arn:aws:iam::123456789012:user/team/x";
        assert_eq!(aws_auth_arn(user), user, "a user's path stays");
        assert_eq!(parse_role_arn("arn:aws:iam::123456789012:roles/x"), None);
        assert_eq!(parse_role_arn("arn:aws:iam::123456789012:role/"), None);
        assert_eq!(
            principal_of_arn("arn:aws:iam::123456789012:role/a/b"),
            Some((PrincipalKind::Role, "b"))
        );
        // Permission-set names may hold `_`: the suffix is after the last one.
        assert_eq!(
            permission_set_of_name("AWSReservedSSO_Platform_Admin_0123456789abcdef"),
            Some("Platform_Admin")
        );
        assert_eq!(permission_set_of_name("AWSReservedSSO_Admin"), None);
        assert_eq!(permission_set_of_name("AWSReservedSSO__abc"), None);
        assert_eq!(permission_set_of_name("MyRole_Admin_1"), None);
    }

    #[test]
    fn roles_permission_sets_and_groups_are_admins() {
        let s = Settings::from_lookup(|k| match k {
            "CLUSTER_NAMES" => Some("prod staging".into()),
            "ADMIN_PERMISSION_SETS" => Some("Platform_Admin".into()),
            "ADMIN_IAM_GROUPS" => Some("platform-admins".into()),
            "ADMIN_GROUP_MEMBER_PATH" => Some("/".into()),
            "FUNCTION_ROLE_ARN" => Some("arn:aws:iam::123456789012:role/fn/eks-admin-sync".into()),
            _ => None,
        })
        .unwrap();
        let sso = "/aws-reserved/sso.amazonaws.com/";
        let mut dave = user("dave", &[]);
        dave.groups = vec!["readers".into(), "platform-admins".into()];
        // Names match exactly, as the SCP's group ARNs do.
        let mut fay = user("fay", &[]);
        fay.groups = vec!["Platform-Admins".into()];
        let mut erin = user("erin", &[]);
        erin.groups = vec!["readers".into()];
        let principals = vec![
            role("team-admin", "/team/", &[("eks-cluster-admin", "prod")]),
            role("AWSReservedSSO_Platform_Admin_0123456789abcdef", sso, &[]),
            role("AWSReservedSSO_ReadOnly_0123456789abcdef", sso, &[]),
            // The right name outside Identity Center's path is not Identity Center's role.
            role("AWSReservedSSO_Platform_Admin_fake", "/", &[]),
            role(
                "AWSServiceRoleForAmazonEKS",
                "/aws-service-role/eks.amazonaws.com/",
                &[("eks-cluster-admin", "true")],
            ),
            role("eks-admin-sync", "/fn/", &[("eks-cluster-admin", "true")]),
            dave,
            erin,
            fay,
        ];
        let prod = desired_for_cluster(&principals, &s, "prod", NOW);
        let got: Vec<(&str, String, &str)> = prod
            .grants
            .iter()
            .map(|g| {
                (
                    g.arn.as_str(),
                    g.source.as_ref().unwrap().to_string(),
                    g.username.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Platform_Admin_0123456789abcdef",
                    "permission-set:Platform_Admin".to_string(),
                    "AWSReservedSSO_Platform_Admin_0123456789abcdef:{{SessionName}}"
                ),
                (
                    "arn:aws:iam::123456789012:role/team/team-admin",
                    "tag:eks-cluster-admin".to_string(),
                    "team-admin:{{SessionName}}"
                ),
                (
                    "arn:aws:iam::123456789012:user/dave",
                    "iam-group:platform-admins".to_string(),
                    "dave"
                ),
            ]
        );
        assert!(
            prod.grants
                .iter()
                .all(|g| g.id.is_some() || g.kind == PrincipalKind::User)
        );
        assert!(prod.notes.iter().any(|n| n.contains("service-linked")));
        assert!(prod.notes.iter().any(|n| n.contains("own role")));
        // The tagged role names prod only; the permission set and the group grant every cluster.
        let staging = desired_for_cluster(&principals, &s, "staging", NOW);
        assert_eq!(staging.grants.len(), 2);
        // aws-auth holds the roles without their path, in its own order.
        let aws = aws_auth_grants(&prod);
        let arns: Vec<&str> = aws.grants.iter().map(|g| g.arn.as_str()).collect();
        assert_eq!(
            arns,
            vec![
                "arn:aws:iam::123456789012:role/AWSReservedSSO_Platform_Admin_0123456789abcdef",
                "arn:aws:iam::123456789012:role/team-admin",
                "arn:aws:iam::123456789012:user/dave",
            ]
        );
        // What a source could have granted, for the guard.
        let ps = Source::PermissionSet("Platfrom_Admin".into());
        assert!(ps.could_grant(&aws.grants[0]));
        assert!(!ps.could_grant(&aws.grants[1]));
        assert!(Source::IamGroup("x".into()).could_grant(&aws.grants[2]));
        assert!(!Source::IamGroup("x".into()).could_grant(&aws.grants[1]));
    }

    #[test]
    fn only_admin_group_members_under_the_protected_path_are_admins() {
        let s = Settings::from_lookup(|k| match k {
            "CLUSTER_NAMES" => Some("prod".into()),
            "ADMIN_IAM_GROUPS" => Some("platform-admins".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(s.group_member_path, "/eks-admins/");
        let member = |name: &str, path: &str| Principal {
            kind: PrincipalKind::User,
            name: name.into(),
            arn: format!("arn:aws:iam::123456789012:user{path}{name}"),
            id: None,
            tags: vec![],
            groups: vec!["platform-admins".into()],
        };
        let d = desired_for_cluster(
            &[
                member("ann", "/eks-admins/"),
                member("ben", "/eks-admins/oncall/"),
                member("cat", "/"),
                member("dan", "/eks-adminsx/"),
            ],
            &s,
            "prod",
            NOW,
        );
        let names: Vec<&str> = d.grants.iter().map(|g| g.username.as_str()).collect();
        assert_eq!(names, ["ann", "ben"]);
        let note = d.notes.iter().find(|n| n.contains("cat")).unwrap();
        assert!(
            note.contains("not under /eks-admins/") && note.contains("--new-path /eks-admins/"),
            "{note}"
        );
        assert!(d.notes.iter().any(|n| n.contains("dan")));
        // "/" lets every member in (documented: unprotected by the shipped policies).
        for bad in ["eks-admins", "/eks admins/", "/a//b/", ""] {
            let r = Settings::from_lookup(|k| match k {
                "CLUSTER_NAMES" => Some("prod".into()),
                "ADMIN_GROUP_MEMBER_PATH" => Some(bad.into()),
                _ => None,
            });
            assert_eq!(r.is_err(), !bad.is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn tag_grants_expire() {
        let at = |secs: i64| {
            rfc3339(
                NOW.checked_add(jiff::SignedDuration::from_secs(secs))
                    .unwrap(),
            )
        };
        let s = |extra: &[(&'static str, &'static str)]| {
            let extra = extra.to_vec();
            Settings::from_lookup(move |k| match k {
                "CLUSTER_NAMES" => Some("prod".into()),
                other => extra
                    .iter()
                    .find(|(e, _)| *e == other)
                    .map(|(_, v)| v.to_string()),
            })
            .unwrap()
        };
        let tagged = |name: &str, expiry: Option<&str>| {
            let mut tags = vec![("eks-cluster-admin", "true")];
            if let Some(e) = expiry {
                tags.push(("eks-cluster-admin-expires", e));
            }
            user(name, &tags)
        };
        let soon = at(3600);
        let later = at(3 * 24 * 3600);
        let past = at(-1);
        let mut grouped = tagged("gus", Some(&past));
        grouped.groups = vec!["platform-admins".into()];
        let principals = vec![
            tagged("ann", Some(&soon)),
            tagged("ben", None),
            tagged("cat", Some(&past)),
            tagged("dan", Some("tomorrow")),
            tagged("eve", Some("2026-12-02T18:00:00+01:00")),
            tagged("fay", Some(&later)),
            grouped,
        ];
        let plain = s(&[
            ("ADMIN_IAM_GROUPS", "platform-admins"),
            ("ADMIN_GROUP_MEMBER_PATH", "/"),
        ]);
        let d = desired_for_cluster(&principals, &plain, "prod", NOW);
        let got: Vec<(&str, Option<&str>)> = d
            .grants
            .iter()
            .map(|g| (g.username.as_str(), g.expires.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("ann", Some(soon.as_str())),
                ("ben", None),
                ("fay", Some(later.as_str())),
                ("gus", None),
            ]
        );
        assert_eq!(
            d.grants[3].source,
            Some(Source::IamGroup("platform-admins".into()))
        );
        assert_eq!(d.next_expiry(), Some(soon.as_str()));
        // Only cat's removal is an expiry: gus is still an admin through the group.
        assert_eq!(d.expired, vec![user("cat", &[]).arn]);
        let note = |who: &str| {
            d.notes
                .iter()
                .find(|n| n.contains(who))
                .cloned()
                .unwrap_or_default()
        };
        assert!(note("cat").contains("expired at"), "{}", note("cat"));
        assert!(
            note("dan").contains("not an RFC 3339 UTC time"),
            "{}",
            note("dan")
        );
        assert!(
            note("eve").contains("not an RFC 3339 UTC time"),
            "an offset is not UTC"
        );
        // MAX_GRANT_HOURS: further away, or no expiry at all, is refused (never an expiry).
        let capped = s(&[("MAX_GRANT_HOURS", "24")]);
        let d = desired_for_cluster(&principals[..3], &capped, "prod", NOW);
        let names: Vec<&str> = d.grants.iter().map(|g| g.username.as_str()).collect();
        assert_eq!(names, vec!["ann"]);
        assert!(
            d.notes
                .iter()
                .any(|n| n.contains("ben") && n.contains("requires every grant to expire"))
        );
        let d = desired_for_cluster(&principals[5..6], &capped, "prod", NOW);
        assert!(d.grants.is_empty() && d.expired.is_empty());
        assert!(d.notes[0].contains("MAX_GRANT_HOURS=24"), "{:?}", d.notes);
        // The expiry is a grant's, in either store's form.
        let roles = aws_auth_grants(&desired_for_cluster(&principals, &plain, "prod", NOW));
        assert_eq!(roles.expired, vec![user("cat", &[]).arn]);
    }

    proptest::proptest! {
        /// `ArnKey` is a drop-in for the lowercase copy: same order, same equality, equal keys hash equal.
        #[test]
        fn arn_key_behaves_like_the_lowercase_copy(
            base in "[a-zA-Z0-9:/_+=,.@-]{0,80}",
            flips in proptest::collection::vec(proptest::bool::ANY, 80),
            tail_a in "[a-zA-Z0-9/]{0,12}",
            tail_b in "[a-zA-Z0-9/]{0,12}",
        ) {
            let flipped: String = base
                .chars()
                .zip(&flips)
                .map(|(c, f)| if *f { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
                .collect();
            let (a, b) = (format!("{base}{tail_a}"), format!("{flipped}{tail_b}"));
            let (la, lb) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
            proptest::prop_assert_eq!(ArnKey(&a).cmp(&ArnKey(&b)), la.cmp(&lb));
            proptest::prop_assert_eq!(ArnKey(&a) == ArnKey(&b), la == lb);
            let hasher = std::collections::hash_map::RandomState::new();
            use std::hash::BuildHasher;
            if la == lb {
                proptest::prop_assert_eq!(hasher.hash_one(ArnKey(&a)), hasher.hash_one(ArnKey(&b)));
            }
        }
    }
}
