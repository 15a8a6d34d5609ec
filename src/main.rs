//! `eks-admin-sync`: the Lambda function when `AWS_LAMBDA_RUNTIME_API` is set, a CLI otherwise.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use eks_admin_sync::adapters::aws::{AwsTrust, DIRECTORY_TTL, Directory, Eks, Iam};
use eks_admin_sync::adapters::cli;
use eks_admin_sync::adapters::events::EventBus;
use eks_admin_sync::adapters::kube::KubeClients;
use eks_admin_sync::adapters::token::{Signer, StsTarget, exec_credential};
use eks_admin_sync::adapters::wakeup::Wakeup;
use eks_admin_sync::core::event::{Action, Intent, Trigger};
use eks_admin_sync::core::ports::Lines;
use eks_admin_sync::core::reconcile::{Clock, ReconcileError, Reconciler, Report};
use eks_admin_sync::core::settings::Settings;
use eks_admin_sync::store::Stores;
use eks_admin_sync::store::access_entries::{AccessEntryStore, Marks};
use eks_admin_sync::store::aws_auth::AwsAuthStore;
use eks_admin_sync::store::aws_auth::document::Deployment;
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::Value;
use std::io::{IsTerminal, Read};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[derive(Parser)]
#[command(
    name = "eks-admin-sync",
    version,
    about = "Keeps EKS cluster-admin access (EKS access entries or kube-system/aws-auth, by each cluster's authentication mode) in sync with IAM: tagged users and roles, IAM Identity Center permission sets, IAM groups.\n\nConfiguration comes from the environment (listed below) and the standard AWS SDK settings. Run inside Lambda (AWS_LAMBDA_RUNTIME_API set) it serves invocations instead.",
    after_long_help = eks_admin_sync::core::settings::help_text()
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Reconcile every managed cluster (or only the named users and roles) and print the result as JSON.
    Reconcile {
        /// Only reconcile this IAM user (repeatable).
        #[arg(long = "user", value_name = "NAME")]
        users: Vec<String>,
        /// Only reconcile this IAM role (repeatable).
        #[arg(long = "role", value_name = "NAME")]
        roles: Vec<String>,
        /// Plan and report without writing.
        #[arg(long)]
        dry_run: bool,
        /// Let this one run past the removal guard (MAX_REMOVALS, no principal carrying the tag key,
        /// an ownership record under another tag key).
        #[arg(long)]
        force: bool,
    },
    /// Show what a reconcile would change, per cluster, as a table. Writes nothing.
    Plan {
        /// Only plan for this IAM user (repeatable).
        #[arg(long = "user", value_name = "NAME")]
        users: Vec<String>,
        /// Only plan for this IAM role (repeatable).
        #[arg(long = "role", value_name = "NAME")]
        roles: Vec<String>,
        /// Show what a forced reconcile would do.
        #[arg(long)]
        force: bool,
    },
    /// Run exactly the Lambda handler on a JSON event from FILE (or - for stdin) and print the result.
    HandleEvent {
        /// Path to the event JSON, or - for standard input.
        file: String,
    },
    /// Print an ExecCredential for kubectl, like `aws eks get-token` (signed locally, no STS call).
    Token {
        /// The EKS cluster name the token is for.
        #[arg(long)]
        cluster: String,
    },
}

type App = Reconciler<Iam, Stores>;

/// The reconciler and what announces its audit records, built once per process.
struct Function {
    app: App,
    events: Option<EventBus>,
    wakeup: Option<Wakeup>,
    lines: Arc<dyn Lines>,
}

/// The longest each optional call of a run (putting the events on the bus, keeping the expiry wake-up) may
/// take. They run after every write landed and its audit line was written, and never past the Lambda's own
/// deadline less the safety margin: a slow or unreachable service (a VPC without its endpoint) costs at most
/// this, and never a write or its record.
const OPTIONAL_CALL_TIME: Duration = Duration::from_secs(10);

impl Function {
    /// The time an optional call may take now: [`OPTIONAL_CALL_TIME`], cut to what is left of the Lambda's
    /// time (less the margin kept to report and log).
    fn optional_time(clock: &Clock) -> Duration {
        let left = clock.lambda_deadline.map(|d| {
            d.checked_sub(eks_admin_sync::core::reconcile::SAFETY_MARGIN)
                .map_or(Duration::ZERO, |stop| {
                    stop.saturating_duration_since(tokio::time::Instant::now())
                })
        });
        left.map_or(OPTIONAL_CALL_TIME, |l| l.min(OPTIONAL_CALL_TIME))
    }

    /// Puts a written run's audit records on the event bus and says so in the report (a dry run announces
    /// nothing). Never fails the run: a failure is in `report.events` and in a metric line.
    async fn announce(&self, report: &mut Report, clock: &Clock) {
        let Some(bus) = &self.events else { return };
        if report.dry_run || report.audit.is_empty() {
            return;
        }
        let time = Self::optional_time(clock);
        let published = match tokio::time::timeout(time, bus.publish(&report.audit)).await {
            Ok(p) => p,
            Err(_) => bus.timed_out(report.audit.len(), time),
        };
        if published.failed > 0 {
            tracing::error!(bus = %published.bus, failed = published.failed, errors = ?published.errors, "audit events not published; the records are in the logs");
        }
        let ts_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
        let line = eks_admin_sync::core::audit::published_metric_line(
            ts_ms,
            &self.app.settings.deployment_id,
            &published,
        );
        self.lines.metric(&line);
        report.metrics.push(line);
        report.events = Some(published);
    }

    /// Keeps the one-time schedule at the run's next expiry (a dry run leaves it alone).
    async fn wake_up_at_the_next_expiry(&self, report: &mut Report, clock: &Clock) {
        let Some(w) = &self.wakeup else { return };
        if report.dry_run {
            return;
        }
        let time = Self::optional_time(clock);
        let kept = w.keep(report.next_expiry.as_deref(), report.full);
        report.wakeup = Some(match tokio::time::timeout(time, kept).await {
            Ok(v) => v,
            Err(_) => w.timed_out(time),
        });
    }

    /// One run: the reconcile (whose audit and metric lines are written as they are made), then the
    /// optional calls, each in its own bounded time.
    async fn run(&self, intent: Intent, clock: Clock) -> Result<Report, ReconcileError> {
        let mut result = self.app.run(intent, clock).await;
        let report = match &mut result {
            Ok(r) => Some(r),
            Err(ReconcileError::Clusters { report, .. }) => Some(report.as_mut()),
            Err(_) => None,
        };
        if let Some(r) = report {
            self.announce(r, &clock).await;
            self.wake_up_at_the_next_expiry(r, &clock).await;
        }
        result
    }
}

struct Aws {
    conf: aws_config::SdkConfig,
    signer: Signer,
}

async fn load_aws() -> anyhow::Result<Aws> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    let trust = AwsTrust::from_env(|k| std::env::var_os(k));
    if let Some(client) = trust.https_client().map_err(anyhow::Error::msg)? {
        loader = loader.http_client(client);
    }
    let conf = loader.load().await;
    let region = conf
        .region()
        .map(|r| r.to_string())
        .context("no AWS region: set AWS_REGION")?;
    let creds = conf
        .credentials_provider()
        .context("no AWS credentials provider configured")?;
    let ignore = std::env::var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
        .is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    let sts_override = if ignore {
        None
    } else {
        std::env::var("AWS_ENDPOINT_URL_STS")
            .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
            .ok()
            .filter(|s| !s.is_empty())
    };
    let target = StsTarget::new(&region, sts_override.as_deref())?;
    Ok(Aws {
        signer: Signer::new(creds, target),
        conf,
    })
}

/// The function with its clients; its audit and metric lines go to stdout (`lambda`) or stderr (the CLI).
fn build_function(aws: &Aws, settings: Settings, lambda: bool) -> Function {
    let events = settings
        .event_bus
        .as_deref()
        .map(|bus| EventBus::new(&aws.conf, bus));
    let wakeup = settings
        .expiry_schedule
        .clone()
        .map(|s| Wakeup::new(&aws.conf, s));
    let lines: Arc<dyn Lines> = Arc::new(cli::StreamLines { stdout: lambda });
    Function {
        app: build_app(aws, settings).with_lines(lines.clone()),
        events,
        wakeup,
        lines,
    }
}

fn build_app(aws: &Aws, settings: Settings) -> App {
    let eks = Eks::new(&aws.conf);
    let entries = AccessEntryStore::new(
        eks.client(),
        Marks {
            deployment: settings.deployment_id.clone(),
            tag_key: settings.tag_key.clone(),
        },
    );
    let directory = Arc::new(Directory::new(eks, DIRECTORY_TTL));
    let me = Deployment {
        id: settings.deployment_id.clone(),
        tag_key: settings.tag_key.clone(),
    };
    let aws_auth = AwsAuthStore::new(KubeClients::new(directory.clone(), aws.signer.clone()), me);
    let store = Stores::new(
        directory,
        aws_auth,
        entries,
        settings.access_store,
        settings.access_policies.clone(),
    );
    Reconciler::new(settings, Iam::new(&aws.conf), store)
}

fn init_tracing(json: bool) {
    use eks_admin_sync::core::settings::{DEFAULT_LOG_LEVEL, LOG_LEVEL};
    let mut filter = tracing_subscriber::EnvFilter::try_from_env(LOG_LEVEL.var)
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_LEVEL));
    // Whatever LOG_LEVEL says, aws-sigv4 stays at warn: at debug it logs canonical requests, and for the EKS
    // token those hold the session token.
    if let Ok(cap) = "aws_sigv4=warn".parse() {
        filter = filter.add_directive(cap);
    }
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    if json {
        b.json().with_current_span(false).without_time().init();
    } else {
        // Colour only for a person at a terminal: logs piped to a file or a collector stay plain text.
        b.with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .init();
    }
}

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async_main())
}

async fn async_main() -> std::process::ExitCode {
    let lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    if lambda {
        init_tracing(true);
        return match run_lambda().await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "lambda runtime stopped");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let cli = Cli::parse();
    init_tracing(false);
    match run_cli(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run_lambda() -> Result<(), lambda_runtime::Error> {
    // Everything below runs once per cold start; clients and caches live across warm invocations.
    // Each phase's cost is logged at debug level (`make bench` reads it to say where init time goes).
    let t0 = std::time::Instant::now();
    let settings = Settings::from_env()?;
    let t1 = std::time::Instant::now();
    let aws = load_aws().await?;
    let t2 = std::time::Instant::now();
    let app = build_function(&aws, settings, true);
    let t3 = std::time::Instant::now();
    tracing::debug!(
        settings_us = (t1 - t0).as_micros() as u64,
        aws_config_us = (t2 - t1).as_micros() as u64,
        clients_us = (t3 - t2).as_micros() as u64,
        "init phases"
    );
    let app = &app;
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<Value>| async move {
        let clock = lambda_clock(ev.context.deadline);
        let mut intent = match eks_admin_sync::core::event::parse(&ev.payload) {
            Ok(i) => i,
            Err(e) => return Err(diagnostic(&ReconcileError::Event(e))),
        };
        if matches!(intent.trigger.kind, "manual" | "expiry") {
            intent.trigger.event_id = Some(ev.context.request_id.clone());
        }
        // The account this function runs in: an event about another one is ignored.
        intent.home_account = account_of_function(&ev.context.invoked_function_arn);
        // Audit records and metric lines went to stdout as they were made (CloudWatch reads the EMF lines).
        let result = app.run(intent, clock).await;
        match result {
            Ok(report) => serde_json::to_value(&report).map_err(|e| Diagnostic {
                error_type: "ReportNotSerialisable".into(),
                error_message: e.to_string(),
            }),
            Err(e) => {
                if let ReconcileError::Clusters { report, .. } = &e {
                    tracing::error!(report = %serde_json::to_string(report).unwrap_or_default(), "clusters need attention");
                }
                Err(diagnostic(&e))
            }
        }
    }))
    .await
}

async fn run_cli(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Token { cluster } => {
            if !eks_admin_sync::core::settings::valid_cluster_name(&cluster) {
                bail!("{cluster:?} is not a valid EKS cluster name");
            }
            let aws = load_aws().await?;
            let (token, signed_at) = aws.signer.sign(&cluster).await?;
            println!("{}", exec_credential(&token, signed_at)?);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::HandleEvent { file } => {
            let mut bytes = Vec::new();
            if file == "-" {
                std::io::stdin()
                    .read_to_end(&mut bytes)
                    .context("reading the event from stdin")?;
            } else {
                bytes = std::fs::read(&file).with_context(|| format!("reading {file}"))?;
            }
            let intent = eks_admin_sync::core::event::parse_bytes(&bytes)?;
            run_intent(intent, false).await
        }
        Command::Reconcile {
            users,
            roles,
            dry_run,
            force,
        } => run_intent(intent_for(users, roles, dry_run, force)?, false).await,
        Command::Plan {
            users,
            roles,
            force,
        } => run_intent(intent_for(users, roles, true, force)?, true).await,
    }
}

/// The Lambda error for a failed invocation: a stable `errorType` and the operator's message.
fn diagnostic(e: &ReconcileError) -> Diagnostic {
    Diagnostic {
        error_type: e.kind().into(),
        error_message: e.to_string(),
    }
}

/// The account of a Lambda function's ARN (`arn:aws:lambda:REGION:ACCOUNT:function:NAME`).
fn account_of_function(arn: &str) -> Option<String> {
    let account = arn.split(':').nth(4)?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()))
        .then(|| account.to_string())
}

/// The Lambda's deadline (milliseconds since the epoch) as a tokio instant.
fn lambda_clock(deadline_ms: u64) -> Clock {
    let now = SystemTime::now();
    let now_ms = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let remaining = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    Clock {
        now,
        lambda_deadline: (deadline_ms > 0).then(|| tokio::time::Instant::now() + remaining),
    }
}

fn intent_for(
    users: Vec<String>,
    roles: Vec<String>,
    dry_run: bool,
    force: bool,
) -> anyhow::Result<Intent> {
    use eks_admin_sync::core::event::{Named, valid_user_name};
    let mut named: Vec<Named> = users.iter().map(|u| Named::user(u)).collect();
    named.extend(roles.iter().map(|r| Named::role(r)));
    for n in &named {
        if !valid_user_name(&n.name) {
            let kind = match n.kind {
                eks_admin_sync::core::grants::PrincipalKind::User => "user",
                eks_admin_sync::core::grants::PrincipalKind::Role => "role",
            };
            bail!("{:?} is not a valid IAM {kind} name", n.name);
        }
    }
    named.sort();
    named.dedup();
    let action = if named.is_empty() {
        Action::ReconcileAll
    } else {
        Action::ReconcileNamed(named)
    };
    Ok(Intent {
        action,
        trigger: Trigger::of_kind("cli"),
        dry_run,
        force,
        force_at: None,
        accounts: Vec::new(),
        home_account: None,
    })
}

async fn run_intent(intent: Intent, table: bool) -> anyhow::Result<std::process::ExitCode> {
    let settings = Settings::from_env()?;
    let aws = load_aws().await?;
    // The same audit and metric lines as the Lambda, on stderr as they are made (stdout carries the report).
    let app = build_function(&aws, settings, false);
    let (report, err) = match app.run(intent, Clock::unbounded()).await {
        Ok(r) => (r, None),
        Err(ReconcileError::Clusters { report, summary }) => (*report, Some(summary)),
        Err(e) => return Err(e.into()),
    };
    if table {
        print!("{}", cli::render_table(&report));
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    match err {
        None => Ok(std::process::ExitCode::SUCCESS),
        Some(msg) => {
            eprintln!("error: {msg}");
            Ok(std::process::ExitCode::FAILURE)
        }
    }
}
