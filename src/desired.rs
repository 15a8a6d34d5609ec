//! IAM facts → the mappings each managed cluster should have. Pure.

use crate::config::{Settings, parse_bool, render_username};
use std::collections::BTreeSet;

/// What IAM says about one user (from `GetUser` or `GetAccountAuthorizationDetails`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamUser {
    pub name: String,
    /// The ARN exactly as IAM returns it, path included.
    pub arn: String,
    pub tags: Vec<(String, String)>,
}

/// One admin mapping as this function writes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Mapping {
    pub arn: String,
    pub username: String,
    pub groups: Vec<String>,
}

impl Mapping {
    /// Matching key: EKS compares ARNs case-insensitively.
    pub fn key(&self) -> String {
        self.arn.to_ascii_lowercase()
    }
}

/// The desired mappings for one cluster, plus why some tagged users were left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub mappings: Vec<Mapping>,
    pub notes: Vec<String>,
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

/// Desired mappings for `cluster` from the given users.
pub fn desired_for_cluster(users: &[IamUser], settings: &Settings, cluster: &str) -> Desired {
    let mut out = Desired::default();
    for u in users {
        let Some(value) = u
            .tags
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&settings.tag_key))
            .map(|(_, v)| v.as_str())
        else {
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
        out.mappings.push(Mapping {
            arn: u.arn.clone(),
            username: render_username(&settings.username_template, &u.name, account),
            groups: settings.groups.clone(),
        });
    }
    out.mappings.sort();
    out.mappings.dedup_by(|a, b| a.key() == b.key());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(clusters: &str) -> Settings {
        Settings::from_lookup(|k| (k == "CLUSTER_NAMES").then(|| clusters.to_string())).unwrap()
    }

    fn user(name: &str, tags: &[(&str, &str)]) -> IamUser {
        IamUser {
            name: name.into(),
            arn: format!("arn:aws:iam::123456789012:user/{name}"),
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
            IamUser {
                name: "dan".into(),
                arn: "arn:aws:iam::123456789012:user/ops/dan".into(),
                tags: vec![("eks-cluster-admin".into(), "prod".into())],
            },
            IamUser {
                name: "eve".into(),
                arn: "garbage".into(),
                tags: vec![("eks-cluster-admin".into(), "true".into())],
            },
        ];
        let prod = desired_for_cluster(&users, &s, "prod");
        let arns: Vec<&str> = prod.mappings.iter().map(|m| m.arn.as_str()).collect();
        assert_eq!(
            arns,
            vec![
                "arn:aws:iam::123456789012:user/ops/dan",
                "arn:aws:iam::123456789012:user/zed"
            ]
        );
        assert_eq!(prod.mappings[0].username, "dan");
        assert_eq!(prod.mappings[0].groups, vec!["system:masters"]);
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
        let names: Vec<&str> = staging
            .mappings
            .iter()
            .map(|m| m.username.as_str())
            .collect();
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
        assert_eq!(d.mappings[0].username, "123456789012:amy");
    }
}
