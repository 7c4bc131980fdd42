//! Where alerts go: a file (NDJSON) or a Slack-compatible webhook. (stdout is the CLI's;
//! Amazon SNS arrives with the AWS path.)
//!
//! Delivery is at least once: each send is retried with backoff, and a sink that still fails
//! is reported as an error so the caller can keep its state unchanged and send the same
//! alerts again next run. Alerts are never dropped silently.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::detect::Alert;

/// A sink that could not take the alerts.
#[derive(Debug, thiserror::Error)]
#[error("sink {sink}: {reason} (after {attempts} attempt(s))")]
pub struct SinkError {
    pub sink: String,
    pub reason: String,
    pub attempts: u32,
}

/// Somewhere alerts can be delivered.
pub trait AlertSink: std::fmt::Debug + Send + Sync {
    /// For messages: `file:alerts.ndjson`, `https://hooks.example/...` (query strings and
    /// paths of webhooks are secrets and are not shown).
    fn describe(&self) -> String;
    /// Delivers all alerts, or fails as a whole.
    fn deliver(&self, alerts: &[Alert]) -> Result<(), String>;
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

    fn deliver(&self, alerts: &[Alert]) -> Result<(), String> {
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        let mut buf = Vec::new();
        for a in alerts {
            serde_json::to_writer(&mut buf, a).map_err(|e| e.to_string())?;
            buf.push(b'\n');
        }
        // One append of whole lines: concurrent writers never interleave inside a line.
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| e.to_string())?;
        f.write_all(&buf).map_err(|e| e.to_string())?;
        f.sync_data().map_err(|e| e.to_string())
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

    fn deliver(&self, alerts: &[Alert]) -> Result<(), String> {
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
                .map_err(|e| format!("alert {}: {e}", a.dedup_key))?;
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
        let mut last = String::new();
        let mut ok = false;
        for attempt in 0..attempts.max(1) {
            if attempt > 0 {
                std::thread::sleep(backoff * 2u32.pow(attempt - 1));
            }
            match sink.deliver(alerts) {
                Ok(()) => {
                    ok = true;
                    break;
                }
                Err(e) => last = e,
            }
        }
        if !ok {
            failures.push(SinkError {
                sink: sink.describe(),
                reason: last,
                attempts: attempts.max(1),
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

    async fn publish(&self, alerts: &[Alert]) -> Result<(), String> {
        use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
        let fifo = self.topic_arn.ends_with(".fifo");
        let attr = |v: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .map_err(|e| e.to_string())
        };
        for chunk in alerts.chunks(10) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, a) in chunk.iter().enumerate() {
                let body = serde_json::to_string(a).map_err(|e| e.to_string())?;
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
                entries.push(e.build().map_err(|e| e.to_string())?);
            }
            let out = self
                .client
                .publish_batch()
                .topic_arn(&self.topic_arn)
                .set_publish_batch_request_entries(Some(entries))
                .send()
                .await
                .map_err(|e| aws_sdk_sns::error::DisplayErrorContext(e).to_string())?;
            if let Some(f) = out.failed().first() {
                return Err(format!(
                    "{} of {} alert(s) not published, first: {} {}",
                    out.failed().len(),
                    chunk.len(),
                    f.code(),
                    f.message().unwrap_or_default()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(feature = "aws")]
impl AlertSink for SnsSink {
    fn describe(&self) -> String {
        self.topic_arn.clone()
    }

    fn deliver(&self, alerts: &[Alert]) -> Result<(), String> {
        crate::s3::block_on(&self.handle, self.publish(alerts))
    }
}

/// Whether a sink spec names an SNS topic (an `arn:...:sns:...` ARN).
pub fn is_sns_topic(spec: &str) -> bool {
    spec.starts_with("arn:") && spec.split(':').nth(2) == Some("sns")
}

/// Parses a sink spec: `file:PATH`, `http(s)://...` (webhook). SNS topic ARNs are built by
/// the caller, which holds the AWS configuration ([`SnsSink::new`], feature `aws`).
pub fn parse_sink(spec: &str) -> Result<Box<dyn AlertSink>, String> {
    if let Some(path) = spec.strip_prefix("file:") {
        return Ok(Box::new(FileSink { path: path.into() }));
    }
    if spec.starts_with("https://") || spec.starts_with("http://") {
        return Ok(Box::new(WebhookSink::new(spec)));
    }
    Err(format!(
        "unknown sink {spec:?}: use file:PATH, an http(s):// webhook URL or an SNS topic ARN"
    ))
}
