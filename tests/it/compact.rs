//! Compaction: row counts kept, duplicates dropped, the swap invisible to readers, and
//! re-ingest after compaction adding nothing; on a local lake and on the S3 lake.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kms_audit::ingest::{ingest_all, local_sources};
use kms_audit::lake::compact::{CompactOptions, Manifest, compact, partitions, read_manifest};
use kms_audit::lake::{LakeStore, LocalLake};
use kms_audit::s3::S3Uri;

use crate::aws::{S3Env, local_event_ids, small_tree};

fn ingest(lake: &dyn LakeStore, sources: &[PathBuf]) {
    let (objects, _) = local_sources(sources).expect("sources");
    let run = ingest_all(&objects, lake, &|_| {});
    assert_eq!(run.objects_failed, 0, "{:?}", run.failures);
}

fn parquet_files(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(root.join("kms_events"))
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.path().to_path_buf())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
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
    let dup = ingest_all(&objects, &lake, &|_| {}).counts.kms_events;
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

#[test]
fn compaction_keeps_every_event_once_and_swaps_invisibly() {
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
    let days = partitions(&lake).expect("partitions");
    assert!(!days.is_empty());

    // Keep the replaced files (a long grace period): readers must not see them.
    let keep = CompactOptions {
        keep_replaced: 3_600_000_000,
        ..CompactOptions::default()
    };
    let reports = compact(&lake, None, &keep).expect("compact");
    let dropped: u64 = reports.iter().map(|r| r.duplicates_dropped).sum();
    assert_eq!(dropped, dup);
    assert_eq!(reports.iter().map(|r| r.rows_in).sum::<u64>(), kms + dup);
    assert_eq!(reports.iter().map(|r| r.rows_out).sum::<u64>(), kms);
    assert_eq!(
        parquet_files(root.path()).len(),
        files_before + days.len(),
        "originals kept"
    );
    let after: BTreeSet<String> = local_event_ids(root.path()).into_iter().collect();
    assert_eq!(
        local_event_ids(root.path()).len() as u64,
        kms,
        "no doubled rows while originals remain"
    );
    assert_eq!(after, distinct);

    // A swap caught half-way: outputs named in a pending layer but not all there. Readers
    // see the partition as it was before (the originals), never both, never neither.
    let day = &days[0];
    let m = read_manifest(&lake, day).expect("manifest");
    let mut half = m.clone();
    let mut pending = half.committed.take().expect("committed");
    pending.outputs[0].size += 1; // "not fully uploaded"
    half.pending = Some(pending);
    let rel = format!("kms_events/event_date={day}/_manifest.json");
    lake.write(&rel, &serde_json::to_vec(&half).expect("json"))
        .expect("write");
    let rows_in_day0 = reports
        .iter()
        .find(|r| &r.partition == day)
        .map(|r| r.rows_in)
        .expect("r");
    let rows_out_day0 = reports
        .iter()
        .find(|r| &r.partition == day)
        .map(|r| r.rows_out)
        .expect("r");
    let total_half = local_event_ids(root.path()).len() as u64;
    assert_eq!(total_half, kms - rows_out_day0 + rows_in_day0);
    lake.write(&rel, &serde_json::to_vec(&m).expect("json"))
        .expect("restore");

    // Grace over: the next run deletes the originals; rows unchanged; one file per day.
    let now = CompactOptions::default();
    let second = compact(&lake, None, &now).expect("compact");
    assert!(second.iter().all(|r| r.files_in == 0), "{second:?}");
    assert_eq!(
        second.iter().map(|r| r.files_deleted).sum::<usize>(),
        files_before
    );
    assert_eq!(parquet_files(root.path()).len(), days.len());
    assert_eq!(local_event_ids(root.path()).len() as u64, kms);

    // Re-ingesting the same objects after compaction adds no rows.
    ingest(&lake, &[tree.path().to_path_buf()]);
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
    compact(&lake, None, &now).expect("compact");
    assert_eq!(local_event_ids(root.path()).len() as u64, kms + extra);
    let m: Manifest = read_manifest(&lake, day).expect("manifest");
    assert!(m.committed.is_some() && m.pending.is_none());
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
    let files_before = env.keys(&bucket, "lake/kms_events/").len();
    let reports = compact(&lake, None, &CompactOptions::default()).expect("compact");
    assert_eq!(
        reports.iter().map(|r| r.duplicates_dropped).sum::<u64>(),
        dup
    );
    let ids = env.event_ids(&uri);
    assert_eq!(ids.len() as u64, kms);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len() as u64, kms);
    let keys = env.keys(&bucket, "lake/kms_events/");
    let parquet = keys.iter().filter(|k| k.ends_with(".parquet")).count();
    let manifests = keys
        .iter()
        .filter(|k| k.ends_with("/_manifest.json"))
        .count();
    assert_eq!(parquet, reports.len());
    assert_eq!(manifests, reports.len());
    assert!(files_before > parquet, "{files_before} -> {parquet}");
}
