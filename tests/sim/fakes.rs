//! The services the product talks to, in process, answering from the shared [`World`]: EKS over its REST
//! JSON wire format (so the product's own SDK client, paginators, retries and error handling run), the
//! Kubernetes API server's `aws-auth` endpoints (so the product's own kube client, merge patches and 409
//! handling run), and IAM through the `IamSource` port.

use crate::world::{
    ACCOUNT, ADMIN_POLICY, Cluster, ConfigMap, Entry, Fault, Iam, MODES, World, Write,
};
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector, http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use eks_admin_sync::core::grants::{Principal, PrincipalKind};
use eks_admin_sync::core::ports::{Account, IamError, IamSource};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub type Shared = Arc<Mutex<World>>;

pub fn lock(w: &Shared) -> MutexGuard<'_, World> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long a hung call hangs: far past any cluster's deadline (tokio's paused clock skips the wait).
const HANG: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------- IAM

pub struct SimIam {
    pub world: Shared,
}

fn iam_fault(world: &Shared, op: &'static str) -> Result<(), IamError> {
    let mut w = lock(world);
    w.count(format!("iam:{op}"));
    match w.faults.take("iam", op) {
        None => Ok(()),
        Some(f) => Err(IamError {
            op,
            message: format!("{f:?} (injected)"),
        }),
    }
}

fn user_principal(name: &str, u: &crate::world::User, groups: bool) -> Principal {
    Principal {
        kind: PrincipalKind::User,
        name: name.to_string(),
        arn: Iam::user_arn(name, u),
        id: Some(u.id.clone()),
        tags: u.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        groups: if groups {
            u.groups.iter().cloned().collect()
        } else {
            Vec::new()
        },
    }
}

fn role_principal(name: &str, r: &crate::world::Role) -> Principal {
    Principal {
        kind: PrincipalKind::Role,
        name: name.to_string(),
        arn: Iam::role_arn(name, r),
        id: Some(r.id.clone()),
        tags: r.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        groups: Vec::new(),
    }
}

impl IamSource for SimIam {
    async fn get_user(&self, name: &str, groups: bool) -> Result<Option<Principal>, IamError> {
        iam_fault(&self.world, "GetUser")?;
        if groups {
            iam_fault(&self.world, "ListGroupsForUser")?;
        }
        let w = lock(&self.world);
        // IAM names are unique whatever their case, and found whatever the case asked.
        Ok(w.iam
            .users
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(n, u)| user_principal(n, u, groups)))
    }

    async fn get_role(&self, name: &str) -> Result<Option<Principal>, IamError> {
        iam_fault(&self.world, "GetRole")?;
        let w = lock(&self.world);
        Ok(w.iam
            .roles
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(n, r)| role_principal(n, r)))
    }

    async fn list_principals(&self, groups: bool) -> Result<Account, IamError> {
        iam_fault(&self.world, "GetAccountAuthorizationDetails")?;
        let w = lock(&self.world);
        let mut principals: Vec<Principal> = w
            .iam
            .users
            .iter()
            .map(|(n, u)| user_principal(n, u, true))
            .collect();
        principals.extend(w.iam.roles.iter().map(|(n, r)| role_principal(n, r)));
        Ok(Account {
            principals,
            groups: if groups {
                w.iam.groups.iter().cloned().collect()
            } else {
                Vec::new()
            },
        })
    }
}

// ---------------------------------------------------------------- EKS

#[derive(Debug)]
struct FakeEks {
    world: Shared,
}

/// An EKS client configuration whose calls this process answers.
pub fn eks_http(world: Shared) -> SharedHttpClient {
    let connector = SharedHttpConnector::new(FakeEks { world });
    http_client_fn(move |_, _| connector.clone())
}

struct EksAnswer {
    status: u16,
    error: Option<&'static str>,
    body: Value,
}

fn ok(body: Value) -> EksAnswer {
    EksAnswer {
        status: 200,
        error: None,
        body,
    }
}

fn err(status: u16, code: &'static str, message: impl Into<String>) -> EksAnswer {
    EksAnswer {
        status,
        error: Some(code),
        body: json!({"message": message.into()}),
    }
}

impl HttpConnector for FakeEks {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let world = self.world.clone();
        let method = request.method().to_string();
        let uri = request.uri().to_string();
        let body: Value = request
            .body()
            .bytes()
            .filter(|b| !b.is_empty())
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null);
        HttpConnectorFuture::new(async move {
            let answer = eks_answer(&world, &method, &uri, &body).await;
            let mut resp = http::Response::builder()
                .status(answer.status)
                .header("content-type", "application/json");
            if let Some(code) = answer.error {
                resp = resp.header("x-amzn-errortype", code);
            }
            let resp = resp
                .body(SdkBody::from(answer.body.to_string()))
                .map_err(|e| {
                    aws_smithy_runtime_api::client::result::ConnectorError::other(e.into(), None)
                })?;
            aws_smithy_runtime_api::http::Response::try_from(resp).map_err(|e| {
                aws_smithy_runtime_api::client::result::ConnectorError::other(e.into(), None)
            })
        })
    }
}

/// The path's segments, each percent-decoded (an ARN travels in one segment), and the query.
fn split_uri(uri: &str) -> (String, Vec<String>, Vec<(String, String)>) {
    let u = url::Url::parse(uri).expect("the SDK sends absolute URIs");
    let segs = u
        .path_segments()
        .map(|s| {
            s.map(|x| {
                percent_encoding::percent_decode_str(x)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect()
        })
        .unwrap_or_default();
    let query = u
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    (u.path().to_string(), segs, query)
}

/// The action a request is, with its path arguments.
fn eks_route(method: &str, segs: &[String]) -> (&'static str, Vec<String>) {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (method, s.as_slice()) {
        ("GET", ["clusters", name]) => ("DescribeCluster", vec![name.to_string()]),
        ("GET", ["clusters", name, "access-entries"]) => {
            ("ListAccessEntries", vec![name.to_string()])
        }
        ("POST", ["clusters", name, "access-entries"]) => {
            ("CreateAccessEntry", vec![name.to_string()])
        }
        ("GET", ["clusters", name, "access-entries", p]) => {
            ("DescribeAccessEntry", vec![name.to_string(), p.to_string()])
        }
        ("POST", ["clusters", name, "access-entries", p]) => {
            ("UpdateAccessEntry", vec![name.to_string(), p.to_string()])
        }
        ("DELETE", ["clusters", name, "access-entries", p]) => {
            ("DeleteAccessEntry", vec![name.to_string(), p.to_string()])
        }
        ("POST", ["clusters", name, "access-entries", p, "access-policies"]) => (
            "AssociateAccessPolicy",
            vec![name.to_string(), p.to_string()],
        ),
        ("GET", ["clusters", name, "access-entries", p, "access-policies"]) => (
            "ListAssociatedAccessPolicies",
            vec![name.to_string(), p.to_string()],
        ),
        (
            "DELETE",
            [
                "clusters",
                name,
                "access-entries",
                p,
                "access-policies",
                pol,
            ],
        ) => (
            "DisassociateAccessPolicy",
            vec![name.to_string(), p.to_string(), pol.to_string()],
        ),
        ("POST", ["tags", arn]) => ("TagResource", vec![arn.to_string()]),
        ("GET", ["access-policies"]) => ("ListAccessPolicies", Vec::new()),
        _ => ("Unknown", Vec::new()),
    }
}

async fn eks_answer(world: &Shared, method: &str, uri: &str, body: &Value) -> EksAnswer {
    let (_, segs, query) = split_uri(uri);
    let (action, args) = eks_route(method, &segs);
    let fault = {
        let mut w = lock(world);
        w.count(format!("eks:{action}"));
        w.faults.take("eks", action)
    };
    match fault {
        Some(Fault::Hang) => {
            tokio::time::sleep(HANG).await;
            return err(500, "ServerException", "hung");
        }
        Some(Fault::Throttle) => return err(429, "ThrottlingException", "Rate exceeded"),
        Some(Fault::ServerError) => return err(500, "ServerException", "injected"),
        Some(Fault::Conflict) | None => {}
    }
    if action == "ListAccessPolicies" {
        // Some of what EKS offers (EKS User Guide, "Review access policy permissions"); the account's, no cluster.
        let policies: Vec<Value> = [
            "AmazonEKSAdminPolicy",
            "AmazonEKSAdminViewPolicy",
            "AmazonEKSClusterAdminPolicy",
            "AmazonEKSEditPolicy",
            "AmazonEKSViewPolicy",
        ]
        .iter()
        .map(|n| json!({"name": n, "arn": format!("arn:aws:eks::aws:cluster-access-policy/{n}")}))
        .collect();
        return ok(json!({ "accessPolicies": policies }));
    }
    let mut w = lock(world);
    let w = &mut *w;
    let Some(cluster) = args
        .first()
        .and_then(|c| w.clusters.get(c).map(|_| c.clone()))
        .or_else(|| (action == "TagResource").then(String::new))
    else {
        return err(404, "ResourceNotFoundException", "No cluster found");
    };
    if action == "DescribeCluster" {
        let c = &w.clusters[&cluster];
        return ok(json!({"cluster": {
            "name": cluster,
            "arn": format!("arn:aws:eks:us-east-1:{ACCOUNT}:cluster/{cluster}"),
            "endpoint": format!("https://{cluster}.sim.invalid"),
            "status": "ACTIVE",
            "certificateAuthority": {"data": CA},
            "accessConfig": {"authenticationMode": c.mode()},
        }}));
    }
    if action == "TagResource" {
        return tag_resource(w, &args[0], body);
    }
    if w.clusters[&cluster].mode == 0 {
        return err(
            400,
            "InvalidRequestException",
            "The cluster's authentication mode must be set to one of [API, API_AND_CONFIG_MAP] to perform this operation.",
        );
    }
    let principal = args.get(1).cloned().unwrap_or_default();
    match action {
        "ListAccessEntries" => list_entries(&w.clusters[&cluster], &query),
        "DescribeAccessEntry" => match w.clusters[&cluster].entries.get(&principal) {
            Some(e) => ok(json!({"accessEntry": view(&cluster, e)})),
            None => not_found(&principal),
        },
        "CreateAccessEntry" => create_entry(w, &cluster, body),
        "UpdateAccessEntry" => update_entry(w, &cluster, &principal, body),
        "DeleteAccessEntry" => {
            let c = w.clusters.get_mut(&cluster).expect("checked");
            if c.entries.remove(&principal).is_none() {
                return not_found(&principal);
            }
            w.writes.push(Write {
                cluster,
                what: format!("delete {principal}"),
            });
            ok(json!({}))
        }
        "AssociateAccessPolicy" => associate(w, &cluster, &principal, body),
        "DisassociateAccessPolicy" => {
            let c = w.clusters.get_mut(&cluster).expect("checked");
            let Some(e) = c.entries.get_mut(&principal) else {
                return not_found(&principal);
            };
            if e.policies.remove(&args[2]).is_none() {
                return err(404, "ResourceNotFoundException", "policy not associated");
            }
            w.writes.push(Write {
                cluster,
                what: format!("disassociate {principal}"),
            });
            ok(json!({}))
        }
        "ListAssociatedAccessPolicies" => match w.clusters[&cluster].entries.get(&principal) {
            None => not_found(&principal),
            Some(e) => {
                let items: Vec<Value> = e
                    .policies
                    .iter()
                    .map(|(arn, (ty, ns))| {
                        json!({"policyArn": arn, "accessScope": {"type": ty, "namespaces": ns}})
                    })
                    .collect();
                ok(
                    json!({"clusterName": cluster, "principalArn": principal, "associatedAccessPolicies": items}),
                )
            }
        },
        _ => err(
            404,
            "ResourceNotFoundException",
            format!("no route {method} {uri}"),
        ),
    }
}

/// A certificate bundle that reads as PEM (the simulated clients never check it).
const CA: &str = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCkFBQUEKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=";

fn not_found(principal: &str) -> EksAnswer {
    err(
        404,
        "ResourceNotFoundException",
        format!("The specified principalArn could not be found: {principal}"),
    )
}

fn view(cluster: &str, e: &Entry) -> Value {
    json!({
        "clusterName": cluster,
        "principalArn": e.principal_arn,
        "kubernetesGroups": e.groups,
        "accessEntryArn": e.entry_arn,
        "tags": e.tags,
        "username": e.username,
        "type": e.kind,
    })
}

fn list_entries(c: &Cluster, query: &[(String, String)]) -> EksAnswer {
    let max: usize = query
        .iter()
        .find(|(k, _)| k == "maxResults")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(100);
    let start: usize = query
        .iter()
        .find(|(k, _)| k == "nextToken")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let all: Vec<&String> = c.entries.keys().collect();
    let page: Vec<&&String> = all.iter().skip(start).take(max).collect();
    let mut out = json!({"accessEntries": page});
    if start + max < all.len() {
        out["nextToken"] = json!((start + max).to_string());
    }
    ok(out)
}

fn tag_ok(k: &str, v: &str) -> bool {
    let chars = |s: &str| {
        s.chars()
            .all(|c| c.is_alphanumeric() || " +-=._:/@".contains(c))
    };
    !k.is_empty() && k.len() <= 128 && v.len() <= 256 && chars(k) && chars(v)
}

fn check_tags(tags: &serde_json::Map<String, Value>) -> Option<EksAnswer> {
    tags.iter()
        .find(|(k, v)| !v.as_str().is_some_and(|v| tag_ok(k, v)))
        .map(|(k, v)| {
            err(
                400,
                "InvalidParameterException",
                format!("invalid tag {k}={v}"),
            )
        })
}

fn create_entry(w: &mut World, cluster: &str, body: &Value) -> EksAnswer {
    let arn = body["principalArn"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if arn.contains("/aws-service-role/") {
        return err(
            400,
            "InvalidParameterException",
            "The caller is not allowed to modify access entries with a principalArn value of a Service Linked Role",
        );
    }
    let Some((kind, id)) = w.iam.id_of_arn(&arn) else {
        return err(
            400,
            "InvalidParameterException",
            "The specified principalArn is invalid: invalid principal.",
        );
    };
    let groups: Vec<String> = body["kubernetesGroups"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|g| g.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if groups.iter().any(|g| g.starts_with("system:")) {
        return err(
            400,
            "InvalidParameterException",
            "kubernetesGroup cannot start with system:",
        );
    }
    let username = body["username"].as_str().unwrap_or(&arn).to_string();
    let lower = username.to_ascii_lowercase();
    if ["system:", "eks:", "aws:", "amazon:", "iam:"]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return err(400, "InvalidParameterException", "reserved username");
    }
    let tags = body["tags"].as_object().cloned().unwrap_or_default();
    if let Some(e) = check_tags(&tags) {
        return e;
    }
    let c = w.clusters.get_mut(cluster).expect("checked");
    if c.entries.contains_key(&arn) {
        return err(
            409,
            "ResourceInUseException",
            "The specified access entry resource is already in use on this cluster.",
        );
    }
    let name = arn.rsplit('/').next().unwrap_or_default();
    let e = Entry {
        principal_arn: arn.clone(),
        principal_id: id,
        kind: body["type"].as_str().unwrap_or("STANDARD").to_string(),
        username,
        groups,
        tags: tags
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect(),
        policies: Default::default(),
        entry_arn: format!(
            "arn:aws:eks:us-east-1:{ACCOUNT}:access-entry/{cluster}/{kind}/{ACCOUNT}/{name}/{}",
            w.writes.len()
        ),
    };
    let v = view(cluster, &e);
    c.entries.insert(arn.clone(), e);
    w.writes.push(Write {
        cluster: cluster.to_string(),
        what: format!("create {arn}"),
    });
    ok(json!({ "accessEntry": v }))
}

fn update_entry(w: &mut World, cluster: &str, principal: &str, body: &Value) -> EksAnswer {
    let c = w.clusters.get_mut(cluster).expect("checked");
    let Some(e) = c.entries.get_mut(principal) else {
        return not_found(principal);
    };
    if let Some(groups) = body["kubernetesGroups"].as_array() {
        let groups: Vec<String> = groups
            .iter()
            .filter_map(|g| g.as_str().map(str::to_string))
            .collect();
        if groups.iter().any(|g| g.starts_with("system:")) {
            return err(
                400,
                "InvalidParameterException",
                "kubernetesGroup cannot start with system:",
            );
        }
        e.groups = groups;
    }
    if let Some(u) = body["username"].as_str() {
        e.username = u.to_string();
    }
    let v = view(cluster, e);
    w.writes.push(Write {
        cluster: cluster.to_string(),
        what: format!("update {principal}"),
    });
    ok(json!({ "accessEntry": v }))
}

fn associate(w: &mut World, cluster: &str, principal: &str, body: &Value) -> EksAnswer {
    let policy = body["policyArn"].as_str().unwrap_or_default().to_string();
    if policy != ADMIN_POLICY
        && !policy.starts_with("arn:aws:eks::aws:cluster-access-policy/AmazonEKS")
    {
        return err(
            400,
            "InvalidParameterException",
            format!("The policyArn {policy} is invalid."),
        );
    }
    let scope = &body["accessScope"];
    let ty = scope["type"].as_str().unwrap_or_default().to_string();
    let ns: Vec<String> = scope["namespaces"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let c = w.clusters.get_mut(cluster).expect("checked");
    let Some(e) = c.entries.get_mut(principal) else {
        return not_found(principal);
    };
    if e.kind != "STANDARD" && e.kind != "EC2" {
        return err(
            400,
            "InvalidParameterException",
            "The AssociateAccessPolicy operation can only be performed on Access Entries with a type of \"STANDARD\".",
        );
    }
    e.policies.insert(policy.clone(), (ty.clone(), ns.clone()));
    w.writes.push(Write {
        cluster: cluster.to_string(),
        what: format!("associate {principal}"),
    });
    ok(json!({"clusterName": cluster, "principalArn": principal,
              "associatedAccessPolicy": {"policyArn": policy, "accessScope": {"type": ty, "namespaces": ns}}}))
}

fn tag_resource(w: &mut World, entry_arn: &str, body: &Value) -> EksAnswer {
    let tags = body["tags"].as_object().cloned().unwrap_or_default();
    if let Some(e) = check_tags(&tags) {
        return e;
    }
    for (name, c) in w.clusters.iter_mut() {
        if let Some(e) = c.entries.values_mut().find(|e| e.entry_arn == entry_arn) {
            for (k, v) in &tags {
                e.tags
                    .insert(k.clone(), v.as_str().unwrap_or_default().to_string());
            }
            let what = format!("tag {}", e.principal_arn);
            let cluster = name.clone();
            w.writes.push(Write { cluster, what });
            return ok(json!({}));
        }
    }
    err(
        404,
        "NotFoundException",
        format!("resource {entry_arn} not found"),
    )
}

// ---------------------------------------------------------------- Kubernetes

const CM_PATH: &str = "/api/v1/namespaces/kube-system/configmaps/aws-auth";
const CMS_PATH: &str = "/api/v1/namespaces/kube-system/configmaps";

/// A kube client whose requests this process answers for `cluster`'s `aws-auth`.
pub fn kube_client(world: Shared, cluster: String) -> kube::Client {
    let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let world = world.clone();
        let cluster = cluster.clone();
        async move {
            use http_body_util::BodyExt;
            let (parts, body) = req.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let (status, out) = kube_answer(
                &world,
                &cluster,
                parts.method.as_str(),
                parts.uri.path(),
                &bytes,
            )
            .await;
            let resp = http::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from(
                    out.to_string(),
                )))
                .unwrap_or_default();
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    kube::Client::new(svc, "kube-system")
}

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

fn cm_json(cm: &ConfigMap) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "aws-auth", "namespace": "kube-system", "resourceVersion": cm.rv.to_string(),
                        "annotations": cm.annotations},
           "data": cm.data})
}

/// A foreign writer's change between our read and our patch: a row of someone else's appears.
pub fn foreign_write(c: &mut Cluster, n: usize) {
    let Some(cm) = c.aws_auth.as_mut() else {
        return;
    };
    let text = cm.data.entry("mapUsers".into()).or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!(
        "- userarn: arn:aws:iam::{ACCOUNT}:user/someone-{n}\n  username: someone-{n}\n  groups:\n    - viewers\n"
    ));
    cm.rv += 1;
}

async fn kube_answer(
    world: &Shared,
    cluster: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, Value) {
    let fault = {
        let mut w = lock(world);
        w.count(format!("kube:{method}"));
        w.faults.take("kube", method)
    };
    match fault {
        Some(Fault::Hang) => {
            tokio::time::sleep(HANG).await;
            return status(504, "Timeout", "hung");
        }
        Some(Fault::Throttle) => return status(429, "TooManyRequests", "injected"),
        Some(Fault::ServerError) => return status(500, "InternalError", "injected"),
        Some(Fault::Conflict) => {
            let mut w = lock(world);
            let n = w.writes.len();
            if let Some(c) = w.clusters.get_mut(cluster) {
                foreign_write(c, n);
            }
            w.writes.push(Write {
                cluster: cluster.into(),
                what: "foreign aws-auth write".into(),
            });
        }
        None => {}
    }
    let mut w = lock(world);
    let w = &mut *w;
    let Some(c) = w.clusters.get_mut(cluster) else {
        return status(404, "NotFound", "no cluster");
    };
    match (method, path) {
        ("GET", CM_PATH) => match &c.aws_auth {
            Some(cm) => (200, cm_json(cm)),
            None => status(404, "NotFound", "configmaps \"aws-auth\" not found"),
        },
        ("PATCH", CM_PATH) => {
            let Some(cm) = c.aws_auth.as_mut() else {
                return status(404, "NotFound", "configmaps \"aws-auth\" not found");
            };
            let patch: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            if let Some(rv) = patch["metadata"]["resourceVersion"].as_str()
                && rv != cm.rv.to_string()
            {
                return status(
                    409,
                    "Conflict",
                    "Operation cannot be fulfilled on configmaps \"aws-auth\": the object has been modified",
                );
            }
            merge(cm, &patch);
            cm.rv += 1;
            let out = cm_json(cm);
            w.writes.push(Write {
                cluster: cluster.into(),
                what: "patch aws-auth".into(),
            });
            (200, out)
        }
        ("POST", CMS_PATH) => {
            if c.aws_auth.is_some() {
                return status(
                    409,
                    "AlreadyExists",
                    "configmaps \"aws-auth\" already exists",
                );
            }
            let mut cm = ConfigMap {
                rv: 1,
                data: Default::default(),
                annotations: Default::default(),
            };
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            merge(&mut cm, &v);
            let out = cm_json(&cm);
            c.aws_auth = Some(cm);
            w.writes.push(Write {
                cluster: cluster.into(),
                what: "create aws-auth".into(),
            });
            (201, out)
        }
        _ => status(404, "NotFound", &format!("no route {method} {path}")),
    }
}

/// A JSON merge patch (RFC 7386) of the parts of a ConfigMap the product writes.
fn merge(cm: &mut ConfigMap, patch: &Value) {
    if let Some(data) = patch["data"].as_object() {
        for (k, v) in data {
            match v.as_str() {
                Some(s) => {
                    cm.data.insert(k.clone(), s.to_string());
                }
                None => {
                    cm.data.remove(k);
                }
            }
        }
    }
    if let Some(ann) = patch["metadata"]["annotations"].as_object() {
        for (k, v) in ann {
            match v.as_str() {
                Some(s) => {
                    cm.annotations.insert(k.clone(), s.to_string());
                }
                None => {
                    cm.annotations.remove(k);
                }
            }
        }
    }
}

/// Moves a cluster one step towards `API` (EKS refuses anything else).
pub fn mode_step(c: &mut Cluster) -> bool {
    if c.mode + 1 < MODES.len() {
        c.mode += 1;
        true
    } else {
        false
    }
}
