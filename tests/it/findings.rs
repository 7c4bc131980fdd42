//! Alerts where security teams look, against the local AWS server (moto): the detect
//! Lambda's Security Hub and EventBridge sinks deliver every alert once, a re-run adds
//! nothing, an alert sent again updates its finding, EventBridge rules route alerts by
//! severity to an SQS queue, and a failing sink leaves the state for the retry.

use std::collections::BTreeSet;

use aws_sdk_securityhub::types::AwsSecurityFinding;
use detect_fn::Detector;
use kms_audit::detect::sinks::AwsSinkSpec;
use kms_audit::detect::sinks::aws::{EVENT_DETAIL_TYPE, EVENT_SOURCE, aws_sink};
use kms_audit::detect::{Alert, builtin_rules};
use kms_audit::s3::S3Uri;
use serde_json::{Value, json};

use crate::aws::S3Env;
use crate::detect_fn::{drain, invoke, lake_with, queue, scheduled_event};

const KEY2: &str = "arn:aws:kms:us-east-1:111122223333:key/2222abcd-12ab-34cd-56ef-1234567890ab";

/// The lake of the detect tests plus a public key policy and root use.
fn lake_with_incidents(env: &S3Env) -> S3Uri {
    let public = json!({"Version": "2012-10-17", "Statement": [{"Sid": "open", "Effect": "Allow",
        "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*"}]});
    lake_with(
        env,
        &[
            json!({"eventID": "pub-1", "eventTime": "2026-11-11T11:00:00Z", "eventName": "PutKeyPolicy",
                "readOnly": false,
                "requestParameters": {"keyId": KEY2, "policyName": "default", "policy": public.to_string()},
                "resources": [{"ARN": KEY2, "accountId": "111122223333", "type": "AWS::KMS::Key"}]}),
            json!({"eventID": "root-1", "eventTime": "2026-11-11T12:00:00Z",
                "userIdentity": {"type": "Root", "principalId": "111122223333",
                                 "arn": "arn:aws:iam::111122223333:root", "accountId": "111122223333"},
                "requestParameters": {"keyId": KEY2},
                "resources": [{"ARN": KEY2, "accountId": "111122223333", "type": "AWS::KMS::Key"}]}),
        ],
    )
}

fn findings(env: &S3Env) -> Vec<AwsSecurityFinding> {
    let client = aws_sdk_securityhub::Client::new(&env.aws.config);
    env.rt.block_on(async {
        let mut out = Vec::new();
        let mut next = None;
        loop {
            let page = client
                .get_findings()
                .max_results(100)
                .set_next_token(next)
                .send()
                .await
                .expect("GetFindings");
            out.extend(page.findings().iter().cloned());
            next = page.next_token().map(str::to_owned);
            if next.is_none() {
                break;
            }
        }
        out
    })
}

/// A bus whose rule sends `kms-audit` events of the given severities to a new queue;
/// returns (bus name, queue URL).
fn bus_routing_to_queue(env: &S3Env, name: &str, severities: &[&str]) -> (String, String) {
    let events = aws_sdk_eventbridge::Client::new(&env.aws.config);
    env.rt.block_on(async {
        events
            .create_event_bus()
            .name(name)
            .send()
            .await
            .expect("bus");
        let (url, queue_arn) = queue(env, name).await;
        let pattern = json!({"source": [EVENT_SOURCE], "detail-type": [EVENT_DETAIL_TYPE],
                             "detail": {"severity": severities}});
        events
            .put_rule()
            .name(format!("{name}-rule"))
            .event_bus_name(name)
            .event_pattern(pattern.to_string())
            .send()
            .await
            .expect("rule");
        events
            .put_targets()
            .rule(format!("{name}-rule"))
            .event_bus_name(name)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(queue_arn)
                    .build()
                    .expect("target"),
            )
            .send()
            .await
            .expect("targets");
        (name.to_owned(), url)
    })
}

fn detector(env: &S3Env, uri: &S3Uri, sinks: Vec<AwsSinkSpec>) -> Detector {
    let _guard = env.rt.enter();
    Detector::new(env.aws.clone(), uri, sinks, vec![]).expect("detector")
}

fn ours(all: Vec<AwsSecurityFinding>, keys: &BTreeSet<String>) -> Vec<AwsSecurityFinding> {
    all.into_iter()
        .filter(|f| {
            f.id()
                .and_then(|id| id.strip_prefix("kms-audit/"))
                .is_some_and(|k| keys.contains(k))
        })
        .collect()
}

#[test]
fn detection_reaches_security_hub_and_eventbridge_once() {
    let Some(env) = S3Env::connect() else { return };
    let uri = lake_with_incidents(&env);
    let bus = format!("kms-alerts-{}", std::process::id());
    let (bus, all_queue) =
        bus_routing_to_queue(&env, &bus, &["critical", "high", "medium", "low", "info"]);
    let d = detector(
        &env,
        &uri,
        vec![
            AwsSinkSpec::SecurityHub,
            AwsSinkSpec::EventBridge(Some(bus.clone())),
        ],
    );
    let out = invoke(&env, &d, scheduled_event()).expect("run");
    let n = out["alerts"].as_u64().expect("alerts") as usize;
    assert!(n >= 3, "deletion, public policy and root use alert: {out}");
    assert_eq!(
        out["published_to"],
        json!(["securityhub:us-east-1", format!("eventbridge:{bus}")])
    );

    // EventBridge: every alert once, as the alert contract, routed through a rule to SQS.
    let events = drain(&env, &all_queue);
    assert_eq!(events.len(), n, "{events:?}");
    let keys: BTreeSet<String> = events
        .iter()
        .map(|e| {
            assert_eq!(e["source"], EVENT_SOURCE);
            assert_eq!(e["detail-type"], EVENT_DETAIL_TYPE);
            e["detail"]["dedup_key"]
                .as_str()
                .expect("the alert as detail")
                .to_owned()
        })
        .collect();
    assert_eq!(keys.len(), n, "one event per alert");
    let rules: BTreeSet<&str> = events
        .iter()
        .filter_map(|e| e["detail"]["rule_id"].as_str())
        .collect();
    for rule in [
        "kms_key_deletion_scheduled",
        "kms_key_policy_public",
        "kms_root_usage",
    ] {
        assert!(rules.contains(rule), "{rule} missing from {rules:?}");
    }

    // Security Hub: one finding per alert, the rule as generator, the key and the principal
    // as resources.
    let found = ours(findings(&env), &keys);
    assert_eq!(found.len(), n);
    for f in &found {
        let detail = events
            .iter()
            .map(|e| &e["detail"])
            .find(|d| {
                f.id()
                    == Some(&format!(
                        "kms-audit/{}",
                        d["dedup_key"].as_str().unwrap_or("")
                    ))
            })
            .expect("a finding per alert");
        assert_eq!(f.generator_id(), detail["rule_id"].as_str());
        let resources: Vec<(&str, &str)> = f
            .resources()
            .iter()
            .map(|r| (r.r#type().unwrap_or(""), r.id().unwrap_or("")))
            .collect();
        if let Some(key) = detail["key_arn"].as_str() {
            assert!(resources.contains(&("AwsKmsKey", key)), "{resources:?}");
        }
        if let Some(p) = detail["principal"].as_str() {
            assert!(resources.iter().any(|(_, id)| *id == p), "{resources:?}");
        }
        assert!(!f.types().is_empty());
        assert!(f.product_arn().is_some_and(|a| a.ends_with("/default")));
    }
    let root = found
        .iter()
        .find(|f| f.generator_id() == Some("kms_root_usage"))
        .expect("root finding");
    assert!(
        root.resources()
            .iter()
            .any(|r| r.r#type() == Some("AwsAccount")
                && r.id() == Some("arn:aws:iam::111122223333:root")),
        "the root principal is an AwsAccount resource"
    );

    // A second run judges nothing new: no finding, no event.
    let again = invoke(&env, &d, scheduled_event()).expect("second run");
    assert_eq!(again["alerts"], 0, "{again}");
    assert!(drain(&env, &all_queue).is_empty());
    assert_eq!(ours(findings(&env), &keys).len(), n);
}

#[test]
fn an_alert_sent_again_updates_its_finding_and_rules_route_by_severity() {
    let Some(env) = S3Env::connect() else { return };
    let rules = builtin_rules().expect("rules");
    let alert = |key: &str, severity: &str, count: u64| -> Alert {
        serde_json::from_value(json!({
            "rule_id": "kms_key_deletion_scheduled", "title": "KMS key scheduled for deletion",
            "severity": severity, "first_seen": "2026-11-11T10:00:00Z",
            "last_seen": "2026-11-11T10:00:00Z", "count": count,
            "principal": "arn:aws:iam::111122223333:user/dana", "key_arn": KEY2,
            "account_id": "111122223333", "aws_region": "us-east-1",
            "source_ips": ["10.0.0.10"], "event_ids": ["e1"], "summary": "deletion",
            "dedup_key": key
        }))
        .expect("alert")
    };
    let key = format!("kms_key_deletion_scheduled:update-{}", std::process::id());
    let hub = {
        let _guard = env.rt.enter();
        aws_sink(&env.aws, &AwsSinkSpec::SecurityHub, &rules)
    };
    hub.deliver(&[alert(&key, "high", 1)]).expect("first");
    hub.deliver(&[alert(&key, "critical", 3)]).expect("again");
    let keys = BTreeSet::from([key.clone()]);
    let found = ours(findings(&env), &keys);
    assert_eq!(found.len(), 1, "the same incident is one finding");
    let f = &found[0];
    assert_eq!(
        f.user_defined_fields()
            .and_then(|u| u.get("count"))
            .map(String::as_str),
        Some("3")
    );
    assert_eq!(
        f.severity().and_then(|s| s.label()).map(|l| l.as_str()),
        Some("CRITICAL")
    );

    // A rule for critical alerts only: the medium one does not reach its queue.
    let name = format!("kms-critical-{}", std::process::id());
    let (bus, queue) = bus_routing_to_queue(&env, &name, &["critical"]);
    let eb = {
        let _guard = env.rt.enter();
        aws_sink(&env.aws, &AwsSinkSpec::EventBridge(Some(bus)), &rules)
    };
    eb.deliver(&[alert("k-crit", "critical", 1), alert("k-med", "medium", 1)])
        .expect("put events");
    let got: Vec<Value> = drain(&env, &queue);
    let routed: Vec<&str> = got
        .iter()
        .filter_map(|e| e["detail"]["dedup_key"].as_str())
        .collect();
    assert_eq!(routed, ["k-crit"]);
}

#[test]
fn a_failing_sink_fails_the_run_and_leaves_the_state_for_the_retry() {
    let Some(env) = S3Env::connect() else { return };
    let uri = lake_with_incidents(&env);
    let missing = format!("no-such-bus-{}", std::process::id());
    let d = detector(
        &env,
        &uri,
        vec![AwsSinkSpec::EventBridge(Some(missing.clone()))],
    );
    let err = invoke(&env, &d, scheduled_event()).expect_err("delivery fails");
    assert!(
        err.contains(&missing) && err.contains("state unchanged"),
        "{err}"
    );
    assert!(env.get(&uri.bucket, "kms/state/detections.json").is_none());
    let (bus, queue) = bus_routing_to_queue(&env, &missing, &["critical", "high", "medium"]);
    let fixed = detector(&env, &uri, vec![AwsSinkSpec::EventBridge(Some(bus))]);
    let out = invoke(&env, &fixed, scheduled_event()).expect("retry");
    assert!(out["alerts"].as_u64().unwrap_or(0) >= 3);
    assert!(!drain(&env, &queue).is_empty(), "the retry delivers");
    assert!(env.get(&uri.bucket, "kms/state/detections.json").is_some());
}
