//! Integrity as alerts: a scheduled run verifies the periods whose digests arrived since
//! the last run, and watches for account-regions whose digests stopped. Alerts carry the
//! rule id [`RULE_ID`] and go through the same deduplication and sinks as the rules'.

use datafusion::prelude::SessionContext;

use super::{Finding, Kind, PublicKeys, Verification, Window, lake::evidence_from_ctx, verify};
use crate::detect::{Alert, Severity};
use crate::ingest::object_name::{ObjectName, canonical_key};
use crate::lake::table::DIGESTS_TABLE;
use crate::sql::QueryError;

/// The rule id of integrity alerts (documented in docs/detections.md).
pub const RULE_ID: &str = "log_integrity";

/// An account and region whose newest digest ended longer ago than this is alerted.
pub use super::DIGEST_GAP_MICROS;

/// What one integrity check judged and raised.
#[derive(Debug, Clone)]
pub struct IntegrityCheck {
    /// The digest period judged (None when no digest arrived since the last check).
    pub window: Option<Window>,
    pub verification: Verification,
    pub alerts: Vec<Alert>,
    /// The newest `ingested_at` among the digests seen: where the next check starts.
    pub ingested_until: Option<i64>,
}

/// Judges the digests recorded after `ingested_after` (all, the first time), or those of
/// `explicit` when it bounds anything, and the gaps as of `now`.
pub async fn check(
    ctx: &SessionContext,
    keys: &PublicKeys,
    ingested_after: Option<i64>,
    explicit: Window,
    now: i64,
) -> Result<IntegrityCheck, QueryError> {
    let arrived = format!(
        "SELECT CAST(min(digest_start_time) AS BIGINT), CAST(max(digest_end_time) AS BIGINT), \
         CAST(max(ingested_at) AS BIGINT) FROM {DIGESTS_TABLE}{}",
        ingested_after
            .map(|t| format!(" WHERE CAST(ingested_at AS BIGINT) > {t}"))
            .unwrap_or_default()
    );
    let row = ints(ctx, &arrived).await?;
    let (lo, hi, ingested) = match row.first() {
        Some(r) => (r[0], r[1], r[2]),
        None => (None, None, None),
    };
    let window = if explicit.since.is_some() || explicit.until.is_some() {
        Some(explicit)
    } else {
        match (lo, hi) {
            (Some(lo), Some(hi)) => Some(Window {
                since: Some(lo),
                until: Some(hi),
            }),
            _ => None,
        }
    };
    let verification = match window {
        Some(w) => verify(&evidence_from_ctx(ctx, w).await?, keys, w),
        None => Verification::default(),
    };
    let mut alerts: Vec<Alert> = verification
        .findings
        .iter()
        .filter(|f| f.kind.is_failure() || f.kind == Kind::DigestsStopped)
        .map(|f| finding_alert(f, now))
        .collect();
    alerts.extend(gap_alerts(ctx, explicit.until.unwrap_or(now)).await?);
    Ok(IntegrityCheck {
        window,
        verification,
        alerts,
        ingested_until: ingested.or(ingested_after),
    })
}

/// One alert per account and region whose newest digest ended more than
/// [`DIGEST_GAP_MICROS`] before `now`.
async fn gap_alerts(ctx: &SessionContext, now: i64) -> Result<Vec<Alert>, QueryError> {
    let q = format!(
        "SELECT account_id, region, CAST(max(digest_end_time) AS BIGINT) AS last_end \
         FROM {DIGESTS_TABLE} WHERE account_id IS NOT NULL AND digest_end_time IS NOT NULL \
         GROUP BY 1, 2 ORDER BY 1, 2"
    );
    let batches = ctx.sql(&q).await?.collect().await?;
    let mut out = Vec::new();
    for b in &batches {
        let acct = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8)?;
        let region = arrow::compute::cast(b.column(1), &arrow::datatypes::DataType::Utf8)?;
        let (acct, region) = (
            arrow::array::AsArray::as_string::<i32>(&acct),
            arrow::array::AsArray::as_string::<i32>(&region),
        );
        let last = arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(b.column(2));
        for i in 0..b.num_rows() {
            let end = last.value(i);
            if now - end <= DIGEST_GAP_MICROS {
                continue;
            }
            let (a, r) = (acct.value(i), region.value(i));
            let at = crate::time::format_micros(end);
            out.push(Alert {
                rule_id: RULE_ID.into(),
                title: "No CloudTrail digest for over 2 hours".into(),
                severity: Severity::High,
                first_seen: at.clone(),
                last_seen: at.clone(),
                count: 1,
                principal: None,
                key_arn: None,
                account_id: Some(a.to_owned()),
                aws_region: Some(r.to_owned()),
                source_ips: Vec::new(),
                event_ids: Vec::new(),
                summary: format!(
                    "digests_stopped: the newest digest of {a} {r} ends {at}, {} hours before {}: logging or log file validation was switched off, the trail's delivery fails, or digests are being deleted",
                    (now - end) / 3_600_000_000,
                    crate::time::format_micros(now)
                ),
                dedup_key: format!("{RULE_ID}:gap:{a}:{r}:{end}"),
            });
        }
    }
    Ok(out)
}

/// A finding as an alert: critical for integrity failures.
pub fn finding_alert(f: &Finding, now: i64) -> Alert {
    let key = f
        .object
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .map(|(_, key)| key)
        .unwrap_or(&f.object);
    let canonical = canonical_key(key);
    let log = canonical.as_deref().and_then(ObjectName::parse);
    let digest = canonical.as_deref().and_then(super::DigestName::parse);
    let at = log
        .as_ref()
        .and_then(super::log_stamp)
        .or_else(|| digest.as_ref().and_then(|d| d.end))
        .unwrap_or(now);
    let at = crate::time::format_micros(at);
    let (account, region) = match (&log, &digest) {
        (Some(l), _) => (Some(l.account.clone()), Some(l.region.clone())),
        (None, Some(d)) => (Some(d.account.clone()), Some(d.region.clone())),
        _ => (None, None),
    };
    Alert {
        rule_id: RULE_ID.into(),
        title: format!("CloudTrail log-file integrity: {}", f.kind.as_str()),
        severity: if f.kind.is_failure() {
            Severity::Critical
        } else {
            Severity::High
        },
        first_seen: at.clone(),
        last_seen: at,
        count: 1,
        principal: None,
        key_arn: None,
        account_id: account,
        aws_region: region,
        source_ips: Vec::new(),
        event_ids: Vec::new(),
        summary: format!(
            "{}: {}{}: {}",
            f.kind.as_str(),
            f.object,
            f.digest
                .as_deref()
                .map(|d| format!(" (digest {d})"))
                .unwrap_or_default(),
            f.detail
        ),
        dedup_key: format!("{RULE_ID}:{}:{}", f.kind.as_str(), f.object),
    }
}

/// The home regions whose keys signed the lake's digests and the span of their periods:
/// what to ask `cloudtrail:ListPublicKeys` for ([`super::keys::list_public_keys`]).
pub async fn key_scope(
    ctx: &SessionContext,
) -> Result<(Vec<String>, Option<(i64, i64)>), QueryError> {
    let span = ints(
        ctx,
        &format!(
            "SELECT CAST(min(digest_start_time) AS BIGINT), CAST(max(digest_end_time) AS BIGINT) FROM {DIGESTS_TABLE}"
        ),
    )
    .await?;
    let span = match span.first().map(|r| (r[0], r[1])) {
        Some((Some(a), Some(b))) => Some((a, b)),
        _ => None,
    };
    let batches = ctx
        .sql(&format!(
            "SELECT DISTINCT home_region FROM {DIGESTS_TABLE} WHERE home_region IS NOT NULL ORDER BY 1"
        ))
        .await?
        .collect()
        .await?;
    let mut regions = Vec::new();
    for b in &batches {
        let c = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8)?;
        let c = arrow::array::AsArray::as_string::<i32>(&c);
        regions.extend(c.iter().flatten().map(str::to_owned));
    }
    Ok((regions, span))
}

async fn ints(ctx: &SessionContext, sql: &str) -> Result<Vec<Vec<Option<i64>>>, QueryError> {
    use arrow::array::Array;
    let batches = ctx.sql(sql).await?.collect().await?;
    let mut rows = Vec::new();
    for b in &batches {
        let cols: Vec<_> = b
            .columns()
            .iter()
            .map(|c| arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(c).clone())
            .collect();
        for i in 0..b.num_rows() {
            rows.push(
                cols.iter()
                    .map(|c| c.is_valid(i).then(|| c.value(i)))
                    .collect(),
            );
        }
    }
    Ok(rows)
}

/// A scheduled check with a detection state: judges the digests recorded since the state's
/// last check (or `explicit`, which leaves the state's position alone), and returns the
/// alerts not reported yet, recording them in the state (saved by the caller after
/// delivery).
pub async fn check_with_state(
    ctx: &SessionContext,
    keys: &PublicKeys,
    explicit: Window,
    now: i64,
    state: Option<&mut crate::detect::DetectState>,
) -> Result<IntegrityCheck, QueryError> {
    let explicit_period = explicit.since.is_some() || explicit.until.is_some();
    let after = match (&state, explicit_period) {
        (Some(st), false) => st.digests_ingested_at,
        _ => None,
    };
    let mut run = check(ctx, keys, after, explicit, now).await?;
    if let Some(st) = state {
        run.alerts = crate::detect::only_new_incidents(std::mem::take(&mut run.alerts), &[], st);
        if !explicit_period {
            st.digests_ingested_at = run.ingested_until;
        }
    }
    Ok(run)
}
