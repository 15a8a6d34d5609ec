//! IAM facts → the grants each managed cluster should have. Pure.
//!
//! A grant speaks of a principal and what it should be given (username, groups), not of how a store writes
//! it: `aws-auth` writes a `mapUsers` row, access entries an entry and its policies.

use crate::core::settings::{AccessPolicy, Settings, parse_bool, render_username};
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

/// What makes a principal an admin. Today: the admin tag on an IAM user.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// The tag key it carries (with a value naming the cluster, or `true`).
    Tag(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Tag(key) => write!(f, "tag:{key}"),
        }
    }
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
}

impl Principal {
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
}

/// The grants for one cluster, plus why some tagged users were left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub grants: Vec<Grant>,
    pub notes: Vec<String>,
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

/// Which managed clusters a tag value grants, and a note when part of it was ignored.
pub fn clusters_for_tag(value: &str, settings: &Settings) -> (BTreeSet<String>, Option<String>) {
    let v = value.trim();
    if parse_bool(v) == Some(true) {
        return (settings.clusters.iter().cloned().collect(), None);
    }
    if v.is_empty() {
        return (BTreeSet::new(), Some("value is empty".into()));
    }
    if parse_bool(v) == Some(false) {
        return (BTreeSet::new(), Some("value is false".into()));
    }
    let mut granted = BTreeSet::new();
    let mut unknown = Vec::new();
    for name in v.split_whitespace() {
        if settings.manages(name) {
            granted.insert(name.to_string());
        } else {
            unknown.push(name);
        }
    }
    let note = (!unknown.is_empty()).then(|| {
        format!(
            "names clusters this function does not manage: {} (managed: {}; use spaces, not commas)",
            unknown.join(" "),
            settings.clusters.join(" ")
        )
    });
    (granted, note)
}

/// Account id and user name from an IAM user ARN `arn:PARTITION:iam::ACCOUNT:user/PATH/NAME`.
pub fn parse_user_arn(arn: &str) -> Option<(&str, &str)> {
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
        && account.bytes().all(|b| b.is_ascii_digit())
        && resource.starts_with("user/");
    if !ok {
        return None;
    }
    let name = resource.rsplit('/').next()?;
    (!name.is_empty()).then_some((account, name))
}

/// The user-name segment of a user ARN, for matching owned entries to an event's user name.
pub fn user_name_of_arn(arn: &str) -> Option<&str> {
    parse_user_arn(arn).map(|(_, n)| n)
}

/// Grants for `cluster` from the given users.
pub fn desired_for_cluster(users: &[Principal], settings: &Settings, cluster: &str) -> Desired {
    let mut out = Desired::default();
    for u in users {
        let Some(value) = u.tag_value(&settings.tag_key) else {
            continue;
        };
        let (clusters, note) = clusters_for_tag(value, settings);
        if let Some(n) = note {
            out.notes.push(format!(
                "user {}: tag {}={value:?} {n}",
                u.name, settings.tag_key
            ));
        }
        if !clusters.contains(cluster) {
            continue;
        }
        let Some((account, arn_name)) = parse_user_arn(&u.arn) else {
            out.notes.push(format!(
                "user {}: IAM returned an ARN that is not a user ARN: {:?}; skipped",
                u.name, u.arn
            ));
            continue;
        };
        if !arn_name.eq_ignore_ascii_case(&u.name) {
            out.notes.push(format!(
                "user {}: ARN {} names another user; skipped",
                u.name, u.arn
            ));
            continue;
        }
        out.grants.push(Grant {
            arn: u.arn.clone(),
            kind: u.kind,
            source: Some(Source::Tag(settings.tag_key.clone())),
            username: render_username(&settings.username_template, &u.name, account),
            groups: settings.groups.clone(),
            id: u.id.clone(),
            policies: Vec::new(),
        });
    }
    out.grants.sort();
    out.grants.dedup_by(|a, b| ArnKey(&a.arn) == ArnKey(&b.arn));
    out
}

/// Usernames EKS refuses in an access entry.
pub const RESERVED_USERNAME_PREFIXES: [&str; 5] = ["system:", "eks:", "aws:", "amazon:", "iam:"];

/// The same grants as an access entry holds them: `ADMIN_GROUPS` without `system:` groups (EKS refuses
/// them; admin rights come from the access policies), plus `ACCESS_POLICIES`. A grant whose username EKS
/// would refuse is dropped with a note.
pub fn access_entry_grants(desired: &Desired, settings: &Settings) -> Desired {
    let groups: Vec<String> = settings
        .groups
        .iter()
        .filter(|g| !g.starts_with("system:"))
        .cloned()
        .collect();
    let mut out = Desired {
        grants: Vec::with_capacity(desired.grants.len()),
        notes: Vec::new(),
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
        out.grants.push(Grant {
            groups: groups.clone(),
            policies: settings.access_policies.clone(),
            ..g.clone()
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
        }
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
            ("Prod", &[], Some("Prod")),
            ("yes", &[], Some("yes")),
        ];
        for (value, want, note) in cases {
            let (got, n) = clusters_for_tag(value, &s);
            let got: Vec<&str> = got.iter().map(String::as_str).collect();
            assert_eq!(&got, want, "{value:?}");
            match (n, note) {
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
            },
            Principal {
                kind: PrincipalKind::User,
                name: "eve".into(),
                arn: "garbage".into(),
                id: None,
                tags: vec![("eks-cluster-admin".into(), "true".into())],
            },
        ];
        let prod = desired_for_cluster(&users, &s, "prod");
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

        let staging = desired_for_cluster(&users, &s, "staging");
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
        let d = desired_for_cluster(&[user("amy", &[("eks-cluster-admin", "true")])], &s, "prod");
        assert_eq!(d.grants[0].username, "123456789012:amy");
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
