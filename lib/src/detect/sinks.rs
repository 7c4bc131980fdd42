//! Where alerts go besides stdout (the CLI's): a file (NDJSON), a Slack-compatible webhook,
//! or an Amazon SNS topic (feature `aws`).
//!
//! Delivery is at least once: each send is retried with backoff, and a sink that still fails
//! is reported as an error so the caller can keep its state unchanged and send the same
//! alerts again next run. Alerts are never dropped silently.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::detect::Alert;

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

/// A sink that could not take the alerts.
#[derive(Debug, thiserror::Error)]
#[error("sink {sink}: {source} (after {attempts} attempt(s))")]
pub struct SinkError {
    pub sink: String,
    pub attempts: u32,
    #[source]
    pub source: DeliveryError,
}

/// A sink spec that names no sink kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown sink {0:?}: use file:PATH, an http(s):// webhook URL or an SNS topic ARN")]
pub struct UnknownSink(pub String);

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
            serde_json::to_writer(&mut buf, a).map_err(|source| DeliveryError::Encode {
                dedup_key: a.dedup_key.clone(),
                source,
            })?;
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
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(self.timeout))
            .build()
            .into();
        for a in alerts {
            let body = slack_message(a).to_string();
            agent
                .post(&self.url)
                .header("Content-Type", "application/json")
                .send(body.as_str())
                .map_err(|e| DeliveryError::Http {
                    dedup_key: a.dedup_key.clone(),
                    source: Box::new(e),
                })?;
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

/// Amazon SNS: one message per alert, published in batches of 10. The subject names the
/// severity and rule, the body is the alert as JSON (the contract of DESIGN.md), and the
/// message attributes `severity` and `rule_id` let subscriptions filter (for instance, only
/// `critical` to a pager). On a FIFO topic (`.fifo`), the group is the rule and the
/// deduplication id the alert's `dedup_key`, so SNS drops a re-sent alert too.
#[cfg(feature = "aws")]
#[derive(Debug, Clone)]
pub struct SnsSink {
    client: aws_sdk_sns::Client,
    handle: tokio::runtime::Handle,
    pub topic_arn: String,
}

#[cfg(feature = "aws")]
impl SnsSink {
    /// A sink for a topic, with a client configured like the others (`AWS_ENDPOINT_URL`
    /// honoured). Keeps the current tokio runtime's handle.
    pub fn new(aws: &crate::s3::Aws, topic_arn: &str) -> SnsSink {
        SnsSink {
            client: aws_sdk_sns::Client::new(&aws.config),
            handle: tokio::runtime::Handle::current(),
            topic_arn: topic_arn.to_owned(),
        }
    }

    async fn publish(&self, alerts: &[Alert]) -> Result<(), DeliveryError> {
        use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
        let fifo = self.topic_arn.ends_with(".fifo");
        let attr = |v: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .map_err(|e| aws_error("building a message attribute", e))
        };
        for chunk in alerts.chunks(10) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, a) in chunk.iter().enumerate() {
                let body = serde_json::to_string(a).map_err(|source| DeliveryError::Encode {
                    dedup_key: a.dedup_key.clone(),
                    source,
                })?;
                let subject: String = format!(
                    "[{}] kms-audit {}: {}",
                    a.severity.as_str().to_uppercase(),
                    a.rule_id,
                    a.title
                )
                .chars()
                .filter(|c| !c.is_control())
                .take(100)
                .collect();
                let mut e = PublishBatchRequestEntry::builder()
                    .id(format!("a{i}"))
                    .message(body)
                    .subject(subject)
                    .message_attributes("severity", attr(a.severity.as_str())?)
                    .message_attributes("rule_id", attr(&a.rule_id)?);
                if fifo {
                    e = e
                        .message_group_id(a.rule_id.clone())
                        .message_deduplication_id(format!(
                            "{:016x}",
                            crate::lake::fnv1a64(a.dedup_key.as_bytes())
                        ));
                }
                entries.push(
                    e.build()
                        .map_err(|e| aws_error("building a PublishBatch entry", e))?,
                );
            }
            let out = self
                .client
                .publish_batch()
                .topic_arn(&self.topic_arn)
                .set_publish_batch_request_entries(Some(entries))
                .send()
                .await
                .map_err(|e| aws_error("PublishBatch", e))?;
            if let Some(f) = out.failed().first() {
                return Err(DeliveryError::Rejected {
                    failed: out.failed().len(),
                    total: chunk.len(),
                    code: f.code().to_owned(),
                    message: f.message().unwrap_or_default().to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// An AWS SDK error, with the SDK's whole context in the message and kept as the source.
#[cfg(feature = "aws")]
fn aws_error<E>(operation: &'static str, e: E) -> DeliveryError
where
    E: std::error::Error + Send + Sync + 'static,
{
    DeliveryError::Aws {
        operation,
        detail: aws_sdk_sns::error::DisplayErrorContext(&e).to_string(),
        source: Box::new(e),
    }
}

#[cfg(feature = "aws")]
impl AlertSink for SnsSink {
    fn describe(&self) -> String {
        self.topic_arn.clone()
    }

    fn deliver(&self, alerts: &[Alert]) -> Result<(), DeliveryError> {
        crate::s3::block_on(&self.handle, self.publish(alerts))
    }
}

/// Whether a sink spec names an SNS topic (an `arn:...:sns:...` ARN).
pub fn is_sns_topic(spec: &str) -> bool {
    spec.starts_with("arn:") && spec.split(':').nth(2) == Some("sns")
}

/// Parses a sink spec: `file:PATH`, `http(s)://...` (webhook). SNS topic ARNs are built by
/// the caller, which holds the AWS configuration ([`SnsSink::new`], feature `aws`).
pub fn parse_sink(spec: &str) -> Result<Box<dyn AlertSink>, UnknownSink> {
    if let Some(path) = spec.strip_prefix("file:") {
        return Ok(Box::new(FileSink { path: path.into() }));
    }
    if spec.starts_with("https://") || spec.starts_with("http://") {
        return Ok(Box::new(WebhookSink::new(spec)));
    }
    Err(UnknownSink(spec.to_owned()))
}
