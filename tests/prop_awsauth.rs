//! Property tests of the `aws-auth` store over random documents. The foreign part of each document is
//! written here, independently of the product's emitter, in the styles people and tools write (quoted keys,
//! flow lists, 2- and 4-space list indents, trailing comments, templated usernames, unknown fields, IAM
//! user names with `@ . + = ,`), and the test itself knows which entries are foreign: the generator never
//! gives them this deployment's mark. Properties: foreign entries come out with the same values in the
//! same order, other keys are untouched, comments survive wherever the text took the splice, every grant
//! is in effect, every owned entry not granted is gone, and applying twice equals applying once.
//!
//! `PROPTEST_CASES=10000 cargo test --test prop_awsauth` runs the figure goal of 10 000 cases a property.

use eks_admin_sync::core::grants::Grant;
use eks_admin_sync::core::plan::{Scope, plan};
use eks_admin_sync::store::aws_auth::document::{
    AwsAuth, Deployment, MARK_FIELD, OWNED_ANNOTATION, updated,
};
use eks_admin_sync::store::aws_auth::fastyaml;
use k8s_openapi::api::core::v1::ConfigMap;
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// IAM user names, some with every punctuation mark IAM allows.
const NAMES: [&str; 8] = [
    "alice",
    "bob",
    "carol",
    "jane@corp.com",
    "a.b+c=d",
    "x,y",
    "first.last@example.org",
    "ops-bot_2",
];
const GROUPS: [&str; 3] = ["system:masters", "viewers", "dev-team"];
const COMMENTS: [&str; 5] = [
    "# break-glass: ask #platform",
    "  # indented note",
    "",
    "#- userarn: arn:aws:iam::123456789012:user/old",
    "# who: jane@corp.com, until 2027",
];

fn arn(name: &str) -> String {
    format!("arn:aws:iam::123456789012:user/{name}")
}

/// A YAML scalar as a person would write it: plain when it can be, double-quoted otherwise.
fn scalar(s: &str) -> String {
    let plain = s.starts_with(|c: char| c.is_ascii_alphabetic())
        && !s.contains(": ")
        && !s.contains(" #")
        && !matches!(s, "yes" | "no" | "on" | "off" | "true" | "false" | "null");
    if plain {
        s.to_string()
    } else {
        format!("\"{s}\"")
    }
}

/// One foreign entry: how it is written, and what a YAML reader reads from it.
#[derive(Debug, Clone)]
struct Foreign {
    key: &'static str,
    quoted_key: bool,
    name: &'static str,
    upper: bool,
    username: Option<&'static str>,
    groups: Vec<&'static str>,
    groups_style: u8,
    note: bool,
    trailing_comment: bool,
}

impl Foreign {
    fn arn(&self) -> String {
        let a = arn(self.name);
        if self.upper {
            a.to_uppercase().replace("ARN:AWS:IAM", "arn:aws:iam")
        } else {
            a
        }
    }

    fn text(&self) -> String {
        let k = |key: &str| {
            if self.quoted_key {
                format!("\"{key}\"")
            } else {
                key.to_string()
            }
        };
        let mut t = format!("- {}: {}", k(self.key), scalar(&self.arn()));
        if self.trailing_comment {
            t.push_str("  # added by hand");
        }
        t.push('\n');
        if let Some(u) = self.username {
            let v = if u.contains("{{") {
                format!("'{u}'")
            } else {
                scalar(u)
            };
            t.push_str(&format!("  {}: {v}\n", k("username")));
        }
        match self.groups_style {
            0 | 1 if !self.groups.is_empty() => {
                let indent = if self.groups_style == 0 { "  " } else { "    " };
                t.push_str(&format!("  {}:\n", k("groups")));
                for g in &self.groups {
                    t.push_str(&format!("{indent}- {}\n", scalar(g)));
                }
            }
            _ => {
                let items: Vec<String> = self.groups.iter().map(|g| scalar(g)).collect();
                t.push_str(&format!("  {}: [{}]\n", k("groups"), items.join(", ")));
            }
        }
        if self.note {
            t.push_str(&format!("  {}: kept by jane\n", k("note")));
        }
        t
    }

    fn value(&self) -> Value {
        let mut o = serde_json::Map::new();
        o.insert(self.key.into(), json!(self.arn()));
        if let Some(u) = self.username {
            o.insert("username".into(), json!(u));
        }
        o.insert("groups".into(), json!(self.groups));
        if self.note {
            o.insert("note".into(), json!("kept by jane"));
        }
        Value::Object(o)
    }
}

fn arb_foreign() -> impl Strategy<Value = Foreign> {
    (
        prop::sample::select(vec!["userarn", "userARN", "UserArn"]),
        any::<bool>(),
        prop::sample::select(NAMES.to_vec()),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec![
            "hand",
            "{{SessionName}}",
            "jane@corp.com",
        ])),
        prop::collection::vec(prop::sample::select(GROUPS.to_vec()), 0..3),
        0u8..3,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(
                key,
                quoted_key,
                name,
                upper,
                username,
                groups,
                groups_style,
                note,
                trailing_comment,
            )| {
                Foreign {
                    key,
                    quoted_key,
                    name,
                    upper,
                    username,
                    groups,
                    groups_style,
                    note,
                    trailing_comment,
                }
            },
        )
}

/// One item of the generated `mapUsers`.
#[derive(Debug, Clone)]
enum Item {
    Foreign(Foreign),
    /// An entry this deployment wrote earlier, maybe hand-edited since (groups changed).
    Ours {
        name: &'static str,
        edited: bool,
    },
    Comment(&'static str),
}

#[derive(Debug, Clone)]
struct Doc {
    items: Vec<Item>,
    /// Principals the record names without an entry (deleted by hand).
    record_only: Vec<&'static str>,
    json_format: bool,
}

fn arb_doc() -> impl Strategy<Value = Doc> {
    (
        prop::collection::vec(
            prop_oneof![
                4 => arb_foreign().prop_map(Item::Foreign),
                3 => (prop::sample::select(NAMES.to_vec()), any::<bool>())
                    .prop_map(|(name, edited)| Item::Ours { name, edited }),
                2 => prop::sample::select(COMMENTS.to_vec()).prop_map(Item::Comment),
            ],
            0..10,
        ),
        prop::collection::vec(prop::sample::select(NAMES.to_vec()), 0..3),
        any::<bool>(),
    )
        .prop_map(|(items, record_only, json_format)| {
            // Each principal is either ours (one entry) or someone else's: the generator keeps them apart,
            // so that which entries are foreign is known here and not taken from the product.
            // Foreign entries may repeat a name among themselves; ours appear once; the first use of a
            // name decides which side it is on.
            let (mut ours, mut foreign) = (BTreeSet::new(), BTreeSet::new());
            let items: Vec<Item> = items
                .into_iter()
                .filter(|i| match i {
                    Item::Foreign(f) => {
                        let keep = !ours.contains(f.name);
                        if keep {
                            foreign.insert(f.name);
                        }
                        keep
                    }
                    Item::Ours { name, .. } => !foreign.contains(name) && ours.insert(*name),
                    Item::Comment(_) => true,
                })
                .collect();
            let record_only = record_only
                .into_iter()
                .filter(|n| !ours.contains(n) && !foreign.contains(n))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            Doc {
                items,
                record_only,
                json_format,
            }
        })
}

impl Doc {
    fn ours(&self) -> Vec<&'static str> {
        self.items
            .iter()
            .filter_map(|i| match i {
                Item::Ours { name, .. } => Some(*name),
                _ => None,
            })
            .collect()
    }

    fn foreign_values(&self) -> Vec<Value> {
        self.items
            .iter()
            .filter_map(|i| match i {
                Item::Foreign(f) => Some(f.value()),
                _ => None,
            })
            .collect()
    }

    fn ours_value(name: &str, edited: bool) -> Value {
        let groups = if edited { "viewers" } else { "system:masters" };
        json!({"userarn": arn(name), "username": name, "groups": [groups], MARK_FIELD: "default"})
    }

    fn map_users(&self) -> String {
        if self.json_format {
            let values: Vec<Value> = self
                .items
                .iter()
                .filter_map(|i| match i {
                    Item::Foreign(f) => Some(f.value()),
                    Item::Ours { name, edited } => Some(Self::ours_value(name, *edited)),
                    Item::Comment(_) => None,
                })
                .collect();
            return Value::Array(values).to_string();
        }
        let mut t = String::new();
        for i in &self.items {
            match i {
                Item::Foreign(f) => t.push_str(&f.text()),
                Item::Ours { name, edited } => {
                    let groups = if *edited { "viewers" } else { "system:masters" };
                    t.push_str(&format!(
                        "- userarn: {}\n  username: {}\n  groups:\n    - {groups}\n  {MARK_FIELD}: default\n",
                        scalar(&arn(name)),
                        scalar(name)
                    ));
                }
                Item::Comment(c) => {
                    t.push_str(c);
                    t.push('\n');
                }
            }
        }
        t
    }

    fn configmap(&self) -> ConfigMap {
        let recorded: Vec<String> = self
            .ours()
            .into_iter()
            .chain(self.record_only.iter().copied())
            .map(arn)
            .collect();
        let mut cm = ConfigMap {
            data: Some(BTreeMap::from([
                ("mapUsers".to_string(), self.map_users()),
                ("mapRoles".to_string(), NODE_ROLES.to_string()),
                ("mapAccounts".to_string(), ACCOUNTS.to_string()),
                ("somethingElse".to_string(), "opaque: {".to_string()),
            ])),
            ..Default::default()
        };
        cm.metadata.annotations = Some(BTreeMap::from([
            (
                OWNED_ANNOTATION.to_string(),
                json!({"v": 2, "tagKey": "eks-cluster-admin", "arns": recorded}).to_string(),
            ),
            ("team".to_string(), "platform".to_string()),
        ]));
        cm
    }
}

const NODE_ROLES: &str = "- rolearn: arn:aws:iam::123456789012:role/node\n  username: system:node:{{EC2PrivateDNSName}}\n  groups:\n    - system:bootstrappers\n    - system:nodes\n  extra: kept\n";
const ACCOUNTS: &str = "- \"111122223333\"\n";

fn me() -> Deployment {
    Deployment {
        id: "default".into(),
        tag_key: "eks-cluster-admin".into(),
    }
}

fn comment_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.trim_start().starts_with('#'))
        .collect()
}

fn parse_users(cm: &ConfigMap) -> Vec<Value> {
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

/// Entries that do not carry this deployment's mark: by construction, exactly the foreign ones.
fn unmarked(users: Vec<Value>) -> Vec<Value> {
    users
        .into_iter()
        .filter(|u| u.get(MARK_FIELD) != Some(&json!("default")))
        .collect()
}

fn arn_of(v: &Value) -> Option<String> {
    v.as_object()?
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("userarn"))
        .map(|(_, v)| v)
        .next_back()?
        .as_str()
        .map(str::to_ascii_lowercase)
}

fn one_round(cm: &ConfigMap, desired: &[Grant], scope: &Scope) -> (ConfigMap, bool) {
    let doc = AwsAuth::parse(Some(cm), &me()).unwrap();
    let p = plan(doc.state(), desired, scope);
    let u = doc.render(cm.data.as_ref(), &p).unwrap();
    (updated(Some(cm), &u, OWNED_ANNOTATION), !u.is_empty())
}

fn arb_desired() -> impl Strategy<Value = Vec<Grant>> {
    prop::collection::btree_set(prop::sample::select(NAMES.to_vec()), 0..6).prop_map(|names| {
        names
            .into_iter()
            .map(|n| Grant {
                arn: arn(n),
                username: n.into(),
                groups: vec!["system:masters".into()],
                id: None,
                policies: vec![],
                ..Default::default()
            })
            .collect()
    })
}

fn arb_scope() -> impl Strategy<Value = Scope> {
    prop_oneof![
        Just(Scope::All),
        prop::collection::vec(prop::sample::select(NAMES.to_vec()), 1..3)
            .prop_map(|n| Scope::users(&n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512)
    ))]

    /// The planner sees the same entries whichever reader took the document (YAML or JSON).
    #[test]
    fn yaml_and_json_read_the_same(doc in arb_doc()) {
        let yaml = Doc { json_format: false, ..doc.clone() }.configmap();
        let json = Doc { json_format: true, ..doc }.configmap();
        let a = AwsAuth::parse(Some(&yaml), &me()).unwrap();
        let b = AwsAuth::parse(Some(&json), &me()).unwrap();
        prop_assert_eq!(a.state(), b.state());
    }

    #[test]
    fn foreign_entries_survive_and_apply_is_idempotent(doc in arb_doc(), desired in arb_desired(), scope in arb_scope()) {
        let cm = doc.configmap();
        // The generated text reads as the generator meant it.
        let before = parse_users(&cm);
        prop_assert_eq!(unmarked(before.clone()), doc.foreign_values());
        // Grants are always within scope (the reconcile reads IAM per scope).
        let desired: Vec<Grant> = desired.into_iter().filter(|g| scope.covers_arn(&g.arn)).collect();
        let (after, _) = one_round(&cm, &desired, &scope);

        // 1. Every key but mapUsers, and every other annotation, is byte-identical.
        let (before_data, after_data) = (cm.data.as_ref().unwrap(), after.data.as_ref().unwrap());
        for (k, v) in before_data {
            if k != "mapUsers" {
                prop_assert_eq!(&after_data[k], v);
            }
        }
        prop_assert_eq!(&after.metadata.annotations.as_ref().unwrap()["team"], "platform");

        // 2. Foreign entries: the same values, in the same order.
        let users_after = parse_users(&after);
        prop_assert_eq!(unmarked(users_after.clone()), doc.foreign_values());

        // 3. Every grant is in effect (by our entry, or by someone else's that we leave alone).
        for g in &desired {
            let key = g.arn.to_ascii_lowercase();
            prop_assert!(users_after.iter().any(|u| arn_of(u) == Some(key.clone())), "{} missing", g.arn);
        }

        // 4. Every entry of ours in scope and not granted is gone; ours out of scope are untouched.
        let granted: BTreeSet<String> = desired.iter().map(|g| g.arn.to_ascii_lowercase()).collect();
        for name in doc.ours() {
            let key = arn(name).to_ascii_lowercase();
            let present = users_after.iter().any(|u| arn_of(u) == Some(key.clone()) && u.get(MARK_FIELD).is_some());
            if scope.covers_arn(&key) {
                prop_assert_eq!(present, granted.contains(&key), "{}", name);
            } else {
                let b: Vec<&Value> = before.iter().filter(|u| arn_of(u) == Some(key.clone())).collect();
                let a: Vec<&Value> = users_after.iter().filter(|u| arn_of(u) == Some(key.clone())).collect();
                prop_assert_eq!(a, b);
            }
        }

        // 5. Comments survive, in order, wherever the text took the splice.
        let text_before = &before_data["mapUsers"];
        if !doc.json_format && fastyaml::parse(text_before).is_some() {
            prop_assert_eq!(comment_lines(&after_data["mapUsers"]), comment_lines(text_before));
        }

        // 6. Applying twice equals applying once: the second round writes nothing.
        let (again, wrote) = one_round(&after, &desired, &scope);
        prop_assert!(!wrote, "second round wanted to write");
        prop_assert_eq!(again, after);
    }
}

/// Keeps property 5 honest: most generated YAML documents take the splice, with comments, and many of
/// those hold user names with `@`, `,` or `+`.
#[test]
fn generated_documents_exercise_the_splice() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut spliced, mut punctuated, n) = (0, 0, 400);
    for _ in 0..n {
        let doc = arb_doc().new_tree(&mut runner).unwrap().current();
        let text = Doc {
            json_format: false,
            ..doc
        }
        .map_users();
        if text.contains('#') && fastyaml::parse(&text).is_some() {
            spliced += 1;
            if text.contains('@') && text.contains(',') {
                punctuated += 1;
            }
        }
    }
    assert!(
        spliced > n / 3,
        "only {spliced} of {n} took the splice with comments"
    );
    assert!(
        punctuated > n / 20,
        "only {punctuated} spliced documents hold names with '@' and ','"
    );
}
