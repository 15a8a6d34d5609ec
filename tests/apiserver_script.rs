//! A scripted API server: checks the exact request sequence of the `aws-auth` store, including the
//! optimistic-concurrency retry (GET → PATCH with resourceVersion → 409 → GET → re-plan → PATCH).
//! Every wait is bounded, so an unexpected or missing request fails the test instead of hanging it.

use eks_admin_sync::core::grants::Grant;
use eks_admin_sync::core::plan::{ClusterState, Scope, SkipKind, plan};
use eks_admin_sync::core::ports::{Applied, Decided, Landed};
use eks_admin_sync::store::aws_auth::document::{Deployment, OWNED_ANNOTATION};
use eks_admin_sync::store::aws_auth::{AwsAuthApi, AwsAuthStoreError, MAX_ATTEMPTS};
use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use std::time::Duration;
use tower_test::mock;

type Handle = mock::Handle<Request<Body>, Response<Body>>;

const ALICE: &str = "arn:aws:iam::123456789012:user/alice";
const CM_PATH: &str = "/api/v1/namespaces/kube-system/configmaps/aws-auth";
const NODE_ROLES: &str = "- rolearn: arn:aws:iam::123456789012:role/node\n  username: system:node:{{EC2PrivateDNSName}}\n  groups:\n    - system:bootstrappers\n    - system:nodes\n";
/// How long the script waits for the client's next request before failing the test.
const STEP: Duration = Duration::from_secs(10);

fn alice() -> Grant {
    Grant {
        arn: ALICE.into(),
        username: "alice".into(),
        groups: vec!["system:masters".into()],
        id: None,
        policies: vec![],
        ..Default::default()
    }
}

fn me() -> Deployment {
    Deployment {
        id: "default".into(),
        tag_key: "eks-cluster-admin".into(),
    }
}

fn configmap(rv: &str, map_users: Option<&str>, owned: Option<&str>) -> Value {
    let mut data = json!({"mapRoles": NODE_ROLES});
    if let Some(u) = map_users {
        data["mapUsers"] = json!(u);
    }
    let mut meta = json!({"name": "aws-auth", "namespace": "kube-system", "resourceVersion": rv, "uid": "u-1"});
    if let Some(o) = owned {
        meta["annotations"] = json!({ OWNED_ANNOTATION: o });
    }
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data})
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": format!("scripted {reason}"), "reason": reason, "code": code})
}

fn respond(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

/// The server side of a script: each step takes the next request (within [`STEP`]), checks it and answers.
struct Script(Handle);

impl Script {
    /// Takes the next request, checks method and path, and returns its JSON body (Null if empty).
    async fn expect(
        &mut self,
        method: Method,
        path: &str,
    ) -> (
        Value,
        http::request::Parts,
        mock::SendResponse<Response<Body>>,
    ) {
        let (req, send) = tokio::time::timeout(STEP, self.0.next_request())
            .await
            .unwrap_or_else(|_| panic!("no {method} {path} within {STEP:?}"))
            .expect("the client sent no further request");
        assert_eq!(req.method(), method, "method of request to {}", req.uri());
        assert_eq!(req.uri().path(), path);
        let (parts, body) = req.into_parts();
        let bytes = body.collect_bytes().await.unwrap();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (v, parts, send)
    }

    async fn get(&mut self, answer: Value) {
        let (_, _, send) = self.expect(Method::GET, CM_PATH).await;
        let code = answer["code"]
            .as_u64()
            .map_or(StatusCode::OK, |c| StatusCode::from_u16(c as u16).unwrap());
        send.send_response(respond(code, &answer));
    }

    async fn patch(&mut self, answer_code: StatusCode, answer: Value) -> Value {
        let (patch, parts, send) = self.expect(Method::PATCH, CM_PATH).await;
        assert_eq!(
            parts.headers["content-type"],
            "application/merge-patch+json"
        );
        assert!(
            parts
                .uri
                .query()
                .unwrap_or("")
                .contains("fieldManager=eks-admin-sync")
        );
        assert!(
            patch["data"].get("mapRoles").is_none(),
            "a patch must never name mapRoles"
        );
        send.send_response(respond(answer_code, &answer));
        patch
    }

    /// After the client is dropped: it must have sent nothing more.
    async fn done(mut self) {
        let next = tokio::time::timeout(STEP, self.0.next_request())
            .await
            .expect("the client neither finished nor sent a request");
        assert!(next.is_none(), "unexpected further request");
    }
}

fn client() -> (Client, Script) {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(svc, "kube-system"), Script(handle))
}

fn replan_for(desired: Vec<Grant>) -> impl Fn(&ClusterState) -> Decided + Sync {
    move |st: &ClusterState| Decided {
        plan: plan(st, &desired, &Scope::All),
        guard: None,
    }
}

/// Runs read → plan → apply as the reconcile does, with `script` answering on the other side.
/// What the store's apply came to, with whether anything landed (as the store told its `Landed`).
#[derive(Debug)]
struct Ran {
    decided: Decided,
    attempts: u32,
    written: bool,
}

async fn run<F>(desired: Vec<Grant>, script: F) -> Result<Ran, AwsAuthStoreError>
where
    F: FnOnce(Script) -> std::pin::Pin<Box<dyn Future<Output = Script> + Send>>,
{
    let (client, s) = client();
    let server = tokio::spawn(script(s));
    let me = me();
    let api = AwsAuthApi {
        client,
        cluster: "prod",
        me: &me,
    };
    let replan = replan_for(desired);
    let landed = Landed::default();
    let result = async {
        let (state, snapshot) = api.read().await?;
        let a: Applied = api
            .apply(snapshot, replan(&state), &replan, &landed)
            .await?;
        Ok(Ran {
            decided: a.decided,
            attempts: a.attempts,
            written: !landed.take().is_empty(),
        })
    };
    let result = tokio::time::timeout(Duration::from_secs(60), result)
        .await
        .expect("the store neither finished nor failed");
    drop(api);
    server.await.unwrap().done().await;
    result
}

#[tokio::test]
async fn get_then_patch_with_resource_version_and_replan_on_conflict() {
    let applied = run(vec![alice()], |mut s| {
        Box::pin(async move {
            // 1. GET: no mapUsers yet.
            s.get(configmap("100", None, None)).await;
            // 2. PATCH carrying resourceVersion 100 → someone else wrote meanwhile: 409.
            let patch = s
                .patch(StatusCode::CONFLICT, status(409, "Conflict"))
                .await;
            assert_eq!(patch["metadata"]["resourceVersion"], "100");
            // 3. GET again: the other writer added a hand-made user entry.
            let hand = "- userarn: arn:aws:iam::123456789012:user/hand\n  username: hand\n  groups: [viewers]\n";
            s.get(configmap("101", Some(hand), None)).await;
            // 4. Re-planned PATCH on version 101 keeps the other writer's entry.
            let patch = s
                .patch(StatusCode::OK, configmap("102", Some("[]"), None))
                .await;
            assert_eq!(patch["metadata"]["resourceVersion"], "101");
            let users: Value =
                serde_saphyr::from_str(patch["data"]["mapUsers"].as_str().unwrap()).unwrap();
            assert_eq!(users[0]["userarn"], "arn:aws:iam::123456789012:user/hand");
            assert_eq!(users[1]["userarn"], ALICE);
            assert_eq!(users[1]["eks-admin-sync"], "default");
            let record: Value = serde_json::from_str(
                patch["metadata"]["annotations"][OWNED_ANNOTATION]
                    .as_str()
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(
                record,
                json!({"v": 2, "tagKey": "eks-cluster-admin", "arns": [ALICE]})
            );
            s
        })
    })
    .await
    .unwrap();
    assert!(applied.written);
    assert_eq!(applied.attempts, 2);
}

/// The concurrent write changes what the plan must be: a person mapped alice by hand meanwhile. A plan
/// reused from before the 409 would add a second entry for alice; the re-plan skips her and writes nothing.
#[tokio::test]
async fn a_conflicting_write_that_changes_the_plan_is_replanned() {
    let applied = run(vec![alice()], |mut s| {
        Box::pin(async move {
            s.get(configmap("100", None, None)).await;
            s.patch(StatusCode::CONFLICT, status(409, "Conflict")).await;
            let hand =
                format!("- userarn: {ALICE}\n  username: alice-by-hand\n  groups: [viewers]\n");
            s.get(configmap("101", Some(&hand), None)).await;
            // No second PATCH: the re-plan has nothing to write.
            s
        })
    })
    .await
    .unwrap();
    assert!(!applied.written);
    assert_eq!(applied.attempts, 2);
    assert!(applied.decided.plan.changes.is_empty());
    assert_eq!(applied.decided.plan.skipped[0].kind, SkipKind::Foreign);
}

#[tokio::test]
async fn no_change_is_one_get_and_no_write() {
    let applied = run(vec![alice()], |mut s| {
        Box::pin(async move {
            let users = format!(
                "- userarn: {ALICE}\n  username: alice\n  groups:\n  - system:masters\n  eks-admin-sync: default\n"
            );
            let record = format!(r#"{{"v":2,"tagKey":"eks-cluster-admin","arns":["{ALICE}"]}}"#);
            s.get(configmap("7", Some(&users), Some(&record))).await;
            s
        })
    })
    .await
    .unwrap();
    assert_eq!(applied.decided.plan.unchanged.len(), 1);
    assert!(!applied.written);
}

#[tokio::test]
async fn missing_configmap_is_created_and_losing_the_race_to_eks_rereads() {
    let applied = run(vec![alice()], |mut s| {
        Box::pin(async move {
            s.get(status(404, "NotFound")).await;
            let (body, _, send) = s
                .expect(Method::POST, "/api/v1/namespaces/kube-system/configmaps")
                .await;
            assert_eq!(body["metadata"]["name"], "aws-auth");
            assert!(body["data"]["mapUsers"].as_str().unwrap().contains(ALICE));
            // EKS created it first, with the node role.
            send.send_response(respond(StatusCode::CONFLICT, &status(409, "AlreadyExists")));
            s.get(configmap("5", None, None)).await;
            let patch = s.patch(StatusCode::OK, configmap("6", None, None)).await;
            assert_eq!(patch["metadata"]["resourceVersion"], "5");
            s
        })
    })
    .await
    .unwrap();
    assert_eq!(applied.attempts, 2);
    assert!(applied.written);
}

#[tokio::test]
async fn unparseable_aws_auth_fails_without_writing() {
    let e = run(vec![alice()], |mut s| {
        Box::pin(async move {
            let mut cm = configmap("9", None, None);
            cm["data"]["mapRoles"] = json!("- rolearn: x\n  groups: [unclosed\n");
            s.get(cm).await;
            s
        })
    })
    .await
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("data.mapRoles cannot be parsed") && msg.contains("line"),
        "{msg}"
    );
}

#[tokio::test(start_paused = true)]
async fn endless_conflicts_give_up_after_bounded_attempts() {
    let e = run(vec![alice()], |mut s| {
        Box::pin(async move {
            for i in 0..MAX_ATTEMPTS {
                s.get(configmap(&i.to_string(), None, None)).await;
                s.patch(StatusCode::CONFLICT, status(409, "Conflict")).await;
            }
            s
        })
    })
    .await
    .unwrap_err();
    assert!(e.to_string().contains("gave up after"), "{e}");
}
