//! What the core needs from the outside, as traits the adapters and stores implement. Nothing here does I/O.

use crate::core::audit::AuditRecord;
use crate::core::grants::Principal;
use crate::core::guard::Guarded;
use crate::core::plan::{Change, ClusterState, Plan};
use std::future::Future;
use std::sync::{Mutex, PoisonError};

/// A failed IAM read. Never taken as "no users": nothing is written after one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("IAM {op} failed: {message}")]
pub struct IamError {
    pub op: &'static str,
    pub message: String,
}

/// Reads IAM users and roles. A failed read is an error, never an empty list.
pub trait IamSource: Sync {
    /// One user with its ARN, id and tags (and its group names when `groups`: one more call);
    /// `Ok(None)` only when IAM says the user does not exist.
    fn get_user(
        &self,
        name: &str,
        groups: bool,
    ) -> impl Future<Output = Result<Option<Principal>, IamError>> + Send;
    /// One role with its ARN (path included), id and tags; `Ok(None)` only when IAM says it does not exist.
    fn get_role(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Principal>, IamError>> + Send;
    /// Every user (with tags and group names) and every role (with tags and path), and with `groups`
    /// every IAM group's name (so that a group that exists with no member is told from one IAM does not
    /// have), in as few calls as IAM allows.
    fn list_principals(
        &self,
        groups: bool,
    ) -> impl Future<Output = Result<Account, IamError>> + Send;
}

/// What a bulk read of IAM found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    pub principals: Vec<Principal>,
    /// Every IAM group's name, when asked for.
    pub groups: Vec<String>,
}

/// A plan with the guard's verdict on it: what a store is asked to apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decided {
    pub plan: Plan,
    pub guard: Option<Guarded>,
}

/// What applying a plan came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The plan that was applied last (a store re-plans after a concurrent write).
    pub decided: Decided,
    /// Read → plan → write rounds it took (more than 1: a concurrent write was retried).
    pub attempts: u32,
}

/// The changes that reached a store, as they landed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LandedChanges {
    /// Changes of the cluster's own store.
    pub changes: Vec<Change>,
    /// Retired `aws-auth` mappings (on a cluster access entries serve).
    pub retired: Vec<Change>,
}

impl LandedChanges {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.retired.is_empty()
    }
}

/// Told of each change the moment it lands: whether it is a retired `aws-auth` mapping, and what the store
/// has to say of it (a grant that landed incomplete).
pub type OnLanding = Box<dyn Fn(&Change, bool, Option<&str>) + Send + Sync>;

/// Where a store tells, call by call, what it wrote. Whatever fails after a write, or if the cluster's
/// deadline drops the store's work half way, what landed is known and audited: the reconcile writes each
/// change's audit record the moment the store reports it here.
#[derive(Default)]
pub struct Landed {
    changes: Mutex<LandedChanges>,
    on_landing: Option<OnLanding>,
}

impl std::fmt::Debug for Landed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.with(|l| f.debug_tuple("Landed").field(l).finish())
    }
}

impl Landed {
    /// A record of landed changes that also tells `on_landing` of each.
    pub fn notifying(on_landing: OnLanding) -> Self {
        Landed {
            changes: Mutex::default(),
            on_landing: Some(on_landing),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut LandedChanges) -> T) -> T {
        // A panic while holding the lock cannot leave a half-pushed change: the data stays usable.
        f(&mut self.changes.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A change of the cluster's store landed.
    pub fn change(&self, c: Change) {
        if let Some(tell) = &self.on_landing {
            tell(&c, false, None);
        }
        self.with(|l| l.changes.push(c));
    }

    /// A change landed, but not as planned (the store says how): audited with the note as its reason.
    pub fn change_noted(&self, c: Change, note: &str) {
        if let Some(tell) = &self.on_landing {
            tell(&c, false, Some(note));
        }
        self.with(|l| l.changes.push(c));
    }

    /// A retired `aws-auth` mapping's removal landed.
    pub fn retired(&self, c: Change) {
        if let Some(tell) = &self.on_landing {
            tell(&c, true, None);
        }
        self.with(|l| l.retired.push(c));
    }

    /// Whether a change for this ARN landed (any case).
    pub fn has(&self, arn: &str) -> bool {
        self.with(|l| {
            l.changes
                .iter()
                .any(|c| c.grant().arn.eq_ignore_ascii_case(arn))
        })
    }

    /// How many changes landed so far.
    pub fn count(&self) -> usize {
        self.with(|l| l.changes.len() + l.retired.len())
    }

    pub fn take(&self) -> LandedChanges {
        self.with(std::mem::take)
    }
}

/// Where audit records and metric lines go the moment they are made (stdout in Lambda, where CloudWatch
/// reads them; stderr for the CLI): before any optional call (the event bus, the wake-up), so a slow or
/// unreachable service can never cost a record of a write that landed.
pub trait Lines: Send + Sync {
    fn audit(&self, record: &AuditRecord);
    fn metric(&self, line: &serde_json::Value);
}

/// Lines that go nowhere (tests; the report still carries every record).
pub struct NoLines;

impl Lines for NoLines {
    fn audit(&self, _: &AuditRecord) {}
    fn metric(&self, _: &serde_json::Value) {}
}

/// What a store must read on a cluster. `aws-auth` reads its one document whatever this says; access
/// entries read only the principals a scoped run is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// A full reconcile: everything (and the cluster's authentication mode afresh).
    pub full: bool,
    /// A scoped run: the ARNs IAM gave for its users (tagged or not).
    pub arns: Vec<String>,
    /// A scoped run: users and roles IAM no longer knows (deleted or renamed), and every name of an
    /// `UpdateUser` event (a path change moves the ARN): found by name among the store's entries.
    pub unresolved: Vec<crate::core::event::Named>,
}

/// Where a cluster's grants live (`aws-auth`, access entries). Each store keeps its own optimistic
/// concurrency: when its write finds the state changed since `read`, it reads again and asks `replan` for
/// a new decision on the new state — it never writes a plan made on an old state.
pub trait Store: Sync {
    /// What `read` hands to `apply` (the version read, the parsed document, …).
    type Snapshot: Send;
    type Error: std::fmt::Display + Send;

    /// The store serving `cluster`, for reports and audit records (as of its last read).
    fn name(&self, cluster: &str) -> &'static str;

    fn read(
        &self,
        cluster: &str,
        target: &Target,
    ) -> impl Future<Output = Result<(ClusterState, Self::Snapshot), Self::Error>> + Send;

    /// Applies `decided`, telling `landed` of every change as it reaches the store.
    fn apply(
        &self,
        cluster: &str,
        snapshot: Self::Snapshot,
        decided: Decided,
        replan: &(dyn Fn(&ClusterState) -> Decided + Sync),
        landed: &Landed,
    ) -> impl Future<Output = Result<Applied, Self::Error>> + Send;
}
