//! The expiry wake-up: one EventBridge Scheduler one-time schedule per deployment (`at(...)`, UTC) that
//! invokes the function with a full reconcile ([`EXPIRY_PAYLOAD`]) when the earliest pending grant expires,
//! so that a revocation does not wait for the regular schedule.
//!
//! Who may move it: a full reconcile knows every grant, so it sets the schedule to the next expiry, or
//! deletes it when nothing expires. A scoped run (an event) knows only its principals, so it only brings the
//! schedule earlier (or sets it when there is none, or when the one there has already fired). A failure to
//! keep it never fails the run: expiries then wait for the next run, and the report and logs say so.

use crate::core::event::EXPIRY_PAYLOAD;
use crate::core::settings::ExpirySchedule;
use aws_sdk_scheduler::error::DisplayErrorContext;
use aws_sdk_scheduler::types::{
    ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, Target,
};
use serde_json::{Value, json};

/// Seconds after an expiry that the wake-up fires: the run it starts must find the expiry passed.
pub const AFTER_EXPIRY_SECONDS: i64 = 2;

pub struct Wakeup {
    client: aws_sdk_scheduler::Client,
    schedule: ExpirySchedule,
}

/// What a run wants of the schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// Fire at this `at(...)` expression.
    At(String),
    /// No schedule (a full reconcile found nothing that expires).
    None,
    /// Leave it as it is.
    Keep,
}

/// The schedule expression for an expiry (`2026-12-02T18:00:00Z` → `at(2026-12-02T18:00:02)`).
pub fn expression(expiry: &str) -> Option<String> {
    let t: jiff::Timestamp = expiry.parse().ok()?;
    let t = t
        .checked_add(jiff::SignedDuration::from_secs(AFTER_EXPIRY_SECONDS))
        .ok()?;
    Some(format!("at({})", t.strftime("%Y-%m-%dT%H:%M:%S")))
}

/// What to do, given the next expiry, whether the run was full, the schedule there now and the time now
/// (expressions compare as text: `at(YYYY-MM-DDTHH:MM:SS)`).
pub fn decide(next: Option<&str>, full: bool, current: Option<&str>, now: &str) -> Want {
    let wanted = next.and_then(expression);
    match (wanted, full) {
        (None, true) if current.is_some() => Want::None,
        (None, _) => Want::Keep,
        (Some(w), true) => {
            if current == Some(w.as_str()) {
                Want::Keep
            } else {
                Want::At(w)
            }
        }
        (Some(w), false) => match current {
            // An earlier wake-up still to come covers this one: the full reconcile it starts sets the next.
            Some(c) if c <= w.as_str() && c > now => Want::Keep,
            _ => Want::At(w),
        },
    }
}

impl Wakeup {
    pub fn new(conf: &aws_config::SdkConfig, schedule: ExpirySchedule) -> Self {
        Wakeup {
            client: aws_sdk_scheduler::Client::new(conf),
            schedule,
        }
    }

    /// Keeps the schedule at `next` (see the module). Returns what it did, for the report.
    pub async fn keep(&self, next: Option<&str>, full: bool) -> Value {
        let s = &self.schedule;
        let mut out = json!({"schedule": format!("{}/{}", s.group, s.name)});
        let result = self.apply(next, full).await;
        match result {
            Ok((change, at)) => {
                out["change"] = json!(change);
                if let Some(at) = at {
                    out["at"] = json!(at);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "could not keep the expiry wake-up; expiries wait for the next run");
                out["error"] = json!(e);
            }
        }
        out
    }

    async fn apply(
        &self,
        next: Option<&str>,
        full: bool,
    ) -> Result<(&'static str, Option<String>), String> {
        let current = self.current().await?;
        let now = format!(
            "at({})",
            jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S")
        );
        match decide(next, full, current.as_deref(), &now) {
            Want::Keep => Ok(("unchanged", current)),
            Want::None => {
                self.delete().await?;
                Ok(("deleted", None))
            }
            Want::At(at) => {
                let change = if current.is_some() {
                    "updated"
                } else {
                    "created"
                };
                self.put(&at, current.is_some()).await?;
                Ok((change, Some(at)))
            }
        }
    }

    /// The schedule's expression, or `None` when there is no schedule.
    async fn current(&self) -> Result<Option<String>, String> {
        let s = &self.schedule;
        match self
            .client
            .get_schedule()
            .group_name(&s.group)
            .name(&s.name)
            .send()
            .await
        {
            Ok(out) => Ok(out.schedule_expression().map(str::to_string)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|x| x.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(format!(
                "EventBridge Scheduler GetSchedule {}/{}: {}",
                s.group,
                s.name,
                DisplayErrorContext(&e)
            )),
        }
    }

    async fn put(&self, at: &str, exists: bool) -> Result<(), String> {
        let s = &self.schedule;
        let target = Target::builder()
            .arn(&s.target_arn)
            .role_arn(&s.role_arn)
            .input(EXPIRY_PAYLOAD)
            .build()
            .map_err(|e| e.to_string())?;
        let window = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(|e| e.to_string())?;
        let done = ActionAfterCompletion::None;
        let sent = if exists {
            self.client
                .update_schedule()
                .group_name(&s.group)
                .name(&s.name)
                .schedule_expression(at)
                .schedule_expression_timezone("UTC")
                .flexible_time_window(window)
                .target(target)
                .action_after_completion(done)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| DisplayErrorContext(&e).to_string())
        } else {
            self.client
                .create_schedule()
                .group_name(&s.group)
                .name(&s.name)
                .schedule_expression(at)
                .schedule_expression_timezone("UTC")
                .flexible_time_window(window)
                .target(target)
                .action_after_completion(done)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| DisplayErrorContext(&e).to_string())
        };
        sent.map_err(|e| format!("EventBridge Scheduler {}/{} at {at}: {e}", s.group, s.name))
    }

    async fn delete(&self) -> Result<(), String> {
        let s = &self.schedule;
        match self
            .client
            .delete_schedule()
            .group_name(&s.group)
            .name(&s.name)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|x| x.is_resource_not_found_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(format!(
                "EventBridge Scheduler DeleteSchedule {}/{}: {}",
                s.group,
                s.name,
                DisplayErrorContext(&e)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_fire_just_after_the_expiry() {
        assert_eq!(
            expression("2026-12-02T18:00:00Z").as_deref(),
            Some("at(2026-12-02T18:00:02)")
        );
        assert_eq!(
            expression("2026-12-31T23:59:59Z").as_deref(),
            Some("at(2027-01-01T00:00:01)")
        );
        assert_eq!(expression("soon"), None);
    }

    #[test]
    fn who_may_move_the_schedule() {
        let now = "at(2026-12-02T12:00:00)";
        let at = |s: &str| Want::At(s.to_string());
        let cases: &[(Option<&str>, bool, Option<&str>, Want)] = &[
            // A full reconcile sets exactly the next expiry, or deletes.
            (
                Some("2026-12-02T18:00:00Z"),
                true,
                None,
                at("at(2026-12-02T18:00:02)"),
            ),
            (
                Some("2026-12-02T18:00:00Z"),
                true,
                Some("at(2026-12-02T13:00:00)"),
                at("at(2026-12-02T18:00:02)"),
            ),
            (
                Some("2026-12-02T18:00:00Z"),
                true,
                Some("at(2026-12-02T18:00:02)"),
                Want::Keep,
            ),
            (None, true, Some("at(2026-12-02T13:00:00)"), Want::None),
            (None, true, None, Want::Keep),
            // An event only brings it earlier, or replaces one that has fired.
            (
                Some("2026-12-02T18:00:00Z"),
                false,
                Some("at(2026-12-02T13:00:00)"),
                Want::Keep,
            ),
            (
                Some("2026-12-02T13:00:00Z"),
                false,
                Some("at(2026-12-02T18:00:02)"),
                at("at(2026-12-02T13:00:02)"),
            ),
            (
                Some("2026-12-02T18:00:00Z"),
                false,
                Some("at(2026-12-02T11:00:00)"),
                at("at(2026-12-02T18:00:02)"),
            ),
            (
                Some("2026-12-02T18:00:00Z"),
                false,
                None,
                at("at(2026-12-02T18:00:02)"),
            ),
            (None, false, Some("at(2026-12-02T13:00:00)"), Want::Keep),
        ];
        for (next, full, current, want) in cases {
            assert_eq!(
                &decide(*next, *full, *current, now),
                want,
                "{next:?} {full} {current:?}"
            );
        }
    }
}
