//! The detect Lambda and the SNS sink against the local AWS server (moto): alerts published
//! to an SNS topic arrive through an SQS subscription, once.

use detect_fn::Detector;
use kms_audit::detect::sinks::AwsSinkSpec;
use kms_audit::ingest::{LocalFile, ingest_object};
use kms_audit::s3::S3Uri;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};

use crate::aws::S3Env;
use crate::detections::expand;
use crate::gz;

const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

/// A new queue `<name>-q`; returns (queue URL, queue ARN).
pub(crate) async fn queue(env: &S3Env, name: &str) -> (String, String) {
    let sqs = aws_sdk_sqs::Client::new(&env.aws.config);
    let q = sqs
        .create_queue()
        .queue_name(format!("{name}-q"))
        .send()
        .await
        .expect("queue");
    let url = q.queue_url().expect("url").to_owned();
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("attrs");
    let queue_arn = attrs
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .expect("queue arn")
        .to_owned();
    (url, queue_arn)
}

/// A topic with a raw-delivery SQS subscription; returns (topic ARN, queue URL).
pub(crate) fn topic_with_queue(env: &S3Env, name: &str) -> (String, String) {
    let sns = aws_sdk_sns::Client::new(&env.aws.config);
    env.rt.block_on(async {
        let topic = sns.create_topic().name(name).send().await.expect("topic");
        let topic_arn = topic.topic_arn().expect("arn").to_owned();
        let (url, queue_arn) = queue(env, name).await;
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(queue_arn)
            .attributes("RawMessageDelivery", "true")
            .send()
            .await
            .expect("subscribe");
        (topic_arn, url)
    })
}

pub(crate) fn drain(env: &S3Env, url: &str) -> Vec<Value> {
    let sqs = aws_sdk_sqs::Client::new(&env.aws.config);
    let mut out = Vec::new();
    env.rt.block_on(async {
        loop {
            let r = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .message_attribute_names("All")
                .send()
                .await
                .expect("receive");
            let msgs = r.messages();
            if msgs.is_empty() {
                break;
            }
            for m in msgs {
                let mut v: Value =
                    serde_json::from_str(m.body().unwrap_or_default()).expect("alert json");
                let sev = m
                    .message_attributes()
                    .and_then(|a| a.get("severity"))
                    .and_then(|a| a.string_value())
                    .unwrap_or_default()
                    .to_owned();
                v["_attr_severity"] = json!(sev);
                out.push(v);
                sqs.delete_message()
                    .queue_url(url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("delete");
            }
        }
    });
    out
}

/// An S3 lake with a day of baseline traffic, then a key scheduled for deletion.
fn lake_with_incident(env: &S3Env) -> S3Uri {
    let uri = lake_with(env, &[]);
    assert_eq!(env.event_ids(&uri).len(), 31);
    uri
}

/// An S3 lake with a day of baseline traffic, a key scheduled for deletion, and `more`
/// records (each merged over the default record of the rule tests).
pub(crate) fn lake_with(env: &S3Env, more: &[Value]) -> S3Uri {
    let bucket = env.bucket("lake");
    let uri = S3Uri::parse(&format!("s3://{bucket}/kms")).expect("uri");
    let mut records = expand(
        &json!({"eventID": "base", "eventTime": "2026-11-10T00:00:00Z",
        "_repeat": {"count": 30, "every": "1h"}}),
    );
    records.extend(expand(
        &json!({"eventID": "del-1", "eventTime": "2026-11-11T10:00:00Z",
        "eventName": "ScheduleKeyDeletion", "readOnly": false,
        "requestParameters": {"keyId": KEY, "pendingWindowInDays": 7},
        "resources": [{"ARN": KEY, "accountId": "111122223333", "type": "AWS::KMS::Key"}]}),
    ));
    for r in more {
        records.extend(expand(r));
    }
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir
        .path()
        .join("111122223333_CloudTrail_us-east-1_20261111T1000Z_x.json.gz");
    std::fs::write(
        &path,
        gz(json!({"Records": records}).to_string().as_bytes()),
    )
    .expect("write");
    let lake = env.lake(&uri);
    let report = ingest_object(&LocalFile::new(&path), &lake).expect("ingest");
    assert_eq!(report.counts.rejected, 0);
    uri
}

pub(crate) fn invoke(env: &S3Env, d: &Detector, payload: Value) -> Result<Value, String> {
    let _guard = env.rt.enter();
    env.rt
        .block_on(d.handle(LambdaEvent::new(payload, Context::default())))
        .map_err(|e| e.to_string())
}

pub(crate) fn scheduled_event() -> Value {
    json!({"version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
           "source": "aws.events", "account": "111122223333", "time": "2026-11-12T00:00:00Z",
           "region": "us-east-1", "resources": ["arn:aws:events:us-east-1:111122223333:rule/kms-audit-detect"],
           "detail": {}})
}

#[test]
fn scheduled_detection_publishes_each_alert_once_to_sns() {
    let Some(env) = S3Env::connect() else { return };
    let uri = lake_with_incident(&env);
    let (topic, queue) = topic_with_queue(&env, &format!("alerts-{}", std::process::id()));
    let detector = {
        let _guard = env.rt.enter();
        Detector::new(
            env.aws.clone(),
            &uri,
            vec![AwsSinkSpec::Sns(topic.clone())],
            vec![],
        )
        .expect("detector")
    };
    let out = invoke(&env, &detector, scheduled_event()).expect("run");
    assert_eq!(out["published_to"], json!([topic]));
    let alerts = drain(&env, &queue);
    assert_eq!(out["alerts"].as_u64(), Some(alerts.len() as u64));
    let deletion: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["rule_id"] == "kms_key_deletion_scheduled")
        .collect();
    assert_eq!(deletion.len(), 1, "{alerts:#?}");
    let a = deletion[0];
    assert_eq!(a["event_ids"], json!(["del-1"]));
    assert_eq!(a["key_arn"], json!(KEY));
    assert_eq!(
        a["_attr_severity"], a["severity"],
        "severity is a message attribute"
    );
    assert!(a["dedup_key"].as_str().is_some_and(|k| !k.is_empty()));
    // The state is in the lake: the next scheduled run publishes nothing new.
    let lake_bucket = uri.bucket.clone();
    assert!(env.get(&lake_bucket, "kms/state/detections.json").is_some());
    let again = invoke(&env, &detector, scheduled_event()).expect("run");
    assert_eq!(again["alerts"], 0);
    assert!(drain(&env, &queue).is_empty());
    // A manual re-run over an explicit past window: still deduplicated by the state.
    let manual = invoke(&env, &detector, json!({"since": "2026-11-11T00:00:00Z"})).expect("run");
    assert_eq!(manual["alerts"], 0);
    assert!(invoke(&env, &detector, json!({"since": "yesterday-ish"})).is_err());
}

#[test]
fn a_failing_topic_fails_the_run_and_keeps_the_alerts_for_the_retry() {
    let Some(env) = S3Env::connect() else { return };
    let uri = lake_with_incident(&env);
    let missing = "arn:aws:sns:us-east-1:123456789012:no-such-topic".to_owned();
    let detector = {
        let _guard = env.rt.enter();
        Detector::new(
            env.aws.clone(),
            &uri,
            vec![AwsSinkSpec::Sns(missing)],
            vec![],
        )
        .expect("detector")
    };
    let err = invoke(&env, &detector, scheduled_event()).expect_err("delivery fails");
    assert!(
        err.contains("no-such-topic") && err.contains("state unchanged"),
        "{err}"
    );
    assert!(env.get(&uri.bucket, "kms/state/detections.json").is_none());
    // Once the topic exists, the retry delivers the same alerts.
    let (topic, queue) = topic_with_queue(&env, &format!("retry-{}", std::process::id()));
    let fixed = {
        let _guard = env.rt.enter();
        Detector::new(env.aws.clone(), &uri, vec![AwsSinkSpec::Sns(topic)], vec![])
            .expect("detector")
    };
    let out = invoke(&env, &fixed, scheduled_event()).expect("run");
    let alerts = drain(&env, &queue);
    assert!(out["alerts"].as_u64().unwrap_or(0) >= 1);
    assert!(
        alerts
            .iter()
            .any(|a| a["rule_id"] == "kms_key_deletion_scheduled")
    );
}

#[test]
fn the_scheduled_report_lands_in_the_lake_and_is_announced() {
    let Some(env) = S3Env::connect() else { return };
    let uri = lake_with_incident(&env);
    let (topic, queue) = topic_with_queue(&env, &format!("reports-{}", std::process::id()));
    let reporter = {
        let _guard = env.rt.enter();
        report_fn::Reporter::new(env.aws.clone(), &uri, Some(topic), vec![], 7).expect("reporter")
    };
    // The weekly schedule fires on 2026-11-16: the report covers 11-09 .. 11-15.
    let mut event = scheduled_event();
    event["time"] = json!("2026-11-16T06:00:00Z");
    let out = {
        let _guard = env.rt.enter();
        env.rt
            .block_on(reporter.handle(LambdaEvent::new(event, Context::default())))
            .expect("report")
    };
    assert_eq!(out["period"]["since"], "2026-11-09T00:00:00Z");
    assert_eq!(out["period"]["until"], "2026-11-16T00:00:00Z");
    assert_eq!(out["events_in_period"], 31);
    let folder = "kms/reports/2026-11-09_2026-11-15/";
    let keys = env.keys(&uri.bucket, folder);
    for f in [
        "report.html",
        "report.json",
        "lifecycle.csv",
        "key_inventory.csv",
        "usage.csv",
    ] {
        assert!(
            keys.contains(&format!("{folder}{f}")),
            "{f} missing: {keys:?}"
        );
    }
    let json: Value = serde_json::from_slice(
        &env.get(&uri.bucket, &format!("{folder}report.json"))
            .expect("json"),
    )
    .expect("json");
    let lifecycle = json["sections"]
        .as_array()
        .expect("sections")
        .iter()
        .find(|s| s["id"] == "lifecycle")
        .expect("lifecycle");
    assert_eq!(lifecycle["rows"][0]["event_id"], "del-1");
    // The announcement names the period and where the report is.
    let sqs = aws_sdk_sqs::Client::new(&env.aws.config);
    let msgs = env
        .rt
        .block_on(
            sqs.receive_message()
                .queue_url(&queue)
                .max_number_of_messages(10)
                .send(),
        )
        .expect("receive");
    let body = msgs
        .messages()
        .first()
        .and_then(|m| m.body())
        .expect("an announcement")
        .to_owned();
    assert!(
        body.contains("2026-11-09T00:00:00Z")
            && body.contains(&format!("s3://{}/{folder}report.html", uri.bucket)),
        "{body}"
    );
}
