//! What the kms-audit Lambda functions share: their logging, their configuration from the
//! environment, and reading time fields of a payload.

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

/// The accounts trusted besides those in the lake, from `KMS_AUDIT_TRUSTED_ACCOUNTS`
/// (comma-separated).
pub fn trusted_accounts_from_env() -> Vec<String> {
    std::env::var("KMS_AUDIT_TRUSTED_ACCOUNTS")
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
