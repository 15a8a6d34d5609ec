//! One invocation: event → intent → IAM read → per-cluster sync → report. Shared by Lambda and the CLI.

use crate::aws::{AwsError, IamSource};
use crate::cluster::{ClusterBackend, ClusterError, ClusterReport};
use crate::config::Settings;
use crate::desired::{IamUser, desired_for_cluster};
use crate::event::{self, EventError, Intent};
use crate::plan::Scope;
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Event(#[from] EventError),
    #[error("{0}; nothing was written to any cluster")]
    Iam(#[from] AwsError),
    /// Some clusters failed; the others were still processed and are in the report.
    #[error("{} of {} clusters failed: {}", .failed.len(), .report.clusters.len() + .failed.len(), .failed.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Clusters {
        report: Box<Report>,
        failed: Vec<ClusterError>,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// What the event asked for, in words.
    pub intent: String,
    pub dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
    /// Per-cluster outcome of the clusters that succeeded.
    pub clusters: Vec<ClusterReport>,
    /// Errors of the clusters that failed (also returned as the invocation's error).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Why some tagged users were not mapped (bad tag values, odd ARNs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

pub struct Handler<I, B> {
    pub settings: Settings,
    pub iam: I,
    pub backend: B,
}

impl<I: IamSource, B: ClusterBackend> Handler<I, B> {
    pub fn new(settings: Settings, iam: I, backend: B) -> Self {
        Handler {
            settings,
            iam,
            backend,
        }
    }

    /// Handles a raw event. A malformed event or a failed IAM read writes nothing.
    pub async fn handle(&self, event: &Value) -> Result<Report, HandlerError> {
        let intent = event::parse(event)?;
        self.run(intent).await
    }

    pub async fn run(&self, intent: Intent) -> Result<Report, HandlerError> {
        let (users, scope, dry_run, what) = match intent {
            Intent::Ignore { reason } => {
                tracing::info!(%reason, "event ignored");
                return Ok(Report {
                    intent: "ignore".into(),
                    dry_run: self.settings.dry_run,
                    ignored: Some(reason),
                    ..Default::default()
                });
            }
            Intent::ReconcileAll { dry_run } => {
                let users = self.iam.list_users().await?;
                tracing::info!(users = users.len(), "read all IAM users");
                (
                    users,
                    Scope::All,
                    dry_run,
                    "reconcile all users".to_string(),
                )
            }
            Intent::ReconcileUsers {
                users: names,
                dry_run,
            } => {
                let mut users: Vec<IamUser> = Vec::new();
                for name in &names {
                    match self.iam.get_user(name).await? {
                        Some(u) => users.push(u),
                        None => {
                            tracing::info!(user = %name, "IAM user does not exist; its owned mappings will be removed")
                        }
                    }
                }
                let what = format!("reconcile user(s) {}", names.join(", "));
                (users, Scope::Users(names), dry_run, what)
            }
        };
        let dry_run = dry_run || self.settings.dry_run;
        let mut report = Report {
            intent: what,
            dry_run,
            ..Default::default()
        };
        let mut failed = Vec::new();
        for cluster in &self.settings.clusters {
            let desired = desired_for_cluster(&users, &self.settings, cluster);
            for n in &desired.notes {
                if !report.notes.contains(n) {
                    tracing::warn!(cluster = %cluster, note = %n, "tag value partly or wholly ignored");
                    report.notes.push(n.clone());
                }
            }
            match self
                .backend
                .sync(cluster, &desired.mappings, &scope, dry_run)
                .await
            {
                Ok(r) => {
                    tracing::info!(
                        cluster = %cluster,
                        added = r.added.len(),
                        updated = r.updated.len(),
                        removed = r.removed.len(),
                        unchanged = r.unchanged,
                        skipped = r.skipped.len(),
                        written = r.written,
                        dry_run,
                        attempts = r.attempts,
                        "cluster reconciled"
                    );
                    for s in &r.skipped {
                        tracing::warn!(cluster = %cluster, arn = %s.arn, reason = %s.reason, "mapping skipped");
                    }
                    report.clusters.push(r);
                }
                Err(e) => {
                    tracing::error!(cluster = %cluster, error = %e, "cluster failed; other clusters go on");
                    report.errors.push(e.to_string());
                    failed.push(e);
                }
            }
        }
        if failed.is_empty() {
            Ok(report)
        } else {
            Err(HandlerError::Clusters {
                report: Box::new(report),
                failed,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::Mapping;
    use std::sync::Mutex;

    struct FakeIam {
        users: Vec<IamUser>,
        fail: bool,
    }

    impl IamSource for FakeIam {
        async fn get_user(&self, name: &str) -> Result<Option<IamUser>, AwsError> {
            if self.fail {
                return Err(AwsError::Iam {
                    op: "GetUser",
                    message: "throttled".into(),
                });
            }
            Ok(self.users.iter().find(|u| u.name == name).cloned())
        }
        async fn list_users(&self) -> Result<Vec<IamUser>, AwsError> {
            if self.fail {
                return Err(AwsError::Iam {
                    op: "GetAccountAuthorizationDetails",
                    message: "AccessDenied".into(),
                });
            }
            Ok(self.users.clone())
        }
    }

    /// (cluster, desired ARNs, scope, dry run)
    type Call = (String, Vec<String>, Scope, bool);

    /// Records what the handler asked of each cluster; fails for clusters named "broken".
    #[derive(Default)]
    struct RecordingBackend {
        calls: Mutex<Vec<Call>>,
    }

    impl ClusterBackend for RecordingBackend {
        async fn sync(
            &self,
            cluster: &str,
            desired: &[Mapping],
            scope: &Scope,
            dry_run: bool,
        ) -> Result<ClusterReport, ClusterError> {
            self.calls.lock().unwrap().push((
                cluster.into(),
                desired.iter().map(|m| m.arn.clone()).collect(),
                scope.clone(),
                dry_run,
            ));
            if cluster == "broken" {
                return Err(ClusterError::Conflict {
                    cluster: cluster.into(),
                    attempts: 6,
                });
            }
            Ok(ClusterReport {
                cluster: cluster.into(),
                dry_run,
                ..Default::default()
            })
        }
    }

    fn settings(clusters: &str, dry_run: bool) -> Settings {
        Settings::from_lookup(|k| match k {
            "CLUSTER_NAMES" => Some(clusters.into()),
            "DRY_RUN" => Some(dry_run.to_string()),
            _ => None,
        })
        .unwrap()
    }

    fn admin(name: &str, value: &str) -> IamUser {
        IamUser {
            name: name.into(),
            arn: format!("arn:aws:iam::123456789012:user/{name}"),
            tags: vec![("eks-cluster-admin".into(), value.into())],
        }
    }

    fn handler(
        clusters: &str,
        users: Vec<IamUser>,
        fail: bool,
    ) -> Handler<FakeIam, RecordingBackend> {
        Handler::new(
            settings(clusters, false),
            FakeIam { users, fail },
            RecordingBackend::default(),
        )
    }

    #[tokio::test]
    async fn iam_failure_writes_nothing() {
        for ev in [
            serde_json::json!({"action": "reconcile"}),
            serde_json::json!({"action": "reconcile", "user": "a"}),
        ] {
            let h = handler("prod", vec![admin("a", "true")], true);
            let e = h.handle(&ev).await.unwrap_err();
            assert!(matches!(e, HandlerError::Iam(_)), "{e}");
            assert!(e.to_string().contains("nothing was written"));
            assert!(
                h.backend.calls.lock().unwrap().is_empty(),
                "no cluster may be touched after a failed IAM read"
            );
        }
    }

    #[tokio::test]
    async fn malformed_event_touches_nothing() {
        let h = handler("prod", vec![], false);
        assert!(matches!(
            h.handle(&serde_json::json!({"hello": 1})).await,
            Err(HandlerError::Event(_))
        ));
        assert!(h.backend.calls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn user_event_scopes_to_that_user_and_gone_user_has_no_desired() {
        let h = handler("prod staging", vec![admin("a", "staging")], false);
        h.handle(&serde_json::json!({"action": "reconcile", "users": ["a", "gone"]}))
            .await
            .unwrap();
        let calls = h.backend.calls.lock().unwrap();
        let scope = Scope::Users(vec!["a".into(), "gone".into()]);
        assert_eq!(calls[0], ("prod".into(), vec![], scope.clone(), false));
        assert_eq!(
            calls[1],
            (
                "staging".into(),
                vec!["arn:aws:iam::123456789012:user/a".to_string()],
                scope,
                false
            )
        );
    }

    #[tokio::test]
    async fn one_failing_cluster_does_not_stop_the_others() {
        let h = handler("broken prod", vec![admin("a", "true")], false);
        let e = h
            .handle(&serde_json::json!({"action": "reconcile"}))
            .await
            .unwrap_err();
        let HandlerError::Clusters { report, failed } = e else {
            panic!("wrong error")
        };
        assert_eq!(failed.len(), 1);
        assert_eq!(report.clusters.len(), 1);
        assert_eq!(report.clusters[0].cluster, "prod");
        assert_eq!(report.errors.len(), 1);
        assert_eq!(h.backend.calls.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn dry_run_from_payload_or_settings() {
        let h = handler("prod", vec![], false);
        let r = h
            .handle(&serde_json::json!({"action": "reconcile", "dryRun": true}))
            .await
            .unwrap();
        assert!(r.dry_run);
        assert!(h.backend.calls.lock().unwrap()[0].3);

        let h = Handler::new(
            settings("prod", true),
            FakeIam {
                users: vec![],
                fail: false,
            },
            RecordingBackend::default(),
        );
        let r = h
            .handle(&serde_json::json!({"action": "reconcile", "dryRun": false}))
            .await
            .unwrap();
        assert!(
            r.dry_run,
            "a payload cannot switch off the configured DRY_RUN"
        );
    }

    #[tokio::test]
    async fn failed_cloudtrail_call_is_ignored() {
        let h = handler("prod", vec![], false);
        let ev: Value = serde_json::from_slice(
            &std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/events/tag-user-failed.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let r = h.handle(&ev).await.unwrap();
        assert!(r.ignored.unwrap().contains("AccessDenied"));
        assert!(h.backend.calls.lock().unwrap().is_empty());
    }
}
