//! # kms-audit
//!
//! Turns AWS CloudTrail logs into a typed, queryable audit trail of AWS KMS key usage.
//!
//! The pipeline, one module per stage:
//!
//! 1. [`object_name`]: which objects are CloudTrail logs (and which are digests, Insights
//!    files or something else), from the documented S3 key layout.
//! 2. [`reader`]: a streaming splitter from (gzipped) bytes to one record at a time, in
//!    memory bounded by the largest record, never by the object.
//! 3. [`record`]: a cheap "is this KMS?" test, then a zero-copy, schema-drift tolerant parse
//!    of KMS records into a [`record::KmsEvent`] with every column of [`schema::COLUMNS`].
//! 4. [`batch`] and [`lake`]: Arrow batches into Parquet files partitioned by event date,
//!    one deterministic file per (object, day), published atomically.
//! 5. [`ingest`]: the orchestration with exact accounting
//!    (`records == kms_events + skipped + rejected`) and typed per-object errors.
//! 6. [`query`] and [`udf`] (feature `query`): SQL over the lake with DataFusion, with
//!    helper functions such as [`policy`]'s key-policy analyser.
//! 7. [`generate`]: realistic synthetic CloudTrail trees for demos, tests and benchmarks.
//!
//! ```no_run
//! use kms_audit::ingest::{ingest_all, local_sources};
//! use kms_audit::lake::LocalLake;
//!
//! let lake = LocalLake::open("./kms-lake")?;
//! let (objects, _skipped) = local_sources(&["./cloudtrail".into()])?;
//! let run = ingest_all(&objects, &lake, &|_| {});
//! assert!(run.counts.reconciles());
//! println!("{} KMS events from {} records", run.counts.kms_events, run.counts.records);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod batch;
pub mod compact;
#[cfg(feature = "query")]
pub mod detect;
pub mod generate;
pub mod ingest;
pub mod lake;
pub mod lenient;
pub mod object_name;
pub mod policy;
#[cfg(feature = "query")]
pub mod query;
pub mod reader;
pub mod record;
#[cfg(feature = "query")]
pub mod report;
#[cfg(feature = "aws")]
pub mod s3;
pub mod schema;
#[cfg(feature = "query")]
pub mod sinks;
pub mod time;
#[cfg(feature = "query")]
pub mod udf;
