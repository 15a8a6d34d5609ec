//! Property tests: for random `aws-auth` documents and random desired sets, entries this function does not
//! own come out unchanged in meaning and order, other keys are untouched, and applying twice equals once.

use eks_admin_sync::awsauth::{AwsAuth, OWNED_ANNOTATION, updated};
use eks_admin_sync::desired::Mapping;
use eks_admin_sync::plan::{Scope, plan};
use k8s_openapi::api::core::v1::ConfigMap;
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

const NAMES: [&str; 8] = [
    "alice", "bob", "carol", "dan", "eve", "frank", "grace", "heidi",
];

fn arn(name: &str, upper: bool) -> String {
    let a = format!("arn:aws:iam::123456789012:user/{name}");
    if upper {
        a.replace(name, &name.to_uppercase())
    } else {
        a
    }
}

fn arb_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        prop::sample::select(vec![
            "yes",
            "{{SessionName}}",
            "system:node:{{EC2PrivateDNSName}}",
            "a: b",
            "",
            "#x",
            "x"
        ])
        .prop_map(|s| json!(s)),
    ]
}

/// An entry someone else wrote: any spelling of the ARN key, unknown fields, odd values.
fn arb_foreign() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["userarn", "userARN", "UserArn", "USERARN"]),
        prop::sample::select(NAMES.to_vec()),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec!["hand", "{{SessionName}}", "yes"])),
        prop::collection::vec(
            prop::sample::select(vec!["system:masters", "viewers", "on"]),
            0..3,
        ),
        prop::collection::vec(("[a-z]{1,6}", arb_scalar()), 0..3),
    )
        .prop_map(|(key, name, upper, user, groups, extra)| {
            let mut o = serde_json::Map::new();
            o.insert(key.into(), json!(arn(name, upper)));
            if let Some(u) = user {
                o.insert("username".into(), json!(u));
            }
            o.insert("groups".into(), json!(groups));
            for (k, v) in extra {
                o.entry(format!("x{k}")).or_insert(v);
            }
            Value::Object(o)
        })
}

#[derive(Debug, Clone)]
struct Doc {
    users: Vec<Value>,
    owned: Vec<String>,
    json_format: bool,
    /// Comment lines a person added between YAML entries (or at the end): where, and what.
    comments: Vec<(prop::sample::Index, String)>,
}

fn arb_doc() -> impl Strategy<Value = Doc> {
    (
        prop::collection::vec(
            prop_oneof![
                4 => arb_foreign(),
                1 => Just(json!("not-an-entry")),
                1 => Just(json!({"username": "no-arn"})),
            ],
            0..8,
        ),
        prop::collection::vec((prop::sample::select(NAMES.to_vec()), any::<bool>()), 0..5),
        prop::collection::vec(prop::sample::select(NAMES.to_vec()), 0..4),
        any::<bool>(),
        prop::collection::vec(
            (
                any::<prop::sample::Index>(),
                prop::sample::select(vec![
                    "# break-glass: ask #platform",
                    "#- userarn: arn:aws:iam::123456789012:user/alice",
                    "  # indented note",
                    "",
                ]),
            ),
            0..4,
        ),
    )
        .prop_map(
            |(mut users, owned_entries, extra_owned, json_format, comments)| {
                // Owned entries: written by us earlier, maybe hand-edited since (groups changed).
                let mut owned = BTreeSet::new();
                for (name, edited) in owned_entries {
                    let key = arn(name, false);
                    let clash = users.iter().any(|u| {
                        u.as_object().is_some_and(|o| {
                            o.iter().any(|(k, v)| {
                                k.eq_ignore_ascii_case("userarn")
                                    && v.as_str().is_some_and(|s| s.eq_ignore_ascii_case(&key))
                            })
                        })
                    });
                    if clash || !owned.insert(key.clone()) {
                        continue;
                    }
                    let groups = if edited {
                        json!(["viewers"])
                    } else {
                        json!(["system:masters"])
                    };
                    users.push(json!({"userarn": key, "username": name, "groups": groups}));
                }
                // Owned records whose entry was deleted by hand.
                for name in extra_owned {
                    let key = arn(name, false);
                    let present = users.iter().any(|u| {
                        u.as_object().is_some_and(|o| {
                            o.values()
                                .any(|v| v.as_str().is_some_and(|s| s.eq_ignore_ascii_case(&key)))
                        })
                    });
                    if !present {
                        owned.insert(key);
                    }
                }
                Doc {
                    users,
                    owned: owned.into_iter().collect(),
                    json_format,
                    comments: comments
                        .into_iter()
                        .map(|(i, c)| (i, c.to_string()))
                        .collect(),
                }
            },
        )
}

const NODE_ROLES: &str = "- rolearn: arn:aws:iam::123456789012:role/node\n  username: system:node:{{EC2PrivateDNSName}}\n  groups:\n    - system:bootstrappers\n    - system:nodes\n  extra: kept\n";
const ACCOUNTS: &str = "- \"111122223333\"\n";

fn to_configmap(d: &Doc) -> ConfigMap {
    let users = Value::Array(d.users.clone());
    let text = if d.json_format {
        users.to_string()
    } else {
        with_comments(&eks_admin_sync::yaml::to_yaml(&users), &d.comments)
    };
    let mut cm = ConfigMap {
        data: Some(BTreeMap::from([
            ("mapUsers".to_string(), text),
            ("mapRoles".to_string(), NODE_ROLES.to_string()),
            ("mapAccounts".to_string(), ACCOUNTS.to_string()),
            ("somethingElse".to_string(), "opaque: {".to_string()),
        ])),
        ..Default::default()
    };
    cm.metadata.annotations = Some(BTreeMap::from([
        (
            OWNED_ANNOTATION.to_string(),
            serde_json::to_string(&d.owned).unwrap(),
        ),
        ("team".to_string(), "platform".to_string()),
    ]));
    cm
}

/// Inserts comment lines before entries (lines starting `- `) or at the end.
fn with_comments(yaml: &str, comments: &[(prop::sample::Index, String)]) -> String {
    let mut lines: Vec<String> = yaml.lines().map(String::from).collect();
    for (at, c) in comments {
        let slots: Vec<usize> = (0..=lines.len())
            .filter(|&i| i == lines.len() || lines[i].starts_with("- "))
            .collect();
        lines.insert(slots[at.index(slots.len())], c.clone());
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The document's comment lines, in order.
fn comment_lines(cm: &ConfigMap) -> Vec<String> {
    cm.data.as_ref().unwrap()["mapUsers"]
        .lines()
        .filter(|l| l.trim_start().starts_with('#'))
        .map(String::from)
        .collect()
}

fn map_users(cm: &ConfigMap) -> Vec<Value> {
    let text = &cm.data.as_ref().unwrap()["mapUsers"];
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(a)) => a,
        _ => match serde_saphyr::from_str::<Value>(text).unwrap() {
            Value::Array(a) => a,
            Value::Null => vec![],
            other => panic!("mapUsers became {other}"),
        },
    }
}

fn key_of(v: &Value) -> Option<String> {
    v.as_object()?
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("userarn"))
        .map(|(_, v)| v)
        .next_back()?
        .as_str()
        .map(str::to_ascii_lowercase)
}

fn one_round(cm: &ConfigMap, desired: &[Mapping], scope: &Scope) -> (ConfigMap, bool) {
    let doc = AwsAuth::parse(Some(cm)).unwrap();
    let p = plan(doc.current(), doc.owned(), desired, scope);
    let u = doc.render(cm.data.as_ref(), &p).unwrap();
    (updated(Some(cm), &u), !u.is_empty())
}

fn arb_desired() -> impl Strategy<Value = Vec<Mapping>> {
    prop::collection::btree_set(prop::sample::select(NAMES.to_vec()), 0..6).prop_map(|names| {
        names
            .into_iter()
            .map(|n| Mapping {
                arn: arn(n, false),
                username: n.into(),
                groups: vec!["system:masters".into()],
            })
            .collect()
    })
}

fn arb_scope() -> impl Strategy<Value = Scope> {
    prop_oneof![
        Just(Scope::All),
        prop::collection::vec(prop::sample::select(NAMES.to_vec()), 1..3)
            .prop_map(|n| Scope::Users(n.into_iter().map(String::from).collect())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The planner sees the same entries whichever reader took the document (YAML fast path or JSON).
    #[test]
    fn yaml_and_json_read_the_same(doc in arb_doc()) {
        let yaml = to_configmap(&Doc { json_format: false, ..doc.clone() });
        let json = to_configmap(&Doc { json_format: true, ..doc });
        let a = AwsAuth::parse(Some(&yaml)).unwrap();
        let b = AwsAuth::parse(Some(&json)).unwrap();
        prop_assert_eq!(a.current(), b.current());
    }

    #[test]
    fn foreign_entries_survive_and_apply_is_idempotent(doc in arb_doc(), desired in arb_desired(), scope in arb_scope()) {
        let cm = to_configmap(&doc);
        // Desired mappings are always within scope (the handler reads IAM per scope).
        let desired: Vec<Mapping> = desired.into_iter().filter(|m| scope.covers_arn(&m.arn)).collect();
        let (after, _) = one_round(&cm, &desired, &scope);

        // 1. Every key but mapUsers, and every other annotation, is byte-identical.
        let before_data = cm.data.as_ref().unwrap();
        let after_data = after.data.as_ref().unwrap();
        for (k, v) in before_data {
            if k != "mapUsers" {
                prop_assert_eq!(&after_data[k], v);
            }
        }
        prop_assert_eq!(&after.metadata.annotations.as_ref().unwrap()["team"], "platform");

        // 2. Entries we never owned (before or after) are the same values in the same order.
        let owned_after: Vec<String> = serde_json::from_str(&after.metadata.annotations.as_ref().unwrap()[OWNED_ANNOTATION]).unwrap();
        let ours: BTreeSet<String> = doc.owned.iter().chain(owned_after.iter()).map(|a| a.to_ascii_lowercase()).collect();
        let foreign = |users: Vec<Value>| -> Vec<Value> {
            users.into_iter().filter(|u| key_of(u).is_none_or(|k| !ours.contains(&k))).collect()
        };
        prop_assert_eq!(foreign(map_users(&after)), foreign(map_users(&cm)));

        // 3. Owned entries outside the scope are untouched.
        let out_of_scope = |users: Vec<Value>| -> Vec<Value> {
            users.into_iter().filter(|u| {
                key_of(u).is_some_and(|k| doc.owned.iter().any(|o| o.to_ascii_lowercase() == k) && !scope.covers_arn(&k))
            }).collect()
        };
        prop_assert_eq!(out_of_scope(map_users(&after)), out_of_scope(map_users(&cm)));

        // 4. Every desired mapping is in effect unless someone else maps that ARN.
        let users_after = map_users(&after);
        for m in &desired {
            let entries: Vec<&Value> = users_after.iter().filter(|u| key_of(u) == Some(m.key())).collect();
            prop_assert!(!entries.is_empty(), "{} missing", m.arn);
        }

        // 5. Comments between entries survive, in order (YAML in the usual shape is spliced, not re-rendered).
        let before_users = &cm.data.as_ref().unwrap()["mapUsers"];
        if !doc.json_format && eks_admin_sync::fastyaml::parse(before_users).is_some() {
            prop_assert_eq!(comment_lines(&after), comment_lines(&cm));
        }

        // 6. Applying twice equals applying once: the second round writes nothing.
        let (again, wrote) = one_round(&after, &desired, &scope);
        prop_assert!(!wrote, "second round wanted to write");
        prop_assert_eq!(again, after);
    }
}

/// Keeps property 5 honest: a fair share of the generated YAML documents take the fast reader (and so
/// the splice), with comments in them.
#[test]
fn generated_documents_exercise_the_splice() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut spliced, n) = (0, 400);
    for _ in 0..n {
        let doc = arb_doc().new_tree(&mut runner).unwrap().current();
        let cm = to_configmap(&Doc {
            json_format: false,
            ..doc
        });
        let text = &cm.data.as_ref().unwrap()["mapUsers"];
        if text.contains('#') && eks_admin_sync::fastyaml::parse(text).is_some() {
            spliced += 1;
        }
    }
    assert!(
        spliced > n / 10,
        "only {spliced} of {n} took the fast path with comments"
    );
}
