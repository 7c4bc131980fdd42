//! The `detect` Lambda: on a schedule, runs the detection rules over the lake's new
//! events, publishes the alerts not reported yet to an SNS topic, AWS Security Hub and an
//! EventBridge bus (any of them), and remembers them.
//!
//! Configuration (environment): `KMS_AUDIT_LAKE=s3://bucket/prefix`,
//! `KMS_AUDIT_ALERT_TOPIC_ARN`, `KMS_AUDIT_SECURITY_HUB=true`, `KMS_AUDIT_EVENT_BUS` (a bus
//! name or ARN; alerts are logged either way), `KMS_AUDIT_TRUSTED_ACCOUNTS`
//! (comma-separated). The payload may carry `since`/`until` (RFC 3339 or a span such as
//! `7d`) for a manual re-run over a past window; a scheduled event carries neither, and the
//! window starts where the last run stopped (less the late-arrival margin).
//!
//! With `KMS_AUDIT_PUBLIC_KEYS=aws` it also checks CloudTrail log-file integrity (rule
//! `log_integrity`): the digests ingested since the last run, with the keys
//! `cloudtrail:ListPublicKeys` returns for the trails' home regions, and account-regions
//! whose digests stopped for over 2 hours. `KMS_AUDIT_TRAIL_KEYS` (comma-separated) names
//! keys that encrypt the trail, for `kms_trail_key_disabled`; `KMS_AUDIT_CRITICAL_KEYS` keys
//! whose alerts are raised a level; `KMS_AUDIT_ABAC_TAG_KEYS` tags used for access.
//!
//! Delivery is at least once: the state (`<lake>/state/detections.json`) is saved only after
//! every sink accepted every alert. If publishing fails the invocation fails, Lambda retries it, and
//! the same alerts are sent again.

use std::collections::BTreeMap;
use std::sync::Arc;

use kms_audit::detect::sinks::aws::aws_sink;
use kms_audit::detect::sinks::{AlertSink, AwsSinkSpec, SinkError, deliver_all};
use kms_audit::detect::{Alert, DetectOptions, DetectState, Rule, builtin_rules, evaluate};
use kms_audit::lake::LakeStore;
use kms_audit::lake::table::AsOf;
use kms_audit::s3::{Aws, S3Lake, S3Uri};
use lambda_runtime::LambdaEvent;
use serde_json::{Value, json};

/// Errors that fail an invocation (and make Lambda retry it).
#[derive(Debug, thiserror::Error)]
pub enum DetectFnError {
    #[error(transparent)]
    Config(#[from] lambda_common::ConfigError),
    #[error("{0}")]
    Lake(#[from] kms_audit::lake::LakeError),
    #[error("{0}")]
    Detect(#[from] kms_audit::detect::DetectError),
    #[error("{0}")]
    Query(#[from] kms_audit::sql::QueryError),
    #[error("alert delivery failed, state unchanged (the alerts are sent again): {0}")]
    Delivery(#[source] SinkError),
    #[error("the delivery task stopped: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Where the integrity check gets CloudTrail's public keys.
#[derive(Debug, Clone)]
pub enum PublicKeysSource {
    /// `cloudtrail:ListPublicKeys`.
    Aws,
    /// Keys known already.
    Given(kms_audit::integrity::PublicKeys),
}

/// What a cold start builds: clients, the lake, the rules.
#[derive(Debug, Clone)]
pub struct Detector {
    aws: Aws,
    lake_uri: S3Uri,
    lake: Arc<dyn LakeStore>,
    sinks: Vec<AwsSinkSpec>,
    trusted: Vec<String>,
    rules: Arc<Vec<Rule>>,
    /// Log-file integrity is checked only with keys.
    public_keys: Option<PublicKeysSource>,
    /// Keys that encrypt the trail (`KMS_AUDIT_TRAIL_KEYS`, the template's TrailKmsKeyArn).
    trail_keys: Vec<String>,
    /// `KMS_AUDIT_CRITICAL_KEYS` and `KMS_AUDIT_ABAC_TAG_KEYS` (comma-separated).
    critical_keys: Vec<String>,
    abac_tag_keys: Vec<String>,
    /// `KMS_AUDIT_TRUSTED_ORGS` (comma-separated).
    trusted_orgs: Vec<String>,
}

impl Detector {
    pub async fn from_env() -> Result<Detector, DetectFnError> {
        let uri = lambda_common::lake_from_env()?;
        let sinks = lambda_common::alert_sinks_from_env();
        let trusted = lambda_common::trusted_accounts_from_env();
        let mut d = Detector::new(Aws::load().await, &uri, sinks, trusted)?;
        d.trail_keys = lambda_common::list_from_env("KMS_AUDIT_TRAIL_KEYS");
        d.critical_keys = lambda_common::list_from_env("KMS_AUDIT_CRITICAL_KEYS");
        d.abac_tag_keys = lambda_common::list_from_env("KMS_AUDIT_ABAC_TAG_KEYS");
        d.trusted_orgs = lambda_common::list_from_env("KMS_AUDIT_TRUSTED_ORGS");
        Ok(match std::env::var("KMS_AUDIT_PUBLIC_KEYS").as_deref() {
            Ok("aws") => d.with_public_keys(PublicKeysSource::Aws),
            _ => d,
        })
    }

    /// Also check log-file integrity, with these keys.
    pub fn with_public_keys(mut self, keys: PublicKeysSource) -> Detector {
        self.public_keys = Some(keys);
        self
    }

    /// Must run inside the tokio runtime (the lake keeps its handle).
    pub fn new(
        aws: Aws,
        lake: &S3Uri,
        sinks: Vec<AwsSinkSpec>,
        trusted: Vec<String>,
    ) -> Result<Detector, DetectFnError> {
        Ok(Detector {
            lake: Arc::new(S3Lake::open(&aws, lake)?),
            lake_uri: lake.clone(),
            aws,
            sinks,
            trusted,
            rules: Arc::new(builtin_rules()?),
            public_keys: None,
            trail_keys: Vec::new(),
            critical_keys: Vec::new(),
            abac_tag_keys: Vec::new(),
            trusted_orgs: Vec::new(),
        })
    }

    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, DetectFnError> {
        let started = std::time::Instant::now();
        let now = kms_audit::time::now_micros();
        let mut opts = DetectOptions {
            since: lambda_common::payload_time(&event.payload, "since", now)?,
            until: lambda_common::payload_time(&event.payload, "until", now)?,
            trusted_accounts: self.trusted.clone(),
            ..DetectOptions::default()
        };
        let ctx = kms_audit::sql::open_s3(&self.aws, &self.lake_uri, &AsOf::Latest).await?;
        kms_audit::detect::set_trail_keys(&ctx, &self.trail_keys)?;
        kms_audit::detect::set_critical_keys(&ctx, &self.critical_keys)?;
        kms_audit::detect::set_abac_tag_keys(&ctx, &self.abac_tag_keys)?;
        kms_audit::detect::set_trusted_orgs(&ctx, &self.trusted_orgs)?;
        let lake = self.lake.clone();
        let mut state =
            tokio::task::spawn_blocking(move || DetectState::load(lake.as_ref())).await??;
        let loc = self
            .lake
            .location()
            .map_err(kms_audit::sql::QueryError::from)?;
        (opts.lake_version, opts.arrived) =
            kms_audit::detect::arrivals(&ctx, &loc, Some(&state)).await?;
        let judged = evaluate(&ctx, &self.rules, &opts, Some(&mut state)).await?;
        // Integrity never holds back the rules' alerts: without keys this run, it waits
        // for the next (the state keeps where it stopped).
        let keys = match &self.public_keys {
            None => None,
            Some(PublicKeysSource::Given(k)) => Some(k.clone()),
            Some(PublicKeysSource::Aws) => {
                match kms_audit::integrity::keys::lake_public_keys(&self.aws, &ctx).await? {
                    Ok(k) => Some(k),
                    Err(e) => {
                        tracing::error!(error = %e, "log integrity not checked this run: no public keys");
                        None
                    }
                }
            }
        };
        let integrity = match keys {
            None => None,
            Some(keys) => {
                let explicit = kms_audit::integrity::Window {
                    since: opts.since,
                    until: opts.until,
                };
                let check = kms_audit::integrity::alerts::check_with_state(
                    &ctx,
                    &keys,
                    explicit,
                    now,
                    Some(&mut state),
                )
                .await?;
                let s = &check.verification.summary;
                tracing::info!(
                    digests = s.digests,
                    digests_valid = s.digests_valid,
                    digests_failed = s.digests_failed,
                    digests_missing = s.digests_missing,
                    logs_verified = s.logs_verified,
                    alerts = check.alerts.len(),
                    "log integrity checked"
                );
                Some(check.alerts)
            }
        };
        let (window, mut alerts) = match (judged, &integrity) {
            (Some((w, a)), _) => (Some(w), a),
            (None, Some(_)) => (None, Vec::new()),
            (None, None) => {
                tracing::info!("no events to judge (an empty lake, or nothing new)");
                return Ok(json!({"alerts": 0, "window": null}));
            }
        };
        alerts.extend(integrity.unwrap_or_default());
        kms_audit::detect::sort_alerts(&mut alerts);
        for a in &alerts {
            tracing::warn!(
                rule_id = %a.rule_id,
                severity = a.severity.as_str(),
                summary = %a.summary,
                principal = a.principal.as_deref().unwrap_or(""),
                key_arn = a.key_arn.as_deref().unwrap_or(""),
                dedup_key = %a.dedup_key,
                "alert"
            );
        }
        let sinks: Vec<Box<dyn AlertSink>> = self
            .sinks
            .iter()
            .map(|s| aws_sink(&self.aws, s, &self.rules))
            .collect();
        let published_to: Vec<String> = sinks.iter().map(|s| s.describe()).collect();
        let lake = self.lake.clone();
        let delivered = alerts.clone();
        tokio::task::spawn_blocking(move || {
            let failures =
                deliver_all(&sinks, &delivered, 3, std::time::Duration::from_millis(500));
            if let Some(f) = failures.into_iter().next() {
                return Err(DetectFnError::Delivery(f));
            }
            state.save(lake.as_ref())?;
            Ok(())
        })
        .await??;
        let by_severity = count_by_severity(&alerts);
        println!(
            "{}",
            emf_line(
                &alerts,
                &by_severity,
                started.elapsed().as_secs_f64(),
                now / 1000
            )
        );
        let window = window.map(|w| {
            json!({"since": kms_audit::time::format_micros(w.since),
                   "until": kms_audit::time::format_micros(w.until)})
        });
        tracing::info!(
            window = %window.clone().unwrap_or_default(),
            rules = self.rules.len(),
            alerts = alerts.len(),
            "detection done"
        );
        Ok(json!({
            "window": window,
            "rules": self.rules.len(),
            "alerts": alerts.len(),
            "by_severity": by_severity,
            "published_to": published_to,
        }))
    }
}

fn count_by_severity(alerts: &[Alert]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for a in alerts {
        *m.entry(a.severity.as_str().to_owned()).or_insert(0) += 1;
    }
    m
}

/// One CloudWatch Embedded Metric Format line: `Alerts` and one metric per severity.
pub fn emf_line(
    alerts: &[Alert],
    by_severity: &BTreeMap<String, u64>,
    seconds: f64,
    ts_ms: i64,
) -> Value {
    let mut metrics = vec![
        json!({"Name": "Alerts", "Unit": "Count"}),
        json!({"Name": "Duration", "Unit": "Seconds"}),
    ];
    let mut line = json!({"Function": "detect", "Alerts": alerts.len(), "Duration": seconds});
    for sev in ["critical", "high", "medium", "low", "info"] {
        let name = format!("Alerts{}{}", sev[..1].to_uppercase(), &sev[1..]);
        metrics.push(json!({"Name": name, "Unit": "Count"}));
        line[name] = json!(by_severity.get(sev).copied().unwrap_or(0));
    }
    line["_aws"] = json!({
        "Timestamp": ts_ms,
        "CloudWatchMetrics": [{"Namespace": "KmsAudit", "Dimensions": [["Function"]], "Metrics": metrics}]
    });
    line
}
