//! Digests in the lake: the `digests` table ingest writes, and the evidence
//! `verify --lake` reads back from it and from `objects`, reading no log object again.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::digest::{Digest, DigestBody, DigestName, ListedLog};
use super::{Evidence, SeenLog, Window};
use crate::ingest::object_name::canonical_key;
use crate::lake::table::{
    AsOf, DIGESTS_PARTITION, DIGESTS_TABLE, Location, OBJECTS_TABLE, TableError, Tables,
};
use crate::sql::QueryError;

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The columns of `digests` (documented in docs/schema.md), the partition last.
pub fn digests_schema() -> SchemaRef {
    Arc::new(Schema::new(digests_fields(true)))
}

pub(crate) fn digests_fields(with_partition: bool) -> Vec<Field> {
    let text = |name: &str, null: bool| Field::new(name, DataType::Utf8, null);
    let mut f = vec![
        text("digest_object", false),
        text("source_uri", false),
        text("account_id", true),
        text("region", true),
        text("trail", true),
        text("home_region", true),
        Field::new("digest_start_time", ts(), true),
        Field::new("digest_end_time", ts(), true),
        text("digest_end_time_text", true),
        text("digest_s3_bucket", true),
        text("digest_s3_object", true),
        text("public_key_fingerprint", true),
        text("signature_algorithm", true),
        text("signature", true),
        text("digest_sha256", false),
        text("previous_digest_s3_bucket", true),
        text("previous_digest_s3_object", true),
        text("previous_digest_hash", true),
        text("previous_digest_signature", true),
        text("error", true),
        Field::new("log_count", DataType::Int64, false),
        text("log_s3_bucket", true),
        text("log_s3_object", true),
        text("log_object", true),
        text("log_sha256", true),
        Field::new("log_oldest_event_time", ts(), true),
        Field::new("log_newest_event_time", ts(), true),
        Field::new("ingested_at", ts(), false),
    ];
    if with_partition {
        f.push(Field::new(DIGESTS_PARTITION, DataType::Date32, true));
    }
    f
}

/// The rows of digests, one per listed log (one with no log columns for a digest that
/// lists none or could not be read), without the partition column.
pub fn digest_rows(
    digests: &[&Digest],
    ingested_at: i64,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let rows: Vec<(&Digest, Option<&ListedLog>)> = digests
        .iter()
        .flat_map(|d| {
            let logs: Vec<Option<&ListedLog>> = match &d.body {
                Ok(b) if !b.logs.is_empty() => b.logs.iter().map(Some).collect(),
                _ => vec![None],
            };
            logs.into_iter().map(move |l| (*d, l))
        })
        .collect();
    let text = |f: &dyn Fn(&Digest, Option<&ListedLog>) -> Option<String>| -> ArrayRef {
        Arc::new(rows.iter().map(|(d, l)| f(d, *l)).collect::<StringArray>())
    };
    let body = |d: &Digest| d.body.as_ref().ok().cloned();
    let time = |f: &dyn Fn(&Digest, Option<&ListedLog>) -> Option<i64>| -> ArrayRef {
        Arc::new(
            rows.iter()
                .map(|(d, l)| f(d, *l))
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        )
    };
    let b_text = |f: fn(&DigestBody) -> Option<String>| {
        text(&move |d: &Digest, _: Option<&ListedLog>| body(d).and_then(|b| f(&b)))
    };
    let columns: Vec<ArrayRef> = vec![
        text(&|d, _| Some(d.object.clone())),
        text(&|d, _| Some(d.source_uri.clone())),
        text(&|d, _| {
            d.name
                .as_ref()
                .map(|n| n.account.clone())
                .or_else(|| body(d)?.account_id)
        }),
        text(&|d, _| d.name.as_ref().map(|n| n.region.clone())),
        text(&|d, _| d.name.as_ref().map(|n| n.trail.clone())),
        text(&|d, _| d.name.as_ref().map(|n| n.home_region.clone())),
        time(&|d, _| d.body.as_ref().ok().map(|b| b.start)),
        time(&|d, _| d.body.as_ref().ok().map(|b| b.end)),
        b_text(|b| Some(b.end_text.clone())),
        b_text(|b| Some(b.bucket.clone())),
        b_text(|b| Some(b.key.clone())),
        b_text(|b| Some(b.fingerprint.clone())),
        b_text(|b| b.signature_algorithm.clone()),
        text(&|d, _| d.signature.clone()),
        text(&|d, _| Some(d.sha256.clone())),
        b_text(|b| b.previous_bucket.clone()),
        b_text(|b| b.previous_key.clone()),
        b_text(|b| b.previous_hash.clone()),
        b_text(|b| b.previous_signature.clone()),
        text(&|d, _| d.body.as_ref().err().cloned()),
        Arc::new(
            rows.iter()
                .map(|(d, _)| d.body.as_ref().map(|b| b.logs.len() as i64).unwrap_or(0))
                .collect::<Int64Array>(),
        ),
        text(&|_, l| l.map(|l| l.bucket.clone())),
        text(&|_, l| l.map(|l| l.key.clone())),
        text(&|_, l| l.map(|l| canonical_key(&l.key).unwrap_or_else(|| l.key.clone()))),
        text(&|_, l| l.map(|l| l.hash.clone())),
        time(&|_, l| l.and_then(|l| l.oldest_event_time)),
        time(&|_, l| l.and_then(|l| l.newest_event_time)),
        Arc::new(
            TimestampMicrosecondArray::from(vec![ingested_at; rows.len()]).with_timezone("UTC"),
        ),
    ];
    RecordBatch::try_new(Arc::new(Schema::new(digests_fields(false))), columns)
}

/// Records digests in `digests`, one file per date, in one commit. Returns the version.
pub async fn append_digests(tables: &Tables, digests: &[Digest]) -> Result<i64, TableError> {
    let mut by_day: BTreeMap<Option<String>, Vec<&Digest>> = BTreeMap::new();
    for d in digests {
        by_day
            .entry(d.name.as_ref().map(|n| n.date.clone()))
            .or_default()
            .push(d);
    }
    let now = crate::time::now_micros();
    let mut batches = Vec::new();
    for (day, ds) in by_day {
        let batch = digest_rows(&ds, now).map_err(|source| TableError::Arrow {
            table: DIGESTS_TABLE.into(),
            source,
        })?;
        batches.push((day, batch));
    }
    tables
        .append_small(DIGESTS_TABLE, DIGESTS_PARTITION, batches)
        .await
}

/// Which digests (canonical key, key date) `digests` already records.
pub async fn recorded_digests(
    tables: &Tables,
    wanted: &[(String, Option<String>)],
) -> Result<HashSet<String>, TableError> {
    if wanted.is_empty() {
        return Ok(HashSet::new());
    }
    tables
        .find_in_column(DIGESTS_TABLE, "digest_object", wanted)
        .await
}

/// The identity and key date of a digest object.
pub fn digest_identity(uri: &str) -> (String, Option<String>) {
    match DigestName::parse(uri) {
        Some(n) => (n.canonical, Some(n.date)),
        None => (uri.to_owned(), None),
    }
}

/// Dates to read for a window: a day either side, for the digests that chain into it
/// and the logs delivered across midnight. On the `_files` tables, whose partition is
/// text (`YYYY-MM-DD`, or the null partition's name), so the filter prunes files.
fn date_filter(column: &str, window: Window) -> String {
    let day = |t: i64| crate::time::format_day(t.div_euclid(crate::time::DAY_MICROS));
    let mut w = Vec::new();
    if let Some(s) = window.since {
        w.push(format!(
            "{column} >= '{}' AND {column} <> '{}'",
            day(s - crate::time::DAY_MICROS),
            crate::sql::NULL_PARTITION
        ));
    }
    if let Some(u) = window.until {
        w.push(format!(
            "{column} <= '{}'",
            day(u + crate::time::DAY_MICROS)
        ));
    }
    if w.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", w.join(" AND "))
    }
}

/// The evidence ingest recorded: the `digests` rows and the SHA-256 of every log in
/// `objects`, for the window's dates (and a day either side). Reads those two tables only.
pub async fn evidence_from_lake(loc: &Location, window: Window) -> Result<Evidence, QueryError> {
    let ctx = crate::sql::open(loc, &AsOf::Latest).await?;
    evidence_from_ctx(&ctx, window).await
}

/// [`evidence_from_lake`] from a session over the lake ([`crate::sql::open`]).
pub async fn evidence_from_ctx(
    ctx: &datafusion::prelude::SessionContext,
    window: Window,
) -> Result<Evidence, QueryError> {
    evidence_as_of(ctx, window, None).await
}

/// [`evidence_from_ctx`] as the lake stood at a `kms_events` version committed at a time
/// (microseconds): the objects that version's commits recorded and the digests ingested by
/// then. What a report that names its version reads, so that version reproduces it.
pub async fn evidence_as_of(
    ctx: &datafusion::prelude::SessionContext,
    window: Window,
    as_of: Option<(i64, i64)>,
) -> Result<Evidence, QueryError> {
    let and = |filter: String, extra: Option<String>| match (filter.is_empty(), extra) {
        (_, None) => filter,
        (true, Some(e)) => format!(" WHERE {e}"),
        (false, Some(e)) => format!("{filter} AND {e}"),
    };
    let digests_filter = and(
        date_filter(DIGESTS_PARTITION, window),
        as_of.map(|(_, t)| format!("CAST(ingested_at AS BIGINT) <= {t}")),
    );
    let objects_filter = and(
        date_filter(crate::lake::table::OBJECTS_PARTITION, window),
        as_of.map(|(v, _)| format!("table_version <= {v}")),
    );
    let digest_cols = digests_fields(false)
        .iter()
        .map(|f| match f.data_type() {
            DataType::Timestamp(..) => format!("CAST({} AS BIGINT) AS {}", f.name(), f.name()),
            _ => f.name().clone(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let digests = ctx
        .sql(&format!(
            "SELECT {digest_cols} FROM {DIGESTS_TABLE}_files{digests_filter}"
        ))
        .await?
        .collect()
        .await?;
    let objects = ctx
        .sql(&format!(
            "SELECT object, source_uri, sha256 FROM {OBJECTS_TABLE}_files{objects_filter}"
        ))
        .await?
        .collect()
        .await?;
    let mut ev = Evidence::default();
    for b in &objects {
        let (object, uri, sha) = (
            text_col(b, "object"),
            text_col(b, "source_uri"),
            text_col(b, "sha256"),
        );
        for i in 0..b.num_rows() {
            if let (Some(o), Some(u), Some(h)) = (get(&object, i), get(&uri, i), get(&sha, i)) {
                ev.logs.entry(o).or_insert(SeenLog {
                    source_uri: u,
                    sha256: Ok(h),
                });
            }
        }
    }
    let mut seen_logs: HashSet<(String, String)> = HashSet::new();
    for b in &digests {
        let col = |name: &str| text_col(b, name);
        let int = |name: &str| {
            b.column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned())
        };
        let (object, source, sha, sig, err) = (
            col("digest_object"),
            col("source_uri"),
            col("digest_sha256"),
            col("signature"),
            col("error"),
        );
        let (start, end) = (int("digest_start_time"), int("digest_end_time"));
        let (end_text, bucket, key, fp, alg) = (
            col("digest_end_time_text"),
            col("digest_s3_bucket"),
            col("digest_s3_object"),
            col("public_key_fingerprint"),
            col("signature_algorithm"),
        );
        let (pb, pk, ph, ps) = (
            col("previous_digest_s3_bucket"),
            col("previous_digest_s3_object"),
            col("previous_digest_hash"),
            col("previous_digest_signature"),
        );
        let (lb, lk, lh) = (
            col("log_s3_bucket"),
            col("log_s3_object"),
            col("log_sha256"),
        );
        let (lo, ln) = (int("log_oldest_event_time"), int("log_newest_event_time"));
        let account = col("account_id");
        for i in 0..b.num_rows() {
            let Some(obj) = get(&object, i) else { continue };
            let d = ev.digests.entry(obj.clone()).or_insert_with(|| {
                let body = match get(&err, i) {
                    Some(reason) => Err(reason),
                    None => Ok(DigestBody {
                        account_id: get(&account, i),
                        start: int_at(&start, i).unwrap_or_default(),
                        end: int_at(&end, i).unwrap_or_default(),
                        end_text: get(&end_text, i).unwrap_or_default(),
                        bucket: get(&bucket, i).unwrap_or_default(),
                        key: get(&key, i).unwrap_or_default(),
                        fingerprint: get(&fp, i).unwrap_or_default(),
                        signature_algorithm: get(&alg, i),
                        previous_bucket: get(&pb, i),
                        previous_key: get(&pk, i),
                        previous_hash: get(&ph, i),
                        previous_signature: get(&ps, i),
                        logs: Vec::new(),
                    }),
                };
                Digest {
                    object: obj.clone(),
                    source_uri: get(&source, i).unwrap_or_default(),
                    name: DigestName::parse(&obj),
                    sha256: get(&sha, i).unwrap_or_default(),
                    signature: get(&sig, i),
                    body,
                }
            });
            // Two ingests racing on one digest may both have recorded it.
            if let (Ok(body), Some(k), Some(h)) = (&mut d.body, get(&lk, i), get(&lh, i))
                && seen_logs.insert((obj.clone(), k.clone()))
            {
                body.logs.push(ListedLog {
                    bucket: get(&lb, i).unwrap_or_default(),
                    key: k,
                    hash: h,
                    oldest_event_time: int_at(&lo, i),
                    newest_event_time: int_at(&ln, i),
                });
            }
        }
    }
    Ok(ev)
}

fn text_col(b: &RecordBatch, name: &str) -> Option<StringArray> {
    let c = b.column_by_name(name)?;
    let c = arrow::compute::cast(c, &DataType::Utf8).ok()?;
    c.as_any().downcast_ref::<StringArray>().cloned()
}

fn get(c: &Option<StringArray>, i: usize) -> Option<String> {
    let c = c.as_ref()?;
    c.is_valid(i).then(|| c.value(i).to_owned())
}

fn int_at(c: &Option<Int64Array>, i: usize) -> Option<i64> {
    let c = c.as_ref()?;
    c.is_valid(i).then(|| c.value(i))
}
