//! One invocation, in phases: intent → IAM facts → grants (once) → per cluster, concurrently and each
//! against a deadline: current state → plan → guard (after every cluster was planned, before any is
//! written) → apply. Shared by the Lambda and the CLI; generic over the ports, so nothing here knows a
//! store's format.

use crate::core::audit::{self, AuditRecord, Counts};
use crate::core::event::{
    self, Action, EventError, FORCE_CLOCK_SKEW, FORCE_MAX_AGE, Intent, Named, Trigger,
};
use crate::core::grants::{
    ArnKey, Desired, Grant, Principal, PrincipalKind, access_entry_grants, aws_auth_grants,
    desired_for_cluster,
};
use crate::core::guard::{Facts, Guarded, SourceFacts, guard};
use crate::core::plan::{
    Change, ClusterState, GrantForm, Plan, Retirement, Scope, Skip, SkipKind, plan, retire,
};
use crate::core::ports::{
    Decided, IamError, IamSource, Landed, LandedChanges, Lines, NoLines, Store, Target,
};
use crate::core::settings::Settings;
use serde::Serialize;
use serde_json::Value;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// Time kept back from the Lambda's own deadline, to report and log before Lambda stops the function.
pub const SAFETY_MARGIN: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Event(#[from] EventError),
    #[error("{0}; nothing was written to any cluster")]
    Iam(#[from] IamError),
    /// Some clusters failed, were guarded or need a person; the others were still done and are in the report.
    #[error("{summary}")]
    Clusters {
        report: Box<Report>,
        summary: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Done (or, in a dry run, planned).
    Ok,
    /// The guard refused part of the plan (see `guard`).
    Guarded,
    /// An entry's ownership is unclear and needs a person (see the `unclear` skips).
    Conflict,
    /// Nothing or not everything could be done (see `error`).
    Failed,
}

/// What happened on one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterReport {
    pub cluster: String,
    pub store: &'static str,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard: Option<Guarded>,
    pub added: Vec<String>,
    pub updated: Vec<String>,
    /// Revoked principals (including `aws-auth` mappings revoked on a migrating cluster).
    pub removed: Vec<String>,
    /// `aws-auth` mappings moved to access entries (mode `API_AND_CONFIG_MAP`).
    pub migrated: Vec<String>,
    /// On a failed cluster: the principals whose planned change did not land (the error says why).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_landed: Vec<String>,
    pub unchanged: usize,
    pub skipped: Vec<Skip>,
    pub dry_run: bool,
    /// Whether anything reached the store (also on a failed cluster: what landed before the failure).
    pub written: bool,
    /// How many read → plan → write rounds it took (more than 1 means a concurrent write was retried).
    pub attempts: u32,
    pub duration_ms: u64,
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// What the event asked for, in words.
    pub intent: String,
    pub trigger: Trigger,
    pub dry_run: bool,
    pub force: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
    pub clusters: Vec<ClusterReport>,
    /// Why some tagged users were not granted anything (bad tag values, odd ARNs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// One record per grant, revoke, update, skip and guard (also printed as JSON lines).
    pub audit: Vec<AuditRecord>,
    /// CloudWatch Embedded Metric Format lines, one per cluster (printed, not serialised in the report).
    #[serde(skip)]
    pub metrics: Vec<Value>,
    /// What putting the audit records on the event bus came to (`EVENT_BUS`), when it was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<audit::Published>,
    /// The earliest expiry among this run's grants (RFC 3339 UTC), on every cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_expiry: Option<String>,
    /// Whether the run saw every principal (a full reconcile): only such a run may move the expiry
    /// wake-up later or delete it.
    #[serde(skip)]
    pub full: bool,
    /// What keeping the expiry wake-up came to, when the function keeps one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wakeup: Option<Value>,
}

impl Report {
    fn new(intent: &Intent, dry_run: bool) -> Self {
        Report {
            intent: String::new(),
            trigger: intent.trigger.clone(),
            dry_run,
            force: intent.force,
            ignored: None,
            clusters: Vec::new(),
            notes: Vec::new(),
            audit: Vec::new(),
            metrics: Vec::new(),
            events: None,
            next_expiry: None,
            full: false,
            wakeup: None,
        }
    }
}

/// When and until when an invocation runs.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now: SystemTime,
    /// The Lambda's own deadline, when running in Lambda.
    pub lambda_deadline: Option<Instant>,
}

impl Clock {
    pub fn unbounded() -> Self {
        Clock {
            now: SystemTime::now(),
            lambda_deadline: None,
        }
    }
}

pub struct Reconciler<I, S> {
    pub settings: Settings,
    pub iam: I,
    pub store: S,
    /// Where audit records and metric lines go the moment they are made (a write's record as it lands).
    pub lines: Arc<dyn Lines>,
}

/// One cluster between the phases.
enum Phase<Snap> {
    Planned {
        snapshot: Snap,
        decided: Box<Decided>,
        /// The grant form the cluster's store holds (re-plans use the same).
        form: GrantForm,
        /// Time the cluster's own read took (counted against its budget).
        spent: Duration,
    },
    /// The error, and the time the cluster's read took to fail.
    Failed(String, Duration),
}

impl ReconcileError {
    /// A short, stable name for the kind of failure (the Lambda error's `errorType`).
    pub fn kind(&self) -> &'static str {
        match self {
            ReconcileError::Event(_) => "InvalidEvent",
            ReconcileError::Iam(_) => "IamReadFailed",
            ReconcileError::Clusters { .. } => "ClustersNeedAttention",
        }
    }
}

impl<I: IamSource, S: Store> Reconciler<I, S> {
    pub fn new(settings: Settings, iam: I, store: S) -> Self {
        Reconciler {
            settings,
            iam,
            store,
            lines: Arc::new(NoLines),
        }
    }

    /// The same, writing audit records and metric lines to `lines` as they are made.
    pub fn with_lines(self, lines: Arc<dyn Lines>) -> Self {
        Reconciler { lines, ..self }
    }

    /// Handles a raw event. A malformed event or a failed IAM read writes nothing.
    pub async fn handle(&self, event: &Value, clock: Clock) -> Result<Report, ReconcileError> {
        let intent = event::parse(event)?;
        self.run(intent, clock).await
    }

    /// One invocation, one short step per phase.
    pub async fn run(&self, intent: Intent, clock: Clock) -> Result<Report, ReconcileError> {
        check_force(&intent, clock.now)?;
        let mut report = Report::new(&intent, intent.dry_run || self.settings.dry_run);
        if let Some(reason) = self.foreign_account(&intent) {
            tracing::warn!(%reason, "event ignored");
            report.intent = "ignore".into();
            report.ignored = Some(reason);
            return Ok(report);
        }
        // Phase 1: IAM facts. Any failure ends the invocation before a cluster is touched.
        let Some(facts) = self.iam_facts(&intent, &mut report).await? else {
            return Ok(report);
        };
        // Phase 2: grants, once per invocation.
        let grants = self.grants(&facts.principals, &mut report, clock.now);
        report.full = facts.target.full;
        report.next_expiry = grants.next_expiry().map(str::to_string);
        let budget = Budget::new(&self.settings, clock);
        // Phase 3: read and plan every cluster, concurrently; the guard sees every plan.
        let phases = self.read_and_plan(&facts, &grants, &budget).await;
        grants.note_entry_grants(&phases, &mut report);
        // Phase 4: apply, concurrently; each write's audit record goes out as it lands.
        let run = Run {
            facts: &facts,
            grants: &grants,
            budget: &budget,
            dry_run: report.dry_run,
            time: audit_time(clock.now),
            trigger: &intent.trigger,
        };
        let outcomes = self.apply_all(phases, &run).await;
        // Phase 5: report, the other audit records and the metrics.
        self.finish(report, outcomes, &run, clock)
    }

    /// Why an event must not be acted on here: it is about another AWS account than the function's.
    fn foreign_account(&self, intent: &Intent) -> Option<String> {
        let home = intent
            .home_account
            .as_deref()
            .or(self.settings.account.as_deref())?;
        let other: Vec<&str> = intent
            .accounts
            .iter()
            .map(String::as_str)
            .filter(|a| *a != home)
            .collect();
        (!other.is_empty()).then(|| {
            format!(
                "the event is about account {} (its account or recipientAccountId), not this function's account \
                 {home}: events of other accounts are never acted on (their principals are not this account's)",
                other.join(" and ")
            )
        })
    }

    /// Who IAM says is what: every principal (a full reconcile) or the named ones, and what the stores must
    /// read. `None`: the event is ignored (the report says why).
    async fn iam_facts(
        &self,
        intent: &Intent,
        report: &mut Report,
    ) -> Result<Option<IamFacts>, ReconcileError> {
        let mut target = Target::default();
        let mut sources = SourceFacts::default();
        let (principals, scope) = match &intent.action {
            Action::Ignore(reason) => {
                tracing::info!(%reason, "event ignored");
                report.intent = "ignore".into();
                report.ignored = Some(reason.clone());
                return Ok(None);
            }
            Action::ReconcileAll => {
                let groups = self.settings.names_iam_groups();
                let account = self.iam.list_principals(groups).await?;
                tracing::info!(
                    principals = account.principals.len(),
                    groups = account.groups.len(),
                    "read all IAM users and roles"
                );
                target.full = true;
                report.intent = "reconcile all principals".into();
                sources = SourceFacts::of(&self.settings, &account.principals, &account.groups);
                (account.principals, Scope::All)
            }
            Action::ReconcileNamed(named) => {
                let principals = self.named(named, &mut target).await?;
                // A path change or rename leaves the old entry under an ARN IAM no longer gives: look for
                // the names among the entries too.
                if intent.trigger.event_name.as_deref() == Some("UpdateUser") {
                    for n in named {
                        if !target.unresolved.contains(n) {
                            target.unresolved.push(n.clone());
                        }
                    }
                }
                let names: Vec<String> = named.iter().map(ToString::to_string).collect();
                report.intent = format!("reconcile {}", names.join(", "));
                (principals, Scope::Named(named.clone()))
            }
        };
        Ok(Some(IamFacts {
            principals,
            scope,
            target,
            sources,
            force: intent.force,
        }))
    }

    /// The named principals as IAM has them; one IAM does not know is looked for among the entries by name.
    async fn named(
        &self,
        named: &[Named],
        target: &mut Target,
    ) -> Result<Vec<Principal>, ReconcileError> {
        let groups = self.settings.names_iam_groups();
        let mut principals = Vec::new();
        for n in named {
            let found = match n.kind {
                PrincipalKind::User => self.iam.get_user(&n.name, groups).await?,
                PrincipalKind::Role => self.iam.get_role(&n.name).await?,
            };
            match found {
                Some(p) => {
                    target.arns.push(p.arn.clone());
                    principals.push(p)
                }
                None => {
                    target.unresolved.push(n.clone());
                    tracing::info!(principal = %n, "not in IAM; its owned entries will be removed")
                }
            }
        }
        Ok(principals)
    }

    /// The grants of every managed cluster, in both shapes (a store's cluster state says which it holds).
    fn grants(&self, principals: &[Principal], report: &mut Report, now: SystemTime) -> Grants {
        let s = &self.settings;
        let now = jiff::Timestamp::try_from(now).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let desired: Vec<Desired> = s
            .clusters
            .iter()
            .map(|c| desired_for_cluster(principals, s, c, now))
            .collect();
        let policies: Vec<Desired> = desired.iter().map(|d| access_entry_grants(d, s)).collect();
        let groups: Vec<Desired> = desired.iter().map(aws_auth_grants).collect();
        let expired = groups
            .iter()
            .zip(&policies)
            .map(|(g, p)| Grants::expired_on(g, p))
            .collect();
        for n in groups.iter().flat_map(|d| &d.notes) {
            if !report.notes.contains(n) {
                tracing::warn!(note = %n, "admin source partly or wholly ignored");
                report.notes.push(n.clone());
            }
        }
        Grants {
            groups,
            policies,
            expired,
        }
    }

    /// The plan for one cluster's state, with the guard's verdict (`expired`: the cluster's expiries).
    fn decide(
        &self,
        state: &ClusterState,
        grants: &[Grant],
        facts: &IamFacts,
        expired: &[String],
    ) -> Decided {
        let mut p = plan(state, grants, &facts.scope);
        if let Some(legacy) = state.legacy.as_deref() {
            p.retire = Some(Box::new(retire(legacy, &p, grants, &facts.scope)));
        }
        let g = guard(&mut p, state, &facts.guard(&self.settings, expired));
        Decided { plan: p, guard: g }
    }

    /// Reads every cluster within its deadline and plans it.
    async fn read_and_plan(
        &self,
        facts: &IamFacts,
        grants: &Grants,
        budget: &Budget,
    ) -> Vec<Phase<S::Snapshot>> {
        let deadline = budget.deadline_after(budget.start, Duration::ZERO);
        let reads = self
            .settings
            .clusters
            .iter()
            .enumerate()
            .map(|(i, cluster)| async move {
                let read =
                    tokio::time::timeout_at(deadline, self.store.read(cluster, &facts.target));
                match read.await {
                    Ok(Ok((state, snapshot))) => Phase::Planned {
                        decided: Box::new(self.decide(
                            &state,
                            grants.for_state(i, &state),
                            facts,
                            &grants.expired[i],
                        )),
                        form: state.form,
                        snapshot,
                        spent: budget.start.elapsed(),
                    },
                    Ok(Err(e)) => Phase::Failed(e.to_string(), budget.start.elapsed()),
                    Err(_) => Phase::Failed(
                        format!(
                            "no answer within {} ms (the cluster's deadline); nothing was written",
                            budget.millis()
                        ),
                        budget.start.elapsed(),
                    ),
                }
            });
        futures_util::future::join_all(reads).await
    }

    /// Applies every planned cluster within its own remaining budget. What reaches a store is told to its
    /// cluster's `Landed` as it lands, and its audit record written at once, so a failure or the deadline
    /// half way loses no audit record.
    async fn apply_all(&self, phases: Vec<Phase<S::Snapshot>>, run: &Run<'_>) -> Vec<Outcome> {
        let applies = self.settings.clusters.iter().zip(phases).enumerate().map(
            |(i, (cluster, phase))| async move {
                let landing = Arc::new(Landing {
                    ctx: ClusterContext {
                        time: run.time.clone(),
                        deployment: self.settings.deployment_id.clone(),
                        cluster: cluster.clone(),
                        store: self.store.name(cluster),
                        trigger: run.trigger.clone(),
                        expired: run.grants.expired[i].clone(),
                    },
                    current: Mutex::new(None),
                    lines: self.lines.clone(),
                    records: Mutex::new(Vec::new()),
                });
                let tell = landing.clone();
                let landed = Landed::notifying(Box::new(move |c, retired, note| {
                    tell.landed(c, retired, note)
                }));
                let (result, spent) = self
                    .apply_one(i, cluster, phase, run, &landing, &landed)
                    .await;
                Outcome {
                    decided: landing.current(),
                    result,
                    spent,
                    landed: landed.take(),
                    records: landing.take_records(),
                }
            },
        );
        futures_util::future::join_all(applies).await
    }

    /// Applies one cluster's decided plan (unless a dry run or held), within its remaining budget. The plan
    /// the store applies last (it re-plans after a concurrent write) is kept in `landing`.
    async fn apply_one(
        &self,
        i: usize,
        cluster: &str,
        phase: Phase<S::Snapshot>,
        run: &Run<'_>,
        landing: &Landing,
        landed: &Landed,
    ) -> (Result<u32, String>, Duration) {
        let Run {
            facts,
            grants,
            budget,
            dry_run,
            ..
        } = *run;
        let (snapshot, decided, form, spent) = match phase {
            Phase::Failed(e, spent) => return (Err(e), spent),
            Phase::Planned {
                snapshot,
                decided,
                form,
                spent,
            } => (snapshot, *decided, form, spent),
        };
        landing.set(decided.clone());
        // A dry run, or a cluster the guard holds, is planned and reported but never written.
        if dry_run || decided.plan.hold {
            return (Ok(1), spent);
        }
        let replan = |st: &ClusterState| {
            let d = self.decide(st, grants.of(i, form), facts, &grants.expired[i]);
            landing.set(d.clone());
            d
        };
        let writing = Instant::now();
        let apply = self
            .store
            .apply(cluster, snapshot, decided, &replan, landed);
        let result = match tokio::time::timeout_at(budget.deadline_after(writing, spent), apply)
            .await
        {
            Ok(Ok(a)) => {
                landing.set(a.decided);
                Ok(a.attempts)
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer within {} ms (the cluster's deadline) while writing; what landed before is \
                 reported, a call under way may or may not have landed, the next run repairs either way",
                budget.millis()
            )),
        };
        (result, spent + writing.elapsed())
    }

    /// The report, the audit records not written yet (skips, refusals, a dry run's) and the metrics of
    /// every cluster, each line written as it is made; the error when any cluster needs attention.
    fn finish(
        &self,
        mut report: Report,
        outcomes: Vec<Outcome>,
        run: &Run<'_>,
        clock: Clock,
    ) -> Result<Report, ReconcileError> {
        let ts_ms = clock
            .now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
        let mut problems = Vec::new();
        for (i, (cluster, mut outcome)) in self.settings.clusters.iter().zip(outcomes).enumerate() {
            let expired = &run.grants.expired[i];
            let ctx = audit::Context {
                time: &run.time,
                deployment: &self.settings.deployment_id,
                cluster,
                store: self.store.name(cluster),
                dry_run: report.dry_run,
                applied: !outcome.landed.is_empty(),
                trigger: run.trigger,
                expired,
            };
            let landed_records = std::mem::take(&mut outcome.records);
            let (r, shown) = cluster_report(&ctx, outcome);
            // What landed was recorded as it landed; what was not written is recorded now.
            let written_now = if ctx.dry_run || shown.plan.hold {
                audit::records(&ctx, &shown.plan, shown.guard.as_ref())
            } else {
                audit::unwritten_records(&ctx, &shown.plan, shown.guard.as_ref())
            };
            for record in &written_now {
                self.lines.audit(record);
            }
            report.audit.extend(landed_records);
            report.audit.extend(written_now);
            let mut counts = Counts::of(&shown.plan, shown.guard.as_ref(), expired);
            counts.failed = usize::from(r.status == Status::Failed);
            let line = audit::metric_line(
                ts_ms,
                &self.settings.deployment_id,
                cluster,
                &counts,
                r.duration_ms,
            );
            self.lines.metric(&line);
            report.metrics.push(line);
            log_cluster(&r);
            problems.extend(problem(&r));
            report.clusters.push(r);
        }
        if problems.is_empty() {
            return Ok(report);
        }
        let summary = format!(
            "{} of {} clusters need attention: {}",
            problems.len(),
            self.settings.clusters.len(),
            problems.join("; ")
        );
        Err(ReconcileError::Clusters {
            report: Box::new(report),
            summary,
        })
    }
}

/// A manual payload's `force` is honoured only for [`FORCE_MAX_AGE`] after its `forceAt` (a CLI force is
/// made in the same process, at once).
fn check_force(intent: &Intent, now: SystemTime) -> Result<(), ReconcileError> {
    let (true, Some(at)) = (intent.force, intent.force_at) else {
        return Ok(());
    };
    let now = jiff::Timestamp::try_from(now).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let age = now.duration_since(at);
    let max = jiff::SignedDuration::try_from(FORCE_MAX_AGE).unwrap_or_default();
    let skew = jiff::SignedDuration::try_from(FORCE_CLOCK_SKEW).unwrap_or_default();
    if age > max || -age > skew {
        return Err(ReconcileError::Event(EventError::Malformed {
            kind: "manual",
            reason: format!(
                "force was made at {at} and this run is at {now}: a force is honoured for {} minutes after its \
                 forceAt (a retry of an invocation long after must not apply it to a different plan); run \
                 `eks-admin-sync plan` again and force with the time now; nothing was read or written",
                FORCE_MAX_AGE.as_secs() / 60
            ),
        }));
    }
    Ok(())
}

/// The time audit records carry: when the invocation started (RFC 3339, UTC, milliseconds).
fn audit_time(now: SystemTime) -> String {
    jiff::Timestamp::try_from(now)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// What one cluster's audit records share, owned (a landed change's record is made inside the store's
/// call).
struct ClusterContext {
    time: String,
    deployment: String,
    cluster: String,
    store: &'static str,
    trigger: Trigger,
    expired: Vec<String>,
}

/// The audit of one cluster's writes as they land: the plan being applied, and the records written.
struct Landing {
    ctx: ClusterContext,
    current: Mutex<Option<Decided>>,
    lines: Arc<dyn Lines>,
    records: Mutex<Vec<AuditRecord>>,
}

impl Landing {
    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, d: Decided) {
        *Self::lock(&self.current) = Some(d);
    }

    fn current(&self) -> Option<Decided> {
        Self::lock(&self.current).clone()
    }

    fn take_records(&self) -> Vec<AuditRecord> {
        std::mem::take(&mut *Self::lock(&self.records))
    }

    /// Writes the record of a change that just landed, as the plan being applied describes it (with the
    /// store's note as its reason, when it has one).
    fn landed(&self, c: &Change, retired: bool, note: Option<&str>) {
        let c_ = &self.ctx;
        let ctx = audit::Context {
            time: &c_.time,
            deployment: &c_.deployment,
            cluster: &c_.cluster,
            store: c_.store,
            dry_run: false,
            applied: true,
            trigger: &c_.trigger,
            expired: &c_.expired,
        };
        let record = {
            let current = Self::lock(&self.current);
            let d = current.as_ref();
            let plan = d.map(|d| &d.plan);
            let guard = d.and_then(|d| d.guard.as_ref());
            if retired {
                let none = Retirement::default();
                let r = plan.and_then(|p| p.retire.as_deref()).unwrap_or(&none);
                audit::retired_record(&ctx, r, guard, c)
            } else {
                let none = Plan::default();
                audit::change_record(&ctx, plan.unwrap_or(&none), guard, c)
            }
        };
        let record = match note {
            Some(n) => AuditRecord {
                reason: Some(n.to_string()),
                ..record
            },
            None => record,
        };
        self.lines.audit(&record);
        Self::lock(&self.records).push(record);
    }
}

/// What the apply phase needs of the invocation.
struct Run<'a> {
    facts: &'a IamFacts,
    grants: &'a Grants,
    budget: &'a Budget,
    dry_run: bool,
    /// When the invocation started, as audit records carry it.
    time: String,
    trigger: &'a Trigger,
}

/// What IAM said, for the whole invocation.
struct IamFacts {
    principals: Vec<Principal>,
    scope: Scope,
    target: Target,
    /// On a full reconcile: the configured sources, those that look mistyped, the principals IAM has.
    sources: SourceFacts,
    force: bool,
}

impl IamFacts {
    fn guard<'a>(&'a self, s: &'a Settings, expired: &'a [String]) -> Facts<'a> {
        Facts {
            full: self.scope == Scope::All,
            sources: &self.sources,
            expired,
            max_removals: s.max_removals,
            force: self.force,
            tag_key: &s.tag_key,
        }
    }
}

/// The grants of every managed cluster (by index), in the two forms a store can hold.
struct Grants {
    /// Kubernetes groups as `ADMIN_GROUPS` says (`aws-auth`).
    groups: Vec<Desired>,
    /// Access policies, with groups a store of that form accepts (access entries).
    policies: Vec<Desired>,
    /// The ARNs whose tag grant expired on each cluster, in both forms (a migrating cluster holds both).
    expired: Vec<Vec<String>>,
}

impl Grants {
    fn of(&self, i: usize, form: GrantForm) -> &[Grant] {
        let d = match form {
            GrantForm::Groups => &self.groups[i],
            GrantForm::AccessPolicies => &self.policies[i],
        };
        &d.grants
    }

    fn for_state(&self, i: usize, state: &ClusterState) -> &[Grant] {
        self.of(i, state.form)
    }

    /// The earliest expiry among every cluster's grants.
    fn next_expiry(&self) -> Option<&str> {
        self.groups.iter().filter_map(Desired::next_expiry).min()
    }

    /// The ARNs whose tag grant expired on cluster `i`, in both forms (a migrating cluster holds both).
    fn expired_on(groups: &Desired, policies: &Desired) -> Vec<String> {
        let mut out = groups.expired.clone();
        out.extend(policies.expired.iter().cloned());
        out.sort();
        out.dedup();
        out
    }

    /// The notes of the access-policy form, once any cluster holds that form.
    fn note_entry_grants<Snap>(&self, phases: &[Phase<Snap>], report: &mut Report) {
        let used = phases.iter().any(|p| {
            matches!(
                p,
                Phase::Planned {
                    form: GrantForm::AccessPolicies,
                    ..
                }
            )
        });
        if !used {
            return;
        }
        for n in self.policies.iter().flat_map(|d| &d.notes) {
            if !report.notes.contains(n) {
                tracing::warn!(note = %n, "not granted on clusters served by access entries");
                report.notes.push(n.clone());
            }
        }
    }
}

/// Each cluster has its own budget for its own work (read, then write): the wait for the slowest read
/// between the two phases does not count against it. The Lambda's remaining time caps every budget.
struct Budget {
    start: Instant,
    hard_stop: Option<Instant>,
    timeout: Duration,
}

impl Budget {
    fn new(s: &Settings, clock: Clock) -> Self {
        let start = Instant::now();
        Budget {
            start,
            hard_stop: clock
                .lambda_deadline
                .map(|l| l.checked_sub(SAFETY_MARGIN).unwrap_or(start)),
            timeout: s.cluster_timeout,
        }
    }

    /// The deadline of work that begins at `begin` on a cluster that already spent `spent`.
    fn deadline_after(&self, begin: Instant, spent: Duration) -> Instant {
        let own = begin + self.timeout.saturating_sub(spent);
        self.hard_stop.map_or(own, |h| own.min(h))
    }

    fn millis(&self) -> u128 {
        self.deadline_after(self.start, Duration::ZERO)
            .saturating_duration_since(self.start)
            .as_millis()
    }
}

/// One cluster after the apply phase.
struct Outcome {
    decided: Option<Decided>,
    /// Read → plan → write rounds, or the error.
    result: Result<u32, String>,
    /// The cluster's own time: its read and its write, not the wait for the other clusters.
    spent: Duration,
    landed: LandedChanges,
    /// The audit records of what landed, written as it landed.
    records: Vec<AuditRecord>,
}

/// A cluster's report, and the plan as shown (a dry run or a held plan as planned, anything else as it
/// landed, change by change).
fn cluster_report(ctx: &audit::Context, o: Outcome) -> (ClusterReport, Decided) {
    let planned = o.decided.unwrap_or_default();
    let (attempts, error) = match o.result {
        Ok(a) => (a, None),
        Err(e) => (0, Some(e)),
    };
    let shown = if ctx.dry_run || planned.plan.hold {
        planned.clone()
    } else {
        as_landed(&planned, &o.landed)
    };
    let p = &shown.plan;
    let status = if error.is_some() {
        Status::Failed
    } else if planned.guard.as_ref().is_some_and(|g| !g.forced) {
        Status::Guarded
    } else if p.skipped.iter().any(|k| k.kind == SkipKind::Unclear) {
        Status::Conflict
    } else {
        Status::Ok
    };
    let mut r = ClusterReport {
        cluster: ctx.cluster.to_string(),
        store: ctx.store,
        status,
        not_landed: if error.is_some() {
            not_landed(&planned.plan, &o.landed)
        } else {
            Vec::new()
        },
        error,
        guard: planned.guard.clone(),
        added: Vec::new(),
        updated: Vec::new(),
        removed: Vec::new(),
        migrated: Vec::new(),
        unchanged: p.unchanged.len(),
        skipped: p.skipped.clone(),
        dry_run: ctx.dry_run,
        written: !o.landed.is_empty(),
        attempts,
        duration_ms: u64::try_from(o.spent.as_millis()).unwrap_or(u64::MAX),
        changes: p.changes.clone(),
    };
    for c in &r.changes {
        match c {
            Change::Add(g) => r.added.push(g.arn.clone()),
            Change::Update { to, .. } => r.updated.push(to.arn.clone()),
            Change::Remove(g) => r.removed.push(g.arn.clone()),
        }
    }
    if let Some(ret) = p.retire.as_deref() {
        for c in &ret.plan.changes {
            let arn = &c.grant().arn;
            if ret.migrated.contains(arn) {
                r.migrated.push(arn.clone());
            } else {
                r.removed.push(arn.clone());
            }
        }
    }
    (r, shown)
}

/// What a cluster that is not `ok` says in the invocation's error.
fn problem(r: &ClusterReport) -> Option<String> {
    let cluster = &r.cluster;
    match r.status {
        Status::Ok => None,
        Status::Failed => {
            // Store errors already name their cluster; the reconcile's own (deadlines) do not.
            let e = r.error.clone().unwrap_or_default();
            Some(if e.starts_with(&format!("cluster {cluster}:")) {
                e
            } else {
                format!("cluster {cluster}: {e}")
            })
        }
        Status::Guarded => Some(format!(
            "cluster {cluster}: guarded: {}",
            r.guard
                .as_ref()
                .map(|g| g.message.as_str())
                .unwrap_or_default()
        )),
        Status::Conflict => {
            let arns: Vec<&str> = r
                .skipped
                .iter()
                .filter(|k| k.kind == SkipKind::Unclear)
                .map(|k| k.arn.as_str())
                .collect();
            Some(format!(
                "cluster {cluster}: ownership unclear for {}: only one of this deployment's two ownership records \
                 is on their entries; left as they are until a person decides (see the README, \"Taking an entry \
                 over\")",
                arns.join(", ")
            ))
        }
    }
}

/// The plan as it landed: its changes (and retired mappings) reduced to those the store reported, in the
/// plan's order; everything else of the plan (skips, guard, ownership) as planned.
fn as_landed(planned: &Decided, landed: &LandedChanges) -> Decided {
    let mut d = planned.clone();
    d.plan.changes = landed.changes.clone();
    d.plan
        .changes
        .sort_by(|a, b| ArnKey(&a.grant().arn).cmp(&ArnKey(&b.grant().arn)));
    if let Some(r) = d.plan.retire.as_deref_mut() {
        r.plan.changes = landed.retired.clone();
        r.plan
            .changes
            .sort_by(|a, b| ArnKey(&a.grant().arn).cmp(&ArnKey(&b.grant().arn)));
    }
    d
}

/// The principals of planned changes that did not land.
fn not_landed(plan: &Plan, landed: &LandedChanges) -> Vec<String> {
    let own = plan.changes.iter().filter(|c| !landed.changes.contains(c));
    let retired = plan
        .retire
        .iter()
        .flat_map(|r| r.plan.changes.iter())
        .filter(|c| !landed.retired.contains(c));
    let mut out: Vec<String> = own.chain(retired).map(|c| c.grant().arn.clone()).collect();
    out.dedup();
    out
}

fn log_cluster(r: &ClusterReport) {
    if let Some(e) = &r.error {
        tracing::error!(cluster = %r.cluster, store = r.store, error = %e, "cluster failed; other clusters go on");
        return;
    }
    tracing::info!(
        cluster = %r.cluster,
        store = r.store,
        status = ?r.status,
        added = r.added.len(),
        updated = r.updated.len(),
        removed = r.removed.len(),
        migrated = r.migrated.len(),
        unchanged = r.unchanged,
        skipped = r.skipped.len(),
        written = r.written,
        dry_run = r.dry_run,
        attempts = r.attempts,
        "cluster reconciled"
    );
    if let Some(g) = &r.guard {
        tracing::warn!(cluster = %r.cluster, rule = g.rule.name(), count = g.count, forced = g.forced, message = %g.message, "removal guard");
    }
    for s in &r.skipped {
        tracing::warn!(cluster = %r.cluster, arn = %s.arn, reason = %s.reason, "principal skipped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::grants::Grant;
    use crate::core::plan::{CurrentEntry, Owner};
    use crate::core::ports::{Account, Applied, Lines};
    use std::collections::HashMap;
    use std::sync::Mutex;

    struct FakeIam {
        users: Vec<Principal>,
        fail: bool,
    }

    impl IamSource for FakeIam {
        async fn get_user(&self, name: &str, _: bool) -> Result<Option<Principal>, IamError> {
            if self.fail {
                return Err(IamError {
                    op: "GetUser",
                    message: "throttled".into(),
                });
            }
            Ok(self
                .users
                .iter()
                .find(|u| u.name == name && u.kind == PrincipalKind::User)
                .cloned())
        }
        async fn get_role(&self, name: &str) -> Result<Option<Principal>, IamError> {
            if self.fail {
                return Err(IamError {
                    op: "GetRole",
                    message: "throttled".into(),
                });
            }
            Ok(self
                .users
                .iter()
                .find(|u| u.name == name && u.kind == PrincipalKind::Role)
                .cloned())
        }
        async fn list_principals(&self, _: bool) -> Result<Account, IamError> {
            if self.fail {
                return Err(IamError {
                    op: "GetAccountAuthorizationDetails",
                    message: "AccessDenied".into(),
                });
            }
            Ok(Account {
                principals: self.users.clone(),
                groups: Vec::new(),
            })
        }
    }

    /// An in-memory store: entries per cluster; "broken" fails to read, "slow" never answers, and
    /// `log` records every read and apply in order.
    #[derive(Default)]
    struct MemStore {
        clusters: Mutex<HashMap<String, Vec<CurrentEntry>>>,
        log: Mutex<Vec<String>>,
    }

    impl Store for MemStore {
        type Snapshot = ();
        type Error = String;
        fn name(&self, _: &str) -> &'static str {
            "memory"
        }
        async fn read(&self, cluster: &str, _: &Target) -> Result<(ClusterState, ()), String> {
            self.log.lock().unwrap().push(format!("read {cluster}"));
            match cluster {
                "broken" => return Err("unreachable".into()),
                "slow" => std::future::pending::<()>().await,
                _ => {}
            }
            let entries = self
                .clusters
                .lock()
                .unwrap()
                .get(cluster)
                .cloned()
                .unwrap_or_default();
            Ok((
                ClusterState {
                    entries,
                    ..Default::default()
                },
                (),
            ))
        }
        async fn apply(
            &self,
            cluster: &str,
            _: (),
            decided: Decided,
            _: &(dyn Fn(&ClusterState) -> Decided + Sync),
            landed: &Landed,
        ) -> Result<Applied, String> {
            self.log.lock().unwrap().push(format!("apply {cluster}"));
            // A write takes a little time, as a real one does.
            tokio::time::sleep(Duration::from_millis(1)).await;
            let mut all = self.clusters.lock().unwrap();
            let entries = all.entry(cluster.to_string()).or_default();
            for c in &decided.plan.changes {
                match c {
                    Change::Add(g) => entries.push(ours(g)),
                    Change::Update { to, .. } => {
                        entries.retain(|e| e.arn.as_deref() != Some(&to.arn));
                        entries.push(ours(to));
                    }
                    Change::Remove(g) => entries.retain(|e| e.arn.as_deref() != Some(&g.arn)),
                }
                landed.change(c.clone());
                // "halfway" lands its first change, then fails.
                if cluster == "halfway" {
                    return Err("the second write was refused".into());
                }
            }
            Ok(Applied {
                decided,
                attempts: 1,
            })
        }
    }

    fn ours(g: &Grant) -> CurrentEntry {
        CurrentEntry {
            arn: Some(g.arn.clone()),
            username: Some(g.username.clone()),
            groups: g.groups.clone(),
            id: None,
            policies: None,
            held_by: None,
            owner: Owner::Us { marked: true },
            source: g.source.clone(),
            levels_record: None,
        }
    }

    fn settings(clusters: &str, extra: &[(&str, &str)]) -> Settings {
        let extra: HashMap<String, String> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| match k {
            "CLUSTER_NAMES" => Some(clusters.into()),
            other => extra.get(other).cloned(),
        })
        .unwrap()
    }

    fn admin(name: &str, value: &str) -> Principal {
        Principal {
            kind: crate::core::grants::PrincipalKind::User,
            name: name.into(),
            arn: format!("arn:aws:iam::123456789012:user/{name}"),
            id: None,
            tags: vec![("eks-cluster-admin".into(), value.into())],
            groups: vec![],
        }
    }

    fn rec(
        clusters: &str,
        extra: &[(&str, &str)],
        users: Vec<Principal>,
        fail: bool,
    ) -> Reconciler<FakeIam, MemStore> {
        Reconciler::new(
            settings(clusters, extra),
            FakeIam { users, fail },
            MemStore::default(),
        )
    }

    fn full() -> Value {
        serde_json::json!({"action": "reconcile"})
    }

    /// A manual full reconcile forced by a person now.
    fn forced_now() -> Value {
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        serde_json::json!({"action": "reconcile", "force": true, "forceAt": now})
    }

    fn seed(r: &Reconciler<FakeIam, MemStore>, cluster: &str, names: &[&str]) {
        r.store.clusters.lock().unwrap().insert(
            cluster.into(),
            names
                .iter()
                .map(|n| {
                    ours(&Grant {
                        arn: format!("arn:aws:iam::123456789012:user/{n}"),
                        username: (*n).into(),
                        groups: vec!["system:masters".into()],
                        id: None,
                        policies: vec![],
                        ..Default::default()
                    })
                })
                .collect(),
        );
    }

    #[tokio::test]
    async fn iam_failure_writes_nothing() {
        for ev in [
            full(),
            serde_json::json!({"action": "reconcile", "user": "a"}),
        ] {
            let r = rec("prod", &[], vec![admin("a", "true")], true);
            let e = r.handle(&ev, Clock::unbounded()).await.unwrap_err();
            assert!(matches!(e, ReconcileError::Iam(_)), "{e}");
            assert!(e.to_string().contains("nothing was written"));
            assert!(
                r.store.log.lock().unwrap().is_empty(),
                "no cluster may be touched after a failed IAM read"
            );
        }
    }

    #[tokio::test]
    async fn every_cluster_is_read_and_planned_before_any_is_written() {
        let r = rec("a b c", &[], vec![admin("x", "true")], false);
        r.handle(&full(), Clock::unbounded()).await.unwrap();
        let log = r.store.log.lock().unwrap().clone();
        let first_apply = log.iter().position(|l| l.starts_with("apply")).unwrap();
        assert_eq!(
            log[..first_apply].len(),
            3,
            "all three reads come before the first write: {log:?}"
        );
    }

    #[tokio::test]
    async fn one_failing_cluster_does_not_stop_the_others() {
        let r = rec("broken prod", &[], vec![admin("a", "true")], false);
        let e = r.handle(&full(), Clock::unbounded()).await.unwrap_err();
        let ReconcileError::Clusters { report, summary } = e else {
            panic!("wrong error")
        };
        assert!(summary.contains("cluster broken: unreachable"), "{summary}");
        assert_eq!(report.clusters[0].status, Status::Failed);
        assert_eq!(report.clusters[1].status, Status::Ok);
        assert_eq!(report.clusters[1].added.len(), 1);
        assert_eq!(report.metrics.len(), 2);
        assert_eq!(report.metrics[0]["Failed"], 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_cluster_costs_its_deadline_and_the_others_are_written() {
        let r = rec(
            "slow prod",
            &[("CLUSTER_TIMEOUT_SECONDS", "5")],
            vec![admin("a", "true")],
            false,
        );
        let t0 = Instant::now();
        let e = r.handle(&full(), Clock::unbounded()).await.unwrap_err();
        // The hung read costs its 5 s; the healthy cluster's write still has its own budget after it.
        assert_eq!(t0.elapsed(), Duration::from_millis(5001));
        let ReconcileError::Clusters { report, summary } = e else {
            panic!()
        };
        assert!(summary.contains("no answer within 5000 ms"), "{summary}");
        assert!(report.clusters[1].written);
        // Each cluster's duration is its own work: the hung one its 5 s, the healthy one its 1 ms write.
        assert_eq!(report.clusters[0].duration_ms, 5000);
        assert_eq!(report.clusters[1].duration_ms, 1);
        assert_eq!(report.metrics[1]["Duration"], 1);
        // The Lambda's remaining time cuts the deadline shorter (less the safety margin).
        let t0 = Instant::now();
        let clock = Clock {
            now: SystemTime::now(),
            lambda_deadline: Some(t0 + Duration::from_secs(4)),
        };
        let e = r.handle(&full(), clock).await.unwrap_err();
        assert_eq!(t0.elapsed(), Duration::from_secs(1));
        let ReconcileError::Clusters { report, .. } = e else {
            panic!()
        };
        // Past the Lambda's own deadline less the margin, nothing more is started.
        assert_eq!(report.clusters[1].status, Status::Failed);
    }

    #[tokio::test]
    async fn guard_refuses_removals_on_full_reconcile_and_force_overrides() {
        // Typo'd tag key: nobody carries it, 4 owned entries of users IAM still has would go.
        let r = rec(
            "prod",
            &[("ADMIN_TAG_KEY", "eks-cluster-admn")],
            ["a", "b", "c", "d"]
                .iter()
                .map(|n| admin(n, "true"))
                .collect(),
            false,
        );
        seed(&r, "prod", &["a", "b", "c", "d"]);
        let e = r.handle(&full(), Clock::unbounded()).await.unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("no-tagged-principals") && msg.contains("\"force\":true"),
            "{msg}"
        );
        let ReconcileError::Clusters { report, .. } = e else {
            panic!()
        };
        assert_eq!(report.clusters[0].status, Status::Guarded);
        assert_eq!(
            report.audit.iter().filter(|a| a.action == "guard").count(),
            4
        );
        assert_eq!(
            r.store.clusters.lock().unwrap()["prod"].len(),
            4,
            "nothing removed"
        );

        let forced = r.handle(&forced_now(), Clock::unbounded()).await.unwrap();
        assert_eq!(forced.clusters[0].removed.len(), 4);
        assert!(r.store.clusters.lock().unwrap()["prod"].is_empty());
    }

    #[tokio::test]
    async fn an_expired_grant_is_revoked_as_an_expiry_and_counts_for_the_guard() {
        let expiring = |name: &str, when: &str| {
            let mut p = admin(name, "true");
            p.tags
                .push(("eks-cluster-admin-expires".into(), when.into()));
            p
        };
        let clock = |s: &str| Clock {
            now: SystemTime::from(s.parse::<jiff::Timestamp>().unwrap()),
            lambda_deadline: None,
        };
        let users = vec![
            expiring("a", "2026-12-02T18:00:00Z"),
            expiring("b", "2026-12-02T18:00:00Z"),
            admin("c", "true"),
        ];
        let r = rec("prod", &[("MAX_REMOVALS", "1")], users, false);
        // Before the expiry: granted, and the report says until when.
        let before = r
            .handle(&full(), clock("2026-12-02T17:59:59Z"))
            .await
            .unwrap();
        assert_eq!(before.clusters[0].added.len(), 3);
        let grant = before
            .audit
            .iter()
            .find(|a| a.principal.ends_with("/a"))
            .unwrap();
        assert_eq!(grant.action, "grant");
        // At the expiry: two removals, over MAX_REMOVALS=1: an expiry is a removal like any other.
        let e = r
            .handle(&full(), clock("2026-12-02T18:00:00Z"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("max-removals"), "{e}");
        assert_eq!(r.store.clusters.lock().unwrap()["prod"].len(), 3);
        // Forced: both go, audited as `expire` and counted as Expired, not Revoked.
        let report = r
            .handle(
                &serde_json::json!({"action": "reconcile", "force": true, "forceAt": "2026-12-02T17:59:00Z"}),
                clock("2026-12-02T18:00:01Z"),
            )
            .await
            .unwrap();
        let actions: Vec<&str> = report.audit.iter().map(|a| a.action).collect();
        assert_eq!(actions, ["expire", "expire"], "{:?}", report.audit);
        assert!(
            report.audit[0]
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("force")),
            "a forced expiry says it was forced"
        );
        assert_eq!(report.metrics[0]["Expired"], 2);
        assert_eq!(report.metrics[0]["Revoked"], 0);
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.contains("expired at 2026-12-02T18:00:00Z"))
        );
        assert_eq!(r.store.clusters.lock().unwrap()["prod"].len(), 1);
    }

    #[tokio::test]
    async fn removals_over_the_cap_are_refused_but_adds_go_through() {
        let r = rec(
            "prod",
            &[("MAX_REMOVALS", "2")],
            vec![admin("new", "true"), admin("keep", "false")],
            false,
        );
        seed(&r, "prod", &["a", "b", "c"]);
        let e = r.handle(&full(), Clock::unbounded()).await.unwrap_err();
        assert!(
            e.to_string().contains("3 removals exceed MAX_REMOVALS=2"),
            "{e}"
        );
        let entries = r.store.clusters.lock().unwrap()["prod"].clone();
        assert_eq!(entries.len(), 4, "3 kept, 1 added");
        // A single-user event is not capped.
        let r2 = rec("prod", &[("MAX_REMOVALS", "1")], vec![], false);
        seed(&r2, "prod", &["a"]);
        r2.handle(
            &serde_json::json!({"action": "reconcile", "user": "a"}),
            Clock::unbounded(),
        )
        .await
        .unwrap();
        assert!(r2.store.clusters.lock().unwrap()["prod"].is_empty());
    }

    #[tokio::test]
    async fn what_landed_before_a_failure_is_audited_and_reported() {
        // Two grants planned; the store lands the first and then fails.
        let r = rec(
            "halfway",
            &[],
            vec![admin("a", "true"), admin("b", "true")],
            false,
        );
        let e = r.handle(&full(), Clock::unbounded()).await.unwrap_err();
        let ReconcileError::Clusters { report, summary } = e else {
            panic!()
        };
        assert!(
            summary.contains("the second write was refused"),
            "{summary}"
        );
        let c = &report.clusters[0];
        assert_eq!(c.status, Status::Failed);
        assert!(c.written, "something landed");
        assert_eq!(c.added, ["arn:aws:iam::123456789012:user/a"]);
        assert_eq!(c.not_landed, ["arn:aws:iam::123456789012:user/b"]);
        let grants: Vec<&AuditRecord> = report
            .audit
            .iter()
            .filter(|a| a.action == "grant")
            .collect();
        assert_eq!(grants.len(), 1);
        assert!(grants[0].applied && grants[0].principal.ends_with("/a"));
        assert_eq!(report.metrics[0]["Granted"], 1);
        assert_eq!(report.metrics[0]["Failed"], 1);
    }

    #[tokio::test]
    async fn a_replaced_user_is_one_change_under_the_cap() {
        // Two users deleted and re-created (new ids) with MAX_REMOVALS=1: both stay admin in one run.
        let r = rec(
            "prod",
            &[("MAX_REMOVALS", "1")],
            ["a", "b"]
                .iter()
                .map(|n| Principal {
                    id: Some(format!("AIDANEW{n}")),
                    ..admin(n, "true")
                })
                .collect(),
            false,
        );
        seed(&r, "prod", &["a", "b"]);
        for e in r.store.clusters.lock().unwrap().get_mut("prod").unwrap() {
            e.id = Some(format!("AIDAOLD{}", e.username.as_deref().unwrap()));
        }
        let report = r.handle(&full(), Clock::unbounded()).await.unwrap();
        let c = &report.clusters[0];
        assert_eq!(c.status, Status::Ok);
        assert!(c.guard.is_none(), "{:?}", c.guard);
        assert_eq!(c.added.len(), 2);
        assert_eq!(c.removed.len(), 2);
        let entries = r.store.clusters.lock().unwrap()["prod"].clone();
        assert_eq!(entries.len(), 2, "no duplicates: {entries:?}");
    }

    #[tokio::test]
    async fn dry_run_from_payload_or_settings_never_applies() {
        for (extra, ev) in [
            (
                &[][..],
                serde_json::json!({"action": "reconcile", "dryRun": true}),
            ),
            (
                &[("DRY_RUN", "true")][..],
                serde_json::json!({"action": "reconcile", "dryRun": false}),
            ),
        ] {
            let r = rec("prod", extra, vec![admin("a", "true")], false);
            let report = r.handle(&ev, Clock::unbounded()).await.unwrap();
            assert!(report.dry_run);
            assert_eq!(report.clusters[0].added.len(), 1);
            assert!(report.audit.iter().all(|a| a.dry_run && !a.applied));
            assert!(
                !r.store
                    .log
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|l| l.starts_with("apply")),
                "a dry run never applies"
            );
        }
    }

    #[tokio::test]
    async fn audit_records_carry_the_trigger() {
        let r = rec("prod", &[], vec![admin("new-admin-test", "true")], false);
        let ev: Value = serde_json::from_slice(
            &std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/events/tag-user.json")).unwrap(),
        )
        .unwrap();
        let report = r.handle(&ev, Clock::unbounded()).await.unwrap();
        let a = &report.audit[0];
        assert_eq!(a.action, "grant");
        assert_eq!(a.principal, "arn:aws:iam::123456789012:user/new-admin-test");
        assert_eq!(
            a.trigger.actor.as_ref().unwrap().arn.as_deref(),
            Some("arn:aws:sts::123456789012:assumed-role/PlatformAdmins/jane")
        );
        assert!(a.applied && !a.dry_run);
    }

    #[tokio::test]
    async fn a_force_is_honoured_only_for_minutes_after_it_was_made() {
        let r = rec("prod", &[("MAX_REMOVALS", "1")], vec![], false);
        seed(&r, "prod", &["a", "b"]);
        let at = |s: &str| Clock {
            now: SystemTime::from(s.parse::<jiff::Timestamp>().unwrap()),
            lambda_deadline: None,
        };
        let ev = serde_json::json!({"action": "reconcile", "force": true, "forceAt": "2026-12-07T10:00:00Z"});
        // A Lambda retry an hour later, or a forceAt far ahead of the clock: refused before anything is read.
        for now in [
            "2026-12-07T11:00:00Z",
            "2026-12-07T10:05:01Z",
            "2026-12-07T09:58:00Z",
        ] {
            let e = r.handle(&ev, at(now)).await.unwrap_err();
            assert_eq!(e.kind(), "InvalidEvent", "{now}: {e}");
            assert!(e.to_string().contains("honoured for 5 minutes"), "{e}");
            assert!(
                r.store.log.lock().unwrap().is_empty(),
                "{now}: nothing read"
            );
        }
        let report = r.handle(&ev, at("2026-12-07T10:04:00Z")).await.unwrap();
        assert_eq!(report.clusters[0].removed.len(), 2);
    }

    #[tokio::test]
    async fn an_event_of_another_account_is_ignored() {
        let r = rec(
            "prod",
            &[("FUNCTION_ROLE_ARN", "arn:aws:iam::123456789012:role/fn")],
            vec![admin("new-admin-test", "true")],
            false,
        );
        let mut ev: Value = serde_json::from_slice(
            &std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/events/tag-user.json")).unwrap(),
        )
        .unwrap();
        ev["detail"]["recipientAccountId"] = "210987654321".into();
        let report = r.handle(&ev, Clock::unbounded()).await.unwrap();
        let why = report.ignored.unwrap();
        assert!(
            why.contains("210987654321") && why.contains("123456789012"),
            "{why}"
        );
        assert!(r.store.log.lock().unwrap().is_empty());
        // The account the runtime tells wins over the configured one.
        let mut intent = event::parse(&ev).unwrap();
        intent.home_account = Some("210987654321".into());
        ev["account"] = "210987654321".into();
        intent.accounts = event::parse(&ev).unwrap().accounts;
        let report = r.run(intent, Clock::unbounded()).await.unwrap();
        assert!(report.ignored.is_none());
        assert_eq!(report.clusters[0].added.len(), 1);
    }

    /// Lines that remember what was written, in order.
    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);

    impl Lines for Seen {
        fn audit(&self, r: &AuditRecord) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{} {}", r.action, r.principal));
        }
        fn metric(&self, _: &Value) {
            self.0.lock().unwrap().push("metric".into());
        }
    }

    #[tokio::test]
    async fn a_write_is_recorded_as_it_lands_and_the_rest_after() {
        let seen = Arc::new(Seen::default());
        let r = rec(
            "halfway",
            &[],
            vec![admin("a", "true"), admin("b", "true")],
            false,
        )
        .with_lines(seen.clone());
        let e = r.handle(&full(), Clock::unbounded()).await.unwrap_err();
        let ReconcileError::Clusters { report, .. } = e else {
            panic!()
        };
        let lines = seen.0.lock().unwrap().clone();
        assert_eq!(
            lines,
            ["grant arn:aws:iam::123456789012:user/a", "metric"],
            "the landed grant, then the cluster's metric line"
        );
        let written: Vec<String> = report
            .audit
            .iter()
            .map(|a| format!("{} {}", a.action, a.principal))
            .collect();
        assert_eq!(
            written,
            lines[..1],
            "the report carries exactly what was written"
        );
    }

    #[tokio::test]
    async fn failed_cloudtrail_call_is_ignored() {
        let r = rec("prod", &[], vec![], false);
        let ev: Value = serde_json::from_slice(
            &std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/events/tag-user-failed.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let report = r.handle(&ev, Clock::unbounded()).await.unwrap();
        assert!(report.ignored.unwrap().contains("AccessDenied"));
        assert!(r.store.log.lock().unwrap().is_empty());
    }
}
