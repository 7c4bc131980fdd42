//! The report's verdict: each control fails on its planted case, citing the planted
//! events, and passes (or says why it is not evaluated) without it.

use std::collections::BTreeMap;

use kms_audit::detect::builtin_rules;
use kms_audit::report::controls::Status;
use kms_audit::report::{Report, ReportOptions, build_report};
use kms_audit::sql::open_local;
use serde_json::{Value, json};

use crate::detections::{expand, lake_with};
use crate::rt;

const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const KEY2: &str = "arn:aws:kms:us-east-1:111122223333:key/5678efgh-12ab-34cd-56ef-1234567890ab";
const KEY3: &str = "arn:aws:kms:us-east-1:111122223333:key/9abcdef0-12ab-34cd-56ef-1234567890ab";

fn on(key: &str) -> Value {
    json!([{"ARN": key, "accountId": "111122223333", "type": "AWS::KMS::Key"}])
}

/// Every 30 minutes for two days, a Decrypt with each key; rotation enabled on both.
fn benign() -> Vec<Value> {
    let mut r = vec![
        json!({"eventID": "rot-on-1", "eventTime": "2026-11-10T00:00:00Z", "eventName": "EnableKeyRotation",
               "readOnly": false, "requestParameters": {"keyId": KEY}, "resources": on(KEY)}),
        json!({"eventID": "rot-on-2", "eventTime": "2026-11-10T00:00:00Z", "eventName": "EnableKeyRotation",
               "readOnly": false, "requestParameters": {"keyId": KEY2}, "resources": on(KEY2)}),
        json!({"eventID": "dec", "eventTime": "2026-11-10T00:10:00Z", "resources": on(KEY),
               "_repeat": {"count": 96, "every": "30m"}}),
    ];
    r.push(
        json!({"eventID": "dec2", "eventTime": "2026-11-10T00:20:00Z", "resources": on(KEY2),
               "_repeat": {"count": 96, "every": "30m"}}),
    );
    r
}

fn planted() -> Vec<Value> {
    let policy = |principal: Value| {
        json!({"Version": "2012-10-17", "Statement": [{"Sid": "s", "Effect": "Allow",
            "Principal": principal, "Action": "kms:Decrypt", "Resource": "*"}]})
        .to_string()
    };
    vec![
        json!({"eventID": "p-del", "eventTime": "2026-11-11T10:00:00Z", "eventName": "ScheduleKeyDeletion",
               "readOnly": false, "requestParameters": {"keyId": KEY2, "pendingWindowInDays": 7}, "resources": on(KEY2)}),
        json!({"eventID": "p-dis", "eventTime": "2026-11-11T10:05:00Z", "eventName": "DisableKey",
               "readOnly": false, "requestParameters": {"keyId": KEY2}, "resources": on(KEY2)}),
        json!({"eventID": "p-rot", "eventTime": "2026-11-11T10:10:00Z", "eventName": "DisableKeyRotation",
               "readOnly": false, "requestParameters": {"keyId": KEY}, "resources": on(KEY)}),
        json!({"eventID": "p-pub", "eventTime": "2026-11-11T10:15:00Z", "eventName": "PutKeyPolicy",
               "readOnly": false, "requestParameters": {"keyId": KEY, "policyName": "default",
               "policy": policy(json!("*"))}, "resources": on(KEY)}),
        json!({"eventID": "p-ext", "eventTime": "2026-11-11T10:20:00Z", "eventName": "PutKeyPolicy",
               "readOnly": false, "requestParameters": {"keyId": KEY, "policyName": "default",
               "policy": policy(json!({"AWS": "arn:aws:iam::999988887777:root"}))}, "resources": on(KEY)}),
        json!({"eventID": "p-root", "eventTime": "2026-11-11T10:25:00Z",
               "userIdentity": {"type": "Root", "arn": "arn:aws:iam::111122223333:root", "accountId": "111122223333"},
               "resources": on(KEY)}),
        json!({"eventID": "p-mat", "eventTime": "2026-11-11T10:30:00Z", "eventName": "ImportKeyMaterial",
               "readOnly": false, "requestParameters": {"keyId": KEY3, "importType": "NEW_KEY_MATERIAL", "expirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"},
               "resources": on(KEY3)}),
    ]
}

fn report(records: &[Value]) -> Report {
    report_until(records, "2026-11-12T00:00:00Z")
}

fn report_until(records: &[Value], until: &str) -> Report {
    let records: Vec<Value> = records.iter().flat_map(expand).collect();
    let tmp = tempfile::tempdir().expect("tmp");
    let lake = lake_with(tmp.path(), &records);
    let ctx = open_local(lake.root()).expect("open");
    let opts = ReportOptions {
        since: kms_audit::time::parse_event_time("2026-11-10T00:00:00Z"),
        until: kms_audit::time::parse_event_time(until),
        rules: builtin_rules().expect("rules"),
        ..ReportOptions::default()
    };
    rt().block_on(build_report(&ctx, "lake", &opts))
        .expect("report")
}

fn statuses(r: &Report) -> BTreeMap<String, Status> {
    r.controls
        .iter()
        .map(|c| (c.id.clone(), c.status))
        .collect()
}

#[test]
fn each_control_fails_on_its_planted_case_and_cites_it() {
    let mut records = benign();
    records.extend(planted());
    let r = report(&records);
    let s = statuses(&r);
    for (control, planted) in [
        ("rotation_enabled", &["p-rot"][..]),
        ("no_deletion_or_disable", &["p-del", "p-dis"]),
        ("no_public_or_outside_policy", &["p-pub", "p-ext"]),
        ("admin_with_mfa", &["p-del"]),
        ("no_root_use", &["p-root"]),
        ("key_material_unchanged", &["p-mat"]),
    ] {
        assert_eq!(s[control], Status::Fail, "{control}: {:#?}", r.controls);
        let c = r
            .controls
            .iter()
            .find(|c| c.id == control)
            .expect("control");
        let cited: Vec<&String> = c.findings.iter().flat_map(|f| &f.event_ids).collect();
        for id in planted {
            assert!(
                cited.iter().any(|c| c == id),
                "{control} does not cite {id}: {cited:?}"
            );
        }
    }
    for control in ["no_denied_bursts", "logging_coverage"] {
        assert_eq!(s[control], Status::Pass, "{control}: {:#?}", r.controls);
    }
    assert_eq!(s["log_integrity"], Status::NotEvaluated);
    // Findings: most severe first, each with its evidence.
    assert!(!r.findings.is_empty());
    assert!(
        r.findings
            .windows(2)
            .all(|w| w[0].severity <= w[1].severity)
    );
    assert!(
        r.findings
            .iter()
            .all(|f| !f.event_ids.is_empty() || !f.section.is_empty())
    );
    // The first section of the HTML is the control table.
    let html = kms_audit::report::render_html_for_tests(&r);
    let first_h2 = html.find("<h2").expect("a section");
    assert!(
        html[first_h2..].starts_with("<h2 id=\"controls\">"),
        "{}",
        &html[first_h2..first_h2 + 60]
    );
    assert!(html.contains("7 of 9 controls failed") || html.contains("controls failed"));
    // report.json leads with the verdict.
    let json = serde_json::to_value(&r).expect("json");
    assert_eq!(
        json["controls"].as_array().map(Vec::len),
        Some(r.controls.len())
    );
    assert_eq!(json["controls"][0]["status"], "fail");
}

#[test]
fn without_the_planted_cases_no_control_fails() {
    let r = report(&benign());
    let s = statuses(&r);
    assert!(
        s.values().all(|st| *st != Status::Fail),
        "{:#?}",
        r.controls
    );
    assert!(
        s.values().filter(|st| **st == Status::Pass).count() >= 7,
        "{s:?}"
    );
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
}

#[test]
fn an_empty_period_evaluates_nothing_and_says_why() {
    let r = report(&[]);
    for c in &r.controls {
        assert_eq!(c.status, Status::NotEvaluated, "{c:#?}");
        assert!(c.reason.as_deref().is_some_and(|t| !t.is_empty()), "{c:#?}");
    }
}

/// A second report over a later period lists what changed since the first: the controls
/// that failed since, the new findings with their events, the new key.
#[test]
fn a_later_report_lists_the_changes_since_the_previous_one() {
    let mut records = benign();
    records.extend(planted());
    let first = report_until(&records, "2026-11-11T06:00:00Z");
    let second = report(&records);
    let prev = serde_json::to_value(&first).expect("json");
    let c = kms_audit::report::changes::compare(&second, &prev, "reports/one/report.json");
    assert_eq!(c.previous.until.as_deref(), Some(first.until.as_str()));
    let changed: BTreeMap<&str, (Option<&str>, Status)> = c
        .controls_changed
        .iter()
        .map(|x| (x.id.as_str(), (x.before.as_deref(), x.after)))
        .collect();
    for control in [
        "rotation_enabled",
        "no_deletion_or_disable",
        "no_public_or_outside_policy",
        "admin_with_mfa",
        "no_root_use",
        "key_material_unchanged",
    ] {
        assert_eq!(
            changed.get(control),
            Some(&(Some("pass"), Status::Fail)),
            "{control}: {changed:?}"
        );
    }
    assert!(!changed.contains_key("logging_coverage"), "{changed:?}");
    let new: Vec<&String> = c.new_findings.iter().flat_map(|f| &f.event_ids).collect();
    for id in [
        "p-del", "p-dis", "p-rot", "p-pub", "p-ext", "p-root", "p-mat",
    ] {
        assert!(
            new.iter().any(|e| *e == id),
            "{id} not a new finding: {new:?}"
        );
    }
    assert_eq!(c.new_keys, vec![KEY3.to_owned()]);
    assert!(c.keys_gone.is_empty());
    // Against itself: nothing changed.
    let same = kms_audit::report::changes::compare(
        &second,
        &serde_json::to_value(&second).expect("json"),
        "x",
    );
    assert!(
        same.controls_changed.is_empty()
            && same.new_findings.is_empty()
            && same.new_keys.is_empty()
    );
    assert_eq!(same.findings_no_longer_present, 0);
}

/// Logging coverage fails on a trail change that switches KMS logging off, citing it.
#[test]
fn stopping_the_trail_fails_logging_coverage() {
    let mut records = benign();
    records.push(
        json!({"eventID": "t-stop", "eventTime": "2026-11-11T09:00:00Z",
        "eventSource": "cloudtrail.amazonaws.com", "eventName": "StopLogging", "readOnly": false,
        "requestParameters": {"name": "org-trail"}}),
    );
    let r = report(&records);
    let c = r
        .controls
        .iter()
        .find(|c| c.id == "logging_coverage")
        .expect("control");
    assert_eq!(c.status, Status::Fail, "{c:#?}");
    assert_eq!(c.findings[0].event_ids, vec!["t-stop".to_owned()]);
    assert!(r.findings.iter().any(|f| f.event_ids == ["t-stop"]));
}

/// A burst of denied requests fails its control, citing the burst's events.
#[test]
fn a_denied_burst_fails_its_control() {
    let mut records = benign();
    records.push(json!({"eventID": "deny", "eventTime": "2026-11-11T09:00:00Z",
        "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/probe", "accountId": "111122223333"},
        "errorCode": "AccessDeniedException", "errorMessage": "not authorized",
        "resources": on(KEY), "_repeat": {"count": 12, "every": "10s"}}));
    let r = report(&records);
    let c = r
        .controls
        .iter()
        .find(|c| c.id == "no_denied_bursts")
        .expect("control");
    assert_eq!(c.status, Status::Fail, "{c:#?}");
    let cited: Vec<&String> = c.findings.iter().flat_map(|f| &f.event_ids).collect();
    assert!(cited.iter().any(|e| e.starts_with("deny-")), "{cited:?}");
}

/// A planned decommissioning (--expected-keys) does not fail the deletion control; an
/// unplanned one still does.
#[test]
fn expected_deletions_do_not_fail_the_lifecycle_control() {
    let mut records = benign();
    records.extend(planted());
    let records: Vec<Value> = records.iter().flat_map(expand).collect();
    let tmp = tempfile::tempdir().expect("tmp");
    let lake = lake_with(tmp.path(), &records);
    let ctx = open_local(lake.root()).expect("open");
    let run = |expected: Vec<String>| {
        let opts = ReportOptions {
            since: kms_audit::time::parse_event_time("2026-11-10T00:00:00Z"),
            until: kms_audit::time::parse_event_time("2026-11-12T00:00:00Z"),
            rules: builtin_rules().expect("rules"),
            expected_keys: expected,
            ..ReportOptions::default()
        };
        let r = rt()
            .block_on(build_report(&ctx, "lake", &opts))
            .expect("report");
        r.controls
            .into_iter()
            .find(|c| c.id == "no_deletion_or_disable")
            .expect("control")
    };
    assert_eq!(run(Vec::new()).status, Status::Fail);
    // Both planted changes are on KEY2: expected, the control passes and says why.
    let planned = run(vec!["5678efgh-12ab-34cd-56ef-1234567890ab".to_owned()]);
    assert_eq!(planned.status, Status::Pass, "{planned:#?}");
    assert!(
        planned
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("expected"))
    );
    // Another key expected: still a failure.
    assert_eq!(run(vec![KEY.to_owned()]).status, Status::Fail);
}
