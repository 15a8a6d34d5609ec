//! Parse + plan + render on a large aws-auth: 3000 mapUsers (half of them owned) and 1000 mapRoles, with a
//! desired set of 300 admins (20 new, 10 stale owned entries to remove, 5 hand-edited to repair).

use criterion::{Criterion, criterion_group, criterion_main};
use eks_admin_sync::core::grants::Grant;
use eks_admin_sync::core::plan::{Scope, plan};
use eks_admin_sync::store::aws_auth::document::{AwsAuth, Deployment, OWNED_ANNOTATION};
use eks_admin_sync::store::aws_auth::{fastyaml, yaml};
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::json;
use std::collections::BTreeMap;
use std::hint::black_box;

fn arn(i: usize) -> String {
    format!("arn:aws:iam::123456789012:user/team{}/user{i:05}", i % 7)
}

fn big_configmap() -> (ConfigMap, Vec<Grant>) {
    let mut users = Vec::new();
    let mut owned = Vec::new();
    for i in 0..3000 {
        if i % 2 == 0 {
            let groups = if i % 97 == 0 {
                json!(["viewers"])
            } else {
                json!(["system:masters"])
            };
            users.push(
                json!({"userarn": arn(i), "username": format!("user{i:05}"), "groups": groups, "eks-admin-sync": "default"}),
            );
            owned.push(arn(i));
        } else {
            users.push(json!({"userARN": arn(i), "username": format!("hand{i}"), "groups": ["dev", "viewers"], "note": "by hand"}));
        }
    }
    let roles: Vec<_> = (0..1000)
        .map(|i| json!({"rolearn": format!("arn:aws:iam::123456789012:role/node-{i}"), "username": "system:node:{{EC2PrivateDNSName}}", "groups": ["system:bootstrappers", "system:nodes"]}))
        .collect();
    let cm = ConfigMap {
        data: Some(BTreeMap::from([
            ("mapUsers".to_string(), yaml::to_yaml(&json!(users))),
            ("mapRoles".to_string(), yaml::to_yaml(&json!(roles))),
        ])),
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            annotations: Some(BTreeMap::from([(
                OWNED_ANNOTATION.to_string(),
                json!({"v": 2, "tagKey": "eks-cluster-admin", "arns": owned}).to_string(),
            )])),
            ..Default::default()
        },
        ..Default::default()
    };
    // 280 of the owned entries stay desired (10 owned ones are dropped), plus 20 users never mapped.
    let mut desired: Vec<Grant> = (0..3000)
        .step_by(2)
        .take(290)
        .skip(10)
        .chain(3000..3020)
        .map(|i| Grant {
            arn: arn(i),
            username: format!("user{i:05}"),
            groups: vec!["system:masters".into()],
            id: None,
            policies: vec![],
            ..Default::default()
        })
        .collect();
    desired.sort();
    (cm, desired)
}

fn me() -> Deployment {
    Deployment {
        id: "default".into(),
        tag_key: "eks-cluster-admin".into(),
    }
}

fn parse_plan_render(c: &mut Criterion) {
    let me = me();
    let (cm, desired) = big_configmap();
    let bytes: usize = cm.data.as_ref().unwrap().values().map(String::len).sum();
    println!(
        "aws-auth under test: {bytes} bytes of data, 3000 mapUsers, 1000 mapRoles, 300 desired"
    );
    c.bench_function("parse+plan+render 3000 users 1000 roles", |b| {
        b.iter(|| {
            let doc = AwsAuth::parse(Some(black_box(&cm)), &me).unwrap();
            let p = plan(doc.state(), black_box(&desired), &Scope::All);
            let update = doc.render(cm.data.as_ref(), &p).unwrap();
            assert!(update.map_users.is_some());
            black_box(update)
        })
    });
}

/// The stages apart, to see where the time goes.
fn stages(c: &mut Criterion) {
    let me = me();
    let (cm, desired) = big_configmap();
    let data = cm.data.as_ref().unwrap();
    c.bench_function("stage: yaml parse mapUsers", |b| {
        b.iter(|| {
            serde_saphyr::from_str::<serde_json::Value>(black_box(&data["mapUsers"])).unwrap()
        })
    });
    c.bench_function("stage: fast parse mapUsers", |b| {
        b.iter(|| fastyaml::parse(black_box(&data["mapUsers"])).unwrap())
    });
    c.bench_function("stage: fast parse mapRoles", |b| {
        b.iter(|| fastyaml::parse(black_box(&data["mapRoles"])).unwrap())
    });
    c.bench_function("stage: AwsAuth::parse", |b| {
        b.iter(|| AwsAuth::parse(Some(black_box(&cm)), &me).unwrap())
    });
    c.bench_function("stage: yaml parse mapRoles", |b| {
        b.iter(|| {
            serde_saphyr::from_str::<serde_json::Value>(black_box(&data["mapRoles"])).unwrap()
        })
    });
    let doc = AwsAuth::parse(Some(&cm), &me).unwrap();
    let state = doc.state();
    c.bench_function("stage: plan", |b| {
        b.iter(|| plan(black_box(state), black_box(&desired), &Scope::All))
    });
    let p = plan(state, &desired, &Scope::All);
    c.bench_function("stage: render", |b| {
        b.iter(|| doc.render(cm.data.as_ref(), black_box(&p)).unwrap())
    });
}

criterion_group!(benches, parse_plan_render, stages);
criterion_main!(benches);
