//! Compaction and vacuum: row counts kept, duplicates dropped, one file per day, older
//! versions readable until vacuum, re-ingest after compaction adding nothing; on a local
//! lake and on the S3 lake.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kms_audit::ingest::{ingest_all, local_sources};
use kms_audit::lake::compact::{CompactOptions, PartitionReport, compact, partitions, vacuum};
use kms_audit::lake::table::{AsOf, Location, Tables};
use kms_audit::lake::{LakeStore, LocalLake};
use kms_audit::s3::S3Uri;

use crate::aws::{S3Env, local_event_ids, small_tree};

fn ingest(lake: &dyn LakeStore, sources: &[PathBuf]) {
    let (objects, _) = local_sources(sources).expect("sources");
    let run = ingest_all(&objects, lake, &|_| {}).expect("ingest");
    assert_eq!(run.objects_failed, 0, "{:?}", run.failures);
}

fn parquet_files(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(root.join("kms_events"))
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.path().to_path_buf())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .filter(|p| !p.to_string_lossy().contains("_delta_log"))
        .collect();
    v.sort();
    v
}

/// A tree plus a copy of one log file under another name: its events twice in the lake.
fn tree_with_duplicate(dir: &Path) -> (u64, u64) {
    let m = small_tree(dir);
    let original = &m.log_files[0];
    let name = original.file_name().and_then(|n| n.to_str()).expect("name");
    let copy = original.with_file_name(name.replace("_CloudTrail_", "_CloudTrail_copy"));
    std::fs::copy(original, &copy).expect("copy");
    let (objects, _) = local_sources(std::slice::from_ref(original)).expect("src");
    let dir2 = tempfile::tempdir().expect("tmp");
    let lake = LocalLake::open(dir2.path()).expect("lake");
    let dup = ingest_all(&objects, &lake, &|_| {})
        .expect("ingest")
        .counts
        .kms_events;
    assert!(dup > 0, "the copied file has KMS events");
    (m.kms_records, dup)
}

/// Rows of kms_events and kms_events_dedup, and the calls summed over key_usage_daily and
/// principals (every generated event has a key).
fn view_counts(root: &Path) -> [u64; 4] {
    let ctx = kms_audit::sql::open_local(root).expect("open");
    let rt = crate::rt();
    let sql = "SELECT (SELECT count(*) FROM kms_events) AS a, (SELECT count(*) FROM kms_events_dedup) AS b, \
               (SELECT sum(calls) FROM key_usage_daily) AS c, (SELECT sum(calls) FROM principals) AS d";
    let b = rt
        .block_on(kms_audit::sql::run_sql(&ctx, sql))
        .expect("sql");
    let mut out = [0u64; 4];
    for (i, v) in out.iter_mut().enumerate() {
        let c =
            arrow::compute::cast(b[0].column(i), &arrow::datatypes::DataType::Int64).expect("cast");
        *v = arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(&c).value(0) as u64;
    }
    out
}

/// Live data files per day of a local lake's current version.
fn live_files(root: &Path) -> Vec<String> {
    let loc = Location::local(root).expect("loc");
    let tables = Tables::new(loc.clone());
    let snap = loc
        .block_on(tables.snapshot("kms_events", &AsOf::Latest))
        .expect("rt")
        .expect("snapshot");
    snap.files.into_iter().map(|f| f.path).collect()
}

fn version(root: &Path) -> i64 {
    let ctx = kms_audit::sql::open_local(root).expect("open");
    let b = crate::rt()
        .block_on(kms_audit::sql::run_sql(
            &ctx,
            "SELECT version FROM lake_version",
        ))
        .expect("sql");
    arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(b[0].column(0)).value(0)
}

#[test]
fn compaction_keeps_every_event_once_and_older_versions_readable() {
    let tree = tempfile::tempdir().expect("tmp");
    let (kms, dup) = tree_with_duplicate(tree.path());
    let root = tempfile::tempdir().expect("lake");
    let lake = LocalLake::open(root.path()).expect("lake");
    ingest(&lake, &[tree.path().to_path_buf()]);
    let before = local_event_ids(root.path());
    assert_eq!(before.len() as u64, kms + dup);
    let distinct: BTreeSet<String> = before.iter().cloned().collect();
    assert_eq!(distinct.len() as u64, kms);
    // Before compaction the duplicate delivery shows in kms_events, not in the views.
    let counts = view_counts(root.path());
    assert_eq!(
        counts,
        [kms + dup, kms, kms + dup, kms + dup],
        "events, dedup, daily, principals"
    );
    let files_before = parquet_files(root.path()).len();
    assert_eq!(live_files(root.path()).len(), files_before);
    let version_before = version(root.path());
    let days = partitions(&lake).expect("partitions");
    assert!(!days.is_empty());

    let reports = compact(&lake, None, &CompactOptions::default()).expect("compact");
    let dropped: u64 = reports.iter().map(|r| r.duplicates_dropped).sum();
    assert_eq!(dropped, dup);
    assert_eq!(reports.iter().map(|r| r.rows_in).sum::<u64>(), kms + dup);
    assert_eq!(reports.iter().map(|r| r.rows_out).sum::<u64>(), kms);
    // One file per day in the new version; the replaced ones stay on disk for the old one.
    let compacted: Vec<&PartitionReport> = reports.iter().filter(|r| r.version.is_some()).collect();
    assert_eq!(live_files(root.path()).len(), days.len());
    assert_eq!(
        parquet_files(root.path()).len(),
        files_before + compacted.len()
    );
    let after: Vec<String> = local_event_ids(root.path());
    assert_eq!(after.len() as u64, kms, "no doubled rows");
    assert_eq!(after.into_iter().collect::<BTreeSet<_>>(), distinct);
    // The version before compaction is still there to read, duplicates and all.
    let old = kms_audit::sql::open_local_as_of(root.path(), &AsOf::Version(version_before))
        .expect("as of");
    let n = crate::rt()
        .block_on(kms_audit::sql::run_sql(
            &old,
            "SELECT count(*) FROM kms_events",
        ))
        .expect("sql");
    assert_eq!(
        arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(n[0].column(0)).value(0)
            as u64,
        kms + dup
    );

    // Compacting again changes nothing: each day has one file.
    let second = compact(&lake, None, &CompactOptions::default()).expect("compact");
    assert!(second.iter().all(|r| r.version.is_none()), "{second:?}");

    // Vacuum with no retention deletes exactly the replaced files.
    let dry = vacuum(&lake, chrono::Duration::zero(), true).expect("dry run");
    assert_eq!(dry.files.len(), files_before, "{:?}", dry.files);
    assert_eq!(
        parquet_files(root.path()).len(),
        files_before + compacted.len()
    );
    let done = vacuum(&lake, chrono::Duration::zero(), false).expect("vacuum");
    assert_eq!(done.files.len(), files_before);
    assert_eq!(parquet_files(root.path()).len(), days.len());
    assert_eq!(local_event_ids(root.path()).len() as u64, kms);
    // A default vacuum (7 days) keeps everything that young.
    let kept = vacuum(&lake, chrono::Duration::days(7), false).expect("vacuum");
    assert!(kept.files.is_empty());

    // Re-ingesting the same objects after compaction reads nothing and adds nothing.
    let (objects, _) = local_sources(&[tree.path().to_path_buf()]).expect("sources");
    let again = ingest_all(&objects, &lake, &|_| {}).expect("ingest");
    assert_eq!(again.objects_already_ingested, objects.len() as u64);
    assert!(again.versions.is_empty() && again.reports.is_empty());
    assert_eq!(parquet_files(root.path()).len(), days.len());
    assert_eq!(local_event_ids(root.path()).len() as u64, kms);
    // A new object after compaction is visible, and the next compaction takes it in.
    let late = tempfile::tempdir().expect("tmp");
    let cfg = kms_audit_generate::GenConfig {
        hours: 2,
        kms_per_hour: 5,
        files_per_hour: 1,
        accounts: 1,
        regions: vec!["eu-west-1".into()],
        seed: 99,
        incidents: false,
        ..Default::default()
    };
    let extra = kms_audit_generate::generate_tree(&cfg, late.path())
        .expect("gen")
        .kms_records;
    ingest(&lake, &[late.path().to_path_buf()]);
    let with_late = local_event_ids(root.path()).len() as u64;
    assert_eq!(with_late, kms + extra);
    compact(&lake, None, &CompactOptions::default()).expect("compact");
    assert_eq!(local_event_ids(root.path()).len() as u64, kms + extra);
    let live = live_files(root.path());
    let live_days: BTreeSet<&str> = live.iter().filter_map(|p| p.split('/').next()).collect();
    assert_eq!(live.len(), live_days.len(), "one file per day: {live:?}");
}

#[test]
fn an_s3_lake_compacts_in_place() {
    let Some(env) = S3Env::connect() else { return };
    let tree = tempfile::tempdir().expect("tmp");
    let (kms, dup) = tree_with_duplicate(tree.path());
    let bucket = env.bucket("lake");
    let uri = S3Uri::parse(&format!("s3://{bucket}/lake")).expect("uri");
    let lake = env.lake(&uri);
    ingest(&lake, &[tree.path().to_path_buf()]);
    assert_eq!(env.event_ids(&uri).len() as u64, kms + dup);
    let data = |keys: &[String]| {
        keys.iter()
            .filter(|k| k.ends_with(".parquet") && !k.contains("/_delta_log/"))
            .count()
    };
    let files_before = data(&env.keys(&bucket, "lake/kms_events/"));
    let reports = compact(&lake, None, &CompactOptions::default()).expect("compact");
    assert_eq!(
        reports.iter().map(|r| r.duplicates_dropped).sum::<u64>(),
        dup
    );
    let ids = env.event_ids(&uri);
    assert_eq!(ids.len() as u64, kms);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len() as u64, kms);
    let compacted = reports.iter().filter(|r| r.version.is_some()).count();
    assert_eq!(
        data(&env.keys(&bucket, "lake/kms_events/")),
        files_before + compacted
    );
    let done = vacuum(&lake, chrono::Duration::zero(), false).expect("vacuum");
    assert_eq!(done.files.len(), files_before);
    assert_eq!(data(&env.keys(&bucket, "lake/kms_events/")), reports.len());
    assert_eq!(env.event_ids(&uri).len() as u64, kms);
}
