//! Alerts as OCSF Detection Findings (class 2004), one JSON object each: what Amazon Security
//! Lake custom sources and most SIEMs ingest.
//!
//! Every attribute the class requires is set (`activity_id`, `category_uid`, `class_uid`,
//! `finding_info` with `uid` and `title`, `metadata` with `product` and `version`,
//! `severity_id`, `time`, `type_uid`), plus the cloud, the key and the principal as
//! `resources`, the triggering CloudTrail events as `evidences`, and the rule's ATT&CK
//! techniques as `finding_info.attacks`.

use serde_json::{Value, json};

use super::{Alert, RuleMeta, Severity};
use crate::catalog::mitre_technique;
use crate::time::parse_event_time;

/// The OCSF schema version the findings follow.
pub const OCSF_VERSION: &str = "1.3.0";
/// Detection Finding.
pub const CLASS_UID: u32 = 2004;
/// Findings.
pub const CATEGORY_UID: u32 = 2;
/// The attributes a Detection Finding must carry.
pub const REQUIRED_ATTRIBUTES: &[&str] = &[
    "activity_id",
    "category_uid",
    "class_uid",
    "finding_info",
    "metadata",
    "severity_id",
    "time",
    "type_uid",
];

/// OCSF `severity_id`: 1 Informational .. 5 Critical.
pub fn severity_id(s: Severity) -> u8 {
    match s {
        Severity::Info => 1,
        Severity::Low => 2,
        Severity::Medium => 3,
        Severity::High => 4,
        Severity::Critical => 5,
    }
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Info => "Informational",
        Severity::Low => "Low",
        Severity::Medium => "Medium",
        Severity::High => "High",
        Severity::Critical => "Critical",
    }
}

/// An alert as a Detection Finding. `rule` (its metadata) adds the ATT&CK techniques and the
/// compliance references; `now_ms` is the finding's `time` (when it was produced).
pub fn detection_finding(alert: &Alert, rule: Option<&RuleMeta>, now_ms: i64) -> Value {
    let ms = |t: &str| parse_event_time(t).map(|us| us / 1000);
    let activity_id = 1; // Create
    let mut finding_info = json!({
        "uid": alert.dedup_key,
        "title": alert.title,
        "desc": alert.summary,
        "types": [alert.rule_id],
        "analytic": {"uid": alert.rule_id, "name": alert.title, "type_id": 1, "type": "Rule"},
        "first_seen_time": ms(&alert.first_seen),
        "last_seen_time": ms(&alert.last_seen),
        "product_uid": "kms-audit",
    });
    if let Some(meta) = rule {
        let attacks: Vec<Value> = meta
            .references
            .mitre
            .iter()
            .flat_map(|id| {
                let t = mitre_technique(id);
                let name = t.map(|t| t.name).unwrap_or_default();
                let tactics: Vec<&str> = t.map(|t| t.tactics.to_vec()).unwrap_or_default();
                let technique = json!({"uid": id, "name": name});
                if tactics.is_empty() {
                    vec![json!({"technique": technique, "version": "16"})]
                } else {
                    tactics
                        .into_iter()
                        .map(|tactic| {
                            json!({"technique": technique, "tactic": {"name": tactic}, "version": "16"})
                        })
                        .collect()
                }
            })
            .collect();
        if !attacks.is_empty() {
            finding_info["attacks"] = Value::Array(attacks);
        }
    }
    let mut resources = Vec::new();
    if let Some(key) = &alert.key_arn {
        resources.push(json!({
            "uid": key,
            "type": "AWS::KMS::Key",
            "region": alert.aws_region,
            "owner": {"account": {"uid": crate::ingest::record::arn_account(key), "type": "AWS Account"}},
        }));
    }
    if let Some(p) = &alert.principal {
        resources.push(json!({"uid": p, "type": principal_type(p)}));
    }
    let evidences: Vec<Value> = std::iter::once(json!({
        "data": {"event_ids": alert.event_ids, "count": alert.count},
        "actor": alert.principal.as_ref().map(|p| json!({"user": {"uid": p}})),
    }))
    .chain(
        alert
            .source_ips
            .iter()
            .map(|ip| json!({"src_endpoint": {"ip": ip}})),
    )
    .collect();
    let mut v = json!({
        "activity_id": activity_id,
        "activity_name": "Create",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "type_uid": CLASS_UID * 100 + activity_id,
        "severity_id": severity_id(alert.severity),
        "severity": severity_name(alert.severity),
        "status_id": 1,
        "status": "New",
        "time": now_ms,
        "message": alert.summary,
        "count": alert.count,
        "finding_info": finding_info,
        "metadata": {
            "version": OCSF_VERSION,
            "product": {
                "name": "kms-audit",
                "vendor_name": "kms-audit",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "uid": alert.dedup_key,
        },
        "cloud": {
            "provider": "AWS",
            "account": {"uid": alert.account_id},
            "region": alert.aws_region,
        },
        "resources": resources,
        "evidences": evidences,
        "unmapped": {"rule_id": alert.rule_id, "dedup_key": alert.dedup_key},
    });
    if let Some(meta) = rule {
        let requirements = meta.references.labels();
        if !requirements.is_empty() {
            v["compliance"] = json!({"requirements": requirements});
        }
    }
    v
}

/// The AWS type of a principal, from its ARN.
pub fn principal_type(principal: &str) -> &'static str {
    let resource = principal.splitn(6, ':').nth(5).unwrap_or("");
    if resource.starts_with("role/") || resource.starts_with("assumed-role/") {
        "AwsIamRole"
    } else if resource.starts_with("user/") {
        "AwsIamUser"
    } else if resource == "root" || principal.chars().all(|c| c.is_ascii_digit()) {
        "AwsAccount"
    } else {
        "Other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> Alert {
        Alert {
            rule_id: "kms_key_deletion_scheduled".into(),
            title: "KMS key scheduled for deletion".into(),
            severity: Severity::Critical,
            first_seen: "2026-11-03T12:10:00Z".into(),
            last_seen: "2026-11-03T12:10:00Z".into(),
            count: 1,
            principal: Some("arn:aws:iam::111122223333:user/mallory".into()),
            key_arn: Some("arn:aws:kms:us-east-1:111122223333:key/k1".into()),
            account_id: Some("111122223333".into()),
            aws_region: Some("us-east-1".into()),
            source_ips: vec!["203.0.113.66".into()],
            event_ids: vec!["e1".into()],
            summary: "ScheduleKeyDeletion of k1 with a 7-day window".into(),
            dedup_key: "kms_key_deletion_scheduled:abc".into(),
        }
    }

    #[test]
    fn a_finding_carries_the_class_attributes_and_the_evidence() {
        let meta: RuleMeta = serde_yaml_ng::from_str(
            "id: kms_key_deletion_scheduled\ntitle: t\nseverity: high\ndescription: d\nwhy: w\n\
             references: {mitre: [T1485], security_hub: [KMS.3]}\ndedup_window: 7d\n\
             runbook: [r]\ntests: []\n",
        )
        .expect("meta");
        let f = detection_finding(&alert(), Some(&meta), 1_793_000_000_000);
        for required in REQUIRED_ATTRIBUTES {
            assert!(!f[*required].is_null(), "{required}");
        }
        assert_eq!(f["class_uid"], 2004);
        assert_eq!(f["type_uid"], 200401);
        assert_eq!(f["severity_id"], 5);
        assert_eq!(f["finding_info"]["uid"], "kms_key_deletion_scheduled:abc");
        assert_eq!(f["finding_info"]["first_seen_time"], 1_793_707_800_000i64);
        assert_eq!(f["finding_info"]["attacks"][0]["technique"]["uid"], "T1485");
        assert_eq!(f["finding_info"]["attacks"][0]["tactic"]["name"], "Impact");
        assert_eq!(f["metadata"]["product"]["name"], "kms-audit");
        assert_eq!(f["resources"][0]["type"], "AWS::KMS::Key");
        assert_eq!(f["resources"][0]["owner"]["account"]["uid"], "111122223333");
        assert_eq!(f["resources"][1]["type"], "AwsIamUser");
        assert_eq!(f["evidences"][0]["data"]["event_ids"][0], "e1");
        assert_eq!(f["evidences"][1]["src_endpoint"]["ip"], "203.0.113.66");
        assert_eq!(f["compliance"]["requirements"][1], "Security Hub KMS.3");
        let bare = detection_finding(&alert(), None, 0);
        assert!(bare.get("compliance").is_none());
        assert!(bare["finding_info"].get("attacks").is_none());
    }

    #[test]
    fn principal_types_follow_the_arn() {
        assert_eq!(principal_type("arn:aws:iam::1:role/Admin"), "AwsIamRole");
        assert_eq!(principal_type("arn:aws:iam::1:user/dana"), "AwsIamUser");
        assert_eq!(principal_type("arn:aws:iam::1:root"), "AwsAccount");
        assert_eq!(principal_type("111122223333"), "AwsAccount");
        assert_eq!(principal_type("kms.amazonaws.com"), "Other");
    }
}
