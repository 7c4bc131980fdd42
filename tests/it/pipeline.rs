//! Generated CloudTrail trees through the real path: files → reader → extraction →
//! Parquet lake → DataFusion.

use crate::{gz, rt};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use kms_audit::ingest::reader::ReadError;
use kms_audit::ingest::{
    IngestOptions, ObjectErrorKind, RunSummary, ingest_all, ingest_with, local_sources,
};
use kms_audit::lake::LocalLake;
use kms_audit::sql::{open_local, run_sql};
use kms_audit_generate::{GenConfig, Manifest, generate_tree};

fn small_config() -> GenConfig {
    GenConfig {
        hours: 30,
        kms_per_hour: 12,
        files_per_hour: 2,
        ..GenConfig::default()
    }
}

fn generate(dir: &Path) -> Manifest {
    generate_tree(&small_config(), dir).expect("generate")
}

fn ingest(sources: &[PathBuf], lake: &LocalLake) -> RunSummary {
    let (objects, skipped) = local_sources(sources).expect("sources");
    let mut run = ingest_all(&objects, lake, &|_| {}).expect("ingest");
    run.objects_skipped = skipped.len() as u64;
    run
}

fn query_counts(lake: &Path, sql: &str) -> BTreeMap<String, i64> {
    let ctx = open_local(lake).expect("open");
    let batches = rt().block_on(run_sql(&ctx, sql)).expect("sql");
    let mut out = BTreeMap::new();
    for b in batches {
        let names = arrow::compute::cast(b.column(0), &DataType::Utf8).expect("cast");
        let names = names.as_string::<i32>();
        let counts = b.column(1).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            out.insert(names.value(i).to_owned(), counts.value(i));
        }
    }
    out
}

fn total_rows(lake: &Path) -> i64 {
    query_counts(lake, "SELECT 'all', count(*) FROM kms_events")
        .get("all")
        .copied()
        .unwrap_or(0)
}

#[test]
fn counts_per_event_name_match_what_was_generated() {
    let tmp = tempfile::tempdir().expect("tmp");
    let trail = tmp.path().join("trail");
    let manifest = generate(&trail);
    assert!(manifest.kms_records > 1000, "{}", manifest.kms_records);
    let lake = LocalLake::open(tmp.path().join("lake")).expect("lake");

    let run = ingest(std::slice::from_ref(&trail), &lake);
    assert_eq!(run.objects_failed, 0, "{:?}", run.failures);
    assert_eq!(
        run.objects,
        (manifest.log_files.len() + manifest.digest_files.len()) as u64
    );
    // Digests go to the `digests` table; the Insights file is skipped by name, not read.
    assert_eq!(run.digests, manifest.digest_files.len() as u64);
    assert_eq!(run.objects_skipped, manifest.insight_files.len() as u64);
    assert!(run.counts.reconciles());
    assert_eq!(run.counts.records, manifest.records);
    assert_eq!(run.counts.kms_events, manifest.kms_records);
    assert_eq!(run.counts.skipped, manifest.records - manifest.kms_records);
    assert_eq!(run.counts.rejected, 0);
    assert_eq!(run.counts.bytes_decompressed, manifest.raw_bytes);

    let by_name = query_counts(
        lake.root(),
        "SELECT event_name, count(*) FROM kms_events GROUP BY event_name",
    );
    let want: BTreeMap<String, i64> = manifest
        .kms_by_event_name
        .iter()
        .map(|(k, v)| (k.clone(), *v as i64))
        .collect();
    assert_eq!(by_name, want);

    // Every planted incident's records are in the lake with their key ARN.
    let ctx = open_local(lake.root()).expect("open");
    for inc in &manifest.incidents {
        let ids = inc
            .event_ids
            .iter()
            .map(|i| format!("'{i}'"))
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "SELECT count(*) AS n, count(key_arn) AS with_key, min(key_arn) AS k FROM kms_events WHERE event_id IN ({ids})"
        );
        let b = rt().block_on(run_sql(&ctx, &sql)).expect("sql");
        let n = b[0].column(0).as_primitive::<Int64Type>().value(0);
        assert_eq!(n, inc.event_ids.len() as i64, "{}", inc.kind);
        if let Some(want) = &inc.key_arn {
            let got = b[0].column(2).as_string::<i32>().value(0).to_owned();
            assert_eq!(&got, want, "{}", inc.kind);
        }
    }

    // Key ARN on every record that names a key; VPC endpoint and context where sent.
    let c = query_counts(
        lake.root(),
        "SELECT 'missing_key', count(*) FROM kms_events WHERE key_arn IS NULL AND event_name NOT IN ('ListAliases') \
         UNION ALL SELECT 'vpce', count(*) FROM kms_events WHERE vpc_endpoint_id IS NOT NULL \
         UNION ALL SELECT 'vpce_app', count(*) FROM kms_events WHERE principal LIKE '%-app-backend' AND NOT via_aws_service AND source_ip LIKE '10.%' \
         UNION ALL SELECT 's3_ctx', count(*) FROM kms_events WHERE encryption_context['aws:s3:arn'] LIKE 'arn:aws:s3:::%' \
         UNION ALL SELECT 's3_calls', count(*) FROM kms_events WHERE invoked_by = 's3.amazonaws.com'",
    );
    assert_eq!(c["missing_key"], 0);
    assert!(c["vpce"] > 0);
    assert_eq!(c["vpce"], c["vpce_app"]);
    assert_eq!(c["s3_ctx"], c["s3_calls"]);
}

#[test]
fn reingesting_adds_no_rows_and_copies_map_to_the_same_files() {
    let tmp = tempfile::tempdir().expect("tmp");
    let trail = tmp.path().join("trail");
    let manifest = generate_tree(
        &GenConfig {
            hours: 4,
            accounts: 1,
            incidents: false,
            ..small_config()
        },
        &trail,
    )
    .expect("generate");
    let lake = LocalLake::open(tmp.path().join("lake")).expect("lake");
    ingest(std::slice::from_ref(&trail), &lake);
    let first = total_rows(lake.root());
    assert_eq!(first, manifest.kms_records as i64);
    let files_before = parquet_files(lake.root());

    // Same objects again, through a different path spelling, and a copy elsewhere.
    let relative = PathBuf::from(format!("{}/./", trail.display()));
    ingest(&[relative], &lake);
    let copy = tmp.path().join("copy");
    copy_tree(&trail, &copy);
    ingest(&[copy], &lake);
    assert_eq!(total_rows(lake.root()), first);
    assert_eq!(parquet_files(lake.root()), files_before);
    // Nothing left behind in staging.
    assert_eq!(
        std::fs::read_dir(lake.root().join(".staging"))
            .expect("staging")
            .count(),
        0
    );
}

fn parquet_files(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walk(root)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .map(|p| p.strip_prefix(root).expect("prefix").to_path_buf())
        .collect();
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn copy_tree(from: &Path, to: &Path) {
    for p in walk(from) {
        let dest = to.join(p.strip_prefix(from).expect("prefix"));
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&p, &dest).expect("copy");
    }
}

#[test]
fn bad_objects_are_named_and_the_good_ones_beside_them_are_ingested() {
    let tmp = tempfile::tempdir().expect("tmp");
    let trail = tmp.path().join("trail");
    let manifest = generate_tree(
        &GenConfig {
            hours: 3,
            accounts: 1,
            regions: vec!["us-west-2".into()],
            incidents: false,
            digests: false,
            ..small_config()
        },
        &trail,
    )
    .expect("generate");
    let dir = manifest.log_files[0].parent().expect("dir").to_path_buf();
    let good = std::fs::read(&manifest.log_files[0]).expect("read");

    let truncated = dir.join("truncated-gzip.json.gz");
    std::fs::write(&truncated, &good[..good.len() / 2]).expect("write");
    let not_gzip = dir.join("not-gzip.json.gz");
    std::fs::write(&not_gzip, b"\x00\x01\x02binary garbage").expect("write");
    // Gzip, but of something that is not JSON: the JSON is what is wrong.
    let gzip_of_text = dir.join("gzip-of-text.json.gz");
    std::fs::write(&gzip_of_text, gz(b"hello")).expect("write");
    let bad_json = dir.join("bad-envelope.json.gz");
    std::fs::write(
        &bad_json,
        gz(br#"{"Records":[{"eventSource":"kms.amazonaws.com","eventID":"1"} oops ]}"#),
    )
    .expect("write");
    let cut_json = dir.join("cut-envelope.json");
    std::fs::write(&cut_json, br#"{"Records":[{"eventSource":"kms.amaz"#).expect("write");
    // A record that cannot be used inside an otherwise good object: rejected, not fatal.
    let one_bad_record = dir.join("one-bad-record.json");
    std::fs::write(
        &one_bad_record,
        br#"{"Records":[{"eventSource":"kms.amazonaws.com","eventName":"Decrypt","eventID":"no-time"},
                        {"eventSource":"kms.amazonaws.com","eventName":"Decrypt","eventID":"ok-1","eventTime":"2026-11-02T01:02:03Z","awsRegion":"us-west-2"},
                        42,
                        {"eventSource":"s3.amazonaws.com","eventName":"GetObject"}]}"#,
    )
    .expect("write");

    let lake = LocalLake::open(tmp.path().join("lake")).expect("lake");
    let run = ingest(std::slice::from_ref(&trail), &lake);
    assert_eq!(run.objects, manifest.log_files.len() as u64 + 6);
    assert_eq!(run.objects_failed, 5, "{:#?}", run.failures);
    let mut failed: Vec<(String, String)> = run
        .failures
        .iter()
        .map(|f| {
            let name = Path::new(&f.object)
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (name, f.to_string())
        })
        .collect();
    failed.sort();
    let names: Vec<&str> = failed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "bad-envelope.json.gz",
            "cut-envelope.json",
            "gzip-of-text.json.gz",
            "not-gzip.json.gz",
            "truncated-gzip.json.gz"
        ]
    );
    for f in &run.failures {
        // The message names the object.
        assert!(f.to_string().starts_with(&f.object), "{f}");
        assert!(!f.retryable(), "{f}");
        match (&f.kind, f.object.rsplit('/').next().unwrap_or_default()) {
            (ObjectErrorKind::Read(ReadError::Io { .. }), "truncated-gzip.json.gz") => {}
            (ObjectErrorKind::Read(ReadError::NotGzipOrJson { reason }), "not-gzip.json.gz") => {
                assert!(
                    f.to_string()
                        .ends_with("not gzip (no gzip magic bytes) and not JSON: expected '{' or '[' at the top level, found byte 0x00"),
                    "{f}"
                );
                assert!(reason.contains("found"), "{reason}");
            }
            (ObjectErrorKind::Read(ReadError::Json { .. }), "bad-envelope.json.gz") => {}
            (ObjectErrorKind::Read(ReadError::Json { offset: 0, .. }), "gzip-of-text.json.gz") => {}
            (ObjectErrorKind::Read(ReadError::Truncated { .. }), "cut-envelope.json") => {}
            (kind, name) => panic!("unexpected {name}: {kind:?}"),
        }
    }
    // Nothing of the failed objects was published; everything good was.
    let good_kms = manifest.kms_records + 1;
    assert_eq!(run.counts.kms_events, good_kms);
    assert_eq!(total_rows(lake.root()), good_kms as i64);
    assert!(run.counts.reconciles());
    assert_eq!(run.counts.rejected, 2);
    let report = run
        .reports
        .iter()
        .find(|r| r.uri.ends_with("one-bad-record.json"))
        .expect("report");
    assert_eq!(report.counts.records, 4);
    assert_eq!(report.counts.kms_events, 1);
    assert_eq!(report.counts.skipped, 1);
    assert_eq!(report.counts.rejected, 2);
    // The rejected records are kept, raw, with their reasons.
    let rejects = std::fs::read_to_string(
        lake.root()
            .join(report.rejects_file.as_ref().expect("file")),
    )
    .expect("rejects");
    let lines: Vec<serde_json::Value> = rejects
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["event_id"], "no-time");
    assert_eq!(lines[0]["reason"], "missing eventTime");
    assert!(lines[0]["raw"].as_str().expect("raw").contains("no-time"));
    assert_eq!(lines[1]["reason"], "record is not a JSON object");
    assert_eq!(lines[1]["raw"], "42");
    assert_eq!(
        std::fs::read_dir(lake.root().join(".staging"))
            .expect("staging")
            .count(),
        0
    );

    // Without every report (as the CLI runs): the same counts, and only the report of the
    // object with rejected records.
    let (objects, _) = local_sources(std::slice::from_ref(&trail)).expect("sources");
    let lean = IngestOptions {
        keep_all_reports: false,
        ..IngestOptions::default()
    };
    let other = LocalLake::open(tmp.path().join("lake2")).expect("lake");
    let again = ingest_with(&objects, &other, &lean, &|_| {}).expect("ingest");
    assert_eq!(again.counts, run.counts);
    assert_eq!(again.objects_failed, run.objects_failed);
    let uris: Vec<&str> = again.reports.iter().map(|r| r.uri.as_str()).collect();
    assert_eq!(uris, [report.uri.as_str()]);
    assert!(run.reports.len() > 1);
}

#[test]
fn date_filters_prune_partitions_and_types_survive_parquet() {
    let tmp = tempfile::tempdir().expect("tmp");
    let trail = tmp.path().join("trail");
    generate_tree(
        &GenConfig {
            hours: 50,
            accounts: 1,
            kms_per_hour: 6,
            files_per_hour: 1,
            ..small_config()
        },
        &trail,
    )
    .expect("generate");
    let lake = LocalLake::open(tmp.path().join("lake")).expect("lake");
    ingest(&[trail], &lake);
    let ctx = open_local(lake.root()).expect("open");
    let rt = rt();
    let days = query_counts(
        lake.root(),
        "SELECT CAST(event_date AS VARCHAR), count(*) FROM kms_events GROUP BY 1",
    );
    assert_eq!(
        days.keys().cloned().collect::<Vec<_>>(),
        vec!["2026-11-02", "2026-11-03", "2026-11-04"]
    );

    let files_scanned = |sql: &str| -> usize {
        let df = rt.block_on(ctx.sql(sql)).expect("sql");
        let plan = rt.block_on(df.create_physical_plan()).expect("plan");
        let text = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string();
        text.matches(".parquet").count()
    };
    // (count(*) alone is answered from Parquet statistics without a scan.)
    let all = files_scanned("SELECT event_id FROM kms_events WHERE read_only");
    let one_day = files_scanned(
        "SELECT event_id FROM kms_events WHERE read_only AND event_date = DATE '2026-11-03'",
    );
    assert!(
        all > 0 && one_day > 0 && one_day < all,
        "{one_day} of {all}"
    );

    // Partition value and event_time agree; types are what the contract says.
    let b = rt
        .block_on(run_sql(
            &ctx,
            "SELECT count(*) FROM kms_events WHERE CAST(event_time AS DATE) <> event_date",
        ))
        .expect("sql");
    assert_eq!(b[0].column(0).as_primitive::<Int64Type>().value(0), 0);
    let b = rt
        .block_on(run_sql(
            &ctx,
            "SELECT event_time, encryption_context, grant_operations, mfa_authenticated, \
                    cardinality(encryption_context) AS n_ctx \
             FROM kms_events WHERE encryption_context IS NOT NULL LIMIT 5",
        ))
        .expect("sql");
    let schema = b[0].schema();
    assert_eq!(
        schema.field(0).data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert!(matches!(schema.field(1).data_type(), DataType::Map(_, _)));
    assert!(matches!(schema.field(2).data_type(), DataType::List(_)));
    assert_eq!(schema.field(3).data_type(), &DataType::Boolean);
    let n_ctx = b[0].column(4);
    assert!(!n_ctx.is_empty() && n_ctx.null_count() == 0);
}

#[test]
fn an_empty_lake_answers_with_no_rows() {
    let tmp = tempfile::tempdir().expect("tmp");
    assert_eq!(total_rows(&tmp.path().join("fresh-lake")), 0);
}
