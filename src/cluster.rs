//! The cluster side: reaching an EKS API server and editing `kube-system/aws-auth` safely.
//!
//! Writes are JSON merge patches that carry the `resourceVersion` we read, so the API server applies them
//! only to the exact version we planned against (409 otherwise, and we re-read, re-plan and retry). A merge
//! patch names only `data.mapUsers` and our annotation: no other field of the ConfigMap passes through our
//! types, so nothing we do not model can be dropped.

use crate::aws::{AwsError, ClusterInfo, Eks};
use crate::awsauth::{self, AwsAuth, AwsAuthError};
use crate::desired::Mapping;
use crate::plan::{Change, Plan, Scope, Skip, plan};
use crate::token::{RESIGN_AFTER, Signer, TokenError};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};
use tokio::sync::Mutex;

pub const FIELD_MANAGER: &str = "eks-admin-sync";
/// Attempts at read → plan → write before giving up on conflicts.
pub const MAX_ATTEMPTS: u32 = 10;
const BACKOFF_BASE: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// "Full jitter" backoff: a random wait up to min(cap, base * 2^(attempt-1)), so that writers that
/// collided once do not collide again in lockstep.
fn backoff(attempt: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_MAX);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(attempt);
    let fraction = (h.finish() % 1000) as u32;
    ceiling * fraction / 1000
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster {cluster}: {source}")]
    Aws { cluster: String, source: AwsError },
    #[error("cluster {cluster}: {source}")]
    Token { cluster: String, source: TokenError },
    #[error("cluster {cluster}: cannot build a Kubernetes client: {message}")]
    Client { cluster: String, message: String },
    #[error("cluster {cluster}: {op} kube-system/aws-auth failed{}: {message}", code.map(|c| format!(" (HTTP {c})")).unwrap_or_default())]
    Api {
        cluster: String,
        op: &'static str,
        code: Option<u16>,
        message: String,
    },
    #[error("cluster {cluster}: {source}")]
    AwsAuth {
        cluster: String,
        source: AwsAuthError,
    },
    #[error(
        "cluster {cluster}: kube-system/aws-auth kept changing under us; gave up after {attempts} attempts, nothing was written"
    )]
    Conflict { cluster: String, attempts: u32 },
}

impl ClusterError {
    fn is_unauthorized(&self) -> bool {
        matches!(
            self,
            ClusterError::Api {
                code: Some(401),
                ..
            }
        )
    }
}

/// What happened on one cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterReport {
    pub cluster: String,
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
    pub skipped: Vec<Skip>,
    pub dry_run: bool,
    /// Whether the ConfigMap was written (false for no change and for dry runs).
    pub written: bool,
    /// How many read → plan → write rounds it took (more than 1 means a conflict was retried).
    pub attempts: u32,
    pub changes: Vec<Change>,
}

impl ClusterReport {
    fn new(cluster: &str, p: &Plan, dry_run: bool, written: bool, attempts: u32) -> Self {
        let mut r = ClusterReport {
            cluster: cluster.into(),
            unchanged: p.unchanged.len(),
            skipped: p.skipped.clone(),
            dry_run,
            written,
            attempts,
            changes: p.changes.clone(),
            ..Default::default()
        };
        for c in &p.changes {
            match c {
                Change::Add(m) => r.added.push(m.arn.clone()),
                Change::Update { to, .. } => r.updated.push(to.arn.clone()),
                Change::Remove(m) => r.removed.push(m.arn.clone()),
            }
        }
        r
    }
}

fn api_error(cluster: &str, op: &'static str, e: kube::Error) -> ClusterError {
    let (code, message) = match &e {
        kube::Error::Api(s) => (Some(s.code), format!("{} ({})", s.message, s.reason)),
        other => (None, other.to_string()),
    };
    ClusterError::Api {
        cluster: cluster.into(),
        op,
        code,
        message,
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Read → plan → write `aws-auth` with optimistic concurrency. `desired` must be within `scope`.
pub async fn sync_aws_auth(
    client: &Client,
    cluster: &str,
    desired: &[Mapping],
    scope: &Scope,
    dry_run: bool,
) -> Result<ClusterReport, ClusterError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), awsauth::NAMESPACE);
    let wrap = |source| ClusterError::AwsAuth {
        cluster: cluster.into(),
        source,
    };
    for attempt in 1..=MAX_ATTEMPTS {
        let cm = api
            .get_opt(awsauth::NAME)
            .await
            .map_err(|e| api_error(cluster, "get", e))?;
        let doc = AwsAuth::parse(cm.as_ref()).map_err(wrap)?;
        let p = plan(doc.current(), doc.owned(), desired, scope);
        let data = cm.as_ref().and_then(|c| c.data.as_ref());
        let update = doc.render(data, &p).map_err(wrap)?;
        if update.is_empty() || dry_run {
            return Ok(ClusterReport::new(cluster, &p, dry_run, false, attempt));
        }
        let result =
            match &cm {
                Some(cm) => {
                    let rv = cm.metadata.resource_version.as_deref().ok_or_else(|| {
                        ClusterError::Api {
                            cluster: cluster.into(),
                            op: "get",
                            code: None,
                            message: "the API server returned aws-auth without a resourceVersion"
                                .into(),
                        }
                    })?;
                    let mut patch = serde_json::json!({"metadata": {"resourceVersion": rv}});
                    if let Some(text) = &update.map_users {
                        patch["data"] = serde_json::json!({ awsauth::MAP_USERS: text });
                    }
                    if let Some(text) = &update.owned_annotation {
                        patch["metadata"]["annotations"] =
                            serde_json::json!({ awsauth::OWNED_ANNOTATION: text });
                    }
                    let pp = PatchParams {
                        field_manager: Some(FIELD_MANAGER.into()),
                        ..Default::default()
                    };
                    api.patch(awsauth::NAME, &pp, &Patch::Merge(&patch))
                        .await
                        .map(|_| ())
                        .map_err(|e| (e, "patch"))
                }
                None => {
                    let pp = PostParams {
                        field_manager: Some(FIELD_MANAGER.into()),
                        ..Default::default()
                    };
                    api.create(&pp, &awsauth::updated(None, &update))
                        .await
                        .map(|_| ())
                        .map_err(|e| (e, "create"))
                }
            };
        match result {
            Ok(()) => return Ok(ClusterReport::new(cluster, &p, false, true, attempt)),
            // 409 on patch: someone wrote since our read; on create: EKS (or someone) created it first.
            Err((e, op)) if is_conflict(&e) => {
                tracing::info!(
                    cluster,
                    attempt,
                    op,
                    "aws-auth changed since it was read; re-reading"
                );
                if attempt < MAX_ATTEMPTS {
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
            Err((e, op)) => return Err(api_error(cluster, op, e)),
        }
    }
    Err(ClusterError::Conflict {
        cluster: cluster.into(),
        attempts: MAX_ATTEMPTS,
    })
}

/// Applies desired mappings to one cluster. The seam for a second backend (EKS access entries).
pub trait ClusterBackend {
    fn sync(
        &self,
        cluster: &str,
        desired: &[Mapping],
        scope: &Scope,
        dry_run: bool,
    ) -> impl Future<Output = Result<ClusterReport, ClusterError>> + Send;
}

struct Cached {
    info: ClusterInfo,
    client: Option<(Client, SystemTime)>,
}

/// Reaches clusters: DescribeCluster once per cluster, a kube client per cluster re-signed every 10 minutes.
pub struct AwsAuthBackend {
    eks: Eks,
    signer: Signer,
    cache: Mutex<HashMap<String, Cached>>,
}

impl AwsAuthBackend {
    pub fn new(eks: Eks, signer: Signer) -> Self {
        AwsAuthBackend {
            eks,
            signer,
            cache: Mutex::new(HashMap::new()),
        }
    }

    async fn client(&self, cluster: &str) -> Result<Client, ClusterError> {
        use std::collections::hash_map::Entry;
        let mut cache = self.cache.lock().await;
        let entry = match cache.entry(cluster.to_string()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => {
                let info =
                    self.eks
                        .describe(cluster)
                        .await
                        .map_err(|source| ClusterError::Aws {
                            cluster: cluster.into(),
                            source,
                        })?;
                v.insert(Cached { info, client: None })
            }
        };
        if let Some((client, signed_at)) = &entry.client
            && signed_at.elapsed().is_ok_and(|age| age < RESIGN_AFTER)
        {
            return Ok(client.clone());
        }
        let (token, signed_at) =
            self.signer
                .sign(cluster)
                .await
                .map_err(|source| ClusterError::Token {
                    cluster: cluster.into(),
                    source,
                })?;
        let client = build_client(&entry.info, token).map_err(|message| ClusterError::Client {
            cluster: cluster.into(),
            message,
        })?;
        entry.client = Some((client.clone(), signed_at));
        Ok(client)
    }

    /// Forgets the cached client (and with it the token) after a 401.
    async fn invalidate(&self, cluster: &str) {
        if let Some(c) = self.cache.lock().await.get_mut(cluster) {
            c.client = None;
        }
    }
}

impl ClusterBackend for AwsAuthBackend {
    async fn sync(
        &self,
        cluster: &str,
        desired: &[Mapping],
        scope: &Scope,
        dry_run: bool,
    ) -> Result<ClusterReport, ClusterError> {
        let client = self.client(cluster).await?;
        match sync_aws_auth(&client, cluster, desired, scope, dry_run).await {
            Err(e) if e.is_unauthorized() => {
                tracing::warn!(
                    cluster,
                    "API server answered 401; signing a fresh token and retrying once"
                );
                self.invalidate(cluster).await;
                let client = self.client(cluster).await?;
                sync_aws_auth(&client, cluster, desired, scope, dry_run).await
            }
            other => other,
        }
    }
}

/// A kube client for `info` that authenticates with `token` (no kubeconfig).
pub fn build_client(info: &ClusterInfo, token: String) -> Result<Client, String> {
    let uri: http::Uri = info
        .endpoint
        .parse()
        .map_err(|e| format!("endpoint {:?} is not a URL: {e}", info.endpoint))?;
    let mut config = kube::Config::new(uri);
    config.default_namespace = awsauth::NAMESPACE.into();
    config.root_cert = Some(info.ca_der.clone());
    config.auth_info.token = Some(secrecy::SecretString::from(token));
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(30));
    config.write_timeout = Some(Duration::from_secs(30));
    Client::try_from(config).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_grows() {
        for attempt in 1..=MAX_ATTEMPTS {
            let ceiling = (BACKOFF_BASE * 2u32.pow(attempt - 1)).min(BACKOFF_MAX);
            for _ in 0..50 {
                assert!(backoff(attempt) <= ceiling);
            }
        }
        // Jitter: not every draw is the same.
        let draws: std::collections::BTreeSet<Duration> = (0..50).map(|_| backoff(5)).collect();
        assert!(draws.len() > 1);
    }
}
