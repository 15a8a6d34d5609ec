//! EventBridge: every audit record of an invocation is also put on the event bus as one event (`source`
//! `eks-admin-sync`, `detail-type` `EKS admin access granted` / `revoked` / `expired` / `updated` /
//! `guarded` / …, `detail` = the record), so that a security team sees grants where it already watches.
//!
//! `PutEvents` takes at most 10 entries a call (EventBridge API reference, `PutEvents`: "Entries … Maximum
//! number of 10 items"). A call can succeed with some entries failed (`FailedEntryCount`, an `ErrorCode` on
//! each failed entry): those are put again, a bounded number of times. Publishing never undoes a write: a
//! failure is reported (`events` in the report) and counted (`EventsNotPublished`), and the records are in
//! the logs either way.

use crate::core::audit::{AuditRecord, EVENT_SOURCE, Published, detail_type};
use aws_sdk_eventbridge::error::DisplayErrorContext;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use futures_util::{StreamExt, stream};
use std::time::Duration;

/// EventBridge's limit of entries per `PutEvents` call.
pub const MAX_ENTRIES: usize = 10;
/// Calls per batch: the first and two more for entries that failed.
const ATTEMPTS: u32 = 3;
/// Batches in flight at once: a full reconcile of hundreds of grants is tens of batches, and at a real
/// round trip (tens of milliseconds) one after another would add seconds to the run.
pub const CONCURRENCY: usize = 8;

pub struct EventBus {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBus {
    pub fn new(conf: &aws_config::SdkConfig, bus: &str) -> Self {
        EventBus {
            client: aws_sdk_eventbridge::Client::new(conf),
            bus: bus.to_string(),
        }
    }

    /// What a publish cut short by its time limit came to: none of the records is known to be on the bus
    /// (some batches may have been put before the cut).
    pub fn timed_out(&self, records: usize, time: std::time::Duration) -> Published {
        Published {
            bus: self.bus.clone(),
            published: 0,
            failed: records,
            errors: vec![format!(
                "PutEvents did not finish within {} ms (the time a run gives the bus); some of these events may \
                 have been put before the cut, the others were not; the records are in the logs",
                time.as_millis()
            )],
        }
    }

    /// Puts every record on the bus, 10 a call, retrying failed entries; what happened, never an error.
    pub async fn publish(&self, records: &[AuditRecord]) -> Published {
        let mut out = Published {
            bus: self.bus.clone(),
            ..Default::default()
        };
        let mut entries = Vec::with_capacity(records.len());
        for r in records {
            match self.entry(r) {
                Ok(e) => entries.push(e),
                Err(e) => {
                    out.failed += 1;
                    out.errors.push(e);
                }
            }
        }
        let batches: Vec<(usize, usize, Vec<String>)> = stream::iter(entries.chunks(MAX_ENTRIES))
            .map(|batch| self.put_batch(batch.to_vec()))
            .buffered(CONCURRENCY)
            .collect()
            .await;
        for (ok, failed, errors) in batches {
            out.published += ok;
            out.failed += failed;
            out.errors.extend(errors);
        }
        out.errors.dedup();
        out
    }

    fn entry(&self, r: &AuditRecord) -> Result<PutEventsRequestEntry, String> {
        let detail =
            serde_json::to_string(r).map_err(|e| format!("record not serialisable: {e}"))?;
        Ok(PutEventsRequestEntry::builder()
            .source(EVENT_SOURCE)
            .detail_type(detail_type(r.action))
            .detail(detail)
            .event_bus_name(&self.bus)
            .build())
    }

    /// One batch of at most 10: (accepted, not accepted, errors).
    async fn put_batch(
        &self,
        mut pending: Vec<PutEventsRequestEntry>,
    ) -> (usize, usize, Vec<String>) {
        let mut accepted = 0;
        let mut errors = Vec::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            // Only the last attempt's errors are reported: an earlier one that a retry overcame is not news.
            errors.clear();
            let resp = self
                .client
                .put_events()
                .set_entries(Some(pending.clone()))
                .send()
                .await;
            let out = match resp {
                Ok(o) => o,
                Err(e) => {
                    errors.push(format!(
                        "EventBridge PutEvents to {:?} failed: {}",
                        self.bus,
                        DisplayErrorContext(&e)
                    ));
                    continue;
                }
            };
            // The result entries are in the order of the request's: an entry with an error code failed.
            let results = out.entries();
            let mut again = Vec::new();
            for (i, entry) in pending.into_iter().enumerate() {
                match results.get(i).and_then(|r| r.error_code()) {
                    None if i < results.len() => accepted += 1,
                    code => {
                        let msg = results.get(i).and_then(|r| r.error_message()).unwrap_or("");
                        errors.push(format!(
                            "EventBridge refused an event: {} {msg}",
                            code.unwrap_or("(no result entry)")
                        ));
                        again.push(entry);
                    }
                }
            }
            pending = again;
            if pending.is_empty() {
                break;
            }
        }
        (accepted, pending.len(), errors)
    }
}
