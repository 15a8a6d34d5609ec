//! The EKS access-entries store: a grant is a `STANDARD` access entry (username, `kubernetesGroups`) with
//! the configured access policies associated.
//!
//! Ownership lives on the entries themselves, as tags written at creation: [`MARK_TAG`] = this deployment's
//! id, [`USER_ID_TAG`] = the IAM user id the entry was made for, [`TAG_KEY_TAG`] = the admin tag key it was
//! granted under. An entry without this deployment's mark is someone else's and is never changed.
//!
//! Reads: a full reconcile lists every entry (pages of 100) and describes the user entries only (roles are
//! never ours), then lists the access policies of the entries it owns; a scoped run describes the named
//! principals only, and trusts an owned entry's policies (the next full reconcile repairs drift).
//!
//! EKS has no conditional writes. What it gives instead is handled as follows: 409 `ResourceInUseException`
//! on create (someone made the entry since our read) → read again and re-plan; `InvalidParameterException`
//! "invalid principal" right after `CreateUser` and 404 on associate right after create (eventual
//! consistency) → bounded retries, then a clear error; `ThrottlingException` → the SDK's retries with
//! backoff; `InvalidRequestException` (the cluster's mode does not allow access entries) →
//! [`AccessEntriesError::WrongMode`], on which the caller describes the cluster afresh. Before deleting, an
//! entry is described again, and left alone if it was taken over since the read.

use crate::core::grants::{Grant, user_name_of_arn};
use crate::core::plan::{Change, ClusterState, CurrentEntry, Owner, Plan};
use crate::core::ports::{Applied, Decided, Target};
use crate::core::settings::{AccessPolicy, PolicyScope};
use aws_sdk_eks::Client;
use aws_sdk_eks::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_eks::types::{AccessScope, AccessScopeType, AssociatedAccessPolicy};
use futures_util::{StreamExt, stream};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

pub const NAME: &str = "access-entries";
/// The tag that marks an entry as this deployment's (value: `DEPLOYMENT_ID`).
pub const MARK_TAG: &str = "eks-admin-sync";
/// The IAM user id the entry was granted to.
pub const USER_ID_TAG: &str = "eks-admin-sync-user-id";
/// The admin tag key the entry was granted under.
pub const TAG_KEY_TAG: &str = "eks-admin-sync-tag-key";
/// `ListAccessEntries` / `ListAssociatedAccessPolicies` page size (EKS's maximum).
pub const PAGE_SIZE: i32 = 100;
/// A stop for a paginator that never ends.
const MAX_PAGES: usize = 1000;
/// Calls in flight at once on one cluster.
pub const CONCURRENCY: usize = 8;
/// Read → plan → write rounds before giving up when entries keep appearing under us.
pub const MAX_ATTEMPTS: u32 = 5;
/// Tries of a call that EKS may refuse for a few seconds after IAM or EKS changed (eventual consistency),
/// with waits of 0.25, 0.5, 1, 2 … seconds between them.
pub const SETTLE_TRIES: u32 = 6;
const SETTLE_BASE: Duration = Duration::from_millis(250);

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
}

/// What the store knows of one entry from its read.
#[derive(Debug, Clone)]
struct Known {
    entry_arn: String,
    tags: HashMap<String, String>,
    policies: Option<Vec<AccessPolicy>>,
}

/// What `read` found, handed to `apply`.
pub struct Snapshot {
    target: Target,
    known: HashMap<String, Known>,
}

/// This deployment, as its entries' tags name it.
#[derive(Debug, Clone)]
pub struct Marks {
    pub deployment: String,
    pub tag_key: String,
}

pub struct AccessEntryStore {
    client: Client,
    marks: Marks,
}

/// A step of a write that did not go through.
enum Stop {
    /// Someone created an entry since our read: read again and re-plan.
    Race,
    Fail(AccessEntriesError),
}

/// The token of the next page, if the answer says there is one.
fn next_page(token: Option<&str>) -> Option<String> {
    token.filter(|t| !t.is_empty()).map(str::to_string)
}

/// A paginator that never ended: refused rather than followed forever.
fn too_many_pages(cluster: &str, op: &'static str, principal: Option<&str>) -> AccessEntriesError {
    AccessEntriesError::Api {
        cluster: cluster.into(),
        op,
        principal: principal.map(str::to_string),
        code: None,
        message: format!("more than {MAX_PAGES} pages; refusing to go on"),
    }
}

fn settle_wait(attempt: u32) -> Duration {
    SETTLE_BASE.saturating_mul(1u32 << attempt.min(8))
}

fn policy_of(p: &AssociatedAccessPolicy) -> Option<AccessPolicy> {
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

fn scope_of(p: &AccessPolicy) -> AccessScope {
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

impl AccessEntryStore {
    pub fn new(client: Client, marks: Marks) -> Self {
        AccessEntryStore { client, marks }
    }

    fn error<E, R>(
        &self,
        cluster: &str,
        op: &'static str,
        principal: Option<&str>,
        e: &SdkError<E, R>,
    ) -> AccessEntriesError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let code = e.code().map(str::to_string);
        if code.as_deref() == Some("InvalidRequestException") {
            return AccessEntriesError::WrongMode {
                cluster: cluster.into(),
                message: e
                    .message()
                    .map_or_else(|| DisplayErrorContext(e).to_string(), str::to_string),
            };
        }
        AccessEntriesError::Api {
            cluster: cluster.into(),
            op,
            principal: principal.map(str::to_string),
            code,
            message: DisplayErrorContext(e).to_string(),
        }
    }

    /// The tags an entry granted with `g` carries.
    fn tags_for(&self, g: &Grant) -> HashMap<String, String> {
        let mut t = HashMap::from([
            (MARK_TAG.to_string(), self.marks.deployment.clone()),
            (TAG_KEY_TAG.to_string(), self.marks.tag_key.clone()),
        ]);
        if let Some(id) = &g.id {
            t.insert(USER_ID_TAG.to_string(), id.clone());
        }
        t
    }

    fn is_ours(&self, tags: &HashMap<String, String>) -> bool {
        tags.get(MARK_TAG) == Some(&self.marks.deployment)
    }

    /// Every principal with an entry on the cluster.
    async fn list(&self, cluster: &str) -> Result<Vec<String>, AccessEntriesError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = self
                .client
                .list_access_entries()
                .cluster_name(cluster)
                .max_results(PAGE_SIZE)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| self.error(cluster, "ListAccessEntries", None, &e))?;
            out.extend(page.access_entries().iter().cloned());
            token = next_page(page.next_token());
            if token.is_none() {
                return Ok(out);
            }
        }
        Err(too_many_pages(cluster, "ListAccessEntries", None))
    }

    /// One entry as (current entry for the planner, what the store keeps), or `None` when there is none.
    async fn describe(
        &self,
        cluster: &str,
        principal: &str,
    ) -> Result<Option<(CurrentEntry, Known)>, AccessEntriesError> {
        let out = match self
            .client
            .describe_access_entry()
            .cluster_name(cluster)
            .principal_arn(principal)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) if e.code() == Some("ResourceNotFoundException") => return Ok(None),
            Err(e) => return Err(self.error(cluster, "DescribeAccessEntry", Some(principal), &e)),
        };
        let Some(e) = out.access_entry() else {
            return Err(AccessEntriesError::Api {
                cluster: cluster.into(),
                op: "DescribeAccessEntry",
                principal: Some(principal.into()),
                code: None,
                message: "the response has no accessEntry".into(),
            });
        };
        let tags = e.tags().cloned().unwrap_or_default();
        let standard = e.r#type().is_none_or(|t| t == "STANDARD");
        let owner = if standard && self.is_ours(&tags) {
            Owner::Us { marked: true }
        } else {
            Owner::Foreign
        };
        let current = CurrentEntry {
            arn: Some(e.principal_arn().unwrap_or(principal).to_string()),
            username: e.username().map(str::to_string),
            groups: e.kubernetes_groups().to_vec(),
            id: tags.get(USER_ID_TAG).cloned(),
            owner,
            policies: None,
        };
        let known = Known {
            entry_arn: e.access_entry_arn().unwrap_or_default().to_string(),
            tags,
            policies: None,
        };
        Ok(Some((current, known)))
    }

    /// The access policies associated with an entry (all pages).
    async fn policies(
        &self,
        cluster: &str,
        principal: &str,
    ) -> Result<Vec<AccessPolicy>, AccessEntriesError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = self
                .client
                .list_associated_access_policies()
                .cluster_name(cluster)
                .principal_arn(principal)
                .max_results(PAGE_SIZE)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| {
                    self.error(cluster, "ListAssociatedAccessPolicies", Some(principal), &e)
                })?;
            out.extend(
                page.associated_access_policies()
                    .iter()
                    .filter_map(policy_of),
            );
            token = next_page(page.next_token());
            if token.is_none() {
                out.sort();
                return Ok(out);
            }
        }
        Err(too_many_pages(
            cluster,
            "ListAssociatedAccessPolicies",
            Some(principal),
        ))
    }

    /// The entries `target` is about, as the planner needs them.
    pub async fn read(
        &self,
        cluster: &str,
        target: &Target,
    ) -> Result<(ClusterState, Snapshot), AccessEntriesError> {
        let mut principals: Vec<String> = if target.full {
            // Only IAM users are ever granted: role entries (nodes, Fargate, people's roles) are not ours
            // and need no describe.
            self.list(cluster)
                .await?
                .into_iter()
                .filter(|a| user_name_of_arn(a).is_some())
                .collect()
        } else {
            target.arns.clone()
        };
        if !target.full && !target.unresolved.is_empty() {
            // A user IAM no longer knows: its ARN (path included) is only found among the entries.
            principals.extend(self.list(cluster).await?.into_iter().filter(|a| {
                user_name_of_arn(a)
                    .is_some_and(|n| target.unresolved.iter().any(|u| u.eq_ignore_ascii_case(n)))
            }));
        }
        let mut seen = HashSet::new();
        principals.retain(|p| seen.insert(p.to_ascii_lowercase()));

        let described: Vec<Result<Option<(CurrentEntry, Known)>, AccessEntriesError>> =
            stream::iter(principals)
                .map(|p| async move { self.describe(cluster, &p).await })
                .buffered(CONCURRENCY)
                .collect()
                .await;
        let mut entries = Vec::new();
        let mut known = HashMap::new();
        for d in described {
            if let Some((e, k)) = d? {
                known.insert(e.arn.clone().unwrap_or_default(), k);
                entries.push(e);
            }
        }
        if target.full {
            // Drift of an owned entry's policies (removed, or narrowed to namespaces by hand).
            let owned: Vec<usize> = (0..entries.len())
                .filter(|i| matches!(entries[*i].owner, Owner::Us { .. }))
                .collect();
            let arns: Vec<String> = owned
                .iter()
                .map(|i| entries[*i].arn.clone().unwrap_or_default())
                .collect();
            let lists: Vec<Result<Vec<AccessPolicy>, AccessEntriesError>> = stream::iter(arns)
                .map(|a| async move { self.policies(cluster, &a).await })
                .buffered(CONCURRENCY)
                .collect()
                .await;
            for (i, l) in owned.into_iter().zip(lists) {
                let l = l?;
                if let Some(k) = entries[i].arn.as_ref().and_then(|a| known.get_mut(a)) {
                    k.policies = Some(l.clone());
                }
                entries[i].policies = Some(l);
            }
        }
        // The tag key our entries were granted under; one under another key is what the guard must see.
        let keys: Vec<&String> = known
            .values()
            .filter(|k| self.is_ours(&k.tags))
            .filter_map(|k| k.tags.get(TAG_KEY_TAG))
            .collect();
        let record_tag_key = keys
            .iter()
            .find(|t| !t.eq_ignore_ascii_case(&self.marks.tag_key))
            .or(keys.first())
            .map(|t| t.to_string());
        let state = ClusterState {
            entries,
            recorded: Vec::new(),
            record_tag_key,
            access_entries: true,
            legacy: None,
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
    ) -> Result<Applied, AccessEntriesError> {
        let mut written = false;
        for attempt in 1..=MAX_ATTEMPTS {
            if attempt > 1 {
                let (state, s) = self.read(cluster, &snapshot.target).await?;
                snapshot = s;
                decided = replan(&state);
            }
            if decided.plan.hold {
                return Ok(Applied {
                    decided,
                    written,
                    attempts: attempt,
                });
            }
            let (w, outcome) = self.write(cluster, &snapshot, &decided.plan).await;
            written |= w;
            match outcome {
                Ok(()) => {
                    return Ok(Applied {
                        decided,
                        written,
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

    /// Writes a plan's changes, a few at a time: removals first (a principal re-created in IAM has its old
    /// entry removed before the new one is made), then adds and updates. Returns whether anything was
    /// written, and the first stop.
    async fn write(
        &self,
        cluster: &str,
        snapshot: &Snapshot,
        plan: &Plan,
    ) -> (bool, Result<(), Stop>) {
        let (removals, others): (Vec<Change>, Vec<Change>) = plan
            .changes
            .iter()
            .cloned()
            .partition(|c| matches!(c, Change::Remove(_)));
        let mut results: Vec<(bool, Result<(), Stop>)> = stream::iter(removals)
            .map(|c| async move { self.change(cluster, snapshot, &c).await })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        if results.iter().all(|(_, r)| r.is_ok()) {
            results.extend(
                stream::iter(others)
                    .map(|c| async move { self.change(cluster, snapshot, &c).await })
                    .buffer_unordered(CONCURRENCY)
                    .collect::<Vec<_>>()
                    .await,
            );
        }
        let written = results.iter().any(|(w, _)| *w);
        let mut race = false;
        for (_, r) in results {
            match r {
                Ok(()) => {}
                Err(Stop::Race) => race = true,
                Err(Stop::Fail(e)) => return (written, Err(Stop::Fail(e))),
            }
        }
        (written, if race { Err(Stop::Race) } else { Ok(()) })
    }

    async fn change(
        &self,
        cluster: &str,
        snapshot: &Snapshot,
        c: &Change,
    ) -> (bool, Result<(), Stop>) {
        match c {
            Change::Add(g) => match self.create(cluster, g).await {
                Ok(()) => match self.associate_all(cluster, g, &[]).await {
                    Ok(()) => (true, Ok(())),
                    Err(e) => {
                        // An entry without its policies grants nothing, yet in API_AND_CONFIG_MAP it takes
                        // precedence over the principal's aws-auth mapping: take it back, so that nothing
                        // is lost until the next run makes it whole.
                        let undone = self
                            .client
                            .delete_access_entry()
                            .cluster_name(cluster)
                            .principal_arn(&g.arn)
                            .send()
                            .await;
                        if let Err(d) = undone {
                            tracing::error!(cluster, principal = %g.arn, error = %DisplayErrorContext(&d), "could not remove the incomplete access entry");
                        }
                        (true, Err(Stop::Fail(e)))
                    }
                },
                Err(stop) => (false, Err(stop)),
            },
            Change::Update { from, to } => self.update(cluster, snapshot, from, to).await,
            Change::Remove(g) => self.remove(cluster, g).await,
        }
    }

    async fn create(&self, cluster: &str, g: &Grant) -> Result<(), Stop> {
        let mut attempt = 0;
        loop {
            let result = self
                .client
                .create_access_entry()
                .cluster_name(cluster)
                .principal_arn(&g.arn)
                .r#type("STANDARD")
                .username(&g.username)
                .set_kubernetes_groups(Some(g.groups.clone()))
                .set_tags(Some(self.tags_for(g)))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(e) if e.code() == Some("ResourceInUseException") => return Err(Stop::Race),
                Err(e)
                    if e.code() == Some("InvalidParameterException")
                        && e.message().is_some_and(|m| {
                            m.to_ascii_lowercase().contains("invalid principal")
                        }) =>
                {
                    attempt += 1;
                    if attempt == SETTLE_TRIES {
                        return Err(Stop::Fail(AccessEntriesError::NotSettled {
                            cluster: cluster.into(),
                            principal: g.arn.clone(),
                            reason: format!(
                                "EKS still calls the principal invalid after {SETTLE_TRIES} tries (a user created \
                                 moments ago takes a few seconds to reach EKS); nothing was created, the next run \
                                 tries again"
                            ),
                        }));
                    }
                    tokio::time::sleep(settle_wait(attempt - 1)).await;
                }
                Err(e) => {
                    return Err(Stop::Fail(self.error(
                        cluster,
                        "CreateAccessEntry",
                        Some(&g.arn),
                        &e,
                    )));
                }
            }
        }
    }

    /// Associates every policy of `g` that `have` does not hold exactly (a 404 right after the entry was
    /// created is retried: EKS is eventually consistent).
    async fn associate_all(
        &self,
        cluster: &str,
        g: &Grant,
        have: &[AccessPolicy],
    ) -> Result<(), AccessEntriesError> {
        for p in g.policies.iter().filter(|p| !have.contains(p)) {
            let mut attempt = 0;
            loop {
                let result = self
                    .client
                    .associate_access_policy()
                    .cluster_name(cluster)
                    .principal_arn(&g.arn)
                    .policy_arn(&p.arn)
                    .access_scope(scope_of(p))
                    .send()
                    .await;
                match result {
                    Ok(_) => break,
                    Err(e) if e.code() == Some("ResourceNotFoundException") => {
                        attempt += 1;
                        if attempt == SETTLE_TRIES {
                            return Err(AccessEntriesError::NotSettled {
                                cluster: cluster.into(),
                                principal: g.arn.clone(),
                                reason: format!(
                                    "AssociateAccessPolicy {} still finds no entry after {SETTLE_TRIES} tries; the \
                                     next run tries again",
                                    p.arn
                                ),
                            });
                        }
                        tokio::time::sleep(settle_wait(attempt - 1)).await;
                    }
                    Err(e) => {
                        return Err(self.error(cluster, "AssociateAccessPolicy", Some(&g.arn), &e));
                    }
                }
            }
        }
        Ok(())
    }

    async fn update(
        &self,
        cluster: &str,
        snapshot: &Snapshot,
        from: &Grant,
        to: &Grant,
    ) -> (bool, Result<(), Stop>) {
        let fail = |e| (false, Err(Stop::Fail(e)));
        let Some(known) = snapshot.known.get(&from.arn) else {
            // Not read (cannot happen for an owned entry): read again rather than guess.
            return (false, Err(Stop::Race));
        };
        let mut written = false;
        if from.username != to.username || from.groups != to.groups {
            if let Err(e) = self
                .client
                .update_access_entry()
                .cluster_name(cluster)
                .principal_arn(&to.arn)
                .username(&to.username)
                .set_kubernetes_groups(Some(to.groups.clone()))
                .send()
                .await
            {
                return fail(self.error(cluster, "UpdateAccessEntry", Some(&to.arn), &e));
            }
            written = true;
        }
        let want_tags = self.tags_for(to);
        let missing: HashMap<String, String> = want_tags
            .into_iter()
            .filter(|(k, v)| known.tags.get(k) != Some(v))
            .collect();
        if !missing.is_empty() {
            if let Err(e) = self
                .client
                .tag_resource()
                .resource_arn(&known.entry_arn)
                .set_tags(Some(missing))
                .send()
                .await
            {
                return (
                    written,
                    Err(Stop::Fail(self.error(
                        cluster,
                        "TagResource",
                        Some(&to.arn),
                        &e,
                    ))),
                );
            }
            written = true;
        }
        let have = match &known.policies {
            Some(p) => p.clone(),
            None => match self.policies(cluster, &to.arn).await {
                Ok(p) => p,
                Err(e) => return (written, Err(Stop::Fail(e))),
            },
        };
        if to.policies.iter().any(|p| !have.contains(p)) {
            written = true;
            if let Err(e) = self.associate_all(cluster, to, &have).await {
                return (written, Err(Stop::Fail(e)));
            }
        }
        for extra in have
            .iter()
            .filter(|h| !to.policies.iter().any(|p| p.arn == h.arn))
        {
            written = true;
            match self
                .client
                .disassociate_access_policy()
                .cluster_name(cluster)
                .principal_arn(&to.arn)
                .policy_arn(&extra.arn)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if e.code() == Some("ResourceNotFoundException") => {}
                Err(e) => {
                    return (
                        written,
                        Err(Stop::Fail(self.error(
                            cluster,
                            "DisassociateAccessPolicy",
                            Some(&to.arn),
                            &e,
                        ))),
                    );
                }
            }
        }
        (written, Ok(()))
    }

    async fn remove(&self, cluster: &str, g: &Grant) -> (bool, Result<(), Stop>) {
        // EKS has no conditional delete: describe again and leave the entry if it was taken over (its mark
        // removed or changed) or re-made for another principal since our read.
        match self.describe(cluster, &g.arn).await {
            Ok(None) => return (false, Ok(())),
            Ok(Some((now, _))) => {
                let still_ours =
                    now.owner == (Owner::Us { marked: true }) && (g.id.is_none() || now.id == g.id);
                if !still_ours {
                    tracing::warn!(
                        cluster,
                        principal = %g.arn,
                        "access entry changed hands since it was read; not removed"
                    );
                    return (false, Ok(()));
                }
            }
            Err(e) => return (false, Err(Stop::Fail(e))),
        }
        match self
            .client
            .delete_access_entry()
            .cluster_name(cluster)
            .principal_arn(&g.arn)
            .send()
            .await
        {
            Ok(_) => (true, Ok(())),
            Err(e) if e.code() == Some("ResourceNotFoundException") => (false, Ok(())),
            Err(e) => (
                false,
                Err(Stop::Fail(self.error(
                    cluster,
                    "DeleteAccessEntry",
                    Some(&g.arn),
                    &e,
                ))),
            ),
        }
    }

    /// Checks that each principal's entry is there, ours, and holds every policy of `policies`: before a
    /// migrated `aws-auth` mapping is removed.
    pub async fn confirm(
        &self,
        cluster: &str,
        principals: &[String],
        policies: &[AccessPolicy],
    ) -> Result<(), AccessEntriesError> {
        let not = |principal: &str, reason: &str| AccessEntriesError::NotConfirmed {
            cluster: cluster.into(),
            principal: principal.into(),
            reason: reason.into(),
        };
        for p in principals {
            match self.describe(cluster, p).await? {
                None => return Err(not(p, "no access entry")),
                Some((e, _)) if !matches!(e.owner, Owner::Us { .. }) => {
                    return Err(not(p, "the entry is not this deployment's"));
                }
                Some(_) => {}
            }
            let have = self.policies(cluster, p).await?;
            if let Some(missing) = policies.iter().find(|w| !have.contains(w)) {
                return Err(not(
                    p,
                    &format!("policy {} is not associated as configured", missing.arn),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn settle_waits_grow_and_stay_bounded() {
        let total: Duration = (0..SETTLE_TRIES - 1).map(settle_wait).sum();
        assert_eq!(settle_wait(0), Duration::from_millis(250));
        assert!(settle_wait(1) > settle_wait(0));
        assert!(total <= Duration::from_secs(8), "{total:?}");
    }
}
