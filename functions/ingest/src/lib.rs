//! The `ingest` Lambda: new CloudTrail objects in S3 → KMS events in the lake.
//!
//! One handler for the three ways S3 announces an object (the payload types are in
//! [`event`]):
//!
//! * an S3 event notification (`Records[].eventSource == "aws:s3"`), invoked directly;
//! * SQS messages (`Records[].eventSource == "aws:sqs"`) whose bodies are S3 notifications,
//!   EventBridge "Object Created" events (the template's path: EventBridge → SQS → Lambda),
//!   or S3 notifications wrapped by SNS. The answer is an `SqsBatchResponse`, so only the
//!   messages whose objects failed are retried (and land in the DLQ after the queue's
//!   `maxReceiveCount`); `s3:TestEvent` messages are acknowledged and ignored;
//! * an EventBridge "Object Created" event, invoked directly.
//!
//! Keys in S3 notifications are URL-encoded (`+` is a space); EventBridge keys are not.
//! Digests are recorded in the lake's `digests` table; Insights files and other keys are
//! skipped and logged, not errors.
//!
//! An invocation makes one commit to the lake's `kms_events` table, whatever the number of
//! objects in its batch, so the table gains about one file per event day per invocation.
//! Ingestion is exactly once per object: the lake's `objects` table records every object
//! committed, and a redelivered message's object is not read again.

pub mod event;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse};
use kms_audit::ingest::object_name::{ObjectKind, SkipReason, classify_name};
use kms_audit::ingest::{
    Counts, IngestError, IngestOptions, ObjectError, SourceObject, ingest_with,
};
use kms_audit::lake::compact::CompactError;
use kms_audit::lake::{LakeStore, object_file_stem};
use kms_audit::s3::{Aws, S3Lake, S3Object, S3Uri};
use lambda_runtime::LambdaEvent;
use serde_json::{Value, json};

pub use event::{EventError, IngestEvent, Notification, ObjectRef, Work};

/// Errors that fail a whole invocation (Lambda then retries it, or sends it to the
/// function's failure destination).
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Config(#[from] lambda_common::ConfigError),
    #[error("opening the lake: {0}")]
    Lake(#[from] kms_audit::lake::LakeError),
    #[error(
        "unrecognised event (fields {fields:?}): not an S3 notification, EventBridge event, SQS batch or compaction request"
    )]
    Unrecognised { fields: Vec<String> },
    #[error(transparent)]
    Event(#[from] EventError),
    #[error("{failed} of {total} object(s) failed: {first}")]
    Objects {
        failed: usize,
        total: usize,
        #[source]
        first: ObjectError,
    },
    #[error("compaction: {0}")]
    Compact(#[from] CompactError),
    #[error("ingest: {0}")]
    Ingest(#[from] IngestError),
    #[error("the ingest task stopped: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// The handler and what it builds once per cold start: the AWS clients and the lake.
#[derive(Debug, Clone)]
pub struct Handler {
    aws: Aws,
    lake: Arc<dyn LakeStore>,
}

impl Handler {
    /// Builds the handler from the environment: `KMS_AUDIT_LAKE=s3://bucket/prefix`, the
    /// AWS configuration chain. Must run inside the tokio runtime.
    pub async fn from_env() -> Result<Handler, HandlerError> {
        let uri = lambda_common::lake_from_env()?;
        let aws = Aws::load().await;
        Handler::new(aws, &uri)
    }

    pub fn new(aws: Aws, lake: &S3Uri) -> Result<Handler, HandlerError> {
        let lake = S3Lake::open(&aws, lake)?;
        Ok(Handler {
            aws,
            lake: Arc::new(lake),
        })
    }

    /// Handles one invocation. SQS invocations answer with the failed message ids; direct
    /// invocations fail when any object failed, so Lambda retries them.
    pub async fn handle(&self, event: LambdaEvent<IngestEvent>) -> Result<Value, HandlerError> {
        let started = Instant::now();
        let request_id = event.context.request_id.clone();
        let deadline = stop_taking_objects(event.context.deadline);
        let (answer, stats) = match event.payload {
            IngestEvent::Compact(req) => return self.compact(req.days(), req.vacuum_days).await,
            IngestEvent::Unrecognised(v) => {
                let fields = v
                    .as_object()
                    .map(|o| o.keys().take(8).cloned().collect())
                    .unwrap_or_default();
                return Err(HandlerError::Unrecognised { fields });
            }
            IngestEvent::Sqs(batch) => {
                // (message id, what its body asks, or why it cannot be read)
                let messages: Vec<(String, Result<Work, EventError>)> = batch
                    .0
                    .records
                    .iter()
                    .map(|m| {
                        let work = m
                            .body
                            .as_deref()
                            .ok_or(EventError::NoBody)
                            .and_then(Notification::from_text)
                            .and_then(|n| n.work());
                        (m.message_id.clone().unwrap_or_default(), work)
                    })
                    .collect();
                let mut all = Vec::new();
                for (_, work) in &messages {
                    if let Ok(Work::Objects(objs)) = work {
                        all.extend(objs.iter().cloned());
                    }
                }
                let (outcomes, stats) = self.ingest(&all, deadline).await?;
                let mut failures = Vec::new();
                for (id, work) in &messages {
                    let failed = match work {
                        Ok(Work::Objects(objs)) => {
                            objs.iter().any(|o| outcomes.get(&o.uri()) != Some(&true))
                        }
                        Ok(Work::TestEvent) => {
                            tracing::info!(message_id = %id, "s3:TestEvent acknowledged");
                            false
                        }
                        Ok(Work::Nothing(why)) => {
                            tracing::info!(message_id = %id, reason = %why, "nothing to ingest");
                            false
                        }
                        Err(why) => {
                            // Not retryable, but kept: after maxReceiveCount it is in the DLQ
                            // for a person to look at.
                            tracing::error!(message_id = %id, reason = %why, "unreadable message");
                            true
                        }
                    };
                    if failed {
                        let mut f = BatchItemFailure::default();
                        f.item_identifier = id.clone();
                        failures.push(f);
                    }
                }
                let mut response = SqsBatchResponse::default();
                response.batch_item_failures = failures;
                let answer = serde_json::to_value(&response).unwrap_or(Value::Null);
                (answer, stats)
            }
            IngestEvent::Direct(notification) => {
                let objs = match notification.work()? {
                    Work::Objects(o) => o,
                    Work::TestEvent | Work::Nothing(_) => Vec::new(),
                };
                let (_, mut stats) = self.ingest(&objs, deadline).await?;
                if let Some(first) = stats.first_failure.take() {
                    emit_metrics(&stats, started.elapsed().as_secs_f64());
                    return Err(HandlerError::Objects {
                        failed: stats.objects_failed as usize,
                        total: objs.len(),
                        first,
                    });
                }
                (stats.summary(), stats)
            }
        };
        emit_metrics(&stats, started.elapsed().as_secs_f64());
        tracing::info!(
            request_id = %request_id,
            objects = stats.objects,
            objects_failed = stats.objects_failed,
            objects_skipped = stats.objects_skipped,
            records = stats.counts.records,
            kms_events = stats.counts.kms_events,
            skipped = stats.counts.skipped,
            rejected = stats.counts.rejected,
            "invocation done"
        );
        Ok(answer)
    }

    /// Compacts the recent days (late events land in past days, so a few of them), then
    /// vacuums when asked.
    async fn compact(&self, days: u32, vacuum_days: Option<u64>) -> Result<Value, HandlerError> {
        use kms_audit::lake::compact::{CompactOptions, compact};
        let opts = CompactOptions::default();
        let today = kms_audit::time::now_micros().div_euclid(kms_audit::time::DAY_MICROS);
        let wanted: Vec<String> = (0..i64::from(days))
            .map(|d| kms_audit::time::format_day(today - d))
            .collect();
        let lake = self.lake.clone();
        let (reports, vacuumed) = tokio::task::spawn_blocking(move || {
            let reports = compact(lake.as_ref(), Some(&wanted), &opts)?;
            let vacuumed = match vacuum_days {
                Some(d) => Some(kms_audit::lake::compact::vacuum(
                    lake.as_ref(),
                    chrono::Duration::days(d.min(3650) as i64),
                    false,
                )?),
                None => None,
            };
            Ok::<_, CompactError>((reports, vacuumed))
        })
        .await??;
        if let Some(v) = &vacuumed {
            tracing::info!(files_deleted = v.files.len(), "vacuumed");
        }
        for r in &reports {
            tracing::info!(
                partition = %r.partition,
                files_in = r.files_in,
                files_out = r.files_out,
                rows_in = r.rows_in,
                rows_out = r.rows_out,
                duplicates_dropped = r.duplicates_dropped,
                version = r.version,
                "partition compacted"
            );
        }
        Ok(json!({
            "days": reports,
            "vacuumed": vacuumed.map(|v| v.files.len()),
        }))
    }

    /// Ingests objects (skipping non-logs by name) on blocking threads. Returns, per object
    /// URI, whether it is done (ingested or skipped by name).
    async fn ingest(
        &self,
        objects: &[ObjectRef],
        deadline: Option<Instant>,
    ) -> Result<(BTreeMap<String, bool>, Stats), HandlerError> {
        let mut outcomes = BTreeMap::new();
        let mut stats = Stats::default();
        let handle = tokio::runtime::Handle::current();
        let mut sources = Vec::new();
        for o in objects {
            let uri = o.uri();
            if outcomes.contains_key(&uri) {
                continue; // the same object twice in one batch
            }
            match classify_name(&uri) {
                // Digests go to the `digests` table (log-file integrity).
                ObjectKind::Log(_) | ObjectKind::Json | ObjectKind::Skip(SkipReason::Digest) => {
                    sources.push(S3Object::new(
                        &self.aws,
                        handle.clone(),
                        &o.bucket,
                        &o.key,
                        o.size,
                    ));
                    outcomes.insert(uri, false);
                }
                ObjectKind::Skip(reason) => {
                    tracing::info!(object = %uri, reason = %reason, "skipped by name");
                    stats.objects_skipped += 1;
                    outcomes.insert(uri, true);
                }
            }
        }
        if sources.is_empty() {
            return Ok((outcomes, stats));
        }
        let lake = self.lake.clone();
        let uris: Vec<String> = sources.iter().map(|s| s.uri().to_owned()).collect();
        // One commit for the whole batch.
        let opts = IngestOptions {
            commit_objects: usize::MAX,
            commit_bytes: u64::MAX,
            checkpoint_objects: CHECKPOINT_OBJECTS,
            deadline,
            ..IngestOptions::default()
        };
        let mut run = tokio::task::spawn_blocking(move || {
            let run = ingest_with(&sources, lake.as_ref(), &opts, &|_| {})?;
            for f in &run.failures {
                if !f.retryable() {
                    record_object_failure(lake.as_ref(), f);
                }
            }
            Ok::<_, IngestError>(run)
        })
        .await??;
        // Every object not failed is done: read now, or found in the lake already.
        let failed: std::collections::HashSet<&str> =
            run.failures.iter().map(|f| f.object.as_str()).collect();
        for uri in &uris {
            if !failed.contains(uri.as_str()) {
                outcomes.insert(uri.clone(), true);
            }
        }
        for w in &run.warnings {
            tracing::warn!(warning = %w, "ingest");
        }
        for r in &run.reports {
            tracing::info!(
                object = %r.uri,
                records = r.counts.records,
                kms_events = r.counts.kms_events,
                skipped = r.counts.skipped,
                rejected = r.counts.rejected,
                bytes_in = r.counts.bytes_in,
                version = r.version,
                sha256 = %r.sha256,
                seconds = r.seconds,
                "object ingested"
            );
            if r.counts.rejected > 0 {
                tracing::warn!(
                    object = %r.uri,
                    rejected = r.counts.rejected,
                    rejects_file = r.rejects_file.as_deref().unwrap_or(""),
                    first_reason = r.reject_examples.first().map(|x| x.reason.as_str()).unwrap_or(""),
                    "records rejected"
                );
            }
        }
        for f in &run.failures {
            tracing::error!(
                object = %f.object,
                error = %f,
                retryable = f.retryable(),
                "object failed; its message will be retried, then sent to the DLQ"
            );
        }
        if stats.first_failure.is_none() {
            stats.first_failure = std::mem::take(&mut run.failures).into_iter().next();
        }
        stats.objects += run.objects;
        stats.objects_already_ingested += run.objects_already_ingested;
        stats.digests += run.digests;
        stats.objects_failed += run.objects_failed;
        stats.counts.add(&run.counts);
        Ok((outcomes, stats))
    }
}

/// Time to commit what was read and answer before Lambda's own deadline.
pub const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_secs(60);

/// A batch of at least this many objects is followed by a checkpoint of its version.
/// Every reader and every commit replays the log entries after the last checkpoint, and an
/// entry lists its objects at about 570 bytes each. A table checkpoints every
/// `CHECKPOINT_INTERVAL` (10) versions, and one created before that every 100: there,
/// 100 entries of batches of up to 1,000 objects would be up to 57 MB to replay (about
/// 9 ms per MB), against at most 5.6 MB with this bound.
pub const CHECKPOINT_OBJECTS: usize = 100;

/// When to stop starting objects, from the invocation's deadline (milliseconds since the
/// epoch): [`DEADLINE_MARGIN`] before it. The objects left fail as retryable, so their
/// messages come back as batch item failures.
pub fn stop_taking_objects(deadline_ms: u64) -> Option<Instant> {
    if deadline_ms == 0 {
        return None;
    }
    let now_ms = (kms_audit::time::now_micros() / 1000).max(0) as u64;
    let left = std::time::Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    Some(Instant::now() + left.saturating_sub(DEADLINE_MARGIN))
}

/// Writes why an object cannot be ingested to `<lake>/rejects/<stem>.object-error.json`,
/// next to the per-record rejects, so the reason outlives the logs.
fn record_object_failure(lake: &dyn LakeStore, f: &ObjectError) {
    let rel = format!("rejects/{}.object-error.json", object_file_stem(&f.object));
    let body = json!({
        "object": f.object,
        "error": f.to_string(),
        "retryable": f.retryable(),
        "records_before_failure": f.records_before_failure,
        "at": kms_audit::time::format_micros(kms_audit::time::now_micros()),
    });
    let bytes = serde_json::to_vec_pretty(&body).unwrap_or_default();
    if let Err(e) = lake.write(&rel, &bytes) {
        tracing::error!(object = %f.object, error = %e, "could not record the failure in the lake");
    }
}

/// Totals of an invocation.
#[derive(Debug, Default)]
pub struct Stats {
    pub objects: u64,
    pub objects_failed: u64,
    pub objects_skipped: u64,
    /// Objects the lake held already (a redelivery): not read again.
    pub objects_already_ingested: u64,
    /// Digest objects recorded in the lake's `digests` table (counted in `objects` too).
    pub digests: u64,
    pub counts: Counts,
    /// The first object that failed, with its cause.
    pub first_failure: Option<ObjectError>,
}

impl Stats {
    fn summary(&self) -> Value {
        json!({
            "objects": self.objects,
            "objects_failed": self.objects_failed,
            "objects_skipped": self.objects_skipped,
            "objects_already_ingested": self.objects_already_ingested,
            "digests": self.digests,
            "records": self.counts.records,
            "kms_events": self.counts.kms_events,
            "skipped": self.counts.skipped,
            "rejected": self.counts.rejected,
        })
    }
}

/// The namespace of the function's CloudWatch metrics.
pub const METRICS_NAMESPACE: &str = "KmsAudit";

/// One CloudWatch Embedded Metric Format line (CloudWatch turns it into metrics).
pub fn emf_line(stats: &Stats, seconds: f64, timestamp_ms: u64) -> Value {
    let metric = |name: &str, unit: &str| json!({"Name": name, "Unit": unit});
    json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": METRICS_NAMESPACE,
                "Dimensions": [["Function"]],
                "Metrics": [
                    metric("Objects", "Count"),
                    metric("ObjectsFailed", "Count"),
                    metric("ObjectsSkipped", "Count"),
                    metric("Records", "Count"),
                    metric("KmsEvents", "Count"),
                    metric("Rejected", "Count"),
                    metric("BytesIn", "Bytes"),
                    metric("BytesDecompressed", "Bytes"),
                    metric("Duration", "Seconds"),
                ]
            }]
        },
        "Function": "ingest",
        "Objects": stats.objects,
        "ObjectsFailed": stats.objects_failed,
        "ObjectsSkipped": stats.objects_skipped,
        "Records": stats.counts.records,
        "KmsEvents": stats.counts.kms_events,
        "Rejected": stats.counts.rejected,
        "BytesIn": stats.counts.bytes_in,
        "BytesDecompressed": stats.counts.bytes_decompressed,
        "Duration": seconds,
    })
}

fn emit_metrics(stats: &Stats, seconds: f64) {
    let ts = (kms_audit::time::now_micros() / 1000) as u64;
    // EMF must be its own line on stdout, not inside a tracing record.
    println!("{}", emf_line(stats, seconds, ts));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_names_every_metric_it_carries() {
        let line = emf_line(&Stats::default(), 1.5, 7);
        let metrics = line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(metrics.len(), 9);
        for m in metrics {
            let name = m["Name"].as_str().unwrap_or_default();
            assert!(line.get(name).is_some(), "{name} has no value");
        }
        assert_eq!(line["_aws"]["Timestamp"], 7);
    }
}
