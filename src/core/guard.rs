//! The removal guard: looks at a cluster's plan before anything is written and refuses what an
//! unattended run must not do on its own. Pure.
//!
//! Rules, checked on every cluster after all clusters were planned and before any is written:
//! - `no-tagged-principals` (full reconciles): no IAM principal carries the tag key at all while this
//!   deployment owns entries. A typo in `ADMIN_TAG_KEY`, or a new key that users do not carry yet, looks
//!   exactly like this. The removals are refused; adds and updates still go through.
//! - `source-yields-nobody` (full reconciles): a named permission set has no role in the account, or a
//!   named IAM group does not exist or is empty, while removals of principals it could have granted are
//!   planned (a typo in `ADMIN_PERMISSION_SETS` or `ADMIN_IAM_GROUPS`). Those removals are refused, the
//!   rest of the plan goes on (and still meets the cap).
//! - `max-removals` (full reconciles): more removals on one cluster than `MAX_REMOVALS`. The removals are
//!   refused; adds and updates still go through.
//! - `record-tag-key` (every run): the cluster's ownership record was written under another tag key, so
//!   either this deployment's key changed or a second deployment shares this `DEPLOYMENT_ID`. Nothing is
//!   written to that cluster.
//!
//! A single-user event is bounded by itself and is not capped. The override for one run is `force`.

use crate::core::grants::{Grant, Source};
use crate::core::plan::{Change, ClusterState, Plan};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
}

/// What the guard did on one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Guarded {
    pub rule: Rule,
    /// The removals the plan had (for `record-tag-key`: all of its changes).
    pub count: usize,
    /// `true`: the rule tripped but `force` let the plan through unchanged.
    pub forced: bool,
    /// What was refused (empty when forced).
    pub refused: Vec<Grant>,
    pub message: String,
}

/// The facts the guard needs besides the plan.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// A full reconcile (the rules on removals apply only to those).
    pub full: bool,
    /// The configured sources that yield no principal at all (the tag: nobody carries the key, whatever
    /// its value; a permission set without a role; an absent or empty group).
    pub empty: &'a [Source],
    pub max_removals: Option<usize>,
    pub force: bool,
    pub tag_key: &'a str,
}

const OVERRIDE: &str = "to let it through once, invoke with {\"action\":\"reconcile\",\"force\":true} or run `eks-admin-sync reconcile --force`";

/// Checks one cluster's plan; refuses what a rule forbids (unless forced) and says so.
pub fn guard(plan: &mut Plan, state: &ClusterState, facts: &Facts) -> Option<Guarded> {
    // The record of the cluster's own store, or of its aws-auth while this deployment's mappings there are
    // retired: either written under another key means the same.
    let other_key = [
        state.record_tag_key.as_ref(),
        state
            .legacy
            .as_ref()
            .and_then(|l| l.record_tag_key.as_ref()),
    ]
    .into_iter()
    .flatten()
    .find(|k| !k.eq_ignore_ascii_case(facts.tag_key));
    if let Some(recorded) = other_key {
        let count = plan.changes.len() + plan.retire.as_ref().map_or(0, |r| r.plan.changes.len());
        let message = format!(
            "rule record-tag-key: the ownership record on this cluster was written under tag key {recorded:?}, \
             this deployment uses {:?}; {count} change(s) refused, nothing written. If a second deployment \
             shares this cluster, give it its own DEPLOYMENT_ID; if the key changed on purpose, {OVERRIDE}",
            facts.tag_key
        );
        return Some(refuse_all(
            plan,
            Rule::RecordTagKey,
            count,
            facts.force,
            message,
        ));
    }
    if !facts.full {
        return None;
    }
    let removals = plan.revocations();
    if removals == 0 {
        return None;
    }
    let owns = state.owns_anything() || state.legacy.as_ref().is_some_and(|l| l.owns_anything());
    let tag_empty = facts.empty.iter().any(|s| matches!(s, Source::Tag(_)));
    let (rule, message, refuse): Verdict = if tag_empty && owns {
        (
            Rule::NoTaggedPrincipals,
            format!(
                "rule no-tagged-principals: no IAM principal carries the tag key {:?} at all, yet {removals} \
                 owned entr{} would be removed (a typo in ADMIN_TAG_KEY looks like this); removals refused, \
                 adds and updates applied; {OVERRIDE}",
                facts.tag_key,
                if removals == 1 { "y" } else { "ies" }
            ),
            Box::new(|_| true),
        )
    } else if let Some((rule, message, refuse)) = empty_source(plan, facts, removals) {
        (rule, message, refuse)
    } else if let Some(max) = facts.max_removals
        && removals > max
    {
        (
            Rule::MaxRemovals,
            format!(
                "rule max-removals: {removals} removals exceed MAX_REMOVALS={max}; removals refused, adds and \
                 updates applied; raise MAX_REMOVALS (0: no cap) or, {OVERRIDE}"
            ),
            Box::new(|_| true),
        )
    } else {
        return None;
    };
    if facts.force {
        return Some(Guarded {
            rule,
            count: removals,
            forced: true,
            refused: Vec::new(),
            message: format!("{message} (overridden by force)"),
        });
    }
    let refused = refuse_removals(plan, &*refuse);
    Some(Guarded {
        rule,
        count: removals,
        forced: false,
        refused,
        message,
    })
}

type Verdict<'a> = (Rule, String, Box<dyn Fn(&Grant) -> bool + 'a>);

/// `source-yields-nobody`: the revocations a source that yields nobody could have granted. When the
/// removals left over still exceed the cap, every removal is refused under this rule.
fn empty_source<'a>(plan: &Plan, facts: &Facts<'a>, removals: usize) -> Option<Verdict<'a>> {
    let empty: Vec<&'a Source> = facts
        .empty
        .iter()
        .filter(|s| !matches!(s, Source::Tag(_)))
        .collect();
    let hit = |g: &Grant| empty.iter().any(|s| s.could_grant(g));
    let revoking: Vec<&Grant> = plan
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::Remove(g) if !plan.is_replacement(&g.arn) => Some(g),
            _ => None,
        })
        .chain(plan.retire.iter().flat_map(|r| r.revocations()))
        .collect();
    let hits = revoking.iter().filter(|g| hit(g)).count();
    if hits == 0 {
        return None;
    }
    let names: Vec<String> = empty.iter().map(ToString::to_string).collect();
    let left = removals - hits;
    let over = facts.max_removals.is_some_and(|max| left > max);
    let message = format!(
        "rule source-yields-nobody: {} yield{} no principal at all (a permission set without a role in this \
         account, or an IAM group that does not exist or is empty: a typo in ADMIN_PERMISSION_SETS or \
         ADMIN_IAM_GROUPS looks like this), yet {hits} removal(s) of principals they could have granted are \
         planned; those refused{}; {OVERRIDE}",
        names.join(", "),
        if names.len() == 1 { "s" } else { "" },
        if over {
            format!(
                ", and the other {left} exceed MAX_REMOVALS={}: every removal refused",
                facts.max_removals.unwrap_or_default()
            )
        } else {
            ", the rest of the plan applied".into()
        }
    );
    let refuse: Box<dyn Fn(&Grant) -> bool + 'a> = if over {
        Box::new(|_| true)
    } else {
        Box::new(move |g| empty.iter().any(|s| s.could_grant(g)))
    };
    Some((Rule::SourceYieldsNobody, message, refuse))
}

/// Takes the removals `refuse` picks out of the plan (replacements stay whole) and out of the retired
/// `aws-auth` mappings (moves stay); they stay owned, so the next run (or a forced one) sees them again.
fn refuse_removals(plan: &mut Plan, refuse: &dyn Fn(&Grant) -> bool) -> Vec<Grant> {
    let mut refused = Vec::new();
    let replaced: Vec<String> = plan.replaced.iter().map(|r| r.arn.clone()).collect();
    plan.changes.retain(|c| match c {
        // A replacement stays whole: its old identity is gone, and its add alone would meet the old entry.
        Change::Remove(g) if replaced.iter().any(|a| a.eq_ignore_ascii_case(&g.arn)) => true,
        Change::Remove(g) if refuse(g) => {
            refused.push(g.clone());
            false
        }
        _ => true,
    });
    plan.owned_after
        .extend(refused.iter().map(|g| g.arn.clone()));
    plan.owned_after
        .sort_by(|a, b| crate::core::grants::ArnKey(a).cmp(&crate::core::grants::ArnKey(b)));
    if let Some(r) = plan.retire.as_deref_mut() {
        let migrated = r.migrated.clone();
        let mut kept = Vec::new();
        r.plan.changes.retain(|c| match c {
            Change::Remove(g) if !migrated.contains(&g.arn) && refuse(g) => {
                kept.push(g.clone());
                false
            }
            _ => true,
        });
        r.plan
            .owned_after
            .extend(kept.iter().map(|g| g.arn.clone()));
        r.plan
            .owned_after
            .sort_by(|a, b| crate::core::grants::ArnKey(a).cmp(&crate::core::grants::ArnKey(b)));
        refused.extend(kept);
    }
    refused
}

fn refuse_all(plan: &mut Plan, rule: Rule, count: usize, force: bool, message: String) -> Guarded {
    if force {
        return Guarded {
            rule,
            count,
            forced: true,
            refused: Vec::new(),
            message: format!("{message} (overridden by force)"),
        };
    }
    let mut refused: Vec<Grant> = plan.changes.drain(..).map(|c| c.grant().clone()).collect();
    if let Some(r) = plan.retire.as_deref_mut() {
        refused.extend(r.plan.changes.drain(..).map(|c| c.grant().clone()));
        r.plan.hold = true;
    }
    plan.hold = true;
    Guarded {
        rule,
        count,
        forced: false,
        refused,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::{CurrentEntry, Owner, Scope, plan};

    fn arn(n: usize) -> String {
        format!("arn:aws:iam::123456789012:user/u{n:02}")
    }
    fn grant(n: usize) -> Grant {
        Grant {
            arn: arn(n),
            username: format!("u{n:02}"),
            groups: vec!["system:masters".into()],
            id: None,
            policies: vec![],
            ..Default::default()
        }
    }
    /// `owned` of our entries on the cluster; `desired` of them still granted, plus one new grant.
    fn planned(owned: usize, desired: usize) -> (Plan, ClusterState) {
        let state = ClusterState {
            entries: (0..owned)
                .map(|n| CurrentEntry {
                    arn: Some(arn(n)),
                    username: Some(format!("u{n:02}")),
                    groups: vec!["system:masters".into()],
                    id: None,
                    owner: Owner::Us { marked: true },
                    policies: None,
                    held_by: None,
                })
                .collect(),
            recorded: (0..owned).map(arn).collect(),
            record_tag_key: Some("eks-cluster-admin".into()),
            ..Default::default()
        };
        let mut want: Vec<Grant> = (0..desired).map(grant).collect();
        want.push(grant(99));
        (plan(&state, &want, &Scope::All), state)
    }
    const NO_TAG: &[Source] = &[Source::Tag(String::new())];
    fn facts(full: bool, tagged: usize, max: Option<usize>, force: bool) -> Facts<'static> {
        Facts {
            full,
            empty: if tagged == 0 { NO_TAG } else { &[] },
            max_removals: max,
            force,
            tag_key: "eks-cluster-admin",
        }
    }

    #[test]
    fn no_tagged_principals_refuses_removals_only() {
        let (mut p, st) = planned(4, 0);
        assert_eq!(p.removals(), 4);
        let g = guard(&mut p, &st, &facts(true, 0, None, false)).unwrap();
        assert_eq!(g.rule, Rule::NoTaggedPrincipals);
        assert_eq!((g.count, g.refused.len(), g.forced), (4, 4, false));
        assert!(g.message.contains("no-tagged-principals") && g.message.contains("force"));
        assert_eq!(p.removals(), 0);
        assert_eq!(p.changes.len(), 1, "the add still goes through");
        assert_eq!(p.owned_after.len(), 5, "refused removals stay owned");
        assert!(!p.hold);
    }

    #[test]
    fn a_source_that_yields_nobody_keeps_what_it_could_have_granted() {
        use crate::core::grants::PrincipalKind;
        // Two owned users (u00, u01) and one owned permission-set role, none still granted.
        let (_, mut st) = planned(2, 0);
        let role = "arn:aws:iam::123456789012:role/AWSReservedSSO_Admin_0123456789abcdef";
        st.entries.push(CurrentEntry {
            arn: Some(role.into()),
            username: Some("r".into()),
            groups: vec!["system:masters".into()],
            id: None,
            owner: Owner::Us { marked: true },
            policies: None,
            held_by: None,
        });
        let sources = [Source::PermissionSet("Admin".into())];
        let f = |max| Facts {
            full: true,
            empty: &sources,
            max_removals: max,
            force: false,
            tag_key: "eks-cluster-admin",
        };
        let mut p = plan(&st, &[], &Scope::All);
        assert_eq!(p.removals(), 3);
        let g = guard(&mut p, &st, &f(None)).unwrap();
        assert_eq!(g.rule, Rule::SourceYieldsNobody);
        assert_eq!(g.refused.len(), 1);
        assert_eq!(g.refused[0].kind, PrincipalKind::Role);
        assert!(g.message.contains("permission-set:Admin"), "{}", g.message);
        assert_eq!(p.removals(), 2, "the users' removals go on");
        // An empty group keeps every user's removal, not the role's.
        let groups = [Source::IamGroup("platfrom-admins".into())];
        let mut p = plan(&st, &[], &Scope::All);
        let g = guard(
            &mut p,
            &st,
            &Facts {
                empty: &groups,
                ..f(None)
            },
        )
        .unwrap();
        assert_eq!(g.refused.len(), 2);
        assert!(g.message.contains("iam-group:platfrom-admins"));
        assert_eq!(p.removals(), 1);
        // What is left still meets the cap: over it, every removal is refused under the same rule.
        let mut p = plan(&st, &[], &Scope::All);
        let g = guard(&mut p, &st, &f(Some(1))).unwrap();
        assert_eq!((g.rule, g.refused.len()), (Rule::SourceYieldsNobody, 3));
        assert!(g.message.contains("MAX_REMOVALS=1"));
        // A scoped run is not guarded.
        let mut p = plan(&st, &[], &Scope::All);
        assert!(
            guard(
                &mut p,
                &st,
                &Facts {
                    full: false,
                    ..f(None)
                }
            )
            .is_none()
        );
    }

    #[test]
    fn max_removals_is_a_strict_cap() {
        for (removals, max, trips) in [(3, 3, false), (4, 3, true), (11, 10, true), (50, 0, false)]
        {
            let (mut p, st) = planned(removals, 0);
            let cap = (max > 0).then_some(max);
            let g = guard(&mut p, &st, &facts(true, 1, cap, false));
            assert_eq!(g.is_some(), trips, "{removals} removals, cap {max}");
            if let Some(g) = g {
                assert_eq!(g.rule, Rule::MaxRemovals);
                assert!(
                    g.message
                        .contains(&format!("{removals} removals exceed MAX_REMOVALS={max}"))
                );
                assert_eq!(p.removals(), 0);
            } else {
                assert_eq!(p.removals(), removals);
            }
        }
    }

    #[test]
    fn user_events_are_not_capped_and_force_lets_through() {
        let (mut p, st) = planned(20, 0);
        assert!(guard(&mut p, &st, &facts(false, 0, Some(1), false)).is_none());
        assert_eq!(p.removals(), 20);

        let (mut p, st) = planned(20, 0);
        let g = guard(&mut p, &st, &facts(true, 0, Some(1), true)).unwrap();
        assert!(g.forced && g.refused.is_empty());
        assert_eq!(p.removals(), 20, "force leaves the plan as it is");
    }

    #[test]
    fn nothing_owned_nothing_guarded() {
        let (mut p, st) = planned(0, 0);
        assert!(guard(&mut p, &st, &facts(true, 0, Some(1), false)).is_none());
        assert_eq!(p.changes.len(), 1);
    }

    #[test]
    fn record_under_another_tag_key_holds_the_whole_cluster() {
        let (mut p, mut st) = planned(2, 1);
        st.record_tag_key = Some("eks-cluster-viewer".into());
        for full in [true, false] {
            let mut q = p.clone();
            let g = guard(&mut q, &st, &facts(full, 3, None, false)).unwrap();
            assert_eq!(g.rule, Rule::RecordTagKey);
            assert!(q.hold && q.changes.is_empty());
            assert!(g.message.contains("DEPLOYMENT_ID"));
        }
        let g = guard(&mut p, &st, &facts(true, 3, None, true)).unwrap();
        assert!(g.forced && !p.hold && !p.changes.is_empty());
        // The same key in another case is the same key (IAM tag keys are case-insensitive).
        let (mut p, mut st) = planned(1, 1);
        st.record_tag_key = Some("EKS-Cluster-Admin".into());
        assert!(guard(&mut p, &st, &facts(true, 1, None, false)).is_none());
    }

    #[test]
    fn the_aws_auth_record_of_a_migrating_cluster_counts_for_record_tag_key() {
        let (mut p, st) = planned(2, 1);
        let (_, mut legacy) = planned(2, 2);
        legacy.record_tag_key = Some("eks-cluster-viewer".into());
        let st = ClusterState {
            legacy: Some(Box::new(legacy)),
            ..st
        };
        let g = guard(&mut p, &st, &facts(false, 3, None, false)).unwrap();
        assert_eq!(g.rule, Rule::RecordTagKey);
        assert!(p.hold);
    }

    #[test]
    fn a_replacement_is_neither_counted_nor_split() {
        // 3 owned entries, all still granted, 2 of them behind a new IAM user id (deleted and re-created).
        let (_, mut st) = planned(3, 0);
        for (n, e) in st.entries.iter_mut().enumerate() {
            e.id = Some(format!("AIDAOLD{n}"));
        }
        let desired: Vec<Grant> = (0..3)
            .map(|n| Grant {
                id: Some(if n < 2 {
                    format!("AIDANEW{n}")
                } else {
                    format!("AIDAOLD{n}")
                }),
                ..grant(n)
            })
            .collect();
        let mut p = plan(&st, &desired, &Scope::All);
        assert_eq!(p.removals(), 2);
        assert_eq!(
            p.replaced.iter().map(|r| r.arn.clone()).collect::<Vec<_>>(),
            vec![arn(0), arn(1)]
        );
        assert_eq!(p.revocations(), 0, "a replacement is not a revocation");
        assert!(guard(&mut p, &st, &facts(true, 3, Some(1), false)).is_none());
        // With a real revocation beside them (the third user untagged), a cap of 0 refuses only that one and
        // keeps both pairs whole.
        let mut p = plan(&st, &desired[..2], &Scope::All);
        assert_eq!(p.revocations(), 1);
        let g = guard(&mut p, &st, &facts(true, 3, Some(0), false)).unwrap();
        assert_eq!(
            g.refused,
            vec![Grant {
                id: Some("AIDAOLD2".into()),
                ..grant(2)
            }]
        );
        let removed: Vec<&str> = p
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Remove(g) => Some(g.arn.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(removed, [arn(0), arn(1)], "both replacements kept whole");
        assert_eq!(p.changes.len(), 4);
    }

    #[test]
    fn retired_rows_count_as_removals_only_when_they_revoke() {
        use crate::core::plan::{Retirement, retire};
        // aws-auth on a migrating cluster: 5 of our rows; 3 principals still granted (their entries are
        // being made: moves), 2 not (revocations). The entries store itself removes nothing.
        let (_, legacy) = planned(5, 0);
        let desired: Vec<Grant> = (0..3).map(grant).collect();
        let entries = ClusterState::default();
        let mut p = plan(&entries, &desired, &Scope::All);
        p.retire = Some(Box::new(retire(&legacy, &p, &desired, &Scope::All)));
        let state = ClusterState {
            legacy: Some(Box::new(legacy)),
            ..entries
        };
        assert_eq!(p.revocations(), 2);
        // Two revocations are within MAX_REMOVALS=2; the three moves do not count.
        let mut ok = p.clone();
        assert!(guard(&mut ok, &state, &facts(true, 3, Some(2), false)).is_none());
        // With MAX_REMOVALS=1 the revocations are refused, the moves and the adds go through.
        let g = guard(&mut p, &state, &facts(true, 3, Some(1), false)).unwrap();
        assert_eq!(g.rule, Rule::MaxRemovals);
        assert_eq!(g.refused, vec![grant(3), grant(4)]);
        let r: &Retirement = p.retire.as_deref().unwrap();
        assert_eq!(r.plan.changes.len(), 3);
        assert!(r.revocations().next().is_none());
        assert_eq!(r.plan.owned_after, vec![arn(3), arn(4)]);
        assert_eq!(p.changes.len(), 3, "the three entries are still created");
    }
}
