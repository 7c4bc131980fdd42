//! What invokes the ingest function, as types: the triggers of `template.yaml` and the
//! shapes S3 uses to announce an object.
//!
//! | payload | type |
//! |---|---|
//! | `{"kms-audit": "compact", "days": N, "vacuum_days": D}` (the compaction schedule) | [`CompactRequest`] |
//! | SQS messages (EventBridge → SQS → Lambda, the template's path) | [`SqsBatch`], each body a [`Notification`] |
//! | an S3 event notification, invoked directly | [`S3Notification`] (`aws_lambda_events` `S3Event`) |
//! | an EventBridge "Object Created" event | [`S3EventBridge`] (`aws_lambda_events` `EventBridgeEvent`) |
//! | S3's `s3:TestEvent`, sent when a notification is configured | [`S3TestEvent`] |
//! | an S3 notification wrapped by SNS (S3 → SNS → SQS) | [`SnsEnvelope`] |
//! | an S3 notification without the fields `S3Event` requires (some emulators omit `userIdentity`) | [`LenientS3Notification`] |
//!
//! Serde tries the shapes in that order (untagged enums); each typed shape checks its event
//! source, so an SQS batch is never read as an S3 notification.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::s3::S3Event;
use aws_lambda_events::sqs::SqsEvent;
use serde::Deserialize;
use serde_json::Value;

/// One invocation's payload.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum IngestEvent {
    Compact(CompactRequest),
    Sqs(SqsBatch),
    Direct(Notification),
    /// No shape the function accepts: refused with an error that names it.
    Unrecognised(Value),
}

/// What announces one or more objects: an invocation's payload, or an SQS message's body.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Notification {
    S3(S3Notification),
    // Boxed: an EventBridge event is ten times the size of the other shapes.
    EventBridge(Box<S3EventBridge>),
    TestEvent(S3TestEvent),
    Sns(SnsEnvelope),
    LenientS3(LenientS3Notification),
}

/// The scheduled compaction of the recent partitions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompactRequest {
    #[serde(rename = "kms-audit")]
    pub mode: CompactMode,
    /// Days back from today (UTC), today included; default 3, at most 366.
    #[serde(default)]
    pub days: Option<u64>,
    /// Then vacuum: delete files no version younger than this many days references.
    #[serde(default)]
    pub vacuum_days: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompactMode {
    Compact,
}

impl CompactRequest {
    pub fn days(&self) -> u32 {
        self.days.unwrap_or(3).clamp(1, 366) as u32
    }
}

/// SQS messages: every record's `eventSource` is `aws:sqs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "SqsEvent")]
pub struct SqsBatch(pub SqsEvent);

impl TryFrom<SqsEvent> for SqsBatch {
    type Error = &'static str;
    fn try_from(e: SqsEvent) -> Result<Self, Self::Error> {
        from_source(e, |e| &e.records, |r| r.event_source.as_deref(), "aws:sqs").map(SqsBatch)
    }
}

/// An S3 event notification: every record's `eventSource` is `aws:s3`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "S3Event")]
pub struct S3Notification(pub S3Event);

impl TryFrom<S3Event> for S3Notification {
    type Error = &'static str;
    fn try_from(e: S3Event) -> Result<Self, Self::Error> {
        from_source(e, |e| &e.records, |r| r.event_source.as_deref(), "aws:s3").map(S3Notification)
    }
}

/// `event` when it has records and all come from `source`.
fn from_source<E, R>(
    event: E,
    records: impl Fn(&E) -> &Vec<R>,
    source_of: impl Fn(&R) -> Option<&str>,
    source: &'static str,
) -> Result<E, &'static str> {
    let rs = records(&event);
    if !rs.is_empty() && rs.iter().all(|r| source_of(r) == Some(source)) {
        Ok(event)
    } else {
        Err("records from another event source")
    }
}

/// An EventBridge event from S3 (`source` `aws.s3`).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "EventBridgeEvent<S3Detail>")]
pub struct S3EventBridge(pub EventBridgeEvent<S3Detail>);

impl TryFrom<EventBridgeEvent<S3Detail>> for S3EventBridge {
    type Error = &'static str;
    fn try_from(e: EventBridgeEvent<S3Detail>) -> Result<Self, Self::Error> {
        if e.source == "aws.s3" {
            Ok(S3EventBridge(e))
        } else {
            Err("an EventBridge event from another source")
        }
    }
}

/// The `detail` of S3's EventBridge events (`aws_lambda_events` has no type for it). Other
/// detail types (`Object Deleted`...) may carry neither field.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct S3Detail {
    #[serde(default)]
    pub bucket: Option<Named>,
    #[serde(default)]
    pub object: Option<DetailObject>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Named {
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct DetailObject {
    pub key: String,
    #[serde(default)]
    pub size: Option<u64>,
}

/// S3's test message (`aws_lambda_events` has no type for it).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawTestEvent")]
pub struct S3TestEvent {
    pub bucket: Option<String>,
}

#[derive(Deserialize)]
struct RawTestEvent {
    #[serde(rename = "Event")]
    event: String,
    #[serde(rename = "Bucket", default)]
    bucket: Option<String>,
}

impl TryFrom<RawTestEvent> for S3TestEvent {
    type Error = &'static str;
    fn try_from(e: RawTestEvent) -> Result<Self, Self::Error> {
        if e.event == "s3:TestEvent" {
            Ok(S3TestEvent { bucket: e.bucket })
        } else {
            Err("not s3:TestEvent")
        }
    }
}

/// An SNS notification as SNS delivers it to SQS: the S3 notification is its `Message` text.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawSns")]
pub struct SnsEnvelope {
    pub message: String,
}

#[derive(Deserialize)]
struct RawSns {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Message")]
    message: String,
}

impl TryFrom<RawSns> for SnsEnvelope {
    type Error = &'static str;
    fn try_from(e: RawSns) -> Result<Self, Self::Error> {
        if e.kind == "Notification" {
            Ok(SnsEnvelope { message: e.message })
        } else {
            Err("an SNS message that is not a Notification")
        }
    }
}

/// An S3 notification read for the fields that name objects only: the fallback for
/// producers that omit what `S3Event` requires (`eventTime`, `userIdentity`,
/// `requestParameters`).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawLenient")]
pub struct LenientS3Notification {
    pub records: Vec<LenientS3Record>,
}

#[derive(Deserialize)]
struct RawLenient {
    #[serde(rename = "Records")]
    records: Vec<LenientS3Record>,
}

impl TryFrom<RawLenient> for LenientS3Notification {
    type Error = &'static str;
    fn try_from(e: RawLenient) -> Result<Self, Self::Error> {
        from_source(e, |e| &e.records, |r| r.event_source.as_deref(), "aws:s3")
            .map(|e| LenientS3Notification { records: e.records })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LenientS3Record {
    #[serde(default)]
    pub event_source: Option<String>,
    #[serde(default)]
    pub event_name: Option<String>,
    #[serde(default)]
    pub s3: Option<LenientS3Entity>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct LenientS3Entity {
    #[serde(default)]
    pub bucket: Option<Named>,
    #[serde(default)]
    pub object: Option<LenientS3Object>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct LenientS3Object {
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
}

/// An object named by an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    /// The key as stored (decoded).
    pub key: String,
    pub size: Option<u64>,
}

impl ObjectRef {
    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// What one notification asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    Objects(Vec<ObjectRef>),
    /// S3's test message, sent when a notification is configured.
    TestEvent,
    /// Events that carry no created object (deletions, other detail types).
    Nothing(String),
}

/// A notification that names no object it can be held to.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("{shape} without {field}")]
    Missing {
        shape: &'static str,
        field: &'static str,
    },
    #[error("SQS message without a body")]
    NoBody,
    #[error("message body is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error(
        "neither an S3 notification, an EventBridge event from S3, an S3 test event nor an SNS notification of one: {0}"
    )]
    Unrecognised(#[source] serde_json::Error),
}

/// Decodes a key of an S3 event notification: `+` is a space, then percent-decoding.
pub fn decode_notification_key(key: &str) -> String {
    let plus = key.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

impl Notification {
    /// Reads a notification from text (an SQS message's body, an SNS message).
    pub fn from_text(text: &str) -> Result<Notification, EventError> {
        let v: Value = serde_json::from_str(text).map_err(EventError::NotJson)?;
        Notification::deserialize(v).map_err(EventError::Unrecognised)
    }

    /// The objects it announces.
    pub fn work(&self) -> Result<Work, EventError> {
        match self {
            Notification::TestEvent(_) => Ok(Work::TestEvent),
            Notification::Sns(sns) => Notification::from_text(&sns.message)?.work(),
            Notification::EventBridge(eb) => {
                let e = &eb.0;
                if e.detail_type != "Object Created" {
                    return Ok(Work::Nothing(format!("EventBridge {}", e.detail_type)));
                }
                let missing = |field| EventError::Missing {
                    shape: "EventBridge event",
                    field,
                };
                let bucket = e
                    .detail
                    .bucket
                    .as_ref()
                    .ok_or(missing("detail.bucket.name"))?;
                let object = e
                    .detail
                    .object
                    .as_ref()
                    .ok_or(missing("detail.object.key"))?;
                // EventBridge keys are not URL-encoded.
                Ok(Work::Objects(vec![ObjectRef {
                    bucket: bucket.name.clone(),
                    key: object.key.clone(),
                    size: object.size,
                }]))
            }
            Notification::S3(S3Notification(e)) => objects(e.records.iter().map(|r| {
                (
                    r.event_name.as_deref(),
                    r.s3.bucket.name.as_deref(),
                    r.s3.object.key.as_deref(),
                    r.s3.object.size.and_then(|s| u64::try_from(s).ok()),
                )
            })),
            Notification::LenientS3(e) => objects(e.records.iter().map(|r| {
                let s3 = r.s3.as_ref();
                let object = s3.and_then(|s| s.object.as_ref());
                (
                    r.event_name.as_deref(),
                    s3.and_then(|s| s.bucket.as_ref()).map(|b| b.name.as_str()),
                    object.and_then(|o| o.key.as_deref()),
                    object.and_then(|o| o.size),
                )
            })),
        }
    }
}

/// The created objects of S3 notification records `(eventName, bucket, key, size)`.
fn objects<'a>(
    records: impl Iterator<
        Item = (
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            Option<u64>,
        ),
    >,
) -> Result<Work, EventError> {
    let missing = |field| EventError::Missing {
        shape: "S3 record",
        field,
    };
    let mut out = Vec::new();
    for (name, bucket, key, size) in records {
        let name = name.unwrap_or("");
        if !name.is_empty() && !name.starts_with("ObjectCreated") {
            continue; // removals, restores, replication events
        }
        out.push(ObjectRef {
            bucket: bucket.ok_or(missing("s3.bucket.name"))?.to_owned(),
            key: decode_notification_key(key.ok_or(missing("s3.object.key"))?),
            size,
        });
    }
    if out.is_empty() {
        return Ok(Work::Nothing("no ObjectCreated records".into()));
    }
    Ok(Work::Objects(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(v: Value) -> IngestEvent {
        serde_json::from_value(v).expect("every payload reads as some IngestEvent")
    }

    fn direct_work(v: Value) -> Result<Work, EventError> {
        match event(v) {
            IngestEvent::Direct(n) => n.work(),
            other => panic!("not a direct notification: {other:?}"),
        }
    }

    #[test]
    fn notification_keys_are_url_decoded() {
        assert_eq!(
            decode_notification_key("a+b%2Bc%3D.json.gz"),
            "a b+c=.json.gz"
        );
        assert_eq!(
            decode_notification_key("AWSLogs/1/x.json.gz"),
            "AWSLogs/1/x.json.gz"
        );
    }

    #[test]
    fn each_shape_reads_as_its_type() {
        let full = json!({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3",
            "awsRegion": "us-east-1", "eventTime": "2026-11-01T10:05:00.000Z",
            "eventName": "ObjectCreated:Put", "userIdentity": {"principalId": "AWS:X"},
            "requestParameters": {"sourceIPAddress": "10.0.0.1"}, "responseElements": {},
            "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": "b"},
                   "object": {"key": "a+b.json.gz", "size": 3}}}]});
        assert!(matches!(
            event(full.clone()),
            IngestEvent::Direct(Notification::S3(_))
        ));
        // An emulator's record without userIdentity: the lenient fallback.
        let lean = json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "b"}, "object": {"key": "a+b.json.gz", "size": 3}}},
            {"eventSource": "aws:s3", "eventName": "ObjectRemoved:Delete",
            "s3": {"bucket": {"name": "b"}, "object": {"key": "gone.json.gz"}}}]});
        assert!(matches!(
            event(lean.clone()),
            IngestEvent::Direct(Notification::LenientS3(_))
        ));
        let want = Work::Objects(vec![ObjectRef {
            bucket: "b".into(),
            key: "a b.json.gz".into(),
            size: Some(3),
        }]);
        assert_eq!(direct_work(full.clone()).ok(), Some(want.clone()));
        assert_eq!(direct_work(lean).ok(), Some(want));

        let eb = json!({"version": "0", "source": "aws.s3", "detail-type": "Object Created",
            "detail": {"bucket": {"name": "b"}, "object": {"key": "a+b.json.gz"}}});
        assert!(matches!(
            event(eb.clone()),
            IngestEvent::Direct(Notification::EventBridge(_))
        ));
        assert_eq!(
            direct_work(eb).ok(),
            Some(Work::Objects(vec![ObjectRef {
                bucket: "b".into(),
                key: "a+b.json.gz".into(),
                size: None
            }]))
        );
        let deleted = json!({"source": "aws.s3", "detail-type": "Object Deleted", "detail": {}});
        assert!(matches!(direct_work(deleted), Ok(Work::Nothing(_))));

        let test = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"});
        assert!(matches!(direct_work(test), Ok(Work::TestEvent)));
        let sns = json!({"Type": "Notification", "Message": full.to_string()});
        assert!(matches!(direct_work(sns), Ok(Work::Objects(o)) if o.len() == 1));

        let sqs = json!({"Records": [{"messageId": "m1", "body": "{}", "eventSource": "aws:sqs"}]});
        assert!(matches!(event(sqs), IngestEvent::Sqs(_)));
        let compact = json!({"kms-audit": "compact", "days": 400});
        assert!(matches!(event(compact), IngestEvent::Compact(c) if c.days() == 366));
    }

    #[test]
    fn other_shapes_are_refused_by_name() {
        for v in [
            json!({"hello": 1}),
            json!({"source": "aws.ec2", "detail-type": "x", "detail": {}}),
            json!({"Records": [{"eventSource": "aws:dynamodb"}]}),
            json!({"kms-audit": "vacuum"}),
        ] {
            assert!(
                matches!(event(v.clone()), IngestEvent::Unrecognised(_)),
                "{v}"
            );
        }
        let no_key = json!({"source": "aws.s3", "detail-type": "Object Created",
            "detail": {"bucket": {"name": "b"}}});
        let err = direct_work(no_key).expect_err("no key");
        assert_eq!(
            err.to_string(),
            "EventBridge event without detail.object.key"
        );
        let err = Notification::from_text("{\"a\": 1}").expect_err("unrecognised");
        assert!(
            err.to_string().starts_with("neither an S3 notification"),
            "{err}"
        );
        assert!(matches!(
            Notification::from_text("not json"),
            Err(EventError::NotJson(_))
        ));
    }
}
