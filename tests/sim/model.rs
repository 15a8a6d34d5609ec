//! What the function's promises say the stores should hold, worked out from the simulated world on its own
//! (not with the product's functions): who is an admin on which cluster, which configured sources look
//! mistyped, and this deployment's grants as EKS would read them.

use crate::world::{ADMIN_POLICY, Cluster, Entry, Iam, SSO_PATH, World};
use serde_json::Value;
use std::collections::BTreeMap;

/// The settings the model judges by (the simulated deployment's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub tag_key: String,
    pub expiry_key: String,
    pub sets: Vec<String>,
    pub groups: Vec<String>,
    pub function_role: String,
    pub max_removals: usize,
    /// Only an admin group's members under this path are admins (the path the policies protect).
    pub member_path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    User,
    Role,
}

/// A principal by kind and name, as IAM names are unique whatever their case.
pub type Who = (Kind, String);

pub fn who(kind: Kind, name: &str) -> Who {
    (kind, name.to_ascii_lowercase())
}

/// The principal an IAM ARN names (`…:user/PATH/NAME`, `…:role/PATH/NAME`).
pub fn who_of_arn(arn: &str) -> Option<Who> {
    let resource = arn.splitn(6, ':').nth(5)?;
    let (kind, rest) = resource.split_once('/')?;
    let name = rest.rsplit('/').next()?;
    match kind {
        "user" => Some(who(Kind::User, name)),
        "role" => Some(who(Kind::Role, name)),
        _ => None,
    }
}

/// A source as the function records it (`tag:KEY`, `permission-set:NAME`, `iam-group:NAME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Src {
    Tag(String),
    Set(String),
    Group(String),
}

impl Src {
    pub fn parse(s: &str) -> Option<Src> {
        let (k, v) = s.split_once(':')?;
        match k {
            "tag" => Some(Src::Tag(v.into())),
            "permission-set" => Some(Src::Set(v.into())),
            "iam-group" => Some(Src::Group(v.into())),
            _ => None,
        }
    }

    fn same_kind(&self, o: &Src) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(o)
    }
}

fn utc(v: &str) -> Option<jiff::Timestamp> {
    let v = v.trim();
    if v.len() < 20 || !v.ends_with('Z') || v.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    v.parse().ok()
}

fn tag<'a>(tags: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

/// The permission set of an Identity Center role, if it is one.
pub fn set_of_role(name: &str, path: &str) -> Option<String> {
    if !path.starts_with(SSO_PATH) {
        return None;
    }
    let rest = name.strip_prefix("AWSReservedSSO_")?;
    let (set, suffix) = rest.rsplit_once('_')?;
    (!set.is_empty() && !suffix.is_empty()).then(|| set.to_string())
}

/// What the tag says of `cluster`: `Ok(expiry)` when it grants it, `Err(true)` when its grant expired.
fn tag_grant(
    cfg: &Config,
    tags: &BTreeMap<String, String>,
    cluster: &str,
    now: jiff::Timestamp,
) -> Result<Option<jiff::Timestamp>, bool> {
    let Some(v) = tag(tags, &cfg.tag_key) else {
        return Err(false);
    };
    let v = v.trim();
    let names = v.eq_ignore_ascii_case("true")
        || (!v.eq_ignore_ascii_case("false") && v.split_whitespace().any(|c| c == cluster));
    if !names {
        return Err(false);
    }
    match tag(tags, &cfg.expiry_key) {
        None => Ok(None),
        Some(e) => match utc(e) {
            Some(t) if t > now => Ok(Some(t)),
            Some(_) => Err(true),
            None => Err(false),
        },
    }
}

/// Whether `role` signs `cluster`'s nodes in, as EKS and the function can tell: a node entry, or (where EKS
/// reads aws-auth) a node row in `mapRoles`.
pub fn is_node_role(c: &Cluster, role: &str) -> bool {
    let entry = c.entries.values().any(|e| {
        e.kind != "STANDARD" && who_of_arn(&e.principal_arn) == Some(who(Kind::Role, role))
    });
    let row = c.mode < 2
        && rows(c, "mapRoles").iter().any(|r| {
            field(r, "rolearn").and_then(who_of_arn) == Some(who(Kind::Role, role))
                && (field(r, "username").is_some_and(|u| u.starts_with("system:node:"))
                    || r["groups"]
                        .as_array()
                        .is_some_and(|g| g.iter().any(|x| x == "system:nodes")))
        });
    entry || row
}

/// What makes a principal an admin on a cluster (tag first, then permission set, then group), with the tag
/// grant's expiry; `None`: not an admin. The second value: the tag grant on the cluster has expired (and
/// nothing else grants it).
pub fn admin(
    w: &World,
    cfg: &Config,
    now: jiff::Timestamp,
    p: &Who,
    cluster: &str,
) -> (Option<(Src, Option<jiff::Timestamp>)>, bool) {
    let c = &w.clusters[cluster];
    match p.0 {
        Kind::User => {
            let Some((_, u)) = w
                .iam
                .users
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&p.1))
            else {
                return (None, false);
            };
            let expired = match tag_grant(cfg, &u.tags, cluster, now) {
                Ok(e) => return (Some((Src::Tag(cfg.tag_key.clone()), e)), false),
                Err(x) => x,
            };
            if let Some(g) = cfg.groups.iter().find(|g| u.groups.contains(*g))
                && u.path.starts_with(&cfg.member_path)
            {
                return (Some((Src::Group(g.clone()), None)), false);
            }
            (None, expired)
        }
        Kind::Role => {
            let Some((name, r)) = w
                .iam
                .roles
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&p.1))
            else {
                return (None, false);
            };
            if r.path.starts_with("/aws-service-role/")
                || name.eq_ignore_ascii_case(&cfg.function_role)
                || is_node_role(c, name)
            {
                return (None, false);
            }
            let expired = match tag_grant(cfg, &r.tags, cluster, now) {
                Ok(e) => return (Some((Src::Tag(cfg.tag_key.clone()), e)), false),
                Err(x) => x,
            };
            if let Some(set) = set_of_role(name, &r.path)
                && let Some(s) = cfg.sets.iter().find(|s| **s == set)
            {
                return (Some((Src::Set(s.clone()), None)), false);
            }
            (None, expired)
        }
    }
}

/// Whether IAM has the principal.
pub fn present(iam: &Iam, p: &Who) -> bool {
    match p.0 {
        Kind::User => iam.users.keys().any(|n| n.eq_ignore_ascii_case(&p.1)),
        Kind::Role => iam.roles.keys().any(|n| n.eq_ignore_ascii_case(&p.1)),
    }
}

/// The configured sources that look mistyped: nobody carries the tag key; no role for a permission set; a
/// group IAM does not have (one that exists with nobody in it is fine).
pub fn suspect(iam: &Iam, cfg: &Config) -> Vec<Src> {
    let mut out = Vec::new();
    let carried = iam
        .users
        .values()
        .any(|u| tag(&u.tags, &cfg.tag_key).is_some())
        || iam
            .roles
            .values()
            .any(|r| tag(&r.tags, &cfg.tag_key).is_some());
    if !carried {
        out.push(Src::Tag(cfg.tag_key.clone()));
    }
    for s in &cfg.sets {
        if !iam
            .roles
            .iter()
            .any(|(n, r)| set_of_role(n, &r.path).as_deref() == Some(s.as_str()))
        {
            out.push(Src::Set(s.clone()));
        }
    }
    for g in &cfg.groups {
        if !iam.groups.contains(g) {
            out.push(Src::Group(g.clone()));
        }
    }
    out
}

/// Whether the guard's rule on sources should hold back the removal of a grant `made` by a source (or by an
/// unrecorded one) of principal `p`: a suspect source of the same kind that is the one recorded, or whose
/// kind's recorded name is no longer configured; for an unrecorded source, any suspect source that could have
/// made it.
pub fn held_by_source(
    iam: &Iam,
    cfg: &Config,
    p: &Who,
    made: Option<&Src>,
) -> Option<&'static str> {
    let configured = |s: &Src| match s {
        Src::Tag(k) => k.eq_ignore_ascii_case(&cfg.tag_key),
        Src::Set(n) => cfg.sets.contains(n),
        Src::Group(n) => cfg.groups.contains(n),
    };
    suspect(iam, cfg).into_iter().find_map(|s| {
        let hit = match made {
            Some(m) => s.same_kind(m) && (s == *m || !configured(m)),
            None => match &s {
                Src::Tag(_) => true,
                Src::Set(_) => p.0 == Kind::Role && p.1.starts_with("awsreservedsso_"),
                Src::Group(_) => p.0 == Kind::User,
            },
        };
        hit.then_some(match s {
            Src::Tag(_) => "no-tagged-principals",
            _ => "source-yields-nobody",
        })
    })
}

// ---------------------------------------------------------------- the stores as read

fn field<'a>(row: &'a Value, name: &str) -> Option<&'a str> {
    row.as_object()?
        .iter()
        .rfind(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

/// The rows of one `aws-auth` list, read with a YAML parser of its own (not the product's reader).
pub fn rows(c: &Cluster, key: &str) -> Vec<Value> {
    let Some(text) = c.aws_auth.as_ref().and_then(|cm| cm.data.get(key)) else {
        return Vec::new();
    };
    if text.trim().is_empty() {
        return Vec::new();
    }
    // The same text is read many times between two writes: parse it once.
    thread_local! {
        static PARSED: std::cell::RefCell<std::collections::HashMap<String, Vec<Value>>> =
            std::cell::RefCell::default();
    }
    PARSED.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(v) = cache.get(text) {
            return v.clone();
        }
        let v = match serde_saphyr::from_str::<Value>(text) {
            Ok(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        if cache.len() > 4096 {
            cache.clear();
        }
        cache.insert(text.clone(), v.clone());
        v
    })
}

pub fn is_ours_row(row: &Value) -> bool {
    field(row, "eks-admin-sync") == Some("default")
}

pub fn is_ours_entry(e: &Entry) -> bool {
    e.kind == "STANDARD"
        && e.tags.get("eks-admin-sync").map(String::as_str) == Some("default")
        && e.groups.iter().any(|g| g == "eks-admin-sync:default")
}

/// One of this deployment's grants as a store holds it: where, for whom, and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub store: &'static str,
    /// The ARN as the store holds it, lower case (a role's without its path in aws-auth).
    pub key: String,
    pub who: Who,
    pub fingerprint: Value,
    pub source: Option<Src>,
}

/// Every grant of this deployment on a cluster, in both stores (whatever the mode reads).
pub fn ours(c: &Cluster) -> Vec<Held> {
    let mut out = Vec::new();
    for (list, arn_field) in [("mapUsers", "userarn"), ("mapRoles", "rolearn")] {
        for r in rows(c, list).into_iter().filter(is_ours_row) {
            let Some(arn) = field(&r, arn_field).map(str::to_string) else {
                continue;
            };
            let Some(w) = who_of_arn(&arn) else { continue };
            out.push(Held {
                store: "aws-auth",
                key: arn.to_ascii_lowercase(),
                who: w,
                source: field(&r, "eks-admin-sync-source").and_then(Src::parse),
                fingerprint: r,
            });
        }
    }
    for e in c.entries.values().filter(|e| is_ours_entry(e)) {
        let Some(w) = who_of_arn(&e.principal_arn) else {
            continue;
        };
        out.push(Held {
            store: "access-entries",
            key: e.principal_arn.to_ascii_lowercase(),
            who: w,
            source: e
                .tags
                .get("eks-admin-sync-source")
                .and_then(|s| Src::parse(s))
                .map(|s| match s {
                    Src::Set(n) => Src::Set(n.replace(' ', ",")),
                    Src::Group(n) => Src::Group(n.replace(' ', ",")),
                    t => t,
                }),
            fingerprint: serde_json::json!({
                "username": e.username, "groups": e.groups, "tags": e.tags,
                "policies": e.policies.iter().map(|(k, v)| (k.clone(), format!("{v:?}"))).collect::<BTreeMap<_, _>>(),
                "id": e.principal_id,
            }),
        });
    }
    out
}

/// Everything on a cluster that is not this deployment's: foreign rows of each list (in order), the other
/// keys of `aws-auth` and every foreign entry.
pub fn foreign(c: &Cluster) -> Value {
    let mut data = BTreeMap::new();
    if let Some(cm) = &c.aws_auth {
        for (k, v) in &cm.data {
            if k == "mapUsers" || k == "mapRoles" {
                let foreign: Vec<Value> =
                    rows(c, k).into_iter().filter(|r| !is_ours_row(r)).collect();
                data.insert(k.clone(), Value::Array(foreign));
            } else {
                data.insert(k.clone(), Value::String(v.clone()));
            }
        }
    }
    let entries: BTreeMap<&String, String> = c
        .entries
        .iter()
        .filter(|(_, e)| !is_ours_entry(e))
        .map(|(k, e)| (k, format!("{e:?}")))
        .collect();
    serde_json::json!({"data": data, "entries": entries})
}

/// What this deployment's grants hold for `p` on a cluster, as EKS reads its stores in the cluster's mode
/// (an entry is honoured only for the principal id it was made for; in `API_AND_CONFIG_MAP` a principal's
/// entry is read before `aws-auth`; a row matches by ARN, so it would let in whoever holds the name next).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    /// The grant lets `p` in.
    pub working: bool,
    /// A grant of ours that EKS would honour for `p`, or for the next principal of its name (a row).
    pub usable: bool,
    /// Any grant of ours naming `p` where EKS reads, an entry of a principal IAM no longer has included.
    pub named: bool,
}

pub fn grant_of(w: &World, cluster: &str, held: &[Held], p: &Who) -> Granted {
    let c = &w.clusters[cluster];
    let id = match p.0 {
        Kind::User => w
            .iam
            .users
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&p.1))
            .map(|(_, u)| u.id.clone()),
        Kind::Role => w
            .iam
            .roles
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&p.1))
            .map(|(_, r)| r.id.clone()),
    };
    let entry = c.entries.values().find(|e| {
        who_of_arn(&e.principal_arn).as_ref() == Some(p)
            && id.as_deref() == Some(e.principal_id.as_str())
    });
    let ours_entry = entry.is_some_and(is_ours_entry);
    let working_entry = ours_entry
        && entry.is_some_and(|e| {
            e.policies
                .get(ADMIN_POLICY)
                .is_some_and(|(t, _)| t == "cluster")
        });
    let row = held.iter().any(|h| h.store == "aws-auth" && h.who == *p);
    let any_entry = held
        .iter()
        .any(|h| h.store == "access-entries" && h.who == *p);
    match c.mode {
        0 => Granted {
            working: row,
            usable: row,
            named: row,
        },
        1 => Granted {
            working: if entry.is_some() { working_entry } else { row },
            usable: row || ours_entry,
            named: row || any_entry,
        },
        _ => Granted {
            working: working_entry,
            usable: ours_entry,
            named: any_entry,
        },
    }
}

/// The record annotation's tag key, and the tag keys our entries were granted under. The annotation counts in
/// every mode: a warm environment whose cache still says `API_AND_CONFIG_MAP` reads it on an `API` cluster.
pub fn recorded_tag_keys(c: &Cluster) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(text) = c
        .aws_auth
        .as_ref()
        .and_then(|cm| cm.annotations.get("eks-admin-sync/owned-user-arns"))
        && let Ok(v) = serde_json::from_str::<Value>(text)
        && let Some(k) = v["tagKey"].as_str()
    {
        out.push(k.to_string());
    }
    if c.mode > 0 {
        out.extend(
            c.entries
                .values()
                .filter(|e| e.tags.get("eks-admin-sync").map(String::as_str) == Some("default"))
                .filter_map(|e| e.tags.get("eks-admin-sync-tag-key").cloned()),
        );
    }
    out
}
