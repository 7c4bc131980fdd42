//! Compliance reports: evidence from the event record over a period, each finding citing
//! the events that prove it.
//!
//! A report is the sections of `queries/reports/` (each `<nn>_<id>.sql`, one query, with
//! its `<nn>_<id>.yaml` sidecar: id, title, description, references) plus the
//! alerts the detection rules raise over the period. Queries see these views:
//!
//! * `period_events`: `kms_events` in `[since, until)` (partition-pruned by date);
//! * `lake_events`: every event before `until` (for state reconstructed from history);
//! * `report_period(since, until, since_micros, until_micros)`: one row;
//! * `trusted_accounts(account_id)`, `trusted_orgs(org_id)`: the accounts and organizations
//!   in the keys of the logs delivered in the period, plus the ones given
//!   ([`crate::detect::trust`]).
//!
//! [`write_report`] writes `report.json`, one CSV per section, and `report.html`: one
//! self-contained file (inline CSS and SVG, no scripts, no external resources) that prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub mod changes;
pub mod controls;

use crate::catalog::References;
use crate::detect::{DetectError, Rule, Window, run_rules};
use crate::sql::{OutputFormat, QueryError, run_sql, write_batches};
use crate::time::{DAY_MICROS, format_micros};

/// Errors building or writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("report section {section}: {source}")]
    Section {
        section: String,
        #[source]
        source: QueryError,
    },
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("report query {file}: {reason}")]
    Definition { file: String, reason: String },
    #[error("report query {file}: metadata: {source}")]
    Metadata {
        file: String,
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error("report section {section}: a row is not JSON: {source}")]
    Row {
        section: String,
        #[source]
        source: serde_json::Error,
    },
}

/// A report section's definition: `queries/reports/<nn>_<id>.sql` and its YAML sidecar
/// (`id`, `title`, `description`, `references`), in file-name order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SectionDef {
    pub id: String,
    pub title: String,
    pub description: String,
    pub references: References,
    #[serde(skip)]
    pub sql: String,
}

/// Reads a section from its query and its metadata.
pub fn parse_section(file: &str, sql: &str, yaml: &str) -> Result<SectionDef, ReportError> {
    let mut def: SectionDef =
        serde_yaml_ng::from_str(yaml).map_err(|source| ReportError::Metadata {
            file: file.to_owned(),
            source,
        })?;
    if !file.ends_with(&def.id) {
        return Err(ReportError::Definition {
            file: file.to_owned(),
            reason: format!("metadata id {:?} differs from the file name", def.id),
        });
    }
    def.sql = sql.to_owned();
    Ok(def)
}

/// The built-in section definitions: every file of `queries/reports/`, embedded at build
/// time, in file-name order.
pub fn builtin_sections() -> Result<Vec<SectionDef>, ReportError> {
    crate::catalog::REPORT_SECTIONS
        .iter()
        .map(|(file, sql, yaml)| parse_section(file, sql, yaml))
        .collect()
}

/// A section's result.
#[derive(Debug, Clone, Serialize)]
pub struct Section {
    #[serde(flatten)]
    pub def: SectionDef,
    pub columns: Vec<String>,
    pub rows: Vec<Map<String, Value>>,
    /// How long the section's query took.
    pub seconds: f64,
    #[serde(skip)]
    pub batches: Vec<RecordBatch>,
}

/// A point of a chart.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub label: String,
    pub value: i64,
}

/// A report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub lake: String,
    /// The `kms_events` version read (`kms-audit report --as-of` it to reproduce the
    /// report); none for a session without a `lake_version` view.
    pub lake_version: Option<i64>,
    pub since: String,
    pub until: String,
    pub generated_at: String,
    pub events_in_period: i64,
    /// The verdict: one row per control (see [`controls`]).
    pub controls: Vec<controls::Control>,
    /// Every finding of the period, most severe first.
    pub findings: Vec<controls::Finding>,
    /// What changed since the previous report, when one was found ([`changes::compare`]).
    pub changes: Option<changes::Changes>,
    pub sections: Vec<Section>,
    /// KMS calls per day, denied requests per day, calls of the top principals.
    pub charts: BTreeMap<String, Vec<Point>>,
}

/// What to report on.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    /// Period start (microseconds); default `until` - 30 days.
    pub since: Option<i64>,
    /// Period end, exclusive; default just after the lake's last event (now if empty).
    pub until: Option<i64>,
    pub trusted_accounts: Vec<String>,
    /// Organizations trusted besides those of organization trails in the lake.
    pub trusted_orgs: Vec<String>,
    /// Also include the alerts of these rules over the period.
    pub rules: Vec<Rule>,
    /// CloudTrail's public keys: the integrity section then checks digest signatures
    /// too (without, the chain and every log's SHA-256).
    pub public_keys: Option<crate::integrity::PublicKeys>,
    /// Keys (ARNs or ids) whose deletion or disabling in the period is planned: it does not
    /// fail the `no_deletion_or_disable` control.
    pub expected_keys: Vec<String>,
}

async fn scalar_i64(ctx: &SessionContext, sql: &str) -> Result<Option<i64>, QueryError> {
    let batches = run_sql(ctx, sql).await?;
    Ok(batches.iter().find(|b| b.num_rows() > 0).and_then(|b| {
        let c = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Int64).ok()?;
        let c = c.as_primitive::<Int64Type>();
        (!c.is_null(0)).then(|| c.value(0))
    }))
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Builds a report over a lake registered on `ctx` as `kms_events`.
pub async fn build_report(
    ctx: &SessionContext,
    lake: &str,
    opts: &ReportOptions,
) -> Result<Report, ReportError> {
    let now = crate::time::now_micros();
    let last = scalar_i64(
        ctx,
        "SELECT arrow_cast(max(event_time), 'Int64') FROM kms_events",
    )
    .await?;
    // Default end: the whole second after the lake's last event (exclusive, so it is in).
    let until = opts
        .until
        .unwrap_or_else(|| last.map_or(now, |l| (l.div_euclid(1_000_000) + 1) * 1_000_000));
    let since = opts.since.unwrap_or(until - 30 * DAY_MICROS);
    let (since_s, until_s) = (format_micros(since), format_micros(until));
    let (since_x, until_x) = (
        crate::time::format_micros_exact(since),
        crate::time::format_micros_exact(until),
    );
    let first_day = crate::time::format_day(since.div_euclid(DAY_MICROS));
    let last_day = crate::time::format_day((until - 1).div_euclid(DAY_MICROS));
    for sql in [
        format!(
            "CREATE OR REPLACE VIEW report_period AS SELECT TIMESTAMP {} AS since, TIMESTAMP {} AS until, \
             CAST({since} AS BIGINT) AS since_micros, CAST({until} AS BIGINT) AS until_micros",
            quote(&since_x),
            quote(&until_x)
        ),
        format!(
            "CREATE OR REPLACE VIEW period_events AS SELECT * FROM kms_events \
             WHERE event_date BETWEEN DATE {} AND DATE {} \
               AND event_time >= TIMESTAMP {} AND event_time < TIMESTAMP {}",
            quote(&first_day),
            quote(&last_day),
            quote(&since_x),
            quote(&until_x)
        ),
        format!(
            "CREATE OR REPLACE VIEW lake_events AS SELECT * FROM kms_events \
             WHERE event_date <= DATE {} AND event_time < TIMESTAMP {}",
            quote(&last_day),
            quote(&until_x)
        ),
    ] {
        run_sql(ctx, &sql).await?;
    }
    crate::detect::set_trusted_orgs(ctx, &opts.trusted_orgs)?;
    let trusted = crate::detect::trust::resolve(
        ctx,
        &first_day,
        &last_day,
        &opts.trusted_accounts,
        &opts.trusted_orgs,
    )
    .await?;
    crate::detect::trust::register(ctx, &trusted).await?;
    let events_in_period = scalar_i64(ctx, "SELECT count(*) FROM period_events")
        .await?
        .unwrap_or(0);

    let mut sections = Vec::new();
    for def in builtin_sections()? {
        let started = std::time::Instant::now();
        let batches = crate::sql::run_read_only(ctx, &def.sql)
            .await
            .map_err(|source| ReportError::Section {
                section: def.id.clone(),
                source,
            })?;
        // No rows, maybe no batch: the columns come from the query's plan.
        let planned: Vec<String> = if batches.is_empty() {
            ctx.state()
                .create_logical_plan(&def.sql)
                .await
                .map(|p| {
                    p.schema()
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .collect()
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut s = section(def, batches)?;
        if s.columns.is_empty() {
            s.columns = planned;
        }
        s.seconds = started.elapsed().as_secs_f64();
        sections.push(s);
    }
    let lake_version = match ctx.table_exist("lake_version") {
        Ok(true) => scalar_i64(ctx, "SELECT version FROM lake_version").await?,
        _ => None,
    };
    let committed_at = match lake_version {
        Some(v) if v >= 0 => {
            scalar_i64(ctx, "SELECT CAST(committed_at AS BIGINT) FROM lake_version")
                .await?
                .map(|ms| (v, ms * 1000))
        }
        _ => None,
    };
    sections.extend(
        integrity_sections(ctx, since, until, opts.public_keys.as_ref(), committed_at).await?,
    );
    if !opts.rules.is_empty() {
        let started = std::time::Instant::now();
        let alerts = run_rules(
            ctx,
            &opts.rules,
            Window::new(since, until),
            &opts.trusted_accounts,
        )
        .await?;
        let rows: Vec<Map<String, Value>> = alerts
            .iter()
            .filter_map(|a| serde_json::to_value(a).ok())
            .filter_map(|v| v.as_object().cloned())
            .collect();
        let columns = rows
            .first()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default();
        sections.push(Section {
            def: SectionDef {
                id: "alerts".into(),
                title: "Alerts raised in the period".into(),
                description: "What the detection rules find over the period, deduplicated per incident (the rule catalog: kms-audit rules).".into(),
                references: opts.rules.iter().fold(References::default(), |mut r, rule| {
                    r.merge(&rule.meta.references);
                    r
                }),
                sql: String::new(),
            },
            columns,
            rows,
            seconds: started.elapsed().as_secs_f64(),
            batches: Vec::new(),
        });
    }
    let mut charts = BTreeMap::new();
    for (name, sql) in [
        (
            "calls_per_day",
            "SELECT CAST(event_date AS VARCHAR), count(*) FROM period_events GROUP BY 1 ORDER BY 1",
        ),
        (
            "denied_per_day",
            "SELECT CAST(event_date AS VARCHAR), count(*) FILTER (WHERE error_code IS NOT NULL) \
             FROM period_events GROUP BY 1 ORDER BY 1",
        ),
        (
            "top_principals",
            "SELECT coalesce(principal, '(unknown)'), count(*) FROM period_events GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10",
        ),
    ] {
        let mut p = points(&run_sql(ctx, sql).await?);
        if name.ends_with("_per_day") {
            // Every day of the period, quiet ones at zero: the axis is the whole period.
            p = every_day(p, since, until);
        }
        charts.insert(name.to_owned(), p);
    }
    let controls = controls::controls(&sections, events_in_period, &opts.expected_keys);
    let findings = controls::findings(&controls, &sections);
    Ok(Report {
        controls,
        findings,
        changes: None,
        lake: lake.to_owned(),
        lake_version,
        since: since_s,
        until: until_s,
        generated_at: format_micros(now),
        events_in_period,
        sections,
        charts,
    })
}

/// The log-file integrity of the period: per account and region, the digests expected,
/// present and proven and the logs listed and verified; then every finding, each naming
/// the object and the digest that testifies. Read from the lake's `digests` and `objects`
/// tables (`kms-audit verify --lake` over the period).
async fn integrity_sections(
    ctx: &SessionContext,
    since: i64,
    until: i64,
    keys: Option<&crate::integrity::PublicKeys>,
    as_of: Option<(i64, i64)>,
) -> Result<Vec<Section>, ReportError> {
    use crate::integrity::{PublicKeys, Window, lake::evidence_as_of, verify};
    if !ctx
        .table_exist(crate::lake::table::DIGESTS_TABLE)
        .unwrap_or(false)
    {
        return Ok(Vec::new());
    }
    let started = std::time::Instant::now();
    let window = Window {
        since: Some(since),
        until: Some(until - 1),
    };
    let ev = evidence_as_of(ctx, window, as_of).await?;
    let none = PublicKeys::default();
    let v = verify(&ev, keys.unwrap_or(&none), window);
    // Hourly digests expected: from each chain's first to its last digest in the period.
    let mut spans: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for d in ev.digests.values() {
        if let (Some(n), Ok(b)) = (&d.name, &d.body)
            && b.end >= since
            && b.start < until
        {
            let e = spans
                .entry((n.account.clone(), n.region.clone()))
                .or_insert((b.start, b.end));
            *e = (e.0.min(b.start), e.1.max(b.end));
        }
    }
    let mut rows = Vec::new();
    for ((account, region), t) in &v.by_chain {
        if account.is_empty() {
            continue;
        }
        let expected = spans
            .get(&(account.clone(), region.clone()))
            .map(|(a, b)| ((b - a) as f64 / 3_600_000_000.0).round() as u64)
            .unwrap_or(0);
        let status = if t.failures > 0 {
            "FAILED".to_owned()
        } else if t.digests == 0 {
            "no digests: log file validation off, or digests not ingested".to_owned()
        } else if !t.signatures_checked && !v.summary.signatures_checked {
            "chain and hashes match; signatures not checked (no public keys)".to_owned()
        } else if t.logs_unverified > 0 {
            format!(
                "verified; {} logs not proven by a valid digest",
                t.logs_unverified
            )
        } else {
            "verified".to_owned()
        };
        let mut row = Map::new();
        for (k, val) in [
            ("account_id", Value::from(account.as_str())),
            ("region", Value::from(region.as_str())),
            ("status", Value::from(status)),
            ("failure", Value::from(t.failures > 0)),
            ("digests_expected", Value::from(expected)),
            ("digests_present", Value::from(t.digests)),
            ("digests_missing", Value::from(t.digests_missing)),
            ("digests_valid", Value::from(t.digests_valid)),
            ("digests_failed", Value::from(t.digests_failed)),
            ("logs_found", Value::from(t.logs)),
            ("logs_listed", Value::from(t.logs_listed)),
            ("logs_verified", Value::from(t.logs_verified)),
            ("logs_failed", Value::from(t.logs_failed)),
            ("findings", Value::from(t.failures)),
        ] {
            row.insert(k.to_owned(), val);
        }
        rows.push(row);
    }
    let findings: Vec<Map<String, Value>> = v
        .findings
        .iter()
        .map(|f| {
            let mut row = Map::new();
            row.insert("kind".into(), Value::from(f.kind.as_str()));
            row.insert("failure".into(), Value::from(f.kind.is_failure()));
            row.insert("object".into(), Value::from(f.object.as_str()));
            row.insert(
                "digest".into(),
                f.digest.as_deref().map_or(Value::Null, Value::from),
            );
            row.insert("detail".into(), Value::from(f.detail.as_str()));
            row
        })
        .collect();
    let references = References {
        mitre: vec!["T1565.001".into(), "T1070".into()],
        cis: vec!["3.2".into()],
        pci: vec!["10.3.4".into(), "10.5".into()],
        security_hub: vec!["CloudTrail.4".into()],
        ..References::default()
    };
    let keys_note = if v.summary.signatures_checked {
        "Digest signatures are checked with CloudTrail's public keys."
    } else {
        "No public keys were given, so digest signatures are not checked (kms-audit report --public-keys)."
    };
    let seconds = started.elapsed().as_secs_f64();
    let columns =
        |names: &[&str]| -> Vec<String> { names.iter().map(|c| (*c).to_owned()).collect() };
    Ok(vec![
        Section {
            def: SectionDef {
                id: "integrity".into(),
                title: "Log-file integrity".into(),
                description: format!(
                    "Per account and region, CloudTrail's hourly digests of the period (expected from the first to the last, present, proven) and the log files they list, compared with the SHA-256 ingest recorded for each log. {keys_note} Findings are in the next section."
                ),
                references: references.clone(),
                sql: String::new(),
            },
            columns: columns(&[
                "account_id",
                "region",
                "status",
                "failure",
                "digests_expected",
                "digests_present",
                "digests_missing",
                "digests_valid",
                "digests_failed",
                "logs_found",
                "logs_listed",
                "logs_verified",
                "logs_failed",
                "findings",
            ]),
            rows,
            seconds,
            batches: Vec::new(),
        },
        Section {
            def: SectionDef {
                id: "integrity_findings".into(),
                title: "Log-file integrity findings".into(),
                description: "Every log modified, missing or forged, and every digest missing, edited, moved or unprovable, naming the object and the digest that testifies (kms-audit verify --lake gives the same list).".into(),
                references,
                sql: String::new(),
            },
            columns: columns(&["kind", "failure", "object", "digest", "detail"]),
            rows: findings,
            seconds,
            batches: Vec::new(),
        },
    ])
}

/// One point per day from `since` to `until` (exclusive), zero where `points` has none.
/// Periods longer than a year keep the points as they are.
fn every_day(points: Vec<Point>, since: i64, until: i64) -> Vec<Point> {
    let (first, last) = (
        since.div_euclid(DAY_MICROS),
        (until - 1).div_euclid(DAY_MICROS),
    );
    if last < first || last - first > 366 {
        return points;
    }
    let known: BTreeMap<String, i64> = points.into_iter().map(|p| (p.label, p.value)).collect();
    (first..=last)
        .map(|d| {
            let label = crate::time::format_day(d);
            let value = known.get(&label).copied().unwrap_or(0);
            Point { label, value }
        })
        .collect()
}

fn points(batches: &[RecordBatch]) -> Vec<Point> {
    let mut out = Vec::new();
    for b in batches {
        let labels = b.column(0).as_string::<i32>();
        let values = b.column(1).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            out.push(Point {
                label: labels.value(i).to_owned(),
                value: values.value(i),
            });
        }
    }
    out
}

fn section(def: SectionDef, batches: Vec<RecordBatch>) -> Result<Section, ReportError> {
    let columns: Vec<String> = match batches.first() {
        Some(b) => b
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect(),
        None => Vec::new(),
    };
    let mut buf = Vec::new();
    write_batches(&mut buf, &batches, OutputFormat::Json)?;
    let mut rows = Vec::new();
    for line in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line).map_err(|source| ReportError::Row {
            section: def.id.clone(),
            source,
        })?;
        if let Value::Object(m) = v {
            rows.push(m);
        }
    }
    Ok(Section {
        def,
        columns,
        rows,
        seconds: 0.0,
        batches,
    })
}

/// Writes `report.json`, `<section>.csv` for each section and `report.html` into `dir`.
/// Returns the files written.
pub fn write_report(report: &Report, dir: &Path) -> Result<Vec<String>, ReportError> {
    let io = |path: &Path, source| ReportError::Io {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut written = Vec::new();
    let json_path = dir.join("report.json");
    let json = serde_json::to_vec_pretty(report).map_err(|e| io(&json_path, e.into()))?;
    std::fs::write(&json_path, json).map_err(|e| io(&json_path, e))?;
    written.push("report.json".to_owned());
    for s in &report.sections {
        let name = format!("{}.csv", s.def.id);
        let path = dir.join(&name);
        let mut buf = Vec::new();
        if s.batches.is_empty() {
            write_rows_csv(&mut buf, &s.columns, &s.rows);
        } else {
            write_batches(&mut buf, &s.batches, OutputFormat::Csv)?;
        }
        if buf.is_empty() {
            buf.extend_from_slice(s.columns.join(",").as_bytes());
            buf.push(b'\n');
        }
        std::fs::write(&path, buf).map_err(|e| io(&path, e))?;
        written.push(name);
    }
    let html_path = dir.join("report.html");
    std::fs::write(&html_path, render_html(report)).map_err(|e| io(&html_path, e))?;
    written.push("report.html".to_owned());
    Ok(written)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// A cell as text: strings as they are, null empty, the rest as JSON.
pub fn cell_text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn write_rows_csv(out: &mut Vec<u8>, columns: &[String], rows: &[Map<String, Value>]) {
    let header: Vec<String> = columns.iter().map(|c| csv_field(c)).collect();
    out.extend_from_slice(header.join(",").as_bytes());
    out.push(b'\n');
    for r in rows {
        let line: Vec<String> = columns
            .iter()
            .map(|c| csv_field(&cell_text(r.get(c))))
            .collect();
        out.extend_from_slice(line.join(",").as_bytes());
        out.push(b'\n');
    }
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Rows shown per section in the HTML (the CSV and JSON have all of them).
pub const HTML_ROWS: usize = 500;

/// Columns whose truth marks a finding row (highlighted in the HTML).
const FINDING_COLUMNS: &[&str] = &[
    "finding",
    "unused_in_period",
    "lockout_check_bypassed",
    "failure",
];

fn bar_chart(title: &str, points: &[Point], horizontal: bool) -> String {
    let mut svg = String::new();
    if points.iter().all(|p| p.value == 0) {
        let _ = write!(
            svg,
            "<figure><figcaption>{}</figcaption><p class=\"muted\">No data in the period.</p></figure>",
            esc(title)
        );
        return svg;
    }
    let max = points.iter().map(|p| p.value).max().unwrap_or(1).max(1) as f64;
    if horizontal {
        let (w, row) = (720.0, 22.0);
        let h = row * points.len() as f64 + 10.0;
        let _ = write!(
            svg,
            "<figure><figcaption>{}</figcaption><svg role=\"img\" viewBox=\"0 0 {w} {h}\" width=\"100%\" style=\"max-width:760px\" xmlns=\"http://www.w3.org/2000/svg\"><title>{}</title>",
            esc(title),
            esc(title)
        );
        for (i, p) in points.iter().enumerate() {
            let y = 5.0 + i as f64 * row;
            let bw = (p.value as f64 / max) * 340.0;
            // The end of an ARN says the most (the role or user name); the full one is the
            // tooltip.
            let n = p.label.chars().count();
            let label: String = if n > 52 {
                format!("…{}", p.label.chars().skip(n - 51).collect::<String>())
            } else {
                p.label.clone()
            };
            let _ = write!(
                svg,
                "<text x=\"2\" y=\"{}\" class=\"l\"><title>{}</title>{}</text><rect x=\"330\" y=\"{}\" width=\"{bw:.1}\" height=\"{}\" class=\"b\"/><text x=\"{:.1}\" y=\"{}\" class=\"v\">{}</text>",
                y + 14.0,
                esc(&p.label),
                esc(&label),
                y + 2.0,
                row - 6.0,
                334.0 + bw,
                y + 14.0,
                p.value
            );
        }
        svg.push_str("</svg></figure>");
        return svg;
    }
    let (w, h, pad) = (720.0, 200.0, 30.0);
    let n = points.len() as f64;
    let bw = ((w - 2.0 * pad) / n).clamp(1.0, 48.0);
    let _ = write!(
        svg,
        "<figure><figcaption>{}</figcaption><svg role=\"img\" viewBox=\"0 0 {w} {}\" width=\"100%\" style=\"max-width:760px\" xmlns=\"http://www.w3.org/2000/svg\"><title>{}</title>",
        esc(title),
        h + 40.0,
        esc(title)
    );
    let _ = write!(
        svg,
        "<line x1=\"{pad}\" y1=\"{h}\" x2=\"{}\" y2=\"{h}\" class=\"axis\"/><text x=\"{pad}\" y=\"12\" class=\"v\">max {} a day</text><text x=\"{}\" y=\"{}\" class=\"l\" text-anchor=\"end\">day (UTC), {} to {}</text>",
        w - pad,
        max as i64,
        w - pad,
        h + 34.0,
        esc(points.first().map_or("", |p| p.label.as_str())),
        esc(points.last().map_or("", |p| p.label.as_str()))
    );
    let every = (points.len() / 10).max(1);
    for (i, p) in points.iter().enumerate() {
        let bh = (p.value as f64 / max) * (h - 20.0);
        let x = pad + i as f64 * bw;
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" class=\"b\"><title>{}: {}</title></rect>",
            h - bh,
            (bw - 1.0).max(0.5),
            esc(&p.label),
            p.value
        );
        if i % every == 0 {
            let _ = write!(
                svg,
                "<text x=\"{x:.1}\" y=\"{}\" class=\"l\">{}</text>",
                h + 14.0,
                esc(p.label.get(5..).unwrap_or(&p.label))
            );
        }
    }
    svg.push_str("</svg></figure>");
    svg
}

/// "3 accounts, 2 regions, 24 keys" from the key inventory and coverage sections.
fn scope_text(r: &Report) -> String {
    let mut accounts = std::collections::BTreeSet::new();
    let mut regions = std::collections::BTreeSet::new();
    let mut keys = 0;
    for s in &r.sections {
        for row in &s.rows {
            if let Some(a) = row.get("account_id").and_then(Value::as_str) {
                accounts.insert(a.to_owned());
            }
            for k in ["aws_region", "region"] {
                if let Some(x) = row.get(k).and_then(Value::as_str) {
                    regions.insert(x.to_owned());
                }
            }
        }
        if s.def.id == "key_inventory" {
            keys = s.rows.len();
        }
    }
    format!(
        "{} account(s) ({}), {} region(s) ({}), {keys} key(s)",
        accounts.len(),
        accounts.into_iter().collect::<Vec<_>>().join(", "),
        regions.len(),
        regions.into_iter().collect::<Vec<_>>().join(", ")
    )
}

/// Key ARN → its first alias, from the key inventory.
fn key_aliases(r: &Report) -> BTreeMap<String, String> {
    r.sections
        .iter()
        .filter(|s| s.def.id == "key_inventory")
        .flat_map(|s| s.rows.iter())
        .filter_map(|row| {
            let arn = row.get("key_arn")?.as_str()?;
            let alias = row.get("aliases")?.as_array()?.first()?.as_str()?;
            Some((arn.to_owned(), alias.to_owned()))
        })
        .collect()
}

/// A key named by alias and short id (the ARN in the tooltip); anything else as it is.
fn short_subject(subject: &str, aliases: &BTreeMap<String, String>) -> String {
    match subject.split_once(":key/") {
        Some((_, id)) => {
            let short = id.get(..8).unwrap_or(id);
            let name = match aliases.get(subject) {
                Some(a) => format!("{a} ({short}…)"),
                None => format!("key {short}…"),
            };
            format!("<abbr title=\"{}\">{}</abbr>", esc(subject), esc(&name))
        }
        None => esc(subject),
    }
}

fn render_changes(h: &mut String, r: &Report, aliases: &BTreeMap<String, String>) {
    h.push_str("<h2 id=\"changes\">Changes since the previous report</h2>");
    let Some(c) = &r.changes else {
        h.push_str("<p class=\"muted\">No previous report to compare with (kms-audit report --compare PREV/report.json, or an earlier report beside this one).</p>");
        return;
    };
    let _ = write!(
        h,
        "<p>Compared with the report of {} to {} (<code>{}</code>, lake version {}).</p><ul>",
        esc(c.previous.since.as_deref().unwrap_or("?")),
        esc(c.previous.until.as_deref().unwrap_or("?")),
        esc(&c.previous.location),
        c.previous
            .lake_version
            .map_or_else(|| "?".to_owned(), |v| v.to_string())
    );
    let list = |keys: &[String]| {
        keys.iter()
            .map(|k| short_subject(k, aliases))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = write!(
        h,
        "<li>Controls that changed status: {}</li><li>New findings: {}</li><li>Findings no longer present: {}</li><li>New keys: {}</li><li>Keys gone: {}</li></ul>",
        if c.controls_changed.is_empty() {
            "none".to_owned()
        } else {
            c.controls_changed
                .iter()
                .map(|x| {
                    format!(
                        "{} ({} → <b>{}</b>)",
                        esc(&x.title),
                        esc(x
                            .before
                            .as_deref()
                            .unwrap_or("absent")
                            .replace('_', " ")
                            .as_str()),
                        x.after.label()
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        },
        c.new_findings.len(),
        c.findings_no_longer_present,
        if c.new_keys.is_empty() {
            "none".to_owned()
        } else {
            list(&c.new_keys)
        },
        if c.keys_gone.is_empty() {
            "none".to_owned()
        } else {
            list(&c.keys_gone)
        },
    );
    if !c.new_findings.is_empty() {
        h.push_str("<table><thead><tr><th class=\"nw\">Severity</th><th>New finding</th><th>Evidence</th></tr></thead><tbody>");
        for f in c.new_findings.iter().take(HTML_ROWS) {
            let _ = write!(
                h,
                "<tr class=\"sev-{}\"><td class=\"nw\">{}</td><td>{}</td><td><code>{}</code></td></tr>",
                f.severity.as_str(),
                f.severity.as_str(),
                esc(&f.summary),
                first_event_ids(&f.event_ids)
            );
        }
        h.push_str("</tbody></table>");
    }
}

/// The first three event ids of a finding, escaped, for a table cell.
fn first_event_ids(ids: &[String]) -> String {
    esc(&ids.iter().take(3).cloned().collect::<Vec<_>>().join(" "))
}

/// Rows of an evidence section shown in the HTML (finding rows first); the CSV has all.
pub const SECTION_ROWS: usize = 100;

/// A column name as a heading: `state_at_period_end` → "State at period end".
fn column_label(c: &str) -> String {
    let known = [
        ("key_arn", "Key"),
        ("event_id", "Event id"),
        ("event_ids", "Event ids"),
        ("sample_event_ids", "Sample event ids"),
        ("source_ip", "Source address"),
        ("source_ips", "Source addresses"),
        ("aws_region", "Region"),
        ("account_id", "Account"),
        ("mfa_authenticated", "MFA"),
        ("principal_type", "Principal type"),
        ("unused_in_period", "Unused in the period"),
        ("state_at_period_end", "State at the period's end"),
    ];
    if let Some((_, l)) = known.iter().find(|(k, _)| *k == c) {
        return (*l).to_owned();
    }
    let words: Vec<String> = c
        .split('_')
        .map(|w| match w {
            "arn" => "ARN".to_owned(),
            "ip" | "ips" => w.to_uppercase(),
            "mfa" | "kms" | "sha256" => w.to_uppercase(),
            "id" => "id".to_owned(),
            _ => w.to_owned(),
        })
        .collect();
    let mut label = words.join(" ");
    if let Some(first) = label.get(..1) {
        label = first.to_uppercase() + &label[1..];
    }
    label
}

/// A cell for people: times without the `T`, key ARNs by alias and short id (the full
/// value on hover), lists comma-separated.
fn cell_html(v: Option<&Value>, aliases: &BTreeMap<String, String>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => text_html(s, aliases),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| cell_html(Some(x), aliases))
            .collect::<Vec<_>>()
            .join(", "),
        Some(other) => esc(&cell_text(Some(other))),
    }
}

fn text_html(s: &str, aliases: &BTreeMap<String, String>) -> String {
    if s.starts_with("arn:") && s.contains(":kms:") && s.contains(":key/") {
        return short_subject(s, aliases);
    }
    let b = s.as_bytes();
    if (19..=32).contains(&s.len())
        && b[4] == b'-'
        && b[10] == b'T'
        && crate::time::parse_event_time(s).is_some()
    {
        let shown = format!("{} {}", &s[..10], &s[11..19]);
        return format!("<time datetime=\"{}\">{} UTC</time>", esc(s), esc(&shown));
    }
    esc(s)
}

/// [`render_html`], for tests outside the crate.
#[doc(hidden)]
pub fn render_html_for_tests(r: &Report) -> String {
    render_html(r)
}

/// The self-contained HTML rendering.
pub(crate) fn render_html(r: &Report) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>KMS audit report {} to {}</title>\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<style>\
body{{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;color:#1d2430}}\
h1{{font-size:1.6rem;margin-bottom:.2rem}}h2{{font-size:1.2rem;margin-top:2.2rem;border-bottom:2px solid #d8dee8;padding-bottom:.2rem}}\
.muted{{color:#5b6576}}.refs{{font-size:.85rem;color:#5b6576}}\
table{{border-collapse:collapse;width:100%;font-size:12px;margin:.6rem 0}}th,td{{border:1px solid #d8dee8;padding:3px 6px;text-align:left;vertical-align:top;word-break:break-word}}\
th{{background:#eef2f7}}tr.finding td{{background:#fff1f0}}code{{font-size:11px}}\
figure{{margin:1rem 0}}figcaption{{font-weight:600;margin-bottom:.3rem}}\
svg .b{{fill:#3b6fb6}}svg .l{{font-size:10px;fill:#5b6576}}svg .v{{font-size:10px;fill:#1d2430}}svg .axis{{stroke:#5b6576}}\
.summary td{{border:none;padding:2px 12px 2px 0}}nav a{{margin-right:.8rem}}\
.nw{{white-space:nowrap;word-break:normal}}\
@media print{{h2.evidence{{break-before:page}}}}\
@page{{margin:14mm 12mm 16mm;@bottom-left{{content:\"KMS audit report, {} to {}\";font:9px system-ui,sans-serif;color:#5b6576}}@bottom-right{{content:\"page \" counter(page) \" of \" counter(pages);font:9px system-ui,sans-serif;color:#5b6576}}}}\
tr.status-fail td{{background:#fde2e0}}tr.status-pass td{{background:#e6f4ea}}tr.status-not-evaluated td{{background:#f3f4f6}}\
tr.sev-critical td:first-child{{color:#a50e0e;font-weight:700}}tr.sev-high td:first-child{{color:#c5221f;font-weight:600}}\
h2{{break-before:auto}}section{{break-before:page}}\
@media print{{body{{margin:0;max-width:none}}h2{{break-after:avoid}}tr{{break-inside:avoid}}nav{{display:none}}}}\
</style></head><body>",
        esc(&r.since),
        esc(&r.until),
        // In a CSS string: times hold no quote or backslash.
        r.since.replace(['"', '\\'], ""),
        r.until.replace(['"', '\\'], "")
    );
    let _ = write!(
        h,
        "<h1>KMS audit report</h1><p class=\"muted\">From the CloudTrail record of AWS KMS calls. Every finding cites the events (event ids) or objects that prove it.</p>\
<table class=\"summary\"><tr><td>Period</td><td>{} to {} (end exclusive)</td></tr>\
<tr><td>Scope</td><td>{}</td></tr><tr><td>KMS events in the period</td><td>{}</td></tr>\
<tr><td>Lake</td><td><code>{}</code> version {} (<code>kms-audit report --as-of {}</code> reproduces this report)</td></tr><tr><td>Generated</td><td>{}</td></tr></table>",
        esc(&r.since),
        esc(&r.until),
        esc(&scope_text(r)),
        r.events_in_period,
        esc(&r.lake),
        r.lake_version
            .map_or_else(|| "(unknown)".to_owned(), |v| v.to_string()),
        r.lake_version
            .map_or_else(|| "VERSION".to_owned(), |v| v.to_string()),
        esc(&r.generated_at)
    );
    let aliases = key_aliases(r);
    let failed = r
        .controls
        .iter()
        .filter(|c| c.status == controls::Status::Fail)
        .count();
    let _ = write!(
        h,
        "<h2 id=\"controls\">Controls</h2><p>{}</p><table class=\"controls\"><thead><tr><th>Control</th><th>References</th><th class=\"nw\">Status</th><th class=\"nw\">Findings</th><th>Basis</th></tr></thead><tbody>",
        if r.controls.is_empty() {
            "No control evaluated.".to_owned()
        } else if failed == 0 {
            format!("No control failed ({} controls).", r.controls.len())
        } else {
            format!(
                "{failed} of {} controls failed: their findings follow, most severe first.",
                r.controls.len()
            )
        }
    );
    for c in &r.controls {
        let status = c.status.label();
        let _ = write!(
            h,
            "<tr class=\"status-{}\"><td>{}</td><td class=\"refs\">{}</td><td class=\"nw\"><b>{}</b></td><td class=\"nw\">{}</td><td>{}</td></tr>",
            status.replace(' ', "-"),
            esc(&c.title),
            esc(&c.references.labels().join("; ")),
            esc(status),
            if c.findings.is_empty() {
                "0".to_owned()
            } else {
                format!("<a href=\"#findings\">{}</a>", c.findings.len())
            },
            esc(c.reason.as_deref().unwrap_or(if c.findings.is_empty() {
                ""
            } else {
                "see the findings"
            })),
        );
    }
    h.push_str("</tbody></table>");
    let _ = write!(
        h,
        "<h2 id=\"findings\">Findings by severity</h2><p class=\"muted\">{} finding(s): every alert of the period and every failed control item, most severe first.</p>",
        r.findings.len()
    );
    if !r.findings.is_empty() {
        h.push_str("<table><thead><tr><th class=\"nw\">Severity</th><th>What</th><th>About</th><th>Who</th><th>When</th><th>From</th><th>Evidence</th></tr></thead><tbody>");
        for f in r.findings.iter().take(HTML_ROWS) {
            let evidence = if f.event_ids.is_empty() {
                format!("<a href=\"#{}\">{}</a>", esc(&f.section), esc(&f.section))
            } else {
                format!(
                    "<code>{}</code>{}",
                    first_event_ids(&f.event_ids),
                    if f.event_ids.len() > 3 {
                        format!(" and {} more", f.event_ids.len() - 3)
                    } else {
                        String::new()
                    }
                )
            };
            let _ = write!(
                h,
                "<tr class=\"sev-{}\"><td class=\"nw\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                f.severity.as_str(),
                f.severity.as_str(),
                esc(&f.summary),
                f.subject
                    .as_deref()
                    .map(|s| short_subject(s, &aliases))
                    .unwrap_or_default(),
                esc(f.principal.as_deref().unwrap_or("")),
                esc(f.when.as_deref().unwrap_or("")),
                esc(&f.source_ips.join(", ")),
                evidence
            );
        }
        h.push_str("</tbody></table>");
    }
    render_changes(&mut h, r, &aliases);
    h.push_str("<nav>");
    h.push_str("</nav><h2 id=\"charts\">Activity</h2>");
    let empty = Vec::new();
    h.push_str(&bar_chart(
        "KMS calls per day",
        r.charts.get("calls_per_day").unwrap_or(&empty),
        false,
    ));
    h.push_str(&bar_chart(
        "Denied and failed requests per day",
        r.charts.get("denied_per_day").unwrap_or(&empty),
        false,
    ));
    h.push_str(&bar_chart(
        "Top principals by KMS calls",
        r.charts.get("top_principals").unwrap_or(&empty),
        true,
    ));
    for s in &r.sections {
        let _ = write!(
            h,
            "<h2 id=\"{}\" class=\"evidence\">{}</h2><p>{}</p><p class=\"refs\">References: {}</p>",
            esc(&s.def.id),
            esc(&s.def.title),
            esc(&s.def.description),
            esc(&s.def.references.labels().join("; "))
        );
        if s.rows.is_empty() {
            h.push_str("<p class=\"muted\">Nothing in the period.</p>");
            continue;
        }
        // Findings first, then the rest, up to SECTION_ROWS: the CSV has them all.
        let is_finding = |row: &Map<String, Value>| {
            FINDING_COLUMNS
                .iter()
                .any(|c| row.get(*c) == Some(&Value::Bool(true)))
                || row.get("effect").and_then(Value::as_str) == Some("destructive")
                || row.get("policy_findings").is_some_and(|v| !v.is_null())
                || row
                    .get("external_accounts")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty())
                || row.get("status").and_then(Value::as_str) == Some("FAILED")
        };
        let findings: Vec<&Map<String, Value>> = s
            .rows
            .iter()
            .filter(|r| is_finding(r))
            .take(HTML_ROWS)
            .collect();
        let rest = SECTION_ROWS.saturating_sub(findings.len());
        let shown: Vec<(&Map<String, Value>, bool)> = findings
            .iter()
            .map(|r| (*r, true))
            .chain(
                s.rows
                    .iter()
                    .filter(|r| !is_finding(r))
                    .take(rest)
                    .map(|r| (r, false)),
            )
            .collect();
        let _ = write!(
            h,
            "<p class=\"muted\">{} row(s){}{}; all in <code>{}.csv</code>.</p><table><thead><tr>",
            s.rows.len(),
            if findings.is_empty() {
                String::new()
            } else {
                format!(", {} marked as findings", findings.len())
            },
            if shown.len() < s.rows.len() {
                format!(", {} shown (findings first)", shown.len())
            } else {
                String::new()
            },
            esc(&s.def.id)
        );
        for c in &s.columns {
            let _ = write!(h, "<th title=\"{}\">{}</th>", esc(c), esc(&column_label(c)));
        }
        h.push_str("</tr></thead><tbody>");
        for (row, finding) in shown {
            h.push_str(if finding {
                "<tr class=\"finding\">"
            } else {
                "<tr>"
            });
            for c in &s.columns {
                let _ = write!(h, "<td>{}</td>", cell_html(row.get(c), &aliases));
            }
            h.push_str("</tr>");
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("<p class=\"muted\">kms-audit ");
    h.push_str(env!("CARGO_PKG_VERSION"));
    h.push_str("</p></body></html>\n");
    h
}
