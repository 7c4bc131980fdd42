//! The `trail_events` table: CloudTrail's own events that switch KMS evidence off
//! ([`crate::ingest::trail`]), partitioned by `event_date`.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::ingest::trail::{TRAIL_PARTITION, TRAIL_TABLE, TrailEvent};
use crate::lake::table::{TableError, Tables};

fn fields(with_partition: bool) -> Vec<Field> {
    let text = |n: &str| Field::new(n, DataType::Utf8, true);
    let mut f = vec![
        text("event_id"),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("event_source", DataType::Utf8, false),
        Field::new("event_name", DataType::Utf8, false),
        text("aws_region"),
        text("account_id"),
        text("principal"),
        text("principal_type"),
        text("source_ip"),
        text("user_agent"),
        text("error_code"),
        text("error_message"),
        text("target"),
        Field::new("impact", DataType::Utf8, false),
        text("kms_key_id"),
        text("s3_bucket"),
        text("request_parameters"),
        Field::new("source_object", DataType::Utf8, false),
    ];
    if with_partition {
        f.push(Field::new(TRAIL_PARTITION, DataType::Date32, true));
    }
    f
}

/// The columns of `trail_events` (documented in docs/schema.md), the partition last.
pub fn trail_events_schema() -> SchemaRef {
    Arc::new(Schema::new(fields(true)))
}

/// The file columns (no partition).
pub fn trail_events_file_schema() -> SchemaRef {
    Arc::new(Schema::new(fields(false)))
}

fn batch(events: &[&TrailEvent]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let text = |f: fn(&TrailEvent) -> Option<&str>| -> ArrayRef {
        Arc::new(events.iter().map(|e| f(e)).collect::<StringArray>())
    };
    RecordBatch::try_new(
        trail_events_file_schema(),
        vec![
            text(|e| e.event_id.as_deref()),
            Arc::new(
                TimestampMicrosecondArray::from(
                    events.iter().map(|e| e.event_time).collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
            text(|e| Some(&e.event_source)),
            text(|e| Some(&e.event_name)),
            text(|e| e.aws_region.as_deref()),
            text(|e| e.account_id.as_deref()),
            text(|e| e.principal.as_deref()),
            text(|e| e.principal_type.as_deref()),
            text(|e| e.source_ip.as_deref()),
            text(|e| e.user_agent.as_deref()),
            text(|e| e.error_code.as_deref()),
            text(|e| e.error_message.as_deref()),
            text(|e| e.target.as_deref()),
            text(|e| Some(&e.impact)),
            text(|e| e.kms_key_id.as_deref()),
            text(|e| e.s3_bucket.as_deref()),
            text(|e| e.request_parameters.as_deref()),
            text(|e| Some(&e.source_object)),
        ],
    )
}

/// Appends trail events, one file per event day, in one commit.
pub async fn append_trail_events(
    tables: &Tables,
    events: &[TrailEvent],
) -> Result<i64, TableError> {
    let mut by_day: BTreeMap<i64, Vec<&TrailEvent>> = BTreeMap::new();
    for e in events {
        by_day
            .entry(e.event_time.div_euclid(crate::time::DAY_MICROS))
            .or_default()
            .push(e);
    }
    let mut batches = Vec::new();
    for (day, es) in by_day {
        let b = batch(&es).map_err(|source| TableError::Arrow {
            table: TRAIL_TABLE.into(),
            source,
        })?;
        batches.push((Some(crate::time::format_day(day)), b));
    }
    tables
        .append_small(TRAIL_TABLE, TRAIL_PARTITION, batches)
        .await
}
