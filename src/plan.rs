//! (current mappings, desired mappings, owned set, scope) → plan. Pure and store-agnostic: the `aws-auth`
//! backend turns its document into [`CurrentEntry`]s and applies the [`Plan`] back; another backend (EKS
//! access entries) can do the same without changing this module.

use crate::desired::{Mapping, user_name_of_arn};
use serde::Serialize;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

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

impl Change {
    /// The mapping the change is about (the new one for an update).
    pub fn mapping(&self) -> &Mapping {
        match self {
            Change::Add(m) | Change::Remove(m) => m,
            Change::Update { to, .. } => to,
        }
    }
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

/// An ARN that compares, orders and hashes ignoring ASCII case, as EKS matches ARNs: the same order and
/// equality as its lowercase copy, without making one.
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

fn to_mapping(e: &CurrentEntry, arn: &str) -> Mapping {
    Mapping {
        arn: arn.to_string(),
        username: e.username.clone().unwrap_or_default(),
        groups: e.groups.clone(),
    }
}

/// Whether `e` is exactly `m` (ARN spelling included: we write what IAM says).
fn is_exactly(e: &CurrentEntry, m: &Mapping) -> bool {
    e.arn.as_deref() == Some(m.arn.as_str())
        && e.username.as_deref().unwrap_or_default() == m.username
        && e.groups == m.groups
}

/// Plans one cluster. `desired` must hold only mappings inside `scope` (the caller reads IAM per scope).
pub fn plan(
    current: &[CurrentEntry],
    owned: &[String],
    desired: &[Mapping],
    scope: &Scope,
) -> Plan {
    // Each ARN's first entry and how many entries map it.
    let mut by_key: HashMap<ArnKey, (&CurrentEntry, usize)> = HashMap::with_capacity(current.len());
    for e in current {
        if let Some(a) = &e.arn {
            by_key
                .entry(ArnKey(a))
                .and_modify(|(_, n)| *n += 1)
                .or_insert((e, 1));
        }
    }
    // Owned record keyed case-insensitively; the last spelling wins (they are the same principal to EKS).
    let owned_by_key: BTreeMap<ArnKey, &String> = owned.iter().map(|a| (ArnKey(a), a)).collect();
    let desired_by_key: BTreeMap<ArnKey, &Mapping> =
        desired.iter().map(|m| (ArnKey(&m.arn), m)).collect();

    let mut p = Plan::default();
    let mut owned_after: BTreeMap<ArnKey, &String> = BTreeMap::new();

    for (key, want) in &desired_by_key {
        let is_owned = owned_by_key.contains_key(key);
        match (is_owned, by_key.get(key).copied()) {
            (_, None) => {
                p.changes.push(Change::Add((*want).clone()));
                owned_after.insert(*key, &want.arn);
            }
            (true, Some((one, 1))) => {
                if is_exactly(one, want) {
                    p.unchanged.push(want.arn.clone());
                } else {
                    p.changes.push(Change::Update {
                        from: to_mapping(one, one.arn.as_deref().unwrap_or_default()),
                        to: (*want).clone(),
                    });
                }
                owned_after.insert(*key, &want.arn);
            }
            (true, Some((_, many))) => {
                p.skipped.push(Skip {
                    arn: want.arn.clone(),
                    reason: format!(
                        "{many} mapUsers entries map this ARN; remove the extra ones by hand"
                    ),
                });
                owned_after.insert(*key, owned_by_key[key]);
            }
            (false, Some(_)) => p.skipped.push(Skip {
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
            owned_after.insert(*key, arn);
            continue;
        }
        match by_key.get(key).copied() {
            // Entry already gone (removed by hand): just forget it.
            None => {}
            Some((one, 1)) => p.changes.push(Change::Remove(to_mapping(
                one,
                one.arn.as_deref().unwrap_or(arn),
            ))),
            Some((_, many)) => {
                p.skipped.push(Skip {
                    arn: (*arn).clone(),
                    reason: format!(
                        "{many} mapUsers entries map this ARN; not removing any, remove them by hand"
                    ),
                });
                owned_after.insert(*key, arn);
            }
        }
    }

    p.changes
        .sort_by(|a, b| ArnKey(&a.mapping().arn).cmp(&ArnKey(&b.mapping().arn)));
    p.owned_after = owned_after.into_values().cloned().collect();
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
