//! The AWS path against a real local S3 server (moto's, started by `scripts/test`, which
//! exports its URL as `KMS_AUDIT_TEST_S3_ENDPOINT`): S3 sources, an S3 lake, SQL over it,
//! and the ingest Lambda's handler driven with real-shaped events.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_config::{BehaviorVersion, Region};

use crate::gz;
use aws_sdk_s3::primitives::ByteStream;
use kms_audit::ingest::{ingest_all, local_sources};
use kms_audit::lake::table::AsOf;
use kms_audit::lake::{LakeStore, LocalLake};
use kms_audit::s3::{Aws, S3Lake, S3Uri, s3_sources};
use kms_audit::sql::{open_local, open_s3, run_sql};
use kms_audit_generate::{GenConfig, Manifest, generate_tree};

/// A local S3 server and clients for it.
pub struct S3Env {
    pub aws: Aws,
    pub rt: tokio::runtime::Runtime,
}

impl S3Env {
    /// The test server; panics with directions when there is none (set
    /// `KMS_AUDIT_SKIP_S3_TESTS=1` to skip these tests knowingly).
    pub fn connect() -> Option<S3Env> {
        let Ok(endpoint) = std::env::var("KMS_AUDIT_TEST_S3_ENDPOINT") else {
            if std::env::var_os("KMS_AUDIT_SKIP_S3_TESTS").is_some() {
                eprintln!("skipped: KMS_AUDIT_SKIP_S3_TESTS is set");
                return None;
            }
            panic!(
                "these tests need a local S3 server: run scripts/test (it starts one), or set \
                 KMS_AUDIT_TEST_S3_ENDPOINT=http://127.0.0.1:PORT (KMS_AUDIT_SKIP_S3_TESTS=1 skips)"
            );
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let creds =
            aws_credential_types::Credentials::new("testing", "testing", None, None, "tests");
        let config = rt.block_on(
            aws_config::defaults(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .endpoint_url(&endpoint)
                .credentials_provider(creds)
                .load(),
        );
        Some(S3Env {
            aws: Aws::from_config(config),
            rt,
        })
    }

    /// A new, empty bucket.
    pub fn bucket(&self, what: &str) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "{what}-{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        self.rt
            .block_on(self.aws.s3.create_bucket().bucket(&name).send())
            .expect("create bucket");
        name
    }

    pub fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>) {
        self.rt
            .block_on(
                self.aws
                    .s3
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .body(ByteStream::from(bytes))
                    .send(),
            )
            .expect("put object");
    }

    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        self.rt.block_on(async {
            let out = self
                .aws
                .s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .ok()?;
            Some(out.body.collect().await.ok()?.into_bytes().to_vec())
        })
    }

    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        self.rt
            .block_on(kms_audit::s3::list_keys(&self.aws.s3, bucket, prefix))
            .expect("list")
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    /// The versions of `kms_events` that have a checkpoint in the S3 lake at `lake`.
    pub fn checkpoints(&self, lake: &S3Uri) -> std::collections::BTreeSet<i64> {
        let log = format!("{}/kms_events/_delta_log/", lake.key.trim_end_matches('/'));
        self.keys(&lake.bucket, &log)
            .iter()
            .filter_map(|k| checkpoint_version(k))
            .collect()
    }

    /// Uploads every file under `root` with its relative path as the key, under `prefix`.
    pub fn upload_tree(&self, bucket: &str, prefix: &str, root: &Path) -> usize {
        let mut n = 0;
        for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
            let entry = entry.expect("walk");
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry.path().strip_prefix(root).expect("rel");
            let key = format!("{prefix}{}", rel.to_string_lossy().replace('\\', "/"));
            self.put(bucket, &key, std::fs::read(entry.path()).expect("read"));
            n += 1;
        }
        n
    }

    pub fn lake(&self, uri: &S3Uri) -> S3Lake {
        let _guard = self.rt.enter();
        S3Lake::open(&self.aws, uri).expect("s3 lake")
    }

    /// Sorted `event_id`s of an S3 lake, read with DataFusion through the object store.
    pub fn event_ids(&self, lake: &S3Uri) -> Vec<String> {
        let _guard = self.rt.enter();
        let ctx = self
            .rt
            .block_on(open_s3(&self.aws, lake, &AsOf::Latest))
            .expect("open s3 lake");
        ids(&self
            .rt
            .block_on(run_sql(
                &ctx,
                "SELECT event_id FROM kms_events ORDER BY event_id",
            ))
            .expect("sql"))
    }
}

/// The version of a Delta checkpoint from its file name or key (`…/00…09.checkpoint.parquet`).
pub fn checkpoint_version(path: &str) -> Option<i64> {
    path.rsplit('/')
        .next()?
        .strip_suffix(".checkpoint.parquet")?
        .parse()
        .ok()
}

pub fn ids(batches: &[arrow::array::RecordBatch]) -> Vec<String> {
    use arrow::array::AsArray;
    let mut out = Vec::new();
    for b in batches {
        let col =
            arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).expect("cast");
        for v in col.as_string::<i32>().iter() {
            out.push(v.unwrap_or_default().to_owned());
        }
    }
    out
}

/// Sorted `event_id`s of a local lake.
pub fn local_event_ids(root: &Path) -> Vec<String> {
    let ctx = open_local(root).expect("open");
    let rt = crate::rt();
    ids(&rt
        .block_on(run_sql(
            &ctx,
            "SELECT event_id FROM kms_events ORDER BY event_id",
        ))
        .expect("sql"))
}

pub fn small_tree(dir: &Path) -> Manifest {
    let cfg = GenConfig {
        hours: 6,
        kms_per_hour: 10,
        files_per_hour: 1,
        accounts: 1,
        regions: vec!["us-east-1".into()],
        ..GenConfig::default()
    };
    generate_tree(&cfg, dir).expect("generate")
}

/// The expected rows: the same tree ingested from local files into a local lake.
fn expected_ids(tree: &Path) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tmp");
    let lake = LocalLake::open(dir.path()).expect("lake");
    let (objects, _) = local_sources(&[tree.to_path_buf()]).expect("sources");
    let run = ingest_all(&objects, &lake, &|_| {}).expect("ingest");
    assert_eq!(run.objects_failed, 0);
    local_event_ids(dir.path())
}

#[test]
fn s3_sources_into_an_s3_lake_give_exactly_the_kms_rows() {
    let Some(env) = S3Env::connect() else { return };
    let tree = tempfile::tempdir().expect("tmp");
    let m = small_tree(tree.path());
    let trail = env.bucket("trail");
    let uploaded = env.upload_tree(&trail, "org/", tree.path());
    assert_eq!(
        uploaded,
        m.log_files.len() + m.digest_files.len() + m.insight_files.len()
    );
    let lake_bucket = env.bucket("lake");
    let lake_uri = S3Uri::parse(&format!("s3://{lake_bucket}/audit")).expect("uri");

    let (objects, skipped) = env
        .rt
        .block_on(s3_sources(
            &env.aws,
            &S3Uri::parse(&format!("s3://{trail}/org/")).expect("uri"),
        ))
        .expect("list");
    // Digests are sources too (for the `digests` table); Insights files are skipped.
    assert_eq!(objects.len(), m.log_files.len() + m.digest_files.len());
    assert_eq!(skipped.len(), m.insight_files.len());
    let lake = env.lake(&lake_uri);
    let run = ingest_all(&objects, &lake, &|_| {}).expect("ingest");
    assert_eq!(run.objects_failed, 0, "{:?}", run.failures);
    assert!(run.counts.reconciles());
    assert_eq!(run.counts.kms_events, m.kms_records);
    assert_eq!(run.counts.records, m.records);

    let got = env.event_ids(&lake_uri);
    assert_eq!(got.len() as u64, m.kms_records);
    assert_eq!(got, expected_ids(tree.path()), "S3 and local ingest differ");
    // Each object's record carries the ETag S3 answered with and the SHA-256 of its
    // decompressed bytes.
    for r in &run.reports {
        let etag = r
            .etag
            .as_deref()
            .unwrap_or_else(|| panic!("{}: no ETag", r.uri));
        assert!(etag.len() >= 32 && !etag.contains('"'), "{etag}");
        assert_eq!(r.sha256.len(), 64);
    }
    let ctx = env
        .rt
        .block_on(open_s3(&env.aws, &lake_uri, &AsOf::Latest))
        .expect("open");
    let n = env
        .rt
        .block_on(run_sql(
            &ctx,
            "SELECT count(*) FROM objects WHERE etag IS NOT NULL AND length(sha256) = 64",
        ))
        .expect("sql");
    assert_eq!(
        arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(n[0].column(0)).value(0)
            as usize,
        m.log_files.len()
    );
    // Files sit under the prefix: the tables' logs and Hive-partitioned data files,
    // nothing left staged.
    let keys = env.keys(&lake_bucket, "");
    assert!(
        keys.iter().all(|k| [
            "audit/kms_events/event_date=",
            "audit/kms_events/_delta_log/",
            "audit/objects/object_date=",
            "audit/objects/_delta_log/",
            "audit/digests/digest_date=",
            "audit/digests/_delta_log/",
            "audit/trail_events/_delta_log/"
        ]
        .iter()
        .any(|p| k.starts_with(p))),
        "{keys:?}"
    );

    // Ingesting the same objects again reads none of them: no new rows, same keys.
    let again = ingest_all(&objects, &lake, &|_| {}).expect("ingest");
    assert_eq!(again.objects_failed, 0);
    assert_eq!(again.objects_already_ingested, objects.len() as u64);
    assert_eq!(env.event_ids(&lake_uri).len() as u64, m.kms_records);
    assert_eq!(env.keys(&lake_bucket, ""), keys);
}

#[test]
fn missing_and_corrupt_objects_fail_alone_with_their_reason() {
    let Some(env) = S3Env::connect() else { return };
    let trail = env.bucket("trail");
    let good = br#"{"Records":[{"eventVersion":"1.08","eventSource":"kms.amazonaws.com","eventName":"Decrypt","eventTime":"2026-11-01T10:00:00Z","eventID":"e-1","awsRegion":"us-east-1","recipientAccountId":"111122223333"}]}"#;
    let prefix = "AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/01/";
    let good_key = format!("{prefix}111122223333_CloudTrail_us-east-1_20261101T1000Z_good.json.gz");
    let bad_key = format!("{prefix}111122223333_CloudTrail_us-east-1_20261101T1000Z_bad.json.gz");
    env.put(&trail, &good_key, gz(good));
    let mut truncated = gz(good);
    truncated.truncate(truncated.len() / 2);
    env.put(&trail, &bad_key, truncated);
    let handle = env.rt.handle().clone();
    let objects = vec![
        kms_audit::s3::S3Object::new(&env.aws, handle.clone(), &trail, &good_key, None),
        kms_audit::s3::S3Object::new(&env.aws, handle.clone(), &trail, &bad_key, None),
        kms_audit::s3::S3Object::new(
            &env.aws,
            handle,
            &trail,
            &format!("{prefix}gone.json.gz"),
            None,
        ),
    ];
    let lake_bucket = env.bucket("lake");
    let lake_uri = S3Uri::parse(&format!("s3://{lake_bucket}")).expect("uri");
    let lake = env.lake(&lake_uri);
    let run = ingest_all(&objects, &lake, &|_| {}).expect("ingest");
    assert_eq!(run.objects_failed, 2);
    assert_eq!(run.counts.kms_events, 1);
    let mut failures: Vec<(String, bool, String)> = run
        .failures
        .iter()
        .map(|f| (f.object.clone(), f.retryable(), f.to_string()))
        .collect();
    failures.sort();
    assert!(
        failures[0].0.ends_with("_bad.json.gz") && !failures[0].1,
        "{failures:?}"
    );
    assert!(
        failures[1].0.ends_with("gone.json.gz") && !failures[1].1,
        "{failures:?}"
    );
    assert!(failures[1].2.contains("NoSuchKey"), "{}", failures[1].2);
    assert_eq!(env.event_ids(&lake_uri), vec!["e-1".to_owned()]);
}

#[test]
fn large_lake_files_go_up_in_parts_and_small_files_round_trip() {
    let Some(env) = S3Env::connect() else { return };
    let bucket = env.bucket("lake");
    let lake = env.lake(&S3Uri::parse(&format!("s3://{bucket}/p/")).expect("uri"));
    assert_eq!(lake.uri(), format!("s3://{bucket}/p"));
    // 40 MiB + 3 bytes: three parts, the last one short.
    let size = 40 * 1024 * 1024 + 3;
    let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let staged = lake.staging_dir().join("big.tmp");
    std::fs::write(&staged, &data).expect("stage");
    lake.publish(&staged, "kms_events/event_date=2026-11-01/big.parquet")
        .expect("publish");
    assert!(!staged.exists(), "the staged file is consumed");
    let back = env
        .get(&bucket, "p/kms_events/event_date=2026-11-01/big.parquet")
        .expect("get");
    assert!(back == data, "multipart upload changed the bytes");

    assert_eq!(lake.read("state/x.json").expect("read"), None);
    lake.write("state/x.json", b"{\"a\":1}").expect("write");
    assert_eq!(
        lake.read("state/x.json").expect("read").as_deref(),
        Some(&b"{\"a\":1}"[..])
    );
    let listed = lake.list("state").expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].rel.as_str(), listed[0].size),
        ("state/x.json", 7)
    );
    let local = tempfile::NamedTempFile::new().expect("tmp");
    lake.fetch("state/x.json", local.path()).expect("fetch");
    assert_eq!(std::fs::read(local.path()).expect("read"), b"{\"a\":1}");
    lake.delete("state/x.json").expect("delete");
    lake.delete("state/x.json").expect("deleting twice is fine");
    assert!(lake.list("state").expect("list").is_empty());
}
