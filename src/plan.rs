//! (current mappings, desired mappings, owned set, scope) → plan. Pure and store-agnostic: the `aws-auth`
//! backend turns its document into [`CurrentEntry`]s and applies the [`Plan`] back; another backend (EKS
//! access entries) can do the same without changing this module.

use crate::desired::{Mapping, user_name_of_arn};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One mapping as it is in the store today.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentEntry {
    /// The ARN as written (any case); `None` when the entry has no usable ARN (it can match nothing).
    pub arn: Option<String>,
    pub username: Option<String>,
    pub groups: Vec<String>,
}

/// Which users a run may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every owned entry and every desired mapping.
    All,
    /// Only owned entries and desired mappings of these IAM user names (case-insensitive, as IAM).
    Users(Vec<String>),
}

impl Scope {
    pub fn covers_arn(&self, arn: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Users(names) => user_name_of_arn(arn)
                .is_some_and(|n| names.iter().any(|u| u.eq_ignore_ascii_case(n))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Change {
    Add(Mapping),
    Update { from: Mapping, to: Mapping },
    Remove(Mapping),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skip {
    pub arn: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Changes in a stable order (by ARN key).
    pub changes: Vec<Change>,
    /// ARNs whose mapping is already right.
    pub unchanged: Vec<String>,
    pub skipped: Vec<Skip>,
    /// The owned set after the plan is applied (exact ARNs, sorted by key).
    pub owned_after: Vec<String>,
}

impl Plan {
    /// Whether the owned record differs from `owned_before` (case-sensitive: we store what IAM says).
    pub fn owned_changed(&self, owned_before: &[String]) -> bool {
        let before: BTreeSet<&str> = owned_before.iter().map(String::as_str).collect();
        let after: BTreeSet<&str> = self.owned_after.iter().map(String::as_str).collect();
        before != after
    }
}

fn to_mapping(e: &CurrentEntry, arn: &str) -> Mapping {
    Mapping {
        arn: arn.to_string(),
        username: e.username.clone().unwrap_or_default(),
        groups: e.groups.clone(),
    }
}

/// Plans one cluster. `desired` must hold only mappings inside `scope` (the caller reads IAM per scope).
pub fn plan(
    current: &[CurrentEntry],
    owned: &[String],
    desired: &[Mapping],
    scope: &Scope,
) -> Plan {
    let mut by_key: HashMap<String, Vec<&CurrentEntry>> = HashMap::with_capacity(current.len());
    for e in current {
        if let Some(a) = &e.arn {
            by_key.entry(a.to_ascii_lowercase()).or_default().push(e);
        }
    }
    // Owned record keyed case-insensitively; the last spelling wins (they are the same principal to EKS).
    let owned_by_key: BTreeMap<String, &String> =
        owned.iter().map(|a| (a.to_ascii_lowercase(), a)).collect();
    let desired_by_key: BTreeMap<String, &Mapping> = desired.iter().map(|m| (m.key(), m)).collect();

    let mut p = Plan::default();
    let mut owned_after: BTreeMap<String, String> = BTreeMap::new();

    for (key, want) in &desired_by_key {
        let entries = by_key.get(key).map(Vec::as_slice).unwrap_or(&[]);
        let is_owned = owned_by_key.contains_key(key);
        match (is_owned, entries) {
            (_, []) => {
                p.changes.push(Change::Add((*want).clone()));
                owned_after.insert(key.clone(), want.arn.clone());
            }
            (true, [one]) => {
                let have = to_mapping(one, one.arn.as_deref().unwrap_or_default());
                if have == **want {
                    p.unchanged.push(want.arn.clone());
                } else {
                    p.changes.push(Change::Update {
                        from: have,
                        to: (*want).clone(),
                    });
                }
                owned_after.insert(key.clone(), want.arn.clone());
            }
            (true, many) => {
                p.skipped.push(Skip {
                    arn: want.arn.clone(),
                    reason: format!(
                        "{} mapUsers entries map this ARN; remove the extra ones by hand",
                        many.len()
                    ),
                });
                owned_after.insert(key.clone(), owned_by_key[key].clone());
            }
            (false, _) => p.skipped.push(Skip {
                arn: want.arn.clone(),
                reason: "already mapped by an entry this function does not own; left as it is"
                    .into(),
            }),
        }
    }

    for (key, arn) in &owned_by_key {
        if desired_by_key.contains_key(key) {
            continue;
        }
        if !scope.covers_arn(arn) {
            owned_after.insert(key.clone(), (*arn).clone());
            continue;
        }
        match by_key.get(key).map(Vec::as_slice).unwrap_or(&[]) {
            // Entry already gone (removed by hand): just forget it.
            [] => {}
            [one] => p.changes.push(Change::Remove(to_mapping(
                one,
                one.arn.as_deref().unwrap_or(arn),
            ))),
            many => {
                p.skipped.push(Skip {
                    arn: (*arn).clone(),
                    reason: format!(
                        "{} mapUsers entries map this ARN; not removing any, remove them by hand",
                        many.len()
                    ),
                });
                owned_after.insert(key.clone(), (*arn).clone());
            }
        }
    }

    p.changes.sort_by_key(|c| match c {
        Change::Add(m) | Change::Remove(m) => m.key(),
        Change::Update { to, .. } => to.key(),
    });
    p.owned_after = owned_after.into_values().collect();
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "arn:aws:iam::123456789012:user/alice";
    const B: &str = "arn:aws:iam::123456789012:user/bob";
    const C: &str = "arn:aws:iam::123456789012:user/team/carol";

    fn m(arn: &str, user: &str) -> Mapping {
        Mapping {
            arn: arn.into(),
            username: user.into(),
            groups: vec!["system:masters".into()],
        }
    }
    fn e(arn: &str, user: &str, groups: &[&str]) -> CurrentEntry {
        CurrentEntry {
            arn: Some(arn.into()),
            username: Some(user.into()),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }
    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            current: Vec<CurrentEntry>,
            owned: Vec<String>,
            desired: Vec<Mapping>,
            scope: Scope,
            changes: Vec<Change>,
            unchanged: Vec<String>,
            skipped: usize,
            owned_after: Vec<String>,
        }
        let masters = &["system:masters"][..];
        let cases = vec![
            Case {
                name: "add new admin",
                current: vec![],
                owned: vec![],
                desired: vec![m(A, "alice")],
                scope: Scope::All,
                changes: vec![Change::Add(m(A, "alice"))],
                unchanged: vec![],
                skipped: 0,
                owned_after: s(&[A]),
            },
            Case {
                name: "unchanged owned",
                current: vec![e(A, "alice", masters)],
                owned: s(&[A]),
                desired: vec![m(A, "alice")],
                scope: Scope::All,
                changes: vec![],
                unchanged: s(&[A]),
                skipped: 0,
                owned_after: s(&[A]),
            },
            Case {
                name: "hand-edited groups repaired",
                current: vec![e(A, "alice", &["viewers"])],
                owned: s(&[A]),
                desired: vec![m(A, "alice")],
                scope: Scope::All,
                changes: vec![Change::Update {
                    from: Mapping {
                        arn: A.into(),
                        username: "alice".into(),
                        groups: s(&["viewers"]),
                    },
                    to: m(A, "alice"),
                }],
                unchanged: vec![],
                skipped: 0,
                owned_after: s(&[A]),
            },
            Case {
                name: "stale owned removed, foreign kept",
                current: vec![e(A, "alice", masters), e(B, "bob", masters)],
                owned: s(&[A]),
                desired: vec![],
                scope: Scope::All,
                changes: vec![Change::Remove(m(A, "alice"))],
                unchanged: vec![],
                skipped: 0,
                owned_after: vec![],
            },
            Case {
                name: "foreign mapping of a desired ARN is skipped, not taken over",
                current: vec![e(
                    &A.to_uppercase().replace("ARN:AWS:IAM", "arn:aws:iam"),
                    "hand",
                    &["x"],
                )],
                owned: vec![],
                desired: vec![m(A, "alice")],
                scope: Scope::All,
                changes: vec![],
                unchanged: vec![],
                skipped: 1,
                owned_after: vec![],
            },
            Case {
                name: "owned entry deleted by hand is restored",
                current: vec![],
                owned: s(&[A]),
                desired: vec![m(A, "alice")],
                scope: Scope::All,
                changes: vec![Change::Add(m(A, "alice"))],
                unchanged: vec![],
                skipped: 0,
                owned_after: s(&[A]),
            },
            Case {
                name: "owned record without entry and not desired is forgotten",
                current: vec![],
                owned: s(&[A]),
                desired: vec![],
                scope: Scope::All,
                changes: vec![],
                unchanged: vec![],
                skipped: 0,
                owned_after: vec![],
            },
            Case {
                name: "user scope leaves other owned entries alone",
                current: vec![e(A, "alice", masters), e(B, "bob", masters)],
                owned: s(&[A, B]),
                desired: vec![],
                scope: Scope::Users(s(&["BOB"])),
                changes: vec![Change::Remove(m(B, "bob"))],
                unchanged: vec![],
                skipped: 0,
                owned_after: s(&[A]),
            },
            Case {
                name: "path change: old ARN removed, new added (scope by name)",
                current: vec![e("arn:aws:iam::123456789012:user/carol", "carol", masters)],
                owned: s(&["arn:aws:iam::123456789012:user/carol"]),
                desired: vec![m(C, "carol")],
                scope: Scope::Users(s(&["carol"])),
                changes: vec![
                    Change::Remove(m("arn:aws:iam::123456789012:user/carol", "carol")),
                    Change::Add(m(C, "carol")),
                ],
                unchanged: vec![],
                skipped: 0,
                owned_after: s(&[C]),
            },
            Case {
                name: "duplicate entries for an owned ARN: hands off",
                current: vec![e(A, "alice", masters), e(A, "alice2", masters)],
                owned: s(&[A]),
                desired: vec![],
                scope: Scope::All,
                changes: vec![],
                unchanged: vec![],
                skipped: 1,
                owned_after: s(&[A]),
            },
        ];
        for c in cases {
            let p = plan(&c.current, &c.owned, &c.desired, &c.scope);
            assert_eq!(p.changes, c.changes, "{}", c.name);
            assert_eq!(p.unchanged, c.unchanged, "{}", c.name);
            assert_eq!(p.skipped.len(), c.skipped, "{}: {:?}", c.name, p.skipped);
            assert_eq!(p.owned_after, c.owned_after, "{}", c.name);
        }
    }
}
