//! A scripted API server: asserts the exact request sequence of an `aws-auth` sync, including the
//! optimistic-concurrency retry (GET → PATCH with resourceVersion → 409 → GET → re-plan → PATCH).

use eks_admin_sync::awsauth::OWNED_ANNOTATION;
use eks_admin_sync::cluster::{MAX_ATTEMPTS, sync_aws_auth};
use eks_admin_sync::desired::Mapping;
use eks_admin_sync::plan::Scope;
use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

type Handle = mock::Handle<Request<Body>, Response<Body>>;

const ALICE: &str = "arn:aws:iam::123456789012:user/alice";
const CM_PATH: &str = "/api/v1/namespaces/kube-system/configmaps/aws-auth";
const NODE_ROLES: &str = "- rolearn: arn:aws:iam::123456789012:role/node\n  username: system:node:{{EC2PrivateDNSName}}\n  groups:\n    - system:bootstrappers\n    - system:nodes\n";

fn alice() -> Mapping {
    Mapping {
        arn: ALICE.into(),
        username: "alice".into(),
        groups: vec!["system:masters".into()],
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

/// Takes the next request, checks method and path, and returns its JSON body (Null if empty).
async fn expect(
    handle: &mut Handle,
    method: Method,
    path: &str,
) -> (Value, Request<Body>, mock::SendResponse<Response<Body>>) {
    let (req, send) = handle
        .next_request()
        .await
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
    (v, Request::from_parts(parts, Body::empty()), send)
}

fn client() -> (Client, Handle) {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(svc, "kube-system"), handle)
}

#[tokio::test]
async fn get_then_patch_with_resource_version_and_retry_on_conflict() {
    let (client, mut h) = client();
    let server = tokio::spawn(async move {
        // 1. GET: no mapUsers yet.
        let (_, _, send) = expect(&mut h, Method::GET, CM_PATH).await;
        send.send_response(respond(StatusCode::OK, &configmap("100", None, None)));
        // 2. PATCH carrying resourceVersion 100 → someone else wrote meanwhile: 409.
        let (patch, req, send) = expect(&mut h, Method::PATCH, CM_PATH).await;
        assert_eq!(
            req.headers()["content-type"],
            "application/merge-patch+json"
        );
        assert!(
            req.uri()
                .query()
                .unwrap_or("")
                .contains("fieldManager=eks-admin-sync")
        );
        assert_eq!(patch["metadata"]["resourceVersion"], "100");
        assert!(
            patch["data"].get("mapRoles").is_none(),
            "a patch must never name mapRoles"
        );
        send.send_response(respond(StatusCode::CONFLICT, &status(409, "Conflict")));
        // 3. GET again: the other writer added a hand-made user entry.
        let (_, _, send) = expect(&mut h, Method::GET, CM_PATH).await;
        let hand = "- userarn: arn:aws:iam::123456789012:user/hand\n  username: hand\n  groups: [viewers]\n";
        send.send_response(respond(StatusCode::OK, &configmap("101", Some(hand), None)));
        // 4. Re-planned PATCH on version 101 keeps the other writer's entry.
        let (patch, _, send) = expect(&mut h, Method::PATCH, CM_PATH).await;
        assert_eq!(patch["metadata"]["resourceVersion"], "101");
        let users: Value =
            serde_saphyr::from_str(patch["data"]["mapUsers"].as_str().unwrap()).unwrap();
        assert_eq!(users[0]["userarn"], "arn:aws:iam::123456789012:user/hand");
        assert_eq!(users[1]["userarn"], ALICE);
        assert_eq!(
            patch["metadata"]["annotations"][OWNED_ANNOTATION],
            format!("[\"{ALICE}\"]")
        );
        send.send_response(respond(StatusCode::OK, &configmap("102", Some("[]"), None)));
        h
    });
    let report = sync_aws_auth(&client, "prod", &[alice()], &Scope::All, false)
        .await
        .unwrap();
    let mut h = server.await.unwrap();
    assert_eq!(report.added, vec![ALICE]);
    assert!(report.written);
    assert_eq!(report.attempts, 2);
    // No further request after the successful write.
    drop(client);
    assert!(h.next_request().await.is_none());
}

#[tokio::test]
async fn no_change_is_one_get_and_no_write() {
    let (client, mut h) = client();
    let server = tokio::spawn(async move {
        let (_, _, send) = expect(&mut h, Method::GET, CM_PATH).await;
        let users =
            format!("- userarn: {ALICE}\n  username: alice\n  groups:\n  - system:masters\n");
        send.send_response(respond(
            StatusCode::OK,
            &configmap("7", Some(&users), Some(&format!("[\"{ALICE}\"]"))),
        ));
        h
    });
    let report = sync_aws_auth(&client, "prod", &[alice()], &Scope::All, false)
        .await
        .unwrap();
    let mut h = server.await.unwrap();
    assert_eq!(report.unchanged, 1);
    assert!(!report.written);
    drop(client);
    assert!(h.next_request().await.is_none());
}

#[tokio::test]
async fn missing_configmap_is_created_and_losing_the_race_to_eks_rereads() {
    let (client, mut h) = client();
    let server = tokio::spawn(async move {
        let (_, _, send) = expect(&mut h, Method::GET, CM_PATH).await;
        send.send_response(respond(StatusCode::NOT_FOUND, &status(404, "NotFound")));
        let (body, _, send) = expect(
            &mut h,
            Method::POST,
            "/api/v1/namespaces/kube-system/configmaps",
        )
        .await;
        assert_eq!(body["metadata"]["name"], "aws-auth");
        assert!(body["data"]["mapUsers"].as_str().unwrap().contains(ALICE));
        // EKS created it first, with the node role.
        send.send_response(respond(StatusCode::CONFLICT, &status(409, "AlreadyExists")));
        let (_, _, send) = expect(&mut h, Method::GET, CM_PATH).await;
        send.send_response(respond(StatusCode::OK, &configmap("5", None, None)));
        let (patch, _, send) = expect(&mut h, Method::PATCH, CM_PATH).await;
        assert_eq!(patch["metadata"]["resourceVersion"], "5");
        send.send_response(respond(StatusCode::OK, &configmap("6", None, None)));
    });
    let report = sync_aws_auth(&client, "prod", &[alice()], &Scope::All, false)
        .await
        .unwrap();
    server.await.unwrap();
    assert_eq!(report.attempts, 2);
    assert!(report.written);
}

#[tokio::test]
async fn unparseable_aws_auth_fails_without_writing() {
    let (client, mut h) = client();
    let server = tokio::spawn(async move {
        let (_, _, send) = expect(&mut h, Method::GET, CM_PATH).await;
        let mut cm = configmap("9", None, None);
        cm["data"]["mapRoles"] = json!("- rolearn: x\n  groups: [unclosed\n");
        send.send_response(respond(StatusCode::OK, &cm));
        h
    });
    let e = sync_aws_auth(&client, "prod", &[alice()], &Scope::All, false)
        .await
        .unwrap_err();
    let mut h = server.await.unwrap();
    let msg = e.to_string();
    assert!(
        msg.contains("data.mapRoles cannot be parsed") && msg.contains("line"),
        "{msg}"
    );
    drop(client);
    assert!(h.next_request().await.is_none(), "nothing may be written");
}

#[tokio::test]
async fn dry_run_reads_but_never_writes() {
    let (client, mut h) = client();
    let server = tokio::spawn(async move {
        let (_, _, send) = expect(&mut h, Method::GET, CM_PATH).await;
        send.send_response(respond(StatusCode::OK, &configmap("3", None, None)));
        h
    });
    let report = sync_aws_auth(&client, "prod", &[alice()], &Scope::All, true)
        .await
        .unwrap();
    let mut h = server.await.unwrap();
    assert_eq!(report.added, vec![ALICE]);
    assert!(report.dry_run && !report.written);
    drop(client);
    assert!(h.next_request().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn endless_conflicts_give_up_after_bounded_attempts() {
    let (client, mut h) = client();
    let server = tokio::spawn(async move {
        for i in 0..MAX_ATTEMPTS {
            let (_, _, send) = expect(&mut h, Method::GET, CM_PATH).await;
            send.send_response(respond(
                StatusCode::OK,
                &configmap(&i.to_string(), None, None),
            ));
            let (_, _, send) = expect(&mut h, Method::PATCH, CM_PATH).await;
            send.send_response(respond(StatusCode::CONFLICT, &status(409, "Conflict")));
        }
        h
    });
    let e = sync_aws_auth(&client, "prod", &[alice()], &Scope::All, false)
        .await
        .unwrap_err();
    let mut h = server.await.unwrap();
    assert!(e.to_string().contains("gave up after"), "{e}");
    drop(client);
    assert!(h.next_request().await.is_none());
}
