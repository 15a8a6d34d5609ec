//! The `kube-system/aws-auth` store: the document model ([`document`], with the fast reader [`fastyaml`]
//! and the emitter [`yaml`]) and the read → write loop against the cluster's API server.
//!
//! Writes are JSON merge patches that carry the `resourceVersion` that was read, so the API server applies
//! them only to the exact version the plan was made on (409 otherwise: the store re-reads, asks the core to
//! re-plan on what it now finds, and retries). A merge patch names only the changed lists (`data.mapUsers`, `data.mapRoles`) and this
//! deployment's ownership annotation: no other field of the ConfigMap passes through our types, so nothing
//! we do not model can be dropped.

pub mod document;
pub mod fastyaml;
pub mod yaml;

use crate::adapters::kube::{KubeClients, KubeError};
use crate::core::plan::ClusterState;
use crate::core::ports::{Applied, Decided, Landed};
use document::{AwsAuth, AwsAuthError, Deployment, NAME, NAMESPACE, record_annotation};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use std::time::Duration;

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
pub enum AwsAuthStoreError {
    #[error("cluster {cluster}: {source}")]
    Connect { cluster: String, source: KubeError },
    #[error("cluster {cluster}: {op} kube-system/aws-auth failed{}: {message}", code.map(|c| format!(" (HTTP {c})")).unwrap_or_default())]
    Api {
        cluster: String,
        op: &'static str,
        code: Option<u16>,
        message: String,
    },
    #[error("cluster {cluster}: {source}")]
    Document {
        cluster: String,
        source: AwsAuthError,
    },
    #[error(
        "cluster {cluster}: kube-system/aws-auth kept changing under us; gave up after {attempts} attempts, nothing was written"
    )]
    Conflict { cluster: String, attempts: u32 },
}

fn api_error(cluster: &str, op: &'static str, e: kube::Error) -> AwsAuthStoreError {
    let (code, message) = match &e {
        kube::Error::Api(s) => (Some(s.code), format!("{} ({})", s.message, s.reason)),
        other => (None, other.to_string()),
    };
    AwsAuthStoreError::Api {
        cluster: cluster.into(),
        op,
        code,
        message,
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// What `read` found: the ConfigMap (if any) and its parsed document.
pub struct Snapshot {
    cm: Option<ConfigMap>,
    doc: AwsAuth,
}

/// Reads and edits `aws-auth` on a cluster reached through `client`. The pieces of the loop are public so
/// that a scripted API server can check their exact request sequence.
pub struct AwsAuthApi<'a> {
    pub client: Client,
    pub cluster: &'a str,
    pub me: &'a Deployment,
}

impl AwsAuthApi<'_> {
    fn api(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    pub async fn read(&self) -> Result<(ClusterState, Snapshot), AwsAuthStoreError> {
        let cm = self
            .api()
            .get_opt(NAME)
            .await
            .map_err(|e| api_error(self.cluster, "get", e))?;
        let doc =
            AwsAuth::parse(cm.as_ref(), self.me).map_err(|source| AwsAuthStoreError::Document {
                cluster: self.cluster.into(),
                source,
            })?;
        Ok((doc.state().clone(), Snapshot { cm, doc }))
    }

    /// Writes `decided` on `snapshot`; on 409 re-reads, re-plans with `replan` and tries again (bounded).
    /// Applies `decided` with one merge patch (or create) carrying `resourceVersion`; on 409 reads again and
    /// re-plans. The patch is atomic: once it is accepted, every change of the plan landed.
    pub async fn apply(
        &self,
        mut snapshot: Snapshot,
        mut decided: Decided,
        replan: &(dyn Fn(&ClusterState) -> Decided + Sync),
        landed: &Landed,
    ) -> Result<Applied, AwsAuthStoreError> {
        let cluster = self.cluster;
        let annotation = record_annotation(&self.me.id);
        for attempt in 1..=MAX_ATTEMPTS {
            if attempt > 1 {
                let (state, s) = self.read().await?;
                snapshot = s;
                decided = replan(&state);
            }
            if decided.plan.hold {
                return Ok(Applied {
                    decided,
                    attempts: attempt,
                });
            }
            let data = snapshot.cm.as_ref().and_then(|c| c.data.as_ref());
            let update = snapshot.doc.render(data, &decided.plan).map_err(|source| {
                AwsAuthStoreError::Document {
                    cluster: cluster.into(),
                    source,
                }
            })?;
            if update.is_empty() {
                return Ok(Applied {
                    decided,
                    attempts: attempt,
                });
            }
            let result = match &snapshot.cm {
                Some(cm) => {
                    let rv = cm.metadata.resource_version.as_deref().ok_or_else(|| {
                        AwsAuthStoreError::Api {
                            cluster: cluster.into(),
                            op: "get",
                            code: None,
                            message: "the API server returned aws-auth without a resourceVersion"
                                .into(),
                        }
                    })?;
                    let mut patch = serde_json::json!({"metadata": {"resourceVersion": rv}});
                    // Only the lists that changed; every other key stays as the API server has it.
                    let data: serde_json::Map<String, serde_json::Value> = update
                        .data()
                        .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
                        .collect();
                    if !data.is_empty() {
                        patch["data"] = serde_json::Value::Object(data);
                    }
                    if let Some(text) = &update.owned_annotation {
                        patch["metadata"]["annotations"] = serde_json::json!({ &annotation: text });
                    }
                    let pp = PatchParams {
                        field_manager: Some(FIELD_MANAGER.into()),
                        ..Default::default()
                    };
                    self.api()
                        .patch(NAME, &pp, &Patch::Merge(&patch))
                        .await
                        .map(|_| ())
                        .map_err(|e| (e, "patch"))
                }
                None => {
                    let pp = PostParams {
                        field_manager: Some(FIELD_MANAGER.into()),
                        ..Default::default()
                    };
                    self.api()
                        .create(&pp, &document::updated(None, &update, &annotation))
                        .await
                        .map(|_| ())
                        .map_err(|e| (e, "create"))
                }
            };
            match result {
                Ok(()) => {
                    for c in &decided.plan.changes {
                        landed.change(c.clone());
                    }
                    return Ok(Applied {
                        decided,
                        attempts: attempt,
                    });
                }
                // 409 on patch: someone wrote since our read; on create: EKS (or someone) created it first.
                Err((e, op)) if is_conflict(&e) => {
                    tracing::info!(
                        cluster,
                        attempt,
                        op,
                        "aws-auth changed since it was read; re-reading and re-planning"
                    );
                    if attempt < MAX_ATTEMPTS {
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                }
                Err((e, op)) => return Err(api_error(cluster, op, e)),
            }
        }
        Err(AwsAuthStoreError::Conflict {
            cluster: cluster.into(),
            attempts: MAX_ATTEMPTS,
        })
    }
}

/// The `aws-auth` store: clients per cluster, and which deployment this is.
pub struct AwsAuthStore {
    clients: KubeClients,
    me: Deployment,
}

impl AwsAuthStore {
    pub fn new(clients: KubeClients, me: Deployment) -> Self {
        AwsAuthStore { clients, me }
    }

    async fn api<'a>(&'a self, cluster: &'a str) -> Result<AwsAuthApi<'a>, AwsAuthStoreError> {
        let client =
            self.clients
                .client(cluster)
                .await
                .map_err(|source| AwsAuthStoreError::Connect {
                    cluster: cluster.into(),
                    source,
                })?;
        Ok(AwsAuthApi {
            client,
            cluster,
            me: &self.me,
        })
    }

    /// After an error: a 401 drops the token; an error that never reached the API server (connection,
    /// TLS, DNS) or a 404 from DescribeCluster drops the cluster's directory entry too, so a re-created
    /// cluster is found again. Returns whether one retry makes sense (the 401 case).
    fn forget_after(&self, cluster: &str, e: &AwsAuthStoreError) -> bool {
        match e {
            AwsAuthStoreError::Api {
                code: Some(401), ..
            } => {
                tracing::warn!(
                    cluster,
                    "API server answered 401; signing a fresh token and retrying once"
                );
                self.clients.invalidate(cluster, false);
                true
            }
            AwsAuthStoreError::Api { code: None, .. } | AwsAuthStoreError::Connect { .. } => {
                self.clients.invalidate(cluster, true);
                false
            }
            _ => false,
        }
    }
}

/// The store is one of two behind [`crate::store::Stores`], which picks it per cluster.
impl AwsAuthStore {
    pub const NAME: &'static str = "aws-auth";

    pub async fn read(&self, cluster: &str) -> Result<(ClusterState, Snapshot), AwsAuthStoreError> {
        match self.api(cluster).await?.read().await {
            Err(e) if self.forget_after(cluster, &e) => self.api(cluster).await?.read().await,
            other => other,
        }
    }

    pub async fn apply(
        &self,
        cluster: &str,
        snapshot: Snapshot,
        decided: Decided,
        replan: &(dyn Fn(&ClusterState) -> Decided + Sync),
        landed: &Landed,
    ) -> Result<Applied, AwsAuthStoreError> {
        let api = self.api(cluster).await?;
        match api.apply(snapshot, decided, replan, landed).await {
            Err(e) => {
                // A 401 on the write: a fresh token, then a fresh read and plan (the snapshot is spent).
                if self.forget_after(cluster, &e) {
                    let api = self.api(cluster).await?;
                    let (state, snapshot) = api.read().await?;
                    return api.apply(snapshot, replan(&state), replan, landed).await;
                }
                Err(e)
            }
            ok => ok,
        }
    }
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
