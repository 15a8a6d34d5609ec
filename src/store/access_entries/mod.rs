//! The EKS access-entries store: a grant is a `STANDARD` access entry (username, `kubernetesGroups`) with
//! the configured access policies associated, marked as this deployment's twice ([`model`]); the EKS calls,
//! their pages and retries are in [`calls`].
//!
//! Reads: a full reconcile lists every entry (pages of 100) and describes the user entries only (roles are
//! never ours); a scoped run describes the named principals only. Either way the access policies of every
//! owned entry are listed with it, so an entry left without its policies (a create cut short) is repaired by
//! the next run that reads it, events included.
//!
//! Writes: EKS has no conditional writes. Each change is applied call by call and reported to
//! [`Landed`] as soon as it landed. Order: replacements (the old entry of a re-created principal must go
//! before the new one can be made) together with adds and updates, then removals, so that a path change
//! never leaves the principal without an entry. A 409 on create means someone made the entry since our
//! read: read again and re-plan. Before deleting, an entry is described again and left alone if it changed
//! hands. A failed change does not stop the others: revocations go on whatever happened to a grant.

pub mod calls;
pub mod model;

use crate::core::grants::{Grant, principal_of_arn, role_name_of_arn};
use crate::core::plan::{Change, ClusterState, CurrentEntry, GrantForm, Owner, Plan};
use crate::core::ports::{Applied, Decided, Landed, Target};
use crate::core::settings::AccessPolicy;
use aws_sdk_eks::Client;
use calls::{Calls, Stop};
use futures_util::{StreamExt, stream};
use model::Known;
pub use model::{
    GROUP_MARK_PREFIX, MARK_TAG, MARK_TAG_KEYS, Marks, SOURCE_TAG, TAG_KEY_TAG, USER_ID_TAG,
};
use std::collections::{HashMap, HashSet};

pub const NAME: &str = "access-entries";
/// Calls in flight at once on one cluster (EKS publishes no per-call rate; throttling is retried by the SDK).
pub const CONCURRENCY: usize = 16;
/// Read → plan → write rounds before giving up when entries keep appearing under us.
pub const MAX_ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum AccessEntriesError {
    #[error("cluster {cluster}: EKS {op}{} failed: {message}", principal.as_ref().map(|p| format!(" for {p}")).unwrap_or_default())]
    Api {
        cluster: String,
        op: &'static str,
        principal: Option<String>,
        code: Option<String>,
        message: String,
    },
    #[error(
        "cluster {cluster}: EKS refused an access-entry call ({message}): the cluster's authentication mode does not allow access entries"
    )]
    WrongMode { cluster: String, message: String },
    #[error("cluster {cluster}: {principal}: {reason}")]
    NotSettled {
        cluster: String,
        principal: String,
        reason: String,
    },
    #[error(
        "cluster {cluster}: access entries kept appearing under us; gave up after {attempts} attempts"
    )]
    Conflict { cluster: String, attempts: u32 },
    #[error(
        "cluster {cluster}: the access entry of {principal} was not confirmed ({reason}); its aws-auth mapping is kept"
    )]
    NotConfirmed {
        cluster: String,
        principal: String,
        reason: String,
    },
    #[error(
        "cluster {cluster}: ACCESS_POLICIES names {} that EKS does not offer (ListAccessPolicies lists {}); nothing is written on clusters served by access entries until the setting names policies EKS has",
        unknown.join(", "),
        offered.iter().map(|a| a.rsplit('/').next().unwrap_or(a)).collect::<Vec<_>>().join(" ")
    )]
    UnknownPolicies {
        cluster: String,
        unknown: Vec<String>,
        offered: Vec<String>,
    },
    #[error("cluster {cluster}: {} changes did not land: {}", errors.len(), errors.join("; "))]
    Several {
        cluster: String,
        errors: Vec<String>,
    },
}

/// What `read` found, handed to `apply`.
pub struct Snapshot {
    target: Target,
    known: HashMap<String, Known>,
}

pub struct AccessEntryStore {
    client: Client,
    marks: Marks,
    /// The access policies EKS offers, once read (`ListAccessPolicies`): asked once per process.
    policies_offered: tokio::sync::OnceCell<Vec<String>>,
}

/// The principals a read is about.
async fn principals_of(
    calls: &Calls<'_>,
    target: &Target,
) -> Result<Vec<String>, AccessEntriesError> {
    let mut principals: Vec<String> = if target.full {
        // Every user and role entry: ours are found among them by their marks, node entries by their type.
        calls
            .list()
            .await?
            .into_iter()
            .filter(|a| principal_of_arn(a).is_some())
            .collect()
    } else {
        target.arns.clone()
    };
    if !target.full && !target.unresolved.is_empty() {
        // A principal IAM no longer knows: its ARN (path included) is only found among the entries.
        principals.extend(calls.list().await?.into_iter().filter(|a| {
            principal_of_arn(a).is_some_and(|(kind, name)| {
                target
                    .unresolved
                    .iter()
                    .any(|u| u.kind == kind && u.name.eq_ignore_ascii_case(name))
            })
        }));
    }
    let mut seen = HashSet::new();
    principals.retain(|p| seen.insert(p.to_ascii_lowercase()));
    Ok(principals)
}

/// One principal's entry, with its access policies when it is ours.
async fn read_one(
    calls: &Calls<'_>,
    principal: &str,
) -> Result<Option<(CurrentEntry, Known)>, AccessEntriesError> {
    let Some((mut e, mut k)) = calls.describe(principal).await? else {
        return Ok(None);
    };
    if matches!(e.owner, Owner::Us { .. }) {
        let p = calls.policies(principal).await?;
        k.policies = Some(p.clone());
        e.policies = Some(p);
    }
    Ok(Some((e, k)))
}

/// The tag key our entries were granted under; one under another key is what the guard must see.
fn record_tag_key(marks: &Marks, known: &HashMap<String, Known>) -> Option<String> {
    let keys: Vec<&String> = known
        .values()
        .filter(|k| k.tags.get(MARK_TAG) == Some(&marks.deployment))
        .filter_map(|k| k.tags.get(TAG_KEY_TAG))
        .collect();
    keys.iter()
        .find(|t| !t.eq_ignore_ascii_case(&marks.tag_key))
        .or(keys.first())
        .map(|t| t.to_string())
}

/// The removal of `g` waits for an add of the same principal under another ARN (a path change): matched
/// by the IAM user id, or by name when the id is not known.
fn follows_add(g: &Grant, adds: &[&Grant]) -> bool {
    adds.iter().any(|a| {
        !a.arn.eq_ignore_ascii_case(&g.arn)
            && match (&a.id, &g.id) {
                (Some(x), Some(y)) => x == y,
                _ => principal_of_arn(&a.arn)
                    .zip(principal_of_arn(&g.arn))
                    .is_some_and(|((k, x), (l, y))| k == l && x.eq_ignore_ascii_case(y)),
            }
    })
}

impl AccessEntryStore {
    pub fn new(client: Client, marks: Marks) -> Self {
        AccessEntryStore {
            client,
            marks,
            policies_offered: tokio::sync::OnceCell::new(),
        }
    }

    /// Whether EKS offers every configured access policy, asked before each read of a cluster this store
    /// serves (EKS's list is read once per process, `ListAccessPolicies`): a policy EKS does not have (a
    /// typo, a policy of another partition) stops every such cluster before anything is written there,
    /// instead of failing each grant's `AssociateAccessPolicy` after its entry was made. A list that cannot
    /// be read fails the cluster too (and is asked for again by the next).
    pub async fn check_policies(
        &self,
        cluster: &str,
        configured: &[AccessPolicy],
    ) -> Result<(), AccessEntriesError> {
        let offered = self
            .policies_offered
            .get_or_try_init(|| async { self.calls(cluster).offered_policies().await })
            .await?;
        let unknown = model::unknown_policies(configured, offered);
        if unknown.is_empty() {
            return Ok(());
        }
        Err(AccessEntriesError::UnknownPolicies {
            cluster: cluster.to_string(),
            unknown,
            offered: offered.clone(),
        })
    }

    fn calls<'a>(&'a self, cluster: &'a str) -> Calls<'a> {
        Calls {
            client: &self.client,
            marks: &self.marks,
            cluster,
        }
    }

    /// The entries `target` is about, as the planner needs them.
    pub async fn read(
        &self,
        cluster: &str,
        target: &Target,
    ) -> Result<(ClusterState, Snapshot), AccessEntriesError> {
        let calls = self.calls(cluster);
        let principals = principals_of(&calls, target).await?;
        let calls = &calls;
        let read: Vec<Result<Option<(CurrentEntry, Known)>, AccessEntriesError>> =
            stream::iter(principals)
                .map(|p| async move { read_one(calls, &p).await })
                .buffered(CONCURRENCY)
                .collect()
                .await;
        let mut entries = Vec::new();
        let mut known = HashMap::new();
        let mut node_roles = Vec::new();
        for r in read {
            if let Some((e, k)) = r? {
                let arn = e.arn.clone().unwrap_or_default();
                if k.node
                    && let Some(name) = role_name_of_arn(&arn)
                {
                    node_roles.push(name.to_string());
                }
                known.insert(arn, k);
                entries.push(e);
            }
        }
        let state = ClusterState {
            entries,
            recorded: Vec::new(),
            record_tag_key: record_tag_key(&self.marks, &known),
            form: GrantForm::AccessPolicies,
            legacy: None,
            node_roles,
            node_rows_unknown: false,
        };
        Ok((
            state,
            Snapshot {
                target: target.clone(),
                known,
            },
        ))
    }

    /// Applies `decided`; when an entry appeared under us, reads again, asks `replan` and retries (bounded).
    pub async fn apply(
        &self,
        cluster: &str,
        mut snapshot: Snapshot,
        mut decided: Decided,
        replan: &(dyn Fn(&ClusterState) -> Decided + Sync),
        landed: &Landed,
    ) -> Result<Applied, AccessEntriesError> {
        for attempt in 1..=MAX_ATTEMPTS {
            if attempt > 1 {
                let (state, s) = self.read(cluster, &snapshot.target).await?;
                snapshot = s;
                decided = replan(&state);
            }
            if decided.plan.hold {
                return Ok(Applied {
                    decided,
                    attempts: attempt,
                });
            }
            match self.write(cluster, &snapshot, &decided.plan, landed).await {
                Ok(()) => {
                    return Ok(Applied {
                        decided,
                        attempts: attempt,
                    });
                }
                Err(Stop::Race) => {
                    tracing::info!(
                        cluster,
                        attempt,
                        "an access entry appeared since the read; reading again and re-planning"
                    );
                }
                Err(Stop::Fail(e)) => return Err(e),
            }
        }
        Err(AccessEntriesError::Conflict {
            cluster: cluster.into(),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Writes a plan's changes, a few at a time: replacements, adds and updates first, then removals (a
    /// removal that follows a failed add of the same principal waits for the next run).
    async fn write(
        &self,
        cluster: &str,
        snapshot: &Snapshot,
        plan: &Plan,
        landed: &Landed,
    ) -> Result<(), Stop> {
        let calls = &self.calls(cluster);
        let replaced = |g: &Grant| plan.is_replacement(&g.arn);
        let mut first: Vec<Vec<Change>> = Vec::new();
        let mut later: Vec<Change> = Vec::new();
        for c in &plan.changes {
            match c {
                // A replacement: the old entry goes, then the new one is made (one unit, in order).
                Change::Remove(g) if replaced(g) => first.push(vec![c.clone()]),
                Change::Add(g) if replaced(g) => match first.iter_mut().find(|u| {
                    u.first()
                        .is_some_and(|r| r.grant().arn.eq_ignore_ascii_case(&g.arn))
                }) {
                    Some(unit) => unit.push(c.clone()),
                    None => first.push(vec![c.clone()]),
                },
                Change::Remove(_) => later.push(c.clone()),
                _ => first.push(vec![c.clone()]),
            }
        }
        let results: Vec<Result<(), Stop>> = stream::iter(first)
            .map(|unit| async move {
                for c in &unit {
                    self.change(calls, snapshot, c, landed).await?;
                }
                Ok(())
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let adds: Vec<&Grant> = plan
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Add(g) if !landed.has(&g.arn) => Some(g),
                _ => None,
            })
            .collect();
        later.retain(|c| {
            let wait = follows_add(c.grant(), &adds);
            if wait {
                tracing::warn!(cluster, principal = %c.grant().arn, "old entry kept: the principal's new entry was not made");
            }
            !wait
        });
        let mut results = results;
        results.extend(
            stream::iter(later)
                .map(|c| async move { self.change(calls, snapshot, &c, landed).await })
                .buffer_unordered(CONCURRENCY)
                .collect::<Vec<_>>()
                .await,
        );
        outcome(cluster, results)
    }

    /// Applies one change and tells `landed` when it reached EKS (an update also when only some of its
    /// calls did: what changed on the entry is audited even if a later call failed).
    async fn change(
        &self,
        calls: &Calls<'_>,
        snapshot: &Snapshot,
        c: &Change,
        landed: &Landed,
    ) -> Result<(), Stop> {
        let whole = |r: Result<bool, Stop>| match r {
            Ok(done) => (done, Ok(())),
            Err(e) => (false, Err(e)),
        };
        let (done, result) = match c {
            Change::Add(g) => whole(self.add(calls, g, landed).await),
            Change::Update { from, to } => self.update(calls, snapshot, from, to).await,
            Change::Remove(g) => whole(self.remove(calls, g).await),
        };
        if done {
            landed.change(c.clone());
        }
        result
    }

    /// Creates the entry and associates its policies; an entry whose policies could not be associated is
    /// taken back (in `API_AND_CONFIG_MAP` it would shadow the principal's `aws-auth` mapping and grant
    /// nothing). Should taking it back fail too, the entry stays: that write landed, so it is audited (a
    /// grant with a note that it is incomplete), and the next run that reads it associates its policies.
    async fn add(&self, calls: &Calls<'_>, g: &Grant, landed: &Landed) -> Result<bool, Stop> {
        calls.create(g).await?;
        let Err(e) = calls.associate_all(g, &[]).await else {
            return Ok(true);
        };
        if let Err(d) = calls.delete(&g.arn).await {
            tracing::error!(cluster = calls.cluster, principal = %g.arn, error = %d, "could not remove the incomplete access entry; the next run that reads it repairs it");
            landed.change_noted(
                Change::Add(g.clone()),
                &format!(
                    "incomplete: the access entry was created but its access policies could not be associated \
                     ({e}), nor the entry taken back ({d}); it grants nothing until the next run that reads it \
                     associates them (in API_AND_CONFIG_MAP it shadows the principal's aws-auth mapping until then)"
                ),
            );
        }
        Err(Stop::Fail(e))
    }

    /// Brings an owned entry to its grant: username and groups, the mark tags, then its policies. Says
    /// whether any of its writes landed, and how it ended.
    async fn update(
        &self,
        calls: &Calls<'_>,
        snapshot: &Snapshot,
        from: &Grant,
        to: &Grant,
    ) -> (bool, Result<(), Stop>) {
        let Some(known) = snapshot.known.get(&from.arn) else {
            // Not read (cannot happen for an owned entry): read again rather than guess.
            return (false, Err(Stop::Race));
        };
        let mut wrote = false;
        let result = self.update_calls(calls, known, from, to, &mut wrote).await;
        (wrote, result.map_err(Stop::Fail))
    }

    async fn update_calls(
        &self,
        calls: &Calls<'_>,
        known: &Known,
        from: &Grant,
        to: &Grant,
        wrote: &mut bool,
    ) -> Result<(), AccessEntriesError> {
        if from.username != to.username || from.groups != to.groups {
            calls.update(to).await?;
            *wrote = true;
        }
        let want_tags = self.marks.tags_for(to);
        if want_tags.iter().any(|(k, v)| known.tags.get(k) != Some(v)) {
            calls.tag(known, to, want_tags).await?;
            *wrote = true;
        }
        let have = match &known.policies {
            Some(p) => p.clone(),
            None => calls.policies(&to.arn).await?,
        };
        for p in to.policies.iter().filter(|p| !have.contains(p)) {
            calls.associate(to, p).await?;
            *wrote = true;
        }
        for extra in have
            .iter()
            .filter(|h| !to.policies.iter().any(|p| p.arn == h.arn))
        {
            calls.disassociate(&to.arn, &extra.arn).await?;
            *wrote = true;
        }
        Ok(())
    }

    /// Deletes an owned entry, after describing it again: left alone if it was taken over (a mark removed
    /// or changed) or re-made for another principal since our read.
    async fn remove(&self, calls: &Calls<'_>, g: &Grant) -> Result<bool, Stop> {
        match calls.describe(&g.arn).await.map_err(Stop::Fail)? {
            None => return Ok(false),
            Some((now, _)) => {
                let still_ours =
                    now.owner == (Owner::Us { marked: true }) && (g.id.is_none() || now.id == g.id);
                if !still_ours {
                    tracing::warn!(
                        cluster = calls.cluster,
                        principal = %g.arn,
                        "access entry changed hands since it was read; not removed"
                    );
                    return Ok(false);
                }
            }
        }
        calls.delete(&g.arn).await.map_err(Stop::Fail)
    }

    /// Checks, a few at a time, that each principal's entry is there, ours, and holds every policy of
    /// `policies`: before a migrated `aws-auth` mapping is removed. One result per principal: one that
    /// cannot be confirmed holds back only its own mapping.
    pub async fn confirm(
        &self,
        cluster: &str,
        principals: &[String],
        policies: &[AccessPolicy],
    ) -> Vec<(String, Result<(), AccessEntriesError>)> {
        let calls = &self.calls(cluster);
        stream::iter(principals.iter().cloned())
            .map(|p| async move {
                let r = confirm_one(calls, &p, policies).await;
                (p, r)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await
    }
}

async fn confirm_one(
    calls: &Calls<'_>,
    principal: &str,
    policies: &[AccessPolicy],
) -> Result<(), AccessEntriesError> {
    let not = |reason: String| AccessEntriesError::NotConfirmed {
        cluster: calls.cluster.into(),
        principal: principal.into(),
        reason,
    };
    match read_one(calls, principal).await? {
        None => Err(not("no access entry".into())),
        Some((e, _)) if !matches!(e.owner, Owner::Us { .. }) => {
            Err(not("the entry is not this deployment's".into()))
        }
        Some((e, _)) => {
            let have = e.policies.unwrap_or_default();
            match policies.iter().find(|w| !have.contains(w)) {
                Some(missing) => Err(not(format!(
                    "policy {} is not associated as configured",
                    missing.arn
                ))),
                None => Ok(()),
            }
        }
    }
}

/// The write's outcome: a wrong mode first (the caller describes the cluster again), then a race (read
/// again), then the failures.
fn outcome(cluster: &str, results: Vec<Result<(), Stop>>) -> Result<(), Stop> {
    let mut race = false;
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(()) => {}
            Err(Stop::Race) => race = true,
            Err(Stop::Fail(e @ AccessEntriesError::WrongMode { .. })) => return Err(Stop::Fail(e)),
            Err(Stop::Fail(e)) => errors.push(e),
        }
    }
    match errors.len() {
        0 if race => Err(Stop::Race),
        0 => Ok(()),
        1 => Err(Stop::Fail(errors.remove(0))),
        _ => Err(Stop::Fail(AccessEntriesError::Several {
            cluster: cluster.into(),
            errors: errors
                .iter()
                .map(|e| {
                    let s = e.to_string();
                    s.strip_prefix(&format!("cluster {cluster}: "))
                        .map(str::to_string)
                        .unwrap_or(s)
                })
                .collect(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(arn: &str, id: Option<&str>) -> Grant {
        Grant {
            arn: arn.into(),
            username: "u".into(),
            groups: vec![],
            id: id.map(str::to_string),
            policies: vec![],
            ..Default::default()
        }
    }

    #[test]
    fn a_path_change_removal_waits_for_its_add() {
        let old = g("arn:aws:iam::123456789012:user/carol", Some("AIDA1"));
        let new = g("arn:aws:iam::123456789012:user/team/carol", Some("AIDA1"));
        let other = g("arn:aws:iam::123456789012:user/team/dave", Some("AIDA2"));
        assert!(follows_add(&old, &[&new]));
        assert!(!follows_add(&old, &[&other]));
        // Without ids, by name.
        let old = g("arn:aws:iam::123456789012:user/carol", None);
        assert!(follows_add(&old, &[&new]));
        // The same ARN is a replacement, not a path change.
        assert!(!follows_add(&new, &[&new]));
    }

    #[test]
    fn several_failures_are_all_named_once() {
        let e = |p: &str| {
            Err(Stop::Fail(AccessEntriesError::NotSettled {
                cluster: "prod".into(),
                principal: p.into(),
                reason: "not yet".into(),
            }))
        };
        let Err(Stop::Fail(err)) = outcome("prod", vec![Ok(()), e("a"), e("b")]) else {
            panic!()
        };
        let msg = err.to_string();
        assert_eq!(
            msg,
            "cluster prod: 2 changes did not land: a: not yet; b: not yet"
        );
        assert!(matches!(
            outcome("prod", vec![Ok(()), Err(Stop::Race)]),
            Err(Stop::Race)
        ));
    }
}
