//! The simulated account and clusters: IAM, EKS (modes and access entries), each cluster's `aws-auth`, the
//! faults armed for the next calls, and a log of every write. One `World` behind a mutex is what the fake
//! services answer from and what the checks read.
//!
//! The rules the fakes follow are EKS's and Kubernetes' as documented (and as `tests/stack/` emulates them):
//! - access-entry calls on a `CONFIG_MAP` cluster: 400 `InvalidRequestException`;
//! - an entry is bound to the unique id of the principal it was made for (a principal re-created under the
//!   same ARN is not honoured by the old entry); a principal IAM does not have: 400
//!   `InvalidParameterException` "invalid principal"; an existing entry: 409 `ResourceInUseException`;
//!   `system:` groups and reserved usernames refused; policies only on `STANDARD` entries;
//! - mode changes only towards `API`, one step at a time;
//! - `aws-auth` writes are merge patches checked against `resourceVersion` (409 on a stale one).

use std::collections::{BTreeMap, BTreeSet};

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
pub const ADMIN_POLICY: &str = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy";
pub const SSO_PATH: &str = "/aws-reserved/sso.amazonaws.com/";
pub const MODES: [&str; 3] = ["CONFIG_MAP", "API_AND_CONFIG_MAP", "API"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub path: String,
    pub tags: BTreeMap<String, String>,
    pub groups: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub id: String,
    pub path: String,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Iam {
    pub users: BTreeMap<String, User>,
    pub roles: BTreeMap<String, Role>,
    pub groups: BTreeSet<String>,
    next_id: u64,
}

impl Iam {
    pub fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{:016}", self.next_id)
    }

    pub fn user_arn(name: &str, u: &User) -> String {
        format!("arn:aws:iam::{ACCOUNT}:user{}{name}", u.path)
    }

    pub fn role_arn(name: &str, r: &Role) -> String {
        format!("arn:aws:iam::{ACCOUNT}:role{}{name}", r.path)
    }

    /// The unique id of the principal an ARN names exactly (as EKS resolves `principalArn`).
    pub fn id_of_arn(&self, arn: &str) -> Option<(&'static str, String)> {
        for (n, u) in &self.users {
            if Self::user_arn(n, u) == arn {
                return Some(("user", u.id.clone()));
            }
        }
        for (n, r) in &self.roles {
            if Self::role_arn(n, r) == arn {
                return Some(("role", r.id.clone()));
            }
        }
        None
    }
}

/// An access entry as EKS keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub principal_arn: String,
    /// The unique id of the principal it was made for.
    pub principal_id: String,
    pub kind: String,
    pub username: String,
    pub groups: Vec<String>,
    pub tags: BTreeMap<String, String>,
    /// Policy ARN → (scope type, namespaces).
    pub policies: BTreeMap<String, (String, Vec<String>)>,
    pub entry_arn: String,
}

/// `kube-system/aws-auth` as the API server holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMap {
    pub rv: u64,
    pub data: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub mode: usize,
    pub entries: BTreeMap<String, Entry>,
    pub aws_auth: Option<ConfigMap>,
}

impl Cluster {
    pub fn mode(&self) -> &'static str {
        MODES[self.mode]
    }
}

/// What the next calls of a service answer instead of their result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `ThrottlingException` (EKS), `Throttling` (IAM), 429 (Kubernetes): the SDK retries; armed for more
    /// calls than it retries, the call fails.
    Throttle,
    /// 500 `ServerException` / `InternalFailure` / 500 from the API server.
    ServerError,
    /// No answer: the call hangs past the cluster's deadline (a deadline cut half way).
    Hang,
    /// Kubernetes only: someone else writes `aws-auth` (a foreign row changes) just before our patch, so
    /// the patch meets a stale `resourceVersion` (409).
    Conflict,
}

#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// (service `iam`/`eks`/`kube`, the action or `*`, fault, calls left).
    pub armed: Vec<(&'static str, String, Fault, u32)>,
}

impl Faults {
    /// The fault the next call of `service:action` meets, if any (counting it down).
    pub fn take(&mut self, service: &str, action: &str) -> Option<Fault> {
        let i = self
            .armed
            .iter()
            .position(|(s, a, _, n)| *s == service && (a == "*" || a == action) && *n > 0)?;
        let slot = &mut self.armed[i];
        slot.3 -= 1;
        let f = slot.2;
        if slot.3 == 0 {
            self.armed.remove(i);
        }
        Some(f)
    }
}

/// One write that reached a store (EKS or an API server), in order: what the checks compare the audit
/// trail with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub cluster: String,
    pub what: String,
}

#[derive(Debug, Clone)]
pub struct World {
    pub iam: Iam,
    pub clusters: BTreeMap<String, Cluster>,
    pub faults: Faults,
    pub writes: Vec<Write>,
    /// Calls answered, per `service:action` (how much a history cost).
    pub calls: BTreeMap<String, u64>,
}

impl World {
    pub fn new(clusters: &[(&str, usize)]) -> Self {
        World {
            iam: Iam::default(),
            clusters: clusters
                .iter()
                .map(|(n, m)| {
                    (
                        n.to_string(),
                        Cluster {
                            mode: *m,
                            entries: BTreeMap::new(),
                            aws_auth: None,
                        },
                    )
                })
                .collect(),
            faults: Faults::default(),
            writes: Vec::new(),
            calls: BTreeMap::new(),
        }
    }

    pub fn count(&mut self, label: String) {
        *self.calls.entry(label).or_default() += 1;
    }
}
