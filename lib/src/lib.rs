//! # kms-audit
//!
//! Turns AWS CloudTrail logs into a typed, queryable audit trail of AWS KMS key usage.
//!
//! The pipeline, one folder per responsibility:
//!
//! | where | what |
//! |---|---|
//! | [`schema`] | every column of `kms_events`: name, Arrow type, meaning |
//! | [`ingest`] | objects → records → KMS events → the lake, with exact accounting |
//! | [`ingest::object_name`] | which S3 keys are CloudTrail logs, digests, Insights files |
//! | [`ingest::reader`] | streaming gunzip and record splitting, memory bounded by one record |
//! | [`ingest::record`] | the "is this KMS?" test and the parse of one record into a [`ingest::record::KmsEvent`] |
//! | [`ingest::batch`] | KMS events → Arrow record batches |
//! | [`lake`] | where rows land: the [`LakeStore`] trait, the local lake, staged files; [`lake::table`] (the Delta tables `kms_events` and `objects`), [`lake::compact`] (compaction, vacuum), [`lake::convert`] |
//! | [`integrity`] | CloudTrail digests: the `digests` table, signatures, the chain, each log's SHA-256 (`verify`) |
//! | [`sql`] | DataFusion over the lake: the session, views, SQL functions, [`sql::policy`] |
//! | [`catalog`] | the `queries/` folders embedded at build time, and their references |
//! | [`detect`] | rules, the engine that runs them, alert deduplication, [`detect::sinks`] |
//! | [`report`] | the compliance report: sections, alerts, HTML/JSON/CSV |
//! | [`s3`] | S3 sources and lakes (feature `aws`); no AWS SDK type in the rest of the API |
//! | [`time`] | CloudTrail timestamps and `--since`/`--until` arguments |
//!
//! The rules themselves live in `queries/detections/<rule_id>.sql` + `.yaml`; the Lambda
//! triggers in `functions/ingest/src/event.rs`; the CLI's commands in
//! `cli/src/commands/<command>.rs`.
//!
//! ```no_run
//! use kms_audit::{LocalLake, ingest_all, local_sources};
//!
//! let lake = LocalLake::open("./kms-lake")?;
//! let (objects, _skipped) = local_sources(&["./cloudtrail".into()])?;
//! let run = ingest_all(&objects, &lake, &|_| {})?;
//! assert!(run.counts.reconciles());
//! println!("{} KMS events from {} records", run.counts.kms_events, run.counts.records);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "query")]
pub mod catalog;
#[cfg(feature = "query")]
pub mod detect;
pub mod ingest;
#[cfg(feature = "query")]
pub mod integrity;
pub mod lake;
#[cfg(feature = "query")]
pub mod report;
#[cfg(feature = "aws")]
pub mod s3;
pub mod schema;
#[cfg(feature = "query")]
pub mod sql;
pub mod time;

#[cfg(feature = "query")]
pub use detect::{Alert, DetectError, Rule, Severity};
#[cfg(feature = "query")]
pub use ingest::ingest_all;
pub use ingest::{Counts, ObjectError, RunSummary, local_sources};
pub use lake::{LakeError, LakeStore, LocalLake};
#[cfg(feature = "query")]
pub use report::{Report, ReportError, ReportOptions};
pub use schema::COLUMNS;
#[cfg(feature = "query")]
pub use sql::QueryError;
