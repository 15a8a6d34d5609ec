//! The entry model: how a grant is written as an access entry, and whose an entry is. No I/O.
//!
//! Ownership is kept twice on every entry this deployment makes, as `aws-auth` keeps it twice:
//! - the tags [`MARK_TAG`] = `DEPLOYMENT_ID` (with [`USER_ID_TAG`] and [`TAG_KEY_TAG`] beside it), which IAM
//!   conditions can see;
//! - the Kubernetes group [`GROUP_MARK_PREFIX`]`DEPLOYMENT_ID` among the entry's `kubernetesGroups`, which no
//!   RBAC binds and which tag-hygiene tools do not touch.
//!
//! Both present: ours. Neither: someone else's (or taken over by a person who removed both). Exactly one:
//! unclear: the entry is never changed and the run fails naming it until a person restores the missing mark
//! or removes the other one too.

use crate::core::grants::{Grant, LEVELS_RECORD_KEY, Source};
use crate::core::plan::{CurrentEntry, Owner};
use crate::core::settings::{AccessPolicy, PolicyScope};
use aws_sdk_eks::types::{AccessEntry, AccessScope, AccessScopeType, AssociatedAccessPolicy};
use std::collections::HashMap;

/// The tag that marks an entry as this deployment's (value: `DEPLOYMENT_ID`).
pub const MARK_TAG: &str = "eks-admin-sync";
/// The IAM user id the entry was granted to.
pub const USER_ID_TAG: &str = "eks-admin-sync-user-id";
/// Entry types nodes sign in with (EKS user guide, "Create access entries": the types besides `STANDARD`).
pub const NODE_ENTRY_TYPES: [&str; 5] = [
    "EC2_LINUX",
    "EC2_WINDOWS",
    "FARGATE_LINUX",
    "HYBRID_LINUX",
    "EC2",
];
/// The admin tag key the entry was granted under.
pub const TAG_KEY_TAG: &str = "eks-admin-sync-tag-key";
/// The source the grant was made by (`tag:<key>`, `permission-set:<name>`, `iam-group:<name>`; see
/// [`Source::to_tag_value`]): what the removal guard judges a revocation by.
pub const SOURCE_TAG: &str = "eks-admin-sync-source";
/// Every tag key this deployment writes on an entry (the function's role may write these only).
pub const MARK_TAG_KEYS: [&str; 4] = [MARK_TAG, USER_ID_TAG, TAG_KEY_TAG, SOURCE_TAG];
/// The second mark: the Kubernetes group `eks-admin-sync:<DEPLOYMENT_ID>` on the entry.
pub const GROUP_MARK_PREFIX: &str = "eks-admin-sync:";

/// This deployment, as its entries name it.
#[derive(Debug, Clone)]
pub struct Marks {
    pub deployment: String,
    pub tag_key: String,
}

/// What the store knows of one entry from its read.
#[derive(Debug, Clone)]
pub struct Known {
    pub entry_arn: String,
    /// Whether it is a node entry (`EC2_LINUX`, `EC2_WINDOWS`, `FARGATE_LINUX`, `HYBRID_LINUX`, `EC2`).
    pub node: bool,
    pub tags: HashMap<String, String>,
    pub policies: Option<Vec<AccessPolicy>>,
}

impl Marks {
    /// The Kubernetes group that marks this deployment's entries.
    pub fn group(&self) -> String {
        format!("{GROUP_MARK_PREFIX}{}", self.deployment)
    }

    /// The tags an entry granted with `g` carries (the mark on every one, so that IAM can ask for it on
    /// every tagging request; the principal's id and the grant's source when known).
    pub fn tags_for(&self, g: &Grant) -> HashMap<String, String> {
        let mut t = HashMap::from([
            (MARK_TAG.to_string(), self.deployment.clone()),
            (TAG_KEY_TAG.to_string(), self.tag_key.clone()),
        ]);
        if let Some(id) = &g.id {
            t.insert(USER_ID_TAG.to_string(), id.clone());
        }
        if let Some(source) = &g.source {
            t.insert(SOURCE_TAG.to_string(), source.to_tag_value());
        }
        if let Some(record) = &g.levels_record {
            t.insert(LEVELS_RECORD_KEY.to_string(), record.clone());
        }
        t
    }

    /// The `kubernetesGroups` an entry granted with `g` is written with: the grant's, then the group mark.
    pub fn groups_for(&self, g: &Grant) -> Vec<String> {
        let mark = self.group();
        let mut out: Vec<String> = g.groups.iter().filter(|x| **x != mark).cloned().collect();
        out.push(mark);
        out
    }

    /// Whose the entry is, from its type, tags and groups.
    pub fn owner(
        &self,
        entry_type: Option<&str>,
        tags: &HashMap<String, String>,
        groups: &[String],
    ) -> Owner {
        let standard = entry_type.is_none_or(|t| t == "STANDARD");
        let tagged = tags.get(MARK_TAG) == Some(&self.deployment);
        let mark = self.group();
        let grouped = groups.contains(&mark);
        match (standard, tagged, grouped) {
            (true, true, true) => Owner::Us { marked: true },
            (true, true, false) | (true, false, true) => Owner::Unclear,
            _ => Owner::Foreign,
        }
    }

    /// Who else the entry names as its owner (another deployment's mark), for the report.
    pub fn held_by(&self, tags: &HashMap<String, String>) -> Option<String> {
        tags.get(MARK_TAG)
            .filter(|d| **d != self.deployment)
            .map(|d| format!("eks-admin-sync deployment {d:?}"))
    }

    /// An EKS entry as the planner sees it (the group mark is ownership, not part of the grant), and what
    /// the store keeps of it.
    pub fn entry(&self, e: &AccessEntry, principal: &str) -> (CurrentEntry, Known) {
        let tags = e.tags().cloned().unwrap_or_default();
        let groups = e.kubernetes_groups();
        let owner = self.owner(e.r#type(), &tags, groups);
        let mark = self.group();
        let current = CurrentEntry {
            arn: Some(e.principal_arn().unwrap_or(principal).to_string()),
            username: e.username().map(str::to_string),
            groups: groups.iter().filter(|g| **g != mark).cloned().collect(),
            id: tags.get(USER_ID_TAG).cloned(),
            owner,
            policies: None,
            held_by: self.held_by(&tags),
            source: tags.get(SOURCE_TAG).and_then(|v| Source::from_tag_value(v)),
            levels_record: tags.get(LEVELS_RECORD_KEY).cloned(),
        };
        let known = Known {
            entry_arn: e.access_entry_arn().unwrap_or_default().to_string(),
            node: e.r#type().is_some_and(|t| NODE_ENTRY_TYPES.contains(&t)),
            tags,
            policies: None,
        };
        (current, known)
    }
}

/// An association as a grant's policy; `None` when EKS answers something not understood.
pub fn policy_of(p: &AssociatedAccessPolicy) -> Option<AccessPolicy> {
    let arn = p.policy_arn()?.to_string();
    let scope = p.access_scope()?;
    let scope = match scope.r#type()? {
        AccessScopeType::Cluster => PolicyScope::Cluster,
        AccessScopeType::Namespace => {
            let mut namespaces = scope.namespaces().to_vec();
            namespaces.sort();
            namespaces.dedup();
            PolicyScope::Namespaces { namespaces }
        }
        _ => return None,
    };
    Some(AccessPolicy { arn, scope })
}

pub fn scope_of(p: &AccessPolicy) -> AccessScope {
    match &p.scope {
        PolicyScope::Cluster => AccessScope::builder()
            .r#type(AccessScopeType::Cluster)
            .build(),
        PolicyScope::Namespaces { namespaces } => AccessScope::builder()
            .r#type(AccessScopeType::Namespace)
            .set_namespaces(Some(namespaces.clone()))
            .build(),
    }
}

/// The configured policies EKS does not offer, as the operator wrote them (names, or ARNs of another
/// partition). ARNs are compared exactly: EKS refuses an association by any other spelling.
pub fn unknown_policies(configured: &[AccessPolicy], offered: &[String]) -> Vec<String> {
    configured
        .iter()
        .filter(|p| !offered.contains(&p.arn))
        .map(|p| {
            match p
                .arn
                .strip_prefix(crate::core::settings::ACCESS_POLICY_ARN_PREFIX)
            {
                Some(name) => name.to_string(),
                None => p.arn.clone(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks() -> Marks {
        Marks {
            deployment: "default".into(),
            tag_key: "eks-cluster-admin".into(),
        }
    }

    #[test]
    fn an_entrys_levels_record_is_a_tag_written_only_when_asked() {
        let m = marks();
        let g = Grant {
            arn: "arn:aws:iam::123456789012:user/alice".into(),
            ..Grant::default()
        };
        assert!(!m.tags_for(&g).contains_key(LEVELS_RECORD_KEY));
        let declared = Grant {
            levels_record: Some("admin:tag/view:tag".into()),
            ..g
        };
        let tags = m.tags_for(&declared);
        assert_eq!(tags[LEVELS_RECORD_KEY], "admin:tag/view:tag");
        let e = aws_sdk_eks::types::AccessEntry::builder()
            .principal_arn("arn:aws:iam::123456789012:user/alice")
            .r#type("STANDARD")
            .set_tags(Some(tags))
            .kubernetes_groups(m.group())
            .build();
        let (current, _) = m.entry(&e, "arn:aws:iam::123456789012:user/alice");
        assert_eq!(current.levels_record.as_deref(), Some("admin:tag/view:tag"));
    }

    #[test]
    fn policies_eks_does_not_offer_are_named_as_written() {
        use crate::core::settings::parse_access_policies;
        let offered: Vec<String> = ["AmazonEKSClusterAdminPolicy", "AmazonEKSAdminViewPolicy"]
            .iter()
            .map(|n| format!("arn:aws:eks::aws:cluster-access-policy/{n}"))
            .collect();
        let ok =
            parse_access_policies("AmazonEKSAdminViewPolicy, AmazonEKSClusterAdminPolicy").unwrap();
        assert!(unknown_policies(&ok, &offered).is_empty());
        let typo =
            parse_access_policies("AmazonEKSClusterAdminPolicy, AmazonEKSAdminViwPolicy=team-a")
                .unwrap();
        assert_eq!(
            unknown_policies(&typo, &offered),
            vec!["AmazonEKSAdminViwPolicy"]
        );
        // A policy of another partition is not the one EKS here offers.
        let cn = parse_access_policies(
            "arn:aws-cn:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
        )
        .unwrap();
        assert_eq!(
            unknown_policies(&cn, &offered),
            vec!["arn:aws-cn:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"]
        );
        assert_eq!(
            unknown_policies(&ok, &[]).len(),
            2,
            "EKS offering nothing offers none of them"
        );
    }

    #[test]
    fn ownership_needs_both_marks() {
        let m = marks();
        let tags = |d: &str| HashMap::from([(MARK_TAG.to_string(), d.to_string())]);
        let groups = |g: &[&str]| g.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let ours = groups(&["eks-admins", "eks-admin-sync:default"]);
        let cases = [
            (
                None,
                tags("default"),
                ours.clone(),
                Owner::Us { marked: true },
            ),
            (
                Some("STANDARD"),
                tags("default"),
                ours.clone(),
                Owner::Us { marked: true },
            ),
            // A tag-hygiene tool stripped the tags; a person removed the group.
            (None, HashMap::new(), ours.clone(), Owner::Unclear),
            (
                None,
                tags("default"),
                groups(&["eks-admins"]),
                Owner::Unclear,
            ),
            // Both removed: taken over. Another deployment's; a node role's entry.
            (
                None,
                HashMap::new(),
                groups(&["eks-admins"]),
                Owner::Foreign,
            ),
            (
                None,
                tags("other"),
                groups(&["eks-admin-sync:other"]),
                Owner::Foreign,
            ),
            (
                Some("EC2_LINUX"),
                tags("default"),
                ours.clone(),
                Owner::Foreign,
            ),
            // Another deployment's tag with our group: one of ours is there, one is not.
            (None, tags("other"), ours, Owner::Unclear),
        ];
        for (ty, t, g, want) in cases {
            assert_eq!(m.owner(ty, &t, &g), want, "{ty:?} {t:?} {g:?}");
        }
        assert_eq!(m.held_by(&tags("default")), None);
        assert!(m.held_by(&tags("other")).unwrap().contains("\"other\""));
    }

    #[test]
    fn the_group_mark_is_written_once_and_read_back_out() {
        let m = marks();
        let g = Grant {
            arn: "arn:aws:iam::123456789012:user/alice".into(),
            username: "alice".into(),
            groups: vec!["eks-admins".into(), "eks-admin-sync:default".into()],
            id: Some("AIDA1".into()),
            policies: vec![],
            ..Default::default()
        };
        assert_eq!(m.groups_for(&g), ["eks-admins", "eks-admin-sync:default"]);
        let e = AccessEntry::builder()
            .principal_arn(&g.arn)
            .set_kubernetes_groups(Some(m.groups_for(&g)))
            .set_tags(Some(m.tags_for(&g)))
            .r#type("STANDARD")
            .build();
        let (current, known) = m.entry(&e, &g.arn);
        assert_eq!(current.groups, ["eks-admins"]);
        assert_eq!(current.owner, Owner::Us { marked: true });
        assert_eq!(current.id.as_deref(), Some("AIDA1"));
        assert_eq!(known.tags.len(), 3);
    }

    #[test]
    fn policies_from_eks() {
        let cluster_admin = AssociatedAccessPolicy::builder()
            .policy_arn("arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy")
            .access_scope(
                AccessScope::builder()
                    .r#type(AccessScopeType::Cluster)
                    .build(),
            )
            .build();
        assert_eq!(
            policy_of(&cluster_admin),
            Some(AccessPolicy {
                arn: "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy".into(),
                scope: PolicyScope::Cluster
            })
        );
        let ns = AssociatedAccessPolicy::builder()
            .policy_arn("arn:aws:eks::aws:cluster-access-policy/AmazonEKSAdminPolicy")
            .access_scope(
                AccessScope::builder()
                    .r#type(AccessScopeType::Namespace)
                    .namespaces("b")
                    .namespaces("a")
                    .build(),
            )
            .build();
        let p = policy_of(&ns).unwrap();
        assert_eq!(
            p.scope,
            PolicyScope::Namespaces {
                namespaces: vec!["a".into(), "b".into()]
            }
        );
        // Round trip through the request shape.
        let s = scope_of(&p);
        assert_eq!(s.r#type(), Some(&AccessScopeType::Namespace));
        assert_eq!(s.namespaces(), ["a", "b"]);
        assert_eq!(
            policy_of(&AssociatedAccessPolicy::builder().build()),
            None,
            "an association without policy or scope is not understood"
        );
    }
}
