//! What the CLI prints: the plan table, and the audit and metric lines (the same lines the Lambda prints).

use crate::core::audit::AuditRecord;
use crate::core::plan::Change;
use crate::core::ports::Lines;
use crate::core::reconcile::{ClusterReport, Report, Status};
use std::io::Write;

/// Audit records and metric lines as JSON lines on stdout (Lambda, where CloudWatch Logs reads them) or
/// stderr (the CLI, whose stdout carries the report), each written and flushed the moment it is made.
pub struct StreamLines {
    pub stdout: bool,
}

impl StreamLines {
    fn write(&self, line: &str) {
        let written = if self.stdout {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}").and_then(|()| out.flush())
        } else {
            let mut out = std::io::stderr().lock();
            writeln!(out, "{line}").and_then(|()| out.flush())
        };
        if let Err(e) = written {
            tracing::error!(error = %e, "could not write an audit or metric line");
        }
    }
}

impl Lines for StreamLines {
    fn audit(&self, record: &AuditRecord) {
        match serde_json::to_string(record) {
            Ok(line) => self.write(&line),
            Err(e) => tracing::error!(error = %e, "could not serialise an audit record"),
        }
    }

    fn metric(&self, line: &serde_json::Value) {
        self.write(&line.to_string());
    }
}

pub fn render_table(report: &Report) -> String {
    let mut out = String::new();
    for c in &report.clusters {
        let status = match c.status {
            Status::Ok => String::new(),
            Status::Guarded => " [GUARDED]".into(),
            Status::Conflict => " [OWNERSHIP UNCLEAR]".into(),
            Status::Failed => " [FAILED]".into(),
        };
        out.push_str(&format!(
            "cluster {} ({}){status}: {} to add, {} to update, {} to remove, {} unchanged, {} skipped\n",
            c.cluster,
            c.store,
            c.added.len(),
            c.updated.len(),
            c.removed.len(),
            c.unchanged,
            c.skipped.len()
        ));
        if let Some(e) = &c.error {
            out.push_str(&format!("  error: {e}\n"));
            continue;
        }
        if let Some(g) = &c.guard {
            out.push_str(&format!("  guard: {}\n", g.message));
        }
        out.push_str(&table_rows(c));
    }
    for n in &report.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out
}

fn table_rows(c: &ClusterReport) -> String {
    let mut rows: Vec<[String; 4]> = vec![[
        "ACTION".into(),
        "PRINCIPAL".into(),
        "USERNAME".into(),
        "GROUPS".into(),
    ]];
    for ch in &c.changes {
        let (action, g, from) = match ch {
            Change::Add(g) => ("add", g, None),
            Change::Update { from, to } => ("update", to, Some(from)),
            Change::Remove(g) => ("remove", g, None),
        };
        let groups = match from {
            Some(f) if f.groups != g.groups => {
                format!("{} -> {}", f.groups.join(","), g.groups.join(","))
            }
            _ => g.groups.join(","),
        };
        let user = match from {
            Some(f) if f.username != g.username => format!("{} -> {}", f.username, g.username),
            _ => g.username.clone(),
        };
        rows.push([action.into(), g.arn.clone(), user, groups]);
    }
    if let Some(g) = c.guard.as_ref().filter(|g| !g.forced) {
        for r in &g.refused {
            rows.push([
                "refused".into(),
                r.grant.arn.clone(),
                r.grant.username.clone(),
                format!("guard rule {}", r.rule.name()),
            ]);
        }
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
