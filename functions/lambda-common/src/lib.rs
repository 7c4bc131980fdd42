//! What the kms-audit Lambda functions share: their logging, their configuration from the
//! environment, and reading time fields of a payload.

use kms_audit::detect::sinks::AwsSinkSpec;
use kms_audit::s3::S3Uri;
use kms_audit::time::{InvalidTime, parse_time_arg};
use serde_json::Value;

/// Configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("KMS_AUDIT_LAKE is not set (the lake, s3://bucket/prefix)")]
    NoLake,
    #[error("KMS_AUDIT_LAKE={0}: a Lambda works on an s3://bucket/prefix lake")]
    NotS3(String),
    #[error("payload field {field}: {source}")]
    Payload {
        field: &'static str,
        #[source]
        source: InvalidTime,
    },
}

/// JSON log lines on stdout, level from `RUST_LOG` (default `info`), without timestamps
/// (CloudWatch stamps every line) or colours.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .init();
}

/// The lake, from `KMS_AUDIT_LAKE`.
pub fn lake_from_env() -> Result<S3Uri, ConfigError> {
    let lake = std::env::var("KMS_AUDIT_LAKE").map_err(|_| ConfigError::NoLake)?;
    S3Uri::parse(&lake).ok_or(ConfigError::NotS3(lake))
}

/// The SNS topic for alerts and report announcements, from `KMS_AUDIT_ALERT_TOPIC_ARN`
/// (unset or empty: none).
pub fn topic_from_env() -> Option<String> {
    std::env::var("KMS_AUDIT_ALERT_TOPIC_ARN")
        .ok()
        .filter(|t| !t.is_empty())
}

/// Where the detect function sends alerts: the SNS topic of `KMS_AUDIT_ALERT_TOPIC_ARN`,
/// Security Hub when `KMS_AUDIT_SECURITY_HUB` is `true`, and the EventBridge bus of
/// `KMS_AUDIT_EVENT_BUS` (a name or ARN; `default` is the account's default bus).
pub fn alert_sinks_from_env() -> Vec<AwsSinkSpec> {
    let var = |name: &str| std::env::var(name).ok();
    alert_sinks(
        topic_from_env(),
        var("KMS_AUDIT_SECURITY_HUB").as_deref(),
        var("KMS_AUDIT_EVENT_BUS").as_deref(),
    )
}

/// [`alert_sinks_from_env`] from the variables' values.
pub fn alert_sinks(
    topic: Option<String>,
    security_hub: Option<&str>,
    event_bus: Option<&str>,
) -> Vec<AwsSinkSpec> {
    let mut sinks: Vec<AwsSinkSpec> = topic.into_iter().map(AwsSinkSpec::Sns).collect();
    if security_hub.is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        sinks.push(AwsSinkSpec::SecurityHub);
    }
    match event_bus.map(str::trim) {
        None | Some("") => {}
        Some("default") => sinks.push(AwsSinkSpec::EventBridge(None)),
        Some(bus) => sinks.push(AwsSinkSpec::EventBridge(Some(bus.to_owned()))),
    }
    sinks
}

/// The accounts trusted besides those in the lake, from `KMS_AUDIT_TRUSTED_ACCOUNTS`
/// (comma-separated).
pub fn trusted_accounts_from_env() -> Vec<String> {
    list_from_env("KMS_AUDIT_TRUSTED_ACCOUNTS")
}

/// A comma-separated variable's values, trimmed, empty ones left out.
pub fn list_from_env(var: &str) -> Vec<String> {
    std::env::var(var)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A time field of a payload (`since`, `until`): RFC 3339 or a span before `now` such as
/// `7d`; `None` when absent.
pub fn payload_time(
    payload: &Value,
    field: &'static str,
    now: i64,
) -> Result<Option<i64>, ConfigError> {
    payload
        .get(field)
        .and_then(Value::as_str)
        .map(|s| parse_time_arg(s, now).map_err(|source| ConfigError::Payload { field, source }))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinks_follow_the_template_parameters() {
        assert_eq!(alert_sinks(None, Some("false"), Some("")), []);
        assert_eq!(
            alert_sinks(
                Some("arn:aws:sns:us-east-1:1:t".into()),
                Some("true"),
                Some("default")
            ),
            [
                AwsSinkSpec::Sns("arn:aws:sns:us-east-1:1:t".into()),
                AwsSinkSpec::SecurityHub,
                AwsSinkSpec::EventBridge(None)
            ]
        );
        assert_eq!(
            alert_sinks(None, None, Some("security-alerts")),
            [AwsSinkSpec::EventBridge(Some("security-alerts".into()))]
        );
    }

    #[test]
    fn payload_times_are_rfc3339_or_spans() {
        let p = serde_json::json!({"since": "2026-11-01T00:00:00Z", "until": "1d", "bad": "soon"});
        let day = kms_audit::time::DAY_MICROS;
        assert_eq!(
            payload_time(&p, "since", 0).ok().flatten(),
            kms_audit::time::parse_event_time("2026-11-01T00:00:00Z")
        );
        assert_eq!(
            payload_time(&p, "until", 10 * day).ok().flatten(),
            Some(9 * day)
        );
        assert!(payload_time(&p, "missing", 0).is_ok_and(|v| v.is_none()));
        assert!(payload_time(&p, "bad", 0).is_err());
    }
}
