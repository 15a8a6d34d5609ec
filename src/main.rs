//! `eks-admin-sync`: the Lambda function when `AWS_LAMBDA_RUNTIME_API` is set, a CLI otherwise.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use eks_admin_sync::aws::{Eks, Iam};
use eks_admin_sync::cluster::{AwsAuthBackend, ClusterReport};
use eks_admin_sync::config::Settings;
use eks_admin_sync::event::Intent;
use eks_admin_sync::handler::{Handler, HandlerError, Report};
use eks_admin_sync::plan::Change;
use eks_admin_sync::token::{Signer, StsTarget, exec_credential};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use std::io::Read;

#[derive(Parser)]
#[command(
    name = "eks-admin-sync",
    version,
    about = "Keeps EKS cluster-admin mappings in kube-system/aws-auth in sync with tagged IAM users.\n\nConfiguration comes from the environment (CLUSTER_NAMES, ADMIN_TAG_KEY, ADMIN_GROUPS, USERNAME_TEMPLATE, DRY_RUN) and the standard AWS SDK settings. Run inside Lambda (AWS_LAMBDA_RUNTIME_API set) it serves invocations instead."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Reconcile every managed cluster (or only the named users) and print the result as JSON.
    Reconcile {
        /// Only reconcile this IAM user (repeatable).
        #[arg(long = "user", value_name = "NAME")]
        users: Vec<String>,
        /// Plan and report without writing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show what a reconcile would change, per cluster, as a table. Writes nothing.
    Plan {
        /// Only plan for this IAM user (repeatable).
        #[arg(long = "user", value_name = "NAME")]
        users: Vec<String>,
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

type AppHandler = Handler<Iam, AwsAuthBackend>;

struct Aws {
    conf: aws_config::SdkConfig,
    signer: Signer,
}

async fn load_aws() -> anyhow::Result<Aws> {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
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

fn build_handler(aws: &Aws, settings: Settings) -> AppHandler {
    let backend = AwsAuthBackend::new(Eks::new(&aws.conf), aws.signer.clone());
    Handler::new(settings, Iam::new(&aws.conf), backend)
}

fn init_tracing(json: bool) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("LOG_LEVEL")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
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
        b.with_writer(std::io::stderr).init();
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
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
    let settings = Settings::from_env()?;
    let aws = load_aws().await?;
    let handler = build_handler(&aws, settings);
    let handler = &handler;
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<Value>| async move {
        match handler.handle(&ev.payload).await {
            Ok(report) => Ok(serde_json::to_value(&report)?),
            Err(e) => {
                if let HandlerError::Clusters { report, .. } = &e {
                    tracing::error!(report = %serde_json::to_string(report).unwrap_or_default(), "partial failure");
                }
                Err(lambda_runtime::Error::from(e.to_string()))
            }
        }
    }))
    .await
}

async fn run_cli(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Token { cluster } => {
            if !eks_admin_sync::config::valid_cluster_name(&cluster) {
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
            let intent = eks_admin_sync::event::parse_bytes(&bytes)?;
            run_intent(intent, false).await
        }
        Command::Reconcile { users, dry_run } => {
            run_intent(intent_for(users, dry_run)?, false).await
        }
        Command::Plan { users } => run_intent(intent_for(users, true)?, true).await,
    }
}

fn intent_for(users: Vec<String>, dry_run: bool) -> anyhow::Result<Intent> {
    for u in &users {
        if !eks_admin_sync::event::valid_user_name(u) {
            bail!("{u:?} is not a valid IAM user name");
        }
    }
    Ok(if users.is_empty() {
        Intent::ReconcileAll { dry_run }
    } else {
        Intent::ReconcileUsers { users, dry_run }
    })
}

async fn run_intent(intent: Intent, table: bool) -> anyhow::Result<std::process::ExitCode> {
    let settings = Settings::from_env()?;
    let aws = load_aws().await?;
    let handler = build_handler(&aws, settings);
    let (report, err) = match handler.run(intent).await {
        Ok(r) => (r, None),
        Err(HandlerError::Clusters { report, failed }) => {
            let msg = failed
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n  ");
            (*report, Some(msg))
        }
        Err(e) => return Err(e.into()),
    };
    if table {
        print!("{}", render_table(&report));
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    match err {
        None => Ok(std::process::ExitCode::SUCCESS),
        Some(msg) => {
            eprintln!("error: some clusters failed:\n  {msg}");
            Ok(std::process::ExitCode::FAILURE)
        }
    }
}

fn render_table(report: &Report) -> String {
    let mut out = String::new();
    for c in &report.clusters {
        out.push_str(&format!(
            "cluster {}: {} to add, {} to update, {} to remove, {} unchanged, {} skipped\n",
            c.cluster,
            c.added.len(),
            c.updated.len(),
            c.removed.len(),
            c.unchanged,
            c.skipped.len()
        ));
        out.push_str(&table_rows(c));
    }
    for e in &report.errors {
        out.push_str(&format!("error: {e}\n"));
    }
    for n in &report.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out
}

fn table_rows(c: &ClusterReport) -> String {
    let mut rows: Vec<[String; 4]> = vec![[
        "ACTION".into(),
        "USER ARN".into(),
        "USERNAME".into(),
        "GROUPS".into(),
    ]];
    for ch in &c.changes {
        let (action, m, from) = match ch {
            Change::Add(m) => ("add", m, None),
            Change::Update { from, to } => ("update", to, Some(from)),
            Change::Remove(m) => ("remove", m, None),
        };
        let groups = match from {
            Some(f) if f.groups != m.groups => {
                format!("{} -> {}", f.groups.join(","), m.groups.join(","))
            }
            _ => m.groups.join(","),
        };
        let user = match from {
            Some(f) if f.username != m.username => format!("{} -> {}", f.username, m.username),
            _ => m.username.clone(),
        };
        rows.push([action.into(), m.arn.clone(), user, groups]);
    }
    for s in &c.skipped {
        rows.push([
            "skip".into(),
            s.arn.clone(),
            String::new(),
            s.reason.clone(),
        ]);
    }
    if rows.len() == 1 {
        return "  (no changes)\n".into();
    }
    let widths: Vec<usize> = (0..4)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        out.push_str("  ");
        for i in 0..4 {
            out.push_str(&format!("{:<w$}  ", r[i], w = widths[i]));
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
    }
    out
}
