//! The `report` Lambda: on a schedule (weekly by default), writes a compliance report of
//! the last period into the lake, `<lake>/reports/<since>_<until>/` (`report.html`,
//! `report.json`, one CSV per section), and announces it on the SNS topic.
//!
//! Configuration (environment): `KMS_AUDIT_LAKE=s3://bucket/prefix`,
//! `KMS_AUDIT_ALERT_TOPIC_ARN` (the announcement; message attribute `kind=report`),
//! `KMS_AUDIT_TRUSTED_ACCOUNTS`, `KMS_AUDIT_REPORT_DAYS` (the period, 7 by default). The
//! period ends at the start (UTC midnight) of the day the schedule fires; a payload with
//! `since`/`until` (RFC 3339 or a span such as `30d`) reports on another period.

use std::sync::Arc;

use aws_sdk_sns::types::MessageAttributeValue;
use kms_audit::detect::builtin_rules;
use kms_audit::lake::LakeStore;
use kms_audit::lake::table::AsOf;
use kms_audit::report::{ReportOptions, build_report, write_report};
use kms_audit::s3::{Aws, S3Lake, S3Uri};
use kms_audit::time::{DAY_MICROS, format_day, parse_event_time};
use lambda_runtime::LambdaEvent;
use serde_json::{Value, json};

/// Errors that fail an invocation (and make Lambda retry it).
#[derive(Debug, thiserror::Error)]
pub enum ReportFnError {
    #[error(transparent)]
    Config(#[from] lambda_common::ConfigError),
    #[error("{0}")]
    Lake(#[from] kms_audit::lake::LakeError),
    #[error("{0}")]
    Report(#[from] kms_audit::report::ReportError),
    #[error("{0}")]
    Query(#[from] kms_audit::sql::QueryError),
    #[error("{0}")]
    Detect(#[from] kms_audit::detect::DetectError),
    #[error("staging the report: {0}")]
    Io(#[from] std::io::Error),
    /// `detail` is the SDK's whole error context (its top-level text is "service error").
    #[error("announcing the report on {topic}: {detail}")]
    Announce {
        topic: String,
        detail: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the upload task stopped: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// What a cold start builds.
#[derive(Debug, Clone)]
pub struct Reporter {
    aws: Aws,
    lake_uri: S3Uri,
    lake: Arc<dyn LakeStore>,
    topic: Option<String>,
    trusted: Vec<String>,
    days: i64,
    /// Check digest signatures in the integrity section with CloudTrail's keys
    /// (`KMS_AUDIT_PUBLIC_KEYS=aws`).
    public_keys_from_aws: bool,
}

impl Reporter {
    pub async fn from_env() -> Result<Reporter, ReportFnError> {
        let uri = lambda_common::lake_from_env()?;
        let topic = lambda_common::topic_from_env();
        let trusted = lambda_common::trusted_accounts_from_env();
        let days = std::env::var("KMS_AUDIT_REPORT_DAYS")
            .ok()
            .and_then(|d| d.parse().ok())
            .unwrap_or(7);
        let mut r = Reporter::new(Aws::load().await, &uri, topic, trusted, days)?;
        r.public_keys_from_aws = std::env::var("KMS_AUDIT_PUBLIC_KEYS").as_deref() == Ok("aws");
        Ok(r)
    }

    /// Must run inside the tokio runtime (the lake keeps its handle).
    pub fn new(
        aws: Aws,
        lake: &S3Uri,
        topic: Option<String>,
        trusted: Vec<String>,
        days: i64,
    ) -> Result<Reporter, ReportFnError> {
        Ok(Reporter {
            lake: Arc::new(S3Lake::open(&aws, lake)?),
            lake_uri: lake.clone(),
            aws,
            topic,
            trusted,
            days: days.max(1),
            public_keys_from_aws: false,
        })
    }

    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, ReportFnError> {
        let now = kms_audit::time::now_micros();
        // A scheduled event's "time" is when the schedule fired: the period ends at the
        // start of that day, so a retried or late run reports the same period.
        let fired = event
            .payload
            .get("time")
            .and_then(Value::as_str)
            .and_then(parse_event_time)
            .unwrap_or(now);
        let until = lambda_common::payload_time(&event.payload, "until", now)?
            .unwrap_or(fired.div_euclid(DAY_MICROS) * DAY_MICROS);
        let since = lambda_common::payload_time(&event.payload, "since", now)?
            .unwrap_or(until - self.days * DAY_MICROS);
        let ctx = kms_audit::sql::open_s3(&self.aws, &self.lake_uri, &AsOf::Latest).await?;
        let public_keys = if self.public_keys_from_aws {
            match kms_audit::integrity::keys::lake_public_keys(&self.aws, &ctx).await? {
                Ok(k) => Some(k),
                // The report still judges the chain and every hash; its integrity section
                // says signatures were not checked.
                Err(e) => {
                    tracing::warn!(error = %e, "digest signatures not checked: no public keys");
                    None
                }
            }
        } else {
            None
        };
        let opts = ReportOptions {
            since: Some(since),
            until: Some(until),
            trusted_accounts: self.trusted.clone(),
            trusted_orgs: lambda_common::list_from_env("KMS_AUDIT_TRUSTED_ORGS"),
            rules: builtin_rules()?,
            public_keys,
            expected_keys: lambda_common::list_from_env("KMS_AUDIT_EXPECTED_KEYS"),
        };
        let mut report = build_report(&ctx, &self.lake.uri(), &opts).await?;
        let folder = format!(
            "reports/{}_{}",
            format_day(since.div_euclid(DAY_MICROS)),
            format_day((until - 1).div_euclid(DAY_MICROS))
        );
        // The previous report: the latest earlier one under reports/.
        let lake = self.lake.clone();
        let (mine, end) = (format!("{folder}/report.json"), report.until.clone());
        report.changes = tokio::task::spawn_blocking(move || {
            let mut candidates = Vec::new();
            for f in lake.list("reports/").unwrap_or_default() {
                if f.rel.ends_with("/report.json") && f.rel != mine {
                    let bytes = lake.read(&f.rel).ok().flatten().unwrap_or_default();
                    if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
                        candidates.push((format!("{}/{}", lake.uri(), f.rel), v));
                    }
                }
            }
            kms_audit::report::changes::pick_previous(&candidates, &end, "").cloned()
        })
        .await?
        .map(|(location, prev)| kms_audit::report::changes::compare(&report, &prev, &location));
        let staging = tempfile::tempdir()?;
        let files = write_report(&report, staging.path())?;
        let lake = self.lake.clone();
        let (dir, upload) = (staging.path().to_path_buf(), files.clone());
        let prefix = folder.clone();
        tokio::task::spawn_blocking(move || -> Result<(), ReportFnError> {
            // The HTML last: its presence means the report is complete.
            let mut ordered = upload;
            ordered.sort_by_key(|f| f == "report.html");
            for f in ordered {
                lake.publish(&dir.join(&f), &format!("{prefix}/{f}"))?;
            }
            Ok(())
        })
        .await??;
        let location = format!("{}/{folder}/", self.lake.uri());
        let counts: Vec<String> = report
            .sections
            .iter()
            .map(|s| format!("  {:<22} {} row(s)", s.def.id, s.rows.len()))
            .collect();
        let summary = json!({
            "kind": "report",
            "period": {"since": report.since, "until": report.until},
            "events_in_period": report.events_in_period,
            "location": location,
            "files": files,
            "sections": report.sections.iter().map(|s| json!({"id": s.def.id, "rows": s.rows.len()})).collect::<Vec<_>>(),
        });
        if let Some(topic) = &self.topic {
            let text = format!(
                "kms-audit report {} to {}: {} KMS events.\n\n{}\n\nReport: {location}report.html\nData: report.json and one CSV per section in the same folder.\n\n{}",
                report.since,
                report.until,
                report.events_in_period,
                counts.join("\n"),
                summary
            );
            let kind = MessageAttributeValue::builder()
                .data_type("String")
                .string_value("report")
                .build()
                .map_err(|e| announce_error(topic, e))?;
            aws_sdk_sns::Client::new(&self.aws.config)
                .publish()
                .topic_arn(topic)
                .subject(format!(
                    "kms-audit report {} to {}",
                    &report.since[..10],
                    &report.until[..10]
                ))
                .message(text)
                .message_attributes("kind", kind)
                .send()
                .await
                .map_err(|e| announce_error(topic, e))?;
        }
        tracing::info!(location = %location, events = report.events_in_period, "report written");
        Ok(summary)
    }
}

fn announce_error<E>(topic: &str, e: E) -> ReportFnError
where
    E: std::error::Error + Send + Sync + 'static,
{
    ReportFnError::Announce {
        topic: topic.to_owned(),
        detail: aws_sdk_sns::error::DisplayErrorContext(&e).to_string(),
        source: Box::new(e),
    }
}
