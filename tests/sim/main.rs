//! A model-based simulation of the whole reconciler, stores included, as TigerBeetle's VOPR and
//! FoundationDB's simulation test their systems: seeded random histories of IAM changes, CloudTrail events
//! (lost, repeated, late, from another account), runs in two warm execution environments and fresh
//! processes, faults (throttling, 5xx, a 409 on `aws-auth`, a call that hangs past the cluster's deadline),
//! clock, authentication-mode changes only one environment has seen, configuration typos, expiries and the
//! wake-up, against an in-process IAM, EKS and Kubernetes API server (`fakes`). The product runs its own
//! code for everything but the wire: the reconciler, the guard, both stores, the directory cache, the EKS
//! SDK client and the kube client.
//!
//! After every step the invariants are checked (see `check_run`); at the end, with the faults stopped and
//! the configuration fixed, one full reconcile must converge and the next must write nothing. A failing
//! history is shrunk by proptest and its seed kept in `main.proptest-regressions` beside this file; replay
//! with `cargo test --test sim`. `SIM_CASES=N` sets the number of histories (default 2000).

mod fakes;
mod model;
mod world;

use eks_admin_sync::adapters::aws::{DIRECTORY_TTL, Directory, Eks};
use eks_admin_sync::adapters::kube::KubeClients;
use eks_admin_sync::adapters::wakeup::{self, Want};
use eks_admin_sync::core::audit::AuditRecord;
use eks_admin_sync::core::event::EXPIRY_PAYLOAD;
use eks_admin_sync::core::ports::Lines;
use eks_admin_sync::core::reconcile::{Clock, ReconcileError, Reconciler, Report, Status};
use eks_admin_sync::core::settings::Settings;
use eks_admin_sync::store::Stores;
use eks_admin_sync::store::access_entries::{AccessEntryStore, Marks};
use eks_admin_sync::store::aws_auth::AwsAuthStore;
use eks_admin_sync::store::aws_auth::document::Deployment;
use fakes::{Shared, SimIam, lock};
use model::{Config, Held, Kind, Src, Who, who, who_of_arn};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use world::{ACCOUNT, ADMIN_POLICY, ConfigMap, Entry, Fault, Iam, Role, SSO_PATH, User, World};

const CLUSTERS: [&str; 3] = ["a", "b", "c"];
const USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "zoe"];
const ROLES: [&str; 3] = ["ops", "dev", "nodes"];
const GROUPS: [&str; 3] = ["platform", "break-glass", "other"];
const TAG_VALUES: [&str; 6] = ["true", "a", "b c", "false", "garbage", "TRUE"];
const MAX_REMOVALS: usize = 3;

// ---------------------------------------------------------------- the deployment

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Typo {
    None,
    TagKey,
    SetCase,
    SetName,
    Group,
}

fn config(typo: Typo) -> Config {
    let tag = if typo == Typo::TagKey {
        "eks-cluster-admn"
    } else {
        "eks-cluster-admin"
    };
    let set = match typo {
        Typo::SetCase => "admin",
        Typo::SetName => "Admn",
        _ => "Admin",
    };
    let group = if typo == Typo::Group {
        "platfrom"
    } else {
        "platform"
    };
    Config {
        tag_key: tag.into(),
        expiry_key: format!("{tag}-expires"),
        sets: vec![set.into()],
        groups: vec![group.into(), "break-glass".into()],
        function_role: "fn".into(),
        max_removals: MAX_REMOVALS,
        member_path: "/team/".into(),
    }
}

fn settings(cfg: &Config) -> Settings {
    let sets = cfg.sets.join(" ");
    let groups = cfg.groups.join(" ");
    Settings::from_lookup(|k| {
        Some(match k {
            "CLUSTER_NAMES" => CLUSTERS.join(" "),
            "ADMIN_TAG_KEY" => cfg.tag_key.clone(),
            "ADMIN_PERMISSION_SETS" => sets.clone(),
            "ADMIN_IAM_GROUPS" => groups.clone(),
            "MAX_REMOVALS" => MAX_REMOVALS.to_string(),
            "FUNCTION_ROLE_ARN" => format!("arn:aws:iam::{ACCOUNT}:role/fn"),
            "ADMIN_GROUP_MEMBER_PATH" => cfg.member_path.clone(),
            "EVENT_BUS" => String::new(),
            _ => return None,
        })
    })
    .expect("the simulated settings are valid")
}

/// Audit records as they are written (what CloudWatch would get).
#[derive(Default)]
struct Written(Mutex<Vec<AuditRecord>>);

impl Lines for Written {
    fn audit(&self, r: &AuditRecord) {
        self.0.lock().unwrap().push(r.clone());
    }
    fn metric(&self, _: &Value) {}
}

/// One execution environment: a process with its own caches (the directory of clusters, kube clients).
struct Env {
    rec: Reconciler<SimIam, Stores>,
    written: Arc<Written>,
}

fn env(world: &Shared, cfg: &Config) -> Env {
    let s = settings(cfg);
    let conf = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(world::REGION))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new("AKIDSIM", "secret", None, None, "sim"),
            ),
        )
        .http_client(fakes::eks_http(world.clone()))
        .build();
    let eks = Eks::new(&conf);
    let entries = AccessEntryStore::new(
        eks.client(),
        Marks {
            deployment: s.deployment_id.clone(),
            tag_key: s.tag_key.clone(),
        },
    );
    let directory = Arc::new(Directory::new(eks, DIRECTORY_TTL));
    let w = world.clone();
    let clients = KubeClients::connecting(
        directory.clone(),
        Arc::new(move |cluster: &str, _: &_| fakes::kube_client(w.clone(), cluster.to_string())),
    );
    let aws_auth = AwsAuthStore::new(
        clients,
        Deployment {
            id: s.deployment_id.clone(),
            tag_key: s.tag_key.clone(),
        },
    );
    let store = Stores::new(
        directory,
        aws_auth,
        entries,
        s.access_store,
        s.access_policies.clone(),
    );
    let written = Arc::new(Written::default());
    let rec = Reconciler::new(
        s,
        SimIam {
            world: world.clone(),
        },
        store,
    )
    .with_lines(written.clone());
    Env { rec, written }
}

// ---------------------------------------------------------------- the history

#[derive(Debug, Clone)]
enum Step {
    TagUser {
        user: usize,
        value: usize,
        expiry: usize,
    },
    UntagUser {
        user: usize,
    },
    DeleteUser {
        user: usize,
    },
    CreateUser {
        user: usize,
        team: bool,
    },
    RenameUser {
        user: usize,
        to: usize,
    },
    TagRole {
        role: usize,
        value: usize,
        expiry: usize,
    },
    UntagRole {
        role: usize,
    },
    DeleteRole {
        role: usize,
    },
    CreateRole {
        role: usize,
        team: bool,
    },
    Join {
        user: usize,
        group: usize,
    },
    Leave {
        user: usize,
        group: usize,
    },
    DeleteGroup {
        group: usize,
    },
    CreateGroup {
        group: usize,
    },
    RenameGroup {
        group: usize,
        to: usize,
    },
    /// Identity Center assigns the configured permission set (a role with a new suffix).
    Assign {
        suffix: u8,
        region: bool,
    },
    /// Every assignment removed: Identity Center deletes the set's roles.
    Unassign,
    Deliver {
        env: usize,
    },
    Duplicate {
        env: usize,
        back: usize,
    },
    Late {
        env: usize,
        skip: usize,
    },
    Lose,
    ForeignEvent {
        env: usize,
    },
    Scheduled {
        env: usize,
    },
    Cli,
    DryRun {
        env: usize,
    },
    Force {
        env: usize,
        stale: bool,
    },
    /// EventBridge Scheduler runs the wake-up at this second of its minute (its documented precision).
    WakeUp {
        env: usize,
        second: u8,
    },
    Advance {
        secs: u16,
    },
    ModeChange {
        cluster: usize,
    },
    /// EKS adds a node row for the role (a node group now uses it).
    BecomeNodeRole {
        role: usize,
        cluster: usize,
    },
    Fault {
        kind: usize,
        count: u8,
    },
    Typo {
        typo: usize,
    },
    FixTypo,
}

fn step() -> impl Strategy<Value = Step> {
    let u = 0..USERS.len();
    let r = 0..ROLES.len();
    let g = 0..GROUPS.len();
    let e = 0usize..3;
    prop_oneof![
        6 => (u.clone(), 0..TAG_VALUES.len(), 0usize..5).prop_map(|(user, value, expiry)| Step::TagUser { user, value, expiry }),
        3 => u.clone().prop_map(|user| Step::UntagUser { user }),
        1 => u.clone().prop_map(|user| Step::DeleteUser { user }),
        2 => (u.clone(), any::<bool>()).prop_map(|(user, team)| Step::CreateUser { user, team }),
        1 => (u.clone(), u.clone()).prop_map(|(user, to)| Step::RenameUser { user, to }),
        3 => (r.clone(), 0..TAG_VALUES.len(), 0usize..5).prop_map(|(role, value, expiry)| Step::TagRole { role, value, expiry }),
        2 => r.clone().prop_map(|role| Step::UntagRole { role }),
        1 => r.clone().prop_map(|role| Step::DeleteRole { role }),
        1 => (r.clone(), any::<bool>()).prop_map(|(role, team)| Step::CreateRole { role, team }),
        4 => (u.clone(), g.clone()).prop_map(|(user, group)| Step::Join { user, group }),
        3 => (u.clone(), g.clone()).prop_map(|(user, group)| Step::Leave { user, group }),
        1 => g.clone().prop_map(|group| Step::DeleteGroup { group }),
        1 => g.clone().prop_map(|group| Step::CreateGroup { group }),
        1 => (g.clone(), g.clone()).prop_map(|(group, to)| Step::RenameGroup { group, to }),
        2 => (0u8..3, any::<bool>()).prop_map(|(suffix, region)| Step::Assign { suffix, region }),
        1 => Just(Step::Unassign),
        8 => e.clone().prop_map(|env| Step::Deliver { env }),
        1 => (e.clone(), 0usize..4).prop_map(|(env, back)| Step::Duplicate { env, back }),
        1 => (e.clone(), 1usize..3).prop_map(|(env, skip)| Step::Late { env, skip }),
        2 => Just(Step::Lose),
        1 => e.clone().prop_map(|env| Step::ForeignEvent { env }),
        4 => e.clone().prop_map(|env| Step::Scheduled { env }),
        4 => Just(Step::Cli),
        1 => e.clone().prop_map(|env| Step::DryRun { env }),
        1 => (e.clone(), any::<bool>()).prop_map(|(env, stale)| Step::Force { env, stale }),
        2 => (e.clone(), 0u8..60).prop_map(|(env, second)| Step::WakeUp { env, second }),
        2 => (1u16..200).prop_map(|secs| Step::Advance { secs }),
        3 => (0..CLUSTERS.len()).prop_map(|cluster| Step::ModeChange { cluster }),
        2 => (0usize..2, 0..CLUSTERS.len()).prop_map(|(role, cluster)| Step::BecomeNodeRole { role, cluster }),
        3 => (0usize..FAULTS.len(), 1u8..6).prop_map(|(kind, count)| Step::Fault { kind, count }),
        1 => (1usize..5).prop_map(|typo| Step::Typo { typo }),
        2 => Just(Step::FixTypo),
    ]
}

/// The faults a step can arm: (service, action or `*`, fault).
const FAULTS: [(&str, &str, Fault); 10] = [
    ("iam", "*", Fault::Throttle),
    ("eks", "*", Fault::Throttle),
    ("eks", "*", Fault::ServerError),
    ("eks", "AssociateAccessPolicy", Fault::ServerError),
    ("eks", "DeleteAccessEntry", Fault::ServerError),
    ("eks", "CreateAccessEntry", Fault::Hang),
    ("eks", "*", Fault::Hang),
    ("kube", "PATCH", Fault::Conflict),
    ("kube", "GET", Fault::ServerError),
    ("kube", "PATCH", Fault::Hang),
];

// ---------------------------------------------------------------- the simulation

struct Sim {
    world: Shared,
    typo: Typo,
    envs: Vec<Env>,
    pending: VecDeque<Value>,
    delivered: Vec<Value>,
    now: jiff::Timestamp,
    /// The wake-up: its expression, and whether it has run.
    schedule: Option<(String, bool)>,
    trace: Vec<String>,
    events: u64,
}

fn t0() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_796_000_000).unwrap()
}

fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn aws_auth_seed(with_zoe: bool) -> ConfigMap {
    let mut users = String::new();
    if with_zoe {
        users.push_str(&format!(
            "# people's own rows\n- userarn: arn:aws:iam::{ACCOUNT}:user/zoe\n  username: zoe\n  groups:\n    - system:masters\n"
        ));
    }
    ConfigMap {
        rv: 1,
        data: BTreeMap::from([
            (
                "mapRoles".to_string(),
                format!(
                    "- rolearn: arn:aws:iam::{ACCOUNT}:role/nodes\n  username: system:node:{{{{EC2PrivateDNSName}}}}\n  groups:\n    - system:bootstrappers\n    - system:nodes\n- rolearn: arn:aws:iam::{ACCOUNT}:role/fn\n  username: eks-admin-sync\n  groups:\n    - eks-admin-sync\n"
                ),
            ),
            ("mapUsers".to_string(), users),
            (
                "mapAccounts".to_string(),
                "- \"111122223333\"\n".to_string(),
            ),
        ]),
        annotations: BTreeMap::new(),
    }
}

impl Sim {
    fn new() -> Self {
        let mut w = World::new(&[("a", 0), ("b", 0), ("c", 1)]);
        for (i, name) in USERS.iter().enumerate() {
            let id = w.iam.new_id("AIDA");
            w.iam.users.insert(
                name.to_string(),
                User {
                    id,
                    // bob and carol start under ADMIN_GROUP_MEMBER_PATH (groups grant them), the others at /.
                    path: if i == 1 || i == 2 {
                        "/team/".into()
                    } else {
                        "/".into()
                    },
                    tags: BTreeMap::new(),
                    groups: BTreeSet::new(),
                },
            );
        }
        for (name, path) in [("ops", "/"), ("dev", "/team/"), ("nodes", "/"), ("fn", "/")] {
            let id = w.iam.new_id("AROA");
            w.iam.roles.insert(
                name.to_string(),
                Role {
                    id,
                    path: path.into(),
                    tags: BTreeMap::new(),
                },
            );
        }
        w.iam.groups = GROUPS.iter().map(|g| g.to_string()).collect();
        let nodes = Iam::role_arn("nodes", &w.iam.roles["nodes"]);
        let nodes_id = w.iam.roles["nodes"].id.clone();
        let zoe = Iam::user_arn("zoe", &w.iam.users["zoe"]);
        let zoe_id = w.iam.users["zoe"].id.clone();
        for (name, c) in w.clusters.iter_mut() {
            c.aws_auth = Some(aws_auth_seed(name == "a"));
        }
        let c = w.clusters.get_mut("c").unwrap();
        for (arn, id, kind, user) in [
            (
                &nodes,
                &nodes_id,
                "EC2_LINUX",
                "system:node:{{EC2PrivateDNSName}}",
            ),
            (&zoe, &zoe_id, "STANDARD", "zoe"),
        ] {
            c.entries.insert(
                arn.clone(),
                Entry {
                    principal_arn: arn.clone(),
                    principal_id: id.clone(),
                    kind: kind.into(),
                    username: user.into(),
                    groups: if kind == "STANDARD" {
                        vec!["ops".into()]
                    } else {
                        vec!["system:nodes".into()]
                    },
                    tags: BTreeMap::new(),
                    policies: if kind == "STANDARD" {
                        BTreeMap::from([(
                            ADMIN_POLICY.to_string(),
                            ("cluster".to_string(), vec![]),
                        )])
                    } else {
                        BTreeMap::new()
                    },
                    entry_arn: format!("arn:aws:eks:us-east-1:{ACCOUNT}:access-entry/c/x/{kind}"),
                },
            );
        }
        let world = Arc::new(Mutex::new(w));
        let cfg = config(Typo::None);
        let envs = vec![env(&world, &cfg), env(&world, &cfg)];
        Sim {
            world,
            typo: Typo::None,
            envs,
            pending: VecDeque::new(),
            delivered: Vec::new(),
            now: t0(),
            schedule: None,
            trace: Vec::new(),
            events: 0,
        }
    }

    fn cfg(&self) -> Config {
        config(self.typo)
    }

    fn event(&mut self, name: &str, params: Value) {
        self.events += 1;
        let ev = json!({
            "version": "0", "id": format!("ev-{}", self.events), "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.iam", "account": ACCOUNT, "time": rfc3339(self.now), "region": "us-east-1",
            "resources": [],
            "detail": {"eventVersion": "1.08", "eventSource": "iam.amazonaws.com", "eventName": name,
                       "awsRegion": "us-east-1", "sourceIPAddress": "192.0.2.1",
                       "userIdentity": {"type": "AssumedRole",
                                        "arn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/PlatformAdmins/sim")},
                       "requestParameters": params, "eventID": format!("ct-{}", self.events),
                       "recipientAccountId": ACCOUNT}
        });
        self.pending.push_back(ev);
    }

    fn tags(&self, value: usize, expiry: usize) -> Vec<(String, String)> {
        let cfg = self.cfg();
        let mut t = vec![(cfg.tag_key.clone(), TAG_VALUES[value].to_string())];
        let at = |s: i64| {
            rfc3339(
                self.now
                    .checked_add(jiff::SignedDuration::from_secs(s))
                    .unwrap(),
            )
        };
        match expiry {
            1 => t.push((cfg.expiry_key.clone(), at(45))),
            2 => t.push((cfg.expiry_key.clone(), at(150))),
            3 => t.push((cfg.expiry_key.clone(), at(-5))),
            4 => t.push((cfg.expiry_key, "tomorrow".into())),
            _ => {}
        }
        t
    }

    /// An IAM change, and the CloudTrail event(s) it makes. Changes IAM refuses are skipped.
    fn iam_change(&mut self, s: &Step) {
        let cfg = self.cfg();
        let mut w = lock(&self.world);
        let iam = &mut w.iam;
        let mut events: Vec<(&str, Value)> = Vec::new();
        match s {
            Step::TagUser {
                user,
                value,
                expiry,
            } => {
                let name = USERS[*user];
                drop(w);
                let tags = self.tags(*value, *expiry);
                let mut w = lock(&self.world);
                if let Some(u) = w.iam.users.get_mut(name) {
                    u.tags
                        .retain(|k, _| !k.eq_ignore_ascii_case(&cfg.expiry_key));
                    for (k, v) in &tags {
                        u.tags.insert(k.clone(), v.clone());
                    }
                    events.push(("TagUser", json!({"userName": name})));
                }
                drop(w);
                for (n, p) in events {
                    self.event(n, p);
                }
                return;
            }
            Step::UntagUser { user } => {
                if let Some(u) = iam.users.get_mut(USERS[*user]) {
                    u.tags.clear();
                    events.push(("UntagUser", json!({"userName": USERS[*user]})));
                }
            }
            Step::DeleteUser { user } => {
                let name = USERS[*user];
                if iam.users.remove(name).is_some() {
                    events.push(("DeleteUser", json!({"userName": name})));
                }
            }
            Step::CreateUser { user, team } => {
                let name = USERS[*user];
                if !iam.users.contains_key(name) {
                    let id = iam.new_id("AIDA");
                    let path = if *team { "/team/" } else { "/" };
                    iam.users.insert(
                        name.into(),
                        User {
                            id,
                            path: path.into(),
                            tags: BTreeMap::new(),
                            groups: BTreeSet::new(),
                        },
                    );
                    events.push(("CreateUser", json!({"userName": name, "path": path})));
                }
            }
            Step::RenameUser { user, to } => {
                let (from, to) = (USERS[*user], USERS[*to]);
                if from != to && iam.users.contains_key(from) && !iam.users.contains_key(to) {
                    let u = iam.users.remove(from).unwrap();
                    iam.users.insert(to.into(), u);
                    events.push(("UpdateUser", json!({"userName": from, "newUserName": to})));
                }
            }
            Step::TagRole {
                role,
                value,
                expiry,
            } => {
                let name = ROLES[*role];
                drop(w);
                let tags = self.tags(*value, *expiry);
                let mut w = lock(&self.world);
                if let Some(r) = w.iam.roles.get_mut(name) {
                    r.tags
                        .retain(|k, _| !k.eq_ignore_ascii_case(&cfg.expiry_key));
                    for (k, v) in &tags {
                        r.tags.insert(k.clone(), v.clone());
                    }
                    events.push(("TagRole", json!({"roleName": name})));
                }
                drop(w);
                for (n, p) in events {
                    self.event(n, p);
                }
                return;
            }
            Step::UntagRole { role } => {
                if let Some(r) = iam.roles.get_mut(ROLES[*role]) {
                    r.tags.clear();
                    events.push(("UntagRole", json!({"roleName": ROLES[*role]})));
                }
            }
            Step::DeleteRole { role } => {
                let name = ROLES[*role];
                if iam.roles.remove(name).is_some() {
                    events.push(("DeleteRole", json!({"roleName": name})));
                }
            }
            Step::CreateRole { role, team } => {
                let name = ROLES[*role];
                if !iam.roles.contains_key(name) {
                    let id = iam.new_id("AROA");
                    let path = if *team { "/team/" } else { "/" };
                    iam.roles.insert(
                        name.into(),
                        Role {
                            id,
                            path: path.into(),
                            tags: BTreeMap::new(),
                        },
                    );
                    events.push(("CreateRole", json!({"roleName": name, "path": path})));
                }
            }
            Step::Join { user, group } => {
                let (u, g) = (USERS[*user], GROUPS[*group]);
                if iam.groups.contains(g)
                    && let Some(x) = iam.users.get_mut(u)
                    && x.groups.insert(g.into())
                {
                    events.push(("AddUserToGroup", json!({"userName": u, "groupName": g})));
                }
            }
            Step::Leave { user, group } => {
                let (u, g) = (USERS[*user], GROUPS[*group]);
                if let Some(x) = iam.users.get_mut(u)
                    && x.groups.remove(g)
                {
                    events.push((
                        "RemoveUserFromGroup",
                        json!({"userName": u, "groupName": g}),
                    ));
                }
            }
            Step::DeleteGroup { group } => {
                // IAM refuses to delete a group that has members.
                let g = GROUPS[*group];
                let empty = !iam.users.values().any(|u| u.groups.contains(g));
                if empty && iam.groups.remove(g) {
                    events.push(("DeleteGroup", json!({"groupName": g})));
                }
            }
            Step::CreateGroup { group } => {
                if iam.groups.insert(GROUPS[*group].into()) {
                    events.push(("CreateGroup", json!({"groupName": GROUPS[*group]})));
                }
            }
            Step::RenameGroup { group, to } => {
                let (from, to) = (GROUPS[*group], GROUPS[*to]);
                if from != to && iam.groups.contains(from) && !iam.groups.contains(to) {
                    iam.groups.remove(from);
                    iam.groups.insert(to.into());
                    for u in iam.users.values_mut() {
                        if u.groups.remove(from) {
                            u.groups.insert(to.into());
                        }
                    }
                    events.push((
                        "UpdateGroup",
                        json!({"groupName": from, "newGroupName": to}),
                    ));
                }
            }
            Step::Assign { suffix, region } => {
                let name = format!("AWSReservedSSO_Admin_{:016x}", *suffix as u64 + 0xabc0);
                if !iam.roles.contains_key(&name) {
                    let id = iam.new_id("AROA");
                    let path = if *region {
                        format!("{SSO_PATH}eu-west-1/")
                    } else {
                        SSO_PATH.to_string()
                    };
                    iam.roles.insert(
                        name.clone(),
                        Role {
                            id,
                            path: path.clone(),
                            tags: BTreeMap::new(),
                        },
                    );
                    events.push(("CreateRole", json!({"roleName": name, "path": path})));
                }
            }
            Step::Unassign => {
                let gone: Vec<String> = iam
                    .roles
                    .keys()
                    .filter(|n| n.starts_with("AWSReservedSSO_"))
                    .cloned()
                    .collect();
                for n in gone {
                    iam.roles.remove(&n);
                    events.push(("DeleteRole", json!({"roleName": n})));
                }
            }
            _ => unreachable!("not an IAM change: {s:?}"),
        }
        drop(w);
        for (n, p) in events {
            self.event(n, p);
        }
    }

    /// The principals a run is about: `None` for every principal (a full reconcile).
    fn covered(event: &Value) -> Option<Vec<Who>> {
        let detail = &event["detail"];
        let name = detail["eventName"].as_str()?;
        let p = &detail["requestParameters"];
        match name {
            "DeleteGroup" | "UpdateGroup" => None,
            n if n.ends_with("Role") => Some(vec![who(Kind::Role, p["roleName"].as_str()?)]),
            _ => {
                let mut out = vec![who(Kind::User, p["userName"].as_str()?)];
                if let Some(to) = p["newUserName"].as_str() {
                    out.push(who(Kind::User, to));
                }
                Some(out)
            }
        }
    }

    fn log(&mut self, s: String) {
        self.trace.push(s);
    }
}

/// What a run came to, for the checks.
struct Run {
    result: Result<Report, ReconcileError>,
    written: Vec<AuditRecord>,
    before: BTreeMap<String, (Vec<Held>, Value)>,
    keys_before: BTreeMap<String, Vec<String>>,
    writes_before: usize,
    /// `None`: every principal; `Some`: these.
    covered: Option<Vec<Who>>,
    full: bool,
    forced: bool,
    dry_run: bool,
    foreign_event: bool,
}

fn snapshot(w: &World) -> BTreeMap<String, (Vec<Held>, Value)> {
    w.clusters
        .iter()
        .map(|(n, c)| (n.clone(), (model::ours(c), model::foreign(c))))
        .collect()
}

impl Sim {
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
    }

    /// Runs one invocation in environment `e` (or a fresh process when `e` is out of range).
    fn run(&mut self, rt: &tokio::runtime::Runtime, e: usize, event: Value) -> Run {
        let covered = match event.get("action") {
            Some(_) => None,
            None if event["source"] == "aws.events" => None,
            None => Self::covered(&event),
        };
        let full = covered.is_none();
        let forced = event["force"] == true;
        let dry_run = event["dryRun"] == true;
        let foreign_event = event["account"].as_str().is_some_and(|a| a != ACCOUNT);
        let (before, keys_before, writes_before) = {
            let w = lock(&self.world);
            let keys = w
                .clusters
                .iter()
                .map(|(n, c)| (n.clone(), model::recorded_tag_keys(c)))
                .collect();
            (snapshot(&w), keys, w.writes.len())
        };
        let fresh;
        let env = if e < self.envs.len() {
            &self.envs[e]
        } else {
            fresh = env(&self.world, &self.cfg());
            &fresh
        };
        env.written.0.lock().unwrap().clear();
        let clock = Clock {
            now: std::time::SystemTime::from(self.now),
            lambda_deadline: None,
        };
        let result = rt.block_on(env.rec.handle(&event, clock));
        let written = std::mem::take(&mut *env.written.0.lock().unwrap());
        Run {
            result,
            written,
            before,
            keys_before,
            writes_before,
            covered,
            full,
            forced,
            dry_run,
            foreign_event,
        }
    }

    /// Keeps the wake-up as the function does after a run (not a dry run, not a run that read nothing).
    fn keep_wakeup(&mut self, r: &Run) {
        let report = match &r.result {
            Ok(rep) => rep,
            Err(ReconcileError::Clusters { report, .. }) => report,
            Err(_) => return,
        };
        if report.dry_run || report.ignored.is_some() {
            return;
        }
        // The function sees the expression only; whether it has run, it tells from its time.
        let current = self.schedule.as_ref().map(|(e, _)| e.clone());
        match wakeup::decide(
            report.next_expiry.as_deref(),
            report.full,
            current.as_deref(),
            self.now,
        ) {
            Want::Keep => {}
            Want::None => self.schedule = None,
            Want::At(e) => self.schedule = Some((e, false)),
        }
    }
}

// ---------------------------------------------------------------- the checks

fn report_of(r: &Run) -> Option<&Report> {
    match &r.result {
        Ok(rep) => Some(rep),
        Err(ReconcileError::Clusters { report, .. }) => Some(report),
        Err(_) => None,
    }
}

/// The principals a check is about: those covered, or (full) every principal IAM has or a grant names.
fn subjects(w: &World, r: &Run) -> Vec<Who> {
    if let Some(c) = &r.covered {
        return c.clone();
    }
    let mut all: BTreeSet<Who> = w.iam.users.keys().map(|n| who(Kind::User, n)).collect();
    all.extend(w.iam.roles.keys().map(|n| who(Kind::Role, n)));
    for c in w.clusters.values() {
        all.extend(model::ours(c).into_iter().map(|h| h.who));
    }
    all.into_iter().collect()
}

/// Everything that must hold after a run; `Err` names what did not.
fn check_run(sim: &Sim, r: &Run) -> Result<(), String> {
    let w = lock(&sim.world);
    let cfg = sim.cfg();
    let after = snapshot(&w);
    // Foreign data: unchanged by the function (a foreign write during the run appends its own row).
    for (c, (_, foreign_before)) in &r.before {
        let foreign_after = &after[c].1;
        let injected = w.writes[r.writes_before..]
            .iter()
            .any(|x| x.cluster == *c && x.what == "foreign aws-auth write");
        if !injected && foreign_before != foreign_after {
            return Err(format!(
                "cluster {c}: foreign data changed:\nbefore {foreign_before}\nafter  {foreign_after}"
            ));
        }
        if injected {
            let users = |v: &Value| {
                v["data"]["mapUsers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            };
            let (b, a) = (users(foreign_before), users(foreign_after));
            if a.len() < b.len()
                || a[..b.len()] != b[..]
                || foreign_before["entries"] != foreign_after["entries"]
            {
                return Err(format!(
                    "cluster {c}: foreign rows lost around a foreign write: {b:?} -> {a:?}"
                ));
            }
        }
    }
    // Never-admins never hold a grant of ours, and no run gives one to a role that signs a cluster's nodes
    // in (whatever else happened on the cluster: a failed one included).
    for (c, (held, _)) in &after {
        if let Some(h) = held.iter().find(|h| h.who == who(Kind::Role, "fn")) {
            return Err(format!(
                "cluster {c}: the function's own role holds a grant: {h:?}"
            ));
        }
        let before = &r.before[c].0;
        let cluster = &w.clusters[c];
        for h in held.iter().filter(|h| h.who.0 == Kind::Role) {
            let new = !before.iter().any(|b| b.store == h.store && b.key == h.key);
            if new && model::is_node_role(cluster, &h.who.1) {
                return Err(format!(
                    "cluster {c}: a role that signs its nodes in was granted: {h:?}"
                ));
            }
        }
    }
    let writes = &w.writes[r.writes_before..];
    let ours_written = writes.iter().any(|x| x.what != "foreign aws-auth write");
    let Some(report) = report_of(r) else {
        // An invalid event, a stale force, a failed IAM read: nothing written, nothing recorded.
        if ours_written || !r.written.is_empty() {
            return Err(format!(
                "a run that read nothing wrote {writes:?} / recorded {:?}",
                r.written
            ));
        }
        return Ok(());
    };
    // The records written are the records reported.
    if r.written.len() != report.audit.len() || r.written.iter().any(|x| !report.audit.contains(x))
    {
        return Err("the audit lines written differ from the report's records".into());
    }
    if r.dry_run || r.foreign_event {
        if ours_written || report.audit.iter().any(|a| a.applied) {
            return Err(format!("a dry run or a foreign event wrote {writes:?}"));
        }
        if r.foreign_event && report.ignored.is_none() {
            return Err("an event of another account was not ignored".into());
        }
        return Ok(());
    }
    check_audit(&r.before, &after, report)?;
    check_guard(&w, &cfg, sim.now, r, report)?;
    check_grants(&w, &cfg, sim.now, r, report)?;
    Ok(())
}

/// Every landed write audited, nothing audited that did not land: the change of each store, principal by
/// principal, against the run's applied records.
fn check_audit(
    before: &BTreeMap<String, (Vec<Held>, Value)>,
    after: &BTreeMap<String, (Vec<Held>, Value)>,
    report: &Report,
) -> Result<(), String> {
    for (c, (held_before, _)) in before {
        let held_after = &after[c].0;
        let index = |v: &[Held]| -> BTreeMap<(&'static str, String), Value> {
            v.iter()
                .map(|h| ((h.store, h.key.clone()), h.fingerprint.clone()))
                .collect()
        };
        let (b, a) = (index(held_before), index(held_after));
        let keys: BTreeSet<&(&str, String)> = b.keys().chain(a.keys()).collect();
        let records: Vec<&AuditRecord> = report
            .audit
            .iter()
            .filter(|x| x.cluster == *c && x.applied)
            .collect();
        for key in &keys {
            let acts: Vec<&str> = records
                .iter()
                .filter(|x| x.store == key.0 && x.principal.to_ascii_lowercase() == key.1)
                .map(|x| x.action)
                .collect();
            let ok = match (b.get(*key), a.get(*key)) {
                (None, Some(_)) => acts == ["grant"],
                (Some(_), None) => {
                    acts.len() == 1 && ["revoke", "expire", "migrate"].contains(&acts[0])
                }
                (Some(x), Some(y)) if x != y => {
                    acts == ["update"] || (acts.contains(&"grant") && acts.len() == 2)
                }
                _ => acts.is_empty(),
            };
            if !ok {
                return Err(format!(
                    "cluster {c} {} {}: {:?} -> {:?}, recorded {acts:?}",
                    key.0,
                    key.1,
                    b.get(*key),
                    a.get(*key)
                ));
            }
        }
        for x in &records {
            let key = (x.store, x.principal.to_ascii_lowercase());
            if !keys.contains(&key) {
                return Err(format!(
                    "cluster {c}: recorded {} of {} that did not land",
                    x.action, x.principal
                ));
            }
        }
    }
    Ok(())
}

/// The guard refuses only when the configuration is suspect, and then every removal a suspect source made.
fn check_guard(
    w: &World,
    cfg: &Config,
    now: jiff::Timestamp,
    r: &Run,
    report: &Report,
) -> Result<(), String> {
    for c in &report.clusters {
        let Some(g) = c.guard.as_ref() else { continue };
        if g.forced {
            continue;
        }
        let by_source = g
            .refused
            .iter()
            .filter(|x| {
                matches!(
                    x.rule.name(),
                    "no-tagged-principals" | "source-yields-nobody"
                )
            })
            .count();
        for x in &g.refused {
            let rule = x.rule.name();
            let p = who_of_arn(&x.grant.arn).unwrap_or((Kind::User, String::new()));
            let made = x
                .grant
                .source
                .as_ref()
                .and_then(|s| Src::parse(&s.to_string()));
            let (_, expired) = model::admin(w, cfg, now, &p, &c.cluster);
            let legit = match rule {
                "max-removals" => g.count - by_source > cfg.max_removals,
                "record-tag-key" => r.keys_before[&c.cluster]
                    .iter()
                    .any(|k| !k.eq_ignore_ascii_case(&cfg.tag_key)),
                source_rule => {
                    model::present(&w.iam, &p)
                        && !expired
                        && model::held_by_source(&w.iam, cfg, &p, made.as_ref())
                            == Some(source_rule)
                }
            };
            if !legit {
                return Err(format!(
                    "cluster {}: the guard refused {} under {rule} (source {:?}) though the configuration does not \
                     call for it (suspect: {:?}, in IAM: {}, expired: {expired})",
                    c.cluster,
                    x.grant.arn,
                    made,
                    model::suspect(&w.iam, cfg),
                    model::present(&w.iam, &p)
                ));
            }
        }
    }
    // A removal a suspect source's typo would explain goes only when forced.
    if r.full && !r.forced {
        for x in report.audit.iter().filter(|x| x.applied) {
            if !matches!(x.action, "revoke" | "expire")
                || x.reason
                    .as_deref()
                    .is_some_and(|m| m.contains("another IAM principal"))
            {
                continue;
            }
            let Some(p) = who_of_arn(&x.principal) else {
                continue;
            };
            let made = x.source.as_ref().and_then(|s| Src::parse(&s.to_string()));
            let (_, expired) = model::admin(w, cfg, now, &p, &x.cluster);
            if model::present(&w.iam, &p)
                && !expired
                && let Some(rule) = model::held_by_source(&w.iam, cfg, &p, made.as_ref())
            {
                return Err(format!(
                    "cluster {}: {} removed {} (made by {made:?}) though {rule} should have held it back",
                    x.cluster, x.action, x.principal
                ));
            }
        }
    }
    Ok(())
}

/// After a run that covered a principal and reported `ok` for a cluster: an admin has a working grant there
/// (unless the run said why not), anyone else none that EKS would honour (an entry left for a principal IAM
/// no longer has honours nobody; a full reconcile removes it, which convergence checks with `strict`).
fn check_grants(
    w: &World,
    cfg: &Config,
    now: jiff::Timestamp,
    r: &Run,
    report: &Report,
) -> Result<(), String> {
    check_grants_as(w, cfg, now, r, report, false)
}

fn check_grants_as(
    w: &World,
    cfg: &Config,
    now: jiff::Timestamp,
    r: &Run,
    report: &Report,
    strict: bool,
) -> Result<(), String> {
    let subjects = subjects(w, r);
    for c in report
        .clusters
        .iter()
        .filter(|c| c.status == Status::Ok && !c.dry_run)
    {
        let held = model::ours(&w.clusters[&c.cluster]);
        for p in &subjects {
            let p = p.clone();
            let (admin, _) = model::admin(w, cfg, now, &p, &c.cluster);
            let g = model::grant_of(w, &c.cluster, &held, &p);
            let (working, any) = (g.working, if strict { g.named } else { g.usable });
            let skipped = c
                .skipped
                .iter()
                .any(|s| who_of_arn(&s.arn).as_ref() == Some(&p));
            match admin {
                None if any => {
                    return Err(format!(
                        "cluster {} ({}): {p:?} is no admin, yet a grant of ours remains after an ok run",
                        c.cluster,
                        w.clusters[&c.cluster].mode()
                    ));
                }
                Some(_) if !working && !skipped => {
                    return Err(format!(
                        "cluster {} ({}): {p:?} is an admin, yet has no working grant after an ok run",
                        c.cluster,
                        w.clusters[&c.cluster].mode()
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The wake-up is pending (and will run no earlier than its minute) for the earliest expiry among the grants
/// the run covered.
fn check_wakeup(sim: &Sim, r: &Run) -> Result<(), String> {
    let Some(report) = report_of(r) else {
        return Ok(());
    };
    if report.dry_run || report.ignored.is_some() {
        return Ok(());
    }
    let w = lock(&sim.world);
    let cfg = sim.cfg();
    let mut earliest: Option<jiff::Timestamp> = None;
    let held: BTreeMap<&str, Vec<Held>> = CLUSTERS
        .iter()
        .map(|c| (*c, model::ours(&w.clusters[*c])))
        .collect();
    for p in subjects(&w, r) {
        for c in CLUSTERS {
            if let (Some((Src::Tag(_), Some(e))), _) = model::admin(&w, &cfg, sim.now, &p, c)
                && model::grant_of(&w, c, &held[c], &p).usable
            {
                earliest = Some(earliest.map_or(e, |x| x.min(e)));
            }
        }
    }
    let Some(e) = earliest else { return Ok(()) };
    let due = wakeup::wake_at(e);
    match &sim.schedule {
        Some((expr, false)) if wakeup::time_of(expr).is_some_and(|t| t <= due && t > sim.now) => {
            Ok(())
        }
        other => Err(format!(
            "a grant expires at {e} but the wake-up is {other:?} (due by {due}, now {})",
            sim.now
        )),
    }
}

// ---------------------------------------------------------------- driving a history

impl Sim {
    fn apply(&mut self, rt: &tokio::runtime::Runtime, s: &Step) -> Result<(), String> {
        self.log(format!("{s:?}"));
        let run = match s {
            Step::Deliver { env } => match self.pending.pop_front() {
                Some(ev) => {
                    self.delivered.push(ev.clone());
                    Some(self.run(rt, *env, ev))
                }
                None => None,
            },
            Step::Duplicate { env, back } => {
                let n = self.delivered.len();
                if n == 0 {
                    None
                } else {
                    let ev = self.delivered[n - 1 - (*back).min(n - 1)].clone();
                    Some(self.run(rt, *env, ev))
                }
            }
            Step::Late { env, skip } => {
                if self.pending.len() > *skip {
                    let ev = self.pending.remove(*skip).unwrap();
                    self.delivered.push(ev.clone());
                    Some(self.run(rt, *env, ev))
                } else {
                    None
                }
            }
            Step::Lose => {
                self.pending.pop_front();
                None
            }
            Step::ForeignEvent { env } => {
                let mut ev = self
                    .delivered
                    .last()
                    .cloned()
                    .or_else(|| self.pending.front().cloned());
                if let Some(ev) = ev.as_mut() {
                    ev["account"] = json!("210987654321");
                    ev["detail"]["recipientAccountId"] = json!("210987654321");
                }
                ev.map(|ev| self.run(rt, *env, ev))
            }
            Step::Scheduled { env } => {
                let ev = json!({"version": "0", "id": "sched", "detail-type": "Scheduled Event",
                                "source": "aws.events", "account": ACCOUNT, "time": rfc3339(self.now),
                                "region": "us-east-1", "resources": [], "detail": {}});
                Some(self.run(rt, *env, ev))
            }
            Step::Cli => Some(self.run(rt, usize::MAX, json!({"action": "reconcile"}))),
            Step::DryRun { env } => {
                Some(self.run(rt, *env, json!({"action": "reconcile", "dryRun": true})))
            }
            Step::Force { env, stale } => {
                let at = if *stale {
                    self.now
                        .checked_sub(jiff::SignedDuration::from_secs(3600))
                        .unwrap()
                } else {
                    self.now
                };
                let ev = json!({"action": "reconcile", "force": true, "forceAt": rfc3339(at)});
                let r = self.run(rt, *env, ev);
                if *stale && r.result.is_ok() {
                    return Err("a force an hour old was honoured".into());
                }
                Some(r)
            }
            Step::WakeUp { env, second } => match self.schedule.clone() {
                Some((expr, false)) => {
                    let t =
                        wakeup::time_of(&expr).ok_or("a schedule expression that does not read")?;
                    let start =
                        jiff::Timestamp::from_second(t.as_second().div_euclid(60) * 60).unwrap();
                    let fire = start
                        .checked_add(jiff::SignedDuration::from_secs(i64::from(*second)))
                        .unwrap();
                    self.now = self.now.max(fire);
                    self.schedule = Some((expr, true));
                    let ev: Value = serde_json::from_str(EXPIRY_PAYLOAD).unwrap();
                    Some(self.run(rt, *env, ev))
                }
                _ => None,
            },
            Step::Advance { secs } => {
                self.now = self
                    .now
                    .checked_add(jiff::SignedDuration::from_secs(i64::from(*secs)))
                    .unwrap();
                None
            }
            Step::ModeChange { cluster } => {
                let mut w = lock(&self.world);
                fakes::mode_step(w.clusters.get_mut(CLUSTERS[*cluster]).unwrap());
                None
            }
            Step::BecomeNodeRole { role, cluster } => {
                let mut w = lock(&self.world);
                let name = ROLES[*role];
                if let Some(cm) = w
                    .clusters
                    .get_mut(CLUSTERS[*cluster])
                    .and_then(|c| c.aws_auth.as_mut())
                {
                    let text = cm.data.entry("mapRoles".into()).or_default();
                    if !text.contains(&format!("role/{name}\n  username: system:node")) {
                        text.push_str(&format!(
                            "- rolearn: arn:aws:iam::{ACCOUNT}:role/{name}\n  username: system:node:{{{{EC2PrivateDNSName}}}}\n  groups:\n    - system:bootstrappers\n    - system:nodes\n"
                        ));
                        cm.rv += 1;
                    }
                }
                None
            }
            Step::Fault { kind, count } => {
                let (svc, action, f) = FAULTS[*kind];
                lock(&self.world).faults.armed.push((
                    svc,
                    action.to_string(),
                    f,
                    u32::from(*count),
                ));
                None
            }
            Step::Typo { typo } => {
                self.typo = [
                    Typo::None,
                    Typo::TagKey,
                    Typo::SetCase,
                    Typo::SetName,
                    Typo::Group,
                ][*typo];
                self.redeploy();
                None
            }
            Step::FixTypo => {
                if self.typo != Typo::None {
                    self.typo = Typo::None;
                    self.redeploy();
                }
                None
            }
            iam => {
                self.iam_change(iam);
                None
            }
        };
        let Some(run) = run else { return Ok(()) };
        self.keep_wakeup(&run);
        self.log_outcome(&run);
        check_run(self, &run)?;
        check_wakeup(self, &run)
    }

    fn log_outcome(&mut self, run: &Run) {
        let cluster = |c: &eks_admin_sync::core::reconcile::ClusterReport| {
            let skipped: Vec<String> = c
                .skipped
                .iter()
                .map(|s| format!("{}:{:?}", s.arn, s.kind))
                .collect();
            format!(
                "{} {} {:?} +{:?} -{:?} ~{:?} m{:?} skip{skipped:?}{}",
                c.cluster,
                c.store,
                c.status,
                c.added,
                c.removed,
                c.updated,
                c.migrated,
                c.error
                    .as_deref()
                    .map(|e| format!(" error {e}"))
                    .unwrap_or_default()
            )
        };
        let outcome = match &run.result {
            Ok(rep) => rep
                .clusters
                .iter()
                .map(cluster)
                .collect::<Vec<_>>()
                .join("\n     "),
            Err(ReconcileError::Clusters { report, .. }) => report
                .clusters
                .iter()
                .map(cluster)
                .collect::<Vec<_>>()
                .join("\n     "),
            Err(e) => format!("error {e}"),
        };
        self.log(format!("  -> {outcome}"));
    }

    /// A configuration change is a redeploy: every execution environment starts cold.
    fn redeploy(&mut self) {
        let cfg = self.cfg();
        self.envs = vec![env(&self.world, &cfg), env(&self.world, &cfg)];
    }

    /// With the faults stopped and the configuration right, one full reconcile (forced, if the guard
    /// legitimately refuses) converges, and the next writes nothing.
    fn converge(&mut self, rt: &tokio::runtime::Runtime) -> Result<(), String> {
        lock(&self.world).faults.armed.clear();
        self.typo = Typo::None;
        self.redeploy();
        self.log("converge".into());
        let first = self.run(rt, usize::MAX, json!({"action": "reconcile"}));
        self.log_outcome(&first);
        check_run(self, &first)?;
        let guarded = report_of(&first)
            .is_some_and(|r| r.clusters.iter().any(|c| c.status == Status::Guarded));
        let run = if guarded {
            let ev = json!({"action": "reconcile", "force": true, "forceAt": rfc3339(self.now)});
            let r = self.run(rt, usize::MAX, ev);
            self.log_outcome(&r);
            check_run(self, &r)?;
            r
        } else {
            first
        };
        match &run.result {
            Ok(rep) if rep.clusters.iter().all(|c| c.status == Status::Ok) => {
                let w = lock(&self.world);
                check_grants_as(&w, &self.cfg(), self.now, &run, rep, true)?;
            }
            Ok(rep) => return Err(format!("did not converge: {:?}", rep.clusters)),
            Err(e) => return Err(format!("did not converge: {e}")),
        }
        let writes = lock(&self.world).writes.len();
        let again = self.run(rt, usize::MAX, json!({"action": "reconcile"}));
        self.log_outcome(&again);
        check_run(self, &again)?;
        let after = lock(&self.world).writes.len();
        let rep = report_of(&again).ok_or("the second run failed")?;
        let changed = rep.clusters.iter().any(|c| {
            !(c.added.is_empty()
                && c.removed.is_empty()
                && c.updated.is_empty()
                && c.migrated.is_empty())
        });
        if after != writes || changed {
            return Err(format!(
                "the run after convergence wrote again: {:?}",
                &lock(&self.world).writes[writes..]
            ));
        }
        Ok(())
    }
}

fn simulate(steps: &[Step]) -> Result<(), String> {
    let rt = Sim::runtime();
    let mut sim = Sim::new();
    let result = steps
        .iter()
        .try_for_each(|s| sim.apply(&rt, s))
        .and_then(|()| sim.converge(&rt));
    result.map_err(|e| format!("{e}\n--- history ---\n{}", sim.trace.join("\n")))
}

fn cases() -> u32 {
    std::env::var("SIM_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 4096,
        // Failing histories are kept beside this file (tests/sim/main.proptest-regressions) and replayed first.
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource(
            "proptest-regressions"
        ))),
        .. ProptestConfig::default()
    })]

    /// Seeded random histories: every invariant after every step, convergence at the end.
    #[test]
    fn histories_keep_every_promise(steps in proptest::collection::vec(step(), 1..40)) {
        if let Err(e) = simulate(&steps) {
            return Err(TestCaseError::fail(e));
        }
    }
}

#[test]
fn a_quiet_history_converges() {
    // The simplest history: tag, deliver, untag, deliver. (A smoke test of the simulation itself.)
    let steps = [
        Step::TagUser {
            user: 0,
            value: 0,
            expiry: 0,
        },
        Step::Deliver { env: 0 },
        Step::UntagUser { user: 0 },
        Step::Deliver { env: 1 },
    ];
    simulate(&steps).unwrap();
}

/// Found by the simulation: our row and, added since by EKS, the role's node row; the record names the ARN,
/// so the node row read as "ours with the mark lost" and neither was touched.
#[test]
fn a_role_that_became_a_node_role_loses_our_row_beside_its_node_row() {
    let steps = [
        Step::TagRole {
            role: 1,
            value: 5,
            expiry: 0,
        },
        Step::Scheduled { env: 0 },
        Step::BecomeNodeRole {
            role: 1,
            cluster: 0,
        },
    ];
    if let Err(e) = simulate(&steps) {
        panic!("{e}");
    }
}
