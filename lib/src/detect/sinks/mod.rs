//! Where alerts go besides stdout (the CLI's): a file (NDJSON), a Slack-compatible webhook,
//! and, with the feature `aws` ([`aws`]), an Amazon SNS topic, an EventBridge bus or AWS
//! Security Hub.
//!
//! Delivery is at least once: each send is retried with backoff, and a sink that still fails
//! is reported as an error so the caller can keep its state unchanged and send the same
//! alerts again next run. Alerts are never dropped silently.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::detect::Alert;

#[cfg(feature = "aws")]
pub mod aws;

/// Why one delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("encoding alert {dedup_key}: {source}")]
    Encode {
        dedup_key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("alert {dedup_key}: the webhook answered {status} (redirects are not followed)")]
    Status { dedup_key: String, status: u16 },
    #[error("alert {dedup_key}: {source}")]
    Http {
        dedup_key: String,
        #[source]
        source: Box<ureq::Error>,
    },
    /// An AWS API call failed; `detail` is the SDK's whole error context.
    #[error("{operation}: {detail}")]
    Aws {
        operation: &'static str,
        detail: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The service took the request but refused some entries.
    #[error("{failed} of {total} alert(s) not accepted, first: {code} {message}")]
    Rejected {
        failed: usize,
        total: usize,
        code: String,
        message: String,
    },
}

/// An alert as the JSON of the alert contract (DESIGN.md), which every sink sends.
pub(crate) fn alert_json(a: &Alert) -> Result<String, DeliveryError> {
    serde_json::to_string(a).map_err(|source| DeliveryError::Encode {
        dedup_key: a.dedup_key.clone(),
        source,
    })
}

/// A sink that could not take the alerts.
#[derive(Debug, thiserror::Error)]
#[error("sink {sink}: {source} (after {attempts} attempt(s))")]
pub struct SinkError {
    pub sink: String,
    pub attempts: u32,
    #[source]
    pub source: DeliveryError,
}

/// A sink spec that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkSpecError {
    #[error(
        "unknown sink {0:?}: use file:PATH, an https:// webhook URL, an SNS topic ARN, eventbridge[:BUS] or securityhub"
    )]
    Unknown(String),
    /// Shown without its path, which holds the webhook's secret.
    #[error("webhook {0}: use https:// (plain http only to a loopback address)")]
    NotHttps(String),
}

/// Somewhere alerts can be delivered.
pub trait AlertSink: std::fmt::Debug + Send + Sync {
    /// For messages: `file:alerts.ndjson`, `https://hooks.example/...` (query strings and
    /// paths of webhooks are secrets and are not shown).
    fn describe(&self) -> String;
    /// Delivers all alerts, or fails as a whole.
    fn deliver(&self, alerts: &[Alert]) -> Result<(), DeliveryError>;
}

/// Appends one JSON object per alert per line.
#[derive(Debug, Clone)]
pub struct FileSink {
    pub path: PathBuf,
}

impl AlertSink for FileSink {
    fn describe(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn deliver(&self, alerts: &[Alert]) -> Result<(), DeliveryError> {
        let io = |path: &std::path::Path| {
            let path = path.to_owned();
            move |source| DeliveryError::Io { path, source }
        };
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut buf = Vec::new();
        for a in alerts {
            buf.extend_from_slice(alert_json(a)?.as_bytes());
            buf.push(b'\n');
        }
        // One append of whole lines: concurrent writers never interleave inside a line.
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io(&self.path))?;
        f.write_all(&buf).map_err(io(&self.path))?;
        f.sync_data().map_err(io(&self.path))
    }
}

/// Posts each alert as a Slack-compatible message (`text` plus `blocks`; the alert itself is
/// under `alert` for machine consumers).
#[derive(Debug, Clone)]
pub struct WebhookSink {
    pub url: String,
    pub timeout: Duration,
}

impl WebhookSink {
    pub fn new(url: impl Into<String>) -> Self {
        WebhookSink {
            url: url.into(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The Slack-compatible message for an alert.
pub fn slack_message(a: &Alert) -> serde_json::Value {
    let icon = match a.severity {
        crate::detect::Severity::Critical => ":rotating_light:",
        crate::detect::Severity::High => ":red_circle:",
        crate::detect::Severity::Medium => ":large_orange_circle:",
        _ => ":large_blue_circle:",
    };
    let text = format!(
        "{icon} [{}] {}: {}",
        a.severity.as_str().to_uppercase(),
        a.title,
        a.summary
    );
    let ids: Vec<&str> = a.event_ids.iter().take(5).map(String::as_str).collect();
    let fields = format!(
        "*Rule:* `{}`\n*Account:* {}  *Region:* {}\n*Principal:* {}\n*Key:* {}\n*When:* {} .. {} ({} events)\n*Event ids:* {}{}",
        a.rule_id,
        a.account_id.as_deref().unwrap_or("-"),
        a.aws_region.as_deref().unwrap_or("-"),
        a.principal.as_deref().unwrap_or("-"),
        a.key_arn.as_deref().unwrap_or("-"),
        a.first_seen,
        a.last_seen,
        a.count,
        ids.join(", "),
        if a.event_ids.len() > ids.len() {
            ", ..."
        } else {
            ""
        }
    );
    serde_json::json!({
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "section", "text": {"type": "mrkdwn", "text": fields}}
        ],
        "alert": a,
    })
}

impl AlertSink for WebhookSink {
    fn describe(&self) -> String {
        // Webhook URLs carry their secret in the path: show scheme and host only.
        let host = self
            .url
            .split("://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or("?");
        let scheme = self.url.split("://").next().unwrap_or("https");
        format!("{scheme}://{host}/...")
    }

    fn deliver(&self, alerts: &[Alert]) -> Result<(), DeliveryError> {
        // No redirects: a redirect would carry the alert (and the URL's secret) somewhere
        // the operator did not name; it fails the delivery instead.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(self.timeout))
            .max_redirects(0)
            .build()
            .into();
        for a in alerts {
            let body = slack_message(a).to_string();
            let response = agent
                .post(&self.url)
                .header("Content-Type", "application/json")
                .send(body.as_str())
                .map_err(|e| DeliveryError::Http {
                    dedup_key: a.dedup_key.clone(),
                    source: Box::new(e),
                })?;
            // 4xx and 5xx are errors already; a redirect arrives here, not delivered.
            let status = response.status().as_u16();
            if !(200..300).contains(&status) {
                return Err(DeliveryError::Status {
                    dedup_key: a.dedup_key.clone(),
                    status,
                });
            }
        }
        Ok(())
    }
}

/// Delivers to every sink, each with up to `attempts` tries (exponential backoff from
/// `backoff`). Returns the sinks that failed; the others have the alerts.
pub fn deliver_all(
    sinks: &[Box<dyn AlertSink>],
    alerts: &[Alert],
    attempts: u32,
    backoff: Duration,
) -> Vec<SinkError> {
    let mut failures = Vec::new();
    if alerts.is_empty() {
        return failures;
    }
    for sink in sinks {
        let mut last = None;
        for attempt in 0..attempts.max(1) {
            if attempt > 0 {
                std::thread::sleep(backoff * 2u32.pow(attempt - 1));
            }
            match sink.deliver(alerts) {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        if let Some(source) = last {
            failures.push(SinkError {
                sink: sink.describe(),
                attempts: attempts.max(1),
                source,
            });
        }
    }
    failures
}

/// Whether a sink spec names an SNS topic (an `arn:...:sns:...` ARN).
pub fn is_sns_topic(spec: &str) -> bool {
    spec.starts_with("arn:") && spec.split(':').nth(2) == Some("sns")
}

/// A sink that reaches an AWS service (built with the AWS configuration, feature `aws`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwsSinkSpec {
    /// An SNS topic ARN.
    Sns(String),
    /// `eventbridge` (the default bus) or `eventbridge:BUS` (a name or ARN).
    EventBridge(Option<String>),
    /// `securityhub`: findings of the account's default product.
    SecurityHub,
}

impl AwsSinkSpec {
    pub fn parse(spec: &str) -> Option<AwsSinkSpec> {
        if is_sns_topic(spec) {
            return Some(AwsSinkSpec::Sns(spec.to_owned()));
        }
        if spec == "securityhub" {
            return Some(AwsSinkSpec::SecurityHub);
        }
        if spec == "eventbridge" {
            return Some(AwsSinkSpec::EventBridge(None));
        }
        let bus = spec.strip_prefix("eventbridge:")?;
        (!bus.is_empty()).then(|| AwsSinkSpec::EventBridge(Some(bus.to_owned())))
    }
}

/// Parses a sink spec: `file:PATH`, `http(s)://...` (webhook). The AWS sinks
/// ([`AwsSinkSpec`]) are built by the caller, which holds the AWS configuration.
pub fn parse_sink(spec: &str) -> Result<Box<dyn AlertSink>, SinkSpecError> {
    if let Some(path) = spec.strip_prefix("file:") {
        return Ok(Box::new(FileSink { path: path.into() }));
    }
    if spec.starts_with("https://") {
        return Ok(Box::new(WebhookSink::new(spec)));
    }
    if let Some(rest) = spec.strip_prefix("http://") {
        let sink = WebhookSink::new(spec);
        let authority = rest.split('/').next().unwrap_or_default();
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => authority.split(':').next().unwrap_or_default(),
        };
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        return if loopback {
            Ok(Box::new(sink))
        } else {
            Err(SinkSpecError::NotHttps(sink.describe()))
        };
    }
    Err(SinkSpecError::Unknown(spec.to_owned()))
}
