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

/// When the wake-up for an expiry runs: the first whole minute after it. EventBridge Scheduler invokes
/// "with 60 second precision": a schedule set to run at 1:00 invokes its target between 1:00:00 and 1:00:59
/// (Scheduler user guide, "Schedule types"). A schedule within the expiry's own minute could therefore run
/// before the expiry (and the run it starts would still see the grant valid); one at the next whole minute
/// runs after it. So a grant ends at most about two minutes after its expiry, plus the run's own time.
pub fn wake_at(expiry: jiff::Timestamp) -> jiff::Timestamp {
    let secs = expiry.as_second().div_euclid(60) * 60 + 60;
    jiff::Timestamp::from_second(secs).unwrap_or(expiry)
}

/// The schedule expression for a time (UTC, whole seconds): `at(2026-12-02T18:01:00)`.
pub fn expression(t: jiff::Timestamp) -> String {
    format!("at({})", t.strftime("%Y-%m-%dT%H:%M:%S"))
}

/// The time an `at(...)` expression names (UTC).
pub fn time_of(expr: &str) -> Option<jiff::Timestamp> {
    let inner = expr.strip_prefix("at(")?.strip_suffix(')')?;
    format!("{inner}Z").parse().ok()
}

/// What to do, given the next expiry (RFC 3339), whether the run was full, the schedule there now and the
/// time now. A schedule whose time is at or before now has fired (or is about to, in its minute of
/// precision) and cannot fire again: it counts as none. A wake-up is never set at or before now (a
/// one-time schedule in the past never runs): it then goes to the next whole minute.
pub fn decide(next: Option<&str>, full: bool, current: Option<&str>, now: jiff::Timestamp) -> Want {
    let pending = current.filter(|c| time_of(c).is_some_and(|t| t > now));
    let wanted = next
        .and_then(|n| n.parse::<jiff::Timestamp>().ok())
        .map(|e| wake_at(e).max(wake_at(now)));
    let Some(w) = wanted else {
        // Nothing expires: a full reconcile deletes what is there (fired or not); an event knows too
        // little to.
        return if full && current.is_some() {
            Want::None
        } else {
            Want::Keep
        };
    };
    let w_expr = expression(w);
    match pending {
        Some(c) if full && c == w_expr => Want::Keep,
        // An earlier wake-up still to come covers an event's expiry: the full reconcile it starts sets the next.
        Some(c) if !full && time_of(c).is_some_and(|t| t <= w) => Want::Keep,
        _ => Want::At(w_expr),
    }
}

impl Wakeup {
    pub fn new(conf: &aws_config::SdkConfig, schedule: ExpirySchedule) -> Self {
        Wakeup {
            client: aws_sdk_scheduler::Client::new(conf),
            schedule,
        }
    }

    /// What keeping the schedule cut short by its time limit came to, for the report.
    pub fn timed_out(&self, time: std::time::Duration) -> Value {
        let s = &self.schedule;
        let e = format!(
            "EventBridge Scheduler did not answer within {} ms (the time a run gives the wake-up); expiries wait \
             for the next run",
            time.as_millis()
        );
        tracing::error!(error = %e, "could not keep the expiry wake-up");
        json!({"schedule": format!("{}/{}", s.group, s.name), "error": e})
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
        match decide(next, full, current.as_deref(), jiff::Timestamp::now()) {
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

    fn t(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_wake_up_is_the_first_whole_minute_after_the_expiry() {
        for (expiry, want) in [
            ("2026-12-02T18:00:00Z", "at(2026-12-02T18:01:00)"),
            ("2026-12-02T18:00:01Z", "at(2026-12-02T18:01:00)"),
            ("2026-12-02T18:00:59Z", "at(2026-12-02T18:01:00)"),
            ("2026-12-31T23:59:30Z", "at(2027-01-01T00:00:00)"),
        ] {
            assert_eq!(expression(wake_at(t(expiry))), want, "{expiry}");
        }
        assert_eq!(
            time_of("at(2026-12-02T18:01:00)"),
            Some(t("2026-12-02T18:01:00Z"))
        );
        assert_eq!(time_of("rate(5 minutes)"), None);
    }

    proptest::proptest! {
        /// Scheduler may run a schedule at any second of its minute: the run it starts always finds the
        /// expiry passed, and it runs within two minutes of it.
        #[test]
        fn every_run_of_the_wake_up_is_after_the_expiry(secs in 1_700_000_000i64..1_900_000_000, jitter in 0i64..60) {
            let expiry = jiff::Timestamp::from_second(secs).unwrap();
            let at = time_of(&expression(wake_at(expiry))).unwrap();
            let runs = at.checked_add(jiff::SignedDuration::from_secs(jitter)).unwrap();
            proptest::prop_assert!(runs > expiry);
            proptest::prop_assert!(runs.duration_since(expiry) <= jiff::SignedDuration::from_secs(120));
        }
    }

    #[test]
    fn who_may_move_the_schedule() {
        let now = t("2026-12-02T12:00:00Z");
        let at = |s: &str| Want::At(s.to_string());
        let cases: &[(Option<&str>, bool, Option<&str>, Want)] = &[
            // A full reconcile sets exactly the next expiry's wake-up, or deletes.
            (
                Some("2026-12-02T18:00:00Z"),
                true,
                None,
                at("at(2026-12-02T18:01:00)"),
            ),
            (
                Some("2026-12-02T18:00:00Z"),
                true,
                Some("at(2026-12-02T13:00:00)"),
                at("at(2026-12-02T18:01:00)"),
            ),
            (
                Some("2026-12-02T18:00:00Z"),
                true,
                Some("at(2026-12-02T18:01:00)"),
                Want::Keep,
            ),
            (None, true, Some("at(2026-12-02T13:00:00)"), Want::None),
            (None, true, Some("at(2026-12-02T11:00:00)"), Want::None),
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
                Some("at(2026-12-02T18:01:00)"),
                at("at(2026-12-02T13:01:00)"),
            ),
            (
                Some("2026-12-02T18:00:00Z"),
                false,
                Some("at(2026-12-02T11:00:00)"),
                at("at(2026-12-02T18:01:00)"),
            ),
            (
                Some("2026-12-02T18:00:00Z"),
                false,
                None,
                at("at(2026-12-02T18:01:00)"),
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

    #[test]
    fn a_schedule_that_has_fired_is_set_again() {
        // The old +2 s wake-up for an expiry at 12:00:00 could run at 12:00:02.4 within its minute and find
        // the grant still valid at 11:59:59.6 by a clock a little behind: the expression it would want is
        // the one that just fired. At or before now, that one counts as gone.
        let expiry = "2026-12-02T12:00:00Z";
        let fired = "at(2026-12-02T12:00:00)";
        for full in [true, false] {
            assert_eq!(
                decide(Some(expiry), full, Some(fired), t("2026-12-02T12:00:00Z")),
                Want::At("at(2026-12-02T12:01:00)".into()),
                "full {full}"
            );
        }
        // Even when the expiry's own wake-up is the one that fired (a clock behind the scheduler's), the
        // next one is in the future: never at or before now.
        assert_eq!(
            decide(
                Some("2026-12-02T11:59:30Z"),
                true,
                Some(fired),
                t("2026-12-02T12:00:05Z")
            ),
            Want::At("at(2026-12-02T12:01:00)".into())
        );
    }
}
