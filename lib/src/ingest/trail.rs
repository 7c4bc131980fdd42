//! CloudTrail's own management events that switch KMS evidence off: the trail stopped,
//! deleted or updated, event selectors that leave KMS (or management, or read) events out,
//! and changes to a bucket's policy, lifecycle or existence. Ingest keeps them, besides
//! the KMS events, in the small table `trail_events` (the records still count as
//! `skipped`: they are not KMS events).
//!
//! The test on every non-KMS record is cheap: the first `"eventSource":"` of the record
//! (CloudTrail writes it before the request, so it is the record's own) and, only for
//! CloudTrail and S3, the event name after it. Records in another layout (an export with
//! whitespace after the colons) are not recognised.

use std::sync::LazyLock;

use serde_json::Value;

/// The table's name and partition.
pub const TRAIL_TABLE: &str = "trail_events";
pub const TRAIL_PARTITION: &str = "event_date";

/// Trail events kept per object: enough for any real log file; a forged one holding
/// millions cannot exhaust memory.
pub const MAX_PER_OBJECT: usize = 10_000;

const CLOUDTRAIL_EVENTS: &[&str] = &[
    "StopLogging",
    "StartLogging",
    "DeleteTrail",
    "CreateTrail",
    "UpdateTrail",
    "PutEventSelectors",
    "PutAdvancedEventSelectors",
];

const S3_EVENTS: &[&str] = &[
    "PutBucketPolicy",
    "DeleteBucketPolicy",
    "DeleteBucket",
    "PutBucketLifecycle",
    "DeleteBucketLifecycle",
];

/// One kept event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailEvent {
    pub event_id: Option<String>,
    pub event_time: i64,
    pub event_source: String,
    pub event_name: String,
    pub aws_region: Option<String>,
    pub account_id: Option<String>,
    pub principal: Option<String>,
    pub principal_type: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The trail (name or ARN) or the bucket the call was about.
    pub target: Option<String>,
    /// What the call does to the evidence (see [`impact`]).
    pub impact: String,
    /// CreateTrail / UpdateTrail: the key the trail encrypts its logs with.
    pub kms_key_id: Option<String>,
    /// CreateTrail / UpdateTrail: the trail's bucket; S3 calls: the bucket.
    pub s3_bucket: Option<String>,
    pub request_parameters: Option<String>,
    pub source_object: String,
}

fn field_value<'a>(bytes: &'a [u8], finder: &memchr::memmem::Finder<'_>) -> Option<&'a [u8]> {
    let at = finder.find(bytes)? + finder.needle().len();
    let len = memchr::memchr(b'"', &bytes[at..])?;
    Some(&bytes[at..at + len])
}

/// Whether a (non-KMS) record may be a trail event: cheap, no parse.
pub fn is_candidate(bytes: &[u8]) -> bool {
    static SOURCE: LazyLock<memchr::memmem::Finder<'static>> =
        LazyLock::new(|| memchr::memmem::Finder::new(b"\"eventSource\":\""));
    static NAME: LazyLock<memchr::memmem::Finder<'static>> =
        LazyLock::new(|| memchr::memmem::Finder::new(b"\"eventName\":\""));
    let names = match field_value(bytes, &SOURCE) {
        Some(b"cloudtrail.amazonaws.com") => CLOUDTRAIL_EVENTS,
        Some(b"s3.amazonaws.com") => S3_EVENTS,
        _ => return false,
    };
    field_value(bytes, &NAME).is_some_and(|n| names.iter().any(|x| x.as_bytes() == n))
}

fn text(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    match cur {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Parses a candidate record; None unless it is a trail event with a time.
pub fn parse(bytes: &[u8], source_object: &str) -> Option<TrailEvent> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let event_source = text(&v, &["eventSource"])?;
    let event_name = text(&v, &["eventName"])?;
    let names = match event_source.as_str() {
        "cloudtrail.amazonaws.com" => CLOUDTRAIL_EVENTS,
        "s3.amazonaws.com" => S3_EVENTS,
        _ => return None,
    };
    if !names.contains(&event_name.as_str()) {
        return None;
    }
    let event_time = crate::time::parse_event_time(&text(&v, &["eventTime"])?)?;
    let rp = v.get("requestParameters").cloned().unwrap_or(Value::Null);
    let is_trail = event_source == "cloudtrail.amazonaws.com";
    let target = if is_trail {
        text(&rp, &["name"]).or_else(|| text(&rp, &["trailName"]))
    } else {
        text(&rp, &["bucketName"])
    };
    Some(TrailEvent {
        event_id: text(&v, &["eventID"]),
        event_time,
        impact: impact(&event_name, &rp),
        kms_key_id: is_trail.then(|| text(&rp, &["kmsKeyId"])).flatten(),
        s3_bucket: if is_trail {
            text(&rp, &["s3BucketName"])
        } else {
            target.clone()
        },
        target,
        event_source,
        event_name,
        aws_region: text(&v, &["awsRegion"]),
        account_id: text(&v, &["recipientAccountId"]),
        principal: text(&v, &["userIdentity", "arn"]),
        principal_type: text(&v, &["userIdentity", "type"]),
        source_ip: text(&v, &["sourceIPAddress"]),
        user_agent: text(&v, &["userAgent"]),
        error_code: text(&v, &["errorCode"]),
        error_message: text(&v, &["errorMessage"]),
        request_parameters: (!rp.is_null()).then(|| rp.to_string()),
        source_object: source_object.to_owned(),
    })
}

/// What a call does to the KMS evidence: `logging_stopped`, `trail_deleted`,
/// `management_events_excluded`, `kms_events_excluded`, `read_events_excluded` (KMS
/// Decrypt, Encrypt, GenerateDataKey... are read events), `selectors_changed`,
/// `bucket_policy_changed`, `bucket_policy_deleted`, `bucket_deleted`,
/// `bucket_lifecycle_changed`, `bucket_lifecycle_deleted`, `trail_created`,
/// `trail_updated`, `logging_started`.
pub fn impact(event_name: &str, rp: &Value) -> String {
    match event_name {
        "StopLogging" => "logging_stopped",
        "StartLogging" => "logging_started",
        "DeleteTrail" => "trail_deleted",
        "CreateTrail" => "trail_created",
        "UpdateTrail" => "trail_updated",
        "PutEventSelectors" => selectors_impact(rp),
        "PutAdvancedEventSelectors" => advanced_selectors_impact(rp),
        "PutBucketPolicy" => "bucket_policy_changed",
        "DeleteBucketPolicy" => "bucket_policy_deleted",
        "DeleteBucket" => "bucket_deleted",
        "PutBucketLifecycle" => "bucket_lifecycle_changed",
        "DeleteBucketLifecycle" => "bucket_lifecycle_deleted",
        _ => "other",
    }
    .to_owned()
}

const KMS: &str = "kms.amazonaws.com";

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Basic event selectors: management events are logged by any selector with
/// `includeManagementEvents` (default true); KMS is left out by
/// `excludeManagementEventSources`; `readWriteType: WriteOnly` leaves reads out.
fn selectors_impact(rp: &Value) -> &'static str {
    let Some(selectors) = rp.get("eventSelectors").and_then(Value::as_array) else {
        return "selectors_changed";
    };
    let management: Vec<&Value> = selectors
        .iter()
        .filter(|s| s.get("includeManagementEvents").and_then(Value::as_bool) != Some(false))
        .collect();
    let with_kms: Vec<&&Value> = management
        .iter()
        .filter(|s| !strings(s.get("excludeManagementEventSources")).contains(&KMS))
        .collect();
    if management.is_empty() {
        "management_events_excluded"
    } else if with_kms.is_empty() {
        "kms_events_excluded"
    } else if with_kms
        .iter()
        .all(|s| s.get("readWriteType").and_then(Value::as_str) == Some("WriteOnly"))
    {
        "read_events_excluded"
    } else {
        "selectors_changed"
    }
}

/// Advanced event selectors: a selector logs management events when its `eventCategory`
/// equals `Management`; it logs KMS unless an `eventSource` condition leaves it out; it
/// logs reads unless `readOnly` equals `false`.
fn advanced_selectors_impact(rp: &Value) -> &'static str {
    let Some(selectors) = rp.get("advancedEventSelectors").and_then(Value::as_array) else {
        return "selectors_changed";
    };
    let conditions = |s: &Value, field: &str| -> Vec<Value> {
        s.get("fieldSelectors")
            .and_then(Value::as_array)
            .map(|f| {
                f.iter()
                    .filter(|c| c.get("field").and_then(Value::as_str) == Some(field))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let management: Vec<&Value> = selectors
        .iter()
        .filter(|s| {
            conditions(s, "eventCategory")
                .iter()
                .any(|c| strings(c.get("equals")).contains(&"Management"))
        })
        .collect();
    let logs_kms = |s: &&&Value| {
        conditions(s, "eventSource").iter().all(|c| {
            let equals = strings(c.get("equals"));
            (equals.is_empty() || equals.contains(&KMS))
                && !strings(c.get("notEquals")).contains(&KMS)
        })
    };
    let with_kms: Vec<&&Value> = management.iter().filter(logs_kms).collect();
    if management.is_empty() {
        "management_events_excluded"
    } else if with_kms.is_empty() {
        "kms_events_excluded"
    } else if with_kms.iter().all(|s| {
        conditions(s, "readOnly")
            .iter()
            .any(|c| strings(c.get("equals")) == ["false"])
    }) {
        "read_events_excluded"
    } else {
        "selectors_changed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(source: &str, name: &str, rp: Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "eventVersion": "1.09",
            "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/eve"},
            "eventTime": "2026-11-11T01:00:00Z", "eventSource": source, "eventName": name,
            "awsRegion": "us-east-1", "sourceIPAddress": "203.0.113.9",
            "requestParameters": rp, "eventID": "t-1", "recipientAccountId": "111122223333"
        }))
        .expect("json")
    }

    #[test]
    fn candidates_are_cloudtrail_and_s3_calls_that_matter() {
        let stop = record(
            "cloudtrail.amazonaws.com",
            "StopLogging",
            serde_json::json!({"name": "t"}),
        );
        assert!(is_candidate(&stop));
        let e = parse(&stop, "obj").expect("parsed");
        assert_eq!(
            (e.impact.as_str(), e.target.as_deref()),
            ("logging_stopped", Some("t"))
        );
        assert_eq!(
            e.principal.as_deref(),
            Some("arn:aws:iam::111122223333:user/eve")
        );
        for (source, name) in [
            ("cloudtrail.amazonaws.com", "LookupEvents"),
            ("s3.amazonaws.com", "GetObject"),
            ("kms.amazonaws.com", "DeleteTrail"),
        ] {
            assert!(!is_candidate(&record(source, name, Value::Null)), "{name}");
        }
        let policy = record(
            "s3.amazonaws.com",
            "PutBucketPolicy",
            serde_json::json!({"bucketName": "trail-logs"}),
        );
        let e = parse(&policy, "obj").expect("parsed");
        assert_eq!(e.s3_bucket.as_deref(), Some("trail-logs"));
        assert_eq!(e.impact, "bucket_policy_changed");
    }

    #[test]
    fn selectors_that_leave_kms_out_are_named() {
        let basic = |sel: Value| {
            impact(
                "PutEventSelectors",
                &serde_json::json!({"eventSelectors": sel}),
            )
        };
        assert_eq!(
            basic(serde_json::json!([{"readWriteType": "All", "includeManagementEvents": false}])),
            "management_events_excluded"
        );
        assert_eq!(
            basic(
                serde_json::json!([{"readWriteType": "All", "includeManagementEvents": true,
                "excludeManagementEventSources": ["kms.amazonaws.com"]}])
            ),
            "kms_events_excluded"
        );
        assert_eq!(
            basic(
                serde_json::json!([{"readWriteType": "WriteOnly", "includeManagementEvents": true}])
            ),
            "read_events_excluded"
        );
        assert_eq!(
            basic(serde_json::json!([{"readWriteType": "All", "includeManagementEvents": true}])),
            "selectors_changed"
        );
        let adv = |sel: Value| {
            impact(
                "PutAdvancedEventSelectors",
                &serde_json::json!({"advancedEventSelectors": sel}),
            )
        };
        let mgmt = serde_json::json!({"field": "eventCategory", "equals": ["Management"]});
        assert_eq!(
            adv(
                serde_json::json!([{"fieldSelectors": [{"field": "eventCategory", "equals": ["Data"]}]}])
            ),
            "management_events_excluded"
        );
        assert_eq!(
            adv(serde_json::json!([{"fieldSelectors": [mgmt.clone(),
                {"field": "eventSource", "notEquals": ["kms.amazonaws.com"]}]}])),
            "kms_events_excluded"
        );
        assert_eq!(
            adv(serde_json::json!([{"fieldSelectors": [mgmt.clone(),
                {"field": "readOnly", "equals": ["false"]}]}])),
            "read_events_excluded"
        );
        assert_eq!(
            adv(serde_json::json!([{"fieldSelectors": [mgmt]}])),
            "selectors_changed"
        );
    }
}
