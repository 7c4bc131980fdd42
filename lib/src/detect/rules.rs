//! The rules: metadata (the YAML sidecar), the SQL, and the built-in catalog generated
//! from `queries/detections/` at build time.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::DetectError;
use crate::catalog::{self, References};
use crate::time::parse_span;

/// Alert severity, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Info => "info",
        }
    }
    pub(crate) fn parse(s: &str) -> Option<Severity> {
        match s.to_ascii_lowercase().as_str() {
            "critical" => Some(Severity::Critical),
            "high" => Some(Severity::High),
            "medium" => Some(Severity::Medium),
            "low" => Some(Severity::Low),
            "info" => Some(Severity::Info),
            _ => None,
        }
    }
}

/// One of a rule's own test cases: records (each merged over a default KMS record by the
/// test harness) and the event ids that must alert (empty: nothing may alert).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleTest {
    pub name: String,
    /// Start of the detection window (RFC 3339); records before it are history.
    #[serde(default)]
    pub since: Option<String>,
    pub records: Vec<serde_json::Value>,
    #[serde(default)]
    pub alerts: Vec<String>,
    /// The account whose CloudTrail prefix the records are delivered under
    /// (`AWSLogs/<account>/...`). Default: each record under its own `recipientAccountId`.
    #[serde(default)]
    pub delivered_account: Option<String>,
    /// An organization trail's id (`AWSLogs/<org>/<account>/...`).
    #[serde(default)]
    pub delivered_org: Option<String>,
    /// The severity every alert of the case must have.
    #[serde(default)]
    pub severity: Option<Severity>,
}

/// A rule's metadata (the YAML file).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleMeta {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub description: String,
    /// Why it matters, in KMS terms.
    pub why: String,
    /// MITRE ATT&CK, CIS AWS Foundations, PCI DSS, Security Hub controls.
    pub references: References,
    /// How long the same incident stays one alert (`24h`, `7d`, `30m`).
    pub dedup_window: String,
    pub runbook: Vec<String>,
    pub tests: Vec<RuleTest>,
}

/// A loaded rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub meta: RuleMeta,
    pub sql: String,
}

fn parse_rule(id: &str, sql: &str, yaml: &str) -> Result<Rule, DetectError> {
    let meta: RuleMeta = serde_yaml_ng::from_str(yaml).map_err(|source| DetectError::Metadata {
        rule: id.to_owned(),
        source,
    })?;
    if meta.id != id {
        return Err(DetectError::Rule {
            rule: id.to_owned(),
            reason: format!("metadata id {:?} differs from the file name", meta.id),
        });
    }
    parse_span(&meta.dedup_window).ok_or_else(|| DetectError::Rule {
        rule: id.to_owned(),
        reason: format!("invalid dedup_window {:?}", meta.dedup_window),
    })?;
    Ok(Rule {
        meta,
        sql: sql.to_owned(),
    })
}

/// The built-in catalog: every rule of `queries/detections/`, embedded at build time.
pub fn builtin_rules() -> Result<Vec<Rule>, DetectError> {
    catalog::DETECTIONS
        .iter()
        .map(|(id, sql, yaml)| parse_rule(id, sql, yaml))
        .collect()
}

/// The ids of the built-in rules.
pub fn builtin_rule_ids() -> Vec<&'static str> {
    catalog::DETECTIONS.iter().map(|(id, _, _)| *id).collect()
}

/// Loads every `<id>.sql` + `<id>.yaml` pair of a directory.
pub fn load_rules(dir: &Path) -> Result<Vec<Rule>, DetectError> {
    let io = |path: &Path, source| DetectError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut ids: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            (p.extension()? == "sql").then(|| p.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    ids.sort();
    ids.iter()
        .map(|id| {
            let sql_path = dir.join(format!("{id}.sql"));
            let yaml_path = dir.join(format!("{id}.yaml"));
            let sql = std::fs::read_to_string(&sql_path).map_err(|e| io(&sql_path, e))?;
            let yaml = std::fs::read_to_string(&yaml_path).map_err(|e| io(&yaml_path, e))?;
            parse_rule(id, &sql, &yaml)
        })
        .collect()
}
