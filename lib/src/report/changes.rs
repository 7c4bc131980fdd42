//! What changed since the previous report: new keys, keys gone, controls that changed
//! status, new findings. The previous report is read back from its `report.json`.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

use super::Report;
use super::controls::{Finding, Status};

/// The previous report compared with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Previous {
    /// Where its report.json was read.
    pub location: String,
    pub since: Option<String>,
    pub until: Option<String>,
    pub generated_at: Option<String>,
    pub lake_version: Option<i64>,
}

/// A control whose status differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ControlChange {
    pub id: String,
    pub title: String,
    /// `pass`, `fail`, `not_evaluated`, or null when the previous report had no such control.
    pub before: Option<String>,
    pub after: Status,
}

/// The differences.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Changes {
    pub previous: Previous,
    pub new_keys: Vec<String>,
    pub keys_gone: Vec<String>,
    pub controls_changed: Vec<ControlChange>,
    /// Findings of this report that the previous one did not have.
    pub new_findings: Vec<Finding>,
    /// Findings of the previous report that this one no longer has.
    pub findings_no_longer_present: u64,
}

fn section_keys(sections: impl Iterator<Item = (String, Vec<Value>)>) -> BTreeSet<String> {
    sections
        .filter(|(id, _)| id == "key_inventory")
        .flat_map(|(_, rows)| rows)
        .filter_map(|r| r.get("key_arn")?.as_str().map(str::to_owned))
        .collect()
}

/// A finding's identity across reports: what found it, what about, which events.
fn identity(source: &str, subject: Option<&str>, events: &[String], summary: &str) -> String {
    let mut ev: Vec<&str> = events.iter().map(String::as_str).collect();
    ev.sort_unstable();
    // Findings without events (coverage gaps, integrity) are told apart by their summary.
    let tail = if ev.is_empty() { summary } else { "" };
    format!(
        "{source}|{}|{}|{tail}",
        subject.unwrap_or_default(),
        ev.join(",")
    )
}

/// Compares a report with the previous one (its parsed `report.json`).
pub fn compare(current: &Report, previous: &Value, location: &str) -> Changes {
    let text = |k: &str| previous.get(k).and_then(Value::as_str).map(str::to_owned);
    let prev_sections = previous
        .get("sections")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            (
                s.get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                s.get("rows")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            )
        });
    let before_keys = section_keys(prev_sections);
    let now_keys = section_keys(current.sections.iter().map(|s| {
        (
            s.def.id.clone(),
            s.rows.iter().map(|r| Value::Object(r.clone())).collect(),
        )
    }));
    let prev_controls: Vec<(String, String)> = previous
        .get("controls")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| {
                    Some((
                        c.get("id")?.as_str()?.to_owned(),
                        c.get("status")?.as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let controls_changed = current
        .controls
        .iter()
        .filter_map(|c| {
            let after = serde_json::to_value(c.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let before = prev_controls
                .iter()
                .find(|(id, _)| *id == c.id)
                .map(|(_, s)| s.clone());
            (before.as_deref() != Some(after.as_str())).then(|| ControlChange {
                id: c.id.clone(),
                title: c.title.clone(),
                before,
                after: c.status,
            })
        })
        .collect();
    let prev_findings: BTreeSet<String> = previous
        .get("findings")
        .and_then(Value::as_array)
        .map(|fs| {
            fs.iter()
                .map(|f| {
                    let events: Vec<String> = f
                        .get("event_ids")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|e| e.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default();
                    identity(
                        f.get("source").and_then(Value::as_str).unwrap_or_default(),
                        f.get("subject").and_then(Value::as_str),
                        &events,
                        f.get("summary").and_then(Value::as_str).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let now_findings: Vec<(String, &Finding)> = current
        .findings
        .iter()
        .map(|f| {
            (
                identity(&f.source, f.subject.as_deref(), &f.event_ids, &f.summary),
                f,
            )
        })
        .collect();
    let now_ids: BTreeSet<&String> = now_findings.iter().map(|(id, _)| id).collect();
    Changes {
        previous: Previous {
            location: location.to_owned(),
            since: text("since"),
            until: text("until"),
            generated_at: text("generated_at"),
            lake_version: previous.get("lake_version").and_then(Value::as_i64),
        },
        new_keys: now_keys.difference(&before_keys).cloned().collect(),
        keys_gone: before_keys.difference(&now_keys).cloned().collect(),
        controls_changed,
        new_findings: now_findings
            .iter()
            .filter(|(id, _)| !prev_findings.contains(id))
            .map(|(_, f)| (*f).clone())
            .collect(),
        findings_no_longer_present: prev_findings
            .iter()
            .filter(|id| !now_ids.contains(id))
            .count() as u64,
    }
}

/// Among `(location, report.json)` candidates, the previous report of one ending at
/// `until`: the latest that ends no later, other than `exclude`.
pub fn pick_previous<'a>(
    candidates: &'a [(String, Value)],
    until: &str,
    exclude: &str,
) -> Option<&'a (String, Value)> {
    let end = crate::time::parse_event_time(until)?;
    candidates
        .iter()
        .filter(|(loc, _)| loc != exclude)
        .filter_map(|c| {
            let u = crate::time::parse_event_time(c.1.get("until")?.as_str()?)?;
            (u <= end).then_some((u, c))
        })
        // Not the same period generated again elsewhere.
        .filter(|(u, _)| *u < end)
        .max_by_key(|(u, _)| *u)
        .map(|(_, c)| c)
}
