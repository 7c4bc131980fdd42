//! The AWS sinks: Amazon SNS, Amazon EventBridge and AWS Security Hub. Each keeps the
//! current tokio runtime's handle and blocks on it from [`AlertSink::deliver`] (delivery runs
//! on blocking threads), with clients configured like the others (`AWS_ENDPOINT_URL`
//! honoured).

use std::collections::BTreeMap;
use std::future::Future;

use super::{AlertSink, AwsSinkSpec, DeliveryError, alert_json};
use crate::catalog::{Framework, References, mitre_technique};
use crate::detect::{Alert, Rule, Severity};
use crate::s3::Aws;

/// The sink for a spec. `rules` give Security Hub findings their types and compliance
/// references. Must be called inside a tokio runtime.
pub fn aws_sink(aws: &Aws, spec: &AwsSinkSpec, rules: &[Rule]) -> Box<dyn AlertSink> {
    match spec {
        AwsSinkSpec::Sns(topic) => Box::new(SnsSink::new(aws, topic)),
        AwsSinkSpec::EventBridge(bus) => Box::new(EventBridgeSink::new(aws, bus.as_deref())),
        AwsSinkSpec::SecurityHub => Box::new(SecurityHubSink::new(aws, rules)),
    }
}

/// Entries a service refused, retried this many times before the delivery fails.
const ENTRY_RETRIES: usize = 2;

/// An alert a batch API took the request for but refused: the service's code and message.
struct Refused<'a> {
    alert: &'a Alert,
    code: String,
    message: String,
}

/// Sends `chunk` through `send`, which answers with the entries the service refused, and
/// sends those again, [`ENTRY_RETRIES`] times, before failing with the first one named.
async fn send_retrying_refused<'a, F, Fut>(
    chunk: &'a [Alert],
    mut send: F,
) -> Result<(), DeliveryError>
where
    F: FnMut(Vec<&'a Alert>) -> Fut,
    Fut: Future<Output = Result<Vec<Refused<'a>>, DeliveryError>>,
{
    let mut pending: Vec<&Alert> = chunk.iter().collect();
    for attempt in 0..=ENTRY_RETRIES {
        let total = pending.len();
        let refused = send(pending).await?;
        let Some(first) = refused.first() else {
            return Ok(());
        };
        if attempt == ENTRY_RETRIES {
            return Err(DeliveryError::Rejected {
                failed: refused.len(),
                total,
                code: first.code.clone(),
                message: format!("alert {}: {}", first.alert.dedup_key, first.message),
            });
        }
        pending = refused.into_iter().map(|r| r.alert).collect();
    }
    Ok(())
}

/// Amazon SNS: one message per alert, published in batches of 10. The subject names the
/// severity and rule, the body is the alert as JSON (the contract of DESIGN.md), and the
/// message attributes `severity` and `rule_id` let subscriptions filter (for instance, only
/// `critical` to a pager). On a FIFO topic (`.fifo`), the group is the rule and the
/// deduplication id the alert's `dedup_key`, so SNS drops a re-sent alert too.
#[derive(Debug, Clone)]
pub struct SnsSink {
    client: aws_sdk_sns::Client,
    handle: tokio::runtime::Handle,
    pub topic_arn: String,
}

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
                let body = alert_json(a)?;
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

impl AlertSink for SnsSink {
    fn describe(&self) -> String {
        self.topic_arn.clone()
    }

    fn deliver(&self, alerts: &[Alert]) -> Result<(), DeliveryError> {
        crate::s3::block_on(&self.handle, self.publish(alerts))
    }
}

/// Amazon EventBridge: `PutEvents` in batches of 10, `Source` `kms-audit`, `DetailType`
/// `KMS alert`, `Detail` the alert as JSON (the contract of DESIGN.md), so rules route on
/// `detail.severity` and `detail.rule_id`. Entries the bus refuses are sent again
/// ([`ENTRY_RETRIES`] times), then named in the error.
#[derive(Debug, Clone)]
pub struct EventBridgeSink {
    client: aws_sdk_eventbridge::Client,
    handle: tokio::runtime::Handle,
    /// A bus name or ARN; `None` is the account's default bus.
    pub bus: Option<String>,
}

/// The `source` of kms-audit's events.
pub const EVENT_SOURCE: &str = "kms-audit";
/// The `detail-type` of an alert.
pub const EVENT_DETAIL_TYPE: &str = "KMS alert";

impl EventBridgeSink {
    pub fn new(aws: &Aws, bus: Option<&str>) -> EventBridgeSink {
        EventBridgeSink {
            client: aws_sdk_eventbridge::Client::new(&aws.config),
            handle: tokio::runtime::Handle::current(),
            bus: bus.map(str::to_owned),
        }
    }

    async fn publish(&self, alerts: &[Alert]) -> Result<(), DeliveryError> {
        for chunk in alerts.chunks(10) {
            send_retrying_refused(chunk, |batch| self.put_events(batch)).await?;
        }
        Ok(())
    }

    /// One `PutEvents` call; returns the entries the bus refused.
    async fn put_events<'a>(
        &self,
        batch: Vec<&'a Alert>,
    ) -> Result<Vec<Refused<'a>>, DeliveryError> {
        use aws_sdk_eventbridge::types::PutEventsRequestEntry;
        let mut entries = Vec::with_capacity(batch.len());
        for a in &batch {
            entries.push(
                PutEventsRequestEntry::builder()
                    .source(EVENT_SOURCE)
                    .detail_type(EVENT_DETAIL_TYPE)
                    .detail(alert_json(a)?)
                    .set_event_bus_name(self.bus.clone())
                    .set_resources(a.key_arn.clone().map(|k| vec![k]))
                    .build(),
            );
        }
        let out = self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| aws_error("PutEvents", e))?;
        // Results come in request order; a refused one has an error code.
        let refused: Vec<Refused<'a>> = batch
            .iter()
            .zip(out.entries())
            .filter_map(|(a, r)| {
                Some(Refused {
                    alert: a,
                    code: r.error_code()?.to_owned(),
                    message: r.error_message().unwrap_or_default().to_owned(),
                })
            })
            .collect();
        if out.failed_entry_count() > 0 && refused.is_empty() {
            // Failures the answer does not attribute cannot be retried one by one.
            return Err(DeliveryError::Rejected {
                failed: usize::try_from(out.failed_entry_count()).unwrap_or(0),
                total: batch.len(),
                code: "PutEvents".into(),
                message: "no entry says which".into(),
            });
        }
        Ok(refused)
    }
}

impl AlertSink for EventBridgeSink {
    fn describe(&self) -> String {
        format!("eventbridge:{}", self.bus.as_deref().unwrap_or("default"))
    }

    fn deliver(&self, alerts: &[Alert]) -> Result<(), DeliveryError> {
        crate::s3::block_on(&self.handle, self.publish(alerts))
    }
}

/// AWS Security Hub: one ASFF finding per alert through `BatchImportFindings` (batches of
/// 100), as the account's default product. The finding's `Id` derives from the alert's
/// `dedup_key`, so an alert sent again updates its finding instead of adding one.
#[derive(Debug, Clone)]
pub struct SecurityHubSink {
    client: aws_sdk_securityhub::Client,
    sts: aws_sdk_sts::Client,
    handle: tokio::runtime::Handle,
    region: String,
    /// Each rule's references, for the finding's types and compliance requirements.
    references: BTreeMap<String, References>,
}

/// The ASFF schema version of the findings.
pub const ASFF_SCHEMA_VERSION: &str = "2018-10-08";

impl SecurityHubSink {
    pub fn new(aws: &Aws, rules: &[Rule]) -> SecurityHubSink {
        SecurityHubSink {
            client: aws_sdk_securityhub::Client::new(&aws.config),
            sts: aws_sdk_sts::Client::new(&aws.config),
            handle: tokio::runtime::Handle::current(),
            region: aws
                .config
                .region()
                .map(|r| r.to_string())
                .unwrap_or_else(|| crate::s3::FALLBACK_REGION.to_owned()),
            references: rules
                .iter()
                .map(|r| (r.meta.id.clone(), r.meta.references.clone()))
                .collect(),
        }
    }

    async fn publish(&self, alerts: &[Alert]) -> Result<(), DeliveryError> {
        let me = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| aws_error("GetCallerIdentity", e))?;
        let account = me.account().unwrap_or_default().to_owned();
        let partition = me
            .arn()
            .and_then(|a| a.split(':').nth(1))
            .unwrap_or("aws")
            .to_owned();
        let target = FindingTarget {
            account,
            region: self.region.clone(),
            partition,
            now: crate::time::format_micros(crate::time::now_micros()),
        };
        for chunk in alerts.chunks(100) {
            send_retrying_refused(chunk, |batch| self.import(batch, &target)).await?;
        }
        Ok(())
    }

    /// One `BatchImportFindings` call; returns the alerts whose findings were refused.
    async fn import<'a>(
        &self,
        batch: Vec<&'a Alert>,
        target: &FindingTarget,
    ) -> Result<Vec<Refused<'a>>, DeliveryError> {
        let none = References::default();
        let findings = batch
            .iter()
            .map(|a| {
                let refs = self.references.get(&a.rule_id).unwrap_or(&none);
                asff_finding(a, refs, target)
            })
            .collect();
        let out = self
            .client
            .batch_import_findings()
            .set_findings(Some(findings))
            .send()
            .await
            .map_err(|e| aws_error("BatchImportFindings", e))?;
        out.failed_findings()
            .iter()
            .map(|f| {
                let id = f.id().unwrap_or_default();
                let code = f.error_code().unwrap_or_default().to_owned();
                let message = format!("finding {id}: {}", f.error_message().unwrap_or_default());
                // A refusal names its finding; one that is none of this batch's fails as is.
                match batch.iter().find(|a| finding_id(a) == id) {
                    Some(alert) => Ok(Refused {
                        alert,
                        code,
                        message,
                    }),
                    None => Err(DeliveryError::Rejected {
                        failed: out.failed_findings().len(),
                        total: batch.len(),
                        code,
                        message,
                    }),
                }
            })
            .collect()
    }
}

impl AlertSink for SecurityHubSink {
    fn describe(&self) -> String {
        format!("securityhub:{}", self.region)
    }

    fn deliver(&self, alerts: &[Alert]) -> Result<(), DeliveryError> {
        crate::s3::block_on(&self.handle, self.publish(alerts))
    }
}

/// Where findings are imported: the calling account's default product in a region.
#[derive(Debug, Clone)]
pub struct FindingTarget {
    pub account: String,
    pub region: String,
    pub partition: String,
    /// `UpdatedAt` of the findings (RFC 3339).
    pub now: String,
}

/// The finding `Id` of an alert: stable for its incident (`dedup_key`).
pub fn finding_id(a: &Alert) -> String {
    format!("kms-audit/{}", a.dedup_key)
}

/// ASFF `Types` for a rule's ATT&CK techniques: `TTPs/<tactic>` for the tactics ASFF has,
/// and `Effects/...` for impact and exfiltration (which ASFF files under effects). Rules
/// without a technique are configuration findings.
pub fn asff_types(refs: &References) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for id in refs.ids(Framework::Mitre) {
        let Some(t) = mitre_technique(id) else {
            continue;
        };
        for tactic in t.tactics {
            let ty = match (*tactic, t.id) {
                ("Impact", "T1485" | "T1486") => "Effects/Data Destruction".to_owned(),
                ("Impact", _) => "Effects/Denial of Service".to_owned(),
                ("Exfiltration", _) => "Effects/Data Exfiltration".to_owned(),
                (tactic, _) => format!("TTPs/{tactic}"),
            };
            if !out.contains(&ty) {
                out.push(ty);
            }
        }
    }
    if out.is_empty() {
        out.push("Software and Configuration Checks/AWS Security Best Practices".to_owned());
    }
    out
}

fn asff_label(s: Severity) -> aws_sdk_securityhub::types::SeverityLabel {
    use aws_sdk_securityhub::types::SeverityLabel;
    match s {
        Severity::Critical => SeverityLabel::Critical,
        Severity::High => SeverityLabel::High,
        Severity::Medium => SeverityLabel::Medium,
        Severity::Low => SeverityLabel::Low,
        Severity::Info => SeverityLabel::Informational,
    }
}

/// Text cut to `max` characters (ASFF limits its fields).
fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// The AWS Security Finding Format finding of an alert.
pub fn asff_finding(
    a: &Alert,
    refs: &References,
    target: &FindingTarget,
) -> aws_sdk_securityhub::types::AwsSecurityFinding {
    use aws_sdk_securityhub::types::{AwsSecurityFinding, Compliance, Resource, Severity as Sev};
    let mut resources = Vec::new();
    if let Some(key) = &a.key_arn {
        resources.push(
            Resource::builder()
                .r#type("AwsKmsKey")
                .id(key)
                .set_region(
                    key.split(':')
                        .nth(3)
                        .map(str::to_owned)
                        .or(a.aws_region.clone()),
                )
                .build(),
        );
    }
    if let Some(p) = &a.principal {
        resources.push(
            Resource::builder()
                .r#type(crate::detect::ocsf::principal_type(p))
                .id(p)
                .build(),
        );
    }
    if resources.is_empty() {
        // A finding needs a resource: the account the events came from.
        let account = a
            .account_id
            .clone()
            .unwrap_or_else(|| target.account.clone());
        resources.push(Resource::builder().r#type("AwsAccount").id(account).build());
    }
    let mut f = AwsSecurityFinding::builder()
        .schema_version(ASFF_SCHEMA_VERSION)
        .id(finding_id(a))
        .product_arn(format!(
            "arn:{p}:securityhub:{r}:{acct}:product/{acct}/default",
            p = target.partition,
            r = target.region,
            acct = target.account
        ))
        .product_name("kms-audit")
        .company_name("kms-audit")
        .generator_id(&a.rule_id)
        .aws_account_id(&target.account)
        .set_types(Some(asff_types(refs)))
        .first_observed_at(&a.first_seen)
        .last_observed_at(&a.last_seen)
        // Stable across re-sends: the finding was created when its incident began.
        .created_at(&a.first_seen)
        .updated_at(&target.now)
        .severity(
            Sev::builder()
                .label(asff_label(a.severity))
                .original(a.severity.as_str())
                .build(),
        )
        .title(cut(&a.title, 256))
        .description(cut(&a.summary, 1024))
        .set_resources(Some(resources))
        .user_defined_fields("rule_id", &a.rule_id)
        .user_defined_fields("dedup_key", cut(&a.dedup_key, 1024))
        .user_defined_fields("count", a.count.to_string())
        .user_defined_fields("source_ips", cut(&a.source_ips.join(","), 1024));
    if let Some(account) = &a.account_id {
        f = f.user_defined_fields("account_id", account);
    }
    if let Some(p) = &a.principal {
        f = f.user_defined_fields("principal", cut(p, 1024));
    }
    // The first 100 event ids, in fields of at most 1,024 characters each.
    let mut field = String::new();
    let mut n = 0;
    for id in a.event_ids.iter().take(100) {
        if !field.is_empty() && field.len() + 1 + id.len() > 1024 {
            n += 1;
            f = f.user_defined_fields(format!("event_ids_{n}"), std::mem::take(&mut field));
        }
        if !field.is_empty() {
            field.push(',');
        }
        field.push_str(id);
    }
    if !field.is_empty() {
        n += 1;
        f = f.user_defined_fields(format!("event_ids_{n}"), field);
    }
    let requirements: Vec<String> = refs
        .labels()
        .into_iter()
        .filter(|l| !l.starts_with(Framework::Mitre.title()))
        .take(32)
        .collect();
    if !requirements.is_empty() {
        f = f.compliance(
            Compliance::builder()
                .set_related_requirements(Some(requirements))
                .build(),
        );
    }
    f.build()
}

/// An AWS SDK error, with the SDK's whole context in the message and kept as the source.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(ids: usize) -> Alert {
        Alert {
            rule_id: "kms_key_deletion_scheduled".into(),
            title: "KMS key scheduled for deletion".into(),
            severity: Severity::Critical,
            first_seen: "2026-11-03T12:10:00Z".into(),
            last_seen: "2026-11-03T12:20:00Z".into(),
            count: ids as u64,
            principal: Some("arn:aws:iam::111122223333:role/Admin".into()),
            key_arn: Some("arn:aws:kms:eu-west-1:111122223333:key/k1".into()),
            account_id: Some("111122223333".into()),
            aws_region: Some("eu-west-1".into()),
            source_ips: vec!["203.0.113.66".into()],
            event_ids: (0..ids)
                .map(|i| format!("{i:08}-aaaa-bbbb-cccc-dddddddddddd"))
                .collect(),
            summary: "ScheduleKeyDeletion".into(),
            dedup_key: "kms_key_deletion_scheduled:abc".into(),
        }
    }

    #[test]
    fn attack_techniques_become_asff_types() {
        let refs = References {
            mitre: vec!["T1485".into(), "T1098".into(), "T1537".into()],
            ..References::default()
        };
        assert_eq!(
            asff_types(&refs),
            [
                "Effects/Data Destruction",
                "TTPs/Persistence",
                "TTPs/Privilege Escalation",
                "Effects/Data Exfiltration"
            ]
        );
        assert_eq!(
            asff_types(&References::default()),
            ["Software and Configuration Checks/AWS Security Best Practices"]
        );
    }

    #[test]
    fn a_finding_names_the_key_the_principal_and_the_evidence() {
        let refs = References {
            mitre: vec!["T1485".into()],
            pci: vec!["3.7.5".into()],
            security_hub: vec!["KMS.3".into()],
            ..References::default()
        };
        let target = FindingTarget {
            account: "999988887777".into(),
            region: "us-east-1".into(),
            partition: "aws".into(),
            now: "2026-11-04T00:00:00Z".into(),
        };
        let f = asff_finding(&alert(150), &refs, &target);
        assert_eq!(f.id(), Some("kms-audit/kms_key_deletion_scheduled:abc"));
        assert_eq!(
            f.product_arn(),
            Some("arn:aws:securityhub:us-east-1:999988887777:product/999988887777/default")
        );
        assert_eq!(f.generator_id(), Some("kms_key_deletion_scheduled"));
        assert_eq!(f.types(), ["Effects/Data Destruction"]);
        assert_eq!(f.created_at(), Some("2026-11-03T12:10:00Z"));
        assert_eq!(
            f.severity().and_then(|s| s.label()),
            Some(&aws_sdk_securityhub::types::SeverityLabel::Critical)
        );
        let kinds: Vec<(&str, &str)> = f
            .resources()
            .iter()
            .map(|r| (r.r#type().unwrap_or(""), r.id().unwrap_or("")))
            .collect();
        assert_eq!(
            kinds,
            [
                ("AwsKmsKey", "arn:aws:kms:eu-west-1:111122223333:key/k1"),
                ("AwsIamRole", "arn:aws:iam::111122223333:role/Admin")
            ]
        );
        assert_eq!(f.resources()[0].region(), Some("eu-west-1"));
        assert_eq!(
            f.compliance().map(|c| c.related_requirements().to_vec()),
            Some(vec![
                "PCI DSS 3.7.5".to_owned(),
                "Security Hub KMS.3".to_owned()
            ])
        );
        let fields = f.user_defined_fields().expect("fields");
        let mut listed: Vec<&str> = (1..=10)
            .filter_map(|n| fields.get(&format!("event_ids_{n}")))
            .flat_map(|v| {
                assert!(v.len() <= 1024, "a field holds at most 1,024 characters");
                v.split(',')
            })
            .collect();
        assert_eq!(listed.len(), 100, "the first 100 event ids");
        listed.dedup();
        assert_eq!(listed[0], "00000000-aaaa-bbbb-cccc-dddddddddddd");
        assert_eq!(
            fields.get("source_ips").map(String::as_str),
            Some("203.0.113.66")
        );
    }
}
