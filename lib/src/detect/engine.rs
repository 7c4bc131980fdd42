//! Running rules: the window a run judges, the relations rules read, alerts and their
//! deduplication state.

use std::collections::{BTreeMap, HashSet};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use super::{DetectError, Rule, Severity};
use crate::lake::LakeStore;
use crate::sql::run_sql;
use crate::time::{DAY_MICROS, format_micros, parse_event_time, parse_span};

/// At most this many event ids are listed in one alert.
pub const MAX_EVENT_IDS: usize = 1000;

/// An alert (the JSON contract of `kms-audit detect --format json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub rule_id: String,
    pub title: String,
    pub severity: Severity,
    pub first_seen: String,
    pub last_seen: String,
    pub count: u64,
    pub principal: Option<String>,
    pub key_arn: Option<String>,
    pub account_id: Option<String>,
    pub aws_region: Option<String>,
    pub source_ips: Vec<String>,
    pub event_ids: Vec<String>,
    pub summary: String,
    pub dedup_key: String,
}

/// What a run covers.
#[derive(Debug, Clone, Default)]
pub struct DetectOptions {
    /// Window start; None: the lake's first event + 24 h (or the state's high-water mark).
    pub since: Option<i64>,
    /// Window end (exclusive); None: after the lake's last event.
    pub until: Option<i64>,
    /// Accounts trusted besides those whose logs are in the lake.
    pub trusted_accounts: Vec<String>,
    /// The `kms_events` version the session reads, and what arrived in it since the
    /// state's version ([`arrivals`]): a scheduled run judges what arrived, whatever its
    /// event times.
    pub lake_version: Option<i64>,
    pub arrived: Option<Arrived>,
}

/// What the commits since the last judged version added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrived {
    /// No new rows (none, or only compaction's rewrites).
    Nothing,
    /// New rows with event times in `[since, until)`.
    Span(i64, i64),
    /// New rows whose times the log does not say (files without statistics).
    Unknown,
}

/// The version `ctx` reads (its `lake_version` view) and what arrived since the state's
/// version. Without a state version (a new state, or one written before versions were
/// kept) the arrivals are unknown and the run falls back to event times.
pub async fn arrivals(
    ctx: &SessionContext,
    loc: &crate::lake::table::Location,
    state: Option<&DetectState>,
) -> Result<(Option<i64>, Option<Arrived>), DetectError> {
    let b = run_sql(ctx, "SELECT version FROM lake_version").await?;
    let Some(current) = b
        .first()
        .filter(|b| b.num_rows() > 0)
        .map(|b| b.column(0).as_primitive::<Int64Type>().value(0))
    else {
        return Ok((None, None));
    };
    let Some(judged) = state.and_then(|s| s.version) else {
        return Ok((Some(current), None));
    };
    if judged >= current {
        return Ok((Some(current), Some(Arrived::Nothing)));
    }
    let tables = crate::lake::table::Tables::new(loc.clone());
    let a = tables
        .arrivals(judged, current)
        .await
        .map_err(|e| DetectError::Io {
            path: loc.url().to_string(),
            source: std::io::Error::other(e),
        })?;
    let arrived = match (a.without_stats, a.time_range) {
        (n, _) if n > 0 => Arrived::Unknown,
        (_, Some((lo, hi))) => Arrived::Span(lo, hi + 1),
        (_, None) => Arrived::Nothing,
    };
    Ok((Some(current), Some(arrived)))
}

/// How far back baselines learn (`history_events` starts this long before the window).
pub const HISTORY_DAYS: i64 = 30;

/// Persistent detection state: where the last run stopped and the incidents it reported.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DetectState {
    /// The last `kms_events` version judged: the next scheduled run judges the rows
    /// committed after it (late objects included; a future-dated record moves nothing).
    #[serde(default)]
    pub version: Option<i64>,
    /// End of the last run's window (microseconds); used only by a state without a
    /// version.
    pub high_water_mark: Option<i64>,
    /// dedup_key → last_seen (microseconds) of the incident as last reported.
    pub incidents: BTreeMap<String, i64>,
    /// The newest `ingested_at` of the `digests` rows the last integrity check judged:
    /// the next one judges the digests recorded after it.
    #[serde(default)]
    pub digests_ingested_at: Option<i64>,
}

/// Where a lake keeps its detection state (`/`-separated, inside the lake).
pub const STATE_FILE: &str = "state/detections.json";

impl DetectState {
    /// Loads the state of a lake (empty when the lake has none yet).
    pub fn load(lake: &dyn LakeStore) -> Result<DetectState, DetectError> {
        let io = |source| DetectError::Io {
            path: format!("{}/{STATE_FILE}", lake.uri()),
            source,
        };
        match lake
            .read(STATE_FILE)
            .map_err(|e| io(std::io::Error::other(e)))?
        {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| io(e.into())),
            None => Ok(DetectState::default()),
        }
    }

    /// Saves the state atomically (a staged file, renamed or uploaded whole).
    pub fn save(&self, lake: &dyn LakeStore) -> Result<(), DetectError> {
        let io = |source| DetectError::Io {
            path: format!("{}/{STATE_FILE}", lake.uri()),
            source,
        };
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| io(e.into()))?;
        lake.write(STATE_FILE, &bytes)
            .map_err(|e| io(std::io::Error::other(e)))
    }
}

/// Late-arriving events: a scheduled run starts this long before the last high-water mark
/// (deduplication keeps the overlap from re-alerting).
pub const LATE_ARRIVAL: i64 = 2 * 3_600_000_000;

/// The window a run judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub since: i64,
    pub until: i64,
    /// Where baseline rules (those that read `history_events`) start judging: later than
    /// `since` on a lake's first run, whose first 24 hours they only learn from. Signature
    /// rules judge from `since`.
    pub baselines_since: i64,
}

impl Window {
    /// `[since, until)` for every rule.
    pub fn new(since: i64, until: i64) -> Window {
        Window {
            since,
            until,
            baselines_since: since,
        }
    }
}

impl Rule {
    /// Whether the rule judges against a learned baseline (it reads `history_events`).
    pub fn is_baseline(&self) -> bool {
        self.sql.contains("history_events")
    }
}

async fn lake_bounds(ctx: &SessionContext) -> Result<Option<(i64, i64)>, DetectError> {
    let b = run_sql(
        ctx,
        "SELECT CAST(min(event_time) AS BIGINT), CAST(max(event_time) AS BIGINT) FROM kms_events",
    )
    .await?;
    let Some(batch) = b.first() else {
        return Ok(None);
    };
    let lo = batch.column(0).as_primitive::<Int64Type>();
    let hi = batch.column(1).as_primitive::<Int64Type>();
    if lo.is_null(0) || hi.is_null(0) {
        return Ok(None);
    }
    // CAST(timestamp AS BIGINT) gives the stored unit: microseconds.
    Ok(Some((lo.value(0), hi.value(0))))
}

/// Resolves the window of a run from the options, the lake and the state.
pub async fn resolve_window(
    ctx: &SessionContext,
    opts: &DetectOptions,
    state: Option<&DetectState>,
) -> Result<Option<Window>, DetectError> {
    let Some((first, last)) = lake_bounds(ctx).await? else {
        return Ok(None);
    };
    // Signature rules judge from the lake's first event; baseline rules learn from its
    // first 24 hours before they judge anything.
    let learned = first + DAY_MICROS;
    let mut until = opts.until.unwrap_or(last + 1);
    let hwm = state.and_then(|s| s.high_water_mark);
    let (since, baselines_since) = match (opts.since, opts.arrived, hwm) {
        (Some(since), _, _) => (since, since),
        (None, Some(Arrived::Nothing), _) if opts.until.is_none() => return Ok(None),
        (None, Some(Arrived::Span(lo, hi)), _) => {
            until = opts.until.unwrap_or(hi);
            (lo, lo.max(learned))
        }
        (None, _, Some(hwm)) => (hwm - LATE_ARRIVAL, (hwm - LATE_ARRIVAL).max(learned)),
        (None, _, None) => (first, learned),
    };
    Ok((since < until).then_some(Window {
        since,
        until,
        baselines_since,
    }))
}

/// Registers `window_events`, `history_events`, `trusted_accounts`, `trusted_orgs` and
/// `known_vpc_endpoints` for a window.
pub async fn register_window(
    ctx: &SessionContext,
    window: Window,
    trusted: &[String],
) -> Result<(), DetectError> {
    default_lists(ctx)?;
    let until_day = crate::time::format_day((window.until - 1).div_euclid(DAY_MICROS));
    let history_start = window.since - HISTORY_DAYS * DAY_MICROS;
    let history_day = crate::time::format_day(history_start.div_euclid(DAY_MICROS));
    let has = |t: &str| ctx.table_exist(t).unwrap_or(false);
    // CloudTrail's own events, and what they say about the trail: its buckets (also from
    // the digests, which name the bucket they were written to) and the keys that encrypt it
    // (also from `configured_trail_keys`, see [`set_trail_keys`]).
    let mut buckets = vec![
        "SELECT s3_bucket AS bucket FROM trail_events WHERE event_name IN ('CreateTrail', 'UpdateTrail') AND s3_bucket IS NOT NULL",
    ];
    if has(crate::lake::table::DIGESTS_TABLE) {
        buckets
            .push("SELECT digest_s3_bucket FROM digests_files WHERE digest_s3_bucket IS NOT NULL");
    }
    let keys = [
        "SELECT kms_key_id AS key FROM trail_events WHERE event_name IN ('CreateTrail', 'UpdateTrail') AND kms_key_id IS NOT NULL AND error_code IS NULL",
        "SELECT key FROM configured_trail_keys",
    ];
    let trail_views: Vec<String> = if has(crate::ingest::trail::TRAIL_TABLE) {
        vec![
            "DROP VIEW IF EXISTS window_trail_events".to_owned(),
            "DROP VIEW IF EXISTS trail_buckets".to_owned(),
            "DROP VIEW IF EXISTS trail_keys".to_owned(),
            span_view(
                "window_trail_events",
                "trail_events",
                window.since,
                window.until,
            ),
            format!(
                "CREATE VIEW trail_buckets AS SELECT DISTINCT bucket FROM ({})",
                buckets.join(" UNION ALL ")
            ),
            format!(
                "CREATE VIEW trail_keys AS SELECT DISTINCT key FROM ({})",
                keys.join(" UNION ALL ")
            ),
        ]
    } else {
        Vec::new()
    };
    let stmts = [
        "DROP VIEW IF EXISTS window_events".to_owned(),
        "DROP VIEW IF EXISTS history_events".to_owned(),
        span_view("window_events", "kms_events", window.since, window.until),
        span_view("history_events", "kms_events", history_start, window.since),
    ];
    for s in stmts.into_iter().chain(trail_views) {
        run_sql(ctx, &s).await?;
    }
    let orgs = super::trust::strings(ctx, "SELECT org_id FROM configured_trusted_orgs").await?;
    let t = super::trust::resolve(ctx, &history_day, &until_day, trusted, &orgs).await?;
    super::trust::register(ctx, &t).await?;
    // Endpoints our accounts are seen using: a policy narrowed to any other endpoint is
    // open to whoever owns it.
    for s in [
        "DROP VIEW IF EXISTS known_vpc_endpoints",
        "CREATE VIEW known_vpc_endpoints AS SELECT DISTINCT vpc_endpoint_id FROM ( \
           SELECT vpc_endpoint_id, vpc_endpoint_account_id FROM history_events \
           UNION ALL SELECT vpc_endpoint_id, vpc_endpoint_account_id FROM window_events) \
         WHERE vpc_endpoint_id IS NOT NULL AND (vpc_endpoint_account_id IS NULL \
           OR vpc_endpoint_account_id IN (SELECT account_id FROM trusted_accounts))",
    ] {
        run_sql(ctx, s).await?;
    }
    Ok(())
}

/// `CREATE VIEW name` over the rows of `table` (partitioned by `event_date`) whose
/// `event_time` is in `[lo, hi)`; the day bounds prune whole partitions.
fn span_view(name: &str, table: &str, lo: i64, hi: i64) -> String {
    let day = |t: i64| crate::time::format_day(t.div_euclid(DAY_MICROS));
    format!(
        "CREATE VIEW {name} AS SELECT * FROM {table} \
         WHERE event_date >= DATE '{}' AND event_date <= DATE '{}' \
           AND event_time >= arrow_cast({lo}, 'Timestamp(Microsecond, Some(\"UTC\"))') \
           AND event_time < arrow_cast({hi}, 'Timestamp(Microsecond, Some(\"UTC\"))')",
        day(lo),
        day(hi - 1)
    )
}

/// Organizations trusted besides those of organization trails whose logs are in the lake
/// (`--trusted-orgs`): a key policy narrowed to another organization is external.
pub fn set_trusted_orgs(ctx: &SessionContext, orgs: &[String]) -> Result<(), DetectError> {
    set_list(ctx, "configured_trusted_orgs", "org_id", orgs)
}

/// Keys known to encrypt the trail's logs (the template's `TrailKmsKeyArn`,
/// `--trail-keys`), besides those its CreateTrail/UpdateTrail events name: disabling or
/// deleting one is critical (`kms_trail_key_disabled`). They are critical keys too.
pub fn set_trail_keys(ctx: &SessionContext, keys: &[String]) -> Result<(), DetectError> {
    set_list(ctx, "configured_trail_keys", "key", keys)
}

/// Keys whose alerts are raised one severity level (the trail's key, the lake's key,
/// `--critical-keys`): any rule that touches them.
pub fn set_critical_keys(ctx: &SessionContext, keys: &[String]) -> Result<(), DetectError> {
    set_list(ctx, "configured_critical_keys", "key", keys)
}

/// Tag keys that key policies or IAM use for access (ABAC), besides those the key
/// policies in the lake read (`aws:ResourceTag/<key>`): changing them is alerted.
pub fn set_abac_tag_keys(ctx: &SessionContext, keys: &[String]) -> Result<(), DetectError> {
    set_list(ctx, "configured_abac_tag_keys", "tag_key", keys)
}

/// Registers (or replaces) a one-column view of configured values.
fn set_list(
    ctx: &SessionContext,
    name: &str,
    column: &str,
    values: &[String],
) -> Result<(), DetectError> {
    let values: Vec<String> = values
        .iter()
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .collect();
    let sql = super::trust::values_view(column, &values);
    let setup = |e: datafusion::error::DataFusionError| DetectError::Setup(e.into());
    let plan = futures::executor::block_on(ctx.state().create_logical_plan(&sql)).map_err(setup)?;
    let _ = ctx.deregister_table(name);
    ctx.register_table(
        name,
        std::sync::Arc::new(datafusion::datasource::ViewTable::new(plan, Some(sql))),
    )
    .map_err(setup)?;
    Ok(())
}

/// The configured lists a session has not set are empty.
fn default_lists(ctx: &SessionContext) -> Result<(), DetectError> {
    for (name, column) in [
        ("configured_trail_keys", "key"),
        ("configured_critical_keys", "key"),
        ("configured_abac_tag_keys", "tag_key"),
        ("configured_trusted_orgs", "org_id"),
    ] {
        if !ctx.table_exist(name).unwrap_or(false) {
            set_list(ctx, name, column, &[])?;
        }
    }
    Ok(())
}

/// Raises by one level the severity of alerts on a critical key: a configured one, or one
/// that encrypts the trail.
async fn raise_critical(ctx: &SessionContext, alerts: &mut [Alert]) -> Result<(), DetectError> {
    let mut sql =
        "SELECT key FROM configured_critical_keys UNION SELECT key FROM configured_trail_keys"
            .to_owned();
    if ctx.table_exist("trail_keys").unwrap_or(false) {
        sql.push_str(" UNION SELECT key FROM trail_keys");
    }
    let keys = super::trust::strings(ctx, &sql).await?;
    if keys.is_empty() {
        return Ok(());
    }
    for a in alerts.iter_mut() {
        let Some(arn) = a.key_arn.as_deref() else {
            continue;
        };
        if keys
            .iter()
            .any(|k| k == arn || arn.ends_with(&format!("/{k}")))
        {
            a.severity = match a.severity {
                Severity::Info => Severity::Low,
                Severity::Low => Severity::Medium,
                Severity::Medium => Severity::High,
                Severity::High | Severity::Critical => Severity::Critical,
            };
            if !a.summary.ends_with(" (a critical key)") {
                a.summary.push_str(" (a critical key)");
            }
        }
    }
    Ok(())
}

/// Runs the rules over a window; returns the alerts (before state-based suppression),
/// sorted by severity then time.
pub async fn run_rules(
    ctx: &SessionContext,
    rules: &[Rule],
    window: Window,
    trusted: &[String],
) -> Result<Vec<Alert>, DetectError> {
    let (baseline, signature): (Vec<&Rule>, Vec<&Rule>) = if window.baselines_since == window.since
    {
        (Vec::new(), rules.iter().collect())
    } else {
        rules.iter().partition(|r| r.is_baseline())
    };
    let baseline_span = Window::new(window.baselines_since, window.until);
    // Rules that judge the same span share one registration of the views.
    default_lists(ctx)?;
    let mut alerts = Vec::new();
    for (span, group) in [(window, signature), (baseline_span, baseline)] {
        if group.is_empty() || span.since >= span.until {
            continue;
        }
        register_window(ctx, span, trusted).await?;
        for rule in group {
            alerts.extend(run_rule(ctx, rule).await?);
        }
    }
    raise_critical(ctx, &mut alerts).await?;
    sort_alerts(&mut alerts);
    Ok(alerts)
}

/// Most severe first, then by first seen and rule.
pub fn sort_alerts(alerts: &mut [Alert]) {
    alerts.sort_by(|a, b| {
        (a.severity, &a.first_seen, &a.rule_id).cmp(&(b.severity, &b.first_seen, &b.rule_id))
    });
}

async fn run_rule(ctx: &SessionContext, rule: &Rule) -> Result<Vec<Alert>, DetectError> {
    let id = &rule.meta.id;
    let body = rule.sql.trim().trim_end_matches(';');
    // Read-only: a rule file cannot redefine the views the rules after it read.
    let df = ctx
        .sql_with_options(body, crate::sql::read_only())
        .await
        .map_err(|e| DetectError::Query {
            rule: id.clone(),
            source: e.into(),
        })?;
    let has = |name: &str| df.schema().fields().iter().any(|f| f.name() == name);
    for required in [
        "principal",
        "key_arn",
        "account_id",
        "aws_region",
        "first_seen",
        "last_seen",
        "count",
        "source_ips",
        "event_ids",
        "summary",
    ] {
        if !has(required) {
            return Err(DetectError::Rule {
                rule: id.clone(),
                reason: format!("the query returns no column {required:?}"),
            });
        }
    }
    let severity_col = if has("severity") {
        "CAST(severity AS VARCHAR)"
    } else {
        "CAST(NULL AS VARCHAR)"
    };
    let dedup_col = if has("dedup_on") {
        "CAST(dedup_on AS VARCHAR)"
    } else {
        "CAST(NULL AS VARCHAR)"
    };
    let wrapped = format!(
        "SELECT CAST(principal AS VARCHAR) AS c0, CAST(key_arn AS VARCHAR) AS c1, \
                CAST(account_id AS VARCHAR) AS c2, CAST(aws_region AS VARCHAR) AS c3, \
                arrow_cast(first_seen, 'Timestamp(Microsecond, Some(\"UTC\"))') AS c4, \
                arrow_cast(last_seen, 'Timestamp(Microsecond, Some(\"UTC\"))') AS c5, \
                CAST(count AS BIGINT) AS c6, \
                arrow_cast(source_ips, 'List(Utf8)') AS c7, arrow_cast(event_ids, 'List(Utf8)') AS c8, \
                CAST(summary AS VARCHAR) AS c9, {severity_col} AS c10, {dedup_col} AS c11 \
         FROM ({body})"
    );
    let batches = run_sql(ctx, &wrapped)
        .await
        .map_err(|e| DetectError::Query {
            rule: id.clone(),
            source: e,
        })?;
    let mut out = Vec::new();
    for b in &batches {
        let s = |i: usize| b.column(i).as_string::<i32>();
        let ts = |i: usize| b.column(i).as_primitive::<TimestampMicrosecondType>();
        let list = |i: usize| b.column(i).as_list::<i32>();
        for row in 0..b.num_rows() {
            let opt = |i: usize| (!s(i).is_null(row)).then(|| s(i).value(row).to_owned());
            let strings = |i: usize| -> Vec<String> {
                if list(i).is_null(row) {
                    return Vec::new();
                }
                let v = list(i).value(row);
                let v = v.as_string::<i32>();
                let mut items: Vec<String> = v.iter().flatten().map(str::to_owned).collect();
                items.sort();
                items.dedup();
                items
            };
            let mut event_ids = strings(8);
            event_ids.truncate(MAX_EVENT_IDS);
            let principal = opt(0);
            let key_arn = opt(1);
            let account_id = opt(2);
            let dedup_on = opt(11);
            let severity = opt(10)
                .and_then(|v| Severity::parse(&v))
                .unwrap_or(rule.meta.severity);
            let first = if ts(4).is_null(row) {
                0
            } else {
                ts(4).value(row)
            };
            let last = if ts(5).is_null(row) {
                first
            } else {
                ts(5).value(row)
            };
            let key_material = format!(
                "{}|{}|{}|{}",
                principal.as_deref().unwrap_or(""),
                key_arn.as_deref().unwrap_or(""),
                account_id.as_deref().unwrap_or(""),
                dedup_on.as_deref().unwrap_or("")
            );
            out.push(Alert {
                rule_id: id.clone(),
                title: rule.meta.title.clone(),
                severity,
                first_seen: format_micros(first),
                last_seen: format_micros(last),
                count: b.column(6).as_primitive::<Int64Type>().value(row).max(0) as u64,
                principal,
                key_arn,
                account_id,
                aws_region: opt(3),
                source_ips: strings(7),
                event_ids,
                summary: opt(9).unwrap_or_else(|| rule.meta.title.clone()),
                dedup_key: format!(
                    "{id}:{:016x}",
                    crate::lake::fnv1a64(key_material.as_bytes())
                ),
            });
        }
    }
    Ok(merge_same_incident(out))
}

/// Rows of one rule with the same dedup key are one alert.
fn merge_same_incident(alerts: Vec<Alert>) -> Vec<Alert> {
    let mut by_key: BTreeMap<String, Alert> = BTreeMap::new();
    for a in alerts {
        match by_key.get_mut(&a.dedup_key) {
            None => {
                by_key.insert(a.dedup_key.clone(), a);
            }
            Some(m) => {
                m.first_seen = m.first_seen.clone().min(a.first_seen);
                m.last_seen = m.last_seen.clone().max(a.last_seen);
                m.count += a.count;
                m.severity = m.severity.min(a.severity);
                let ips: HashSet<String> = m.source_ips.drain(..).chain(a.source_ips).collect();
                m.source_ips = ips.into_iter().collect();
                m.source_ips.sort();
                let ids: HashSet<String> = m.event_ids.drain(..).chain(a.event_ids).collect();
                m.event_ids = ids.into_iter().collect();
                m.event_ids.sort();
                m.event_ids.truncate(MAX_EVENT_IDS);
            }
        }
    }
    by_key.into_values().collect()
}

/// Drops alerts for incidents already reported inside their rule's dedup window, records
/// the new ones in the state, and advances the high-water mark.
/// One scheduled-style evaluation: the window from the options (and the state's
/// high-water mark), every rule over it, and, with a state, only the alerts not reported
/// yet (the state is updated in memory; the caller saves it after delivering, so a failed
/// delivery sends the alerts again next time). `None` when there is nothing to judge.
pub async fn evaluate(
    ctx: &SessionContext,
    rules: &[Rule],
    opts: &DetectOptions,
    state: Option<&mut DetectState>,
) -> Result<Option<(Window, Vec<Alert>)>, DetectError> {
    let Some(window) = resolve_window(ctx, opts, state.as_deref()).await? else {
        return Ok(None);
    };
    let alerts = run_rules(ctx, rules, window, &opts.trusted_accounts).await?;
    let alerts = match state {
        Some(st) => {
            let before = (st.version, st.high_water_mark);
            let fresh = suppress_reported(alerts, rules, st, window);
            if opts.since.is_some() || opts.until.is_some() {
                // An explicit period re-judges the past: it records the incidents it
                // reported, not a new position.
                (st.version, st.high_water_mark) = before;
            } else if opts.lake_version.is_some() {
                st.version = opts.lake_version;
            }
            fresh
        }
        None => alerts,
    };
    Ok(Some((window, alerts)))
}

pub fn suppress_reported(
    alerts: Vec<Alert>,
    rules: &[Rule],
    state: &mut DetectState,
    window: Window,
) -> Vec<Alert> {
    let fresh = only_new_incidents(alerts, rules, state);
    state.high_water_mark = Some(
        state
            .high_water_mark
            .unwrap_or(window.until)
            .max(window.until),
    );
    // Forget incidents older than any dedup window can reach.
    let horizon = window.until - 90 * DAY_MICROS;
    state.incidents.retain(|_, last| *last >= horizon);
    fresh
}

/// The alerts whose incidents the state has not reported (within their rule's dedup
/// window; a day for alerts of no rule, such as `log_integrity`), recording them.
pub fn only_new_incidents(
    alerts: Vec<Alert>,
    rules: &[Rule],
    state: &mut DetectState,
) -> Vec<Alert> {
    let windows: BTreeMap<&str, i64> = rules
        .iter()
        .map(|r| {
            (
                r.meta.id.as_str(),
                parse_span(&r.meta.dedup_window).unwrap_or(DAY_MICROS),
            )
        })
        .collect();
    let mut fresh = Vec::new();
    for a in alerts {
        let first = parse_event_time(&a.first_seen).unwrap_or(0);
        let last = parse_event_time(&a.last_seen).unwrap_or(first);
        let dedup = windows
            .get(a.rule_id.as_str())
            .copied()
            .unwrap_or(DAY_MICROS);
        let seen = state.incidents.get(&a.dedup_key).copied();
        let new_incident = match seen {
            None => true,
            Some(prev_last) => last > prev_last && first > prev_last + dedup,
        };
        let entry = state.incidents.entry(a.dedup_key.clone()).or_insert(last);
        *entry = (*entry).max(last);
        if new_incident {
            fresh.push(a);
        }
    }
    fresh
}
