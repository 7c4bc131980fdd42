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
    // Values are borrowed from the digests: cloning a digest's body (with every log it
    // lists) for each of its rows made a digest of n logs cost O(n^2) allocations.
    type Row<'d> = (&'d Digest, Option<&'d ListedLog>);
    fn body(d: &Digest) -> Option<&DigestBody> {
        d.body.as_ref().ok()
    }
    let text = |f: &dyn for<'d> Fn(Row<'d>) -> Option<&'d str>| -> ArrayRef {
        Arc::new(rows.iter().map(|&r| f(r)).collect::<StringArray>())
    };
    let time = |f: &dyn Fn(Row<'_>) -> Option<i64>| -> ArrayRef {
        Arc::new(
            rows.iter()
                .map(|&r| f(r))
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        )
    };
    let b_text = |f: for<'b> fn(&'b DigestBody) -> Option<&'b str>| {
        text(&move |(d, _): Row<'_>| body(d).and_then(f))
    };
    let columns: Vec<ArrayRef> = vec![
        text(&|(d, _)| Some(&d.object)),
        text(&|(d, _)| Some(&d.source_uri)),
        text(&|(d, _)| {
            d.name
                .as_ref()
                .map(|n| n.account.as_str())
                .or_else(|| body(d)?.account_id.as_deref())
        }),
        text(&|(d, _)| d.name.as_ref().map(|n| n.region.as_str())),
        text(&|(d, _)| d.name.as_ref().map(|n| n.trail.as_str())),
        text(&|(d, _)| d.name.as_ref().map(|n| n.home_region.as_str())),
        time(&|(d, _)| body(d).map(|b| b.start)),
        time(&|(d, _)| body(d).map(|b| b.end)),
        b_text(|b| Some(&b.end_text)),
        b_text(|b| Some(&b.bucket)),
        b_text(|b| Some(&b.key)),
        b_text(|b| Some(&b.fingerprint)),
        b_text(|b| b.signature_algorithm.as_deref()),
        text(&|(d, _)| d.signature.as_deref()),
        text(&|(d, _)| Some(&d.sha256)),
        b_text(|b| b.previous_bucket.as_deref()),
        b_text(|b| b.previous_key.as_deref()),
        b_text(|b| b.previous_hash.as_deref()),
        b_text(|b| b.previous_signature.as_deref()),
        text(&|(d, _)| d.body.as_ref().err().map(String::as_str)),
        Arc::new(
            rows.iter()
                .map(|(d, _)| body(d).map_or(0, |b| b.logs.len() as i64))
                .collect::<Int64Array>(),
        ),
        text(&|(_, l)| l.map(|l| l.bucket.as_str())),
        text(&|(_, l)| l.map(|l| l.key.as_str())),
        Arc::new(
            rows.iter()
                .map(|(_, l)| l.map(|l| canonical_key(&l.key).unwrap_or_else(|| l.key.clone())))
                .collect::<StringArray>(),
        ),
        text(&|(_, l)| l.map(|l| l.hash.as_str())),
        time(&|(_, l)| l.and_then(|l| l.oldest_event_time)),
        time(&|(_, l)| l.and_then(|l| l.newest_event_time)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::TimestampMicrosecondType;

    fn log(i: usize) -> ListedLog {
        ListedLog {
            bucket: "trail-bucket".into(),
            key: format!("pre/AWSLogs/111122223333/CloudTrail/eu-west-1/2026/11/01/log{i}.json.gz"),
            hash: format!("{i:064x}"),
            oldest_event_time: Some(i as i64),
            newest_event_time: (i > 0).then_some(10 * i as i64),
        }
    }

    fn digest(name: &str, body: Result<DigestBody, String>) -> Digest {
        Digest {
            object: format!("AWSLogs/111122223333/CloudTrail-Digest/{name}"),
            source_uri: format!("/t/{name}"),
            name: None,
            sha256: "ff".repeat(32),
            signature: Some("5151".into()),
            body,
        }
    }

    /// One row per listed log, every column from the digest or that log; one row with
    /// no log columns for a digest that could not be read.
    #[test]
    fn digest_rows_hold_each_listed_log_once() {
        let body = DigestBody {
            account_id: Some("111122223333".into()),
            start: 1_000,
            end: 2_000,
            end_text: "2026-11-01T13:05:12Z".into(),
            bucket: "trail-bucket".into(),
            key: "digest-key".into(),
            fingerprint: "ab".into(),
            signature_algorithm: Some("SHA256withRSA".into()),
            previous_bucket: None,
            previous_key: None,
            previous_hash: Some("cd".into()),
            previous_signature: None,
            logs: (0..3).map(log).collect(),
        };
        let good = digest("good", Ok(body));
        let bad = digest("bad", Err("not a digest document".into()));
        let batch = digest_rows(&[&good, &bad], 7).expect("rows");
        assert_eq!(batch.num_rows(), 4);
        let text = |name: &str| -> Vec<Option<String>> {
            let c = batch.column_by_name(name).expect(name);
            c.as_string::<i32>()
                .iter()
                .map(|v| v.map(str::to_owned))
                .collect()
        };
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            text("digest_object")[3],
            s("AWSLogs/111122223333/CloudTrail-Digest/bad")
        );
        assert_eq!(
            text("account_id"),
            [
                s("111122223333"),
                s("111122223333"),
                s("111122223333"),
                None
            ]
        );
        assert_eq!(
            text("digest_s3_object"),
            [s("digest-key"), s("digest-key"), s("digest-key"), None]
        );
        assert_eq!(
            text("previous_digest_hash"),
            [s("cd"), s("cd"), s("cd"), None]
        );
        assert_eq!(text("previous_digest_signature"), [None, None, None, None]);
        assert_eq!(text("signature"), vec![s("5151"); 4]);
        assert_eq!(
            text("error"),
            [None, None, None, s("not a digest document")]
        );
        assert_eq!(
            text("log_sha256"),
            [s(&log(0).hash), s(&log(1).hash), s(&log(2).hash), None]
        );
        assert_eq!(
            text("log_object"),
            [
                s("AWSLogs/111122223333/CloudTrail/eu-west-1/2026/11/01/log0.json.gz"),
                s("AWSLogs/111122223333/CloudTrail/eu-west-1/2026/11/01/log1.json.gz"),
                s("AWSLogs/111122223333/CloudTrail/eu-west-1/2026/11/01/log2.json.gz"),
                None
            ]
        );
        let counts = batch.column_by_name("log_count").expect("log_count");
        assert_eq!(
            counts
                .as_primitive::<arrow::datatypes::Int64Type>()
                .values(),
            &[3, 3, 3, 0]
        );
        let times = |name: &str| -> Vec<Option<i64>> {
            let c = batch.column_by_name(name).expect(name);
            c.as_primitive::<TimestampMicrosecondType>()
                .iter()
                .collect()
        };
        assert_eq!(
            times("digest_end_time"),
            [Some(2_000), Some(2_000), Some(2_000), None]
        );
        assert_eq!(
            times("log_newest_event_time"),
            [None, Some(10), Some(20), None]
        );
        assert_eq!(times("ingested_at"), vec![Some(7); 4]);
    }
}
