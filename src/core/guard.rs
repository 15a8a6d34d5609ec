//! The removal guard: looks at a cluster's plan before anything is written and refuses what an
//! unattended run must not do on its own. Pure.
//!
//! Each removal is judged by the source that made its grant (recorded on the store beside the marks:
//! `tag:<key>`, `permission-set:<name>`, `iam-group:<name>`). Rules, checked on every cluster after all
//! clusters were planned and before any is written:
//! - `no-tagged-principals` (full reconciles): no IAM principal carries the tag key at all. A typo in
//!   `ADMIN_TAG_KEY`, or a new key nobody carries yet, looks exactly like this. The removals of grants the
//!   tag made are refused; every other removal, add and update goes on.
//! - `source-yields-nobody` (full reconciles): a named permission set has no role in the account, or a
//!   named IAM group is one IAM does not have (a typo, or a rename). The removals of grants that source
//!   made, or that a source of its kind made under a name no longer configured (the name the typo
//!   replaced), are refused. A group that exists with no members is not suspect (break-glass groups are
//!   empty on purpose).
//! - Neither source rule holds back the removal of a principal IAM no longer has (deleted: a typo leaves
//!   the old principals in IAM), nor an expiry. A grant that does not say what made it (written before
//!   grants recorded their source) is held back by any suspect source that could have made it.
//! - `max-removals` (full reconciles): more removals on one cluster than `MAX_REMOVALS` (what the source
//!   rules left). The removals are refused; adds and updates still go through.
//! - `record-tag-key` (every run): the cluster's ownership record was written under another tag key, so
//!   either this deployment's key changed or a second deployment shares this `DEPLOYMENT_ID`. Nothing is
//!   written to that cluster.
//!
//! A single-principal event is bounded by itself and is not capped. The override for one run is `force`.

use crate::core::grants::{
    ArnKey, Grant, Principal, PrincipalKind, Source, names_match, principal_of_arn,
    read_levels_record,
};
use crate::core::levels::Level;
use crate::core::plan::{Change, ClusterState, Plan};
use crate::core::settings::Settings;
use serde::Serialize;
use std::collections::HashSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    NoTaggedPrincipals,
    SourceYieldsNobody,
    MaxRemovals,
    RecordTagKey,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::NoTaggedPrincipals => "no-tagged-principals",
            Rule::SourceYieldsNobody => "source-yields-nobody",
            Rule::MaxRemovals => "max-removals",
            Rule::RecordTagKey => "record-tag-key",
        }
    }

    /// The rule a suspect source trips.
    fn of_source(s: &Source) -> Rule {
        match s {
            Source::Tag(_) => Rule::NoTaggedPrincipals,
            Source::PermissionSet(_) | Source::IamGroup(_) => Rule::SourceYieldsNobody,
        }
    }
}

/// One refused change: the grant as the store holds it, and the rule that refused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refused {
    #[serde(flatten)]
    pub grant: Grant,
    pub rule: Rule,
}

/// What one rule said on one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleMessage {
    pub rule: Rule,
    pub message: String,
}

/// What the guard did on one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Guarded {
    /// The first rule that tripped (`no-tagged-principals`, `source-yields-nobody`, `max-removals`,
    /// `record-tag-key`, in that order); `rules` has every one.
    pub rule: Rule,
    pub rules: Vec<RuleMessage>,
    /// The removals the plan had (for `record-tag-key`: all of its changes).
    pub count: usize,
    /// `true`: a rule tripped but `force` let the plan through unchanged.
    pub forced: bool,
    /// What was refused (empty when forced), each with its rule.
    pub refused: Vec<Refused>,
    /// Every rule's message, one after the other.
    pub message: String,
}

impl Guarded {
    /// What the rule that refused a change said (the audit record's reason).
    pub fn message_of(&self, rule: Rule) -> &str {
        self.rules
            .iter()
            .find(|m| m.rule == rule)
            .map_or(self.message.as_str(), |m| m.message.as_str())
    }

    fn new(rules: Vec<RuleMessage>, count: usize, force: bool, refused: Vec<Refused>) -> Self {
        let mut message = rules
            .iter()
            .map(|m| m.message.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        if force {
            message.push_str(" (overridden by force)");
        } else {
            message.push_str(&format!("; {OVERRIDE}"));
        }
        Guarded {
            rule: rules.first().map_or(Rule::MaxRemovals, |m| m.rule),
            rules,
            count,
            forced: force,
            refused: if force { Vec::new() } else { refused },
            message,
        }
    }
}

/// What IAM says of the configured sources and of the principals, for the rules on removals. Made once per
/// full reconcile from the bulk read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceFacts {
    /// Every source the configuration names: the tag key, each permission set, each group.
    pub configured: Vec<Source>,
    /// Those that look mistyped: nobody carries the tag key (whatever its value), a permission set has no
    /// role in the account, IAM has no group of that name.
    pub suspect: Vec<Source>,
    /// The principals IAM has, as (kind, lowercase name): IAM names are unique whatever their case and
    /// path, and `aws-auth` holds a role's ARN without its path.
    present: HashSet<(PrincipalKind, String)>,
    /// The configured levels, to read what a grant's levels record says made each level.
    levels: Vec<Level>,
}

impl SourceFacts {
    /// The facts of a bulk read: every principal, and every IAM group name (`groups`: asked only when
    /// groups are configured). Names compare by [`names_match`], the rule the grants use.
    pub fn of(settings: &Settings, principals: &[Principal], groups: &[String]) -> Self {
        let mut configured: Vec<Source> = Vec::new();
        for level in &settings.levels {
            let named = level.tag_key.iter().map(|k| Source::Tag(k.clone()));
            let sets = level
                .permission_sets
                .iter()
                .map(|n| Source::PermissionSet(n.clone()));
            let groups = level.iam_groups.iter().map(|n| Source::IamGroup(n.clone()));
            for s in named.chain(sets).chain(groups) {
                if !configured.contains(&s) {
                    configured.push(s);
                }
            }
        }
        let suspect = configured
            .iter()
            .filter(|s| match s {
                Source::Tag(key) => !principals.iter().any(|p| p.tag_value(key).is_some()),
                Source::PermissionSet(set) => !principals
                    .iter()
                    .any(|p| p.permission_set().is_some_and(|x| names_match(set, x))),
                Source::IamGroup(g) => !groups.iter().any(|x| names_match(g, x)),
            })
            .cloned()
            .collect();
        let present = principals
            .iter()
            .map(|p| (p.kind, p.name.to_ascii_lowercase()))
            .collect();
        SourceFacts {
            configured,
            suspect,
            present,
            levels: settings.levels.clone(),
        }
    }

    /// Whether IAM still has the principal a grant is for (an ARN that names none is taken to be there).
    fn has(&self, g: &Grant) -> bool {
        principal_of_arn(&g.arn)
            .is_none_or(|(kind, name)| self.present.contains(&(kind, name.to_ascii_lowercase())))
    }

    /// The suspect source that may have made `g`, or one of its levels when the store recorded them (a
    /// removal takes every level away, so any level's suspect source holds it back).
    fn suspect_behind(&self, g: &Grant) -> Option<&Source> {
        match g.levels_record.as_deref() {
            Some(record) => read_levels_record(record, &self.levels)
                .into_iter()
                .find_map(|(_, made)| self.suspect_for(made.as_ref(), g)),
            None => self.suspect_for(g.source.as_ref(), g),
        }
    }

    /// The suspect source behind what `made` grant `g`: the one it records, or one of the same kind when the
    /// source it records is no longer configured (the suspect name may be a typo of it); when it does not say,
    /// any suspect source that could have made it.
    fn suspect_for(&self, made: Option<&Source>, g: &Grant) -> Option<&Source> {
        self.suspect.iter().find(|s| match made {
            Some(made) => s.same_kind(made) && (*s == made || !self.configured.contains(made)),
            None => s.could_grant(g),
        })
    }
}

/// The facts the guard needs besides the plan.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// A full reconcile (the rules on removals apply only to those).
    pub full: bool,
    pub sources: &'a SourceFacts,
    /// The ARNs whose removal on this cluster is an expiry (any case, either store's form).
    pub expired: &'a [String],
    pub max_removals: Option<usize>,
    pub force: bool,
    pub tag_key: &'a str,
}

impl Facts<'_> {
    /// The source rule that holds back the removal of `g`, if any.
    fn holds_back(&self, g: &Grant) -> Option<Rule> {
        let expiry = self.expired.iter().any(|a| a.eq_ignore_ascii_case(&g.arn));
        if expiry || !self.sources.has(g) {
            return None;
        }
        self.sources.suspect_behind(g).map(Rule::of_source)
    }
}

/// How a refusal can be lifted for one run. A force carries the time it was made: a retry of the invocation
/// later than that (Lambda retries an asynchronous invocation for up to an hour) is refused.
pub const OVERRIDE: &str = "to let it through once, after checking that the removals are meant, invoke with \
     {\"action\":\"reconcile\",\"force\":true,\"forceAt\":\"<now, e.g. $(date -u +%Y-%m-%dT%H:%M:%SZ)>\"} \
     (honoured for 5 minutes) or run `eks-admin-sync reconcile --force`";

/// Checks one cluster's plan; refuses what a rule forbids (unless forced) and says so.
pub fn guard(plan: &mut Plan, state: &ClusterState, facts: &Facts) -> Option<Guarded> {
    if let Some(g) = record_tag_key(plan, state, facts) {
        return Some(g);
    }
    if !facts.full {
        return None;
    }
    let removals = plan.revocations();
    if removals == 0 {
        return None;
    }
    let held: Vec<(Grant, Rule)> = revocations(plan)
        .filter_map(|g| facts.holds_back(g).map(|r| (g.clone(), r)))
        .collect();
    let left = removals - held.len();
    let over = facts.max_removals.filter(|max| left > *max);
    if held.is_empty() && over.is_none() {
        return None;
    }
    let rules = messages(&held, facts, removals, left, over);
    let refuse = |g: &Grant| -> Option<Rule> {
        held.iter()
            .find(|(h, _)| h == g)
            .map(|(_, r)| *r)
            .or(over.map(|_| Rule::MaxRemovals))
    };
    let refused = if facts.force {
        Vec::new()
    } else {
        refuse_removals(plan, &refuse)
    };
    Some(Guarded::new(rules, removals, facts.force, refused))
}

/// The removals that take access away: this store's (not replacements) and retired `aws-auth` mappings
/// that are not moves.
fn revocations(plan: &Plan) -> impl Iterator<Item = &Grant> {
    plan.changes
        .iter()
        .filter_map(|c| match c {
            Change::Remove(g) if !plan.is_replacement(&g.arn) => Some(g),
            _ => None,
        })
        .chain(plan.retire.iter().flat_map(|r| r.revocations()))
}

/// One message per rule that tripped, in the order of [`Rule`].
fn messages(
    held: &[(Grant, Rule)],
    facts: &Facts,
    removals: usize,
    left: usize,
    over: Option<usize>,
) -> Vec<RuleMessage> {
    let mut out = Vec::new();
    let count = |rule: Rule| held.iter().filter(|(_, r)| *r == rule).count();
    let tag = count(Rule::NoTaggedPrincipals);
    if tag > 0 {
        out.push(RuleMessage {
            rule: Rule::NoTaggedPrincipals,
            message: format!(
                "rule no-tagged-principals: no IAM principal carries the tag key {:?} at all (a typo in \
                 ADMIN_TAG_KEY looks like this), yet {tag} removal(s) of grants the tag made (or that do not say \
                 what made them) are planned for principals IAM still has; those refused",
                facts.tag_key
            ),
        });
    }
    let named = count(Rule::SourceYieldsNobody);
    if named > 0 {
        let names: Vec<String> = facts
            .sources
            .suspect
            .iter()
            .filter(|s| Rule::of_source(s) == Rule::SourceYieldsNobody)
            .map(ToString::to_string)
            .collect();
        out.push(RuleMessage {
            rule: Rule::SourceYieldsNobody,
            message: format!(
                "rule source-yields-nobody: {} grant{} nobody (a permission set without a role in this account, \
                 or an IAM group IAM does not have: a typo in ADMIN_PERMISSION_SETS or ADMIN_IAM_GROUPS, or a \
                 rename, looks like this), yet {named} removal(s) of grants such a source made are planned for \
                 principals IAM still has; those refused",
                names.join(", "),
                if names.len() == 1 { "s" } else { "" }
            ),
        });
    }
    if let Some(max) = over {
        let what = if held.is_empty() {
            format!("{removals} removals exceed MAX_REMOVALS={max}")
        } else {
            format!("the other {left} removals still exceed MAX_REMOVALS={max}")
        };
        out.push(RuleMessage {
            rule: Rule::MaxRemovals,
            message: format!(
                "rule max-removals: {what}; removals refused, adds and updates applied; raise MAX_REMOVALS (0: \
                 no cap) or force"
            ),
        });
    }
    out
}

/// `record-tag-key`: the record of the cluster's own store, or of its aws-auth while this deployment's
/// mappings there are retired, written under another key. Everything on the cluster is refused.
fn record_tag_key(plan: &mut Plan, state: &ClusterState, facts: &Facts) -> Option<Guarded> {
    let recorded = [
        state.record_tag_key.as_ref(),
        state
            .legacy
            .as_ref()
            .and_then(|l| l.record_tag_key.as_ref()),
    ]
    .into_iter()
    .flatten()
    .find(|k| !k.eq_ignore_ascii_case(facts.tag_key))?;
    let count = plan.changes.len() + plan.retire.as_ref().map_or(0, |r| r.plan.changes.len());
    let message = format!(
        "rule record-tag-key: the ownership record on this cluster was written under tag key {recorded:?}, \
         this deployment uses {:?}; {count} change(s) refused, nothing written. If a second deployment \
         shares this cluster, give it its own DEPLOYMENT_ID; if the key changed on purpose, force",
        facts.tag_key
    );
    let rules = vec![RuleMessage {
        rule: Rule::RecordTagKey,
        message,
    }];
    if facts.force {
        return Some(Guarded::new(rules, count, true, Vec::new()));
    }
    let mut refused: Vec<Refused> = plan
        .changes
        .drain(..)
        .map(|c| Refused {
            grant: c.grant().clone(),
            rule: Rule::RecordTagKey,
        })
        .collect();
    if let Some(r) = plan.retire.as_deref_mut() {
        refused.extend(r.plan.changes.drain(..).map(|c| Refused {
            grant: c.grant().clone(),
            rule: Rule::RecordTagKey,
        }));
        r.plan.hold = true;
    }
    plan.hold = true;
    Some(Guarded::new(rules, count, false, refused))
}

/// Takes the removals `refuse` picks out of the plan (replacements stay whole) and out of the retired
/// `aws-auth` mappings (moves stay); they stay owned, so the next run (or a forced one) sees them again.
fn refuse_removals(plan: &mut Plan, refuse: &dyn Fn(&Grant) -> Option<Rule>) -> Vec<Refused> {
    let mut refused = Vec::new();
    let replaced: Vec<String> = plan.replaced.iter().map(|r| r.arn.clone()).collect();
    plan.changes.retain(|c| match c {
        // A replacement stays whole: its old identity is gone, and its add alone would meet the old entry.
        Change::Remove(g) if replaced.iter().any(|a| a.eq_ignore_ascii_case(&g.arn)) => true,
        Change::Remove(g) => match refuse(g) {
            Some(rule) => {
                refused.push(Refused {
                    grant: g.clone(),
                    rule,
                });
                false
            }
            None => true,
        },
        _ => true,
    });
    keep_owned(plan, &refused);
    if let Some(r) = plan.retire.as_deref_mut() {
        let migrated = r.migrated.clone();
        let mut kept = Vec::new();
        r.plan.changes.retain(|c| match c {
            Change::Remove(g) if !migrated.contains(&g.arn) => match refuse(g) {
                Some(rule) => {
                    kept.push(Refused {
                        grant: g.clone(),
                        rule,
                    });
                    false
                }
                None => true,
            },
            _ => true,
        });
        keep_owned(&mut r.plan, &kept);
        refused.extend(kept);
    }
    refused
}

/// Refused removals stay in the ownership record.
fn keep_owned(plan: &mut Plan, refused: &[Refused]) {
    plan.owned_after
        .extend(refused.iter().map(|r| r.grant.arn.clone()));
    plan.owned_after.sort_by(|a, b| ArnKey(a).cmp(&ArnKey(b)));
    plan.owned_after.dedup();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::{CurrentEntry, Owner, Scope, plan};

    const ACCOUNT: &str = "123456789012";
    const SSO: &str = "/aws-reserved/sso.amazonaws.com/";

    fn arn(n: usize) -> String {
        format!("arn:aws:iam::{ACCOUNT}:user/u{n:02}")
    }
    fn grant(n: usize) -> Grant {
        Grant {
            arn: arn(n),
            username: format!("u{n:02}"),
            groups: vec!["system:masters".into()],
            ..Default::default()
        }
    }
    fn entry(g: &Grant) -> CurrentEntry {
        CurrentEntry {
            arn: Some(g.arn.clone()),
            username: Some(g.username.clone()),
            groups: g.groups.clone(),
            id: g.id.clone(),
            owner: Owner::Us { marked: true },
            policies: None,
            held_by: None,
            source: g.source.clone(),
            levels_record: g.levels_record.clone(),
        }
    }
    fn state(owned: &[Grant]) -> ClusterState {
        ClusterState {
            entries: owned.iter().map(entry).collect(),
            recorded: owned.iter().map(|g| g.arn.clone()).collect(),
            record_tag_key: Some("eks-cluster-admin".into()),
            ..Default::default()
        }
    }
    fn made_by(g: Grant, s: Source) -> Grant {
        Grant {
            source: Some(s),
            ..g
        }
    }
    fn tag() -> Source {
        Source::Tag("eks-cluster-admin".into())
    }
    fn user(name: &str, tags: &[(&str, &str)], groups: &[&str]) -> Principal {
        Principal {
            kind: PrincipalKind::User,
            name: name.into(),
            arn: format!("arn:aws:iam::{ACCOUNT}:user/{name}"),
            id: None,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }
    fn sso_role(name: &str) -> Principal {
        Principal {
            kind: PrincipalKind::Role,
            name: name.into(),
            arn: format!("arn:aws:iam::{ACCOUNT}:role{SSO}{name}"),
            id: None,
            tags: vec![],
            groups: vec![],
        }
    }
    fn settings(extra: &[(&str, &str)]) -> Settings {
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| match k {
            "CLUSTER_NAMES" => Some("prod".into()),
            other => extra
                .iter()
                .find(|(e, _)| e == other)
                .map(|(_, v)| v.clone()),
        })
        .unwrap()
    }
    fn facts<'a>(sources: &'a SourceFacts, max: Option<usize>, expired: &'a [String]) -> Facts<'a> {
        Facts {
            full: true,
            sources,
            expired,
            max_removals: max,
            force: false,
            tag_key: "eks-cluster-admin",
        }
    }
    /// The plan that removes every owned grant (nobody is granted any more).
    fn removing(owned: &[Grant]) -> (Plan, ClusterState) {
        let st = state(owned);
        (plan(&st, &[], &Scope::All), st)
    }
    fn refused(g: &Guarded) -> Vec<(String, Rule)> {
        g.refused
            .iter()
            .map(|r| (r.grant.arn.clone(), r.rule))
            .collect()
    }

    #[test]
    fn source_facts_follow_the_bulk_read() {
        let s = settings(&[
            ("ADMIN_PERMISSION_SETS", "Admin admin Gone"),
            ("ADMIN_IAM_GROUPS", "break-glass platform ghosts"),
        ]);
        let principals = [
            user("a", &[("EKS-Cluster-Admin", "false")], &[]),
            sso_role("AWSReservedSSO_Admin_0123456789abcdef"),
        ];
        let groups = ["break-glass".to_string(), "platform".to_string()];
        let f = SourceFacts::of(&s, &principals, &groups);
        assert_eq!(f.configured.len(), 7);
        // The tag has a carrier (any value, any case of the key); a set name in another case is another
        // name, as the grants read it; an empty group that exists is not suspect, one IAM lacks is.
        assert_eq!(
            f.suspect,
            vec![
                Source::PermissionSet("admin".into()),
                Source::PermissionSet("Gone".into()),
                Source::IamGroup("ghosts".into()),
            ]
        );
        assert!(
            !f.has(&grant(0))
                && f.has(&Grant {
                    arn: format!("arn:aws:iam::{ACCOUNT}:user/A"),
                    ..grant(0)
                })
        );
        // aws-auth holds a role without its path: the name still finds it.
        let bare = Grant {
            arn: format!("arn:aws:iam::{ACCOUNT}:role/AWSReservedSSO_Admin_0123456789abcdef"),
            kind: PrincipalKind::Role,
            ..Default::default()
        };
        assert!(f.has(&bare));
        assert!(!SourceFacts::of(&s, &[], &[]).suspect.is_empty());
    }

    #[test]
    fn the_tag_rule_holds_back_only_tag_grants() {
        // Nobody carries the tag (a deployment that grants through groups only); IAM still has every user.
        let s = settings(&[("ADMIN_IAM_GROUPS", "platform")]);
        let principals: Vec<Principal> = (0..4)
            .map(|n| user(&format!("u{n:02}"), &[], &[]))
            .collect();
        let sources = SourceFacts::of(&s, &principals, &["platform".to_string()]);
        assert_eq!(sources.suspect, vec![tag()]);
        let owned = [
            made_by(grant(0), Source::IamGroup("platform".into())),
            made_by(grant(1), Source::IamGroup("platform".into())),
            made_by(grant(2), tag()),
            grant(3), // written before grants said what made them
        ];
        let (mut p, st) = removing(&owned);
        let g = guard(&mut p, &st, &facts(&sources, None, &[])).unwrap();
        assert_eq!(g.rule, Rule::NoTaggedPrincipals);
        assert_eq!(
            refused(&g),
            vec![
                (arn(2), Rule::NoTaggedPrincipals),
                (arn(3), Rule::NoTaggedPrincipals)
            ]
        );
        assert!(g.message.contains("no-tagged-principals") && g.message.contains("forceAt"));
        // The group members removed from the group lose their grants.
        assert_eq!(p.revocations(), 2);
        assert!(p.owned_after.contains(&arn(2)) && !p.owned_after.contains(&arn(0)));
    }

    #[test]
    fn a_removal_is_held_back_by_the_suspect_source_of_any_level_it_recorded() {
        let mut s = settings(&[]);
        s.levels = crate::core::levels::parse_levels(
            r#"[{"name": "admin", "tagKey": "eks-cluster-admin", "awsAuthGroups": ["system:masters"]},
                {"name": "view", "iamGroups": ["viewers"], "clusterRole": "view"}]"#,
        )
        .unwrap();
        let principals: Vec<Principal> = (0..3)
            .map(|n| user(&format!("u{n:02}"), &[("eks-cluster-admin", "false")], &[]))
            .collect();
        // IAM has no group "viewers" (a typo, or a rename): that source is suspect, the tag is not.
        let sources = SourceFacts::of(&s, &principals, &[]);
        assert_eq!(sources.suspect, vec![Source::IamGroup("viewers".into())]);
        let recorded = |g: Grant, record: &str| Grant {
            levels_record: Some(record.into()),
            ..made_by(g, tag())
        };
        let owned = [
            recorded(grant(0), "admin:tag/view:iam-group:viewers"),
            recorded(grant(1), "admin:tag"),
            // A level no longer configured says nothing of its source: any suspect that could have made it.
            recorded(grant(2), "gone:tag"),
        ];
        let (mut p, st) = removing(&owned);
        let g = guard(&mut p, &st, &facts(&sources, None, &[])).unwrap();
        assert_eq!(
            refused(&g),
            vec![
                (arn(0), Rule::SourceYieldsNobody),
                (arn(2), Rule::SourceYieldsNobody)
            ]
        );
        assert_eq!(p.revocations(), 1, "the grant only the tag made goes");
    }

    #[test]
    fn an_empty_group_holds_back_nothing_and_a_missing_one_only_its_own() {
        let s = settings(&[("ADMIN_IAM_GROUPS", "break-glass platfrom")]);
        let principals: Vec<Principal> = (0..4)
            .map(|n| user(&format!("u{n:02}"), &[("eks-cluster-admin", "false")], &[]))
            .collect();
        // break-glass exists with nobody in it; "platfrom" (a typo of platform) does not exist.
        let sources = SourceFacts::of(&s, &principals, &["break-glass".into(), "platform".into()]);
        assert_eq!(sources.suspect, vec![Source::IamGroup("platfrom".into())]);
        let owned = [
            made_by(grant(0), Source::IamGroup("break-glass".into())),
            made_by(grant(1), Source::IamGroup("platform".into())), // the name the typo replaced
            made_by(grant(2), tag()),
            grant(3),
        ];
        let (mut p, st) = removing(&owned);
        let expired = [arn(3)];
        let g = guard(&mut p, &st, &facts(&sources, None, &expired)).unwrap();
        assert_eq!(g.rule, Rule::SourceYieldsNobody);
        // Only the grant the mistyped name's predecessor made; the expiry goes whatever its provenance.
        assert_eq!(refused(&g), vec![(arn(1), Rule::SourceYieldsNobody)]);
        assert!(g.message.contains("iam-group:platfrom"), "{}", g.message);
        assert_eq!(p.revocations(), 3);
    }

    #[test]
    fn a_principal_iam_no_longer_has_is_never_held_back_as_a_typo() {
        // Identity Center deleted the set's role (every assignment removed): the set has no role, and
        // neither does IAM have the principal the grant was for.
        let s = settings(&[("ADMIN_PERMISSION_SETS", "Admin")]);
        let sources = SourceFacts::of(
            &s,
            &[user("keep", &[("eks-cluster-admin", "true")], &[])],
            &[],
        );
        assert_eq!(sources.suspect, vec![Source::PermissionSet("Admin".into())]);
        let gone = Grant {
            arn: format!("arn:aws:iam::{ACCOUNT}:role/AWSReservedSSO_Admin_0123456789abcdef"),
            kind: PrincipalKind::Role,
            username: "x".into(),
            source: Some(Source::PermissionSet("Admin".into())),
            ..Default::default()
        };
        let (mut p, st) = removing(std::slice::from_ref(&gone));
        assert!(guard(&mut p, &st, &facts(&sources, None, &[])).is_none());
        assert_eq!(p.revocations(), 1);
        // A case typo of the name: the old set's roles are still in IAM, so their removal is held back.
        let s = settings(&[("ADMIN_PERMISSION_SETS", "admin")]);
        let sources = SourceFacts::of(
            &s,
            &[sso_role("AWSReservedSSO_Admin_0123456789abcdef")],
            &[],
        );
        let (mut p, st) = removing(std::slice::from_ref(&gone));
        let g = guard(&mut p, &st, &facts(&sources, None, &[])).unwrap();
        assert_eq!(
            refused(&g),
            vec![(gone.arn.clone(), Rule::SourceYieldsNobody)]
        );
    }

    #[test]
    fn a_set_removed_from_the_configuration_on_purpose_is_revoked() {
        // ADMIN_PERMISSION_SETS no longer names Admin, and nothing configured looks mistyped: the set's
        // grants go (under the cap).
        let s = settings(&[("ADMIN_PERMISSION_SETS", "Other")]);
        let principals = [
            sso_role("AWSReservedSSO_Admin_0123456789abcdef"),
            sso_role("AWSReservedSSO_Other_0123456789abcdef"),
            user("t", &[("eks-cluster-admin", "true")], &[]),
        ];
        let sources = SourceFacts::of(&s, &principals, &[]);
        assert!(sources.suspect.is_empty());
        let g = Grant {
            arn: principals[0].arn.clone(),
            kind: PrincipalKind::Role,
            source: Some(Source::PermissionSet("Admin".into())),
            ..Default::default()
        };
        let (mut p, st) = removing(&[g]);
        assert!(guard(&mut p, &st, &facts(&sources, Some(10), &[])).is_none());
        assert_eq!(p.revocations(), 1);
    }

    #[test]
    fn what_the_source_rules_leave_still_meets_the_cap() {
        let s = settings(&[("ADMIN_IAM_GROUPS", "platfrom")]);
        let principals: Vec<Principal> = (0..5)
            .map(|n| user(&format!("u{n:02}"), &[("eks-cluster-admin", "false")], &[]))
            .collect();
        let sources = SourceFacts::of(&s, &principals, &[]);
        let owned: Vec<Grant> = (0..5)
            .map(|n| {
                made_by(
                    grant(n),
                    if n == 0 {
                        Source::IamGroup("platform".into())
                    } else {
                        tag()
                    },
                )
            })
            .collect();
        // 1 held back by the group typo, 4 left: over a cap of 3, so every removal is refused.
        let (mut p, st) = removing(&owned);
        let g = guard(&mut p, &st, &facts(&sources, Some(3), &[])).unwrap();
        assert_eq!(g.rule, Rule::SourceYieldsNobody);
        assert_eq!(
            g.rules.iter().map(|m| m.rule).collect::<Vec<_>>(),
            [Rule::SourceYieldsNobody, Rule::MaxRemovals]
        );
        assert_eq!(g.refused.len(), 5);
        assert_eq!(g.refused[0].rule, Rule::SourceYieldsNobody);
        assert!(g.refused[1..].iter().all(|r| r.rule == Rule::MaxRemovals));
        assert!(
            g.message
                .contains("the other 4 removals still exceed MAX_REMOVALS=3"),
            "{}",
            g.message
        );
        assert_eq!(p.revocations(), 0);
        // Within the cap, the four go.
        let (mut p, st) = removing(&owned);
        let g = guard(&mut p, &st, &facts(&sources, Some(4), &[])).unwrap();
        assert_eq!(g.refused.len(), 1);
        assert_eq!(p.revocations(), 4);
    }

    #[test]
    fn max_removals_is_a_strict_cap() {
        let sources = SourceFacts::of(
            &settings(&[]),
            &[user("t", &[("eks-cluster-admin", "true")], &[])],
            &[],
        );
        for (removals, max, trips) in [(3, 3, false), (4, 3, true), (11, 10, true), (50, 0, false)]
        {
            let owned: Vec<Grant> = (0..removals).map(|n| made_by(grant(n), tag())).collect();
            let (mut p, st) = removing(&owned);
            let cap = (max > 0).then_some(max);
            let g = guard(&mut p, &st, &facts(&sources, cap, &[]));
            assert_eq!(g.is_some(), trips, "{removals} removals, cap {max}");
            if let Some(g) = g {
                assert_eq!(g.rule, Rule::MaxRemovals);
                assert!(
                    g.message
                        .contains(&format!("{removals} removals exceed MAX_REMOVALS={max}"))
                );
                assert_eq!(p.revocations(), 0);
            } else {
                assert_eq!(p.revocations(), removals);
            }
        }
    }

    #[test]
    fn events_are_not_capped_and_force_lets_through() {
        let sources = SourceFacts::of(&settings(&[]), &[], &[]);
        let owned: Vec<Grant> = (0..20).map(grant).collect();
        let (mut p, st) = removing(&owned);
        let scoped = Facts {
            full: false,
            ..facts(&sources, Some(1), &[])
        };
        assert!(guard(&mut p, &st, &scoped).is_none());
        assert_eq!(p.revocations(), 20);

        let (mut p, st) = removing(&owned);
        let forced = Facts {
            force: true,
            ..facts(&sources, Some(1), &[])
        };
        let g = guard(&mut p, &st, &forced).unwrap();
        assert!(g.forced && g.refused.is_empty());
        assert!(g.message.contains("overridden by force"));
        assert_eq!(p.revocations(), 20, "force leaves the plan as it is");
    }

    #[test]
    fn record_under_another_tag_key_holds_the_whole_cluster() {
        let sources = SourceFacts::default();
        let owned = [grant(0), grant(1)];
        let mut st = state(&owned);
        st.record_tag_key = Some("eks-cluster-viewer".into());
        let p = plan(&st, &[grant(0), grant(9)], &Scope::All);
        for full in [true, false] {
            let mut q = p.clone();
            let f = Facts {
                full,
                ..facts(&sources, None, &[])
            };
            let g = guard(&mut q, &st, &f).unwrap();
            assert_eq!(g.rule, Rule::RecordTagKey);
            assert!(q.hold && q.changes.is_empty());
            assert!(g.message.contains("DEPLOYMENT_ID"));
        }
        let mut q = p.clone();
        let forced = Facts {
            force: true,
            ..facts(&sources, None, &[])
        };
        let g = guard(&mut q, &st, &forced).unwrap();
        assert!(g.forced && !q.hold && !q.changes.is_empty());
        // The same key in another case is the same key (IAM tag keys are case-insensitive).
        st.record_tag_key = Some("EKS-Cluster-Admin".into());
        let mut q = plan(&st, &[grant(0), grant(1)], &Scope::All);
        assert!(guard(&mut q, &st, &facts(&sources, None, &[])).is_none());
    }

    #[test]
    fn the_aws_auth_record_of_a_migrating_cluster_counts_for_record_tag_key() {
        let sources = SourceFacts::default();
        let mut legacy = state(&[grant(0)]);
        legacy.record_tag_key = Some("eks-cluster-viewer".into());
        let st = ClusterState {
            legacy: Some(Box::new(legacy)),
            ..ClusterState::default()
        };
        let mut p = plan(&st, &[grant(0)], &Scope::All);
        let f = Facts {
            full: false,
            ..facts(&sources, None, &[])
        };
        let g = guard(&mut p, &st, &f).unwrap();
        assert_eq!(g.rule, Rule::RecordTagKey);
        assert!(p.hold);
    }

    #[test]
    fn a_replacement_is_neither_counted_nor_split() {
        let sources = SourceFacts::of(
            &settings(&[]),
            &(0..3)
                .map(|n| user(&format!("u{n:02}"), &[("eks-cluster-admin", "true")], &[]))
                .collect::<Vec<_>>(),
            &[],
        );
        // 3 owned entries, all still granted, 2 of them behind a new IAM user id (deleted and re-created).
        let owned: Vec<Grant> = (0..3)
            .map(|n| Grant {
                id: Some(format!("AIDAOLD{n}")),
                ..made_by(grant(n), tag())
            })
            .collect();
        let st = state(&owned);
        let desired: Vec<Grant> = (0..3)
            .map(|n| Grant {
                id: Some(if n < 2 {
                    format!("AIDANEW{n}")
                } else {
                    format!("AIDAOLD{n}")
                }),
                ..made_by(grant(n), tag())
            })
            .collect();
        let mut p = plan(&st, &desired, &Scope::All);
        assert_eq!(p.removals(), 2);
        assert_eq!(p.revocations(), 0, "a replacement is not a revocation");
        assert!(guard(&mut p, &st, &facts(&sources, Some(1), &[])).is_none());
        // With a real revocation beside them (the third user untagged), a cap of 0 refuses only that one
        // and keeps both pairs whole.
        let mut p = plan(&st, &desired[..2], &Scope::All);
        assert_eq!(p.revocations(), 1);
        let g = guard(&mut p, &st, &facts(&sources, Some(0), &[])).unwrap();
        assert_eq!(refused(&g), vec![(arn(2), Rule::MaxRemovals)]);
        let removed: Vec<&str> = p
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Remove(g) => Some(g.arn.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(removed, [arn(0), arn(1)], "both replacements kept whole");
    }

    #[test]
    fn retired_rows_count_as_removals_only_when_they_revoke() {
        use crate::core::plan::{Retirement, retire};
        let sources = SourceFacts::of(
            &settings(&[]),
            &[user("t", &[("eks-cluster-admin", "true")], &[])],
            &[],
        );
        // aws-auth on a migrating cluster: 5 of our rows; 3 principals still granted (their entries are
        // being made: moves), 2 not (revocations). The entries store itself removes nothing.
        let owned: Vec<Grant> = (0..5).map(|n| made_by(grant(n), tag())).collect();
        let legacy = state(&owned);
        let desired: Vec<Grant> = owned[..3].to_vec();
        let entries = ClusterState::default();
        let mut p = plan(&entries, &desired, &Scope::All);
        p.retire = Some(Box::new(retire(&legacy, &p, &desired, &Scope::All)));
        let st = ClusterState {
            legacy: Some(Box::new(legacy)),
            ..entries
        };
        assert_eq!(p.revocations(), 2);
        let mut ok = p.clone();
        assert!(guard(&mut ok, &st, &facts(&sources, Some(2), &[])).is_none());
        // With MAX_REMOVALS=1 the revocations are refused, the moves and the adds go through.
        let g = guard(&mut p, &st, &facts(&sources, Some(1), &[])).unwrap();
        assert_eq!(g.rule, Rule::MaxRemovals);
        assert_eq!(
            refused(&g),
            vec![(arn(3), Rule::MaxRemovals), (arn(4), Rule::MaxRemovals)]
        );
        let r: &Retirement = p.retire.as_deref().unwrap();
        assert_eq!(r.plan.changes.len(), 3);
        assert!(r.revocations().next().is_none());
        assert_eq!(r.plan.owned_after, vec![arn(3), arn(4)]);
        assert_eq!(p.changes.len(), 3, "the three entries are still created");
    }
}
