//! The `kms-audit` binary against a local S3 server (started by scripts/test): S3 sources,
//! an S3 lake, SQL, detection state and compaction, with the standard AWS environment.

mod common;

use std::path::Path;
use std::process::Output;

use aws_sdk_s3::primitives::ByteStream;

struct Server {
    endpoint: String,
    client: aws_sdk_s3::Client,
    rt: tokio::runtime::Runtime,
}

fn server() -> Option<Server> {
    let Ok(endpoint) = std::env::var("KMS_AUDIT_TEST_S3_ENDPOINT") else {
        if std::env::var_os("KMS_AUDIT_SKIP_S3_TESTS").is_some() {
            return None;
        }
        panic!("needs a local S3 server: run scripts/test, or set KMS_AUDIT_TEST_S3_ENDPOINT");
    };
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let config = rt.block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&endpoint)
            .credentials_provider(aws_credential_types::Credentials::new(
                "testing", "testing", None, None, "tests",
            ))
            .load(),
    );
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    Some(Server {
        endpoint,
        client,
        rt,
    })
}

/// Runs the CLI with only the standard AWS environment pointing at the server.
fn kms_audit(s: &Server, args: &[&str], cwd: &Path) -> Output {
    common::command(args, cwd)
        .env("AWS_ENDPOINT_URL", &s.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .output()
        .expect("run kms-audit")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        common::stdout(o),
        common::stderr(o)
    );
    common::stdout(o)
}

#[test]
fn ingest_sql_detect_and_compact_an_s3_lake_from_an_s3_trail() {
    let Some(s) = server() else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let tag = format!(
        "{}-{}",
        std::process::id(),
        dir.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("x")
            .to_lowercase()
            .replace(['.', '_'], "")
    );
    let (trail, lake) = (format!("trail-{tag}"), format!("lake-{tag}"));
    for b in [&trail, &lake] {
        s.rt.block_on(s.client.create_bucket().bucket(b.as_str()).send())
            .expect("bucket");
    }
    // Generating is local: no S3 environment needed.
    common::generate(
        dir,
        "tree",
        30,
        1,
        &["--kms-per-hour", "10", "--manifest", "m.json"],
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("m.json")).expect("m")).expect("json");
    let kms = manifest["kms_records"].as_u64().expect("kms_records");
    let tree = dir.join("tree");
    for e in walkdir::WalkDir::new(&tree) {
        let e = e.expect("walk");
        if e.file_type().is_file() {
            let key = e
                .path()
                .strip_prefix(&tree)
                .expect("rel")
                .to_string_lossy()
                .replace('\\', "/");
            let body = ByteStream::from(std::fs::read(e.path()).expect("read"));
            s.rt.block_on(
                s.client
                    .put_object()
                    .bucket(&trail)
                    .key(format!("trail/{key}"))
                    .body(body)
                    .send(),
            )
            .expect("put");
        }
    }
    let lake_uri = format!("s3://{lake}/audit");
    let out = ok(&kms_audit(
        &s,
        &[
            "ingest",
            &format!("s3://{trail}/trail/"),
            "--lake",
            &lake_uri,
            "--json",
            // More writers than a CI machine's cores, fewer than the 16 reading threads.
            "--writers",
            "4",
        ],
        dir,
    ));
    let summary: serde_json::Value = serde_json::from_str(out.trim()).expect("summary");
    assert_eq!(summary["kms_events"].as_u64(), Some(kms));
    assert_eq!(summary["objects_failed"].as_u64(), Some(0));
    // One commit of 30 hours (two event days): at most one file per writer and day.
    let written = summary["files_written"].as_u64().expect("files_written");
    assert!((2..=8).contains(&written), "{written} files");
    assert!(
        summary["objects_skipped"].as_u64().unwrap_or(0) > 0,
        "digests are skipped by name"
    );

    let count = |dir: &Path| -> u64 {
        let out = ok(&kms_audit(
            &s,
            &[
                "sql",
                "SELECT count(*) AS n FROM kms_events",
                "--lake",
                &lake_uri,
                "--format",
                "csv",
            ],
            dir,
        ));
        out.lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("a count")
    };
    assert_eq!(count(dir), kms);

    // Detection state lives in the S3 lake.
    ok(&kms_audit(
        &s,
        &["detect", "--lake", &lake_uri, "--format", "json"],
        dir,
    ));
    let state = s.rt.block_on(
        s.client
            .get_object()
            .bucket(&lake)
            .key("audit/state/detections.json")
            .send(),
    );
    assert!(state.is_ok(), "detection state written to the lake");

    let out = ok(&kms_audit(
        &s,
        &["compact", "--lake", &lake_uri, "--json"],
        dir,
    ));
    // Each day of several files becomes one; every file written is merged or left alone.
    let days: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let merged: u64 = days
        .iter()
        .map(|r| r["files_in"].as_u64().unwrap_or(0))
        .sum();
    assert!(merged >= 2, "{out}");
    for r in &days {
        if r["files_in"].as_u64().unwrap_or(0) > 1 {
            assert_eq!(r["files_out"].as_u64(), Some(1), "{r}");
        }
    }
    assert_eq!(count(dir), kms);

    let bad = kms_audit(
        &s,
        &[
            "ingest",
            "s3://no-such-bucket-kms-audit/x/",
            "--lake",
            &lake_uri,
        ],
        dir,
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(common::stderr(&bad).contains("no-such-bucket-kms-audit"));
}
