//! (a cluster's current state, its grants, the scope) → plan. Pure and store-neutral: a store turns what it
//! holds into a [`ClusterState`] (entries, each with the owner the store worked out) and applies the
//! [`Plan`] back in its own format. Plans speak of principals and grants, never of a store's rows.

use crate::core::event::Named;
use crate::core::grants::{
    ArnKey, Grant, PrincipalKind, Source, aws_auth_arn, principal_of_arn, role_name_of_arn,
};
use crate::core::settings::AccessPolicy;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Whose an entry in the store is, as the store worked it out from its own ownership marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// This deployment's. `marked: false` means it is ours by an ownership record from before entries
    /// carried marks; the next write of it adds the mark.
    Us { marked: bool },
    /// Written by people, other tools or another deployment (or taken over by a person): never changed.
    Foreign,
    /// Our ownership record names the principal, but the entry does not carry our mark: a person rewrote
    /// it, or a tool dropped the mark. Never changed by us; reported so that a person decides.
    Unclear,
}

/// One entry as it is in the store today.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentEntry {
    /// The ARN as written (any case); `None` when the entry has no usable ARN (it can match nothing).
    pub arn: Option<String>,
    pub username: Option<String>,
    pub groups: Vec<String>,
    /// The IAM user id the entry was granted to, when the store recorded one.
    pub id: Option<String>,
    pub owner: Owner,
    /// The entry's access policies, when the store read them (access entries on a full reconcile);
    /// `None`: not read, taken to be as granted (`aws-auth` has none).
    pub policies: Option<Vec<AccessPolicy>>,
    /// Who else the entry names as its owner (another deployment's mark), for the report.
    pub held_by: Option<String>,
    /// The source the grant was made by, as the store recorded it beside its marks; `None` when the entry
    /// does not say (written before grants recorded their source, or someone else's).
    pub source: Option<Source>,
    /// The grant's levels as the store recorded them (`eks-admin-sync-levels`, see
    /// [`crate::core::grants::levels_record`]); `None` when the entry does not say.
    pub levels_record: Option<String>,
}

/// What form a store's grants take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GrantForm {
    /// Kubernetes groups, as `ADMIN_GROUPS` says (`system:` groups included).
    #[default]
    Groups,
    /// Access policies (admin comes from them), with groups that are not `system:` and a username that is
    /// not reserved.
    AccessPolicies,
}

/// What a store holds for one cluster, as the planner needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterState {
    /// Entries in the store's order.
    pub entries: Vec<CurrentEntry>,
    /// Principal ARNs our ownership record names (some may have no entry any more).
    pub recorded: Vec<String>,
    /// The admin tag key the ownership record was written under, when the record says.
    pub record_tag_key: Option<String>,
    /// The form of grant the store holds (a neutral description: the core does not know the store).
    pub form: GrantForm,
    /// On a cluster in `API_AND_CONFIG_MAP` mode served by access entries: its `aws-auth`, where this
    /// deployment's mappings are retired (migrated once the principal's entry is right, revoked otherwise).
    pub legacy: Option<Box<ClusterState>>,
    /// Names of the roles the cluster's nodes sign in with (a node row in `mapRoles`, an `EC2_LINUX`,
    /// `EC2_WINDOWS`, `FARGATE_LINUX`, `HYBRID_LINUX` or `EC2` entry): never made admins.
    pub node_roles: Vec<String>,
    /// The cluster's node rows could not be read (its `aws-auth`, on a cluster migrating to access
    /// entries): no role is granted, since any might sign its nodes in.
    pub node_rows_unknown: bool,
}

impl ClusterState {
    /// Whether anything here is ours (an entry or a record).
    pub fn owns_anything(&self) -> bool {
        !self.recorded.is_empty()
            || self
                .entries
                .iter()
                .any(|e| matches!(e.owner, Owner::Us { .. }))
    }
}

/// Which principals a run may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every owned entry and every grant.
    All,
    /// Only owned entries and grants of these IAM users and roles (names case-insensitive, as IAM).
    Named(Vec<Named>),
}

impl Scope {
    /// A scope of these user names.
    pub fn users(names: &[&str]) -> Self {
        Scope::Named(names.iter().map(|n| Named::user(n)).collect())
    }

    pub fn covers_arn(&self, arn: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Named(named) => principal_of_arn(arn).is_some_and(|(kind, name)| {
                named
                    .iter()
                    .any(|n| n.kind == kind && n.name.eq_ignore_ascii_case(name))
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
// An update holds two grants, the others one: a plan holds a handful of changes per principal at most, and
// boxing would put an allocation in every update for no measurable gain.
#[allow(clippy::large_enum_variant)]
pub enum Change {
    /// Give a principal its grant (a new entry).
    Add(Grant),
    /// Bring an owned entry back to its grant (drift, a new template, or adding our mark).
    Update { from: Grant, to: Grant },
    /// Take an owned entry away.
    Remove(Grant),
}

impl Change {
    /// The grant the change is about (the new one for an update).
    pub fn grant(&self) -> &Grant {
        match self {
            Change::Add(g) | Change::Remove(g) => g,
            Change::Update { to, .. } => to,
        }
    }
}

/// Why a principal was left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipKind {
    /// Someone else's entry maps this principal.
    Foreign,
    /// More than one entry maps this principal.
    Duplicate,
    /// Our record names it but the entry lacks our mark.
    Unclear,
    /// The role signs the cluster's nodes in: never an admin.
    NodeRole,
    /// A role, on a cluster whose node rows could not be read: not granted there until they can be.
    NodeRowsUnread,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Skip {
    pub arn: String,
    pub kind: SkipKind,
    /// The entry as it is (when there is exactly one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<Grant>,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Changes in a stable order (by ARN key).
    pub changes: Vec<Change>,
    /// ARNs whose grant is already right.
    pub unchanged: Vec<String>,
    pub skipped: Vec<Skip>,
    /// The principals owned after the plan is applied (exact ARNs, sorted by key).
    pub owned_after: Vec<String>,
    /// Principals whose ARN is now held by another IAM user than the one granted (deleted and
    /// re-created, or renamed onto): their entry is revoked and the new holder decided afresh.
    pub replaced: Vec<Replaced>,
    /// Write nothing at all on this cluster (set by the guard).
    pub hold: bool,
    /// On a migrating cluster: what happens to this deployment's `aws-auth` mappings.
    pub retire: Option<Box<Retirement>>,
}

/// This deployment's `aws-auth` mappings on a cluster that access entries now serve. Written only after
/// the access entries were applied and the migrated ones confirmed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retirement {
    /// The `aws-auth` plan: removals only, with the ownership record as it should be after them.
    pub plan: Plan,
    /// ARNs whose removal is a move: the principal's access entry is (or is being made) right.
    pub migrated: Vec<String>,
    /// For each move: the `aws-auth` ARN and the entry's ARN (a role's entry keeps its path).
    pub entry_arns: Vec<(String, String)>,
}

impl Retirement {
    /// The ARN of the access entry a migrated `aws-auth` mapping moves to.
    pub fn entry_arn<'a>(&'a self, aws_auth_arn: &'a str) -> &'a str {
        self.entry_arns
            .iter()
            .find(|(a, _)| a == aws_auth_arn)
            .map_or(aws_auth_arn, |(_, e)| e.as_str())
    }

    /// Removals that take a principal's access away (not moves).
    pub fn revocations(&self) -> impl Iterator<Item = &Grant> {
        self.plan.changes.iter().filter_map(|c| match c {
            Change::Remove(g) if !self.migrated.contains(&g.arn) => Some(g),
            _ => None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Replaced {
    pub arn: String,
    pub old_id: String,
    pub new_id: String,
}

impl Plan {
    pub fn removals(&self) -> usize {
        self.changes
            .iter()
            .filter(|c| matches!(c, Change::Remove(_)))
            .count()
    }

    /// Whether the removal of `arn` is half of a replacement: the principal behind the ARN was deleted
    /// and re-created (or renamed onto), so the old identity no longer exists and the new one is granted in
    /// the same plan. Applied together with its add, and not a removal for the guard's cap.
    pub fn is_replacement(&self, arn: &str) -> bool {
        self.replaced
            .iter()
            .any(|r| r.arn.eq_ignore_ascii_case(arn))
    }

    /// Removals that take access away: this store's (replacements are not), plus retired `aws-auth`
    /// mappings that are not moves.
    pub fn revocations(&self) -> usize {
        let own = self
            .changes
            .iter()
            .filter(|c| matches!(c, Change::Remove(g) if !self.is_replacement(&g.arn)))
            .count();
        own + self.retire.as_ref().map_or(0, |r| r.revocations().count())
    }
}

/// The grant an entry holds today (entries reach the planner only through their ARN key, so they have one).
fn grant_of(e: &CurrentEntry) -> Grant {
    let arn = e.arn.as_deref().unwrap_or_default();
    Grant {
        kind: PrincipalKind::of_arn(arn).unwrap_or_default(),
        arn: e.arn.clone().unwrap_or_default(),
        username: e.username.clone().unwrap_or_default(),
        groups: e.groups.clone(),
        id: e.id.clone(),
        policies: e.policies.clone().unwrap_or_default(),
        source: e.source.clone(),
        levels_record: e.levels_record.clone(),
        ..Default::default()
    }
}

/// The same policies, whatever their order.
fn same_policies(have: &[AccessPolicy], want: &[AccessPolicy]) -> bool {
    have.len() == want.len() && want.iter().all(|p| have.contains(p))
}

/// Whether `e` is exactly `g` and carries our mark (ARN spelling included: we write what IAM says; the
/// user id once IAM told it).
fn is_exactly(e: &CurrentEntry, g: &Grant) -> bool {
    e.owner == Owner::Us { marked: true }
        && e.arn.as_deref() == Some(g.arn.as_str())
        && e.username.as_deref().unwrap_or_default() == g.username
        && e.groups == g.groups
        && (g.id.is_none() || e.id == g.id)
        && (g.source.is_none() || e.source == g.source)
        && (g.levels_record.is_none() || e.levels_record == g.levels_record)
        && e.policies
            .as_deref()
            .is_none_or(|have| same_policies(have, &g.policies))
}

const UNCLEAR: &str = "only one of this deployment's two ownership records is on this principal's entry \
     (aws-auth: the record annotation names it but the entry lacks the mark; access entries: the mark tag or \
     the mark group is missing): rewritten by hand, or a tool dropped one. Left as it is: hand it back by \
     restoring the missing record, or take it over by removing the other one too (README, \"Taking an entry over\")";

/// Every entry of one principal (ARN key), in the store's order.
struct Mapped<'a> {
    entries: Vec<&'a CurrentEntry>,
}

impl<'a> Mapped<'a> {
    fn one(&self) -> Option<&'a CurrentEntry> {
        match self.entries.as_slice() {
            [e] => Some(e),
            _ => None,
        }
    }

    /// This deployment's entry among several, when exactly one is ours and none is unclear (the others are
    /// someone else's, a node row among them): the only one a removal may take.
    fn ours_among_many(&self) -> Option<&'a CurrentEntry> {
        if self.entries.iter().any(|e| e.owner == Owner::Unclear) {
            return None;
        }
        let mut ours = self
            .entries
            .iter()
            .filter(|e| matches!(e.owner, Owner::Us { .. }));
        match (ours.next(), ours.next()) {
            (Some(e), None) => Some(e),
            _ => None,
        }
    }
}

const NODE_ROLE: &str = "the cluster's nodes sign in with this role (a node entry or a node row in mapRoles): \
     never made an admin, whatever it carries";

const NODE_ROWS_UNREAD: &str = "this cluster's aws-auth could not be read, so whether this role signs its nodes \
     in is not known (a STANDARD entry would take precedence over a node row there and lock the nodes out): no \
     role is granted on it until aws-auth can be read";

/// The planner's lookups over one cluster's state.
struct Lookup<'a> {
    by_key: HashMap<ArnKey<'a>, Mapped<'a>>,
    /// Everything we own or once recorded, keyed case-insensitively (the same principal to EKS).
    ours: BTreeMap<ArnKey<'a>, &'a str>,
    node_roles: HashSet<String>,
    /// Whether the cluster's node rows could not be read (its `aws-auth`, on a migrating cluster).
    node_rows_unknown: bool,
}

impl<'a> Lookup<'a> {
    fn new(state: &'a ClusterState) -> Self {
        let mut by_key: HashMap<ArnKey, Mapped> = HashMap::with_capacity(state.entries.len());
        for e in &state.entries {
            if let Some(a) = &e.arn {
                by_key
                    .entry(ArnKey(a))
                    .or_insert_with(|| Mapped {
                        entries: Vec::new(),
                    })
                    .entries
                    .push(e);
            }
        }
        let mut ours: BTreeMap<ArnKey, &str> = state
            .recorded
            .iter()
            .map(|a| (ArnKey(a), a.as_str()))
            .collect();
        // An unclear entry carries one of our records: it is ours to report, never to change.
        for e in &state.entries {
            if let (Owner::Us { .. } | Owner::Unclear, Some(a)) = (e.owner, &e.arn) {
                ours.insert(ArnKey(a), a);
            }
        }
        let node_roles = state
            .node_roles
            .iter()
            .chain(state.legacy.iter().flat_map(|l| &l.node_roles))
            .map(|n| n.to_ascii_lowercase())
            .collect();
        Lookup {
            by_key,
            ours,
            node_roles,
            node_rows_unknown: state.node_rows_unknown,
        }
    }

    fn is_node_role(&self, g: &Grant) -> bool {
        g.kind == PrincipalKind::Role
            && role_name_of_arn(&g.arn)
                .is_some_and(|n| self.node_roles.contains(&n.to_ascii_lowercase()))
    }
}

fn skip(arn: &str, kind: SkipKind, current: Option<Grant>, reason: String) -> Skip {
    Skip {
        arn: arn.to_string(),
        kind,
        current,
        reason,
    }
}

/// Plans one cluster. `desired` must hold only grants inside `scope` (the caller reads IAM per scope).
pub fn plan(state: &ClusterState, desired: &[Grant], scope: &Scope) -> Plan {
    let look = Lookup::new(state);
    let desired_by_key: BTreeMap<ArnKey, &Grant> =
        desired.iter().map(|g| (ArnKey(&g.arn), g)).collect();
    let mut p = Plan::default();
    let mut owned_after: BTreeMap<ArnKey, &str> = BTreeMap::new();
    for (key, want) in &desired_by_key {
        plan_granted(&look, key, want, &mut p, &mut owned_after);
    }
    for (key, arn) in &look.ours {
        if desired_by_key.contains_key(key) {
            continue;
        }
        if !scope.covers_arn(arn) {
            owned_after.insert(*key, arn);
            continue;
        }
        plan_revoked(&look, key, arn, &mut p, &mut owned_after);
    }
    p.changes
        .sort_by(|a, b| ArnKey(&a.grant().arn).cmp(&ArnKey(&b.grant().arn)));
    p.owned_after = owned_after.into_values().map(str::to_string).collect();
    p
}

/// The change (or skip) for a principal IAM says should have its grant.
fn plan_granted<'a>(
    look: &Lookup<'a>,
    key: &ArnKey<'a>,
    want: &'a Grant,
    p: &mut Plan,
    owned_after: &mut BTreeMap<ArnKey<'a>, &'a str>,
) {
    let mapped = look.by_key.get(key);
    if look.is_node_role(want) {
        // A role that signs nodes in is never an admin. A grant of ours from before it became one goes
        // (the node row or entry is someone else's and stays).
        let ours = mapped.and_then(|m| m.one().or_else(|| m.ours_among_many()));
        let mut reason = NODE_ROLE.to_string();
        if let Some(e) = ours.filter(|e| matches!(e.owner, Owner::Us { .. })) {
            p.changes.push(Change::Remove(grant_of(e)));
            reason.push_str("; this deployment's grant, made before, is removed");
        }
        p.skipped
            .push(skip(&want.arn, SkipKind::NodeRole, None, reason));
        return;
    }
    let Some(mapped) = mapped else {
        if want.kind == PrincipalKind::Role && look.node_rows_unknown {
            p.skipped.push(skip(
                &want.arn,
                SkipKind::NodeRowsUnread,
                None,
                NODE_ROWS_UNREAD.into(),
            ));
            return;
        }
        p.changes.push(Change::Add(want.clone()));
        owned_after.insert(*key, &want.arn);
        return;
    };
    let Some(one) = mapped.one() else {
        p.skipped.push(skip(
            &want.arn,
            SkipKind::Duplicate,
            None,
            format!(
                "{} entries map this principal; none is changed, remove the extra ones by hand",
                mapped.entries.len()
            ),
        ));
        if let Some(a) = look.ours.get(key) {
            owned_after.insert(*key, a);
        }
        return;
    };
    match one.owner {
        Owner::Us { .. } => {
            if let (Some(old), Some(new)) = (&one.id, &want.id)
                && old != new
            {
                // Another IAM principal now holds the ARN: the old grant goes, the new holder (an admin,
                // or it would not be desired) is granted afresh.
                p.changes.push(Change::Remove(grant_of(one)));
                p.changes.push(Change::Add(want.clone()));
                p.replaced.push(Replaced {
                    arn: want.arn.clone(),
                    old_id: old.clone(),
                    new_id: new.clone(),
                });
            } else if is_exactly(one, want) {
                p.unchanged.push(want.arn.clone());
            } else {
                p.changes.push(Change::Update {
                    from: grant_of(one),
                    to: want.clone(),
                });
            }
            owned_after.insert(*key, &want.arn);
        }
        Owner::Foreign => p.skipped.push(skip(
            &want.arn,
            SkipKind::Foreign,
            Some(grant_of(one)),
            match &one.held_by {
                Some(other) => format!(
                    "already granted by an entry of {other} (a principal has one entry, so two deployments \
                     cannot both grant it); left as it is"
                ),
                None => "already mapped by an entry this deployment does not own; left as it is".into(),
            },
        )),
        Owner::Unclear => {
            p.skipped.push(skip(
                &want.arn,
                SkipKind::Unclear,
                Some(grant_of(one)),
                UNCLEAR.into(),
            ));
            owned_after.insert(*key, look.ours.get(key).copied().unwrap_or(&want.arn));
        }
    }
}

/// The change (or skip) for a principal we own or recorded that should no longer have its grant.
fn plan_revoked<'a>(
    look: &Lookup<'a>,
    key: &ArnKey<'a>,
    arn: &'a str,
    p: &mut Plan,
    owned_after: &mut BTreeMap<ArnKey<'a>, &'a str>,
) {
    // Entry already gone (removed by hand): just forget it.
    let Some(mapped) = look.by_key.get(key) else {
        return;
    };
    let Some(one) = mapped.one() else {
        // Several entries map the principal. When exactly one is ours, it goes and the others (a person's,
        // a node row) stay; otherwise a person must decide which one counts.
        if let Some(e) = mapped.ours_among_many() {
            p.changes.push(Change::Remove(grant_of(e)));
            return;
        }
        p.skipped.push(skip(
            arn,
            SkipKind::Duplicate,
            None,
            format!(
                "{} entries map this principal; not removing any, remove them by hand",
                mapped.entries.len()
            ),
        ));
        owned_after.insert(*key, arn);
        return;
    };
    match one.owner {
        Owner::Us { .. } => p.changes.push(Change::Remove(grant_of(one))),
        // Taken over by a person (or another deployment): forget it.
        Owner::Foreign => {}
        Owner::Unclear => {
            p.skipped.push(skip(
                arn,
                SkipKind::Unclear,
                Some(grant_of(one)),
                format!("should be revoked, but {UNCLEAR}"),
            ));
            owned_after.insert(*key, arn);
        }
    }
}

/// What happens to this deployment's `aws-auth` mappings on a cluster served by access entries (mode
/// `API_AND_CONFIG_MAP`, where `aws-auth` still counts when a principal has no entry). An owned mapping in
/// scope is removed: as a move when `entries` makes the principal's access entry right, as a revocation
/// when the principal is not granted at all. A granted principal whose entry is not ours (skipped) keeps
/// its mapping until it is. Foreign mappings are never touched.
pub fn retire(
    legacy: &ClusterState,
    entries: &Plan,
    desired: &[Grant],
    scope: &Scope,
) -> Retirement {
    // `aws-auth` holds a role's ARN without its path, an entry with it: compare them as `aws-auth` does.
    let right: HashMap<String, &str> = entries
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::Add(g) | Change::Update { to: g, .. } => Some(g.arn.as_str()),
            Change::Remove(_) => None,
        })
        .chain(entries.unchanged.iter().map(String::as_str))
        .map(|a| (aws_auth_arn(a).to_ascii_lowercase(), a))
        .collect();
    // A node role is never granted: its mapping of ours is revoked, not kept for an entry that never comes.
    let node_role = |arn: &str| {
        entries
            .skipped
            .iter()
            .any(|s| s.kind == SkipKind::NodeRole && s.arn.eq_ignore_ascii_case(arn))
    };
    let granted: HashSet<String> = desired
        .iter()
        .filter(|g| !node_role(&g.arn))
        .map(|g| aws_auth_arn(&g.arn).to_ascii_lowercase())
        .collect();
    let mut p = plan(legacy, &[], scope);
    let mut migrated = Vec::new();
    let mut entry_arns = Vec::new();
    let mut kept = Vec::new();
    p.changes.retain(|c| {
        let arn = &c.grant().arn;
        let key = arn.to_ascii_lowercase();
        if let Some(entry) = right.get(&key) {
            migrated.push(arn.clone());
            entry_arns.push((arn.clone(), entry.to_string()));
            true
        } else if granted.contains(&key) {
            kept.push(arn.clone());
            false
        } else {
            true
        }
    });
    p.owned_after.extend(kept);
    p.owned_after.sort_by(|a, b| ArnKey(a).cmp(&ArnKey(b)));
    Retirement {
        plan: p,
        migrated,
        entry_arns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "arn:aws:iam::123456789012:user/alice";
    const B: &str = "arn:aws:iam::123456789012:user/bob";
    const C: &str = "arn:aws:iam::123456789012:user/team/carol";
    const MASTERS: &[&str] = &["system:masters"];
    const OURS: Owner = Owner::Us { marked: true };

    fn g(arn: &str, user: &str) -> Grant {
        Grant {
            arn: arn.into(),
            username: user.into(),
            groups: vec!["system:masters".into()],
            id: None,
            policies: vec![],
            ..Default::default()
        }
    }
    fn e(arn: &str, user: &str, groups: &[&str], owner: Owner) -> CurrentEntry {
        CurrentEntry {
            arn: Some(arn.into()),
            username: Some(user.into()),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            owner,
            id: None,
            policies: None,
            held_by: None,
            source: None,
            levels_record: None,
        }
    }
    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }
    fn state(entries: Vec<CurrentEntry>, recorded: &[&str]) -> ClusterState {
        ClusterState {
            entries,
            recorded: s(recorded),
            ..Default::default()
        }
    }

    struct Case {
        name: &'static str,
        state: ClusterState,
        desired: Vec<Grant>,
        scope: Scope,
        changes: Vec<Change>,
        unchanged: Vec<String>,
        skipped: Vec<SkipKind>,
        owned_after: Vec<String>,
    }

    #[test]
    fn table() {
        let cases = vec![
            Case {
                name: "add new admin",
                state: state(vec![], &[]),
                desired: vec![g(A, "alice")],
                scope: Scope::All,
                changes: vec![Change::Add(g(A, "alice"))],
                unchanged: vec![],
                skipped: vec![],
                owned_after: s(&[A]),
            },
            Case {
                name: "unchanged owned",
                state: state(vec![e(A, "alice", MASTERS, OURS)], &[A]),
                desired: vec![g(A, "alice")],
                scope: Scope::All,
                changes: vec![],
                unchanged: s(&[A]),
                skipped: vec![],
                owned_after: s(&[A]),
            },
            Case {
                name: "ours by the old record only: rewritten to carry the mark",
                state: state(
                    vec![e(A, "alice", MASTERS, Owner::Us { marked: false })],
                    &[A],
                ),
                desired: vec![g(A, "alice")],
                scope: Scope::All,
                changes: vec![Change::Update {
                    from: g(A, "alice"),
                    to: g(A, "alice"),
                }],
                unchanged: vec![],
                skipped: vec![],
                owned_after: s(&[A]),
            },
            Case {
                name: "hand-edited groups repaired",
                state: state(vec![e(A, "alice", &["viewers"], OURS)], &[A]),
                desired: vec![g(A, "alice")],
                scope: Scope::All,
                changes: vec![Change::Update {
                    from: Grant {
                        arn: A.into(),
                        username: "alice".into(),
                        groups: s(&["viewers"]),
                        id: None,
                        policies: vec![],
                        ..Default::default()
                    },
                    to: g(A, "alice"),
                }],
                unchanged: vec![],
                skipped: vec![],
                owned_after: s(&[A]),
            },
            Case {
                name: "stale owned removed, foreign kept",
                state: state(
                    vec![
                        e(A, "alice", MASTERS, OURS),
                        e(B, "bob", MASTERS, Owner::Foreign),
                    ],
                    &[A],
                ),
                desired: vec![],
                scope: Scope::All,
                changes: vec![Change::Remove(g(A, "alice"))],
                unchanged: vec![],
                skipped: vec![],
                owned_after: vec![],
            },
            Case {
                name: "marked entry is ours even when the record was lost",
                state: state(vec![e(A, "alice", MASTERS, OURS)], &[]),
                desired: vec![],
                scope: Scope::All,
                changes: vec![Change::Remove(g(A, "alice"))],
                unchanged: vec![],
                skipped: vec![],
                owned_after: vec![],
            },
            Case {
                name: "foreign mapping of a desired ARN (any case) is skipped, not taken over",
                state: state(
                    vec![e(
                        &A.replace("alice", "ALICE"),
                        "hand",
                        &["x"],
                        Owner::Foreign,
                    )],
                    &[],
                ),
                desired: vec![g(A, "alice")],
                scope: Scope::All,
                changes: vec![],
                unchanged: vec![],
                skipped: vec![SkipKind::Foreign],
                owned_after: vec![],
            },
            Case {
                name: "entry taken over by a person: forgotten, never removed",
                state: state(vec![e(A, "alice", MASTERS, Owner::Foreign)], &[A]),
                desired: vec![],
                scope: Scope::All,
                changes: vec![],
                unchanged: vec![],
                skipped: vec![],
                owned_after: vec![],
            },
            Case {
                name: "recorded but unmarked entry is not revoked and stays recorded",
                state: state(vec![e(A, "alice", MASTERS, Owner::Unclear)], &[A]),
                desired: vec![],
                scope: Scope::All,
                changes: vec![],
                unchanged: vec![],
                skipped: vec![SkipKind::Unclear],
                owned_after: s(&[A]),
            },
            Case {
                name: "unclear entry without a record (an access entry that lost one mark) is reported, not forgotten",
                state: state(vec![e(A, "alice", &[], Owner::Unclear)], &[]),
                desired: vec![],
                scope: Scope::users(&["alice"]),
                changes: vec![],
                unchanged: vec![],
                skipped: vec![SkipKind::Unclear],
                owned_after: s(&[A]),
            },
            Case {
                name: "recorded but unmarked entry is not rewritten even when desired",
                state: state(vec![e(A, "hand", &["viewers"], Owner::Unclear)], &[A]),
                desired: vec![g(A, "alice")],
                scope: Scope::All,
                changes: vec![],
                unchanged: vec![],
                skipped: vec![SkipKind::Unclear],
                owned_after: s(&[A]),
            },
            Case {
                name: "owned entry deleted by hand is restored",
                state: state(vec![], &[A]),
                desired: vec![g(A, "alice")],
                scope: Scope::All,
                changes: vec![Change::Add(g(A, "alice"))],
                unchanged: vec![],
                skipped: vec![],
                owned_after: s(&[A]),
            },
            Case {
                name: "owned record without entry and not desired is forgotten",
                state: state(vec![], &[A]),
                desired: vec![],
                scope: Scope::All,
                changes: vec![],
                unchanged: vec![],
                skipped: vec![],
                owned_after: vec![],
            },
            Case {
                name: "user scope leaves other owned entries alone",
                state: state(
                    vec![e(A, "alice", MASTERS, OURS), e(B, "bob", MASTERS, OURS)],
                    &[A, B],
                ),
                desired: vec![],
                scope: Scope::users(&["BOB"]),
                changes: vec![Change::Remove(g(B, "bob"))],
                unchanged: vec![],
                skipped: vec![],
                owned_after: s(&[A]),
            },
            Case {
                name: "path change: old ARN removed, new added (scope by name)",
                state: state(
                    vec![e(
                        "arn:aws:iam::123456789012:user/carol",
                        "carol",
                        MASTERS,
                        OURS,
                    )],
                    &["arn:aws:iam::123456789012:user/carol"],
                ),
                desired: vec![g(C, "carol")],
                scope: Scope::users(&["carol"]),
                changes: vec![
                    Change::Remove(g("arn:aws:iam::123456789012:user/carol", "carol")),
                    Change::Add(g(C, "carol")),
                ],
                unchanged: vec![],
                skipped: vec![],
                owned_after: s(&[C]),
            },
            Case {
                name: "an owned ARN also mapped by someone else, not desired: ours goes, theirs stays",
                state: state(
                    vec![
                        e(A, "alice", MASTERS, OURS),
                        e(A, "alice2", MASTERS, Owner::Foreign),
                    ],
                    &[A],
                ),
                desired: vec![],
                scope: Scope::All,
                changes: vec![Change::Remove(g(A, "alice"))],
                unchanged: vec![],
                skipped: vec![],
                owned_after: vec![],
            },
            Case {
                name: "duplicates with an unclear one, not desired: hands off",
                state: state(
                    vec![
                        e(A, "alice", MASTERS, OURS),
                        e(A, "alice2", MASTERS, Owner::Unclear),
                    ],
                    &[A],
                ),
                desired: vec![],
                scope: Scope::All,
                changes: vec![],
                unchanged: vec![],
                skipped: vec![SkipKind::Duplicate],
                owned_after: s(&[A]),
            },
            Case {
                name: "owned ARN duplicated by hand while still desired: neither entry is rewritten",
                state: state(
                    vec![
                        e(A, "alice", &["viewers"], OURS),
                        e(A, "by-hand", &["ops"], Owner::Foreign),
                    ],
                    &[A],
                ),
                desired: vec![g(A, "alice")],
                scope: Scope::All,
                changes: vec![],
                unchanged: vec![],
                skipped: vec![SkipKind::Duplicate],
                owned_after: s(&[A]),
            },
        ];
        for c in cases {
            let p = plan(&c.state, &c.desired, &c.scope);
            assert_eq!(p.changes, c.changes, "{}", c.name);
            assert_eq!(p.unchanged, c.unchanged, "{}", c.name);
            let kinds: Vec<SkipKind> = p.skipped.iter().map(|s| s.kind).collect();
            assert_eq!(kinds, c.skipped, "{}: {:?}", c.name, p.skipped);
            assert_eq!(p.owned_after, c.owned_after, "{}", c.name);
            assert!(!p.hold);
        }
    }

    #[test]
    fn grants_are_bound_to_the_user_id() {
        let with_id = |id: Option<&str>| Grant {
            id: id.map(str::to_string),
            ..g(A, "alice")
        };
        let entry = |id: Option<&str>| CurrentEntry {
            id: id.map(str::to_string),
            ..e(A, "alice", MASTERS, OURS)
        };
        // Another IAM user holds the ARN now: the old grant is revoked, the new holder granted afresh.
        let p = plan(
            &state(vec![entry(Some("AIDAOLD"))], &[A]),
            &[with_id(Some("AIDANEW"))],
            &Scope::All,
        );
        assert_eq!(
            p.changes,
            vec![
                Change::Remove(with_id(Some("AIDAOLD"))),
                Change::Add(with_id(Some("AIDANEW")))
            ]
        );
        assert_eq!(
            p.replaced,
            vec![Replaced {
                arn: A.into(),
                old_id: "AIDAOLD".into(),
                new_id: "AIDANEW".into()
            }]
        );
        assert_eq!(p.owned_after, s(&[A]));
        // The same user: unchanged. An entry from before ids were recorded: rewritten with the id.
        let p = plan(
            &state(vec![entry(Some("AIDAOLD"))], &[A]),
            &[with_id(Some("AIDAOLD"))],
            &Scope::All,
        );
        assert!(p.changes.is_empty() && p.replaced.is_empty());
        let p = plan(
            &state(vec![entry(None)], &[A]),
            &[with_id(Some("AIDANEW"))],
            &Scope::All,
        );
        assert_eq!(
            p.changes,
            vec![Change::Update {
                from: with_id(None),
                to: with_id(Some("AIDANEW"))
            }]
        );
        // IAM did not say: the recorded id is kept, nothing to do.
        let p = plan(
            &state(vec![entry(Some("AIDAOLD"))], &[A]),
            &[with_id(None)],
            &Scope::All,
        );
        assert!(p.changes.is_empty());
    }

    #[test]
    fn access_policies_drift_is_repaired_only_when_read() {
        use crate::core::settings::{AccessPolicy, PolicyScope};
        let admin = AccessPolicy {
            arn: "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy".into(),
            scope: PolicyScope::Cluster,
        };
        let want = Grant {
            groups: vec![],
            policies: vec![admin.clone()],
            ..g(A, "alice")
        };
        let entry = |policies: Option<Vec<AccessPolicy>>| CurrentEntry {
            policies,
            ..e(A, "alice", &[], OURS)
        };
        // Read and right; read and scoped to a namespace by hand; read and removed by hand; not read.
        let p = plan(
            &state(vec![entry(Some(vec![admin.clone()]))], &[]),
            std::slice::from_ref(&want),
            &Scope::All,
        );
        assert_eq!(p.unchanged, s(&[A]));
        let narrowed = AccessPolicy {
            scope: PolicyScope::Namespaces {
                namespaces: vec!["default".into()],
            },
            ..admin.clone()
        };
        for drift in [vec![narrowed], vec![]] {
            let p = plan(
                &state(vec![entry(Some(drift.clone()))], &[]),
                std::slice::from_ref(&want),
                &Scope::All,
            );
            assert_eq!(
                p.changes,
                vec![Change::Update {
                    from: Grant {
                        policies: drift,
                        ..want.clone()
                    },
                    to: want.clone()
                }]
            );
        }
        let p = plan(
            &state(vec![entry(None)], &[]),
            std::slice::from_ref(&want),
            &Scope::All,
        );
        assert!(p.changes.is_empty());
    }

    #[test]
    fn a_node_role_of_the_legacy_aws_auth_is_never_granted_an_entry() {
        // API_AND_CONFIG_MAP, mid-migration: the nodes still sign in through their aws-auth row, and the
        // role has no entry yet. Without the rule, its tag would make it a STANDARD admin entry.
        let node = "arn:aws:iam::123456789012:role/eks-node";
        let legacy = ClusterState {
            node_roles: vec!["eks-node".into()],
            ..Default::default()
        };
        let st = ClusterState {
            legacy: Some(Box::new(legacy)),
            form: GrantForm::AccessPolicies,
            ..Default::default()
        };
        let want = Grant {
            arn: node.into(),
            kind: PrincipalKind::Role,
            ..Default::default()
        };
        let p = plan(&st, &[want], &Scope::All);
        assert!(p.changes.is_empty(), "{:?}", p.changes);
        assert_eq!(p.skipped.len(), 1);
        assert_eq!(p.skipped[0].kind, SkipKind::NodeRole);
        assert!(p.owned_after.is_empty());
    }

    #[test]
    fn a_grant_of_a_role_that_became_a_node_role_is_removed() {
        let node = "arn:aws:iam::123456789012:role/ops";
        let role = |groups: &[&str], owner| CurrentEntry {
            arn: Some(node.into()),
            username: Some("x".into()),
            groups: s(groups),
            owner,
            id: None,
            policies: None,
            held_by: None,
            source: None,
            levels_record: None,
        };
        let want = Grant {
            arn: node.into(),
            kind: PrincipalKind::Role,
            username: "ops:{{SessionName}}".into(),
            groups: s(MASTERS),
            ..Default::default()
        };
        // aws-auth: our admin row and, since, a node row for the same role. Only ours goes.
        let st = ClusterState {
            entries: vec![
                role(MASTERS, OURS),
                role(&["system:bootstrappers", "system:nodes"], Owner::Foreign),
            ],
            recorded: s(&[node]),
            node_roles: s(&["ops"]),
            ..Default::default()
        };
        let p = plan(&st, std::slice::from_ref(&want), &Scope::All);
        assert_eq!(p.changes.len(), 1);
        assert!(matches!(&p.changes[0], Change::Remove(g) if g.groups == s(MASTERS)));
        assert_eq!(p.skipped[0].kind, SkipKind::NodeRole);
        assert!(p.skipped[0].reason.contains("is removed"));
        assert!(p.owned_after.is_empty());
        assert_eq!(p.revocations(), 1, "a revocation, under the guard");
        // A migrating cluster: our STANDARD entry, and the role's node row in aws-auth (EKS would prefer the
        // entry, and the nodes could not join). The entry goes, and our aws-auth row is revoked, not kept.
        let legacy = ClusterState {
            entries: vec![role(MASTERS, OURS), role(&["system:nodes"], Owner::Foreign)],
            recorded: s(&[node]),
            node_roles: s(&["ops"]),
            ..Default::default()
        };
        let st = ClusterState {
            entries: vec![role(&[], OURS)],
            legacy: Some(Box::new(legacy.clone())),
            form: GrantForm::AccessPolicies,
            ..Default::default()
        };
        let p = plan(&st, std::slice::from_ref(&want), &Scope::All);
        assert!(matches!(&p.changes[..], [Change::Remove(_)]));
        let r = retire(&legacy, &p, &[want], &Scope::All);
        assert_eq!(r.revocations().count(), 1);
        assert!(r.migrated.is_empty());
    }

    #[test]
    fn no_role_is_granted_where_the_node_rows_cannot_be_read() {
        let st = ClusterState {
            form: GrantForm::AccessPolicies,
            node_rows_unknown: true,
            ..Default::default()
        };
        let role = Grant {
            arn: "arn:aws:iam::123456789012:role/ops".into(),
            kind: PrincipalKind::Role,
            ..Default::default()
        };
        let p = plan(&st, &[role, g(A, "alice")], &Scope::All);
        assert_eq!(
            p.changes,
            vec![Change::Add(g(A, "alice"))],
            "users still are"
        );
        assert_eq!(p.skipped.len(), 1);
        assert_eq!(p.skipped[0].kind, SkipKind::NodeRowsUnread);
        assert!(p.skipped[0].reason.contains("could not be read"));
    }

    #[test]
    fn a_grant_records_its_source_and_a_new_source_is_an_update() {
        let tag = Source::Tag("eks-cluster-admin".into());
        let group = Source::IamGroup("platform".into());
        let with = |src: Option<Source>| Grant {
            source: src,
            ..g(A, "alice")
        };
        let entry = |src: Option<Source>| CurrentEntry {
            source: src,
            levels_record: None,
            ..e(A, "alice", MASTERS, OURS)
        };
        let same = plan(
            &state(vec![entry(Some(tag.clone()))], &[A]),
            &[with(Some(tag.clone()))],
            &Scope::All,
        );
        assert_eq!(same.unchanged, s(&[A]));
        for before in [None, Some(group)] {
            let p = plan(
                &state(vec![entry(before.clone())], &[A]),
                &[with(Some(tag.clone()))],
                &Scope::All,
            );
            assert_eq!(
                p.changes,
                vec![Change::Update {
                    from: with(before),
                    to: with(Some(tag.clone()))
                }]
            );
        }
        // What a store holds is judged by what it recorded: a removal carries it.
        let p = plan(
            &state(vec![entry(Some(tag.clone()))], &[A]),
            &[],
            &Scope::All,
        );
        assert_eq!(p.changes, vec![Change::Remove(with(Some(tag)))]);
    }

    #[test]
    fn a_new_levels_record_is_an_update_and_none_asked_is_no_change() {
        let with = |record: Option<&str>| Grant {
            levels_record: record.map(str::to_string),
            ..g(A, "alice")
        };
        let entry = |record: Option<&str>| CurrentEntry {
            levels_record: record.map(str::to_string),
            ..e(A, "alice", MASTERS, OURS)
        };
        // A deployment without declared levels asks for no record: whatever the entry holds is left alone.
        for held in [None, Some("admin:tag")] {
            let p = plan(&state(vec![entry(held)], &[A]), &[with(None)], &Scope::All);
            assert_eq!(p.unchanged, s(&[A]), "{held:?}");
        }
        let p = plan(
            &state(vec![entry(Some("admin:tag"))], &[A]),
            &[with(Some("admin:tag/view:tag"))],
            &Scope::All,
        );
        assert_eq!(
            p.changes,
            vec![Change::Update {
                from: with(Some("admin:tag")),
                to: with(Some("admin:tag/view:tag"))
            }]
        );
        // A removal carries what the store recorded, for the guard.
        let p = plan(
            &state(vec![entry(Some("view:tag"))], &[A]),
            &[],
            &Scope::All,
        );
        assert_eq!(p.changes, vec![Change::Remove(with(Some("view:tag")))]);
    }

    #[test]
    fn a_role_moves_from_its_path_less_mapping_to_its_entry() {
        let full = "arn:aws:iam::123456789012:role/team/ops";
        let bare = "arn:aws:iam::123456789012:role/ops";
        let want = Grant {
            arn: full.into(),
            kind: PrincipalKind::Role,
            username: "ops:{{SessionName}}".into(),
            ..Default::default()
        };
        let legacy = state(
            vec![e(
                bare,
                "ops:{{SessionName}}",
                MASTERS,
                Owner::Us { marked: true },
            )],
            &[bare],
        );
        let entries = plan(
            &ClusterState::default(),
            std::slice::from_ref(&want),
            &Scope::All,
        );
        let r = retire(&legacy, &entries, &[want], &Scope::All);
        assert_eq!(r.migrated, vec![bare]);
        assert_eq!(r.entry_arn(bare), full);
        assert_eq!(r.revocations().count(), 0);
        // A scoped run names the role; its mapping is in scope too.
        assert!(Scope::Named(vec![Named::role("OPS")]).covers_arn(bare));
        assert!(!Scope::Named(vec![Named::user("ops")]).covers_arn(bare));
    }

    #[test]
    fn retiring_aws_auth_mappings() {
        // aws-auth: alice, bob, carol ours; dave foreign. Entries: alice right, bob to be added, carol's
        // entry is someone else's (skipped); nobody wants dave or erin (ours).
        const E: &str = "arn:aws:iam::123456789012:user/erin";
        const D: &str = "arn:aws:iam::123456789012:user/dave";
        let legacy = state(
            vec![
                e(A, "alice", MASTERS, OURS),
                e(B, "bob", MASTERS, OURS),
                e(C, "carol", MASTERS, OURS),
                e(D, "dave", MASTERS, Owner::Foreign),
                e(E, "erin", MASTERS, OURS),
            ],
            &[A, B, C, E],
        );
        let entries = state(
            vec![
                e(A, "alice", MASTERS, OURS),
                e(C, "carol", &["x"], Owner::Foreign),
            ],
            &[],
        );
        let desired = [g(A, "alice"), g(B, "bob"), g(C, "carol")];
        let ep = plan(&entries, &desired, &Scope::All);
        let r = retire(&legacy, &ep, &desired, &Scope::All);
        assert_eq!(
            r.plan.changes,
            vec![
                Change::Remove(g(A, "alice")),
                Change::Remove(g(B, "bob")),
                Change::Remove(g(E, "erin")),
            ]
        );
        assert_eq!(r.migrated, s(&[A, B]));
        let revoked: Vec<&str> = r.revocations().map(|g| g.arn.as_str()).collect();
        assert_eq!(revoked, [E]);
        // Carol keeps her mapping (and it stays recorded) until her entry is ours.
        assert_eq!(r.plan.owned_after, s(&[C]));
        // Scoped to bob: only bob moves.
        let r = retire(&legacy, &ep, &[g(B, "bob")], &Scope::users(&["bob"]));
        assert_eq!(r.migrated, s(&[B]));
        assert_eq!(r.plan.changes, vec![Change::Remove(g(B, "bob"))]);
    }

    proptest::proptest! {
        /// Whatever the state, the plan never touches an entry that is not ours: every update and removal
        /// names a principal whose only entry is marked ours, and foreign and unclear entries are never
        /// the subject of a change.
        #[test]
        fn only_owned_entries_change(
            entries in proptest::collection::vec(
                (0usize..5, 0usize..3, proptest::bool::ANY, 0usize..4), 0..8),
            recorded in proptest::collection::vec(0usize..5, 0..4),
            desired in proptest::collection::btree_set(0usize..5, 0..5),
            scoped in proptest::option::of(0usize..5),
        ) {
            let names = ["a", "b", "c", "d", "e"];
            let arn = |i: usize, upper: bool| {
                let n = if upper { names[i].to_uppercase() } else { names[i].to_string() };
                format!("arn:aws:iam::123456789012:user/{n}")
            };
            let owners = [OURS, Owner::Us { marked: false }, Owner::Foreign, Owner::Unclear];
            let st = ClusterState {
                entries: entries
                    .iter()
                    .map(|(i, grp, up, o)| e(&arn(*i, *up), names[*i], &[["system:masters", "viewers", "ops"][*grp]], owners[*o]))
                    .collect(),
                recorded: recorded.iter().map(|i| arn(*i, false)).collect(),
                ..Default::default()
            };
            let scope = match scoped {
                None => Scope::All,
                Some(i) => Scope::users(&[names[i]]),
            };
            let want: Vec<Grant> = desired
                .iter()
                .map(|i| g(&arn(*i, false), names[*i]))
                .filter(|x| scope.covers_arn(&x.arn))
                .collect();
            let p = plan(&st, &want, &scope);
            for c in &p.changes {
                let key = ArnKey(&c.grant().arn);
                let matching: Vec<&CurrentEntry> = st.entries.iter().filter(|x| x.arn.as_deref().map(ArnKey) == Some(key)).collect();
                let ours: Vec<&&CurrentEntry> = matching.iter().filter(|x| matches!(x.owner, Owner::Us { .. })).collect();
                match c {
                    Change::Add(_) => proptest::prop_assert!(matching.is_empty()),
                    Change::Update { .. } => {
                        proptest::prop_assert_eq!(matching.len(), 1);
                        proptest::prop_assert_eq!(ours.len(), 1, "changed an entry that is not ours: {:?}", matching[0]);
                    }
                    // A removal takes our one entry; any other entry of the principal (someone else's)
                    // stays, and none of them is unclear.
                    Change::Remove(_) => {
                        proptest::prop_assert_eq!(ours.len(), 1, "removed where ours is not one: {:?}", matching);
                        proptest::prop_assert!(matching.iter().all(|x| x.owner != Owner::Unclear));
                    }
                }
                proptest::prop_assert!(scope.covers_arn(&c.grant().arn));
            }
        }
    }
}
