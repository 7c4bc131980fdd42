//! Benchmark (not a test): one SQS batch of 100 CloudTrail objects through the ingest
//! handler against a local S3 server, as the Lambda receives it: wall time, peak RSS, the
//! commits and files it adds. `scripts/bench-lambda` starts moto and runs it.
//!
//! Environment: `KMS_AUDIT_TEST_S3_ENDPOINT` (the S3 server), `KMS_AUDIT_BENCH_OBJECTS`
//! (default 100).

use std::time::Instant;

use aws_config::{BehaviorVersion, Region};
use ingest_fn::{Handler, IngestEvent};
use kms_audit::s3::{Aws, S3Uri};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = std::env::var("KMS_AUDIT_TEST_S3_ENDPOINT")
        .map_err(|_| "KMS_AUDIT_TEST_S3_ENDPOINT: start moto (scripts/bench-lambda does)")?;
    let n: usize = std::env::var("KMS_AUDIT_BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let creds = aws_credential_types::Credentials::new("testing", "testing", None, None, "bench");
    let config = rt.block_on(
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&endpoint)
            .credentials_provider(creds)
            .load(),
    );
    let aws = Aws::from_config(config);
    let stamp = std::process::id();
    let (trail, lake_bucket) = (
        format!("bench-trail-{stamp}"),
        format!("bench-lake-{stamp}"),
    );
    for b in [&trail, &lake_bucket] {
        rt.block_on(aws.s3.create_bucket().bucket(b).send())?;
    }
    // CloudTrail-sized objects: 2 accounts x 2 regions, 5-minute files.
    let dir = tempfile::tempdir()?;
    let cfg = kms_audit_generate::GenConfig {
        hours: (n as u32).div_ceil(4 * 12).max(1),
        files_per_hour: 12,
        // About 170 records per object, as CloudTrail's 5-minute files have.
        kms_per_hour: 6_000,
        accounts: 2,
        regions: vec!["us-east-1".into(), "eu-west-1".into()],
        incidents: false,
        seed: 5,
        ..Default::default()
    };
    let m = kms_audit_generate::generate_tree(&cfg, dir.path())?;
    let mut messages = Vec::new();
    let mut bytes = 0u64;
    for (i, f) in m.log_files.iter().take(n).enumerate() {
        let key = f
            .strip_prefix(dir.path())?
            .to_string_lossy()
            .replace('\\', "/");
        let body = std::fs::read(f)?;
        bytes += body.len() as u64;
        rt.block_on(
            aws.s3
                .put_object()
                .bucket(&trail)
                .key(&key)
                .body(body.into())
                .send(),
        )?;
        let detail = json!({"bucket": {"name": trail}, "object": {"key": key, "size": 1}});
        let event = json!({"version": "0", "id": format!("e{i}"), "detail-type": "Object Created",
            "source": "aws.s3", "account": "111122223333", "time": "2026-11-01T10:00:00Z",
            "region": "us-east-1", "resources": [], "detail": detail});
        messages.push(json!({
            "messageId": format!("m{i}"), "receiptHandle": "AQEB", "body": event.to_string(),
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1793000000000",
                           "SenderId": "AIDA", "ApproximateFirstReceiveTimestamp": "1793000000001"},
            "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:111122223333:q", "awsRegion": "us-east-1"
        }));
    }
    let payload: IngestEvent = serde_json::from_value(json!({ "Records": messages }))?;
    let lake = S3Uri::parse(&format!("s3://{lake_bucket}/lake")).ok_or("lake uri")?;
    let handler = {
        let _guard = rt.enter();
        Handler::new(aws.clone(), &lake)?
    };
    // Peak RSS from here on (Linux: writing 5 to clear_refs resets VmHWM).
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let started = Instant::now();
    let answer: Value =
        rt.block_on(handler.handle(LambdaEvent::new(payload, Context::default())))?;
    let wall = started.elapsed().as_secs_f64();
    let failed = answer["batchItemFailures"].as_array().map_or(0, Vec::len);
    let keys = rt.block_on(kms_audit::s3::list_keys(
        &aws.s3,
        &lake_bucket,
        "lake/kms_events/",
    ))?;
    let data = keys
        .iter()
        .filter(|(k, _)| k.ends_with(".parquet") && !k.contains("_delta_log"))
        .count();
    let commits = keys
        .iter()
        .filter(|(k, _)| k.contains("_delta_log/") && k.ends_with(".json"))
        .count();
    println!(
        "{} objects ({:.1} MB gzipped) in one SQS batch: {wall:.2}s wall, peak RSS {:.1} MB{}; {failed} failed; kms_events: {} log entries (table creation included), {data} data files",
        messages.len(),
        bytes as f64 / 1e6,
        peak_rss_mb(),
        if reset { "" } else { " (since process start)" },
        commits
    );
    Ok(())
}
