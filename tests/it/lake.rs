//! The lake as Delta tables: batched commits, exactly once per object, crash healing,
//! concurrent writers (threads and OS processes), compaction racing ingest, time travel,
//! the old layout's conversion; read back by independent readers (a log replay written
//! here and delta-rs's Python package, with DuckDB reading the data files they name).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kms_audit::ingest::{
    IngestOptions, LocalFile, SourceObject, ingest_all, ingest_with, local_sources, read_object,
};
use kms_audit::lake::compact::{CompactOptions, compact};
use kms_audit::lake::table::{AsOf, CHECKPOINT_INTERVAL, Location, ObjectRecord, Tables};
use kms_audit::lake::{LakeStore, LocalLake};
use kms_audit::s3::S3Uri;
use kms_audit_generate::{GenConfig, Manifest, generate_tree};
use serde_json::Value;

use crate::aws::{S3Env, checkpoint_version, local_event_ids};

/// A multi-account, multi-region tree: `hours` hours, 4 objects an hour per account and
/// region.
fn tree(dir: &Path, hours: u32, seed: u64) -> Manifest {
    let cfg = GenConfig {
        hours,
        kms_per_hour: 40,
        files_per_hour: 4,
        accounts: 2,
        regions: vec!["us-east-1".into(), "eu-west-1".into()],
        seed,
        incidents: false,
        // Log objects only: digests have a table of their own (tests/it/integrity.rs).
        digests: false,
        ..Default::default()
    };
    generate_tree(&cfg, dir).expect("generate")
}

fn objects(dir: &Path) -> Vec<LocalFile> {
    local_sources(&[dir.to_path_buf()]).expect("sources").0
}

/// The Python of `scripts/test`'s venv (duckdb, deltalake), or `None` when the S3 tests
/// are knowingly skipped.
pub fn python() -> Option<String> {
    match std::env::var("KMS_AUDIT_TEST_PYTHON") {
        Ok(p) => Some(p),
        Err(_) if std::env::var_os("KMS_AUDIT_SKIP_S3_TESTS").is_some() => None,
        Err(_) => panic!("needs KMS_AUDIT_TEST_PYTHON (duckdb, deltalake): run scripts/test"),
    }
}

/// Reads a local lake without kms-audit: the live files of each table by replaying its
/// log here and by delta-rs (they must agree), the rows DuckDB reads from them, and the
/// SHA-256 of every ingested object recomputed from its file.
pub const REPLAY_PY: &str = r#"
import glob, gzip, hashlib, json, os, sys
from urllib.parse import unquote
import duckdb, deltalake

def replay(table):
    log = os.path.join(table, "_delta_log")
    live, start, protocol, meta = {}, -1, None, None
    cps = sorted(glob.glob(os.path.join(log, "*.checkpoint.parquet")))
    if cps:
        start = int(os.path.basename(cps[-1]).split(".")[0])
        for (p,) in duckdb.sql(f"SELECT add.path FROM read_parquet('{cps[-1]}') WHERE add IS NOT NULL").fetchall():
            live[unquote(p)] = True
    for f in sorted(glob.glob(os.path.join(log, "*.json"))):
        v = int(os.path.basename(f).split(".")[0])
        for line in open(f):
            a = json.loads(line)
            protocol = a.get("protocol", protocol)
            meta = a.get("metaData", meta)
            if v <= start:
                continue
            if "add" in a:
                live[unquote(a["add"]["path"])] = True
            if "remove" in a:
                live.pop(unquote(a["remove"]["path"]), None)
    return sorted(live), protocol, meta
"#;

const INDEPENDENT_READER: &str = r#"
lake = sys.argv[1]
out = {}
for name in ["kms_events", "objects", "digests", "trail_events"]:
    table = os.path.join(lake, name)
    files, protocol, meta = replay(table)
    dt = deltalake.DeltaTable(table)
    theirs = sorted(os.path.relpath(u.replace("file://", ""), table) for u in dt.file_uris())
    assert files == theirs, (name, files, theirs)
    full = [os.path.join(table, f) for f in files]
    t = {"files": files, "version": dt.version(), "protocol": protocol,
         "partition_columns": meta["partitionColumns"]}
    if name == "kms_events" and full:
        t["rows"], t["ids"] = duckdb.sql(
            f"SELECT count(*), count(DISTINCT event_id) FROM read_parquet({full!r}, hive_partitioning=true)").fetchall()[0]
        t["days"] = dict(duckdb.sql(
            f"SELECT CAST(event_date AS VARCHAR), count(DISTINCT filename) FROM read_parquet({full!r}, hive_partitioning=true, filename=true) GROUP BY 1").fetchall())
    if name == "objects" and full:
        rows = duckdb.sql(f"SELECT source_uri, sha256, kms_events FROM read_parquet({full!r})").fetchall()
        t["rows"] = len(rows)
        t["distinct"] = len({r[0] for r in rows})
        t["kms_events"] = sum(r[2] for r in rows)
        bad = []
        for uri, sha, _ in rows:
            data = open(uri, "rb").read()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            if hashlib.sha256(data).hexdigest() != sha:
                bad.append(uri)
        t["sha256_mismatches"] = bad
    out[name] = t
print(json.dumps(out))
"#;

fn independent_read(python: &str, lake: &Path) -> Value {
    let o = std::process::Command::new(python)
        .arg("-c")
        .arg(format!("{REPLAY_PY}{INDEPENDENT_READER}"))
        .arg(lake)
        .output()
        .expect("python");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("json")
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn data_files_on_disk(root: &Path) -> usize {
    walkdir::WalkDir::new(root.join("kms_events"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| {
            e.path().extension().is_some_and(|x| x == "parquet")
                && !e.path().to_string_lossy().contains("_delta_log")
        })
        .count()
}

/// The checkpoints of a run's commits: after each of the first `full` (of
/// `checkpoint_objects` objects or more) and at every `CHECKPOINT_INTERVAL` versions.
fn expected_checkpoints(versions: &[i64], full: usize) -> BTreeSet<i64> {
    let interval = CHECKPOINT_INTERVAL as i64;
    let mut want: BTreeSet<i64> = versions[..full].iter().copied().collect();
    want.extend(versions.iter().filter(|v| (*v + 1) % interval == 0));
    want
}

fn tables(root: &Path) -> (Location, Tables) {
    let loc = Location::local(root).expect("location");
    (loc.clone(), Tables::new(loc))
}

#[test]
fn a_batched_ingest_is_read_the_same_by_independent_readers() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = tree(&dir.path().join("trail"), 48, 7);
    let root = dir.path().join("lake");
    let lake = LocalLake::open(&root).expect("lake");
    let objs = objects(&dir.path().join("trail"));
    assert_eq!(objs.len(), m.log_files.len());
    let opts = IngestOptions {
        commit_objects: 100,
        checkpoint_objects: 100,
        ..IngestOptions::default()
    };
    let run = ingest_on(&pool(2), &objs, &lake, &opts, m.kms_records);
    assert_eq!(
        run.versions.len(),
        objs.len().div_ceil(100),
        "one commit per 100 objects"
    );
    // A checkpoint follows every commit of `checkpoint_objects` or more (the full ones),
    // besides those of every `CHECKPOINT_INTERVAL` versions.
    let full = objs.len() / 100;
    assert!(full >= 2, "{} objects", objs.len());
    let checkpoints: BTreeSet<i64> = std::fs::read_dir(root.join("kms_events/_delta_log"))
        .expect("log")
        .filter_map(|e| checkpoint_version(&e.expect("entry").file_name().to_string_lossy()))
        .collect();
    assert_eq!(checkpoints, expected_checkpoints(&run.versions, full));
    // Rows of many objects share files: about one per worker, day and commit (48 hours
    // touch at most 3 days).
    let days = 3;
    assert!(
        run.files_added <= run.versions.len() as u64 * 2 * days,
        "{} files for {} objects",
        run.files_added,
        objs.len()
    );
    assert_eq!(data_files_on_disk(&root) as u64, run.files_added);

    let Some(python) = python() else { return };
    let seen = independent_read(&python, &root);
    let ev = &seen["kms_events"];
    assert_eq!(n(&ev["rows"]), m.kms_records, "every KMS event once");
    assert_eq!(n(&ev["ids"]), m.kms_records);
    assert_eq!(
        ev["files"].as_array().map(Vec::len),
        Some(run.files_added as usize)
    );
    for (day, files) in ev["days"].as_object().expect("days") {
        assert!(n(files) <= 16, "{day}: {files} files");
    }
    for t in ["kms_events", "objects"] {
        let p = &seen[t]["protocol"];
        assert_eq!(
            (n(&p["minReaderVersion"]), n(&p["minWriterVersion"])),
            (1, 2),
            "{t}"
        );
        assert!(p.get("readerFeatures").is_none() && p.get("writerFeatures").is_none());
    }
    assert_eq!(ev["partition_columns"], serde_json::json!(["event_date"]));
    let ob = &seen["objects"];
    assert_eq!(n(&ob["rows"]), objs.len() as u64, "one row per object");
    assert_eq!(n(&ob["distinct"]), objs.len() as u64);
    assert_eq!(n(&ob["kms_events"]), m.kms_records);
    assert_eq!(ob["sha256_mismatches"], serde_json::json!([]));
    assert_eq!(ob["partition_columns"], serde_json::json!(["object_date"]));
}

/// Data files per event day (`event_date=...` directory) on disk.
fn data_files_by_day(root: &Path) -> BTreeMap<String, usize> {
    let mut days = BTreeMap::new();
    for e in std::fs::read_dir(root.join("kms_events")).expect("table") {
        let e = e.expect("entry");
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("event_date=") {
            let files = std::fs::read_dir(e.path()).expect("day").count();
            days.insert(name, files);
        }
    }
    days
}

#[test]
fn threads_beyond_the_writers_add_no_file() {
    // Eight threads (as S3 sources are read, 16 at a time) and fewer writers: each writer
    // adds one file per day its workers' objects cover, however many threads read them.
    let dir = tempfile::tempdir().expect("tmp");
    let m = tree(&dir.path().join("trail"), 48, 23);
    let objs = objects(&dir.path().join("trail"));
    let pool = pool(8);
    for writers in [1, 3] {
        let root = dir.path().join(format!("lake-{writers}"));
        let lake = LocalLake::open(&root).expect("lake");
        let opts = IngestOptions {
            writers: Some(writers),
            ..IngestOptions::default()
        };
        let run = ingest_on(&pool, &objs, &lake, &opts, m.kms_records);
        assert_eq!(run.versions.len(), 1);
        let days = data_files_by_day(&root);
        assert!(days.len() >= 2, "48 hours over {days:?}");
        assert!(days.values().all(|&n| n <= writers), "{writers}: {days:?}");
        assert_eq!(days.values().sum::<usize>() as u64, run.files_added);
        if writers == 1 {
            assert!(days.values().all(|&n| n == 1), "{days:?}");
        }
        let ids = local_event_ids(&root);
        assert_eq!(ids.len() as u64, m.kms_records, "{writers}");
        assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len());
    }
}

/// A local lake whose staging directory is missing: every data file a writer starts
/// fails, and nothing else does.
#[derive(Debug)]
struct NoStaging {
    lake: LocalLake,
    staging: PathBuf,
}

impl LakeStore for NoStaging {
    fn uri(&self) -> String {
        self.lake.uri()
    }
    fn staging_dir(&self) -> &Path {
        &self.staging
    }
    fn publish(&self, staged: &Path, rel: &str) -> Result<(), kms_audit::lake::LakeError> {
        self.lake.publish(staged, rel)
    }
    fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, kms_audit::lake::LakeError> {
        self.lake.read(rel)
    }
    fn list(
        &self,
        prefix: &str,
    ) -> Result<Vec<kms_audit::lake::LakeFile>, kms_audit::lake::LakeError> {
        self.lake.list(prefix)
    }
    fn fetch(&self, rel: &str, local: &Path) -> Result<(), kms_audit::lake::LakeError> {
        self.lake.fetch(rel, local)
    }
    fn delete(&self, rel: &str) -> Result<(), kms_audit::lake::LakeError> {
        self.lake.delete(rel)
    }
    fn location(&self) -> Result<Location, kms_audit::lake::table::TableError> {
        self.lake.location()
    }
}

#[test]
fn a_failed_writer_fails_only_the_objects_whose_rows_it_held() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = tree(&dir.path().join("trail"), 6, 29);
    // Objects without a KMS event put nothing in the shared files.
    let quiet = dir.path().join("quiet");
    std::fs::create_dir_all(&quiet).expect("mkdir");
    for i in 0..3 {
        let records: Vec<Value> = (0..5)
            .map(|j| {
                serde_json::json!({
                    "eventVersion": "1.09", "eventSource": "s3.amazonaws.com",
                    "eventName": "GetObject", "eventTime": "2026-11-02T10:00:00Z",
                    "eventID": format!("q-{i}-{j}"), "awsRegion": "us-east-1",
                })
            })
            .collect();
        let body = serde_json::to_vec(&serde_json::json!({ "Records": records })).expect("json");
        std::fs::write(quiet.join(format!("quiet-{i}.json.gz")), crate::gz(&body)).expect("write");
    }
    let (objs, _) = local_sources(&[dir.path().join("trail"), quiet.clone()]).expect("sources");
    let root = dir.path().join("lake");
    let broken = NoStaging {
        lake: LocalLake::open(&root).expect("lake"),
        staging: root.join("no-such-staging"),
    };
    let opts = IngestOptions {
        keep_all_reports: true,
        ..IngestOptions::default()
    };
    let run = ingest_with(&objs, &broken, &opts, &|_| {}).expect("ingest");
    assert!(!run.failures.is_empty());
    assert_eq!(run.failures.len() + run.reports.len(), objs.len());
    for f in &run.failures {
        assert!(f.to_string().contains("worker files"), "{f}");
    }
    // The objects without KMS events are committed; no other is.
    assert!(
        run.reports.iter().all(|r| r.counts.kms_events == 0),
        "{:?}",
        run.reports
    );
    let committed: BTreeSet<&str> = run.reports.iter().map(|r| r.uri.as_str()).collect();
    for i in 0..3 {
        let uri = quiet.join(format!("quiet-{i}.json.gz"));
        assert!(
            committed.contains(uri.to_str().expect("utf-8")),
            "{committed:?}"
        );
    }
    assert!(run.reports.iter().all(|r| r.version.is_some()));
    // Nothing is lost: a working run reads exactly the objects that failed, and no other.
    let lake = LocalLake::open(&root).expect("lake");
    let again = ingest_with(&objs, &lake, &opts, &|_| {}).expect("ingest");
    assert_eq!(again.objects_failed, 0, "{:?}", again.failures);
    assert_eq!(again.objects_already_ingested as usize, run.reports.len());
    let failed: BTreeSet<&str> = run.failures.iter().map(|f| f.object.as_str()).collect();
    let reread: BTreeSet<&str> = again.reports.iter().map(|r| r.uri.as_str()).collect();
    assert_eq!(failed, reread);
    assert_eq!(again.counts.kms_events, m.kms_records);
    let ids = local_event_ids(&root);
    assert_eq!(ids.len() as u64, m.kms_records);
}

#[test]
fn reingest_adds_no_row_no_file_and_no_commit() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = tree(&dir.path().join("trail"), 6, 11);
    let root = dir.path().join("lake");
    let lake = LocalLake::open(&root).expect("lake");
    let objs = objects(&dir.path().join("trail"));
    let first = ingest_all(&objs, &lake, &|_| {}).expect("ingest");
    assert_eq!(first.counts.kms_events, m.kms_records);
    let files = data_files_on_disk(&root);
    let (loc, t) = tables(&root);
    let version = |t: &Tables| {
        loc.block_on(t.snapshot("kms_events", &AsOf::Latest))
            .expect("rt")
            .expect("snap")
            .version
    };
    let v = version(&t);
    // The same objects again, and a local copy of them elsewhere (same CloudTrail keys).
    let copy = dir.path().join("copy");
    for f in &m.log_files {
        let rel = f.strip_prefix(dir.path().join("trail")).expect("rel");
        std::fs::create_dir_all(copy.join(rel).parent().expect("parent")).expect("mkdir");
        std::fs::copy(f, copy.join(rel)).expect("copy");
    }
    // Both in one run: each object is read once.
    let fresh = dir.path().join("fresh-lake");
    let both = [dir.path().join("trail"), copy.clone()];
    let (mut all, _) = local_sources(&both).expect("sources");
    all.sort_by(|a, b| a.uri().cmp(b.uri()));
    let once = ingest_all(&all, &LocalLake::open(&fresh).expect("lake"), &|_| {}).expect("ingest");
    assert_eq!(once.reports.len(), objs.len());
    assert_eq!(once.objects_already_ingested, objs.len() as u64);
    assert_eq!(local_event_ids(&fresh).len() as u64, m.kms_records);
    for source in [dir.path().join("trail"), copy] {
        let again = ingest_all(&objects(&source), &lake, &|_| {}).expect("ingest");
        assert_eq!(again.objects_already_ingested, objs.len() as u64);
        assert_eq!(again.counts.records, 0, "nothing read again");
        assert!(again.versions.is_empty());
    }
    assert_eq!(data_files_on_disk(&root), files);
    assert_eq!(version(&t), v);
    assert_eq!(local_event_ids(&root).len() as u64, m.kms_records);
}

#[test]
fn a_crash_between_the_data_and_objects_commits_heals() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = tree(&dir.path().join("trail"), 2, 5);
    let root = dir.path().join("lake");
    let lake = LocalLake::open(&root).expect("lake");
    let objs = objects(&dir.path().join("trail"));
    let (loc, t) = tables(&root);
    loc.block_on(t.ensure()).expect("rt").expect("tables");
    // The first object's data commit, then the process "dies" before projecting it.
    let read = read_object(&objs[0], &lake).expect("read");
    let rec = ObjectRecord {
        object: read.report.object.clone(),
        source_uri: read.report.uri.clone(),
        object_date: read.report.object_date.clone(),
        size: read.report.size,
        etag: None,
        sha256: read.report.sha256.clone(),
        records: read.report.counts.records,
        kms_events: read.report.counts.kms_events,
        skipped: read.report.counts.skipped,
        rejected: read.report.counts.rejected,
        ingested_at: 0,
    };
    let v = loc
        .block_on(t.append_events(&[], std::slice::from_ref(&rec)))
        .expect("rt")
        .expect("data commit");
    let objects_rows = |loc: &Location| -> usize {
        let snap = loc
            .block_on(t.snapshot("objects", &AsOf::Latest))
            .expect("rt")
            .expect("snap");
        snap.files
            .iter()
            .map(|f| f.rows.unwrap_or(0) as usize)
            .sum()
    };
    assert_eq!(objects_rows(&loc), 0, "not projected yet");
    // The next ingest heals it and knows the object is in the lake.
    let run = ingest_all(&objs, &lake, &|_| {}).expect("ingest");
    assert_eq!(run.objects_already_ingested, 1);
    assert_eq!(run.reports.len(), objs.len() - 1);
    assert_eq!(
        objects_rows(&loc),
        objs.len(),
        "one row per object, none twice"
    );
    let synced = loc.block_on(t.sync_objects()).expect("rt").expect("sync");
    assert!(synced > v);
    assert_eq!(objects_rows(&loc), objs.len());
    let _ = m;
}

/// Not a test on its own: the body of a second OS process, started by
/// `two_processes_ingesting_one_lake_lose_and_double_nothing`.
#[test]
fn helper_ingest_process() {
    let (Ok(src), Ok(root)) = (
        std::env::var("KMS_AUDIT_HELPER_SOURCE"),
        std::env::var("KMS_AUDIT_HELPER_LAKE"),
    ) else {
        return;
    };
    let lake = LocalLake::open(&root).expect("lake");
    let opts = IngestOptions {
        commit_objects: 7,
        ..IngestOptions::default()
    };
    let run = ingest_with(&objects(Path::new(&src)), &lake, &opts, &|_| {}).expect("ingest");
    assert_eq!(run.objects_failed, 0, "{:?}", run.failures);
}

fn spawn_ingest(src: &Path, lake: &Path) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().expect("exe"))
        .args(["--exact", "lake::helper_ingest_process", "--test-threads=1"])
        .env("KMS_AUDIT_HELPER_SOURCE", src)
        .env("KMS_AUDIT_HELPER_LAKE", lake)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn")
}

#[test]
fn two_processes_ingesting_one_lake_lose_and_double_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let ma = tree(&a, 12, 21);
    let mb = tree(&b, 12, 22);
    // Overlapping sources: both processes also ingest a shared part.
    let shared = dir.path().join("a/AWSLogs");
    let root = dir.path().join("lake");
    let mut p1 = spawn_ingest(&a, &root);
    let mut p2 = spawn_ingest(&b, &root);
    let mut p3 = spawn_ingest(&shared, &root);
    for p in [&mut p1, &mut p2, &mut p3] {
        assert!(p.wait().expect("wait").success());
    }
    let ids = local_event_ids(&root);
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(
        distinct.len() as u64,
        ma.kms_records + mb.kms_records,
        "none lost"
    );
    // Objects both processes read at the same moment are in twice until compaction.
    let lake = LocalLake::open(&root).expect("lake");
    compact(&lake, None, &CompactOptions::default()).expect("compact");
    assert_eq!(
        local_event_ids(&root).len() as u64,
        ma.kms_records + mb.kms_records,
        "exact after compaction"
    );
    for src in [&a, &b] {
        let again = ingest_all(&objects(src), &lake, &|_| {}).expect("ingest");
        assert_eq!(again.counts.records, 0, "every object recorded");
    }
}

#[test]
fn compaction_racing_an_ingest_loses_no_row() {
    let dir = tempfile::tempdir().expect("tmp");
    let first = tree(&dir.path().join("first"), 6, 31);
    let second = tree(&dir.path().join("second"), 6, 32);
    let root = dir.path().join("lake");
    let lake = LocalLake::open(&root).expect("lake");
    ingest_all(&objects(&dir.path().join("first")), &lake, &|_| {}).expect("ingest");
    let done = std::sync::atomic::AtomicBool::new(false);
    let compactions = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            let opts = IngestOptions {
                commit_objects: 8,
                ..IngestOptions::default()
            };
            let run = ingest_with(&objects(&dir.path().join("second")), &lake, &opts, &|_| {})
                .expect("ingest");
            assert_eq!(run.objects_failed, 0, "{:?}", run.failures);
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        s.spawn(|| {
            let opts = CompactOptions {
                min_files: 2,
                ..CompactOptions::default()
            };
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let r = compact(&lake, None, &opts).expect("compact");
                compactions.fetch_add(
                    r.iter().filter(|r| r.version.is_some()).count(),
                    std::sync::atomic::Ordering::SeqCst,
                );
            }
        });
    });
    assert!(
        compactions.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "they overlapped"
    );
    let total = first.kms_records + second.kms_records;
    assert_eq!(local_event_ids(&root).len() as u64, total);
    compact(&lake, None, &CompactOptions::default()).expect("compact");
    assert_eq!(local_event_ids(&root).len() as u64, total);
}

#[test]
fn earlier_versions_stay_readable_by_number_and_time() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = tree(&dir.path().join("a"), 3, 41);
    let b = tree(&dir.path().join("b"), 3, 42);
    let root = dir.path().join("lake");
    let lake = LocalLake::open(&root).expect("lake");
    let first = ingest_all(&objects(&dir.path().join("a")), &lake, &|_| {}).expect("ingest");
    let v1 = *first.versions.last().expect("version");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let between = kms_audit::time::now_micros();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    ingest_all(&objects(&dir.path().join("b")), &lake, &|_| {}).expect("ingest");
    let count = |as_of: AsOf| -> (i64, i64) {
        let ctx = kms_audit::sql::open_local_as_of(&root, &as_of).expect("open");
        let b = crate::rt()
            .block_on(kms_audit::sql::run_sql(
                &ctx,
                "SELECT (SELECT count(*) FROM kms_events), (SELECT version FROM lake_version)",
            ))
            .expect("sql");
        let col = |i: usize| {
            arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(b[0].column(i))
                .value(0)
        };
        (col(0), col(1))
    };
    let total = (a.kms_records + b.kms_records) as i64;
    assert_eq!(count(AsOf::Latest).0, total);
    assert_eq!(count(AsOf::Version(v1)), (a.kms_records as i64, v1));
    assert_eq!(count(AsOf::Time(between)), (a.kms_records as i64, v1));
    assert_eq!(count(AsOf::parse(&v1.to_string()).expect("parse")).1, v1);
}

#[test]
fn an_old_layout_lake_is_refused_then_converted_in_place() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = tree(&dir.path().join("trail"), 3, 51);
    // Data files of a Delta lake, laid out as the old layout had them: per-object files
    // plus a manifest that hides one of them (a replaced file still on disk).
    let src = dir.path().join("src");
    let lake = LocalLake::open(&src).expect("lake");
    let opts = IngestOptions {
        commit_objects: 1,
        ..IngestOptions::default()
    };
    pool1()
        .install(|| ingest_with(&objects(&dir.path().join("trail")), &lake, &opts, &|_| {}))
        .expect("ingest");
    let old = dir.path().join("old");
    let mut per_day: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for e in walkdir::WalkDir::new(src.join("kms_events"))
        .into_iter()
        .flatten()
    {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "parquet")
            && !p.to_string_lossy().contains("_delta_log")
        {
            let day = p
                .parent()
                .and_then(|d| d.file_name())
                .expect("day")
                .to_string_lossy()
                .into_owned();
            per_day.entry(day).or_default().push(p.to_path_buf());
        }
    }
    let (day, files) = per_day
        .iter()
        .find(|(_, f)| f.len() >= 2)
        .expect("a day of 2+ files");
    let mut hidden_rows = 0u64;
    for (d, files) in &per_day {
        std::fs::create_dir_all(old.join("kms_events").join(d)).expect("mkdir");
        for (i, f) in files.iter().enumerate() {
            std::fs::copy(
                f,
                old.join("kms_events")
                    .join(d)
                    .join(format!("obj-{i}.parquet")),
            )
            .expect("copy");
        }
    }
    // The manifest: obj-0 is an output that replaced obj-1.
    let size = |i: usize| {
        std::fs::metadata(
            old.join("kms_events")
                .join(day)
                .join(format!("obj-{i}.parquet")),
        )
        .expect("meta")
        .len()
    };
    let manifest = serde_json::json!({"committed": {
        "outputs": [{"name": "obj-0.parquet", "size": size(0)}],
        "replaced": [{"name": "obj-1.parquet", "size": size(1)}],
        "committed_at": 1}});
    std::fs::write(
        old.join("kms_events").join(day).join("_manifest.json"),
        manifest.to_string(),
    )
    .expect("manifest");
    {
        use parquet::file::reader::FileReader;
        let r = parquet::file::reader::SerializedFileReader::new(
            std::fs::File::open(&files[1]).expect("open"),
        )
        .expect("pq");
        hidden_rows += r.metadata().file_metadata().num_rows() as u64;
    }
    let Err(err) = kms_audit::sql::open_local(&old) else {
        panic!("an old layout lake opened")
    };
    assert!(err.to_string().contains("kms-audit convert"), "{err}");
    let old_lake = LocalLake::open(&old).expect("lake");
    let report = kms_audit::lake::convert::convert(&old_lake).expect("convert");
    assert_eq!(report.hidden, 1);
    assert_eq!(
        local_event_ids(&old).len() as u64,
        m.kms_records - hidden_rows
    );
    // Converting again does nothing.
    assert_eq!(
        kms_audit::lake::convert::convert(&old_lake)
            .expect("again")
            .version,
        None
    );
}

fn pool1() -> rayon::ThreadPool {
    pool(1)
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool")
}

/// Ingests `objs` on `pool`'s threads; every object is read and the records add up.
fn ingest_on(
    pool: &rayon::ThreadPool,
    objs: &[LocalFile],
    lake: &LocalLake,
    opts: &IngestOptions,
    kms_records: u64,
) -> kms_audit::ingest::RunSummary {
    let run = pool
        .install(|| ingest_with(objs, lake, opts, &|_| {}))
        .expect("ingest");
    assert_eq!(run.objects_failed, 0, "{:?}", run.failures);
    assert_eq!(run.counts.kms_events, kms_records);
    assert!(run.counts.reconciles());
    run
}

#[test]
fn two_writers_on_an_s3_lake_commit_every_row() {
    let Some(env) = S3Env::connect() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let a = tree(&dir.path().join("a"), 6, 61);
    let b = tree(&dir.path().join("b"), 6, 62);
    let bucket = env.bucket("lake");
    let uri = S3Uri::parse(&format!("s3://{bucket}/lake")).expect("uri");
    // Each writer checkpoints after each of its commits, racing the other's.
    let opts = IngestOptions {
        commit_objects: 4,
        checkpoint_objects: 4,
        ..IngestOptions::default()
    };
    let mut want_checkpoints = BTreeSet::new();
    std::thread::scope(|s| {
        let runs: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|src| {
                let (env, uri, opts, dir) = (&env, &uri, &opts, dir.path());
                s.spawn(move || {
                    let lake = env.lake(uri);
                    let objs = objects(&dir.join(src));
                    let run = ingest_with(&objs, &lake, opts, &|_| {}).expect("ingest");
                    assert_eq!(run.objects_failed, 0, "{:?}", run.failures);
                    expected_checkpoints(&run.versions, objs.len() / 4)
                })
            })
            .collect();
        for r in runs {
            want_checkpoints.extend(r.join().expect("writer"));
        }
    });
    let ids = env.event_ids(&uri);
    assert_eq!(ids.len() as u64, a.kms_records + b.kms_records);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len());
    // Every commit is in the log once, numbered without gaps.
    let logs: Vec<String> = env
        .keys(&bucket, "lake/kms_events/_delta_log/")
        .into_iter()
        .filter(|k| k.ends_with(".json"))
        .collect();
    let expected = 1
        + objects(&dir.path().join("a")).len().div_ceil(4)
        + objects(&dir.path().join("b")).len().div_ceil(4);
    assert_eq!(logs.len(), expected, "{logs:?}");
    // A checkpoint of every full commit's version, whoever wrote the latest one.
    assert_eq!(env.checkpoints(&uri), want_checkpoints);
    let lake = env.lake(&uri);
    let again = ingest_all(&objects(dir.path()), &lake, &|_| {}).expect("ingest");
    assert_eq!(again.counts.records, 0, "both writers' objects recorded");
    let _ = lake.uri();
}

#[test]
fn an_object_over_a_limit_fails_alone_and_a_deadline_leaves_the_rest_retryable() {
    use kms_audit::ingest::{Limits, ObjectErrorKind};
    let dir = tempfile::tempdir().expect("tmp");
    let m = tree(&dir.path().join("trail"), 2, 71);
    // An array of 50,000 junk values: a gzip of a few KB.
    let junk = dir.path().join("trail/junk.json.gz");
    let body = format!("[{}1]", "1,".repeat(50_000));
    std::fs::write(&junk, crate::gz(body.as_bytes())).expect("write");
    let root = dir.path().join("lake");
    let lake = LocalLake::open(&root).expect("lake");
    let objs = objects(&dir.path().join("trail"));
    let opts = IngestOptions {
        limits: Limits {
            rejects: 1_000,
            ..Limits::default()
        },
        ..IngestOptions::default()
    };
    let run = ingest_with(&objs, &lake, &opts, &|_| {}).expect("ingest");
    assert_eq!(run.failures.len(), 1, "{:?}", run.failures);
    let f = &run.failures[0];
    assert!(f.object.ends_with("junk.json.gz"));
    assert!(
        matches!(f.kind, ObjectErrorKind::Limit(_)) && !f.retryable(),
        "{f}"
    );
    assert!(
        f.to_string().contains("more than 1000 rejected records"),
        "{f}"
    );
    assert_eq!(run.counts.kms_events, m.kms_records, "the others are in");
    // Nothing of the junk is kept: no rejects file for it.
    let rejects: Vec<_> = walkdir::WalkDir::new(root.join("rejects"))
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .collect();
    assert!(rejects.is_empty(), "{rejects:?}");

    // A deadline already passed: nothing is read or committed, and every object can be
    // retried.
    let more = tree(&dir.path().join("more"), 2, 72);
    let late = IngestOptions {
        deadline: Some(std::time::Instant::now()),
        ..IngestOptions::default()
    };
    let run =
        ingest_with(&objects(&dir.path().join("more")), &lake, &late, &|_| {}).expect("ingest");
    assert_eq!(run.failures.len(), more.log_files.len());
    assert!(
        run.failures
            .iter()
            .all(|f| matches!(f.kind, ObjectErrorKind::Deadline) && f.retryable())
    );
    assert!(run.versions.is_empty());
    assert_eq!(local_event_ids(&root).len() as u64, m.kms_records);
}

#[test]
fn a_large_object_gets_files_of_its_own_and_small_ones_share() {
    use kms_audit::ingest::PendingRows;
    let dir = tempfile::tempdir().expect("tmp");
    let big = dir.path().join("trail/big.json.gz");
    std::fs::create_dir_all(big.parent().expect("dir")).expect("mkdir");
    let (_, kms, _) =
        kms_audit_generate::write_large_object(&big, 48_000_000, 3, 1).expect("large object");
    let root = dir.path().join("lake");
    let lake = LocalLake::open(&root).expect("lake");
    // Its rows are more than one object may hold in memory: they go to staged files as
    // they are read.
    let read = read_object(&LocalFile::new(&big), &lake).expect("read");
    assert_eq!(read.report.counts.kms_events, kms);
    match &read.rows {
        PendingRows::Files(files) => {
            assert!(!files.is_empty());
            assert_eq!(files.iter().map(|f| f.rows as u64).sum::<u64>(), kms);
        }
        PendingRows::Memory(_) => panic!("{kms} KMS rows held in memory"),
    }
    drop(read);
    // Beside small objects, in one commit.
    let m = tree(&dir.path().join("trail/small"), 3, 81);
    let run = ingest_all(&objects(&dir.path().join("trail")), &lake, &|_| {}).expect("ingest");
    assert_eq!(run.objects_failed, 0, "{:?}", run.failures);
    assert_eq!(run.counts.kms_events, kms + m.kms_records);
    assert_eq!(run.versions.len(), 1);
    assert_eq!(local_event_ids(&root).len() as u64, kms + m.kms_records);
}
