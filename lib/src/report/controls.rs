//! The report's verdict: one row per control, `pass`, `fail` or `not_evaluated` (with the
//! reason), with the findings that decide it; and every finding of the period, most severe
//! first. Computed from the report's sections (the evidence), so every finding cites the
//! events or objects it rests on.

use serde::Serialize;
use serde_json::{Map, Value};

use super::Section;
use crate::catalog::References;
use crate::detect::Severity;

/// A control's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    NotEvaluated,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::NotEvaluated => "not evaluated",
        }
    }
}

/// One finding: what, who, when, from where, and its evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// The rule or check that found it (`kms_key_disabled`, `rotation`, `integrity`...).
    pub source: String,
    pub summary: String,
    pub principal: Option<String>,
    /// The key, object or account-region it is about.
    pub subject: Option<String>,
    pub when: Option<String>,
    pub source_ips: Vec<String>,
    /// The CloudTrail events that prove it.
    pub event_ids: Vec<String>,
    /// The report section holding the evidence.
    pub section: String,
}

/// One control.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Control {
    pub id: String,
    pub title: String,
    pub references: References,
    pub status: Status,
    /// Why it is not evaluated, or what it rests on.
    pub reason: Option<String>,
    pub findings: Vec<Finding>,
}

fn refs(mitre: &[&str], cis: &[&str], pci: &[&str], hub: &[&str]) -> References {
    let v = |x: &[&str]| x.iter().map(|s| (*s).to_owned()).collect();
    References {
        mitre: v(mitre),
        cis: v(cis),
        pci: v(pci),
        security_hub: v(hub),
        ..References::default()
    }
}

fn text(row: &Map<String, Value>, k: &str) -> Option<String> {
    match row.get(k)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        v => Some(v.to_string()),
    }
}

fn texts(row: &Map<String, Value>, k: &str) -> Vec<String> {
    match row.get(k) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn alert_finding(row: &Map<String, Value>) -> Finding {
    Finding {
        severity: row
            .get("severity")
            .cloned()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or(Severity::Medium),
        source: text(row, "rule_id").unwrap_or_default(),
        summary: text(row, "summary").unwrap_or_default(),
        principal: text(row, "principal"),
        subject: text(row, "key_arn").or_else(|| {
            match (text(row, "account_id"), text(row, "aws_region")) {
                (Some(a), Some(r)) => Some(format!("{a} {r}")),
                (a, _) => a,
            }
        }),
        when: text(row, "first_seen"),
        source_ips: texts(row, "source_ips"),
        event_ids: texts(row, "event_ids"),
        section: "alerts".into(),
    }
}

/// Controls over a report's sections. Those that rest on the detection rules are not
/// evaluated when the report has no alerts section (`--no-alerts`).
pub fn controls(sections: &[Section], events_in_period: i64, expected: &[String]) -> Vec<Control> {
    let section = |id: &str| sections.iter().find(|s| s.def.id == id);
    let alerts: Option<Vec<&Map<String, Value>>> =
        section("alerts").map(|s| s.rows.iter().collect());
    let by_rules = |rules: &[&str]| -> Option<Vec<Finding>> {
        alerts.as_ref().map(|rows| {
            rows.iter()
                .filter(|r| text(r, "rule_id").is_some_and(|id| rules.contains(&id.as_str())))
                .map(|r| alert_finding(r))
                .collect()
        })
    };
    let from_rules = |id: &str, title: &str, references: References, rules: &[&str]| {
        let (status, reason, findings) = match by_rules(rules) {
            _ if events_in_period == 0 => (
                Status::NotEvaluated,
                Some("no KMS event in the period".to_owned()),
                Vec::new(),
            ),
            None => (
                Status::NotEvaluated,
                Some("the detection rules were not run (report --no-alerts)".to_owned()),
                Vec::new(),
            ),
            Some(f) if f.is_empty() => (
                Status::Pass,
                Some(format!("no alert of {} in the period", rules.join(", "))),
                f,
            ),
            Some(f) => (Status::Fail, None, f),
        };
        Control {
            id: id.into(),
            title: title.into(),
            references,
            status,
            reason,
            findings,
        }
    };
    let mut out = Vec::new();

    // Rotation: CloudTrail records changes, not settings; a key with neither a setting nor
    // a rotation in the lake's history cannot be judged from it.
    let mut rotation = Control {
        id: "rotation_enabled".into(),
        title: "Automatic rotation enabled on customer managed keys".into(),
        references: refs(&[], &["3.8"], &["3.6.4"], &["KMS.4"]),
        status: Status::NotEvaluated,
        reason: Some("no key in the lake".into()),
        findings: Vec::new(),
    };
    if let Some(s) = section("rotation") {
        let disabled: Vec<Finding> = s
            .rows
            .iter()
            .filter(|r| text(r, "rotation").as_deref() == Some("rotation disabled"))
            .map(|r| Finding {
                severity: Severity::Medium,
                source: "rotation".into(),
                summary: format!(
                    "rotation disabled on {}",
                    text(r, "key_arn").unwrap_or_else(|| "a key".into())
                ),
                principal: text(r, "setting_principal"),
                subject: text(r, "key_arn"),
                when: text(r, "setting_time"),
                source_ips: Vec::new(),
                event_ids: text(r, "setting_event_id").into_iter().collect(),
                section: "rotation".into(),
            })
            .collect();
        let unknown = s
            .rows
            .iter()
            .filter(|r| text(r, "rotation").as_deref() == Some("no evidence"))
            .count();
        (rotation.status, rotation.reason) = if !disabled.is_empty() {
            (Status::Fail, None)
        } else if s.rows.is_empty() {
            (Status::NotEvaluated, Some("no key in the lake".into()))
        } else if unknown > 0 {
            (
                Status::NotEvaluated,
                Some(format!(
                    "{unknown} of {} keys show no rotation setting or rotation in the lake's history (CloudTrail records changes, not settings: check them with GetKeyRotationStatus)",
                    s.rows.len()
                )),
            )
        } else {
            (
                Status::Pass,
                Some(format!("{} keys: rotation enabled", s.rows.len())),
            )
        };
        rotation.findings = disabled;
    }
    out.push(rotation);

    // Deletions and disables of keys the report was told to expect (a planned
    // decommissioning) do not fail the control; they are named in its basis.
    let mut lifecycle = from_rules(
        "no_deletion_or_disable",
        "No key scheduled for deletion or disabled unexpectedly",
        refs(&["T1485"], &["4.7"], &["3.7.5"], &["KMS.3"]),
        &[
            "kms_key_deletion_scheduled",
            "kms_key_disabled",
            "kms_trail_key_disabled",
        ],
    );
    let is_expected = |f: &Finding| {
        f.subject.as_deref().is_some_and(|k| {
            expected
                .iter()
                .any(|e| !e.is_empty() && (k == e || k.ends_with(&format!("/{e}"))))
        })
    };
    let planned = lifecycle.findings.iter().filter(|f| is_expected(f)).count();
    if planned > 0 {
        lifecycle.findings.retain(|f| !is_expected(f));
        if lifecycle.findings.is_empty() {
            lifecycle.status = Status::Pass;
        }
        lifecycle.reason = Some(format!(
            "{planned} deletion(s) or disable(s) of expected keys (report --expected-keys)"
        ));
    }
    out.push(lifecycle);
    out.push(from_rules(
        "no_public_or_outside_policy",
        "No key policy, grant or re-encryption open to the public or to untrusted accounts",
        refs(&["T1098"], &["1.16"], &["3.7.7"], &["KMS.5"]),
        &[
            "kms_key_policy_public",
            "kms_key_policy_external_account",
            "kms_grant_to_external_account",
            "kms_reencrypt_to_external_key",
            "kms_policy_lockout_bypass",
        ],
    ));
    out.push(from_rules(
        "admin_with_mfa",
        "Key administration only with MFA",
        refs(&["T1078"], &["1.10"], &["8.4"], &[]),
        &["kms_admin_action_without_mfa"],
    ));
    out.push(from_rules(
        "no_root_use",
        "No use of KMS by the root user",
        refs(&["T1078.004"], &["1.7"], &["3.7.7"], &[]),
        &["kms_root_usage"],
    ));
    out.push(from_rules(
        "key_material_unchanged",
        "Imported key material and custom key stores unchanged",
        refs(&["T1485"], &[], &["3.6.1", "3.7.5"], &[]),
        &[
            "kms_imported_key_material_changed",
            "kms_key_material_expires",
            "kms_custom_key_store_changed",
            "kms_key_created_with_outside_material",
        ],
    ));
    out.push(from_rules(
        "no_denied_bursts",
        "No unexplained bursts of denied requests",
        refs(&["T1580"], &[], &["10.2.1.4"], &[]),
        &["kms_access_denied_burst"],
    ));

    // Coverage: fails on what switches KMS logging off (the trail's own changes). Gaps in
    // KMS events are context, not proof: a quiet account has no KMS calls for hours.
    let mut coverage = Control {
        id: "logging_coverage".into(),
        title: "KMS activity logged without gaps".into(),
        references: refs(&["T1562.008"], &["3.1"], &["10.7"], &["CloudTrail.1"]),
        status: Status::NotEvaluated,
        reason: Some("no KMS event in the period".into()),
        findings: Vec::new(),
    };
    if let Some(s) = section("coverage")
        && !s.rows.is_empty()
    {
        let gaps: i64 = s
            .rows
            .iter()
            .filter_map(|r| r.get("gaps_over_3h").and_then(Value::as_i64))
            .sum();
        coverage.status = Status::Pass;
        coverage.reason = Some(format!(
            "no trail change switched KMS logging off in {} account-region(s); {gaps} gap(s) over 3 hours without KMS events (idle keys, or logging gaps: see coverage)",
            s.rows.len()
        ));
    }
    if let Some(s) = section("trail_changes") {
        for r in s
            .rows
            .iter()
            .filter(|r| r.get("finding") == Some(&Value::Bool(true)))
        {
            coverage.findings.push(Finding {
                severity: Severity::Critical,
                source: "trail_changes".into(),
                summary: format!(
                    "{} ({}) on {}",
                    text(r, "event_name").unwrap_or_default(),
                    text(r, "impact").unwrap_or_default(),
                    text(r, "target").unwrap_or_else(|| "the trail".into())
                ),
                principal: text(r, "principal"),
                subject: text(r, "target"),
                when: text(r, "event_time"),
                source_ips: text(r, "source_ip").into_iter().collect(),
                event_ids: text(r, "event_id").into_iter().collect(),
                section: "trail_changes".into(),
            });
        }
    }
    if !coverage.findings.is_empty() {
        coverage.status = Status::Fail;
        coverage.reason = None;
    }
    out.push(coverage);

    // Integrity, from CloudTrail's digests.
    let mut integrity = Control {
        id: "log_integrity".into(),
        title: "Log files proven unmodified by CloudTrail's digests".into(),
        references: refs(
            &["T1565.001", "T1070"],
            &["3.2"],
            &["10.3.4", "10.5"],
            &["CloudTrail.4"],
        ),
        status: Status::NotEvaluated,
        reason: Some(
            "no digest in the lake: log file validation off, or digests not ingested".into(),
        ),
        findings: Vec::new(),
    };
    if let (Some(s), Some(f)) = (section("integrity"), section("integrity_findings")) {
        integrity.findings = f
            .rows
            .iter()
            .filter(|r| r.get("failure") == Some(&Value::Bool(true)))
            .map(|r| Finding {
                severity: Severity::Critical,
                source: format!("integrity: {}", text(r, "kind").unwrap_or_default()),
                summary: text(r, "detail").unwrap_or_default(),
                principal: None,
                subject: text(r, "object"),
                when: None,
                source_ips: Vec::new(),
                event_ids: Vec::new(),
                section: "integrity_findings".into(),
            })
            .collect();
        let unchecked = s
            .rows
            .iter()
            .any(|r| text(r, "status").is_some_and(|t| t.contains("signatures not checked")));
        (integrity.status, integrity.reason) = if !integrity.findings.is_empty() {
            (Status::Fail, None)
        } else if s.rows.is_empty()
            || s.rows
                .iter()
                .all(|r| r.get("digests_present").and_then(Value::as_u64) == Some(0))
        {
            (integrity.status, integrity.reason.clone())
        } else if unchecked {
            (
                Status::NotEvaluated,
                Some("the chain and every log's SHA-256 match, but digest signatures were not checked (report --public-keys)".into()),
            )
        } else {
            (
                Status::Pass,
                Some(format!(
                    "{} account-region(s): every digest valid, every listed log verified",
                    s.rows.len()
                )),
            )
        };
    }
    out.push(integrity);
    out
}

/// Every finding of the period, most severe first: the alerts, then what the controls
/// found besides them (each such finding belongs to one control).
pub fn findings(controls: &[Control], sections: &[Section]) -> Vec<Finding> {
    let mut all: Vec<Finding> = sections
        .iter()
        .filter(|s| s.def.id == "alerts")
        .flat_map(|s| s.rows.iter().map(alert_finding))
        .collect();
    all.extend(
        controls
            .iter()
            .flat_map(|c| c.findings.iter())
            .filter(|f| f.section != "alerts")
            .cloned(),
    );
    all.sort_by(|a, b| (a.severity, &a.when, &a.source).cmp(&(b.severity, &b.when, &b.source)));
    all
}
