//! The ingest Lambda's handler, driven through lambda_runtime's types with real-shaped S3,
//! SQS and EventBridge events, against the local S3 server.

use ingest_fn::{Handler, IngestEvent};
use kms_audit::lake::object_file_stem;
use kms_audit::s3::S3Uri;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};

use crate::aws::{S3Env, small_tree};
use crate::gz;

const PREFIX: &str = "AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/01/";

fn record(id: &str, source: &str) -> Value {
    json!({
        "eventVersion": "1.09", "eventSource": source, "eventName": "Decrypt",
        "eventTime": "2026-11-01T10:00:00Z", "eventID": id, "awsRegion": "us-east-1",
        "recipientAccountId": "111122223333",
        "requestParameters": {"encryptionContext": {"app": "payroll"}}
    })
}

/// A CloudTrail object with `kms` KMS records and one S3 record.
fn object(ids: &[&str]) -> Vec<u8> {
    let mut records: Vec<Value> = ids.iter().map(|i| record(i, "kms.amazonaws.com")).collect();
    records.push(record("noise", "s3.amazonaws.com"));
    gz(json!({ "Records": records }).to_string().as_bytes())
}

/// An S3 event notification record as S3 sends it: the key URL-encoded, and (as some
/// emulators do) without `userIdentity` or `requestParameters`.
fn s3_record(bucket: &str, key: &str) -> Value {
    let encoded: String = key
        .split('/')
        .map(percent_encoding_like)
        .collect::<Vec<_>>()
        .join("/");
    json!({
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-01T10:05:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "trail",
               "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": encoded, "size": 1234, "sequencer": "0055AED6DCD90281E5"}}
    })
}

/// S3's encoding of keys in notifications: spaces as `+`, reserved characters as `%XX`.
fn percent_encoding_like(seg: &str) -> String {
    let mut out = String::new();
    for b in seg.bytes() {
        match b {
            b' ' => out.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn eventbridge(bucket: &str, key: &str) -> Value {
    json!({
        "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created", "source": "aws.s3", "account": "111122223333",
        "time": "2026-11-01T10:05:00Z", "region": "us-east-1",
        "resources": [format!("arn:aws:s3:::{bucket}")],
        "detail": {"version": "0", "bucket": {"name": bucket},
                   "object": {"key": key, "size": 1234, "etag": "b1946ac92492d2347c6235b4d2611184",
                              "sequencer": "00617F08299329D189"},
                   "request-id": "N4N7GDK58NMKJ12R", "requester": "cloudtrail.amazonaws.com",
                   "reason": "PutObject"}
    })
}

fn sqs(messages: &[(&str, String)]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|(id, body)| {
            json!({
                "messageId": id, "receiptHandle": "AQEB", "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1793000000000",
                               "SenderId": "AIDAIENQZJOLO23YVJ4VO", "ApproximateFirstReceiveTimestamp": "1793000000001"},
                "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:111122223333:kms-audit-ingest",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

fn invoke(env: &S3Env, handler: &Handler, payload: Value) -> Result<Value, String> {
    invoke_with_deadline(env, handler, payload, 0)
}

/// `deadline_ms`: the invocation's deadline, milliseconds since the epoch (0: none).
fn invoke_with_deadline(
    env: &S3Env,
    handler: &Handler,
    payload: Value,
    deadline_ms: u64,
) -> Result<Value, String> {
    let mut ctx = Context::default();
    ctx.request_id = "test-request".into();
    ctx.deadline = deadline_ms;
    let _guard = env.rt.enter();
    let event: IngestEvent = serde_json::from_value(payload).map_err(|e| e.to_string())?;
    env.rt
        .block_on(handler.handle(LambdaEvent::new(event, ctx)))
        .map_err(|e| e.to_string())
}

fn setup(env: &S3Env) -> (String, S3Uri, Handler) {
    let trail = env.bucket("trail");
    let lake_bucket = env.bucket("lake");
    let lake = S3Uri::parse(&format!("s3://{lake_bucket}/kms")).expect("uri");
    let _guard = env.rt.enter();
    let handler = Handler::new(env.aws.clone(), &lake).expect("handler");
    (trail, lake, handler)
}

fn failures(answer: &Value) -> Vec<String> {
    let mut ids: Vec<String> = answer["batchItemFailures"]
        .as_array()
        .expect("an SqsBatchResponse")
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    ids
}

#[test]
fn s3_notifications_with_encoded_keys_write_exactly_their_kms_rows() {
    let Some(env) = S3Env::connect() else { return };
    let (trail, lake, handler) = setup(&env);
    let k1 = format!("{PREFIX}111122223333_CloudTrail_us-east-1_20261101T1000Z_a b+c.json.gz");
    let k2 = format!("{PREFIX}111122223333_CloudTrail_us-east-1_20261101T1005Z_plain.json.gz");
    let digest = "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/11/01/111122223333_CloudTrail-Digest_us-east-1_trail_us-east-1_20261101T1000Z.json.gz";
    env.put(&trail, &k1, object(&["a1", "a2"]));
    env.put(&trail, &k2, object(&["b1"]));
    env.put(&trail, digest, gz(b"{}"));
    let event = json!({"Records": [s3_record(&trail, &k1), s3_record(&trail, &k2), s3_record(&trail, digest)]});
    let answer = invoke(&env, &handler, event.clone()).expect("handled");
    assert_eq!(answer["objects"], 3);
    // The digest is recorded in `digests` (here a malformed one, with the reason).
    assert_eq!(answer["digests"], 1);
    assert_eq!(answer["objects_skipped"], 0);
    assert_eq!(answer["kms_events"], 3);
    assert_eq!(answer["records"], 5);
    assert_eq!(env.event_ids(&lake), ["a1", "a2", "b1"]);
    // Lambda retries (and S3 delivers at least once): the same event adds no rows.
    invoke(&env, &handler, event).expect("handled again");
    assert_eq!(env.event_ids(&lake), ["a1", "a2", "b1"]);
}

#[test]
fn sqs_batches_report_only_the_messages_whose_objects_failed() {
    let Some(env) = S3Env::connect() else { return };
    let (trail, lake, handler) = setup(&env);
    let good = format!("{PREFIX}111122223333_CloudTrail_us-east-1_20261101T1000Z_good.json.gz");
    let via_eb = format!("{PREFIX}111122223333_CloudTrail_us-east-1_20261101T1010Z_eb.json.gz");
    let corrupt = format!("{PREFIX}111122223333_CloudTrail_us-east-1_20261101T1020Z_bad.json.gz");
    let deleted = format!("{PREFIX}111122223333_CloudTrail_us-east-1_20261101T1030Z_gone.json.gz");
    env.put(&trail, &good, object(&["g1", "g2"]));
    env.put(&trail, &via_eb, object(&["e1"]));
    env.put(
        &trail,
        &corrupt,
        b"\x1f\x8b\x08\x00 this is not deflate".to_vec(),
    );
    let batch = sqs(&[
        ("m-good", json!({"Records": [s3_record(&trail, &good)]}).to_string()),
        ("m-eventbridge", eventbridge(&trail, &via_eb).to_string()),
        ("m-test", json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-01T10:00:00.000Z", "Bucket": trail, "RequestId": "5582815E1AEA5ADF", "HostId": "8cLeGAmw"}).to_string()),
        ("m-corrupt", json!({"Records": [s3_record(&trail, &corrupt)]}).to_string()),
        ("m-deleted", eventbridge(&trail, &deleted).to_string()),
        ("m-garbage", "not json".to_owned()),
    ]);
    let answer =
        invoke(&env, &handler, batch.clone()).expect("an SQS batch is answered, not failed");
    assert_eq!(failures(&answer), ["m-corrupt", "m-deleted", "m-garbage"]);
    assert_eq!(env.event_ids(&lake), ["e1", "g1", "g2"]);
    // Why each object failed is kept in the lake for whoever reads the DLQ.
    let lake_bucket = lake.bucket.clone();
    for (key, expect) in [
        (&corrupt, "corrupt deflate stream"),
        (&deleted, "NoSuchKey"),
    ] {
        let rel = format!(
            "kms/rejects/{}.object-error.json",
            object_file_stem(&format!("s3://{trail}/{key}"))
        );
        let body = env
            .get(&lake_bucket, &rel)
            .unwrap_or_else(|| panic!("{rel} missing"));
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["retryable"], false, "{v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase()
                .contains(&expect.to_lowercase()),
            "{v}"
        );
        assert!(
            v["object"]
                .as_str()
                .unwrap_or_default()
                .ends_with(key.as_str())
        );
    }
    // The redelivered batch (SQS retries the failed messages; here all of them) adds no rows.
    let again = invoke(&env, &handler, batch).expect("answered");
    assert_eq!(failures(&again), ["m-corrupt", "m-deleted", "m-garbage"]);
    assert_eq!(env.event_ids(&lake), ["e1", "g1", "g2"]);
}

#[test]
fn eventbridge_events_invoke_directly_and_failures_fail_the_invocation() {
    let Some(env) = S3Env::connect() else { return };
    let (trail, lake, handler) = setup(&env);
    let tree = tempfile::tempdir().expect("tmp");
    let m = small_tree(tree.path());
    env.upload_tree(&trail, "", tree.path());
    for f in &m.log_files {
        let key = f
            .strip_prefix(tree.path())
            .expect("rel")
            .to_string_lossy()
            .replace('\\', "/");
        invoke(&env, &handler, eventbridge(&trail, &key)).expect("handled");
    }
    assert_eq!(env.event_ids(&lake).len() as u64, m.kms_records);
    let missing = invoke(
        &env,
        &handler,
        eventbridge(&trail, &format!("{PREFIX}x_CloudTrail_y.json.gz")),
    );
    let err = missing.expect_err("a direct invocation with a failed object fails");
    assert!(
        err.contains("1 of 1 object(s) failed") && err.contains("NoSuchKey"),
        "{err}"
    );
    let other = invoke(
        &env,
        &handler,
        json!({"source": "aws.s3", "detail-type": "Object Deleted", "detail": {}}),
    );
    assert_eq!(other.expect("ignored")["objects"], 0);
    assert!(invoke(&env, &handler, json!({"hello": "world"})).is_err());
}

#[test]
fn near_its_deadline_the_function_reads_nothing_more_and_sqs_retries_the_rest() {
    let Some(env) = S3Env::connect() else { return };
    let (trail, lake, handler) = setup(&env);
    let a = format!("{PREFIX}111122223333_CloudTrail_us-east-1_20261101T1000Z_da.json.gz");
    let b = format!("{PREFIX}111122223333_CloudTrail_us-east-1_20261101T1005Z_db.json.gz");
    env.put(&trail, &a, object(&["d1"]));
    env.put(&trail, &b, object(&["d2"]));
    let batch = sqs(&[
        (
            "m-a",
            json!({"Records": [s3_record(&trail, &a)]}).to_string(),
        ),
        (
            "m-b",
            json!({"Records": [s3_record(&trail, &b)]}).to_string(),
        ),
    ]);
    // 20 s left: inside the margin kept for committing and answering.
    let now_ms = (kms_audit::time::now_micros() / 1000) as u64;
    let answer =
        invoke_with_deadline(&env, &handler, batch.clone(), now_ms + 20_000).expect("answered");
    assert_eq!(failures(&answer), ["m-a", "m-b"]);
    assert!(env.event_ids(&lake).is_empty());
    // The redelivery, with time to spare, ingests both.
    let answer = invoke_with_deadline(&env, &handler, batch, now_ms + 300_000).expect("answered");
    assert!(failures(&answer).is_empty());
    assert_eq!(env.event_ids(&lake), ["d1", "d2"]);
}

#[test]
fn a_batch_of_many_objects_is_followed_by_a_checkpoint() {
    let Some(env) = S3Env::connect() else { return };
    let (trail, lake, handler) = setup(&env);
    let batch = |first: usize, n: usize| {
        let messages: Vec<(String, String)> = (first..first + n)
            .map(|i| {
                let key = format!(
                    "{PREFIX}111122223333_CloudTrail_us-east-1_20261101T{:02}{:02}Z_c{i}.json.gz",
                    i / 60 % 24,
                    i % 60
                );
                env.put(&trail, &key, object(&[&format!("c{i}")]));
                let body = json!({"Records": [s3_record(&trail, &key)]}).to_string();
                (format!("m-{i}"), body)
            })
            .collect();
        let refs: Vec<(&str, String)> = messages
            .iter()
            .map(|(id, b)| (id.as_str(), b.clone()))
            .collect();
        sqs(&refs)
    };
    // A small batch leaves the log to the checkpoint every `CHECKPOINT_INTERVAL` versions.
    let answer = invoke(&env, &handler, batch(0, 3)).expect("answered");
    assert!(failures(&answer).is_empty());
    assert!(env.checkpoints(&lake).is_empty());
    // A batch of CHECKPOINT_OBJECTS objects lists them all in its entry: a checkpoint of
    // its version follows, so readers do not replay it.
    let n = ingest_fn::CHECKPOINT_OBJECTS;
    let answer = invoke(&env, &handler, batch(3, n)).expect("answered");
    assert!(failures(&answer).is_empty());
    assert_eq!(env.event_ids(&lake).len(), 3 + n);
    let cps: Vec<i64> = env.checkpoints(&lake).into_iter().collect();
    assert_eq!(cps.len(), 1, "{cps:?}");
    let last = env
        .get(
            &lake.bucket,
            &format!("{}/kms_events/_delta_log/_last_checkpoint", lake.key),
        )
        .expect("_last_checkpoint");
    let last: Value = serde_json::from_slice(&last).expect("json");
    assert_eq!(last["version"].as_i64(), Some(cps[0]));
}
