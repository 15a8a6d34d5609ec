//! Where grants live, one module per store ([`aws_auth`], [`access_entries`]), each with its own format and
//! concurrency control, and [`Stores`]: the [`crate::core::ports::Store`] the reconcile uses, which picks
//! the store of each cluster from its authentication mode (`ACCESS_STORE`).
//!
//! | mode | `auto` | what else |
//! |---|---|---|
//! | `CONFIG_MAP` | `aws-auth` | access entries do not exist there |
//! | `API_AND_CONFIG_MAP` | access entries | this deployment's `aws-auth` mappings are retired: moved once the principal's entry and policies are confirmed, revoked when not granted |
//! | `API` | access entries | `aws-auth` is not read by EKS, so it is not read here either: no token, no Kubernetes call |

pub mod access_entries;
pub mod aws_auth;

use crate::adapters::aws::{AuthMode, ClusterInfo, Directory, EksError};
use crate::core::grants::ArnKey;
use crate::core::plan::{ClusterState, Retirement};
use crate::core::ports::{Applied, Decided, Landed, Store, Target};
use crate::core::settings::{AccessPolicy, AccessStore};
use access_entries::{AccessEntriesError, AccessEntryStore};
use aws_auth::{AwsAuthStore, AwsAuthStoreError};
use std::collections::HashSet;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cluster {cluster}: {source}")]
    Eks { cluster: String, source: EksError },
    #[error(
        "cluster {cluster}: ACCESS_STORE={setting} does not fit its authentication mode {mode}: {advice}"
    )]
    Mismatch {
        cluster: String,
        setting: &'static str,
        mode: &'static str,
        advice: &'static str,
    },
    #[error(transparent)]
    AwsAuth(#[from] AwsAuthStoreError),
    #[error(transparent)]
    Entries(#[from] AccessEntriesError),
    #[error(
        "cluster {cluster}: {}, but this deployment's aws-auth mappings could not be retired (in API_AND_CONFIG_MAP they still grant where a principal has no entry), and no role was newly granted (its node rows could not be read): {}",
        if *written { "access entries were written" } else { "no access entry was written" },
        without_cluster(&source.to_string(), cluster)
    )]
    Retirement {
        cluster: String,
        /// Whether any access-entry write landed before.
        written: bool,
        source: AwsAuthStoreError,
    },
    #[error("cluster {cluster}: {} aws-auth mappings kept, their access entries not confirmed: {}", errors.len(), errors.join("; "))]
    Unconfirmed {
        cluster: String,
        errors: Vec<String>,
    },
}

/// An error's text without the `cluster NAME: ` it starts with (when it is nested in one that says it).
fn without_cluster(text: &str, cluster: &str) -> String {
    text.strip_prefix(&format!("cluster {cluster}: "))
        .unwrap_or(text)
        .to_string()
}

/// Which store serves a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    AwsAuth,
    /// Access entries; `migrate`: the cluster still reads `aws-auth`, where this deployment's mappings
    /// are retired.
    Entries {
        migrate: bool,
    },
}

impl Served {
    pub fn name(self) -> &'static str {
        match self {
            Served::AwsAuth => AwsAuthStore::NAME,
            Served::Entries { .. } => access_entries::NAME,
        }
    }
}

fn setting_name(s: AccessStore) -> &'static str {
    match s {
        AccessStore::Auto => "auto",
        AccessStore::AwsAuth => "aws-auth",
        AccessStore::AccessEntries => "access-entries",
    }
}

/// The store for a cluster in `mode` under `ACCESS_STORE=choice`, or why none fits.
pub fn choose(choice: AccessStore, mode: AuthMode) -> Result<Served, &'static str> {
    match (choice, mode) {
        (AccessStore::Auto | AccessStore::AwsAuth, AuthMode::ConfigMap) => Ok(Served::AwsAuth),
        (AccessStore::AwsAuth, AuthMode::ApiAndConfigMap) => Ok(Served::AwsAuth),
        (AccessStore::AwsAuth, AuthMode::Api) => Err(
            "EKS does not read aws-auth on this cluster, so a grant written there would do nothing; set ACCESS_STORE=auto",
        ),
        (AccessStore::AccessEntries, AuthMode::ConfigMap) => Err(
            "the cluster has no access entries; move it to API_AND_CONFIG_MAP (aws eks update-cluster-config --access-config authenticationMode=API_AND_CONFIG_MAP) or set ACCESS_STORE=auto",
        ),
        (_, AuthMode::ApiAndConfigMap) => Ok(Served::Entries { migrate: true }),
        (_, AuthMode::Api) => Ok(Served::Entries { migrate: false }),
    }
}

/// Both stores, and the directory that says which one serves each cluster.
pub struct Stores {
    directory: Arc<Directory>,
    aws_auth: AwsAuthStore,
    entries: AccessEntryStore,
    choice: AccessStore,
    /// The configured access policies (a migrated mapping is removed only once its entry holds them).
    policies: Vec<AccessPolicy>,
    /// The store each cluster's last read chose (reports name it even when the cluster then failed and
    /// the directory forgot it).
    served: std::sync::Mutex<std::collections::HashMap<String, Served>>,
}

pub enum Snapshot {
    AwsAuth(Box<aws_auth::Snapshot>),
    Entries(Box<EntriesSnapshot>),
}

pub struct EntriesSnapshot {
    entries: access_entries::Snapshot,
    /// The entries as read, without `legacy` (a re-plan of `aws-auth` after a conflict starts from it).
    state: ClusterState,
    /// On a migrating cluster: its `aws-auth` as read, or why it could not be read (the entries are still
    /// written; the cluster fails naming the retirement it could not do).
    legacy: Option<Result<(ClusterState, aws_auth::Snapshot), AwsAuthStoreError>>,
}

impl Stores {
    pub fn new(
        directory: Arc<Directory>,
        aws_auth: AwsAuthStore,
        entries: AccessEntryStore,
        choice: AccessStore,
        policies: Vec<AccessPolicy>,
    ) -> Self {
        Stores {
            directory,
            aws_auth,
            entries,
            choice,
            policies,
            served: std::sync::Mutex::default(),
        }
    }

    fn served_map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Served>> {
        self.served
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cluster as the directory knows it; `fresh`: described now, whatever is cached.
    async fn describe(&self, cluster: &str, fresh: bool) -> Result<ClusterInfo, StoreError> {
        let described = if fresh {
            self.directory.refresh(cluster).await
        } else {
            self.directory.get(cluster).await
        };
        described.map_err(|source| StoreError::Eks {
            cluster: cluster.into(),
            source,
        })
    }

    fn served(&self, cluster: &str, mode: AuthMode) -> Result<Served, StoreError> {
        let served = choose(self.choice, mode).map_err(|advice| StoreError::Mismatch {
            cluster: cluster.into(),
            setting: setting_name(self.choice),
            mode: mode.as_str(),
            advice,
        })?;
        self.served_map().insert(cluster.to_string(), served);
        Ok(served)
    }

    async fn read_served(
        &self,
        cluster: &str,
        served: Served,
        target: &Target,
    ) -> Result<(ClusterState, Snapshot), StoreError> {
        match served {
            Served::AwsAuth => {
                let (state, snap) = self.aws_auth.read(cluster).await?;
                Ok((state, Snapshot::AwsAuth(Box::new(snap))))
            }
            Served::Entries { migrate } => {
                self.entries.check_policies(cluster, &self.policies).await?;
                let (mut state, entries) = self.entries.read(cluster, target).await?;
                let plain = state.clone();
                let legacy = if migrate {
                    let read = self.aws_auth.read(cluster).await;
                    match &read {
                        Ok((legacy_state, _)) => {
                            state.legacy = Some(Box::new(legacy_state.clone()))
                        }
                        Err(e) => {
                            // Its node rows are unknown too: no role may get a STANDARD entry, which EKS
                            // would prefer over a node row it cannot see.
                            state.node_rows_unknown = true;
                            tracing::error!(cluster, error = %e, "aws-auth could not be read; access entries are still written (no role granted), this deployment's aws-auth mappings are not retired")
                        }
                    }
                    Some(read)
                } else {
                    None
                };
                Ok((
                    state,
                    Snapshot::Entries(Box::new(EntriesSnapshot {
                        entries,
                        state: plain,
                        legacy,
                    })),
                ))
            }
        }
    }

    /// Which moving principals' entries are right now: those whose entry landed in this run (created or
    /// repaired with every policy) need no more calls; the others are described again, a few at a time.
    /// Returns the confirmed ARNs and the errors of those that could not be confirmed.
    async fn confirmed(
        &self,
        cluster: &str,
        moving: Vec<String>,
        landed: &Landed,
    ) -> (HashSet<String>, Vec<AccessEntriesError>) {
        let (done, ask): (Vec<String>, Vec<String>) =
            moving.into_iter().partition(|a| landed.has(a));
        let mut ok: HashSet<String> = done.into_iter().map(|a| a.to_ascii_lowercase()).collect();
        let mut errors = Vec::new();
        for (arn, r) in self.entries.confirm(cluster, &ask, &self.policies).await {
            match r {
                Ok(()) => {
                    ok.insert(arn.to_ascii_lowercase());
                }
                Err(e) => errors.push(e),
            }
        }
        (ok, errors)
    }

    /// Retires this deployment's `aws-auth` mappings on a migrating cluster, after its entries were
    /// written: revocations always; moves only for principals whose entry is confirmed (one that is not
    /// holds back only its own mapping).
    async fn retire(
        &self,
        cluster: &str,
        applied: &mut Applied,
        state: &ClusterState,
        legacy_snap: aws_auth::Snapshot,
        replan: &(dyn Fn(&ClusterState) -> Decided + Sync),
        landed: &Landed,
    ) -> Result<(), StoreError> {
        let Some(retire) = applied.decided.plan.retire.as_deref_mut() else {
            return Ok(());
        };
        // The entry a mapping moves to is confirmed under its own ARN (a role's keeps its path).
        let moving: Vec<(String, String)> = retire
            .plan
            .changes
            .iter()
            .map(|c| c.grant().arn.clone())
            .filter(|a| retire.migrated.contains(a))
            .map(|a| {
                let entry = retire.entry_arn(&a).to_string();
                (a, entry)
            })
            .collect();
        let (entries_ok, unconfirmed) = self
            .confirmed(
                cluster,
                moving.iter().map(|(_, e)| e.clone()).collect(),
                landed,
            )
            .await;
        let confirmed: HashSet<String> = moving
            .iter()
            .filter(|(_, e)| entries_ok.contains(&e.to_ascii_lowercase()))
            .map(|(a, _)| a.to_ascii_lowercase())
            .collect();
        hold_unconfirmed(retire, &confirmed);
        // After a conflict on aws-auth, the re-plan sees the new aws-auth; a move is still done only for a
        // principal confirmed above (a mapping that appeared since waits for the next run).
        let legacy_replan = |aws: &ClusterState| {
            let mut full = state.clone();
            full.legacy = Some(Box::new(aws.clone()));
            let d = replan(&full);
            let hold = d.plan.hold;
            let mut r = d.plan.retire.map(|r| *r).unwrap_or_default();
            hold_unconfirmed(&mut r, &confirmed);
            r.plan.hold |= hold;
            Decided {
                plan: r.plan,
                guard: d.guard,
            }
        };
        let sink = Landed::default();
        let retired = self
            .aws_auth
            .apply(
                cluster,
                legacy_snap,
                Decided {
                    plan: retire.plan.clone(),
                    guard: None,
                },
                &legacy_replan,
                &sink,
            )
            .await;
        // What landed is reported whatever happened after it.
        for c in sink.take().changes {
            landed.retired(c);
        }
        let retired = retired?;
        applied.attempts = applied.attempts.max(retired.attempts);
        retire.plan = retired.decided.plan;
        let mut unconfirmed = unconfirmed;
        match unconfirmed.len() {
            0 => Ok(()),
            1 => Err(unconfirmed.remove(0).into()),
            _ => Err(StoreError::Unconfirmed {
                cluster: cluster.into(),
                errors: unconfirmed.iter().map(ToString::to_string).collect(),
            }),
        }
    }
}

/// Keeps the mappings of principals whose entry is not confirmed (and keeps them recorded as ours).
fn hold_unconfirmed(retire: &mut Retirement, confirmed: &HashSet<String>) {
    let migrated = retire.migrated.clone();
    let mut held = Vec::new();
    retire.plan.changes.retain(|c| {
        let arn = &c.grant().arn;
        let hold = migrated.contains(arn) && !confirmed.contains(&arn.to_ascii_lowercase());
        if hold {
            held.push(arn.clone());
        }
        !hold
    });
    retire.migrated.retain(|a| !held.contains(a));
    retire.plan.owned_after.extend(held);
    retire
        .plan
        .owned_after
        .sort_by(|a, b| ArnKey(a).cmp(&ArnKey(b)));
}

impl Store for Stores {
    type Snapshot = Snapshot;
    type Error = StoreError;

    fn name(&self, cluster: &str) -> &'static str {
        if let Some(served) = self.served_map().get(cluster) {
            return served.name();
        }
        match self.choice {
            AccessStore::AwsAuth => AwsAuthStore::NAME,
            AccessStore::AccessEntries => access_entries::NAME,
            AccessStore::Auto => "unknown",
        }
    }

    async fn read(
        &self,
        cluster: &str,
        target: &Target,
    ) -> Result<(ClusterState, Snapshot), StoreError> {
        // This run's read says which store serves the cluster; until it does, none is known.
        self.served_map().remove(cluster);
        // A full reconcile describes the cluster afresh. So does any run on a cluster last seen in
        // CONFIG_MAP: that is the one mode another run (the CLI, another execution environment) can have
        // moved on from unseen by this one's cache, and then grants live in access entries that a run
        // reading aws-auth alone would neither revoke nor see (a cached API_AND_CONFIG_MAP or API is read
        // through access entries, where grants are in every later mode too).
        let stale = self.directory.cached_mode(cluster) == Some(AuthMode::ConfigMap);
        let info = self.describe(cluster, target.full || stale).await?;
        let served = self.served(cluster, info.auth_mode)?;
        match self.read_served(cluster, served, target).await {
            // EKS says the mode does not allow access entries: what we knew of the cluster is stale.
            Err(StoreError::Entries(AccessEntriesError::WrongMode { .. })) => {
                tracing::warn!(
                    cluster,
                    "EKS refused access entries; describing the cluster again"
                );
                let info = self.describe(cluster, true).await?;
                let served = self.served(cluster, info.auth_mode)?;
                self.read_served(cluster, served, target).await
            }
            other => other,
        }
    }

    async fn apply(
        &self,
        cluster: &str,
        snapshot: Snapshot,
        decided: Decided,
        replan: &(dyn Fn(&ClusterState) -> Decided + Sync),
        landed: &Landed,
    ) -> Result<Applied, StoreError> {
        let e = match snapshot {
            Snapshot::AwsAuth(s) => {
                return Ok(self
                    .aws_auth
                    .apply(cluster, *s, decided, replan, landed)
                    .await?);
            }
            Snapshot::Entries(e) => *e,
        };
        let EntriesSnapshot {
            entries,
            state,
            legacy,
        } = e;
        let legacy_state = match &legacy {
            Some(Ok((s, _))) => Some(Box::new(s.clone())),
            _ => None,
        };
        let with_legacy = |st: &ClusterState| {
            let mut full = st.clone();
            full.legacy = legacy_state.clone();
            replan(&full)
        };
        let mut applied = match self
            .entries
            .apply(cluster, entries, decided, &with_legacy, landed)
            .await
        {
            Err(e @ AccessEntriesError::WrongMode { .. }) => {
                self.directory.forget(cluster);
                return Err(e.into());
            }
            other => other?,
        };
        match legacy {
            None => Ok(applied),
            Some(Err(source)) => Err(StoreError::Retirement {
                cluster: cluster.into(),
                written: landed.count() > 0,
                source,
            }),
            Some(Ok(_)) if applied.decided.plan.hold => Ok(applied),
            Some(Ok((_, legacy_snap))) => {
                self.retire(cluster, &mut applied, &state, legacy_snap, replan, landed)
                    .await?;
                Ok(applied)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unconfirmed_principal_holds_back_only_its_own_mapping() {
        use crate::core::grants::Grant;
        use crate::core::plan::{Change, Plan};
        let arn = |n: &str| format!("arn:aws:iam::123456789012:user/{n}");
        let g = |n: &str| Grant {
            arn: arn(n),
            username: n.into(),
            groups: vec!["system:masters".into()],
            id: None,
            policies: vec![],
            ..Default::default()
        };
        // alice and bob move, carol (untagged) is revoked; only alice's entry is confirmed.
        let mut r = Retirement {
            plan: Plan {
                changes: vec![
                    Change::Remove(g("alice")),
                    Change::Remove(g("bob")),
                    Change::Remove(g("carol")),
                ],
                ..Default::default()
            },
            migrated: vec![arn("alice"), arn("bob")],
            ..Default::default()
        };
        let confirmed: HashSet<String> = [arn("ALICE").to_ascii_lowercase()].into();
        hold_unconfirmed(&mut r, &confirmed);
        let left: Vec<&str> = r
            .plan
            .changes
            .iter()
            .map(|c| c.grant().arn.as_str())
            .collect();
        assert_eq!(
            left,
            [arn("alice"), arn("carol")],
            "the revocation goes regardless"
        );
        assert_eq!(r.migrated, [arn("alice")]);
        assert_eq!(r.plan.owned_after, [arn("bob")], "bob's row stays ours");
    }

    #[test]
    fn store_per_mode_and_setting() {
        use AccessStore::*;
        use AuthMode::*;
        let cases = [
            (Auto, ConfigMap, Ok(Served::AwsAuth)),
            (Auto, ApiAndConfigMap, Ok(Served::Entries { migrate: true })),
            (Auto, Api, Ok(Served::Entries { migrate: false })),
            (AwsAuth, ConfigMap, Ok(Served::AwsAuth)),
            (AwsAuth, ApiAndConfigMap, Ok(Served::AwsAuth)),
            (
                AccessEntries,
                ApiAndConfigMap,
                Ok(Served::Entries { migrate: true }),
            ),
            (AccessEntries, Api, Ok(Served::Entries { migrate: false })),
        ];
        for (choice, mode, want) in cases {
            assert_eq!(choose(choice, mode), want, "{choice:?} {mode:?}");
        }
        assert!(
            choose(AwsAuth, Api)
                .unwrap_err()
                .contains("does not read aws-auth")
        );
        assert!(
            choose(AccessEntries, ConfigMap)
                .unwrap_err()
                .contains("no access entries")
        );
    }
}
