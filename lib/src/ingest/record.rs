//! From one record's bytes to a typed [`KmsEvent`].
//!
//! [`classify`] decides, cheaply, whether a record is a KMS record: records that do not
//! even contain the text `kms.amazonaws.com` are skipped without being parsed. Candidates
//! are parsed once, zero-copy, into lenient structs ([`crate::ingest::lenient`]) and then
//! [`KmsEvent::from_raw`] derives every column: the stable principal, the key ARN, the
//! encryption context and the rest.

use std::borrow::Cow;
use std::sync::LazyLock;

use crate::ingest::lenient::{Cursor, Flag, JsonError, List, Obj, StrMap, Text};
use crate::time::parse_event_time;

/// The `eventSource` of KMS records.
pub const KMS_EVENT_SOURCE: &str = "kms.amazonaws.com";

/// What became of one record.
#[derive(Debug)]
// Not boxed: a record's event is consumed at once, and boxing cost an allocation and a copy
// of the whole event per KMS record on the ingest hot path.
#[allow(clippy::large_enum_variant)]
pub enum Outcome<'a> {
    Kms(KmsEvent<'a>),
    /// Not a KMS record.
    Skipped,
    /// A KMS record (or one that may be) that cannot be used, and why.
    Rejected(RejectReason),
}

/// Why a record was rejected. The event id is included when it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectReason {
    pub event_id: Option<String>,
    pub reason: String,
}

/// Parses a record candidate. `source_object` is stored in every row.
pub fn classify<'a>(bytes: &'a [u8], source_object: &'a str) -> Outcome<'a> {
    // Every KMS record carries the event source verbatim; CloudTrail never escapes it.
    static KMS_FINDER: LazyLock<memchr::memmem::Finder<'static>> =
        LazyLock::new(|| memchr::memmem::Finder::new(KMS_EVENT_SOURCE.as_bytes()));
    if KMS_FINDER.find(bytes).is_none() {
        return Outcome::Skipped;
    }
    // Validate UTF-8 once for the whole record (serde_json would do it string by string),
    // with vector instructions chosen at run time (std's check is a word at a time).
    let text = match simdutf8::compat::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            return Outcome::Rejected(RejectReason {
                event_id: sniff_event_id(bytes),
                reason: format!("invalid UTF-8: {e}"),
            });
        }
    };
    // Filled in place and consumed by an inlined `from_raw`: returned by value, the record
    // (1.4 KB) and its event (1.2 KB) were copied at every step on their way to the columns.
    let mut raw = RawRecord::default();
    if let Err(e) = raw.read(text) {
        return Outcome::Rejected(RejectReason {
            event_id: sniff_event_id(bytes),
            reason: format!("invalid JSON: {e}"),
        });
    }
    if raw.event_source.as_str() != Some(KMS_EVENT_SOURCE) {
        return Outcome::Skipped;
    }
    KmsEvent::from_raw(raw, source_object)
}

/// Best effort event id of a record that does not parse, for the reject report.
fn sniff_event_id(bytes: &[u8]) -> Option<String> {
    let at = memchr::memmem::find(bytes, b"\"eventID\"")? + 9;
    let rest = &bytes[at..];
    let open = memchr::memchr(b'"', rest)? + 1;
    let len = memchr::memchr(b'"', &rest[open..])?;
    let id = std::str::from_utf8(&rest[open..open + len]).ok()?;
    (id.len() <= 128).then(|| id.to_owned())
}

// ---------------------------------------------------------------------------------------
// Raw, lenient shapes, read by a walk over the record ([`crate::ingest::lenient::Cursor`]). Field
// names follow CloudTrail; unknown members are validated and skipped (they are kept in the
// raw JSON columns where they matter).

#[derive(Default)]
struct RawRecord<'a> {
    event_version: Text<'a>,
    event_source: Text<'a>,
    event_name: Text<'a>,
    event_time: Text<'a>,
    event_id: Text<'a>,
    event_type: Text<'a>,
    event_category: Text<'a>,
    aws_region: Text<'a>,
    recipient_account_id: Text<'a>,
    read_only: Flag,
    management_event: Flag,
    request_id: Text<'a>,
    shared_event_id: Text<'a>,
    source_ip_address: Text<'a>,
    user_agent: Text<'a>,
    vpc_endpoint_id: Text<'a>,
    vpc_endpoint_account_id: Text<'a>,
    error_code: Text<'a>,
    error_message: Text<'a>,
    user_identity: Obj<UserIdentity<'a>>,
    /// The three blocks kept verbatim, and what is read out of two of them.
    request_parameters: Option<&'a str>,
    response_elements: Option<&'a str>,
    additional_event_data: Option<&'a str>,
    req: RequestParameters<'a>,
    resp: ResponseElements<'a>,
    resources: List<Obj<Resource<'a>>>,
    /// `tlsDetails.tlsVersion` and `serviceEventDetails.keyId`.
    tls_version: Text<'a>,
    service_event_key_id: Text<'a>,
}

impl<'a> RawRecord<'a> {
    /// Reads a whole record (which must be one JSON object and nothing else) into this
    /// empty one.
    fn read(&mut self, text: &'a str) -> Result<(), JsonError> {
        let mut c = Cursor::new(text);
        let r = self;
        c.object(|c, key| {
            match &*key {
                "eventVersion" => r.event_version = c.text()?,
                "eventSource" => r.event_source = c.text()?,
                "eventName" => r.event_name = c.text()?,
                "eventTime" => r.event_time = c.text()?,
                "eventID" => r.event_id = c.text()?,
                "eventType" => r.event_type = c.text()?,
                "eventCategory" => r.event_category = c.text()?,
                "awsRegion" => r.aws_region = c.text()?,
                "recipientAccountId" => r.recipient_account_id = c.text()?,
                "readOnly" => r.read_only = c.flag()?,
                "managementEvent" => r.management_event = c.flag()?,
                "requestID" => r.request_id = c.text()?,
                "sharedEventID" => r.shared_event_id = c.text()?,
                "sourceIPAddress" => r.source_ip_address = c.text()?,
                "userAgent" => r.user_agent = c.text()?,
                "vpcEndpointId" => r.vpc_endpoint_id = c.text()?,
                "vpcEndpointAccountId" => r.vpc_endpoint_account_id = c.text()?,
                "errorCode" => r.error_code = c.text()?,
                "errorMessage" => r.error_message = c.text()?,
                "userIdentity" => c.obj_into(&mut r.user_identity, UserIdentity::member)?,
                "requestParameters" => {
                    // A repeated member keeps its last value only.
                    r.req = RequestParameters::default();
                    let req = &mut r.req;
                    let (_, raw) = c.captured(|c| c.object(|c, key| req.member(c, key)))?;
                    r.request_parameters = Some(raw);
                }
                "responseElements" => {
                    let (resp, raw) = c.captured(|c| c.obj(ResponseElements::member))?;
                    r.resp = resp.0.unwrap_or_default();
                    r.response_elements = Some(raw);
                }
                "additionalEventData" => {
                    r.additional_event_data = Some(c.captured(Cursor::skip)?.1);
                }
                "resources" => r.resources = c.list(|c| c.obj(Resource::member))?,
                "tlsDetails" => r.tls_version = c.member_text("tlsVersion")?,
                "serviceEventDetails" => r.service_event_key_id = c.member_text("keyId")?,
                _ => c.skip()?,
            }
            Ok(())
        })?;
        c.finish()
    }
}

#[derive(Default)]
struct UserIdentity<'a> {
    kind: Text<'a>,
    principal_id: Text<'a>,
    arn: Text<'a>,
    account_id: Text<'a>,
    access_key_id: Text<'a>,
    user_name: Text<'a>,
    invoked_by: Text<'a>,
    session_context: Obj<SessionContext<'a>>,
}

impl<'a> UserIdentity<'a> {
    fn member(&mut self, c: &mut Cursor<'a>, key: Cow<'a, str>) -> Result<(), JsonError> {
        match &*key {
            "type" => self.kind = c.text()?,
            "principalId" => self.principal_id = c.text()?,
            "arn" => self.arn = c.text()?,
            "accountId" => self.account_id = c.text()?,
            "accessKeyId" => self.access_key_id = c.text()?,
            "userName" => self.user_name = c.text()?,
            "invokedBy" => self.invoked_by = c.text()?,
            "sessionContext" => c.obj_into(&mut self.session_context, SessionContext::member)?,
            _ => c.skip()?,
        }
        Ok(())
    }
}

#[derive(Default)]
struct SessionContext<'a> {
    attributes: Obj<SessionAttributes<'a>>,
    session_issuer: Obj<SessionIssuer<'a>>,
}

impl<'a> SessionContext<'a> {
    fn member(&mut self, c: &mut Cursor<'a>, key: Cow<'a, str>) -> Result<(), JsonError> {
        match &*key {
            "attributes" => self.attributes = c.obj(SessionAttributes::member)?,
            "sessionIssuer" => self.session_issuer = c.obj(SessionIssuer::member)?,
            _ => c.skip()?,
        }
        Ok(())
    }
}

#[derive(Default)]
struct SessionAttributes<'a> {
    mfa_authenticated: Flag,
    creation_date: Text<'a>,
}

impl<'a> SessionAttributes<'a> {
    fn member(&mut self, c: &mut Cursor<'a>, key: Cow<'a, str>) -> Result<(), JsonError> {
        match &*key {
            "mfaAuthenticated" => self.mfa_authenticated = c.flag()?,
            "creationDate" => self.creation_date = c.text()?,
            _ => c.skip()?,
        }
        Ok(())
    }
}

#[derive(Default)]
struct SessionIssuer<'a> {
    arn: Text<'a>,
    user_name: Text<'a>,
}

impl<'a> SessionIssuer<'a> {
    fn member(&mut self, c: &mut Cursor<'a>, key: Cow<'a, str>) -> Result<(), JsonError> {
        match &*key {
            "arn" => self.arn = c.text()?,
            "userName" => self.user_name = c.text()?,
            _ => c.skip()?,
        }
        Ok(())
    }
}

#[derive(Default)]
struct Resource<'a> {
    arn: Text<'a>,
    account_id: Text<'a>,
    kind: Text<'a>,
}

impl<'a> Resource<'a> {
    fn member(&mut self, c: &mut Cursor<'a>, key: Cow<'a, str>) -> Result<(), JsonError> {
        match &*key {
            "ARN" => self.arn = c.text()?,
            "accountId" => self.account_id = c.text()?,
            "type" => self.kind = c.text()?,
            _ => c.skip()?,
        }
        Ok(())
    }
}

#[derive(Default)]
struct RequestParameters<'a> {
    key_id: Text<'a>,
    encryption_context: StrMap<'a>,
    source_encryption_context: StrMap<'a>,
    destination_encryption_context: StrMap<'a>,
    source_key_id: Text<'a>,
    destination_key_id: Text<'a>,
    encryption_algorithm: Text<'a>,
    destination_encryption_algorithm: Text<'a>,
    signing_algorithm: Text<'a>,
    mac_algorithm: Text<'a>,
    key_spec: Text<'a>,
    key_pair_spec: Text<'a>,
    customer_master_key_spec: Text<'a>,
    key_usage: Text<'a>,
    origin: Text<'a>,
    grantee_principal: Text<'a>,
    retiring_principal: Text<'a>,
    operations: List<Text<'a>>,
    grant_id: Text<'a>,
    policy: Text<'a>,
    bypass_policy_lockout_safety_check: Flag,
    pending_window_in_days: Text<'a>,
    alias_name: Text<'a>,
    target_key_id: Text<'a>,
}

impl<'a> RequestParameters<'a> {
    fn member(&mut self, c: &mut Cursor<'a>, key: Cow<'a, str>) -> Result<(), JsonError> {
        match &*key {
            "keyId" => self.key_id = c.text()?,
            "encryptionContext" => self.encryption_context = c.str_map()?,
            "sourceEncryptionContext" => self.source_encryption_context = c.str_map()?,
            "destinationEncryptionContext" => {
                self.destination_encryption_context = c.str_map()?;
            }
            "sourceKeyId" => self.source_key_id = c.text()?,
            "destinationKeyId" => self.destination_key_id = c.text()?,
            "encryptionAlgorithm" => self.encryption_algorithm = c.text()?,
            "destinationEncryptionAlgorithm" => {
                self.destination_encryption_algorithm = c.text()?;
            }
            "signingAlgorithm" => self.signing_algorithm = c.text()?,
            "macAlgorithm" => self.mac_algorithm = c.text()?,
            "keySpec" => self.key_spec = c.text()?,
            "keyPairSpec" => self.key_pair_spec = c.text()?,
            "customerMasterKeySpec" => self.customer_master_key_spec = c.text()?,
            "keyUsage" => self.key_usage = c.text()?,
            "origin" => self.origin = c.text()?,
            "granteePrincipal" => self.grantee_principal = c.text()?,
            "retiringPrincipal" => self.retiring_principal = c.text()?,
            "operations" => self.operations = c.list(Cursor::text)?,
            "grantId" => self.grant_id = c.text()?,
            "policy" => self.policy = c.text()?,
            "bypassPolicyLockoutSafetyCheck" => {
                self.bypass_policy_lockout_safety_check = c.flag()?;
            }
            "pendingWindowInDays" => self.pending_window_in_days = c.text()?,
            "aliasName" => self.alias_name = c.text()?,
            "targetKeyId" => self.target_key_id = c.text()?,
            _ => c.skip()?,
        }
        Ok(())
    }
}

#[derive(Default)]
struct ResponseElements<'a> {
    key_id: Text<'a>,
    /// `keyMetadata.arn`.
    key_metadata_arn: Text<'a>,
    grant_id: Text<'a>,
    /// ReplicateKey: the replica's policy as KMS applied it (when the request gave none).
    replica_policy: Text<'a>,
}

impl<'a> ResponseElements<'a> {
    fn member(&mut self, c: &mut Cursor<'a>, key: Cow<'a, str>) -> Result<(), JsonError> {
        match &*key {
            "keyId" => self.key_id = c.text()?,
            "grantId" => self.grant_id = c.text()?,
            "keyMetadata" => self.key_metadata_arn = c.member_text("arn")?,
            "replicaPolicy" => self.replica_policy = c.text()?,
            _ => c.skip()?,
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------

/// An encryption context: key/value pairs in the order the record gave them.
pub type Context<'a> = crate::ingest::lenient::Pairs<'a>;

/// One KMS record, one field per column of [`crate::schema::COLUMNS`] (same order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KmsEvent<'a> {
    pub event_id: Cow<'a, str>,
    pub event_time: i64,
    pub event_name: Cow<'a, str>,
    pub event_type: Option<Cow<'a, str>>,
    pub event_version: Option<Cow<'a, str>>,
    pub event_category: Option<Cow<'a, str>>,
    pub aws_region: Option<Cow<'a, str>>,
    pub account_id: Option<Cow<'a, str>>,
    pub read_only: Option<bool>,
    pub management_event: Option<bool>,
    pub request_id: Option<Cow<'a, str>>,
    pub shared_event_id: Option<Cow<'a, str>>,
    pub principal_type: Option<Cow<'a, str>>,
    pub principal_arn: Option<Cow<'a, str>>,
    pub principal: Option<Cow<'a, str>>,
    pub principal_account: Option<Cow<'a, str>>,
    pub principal_id: Option<Cow<'a, str>>,
    pub user_name: Option<Cow<'a, str>>,
    pub access_key_id: Option<Cow<'a, str>>,
    pub session_issuer_arn: Option<Cow<'a, str>>,
    pub session_creation_time: Option<i64>,
    pub mfa_authenticated: Option<bool>,
    pub invoked_by: Option<Cow<'a, str>>,
    pub via_aws_service: bool,
    pub source_ip: Option<Cow<'a, str>>,
    pub user_agent: Option<Cow<'a, str>>,
    pub vpc_endpoint_id: Option<Cow<'a, str>>,
    pub vpc_endpoint_account_id: Option<Cow<'a, str>>,
    pub tls_version: Option<Cow<'a, str>>,
    pub key_arn: Option<Cow<'a, str>>,
    pub key_id: Option<Cow<'a, str>>,
    pub key_account: Option<Cow<'a, str>>,
    pub key_region: Option<Cow<'a, str>>,
    pub key_ref: Option<Cow<'a, str>>,
    pub alias_name: Option<Cow<'a, str>>,
    pub encryption_context: Option<Context<'a>>,
    pub destination_key_arn: Option<Cow<'a, str>>,
    pub destination_key_account: Option<Cow<'a, str>>,
    pub destination_encryption_context: Option<Context<'a>>,
    pub encryption_algorithm: Option<Cow<'a, str>>,
    pub key_spec: Option<Cow<'a, str>>,
    pub key_usage: Option<Cow<'a, str>>,
    pub key_origin: Option<Cow<'a, str>>,
    pub grantee_principal: Option<Cow<'a, str>>,
    pub retiring_principal: Option<Cow<'a, str>>,
    pub grant_operations: Option<Vec<Cow<'a, str>>>,
    pub grant_id: Option<Cow<'a, str>>,
    pub key_policy: Option<Cow<'a, str>>,
    pub bypass_policy_lockout_safety_check: Option<bool>,
    pub pending_window_in_days: Option<i32>,
    pub error_code: Option<Cow<'a, str>>,
    pub error_message: Option<Cow<'a, str>>,
    pub request_parameters: Option<&'a str>,
    pub response_elements: Option<&'a str>,
    pub additional_event_data: Option<&'a str>,
    pub source_object: &'a str,
}

fn own<'a>(t: Text<'a>) -> Option<Cow<'a, str>> {
    t.0.filter(|s| !s.is_empty())
}

/// A raw block's text; a JSON null counts as absent.
fn raw_text(raw: Option<&str>) -> Option<&str> {
    raw.filter(|s| *s != "null")
}

impl<'a> KmsEvent<'a> {
    /// Derives every column from a parsed record. Rejects a record only when it lacks what
    /// no row can do without: `eventID`, `eventName` and a parseable `eventTime`.
    #[inline(always)]
    fn from_raw(r: RawRecord<'a>, source_object: &'a str) -> Outcome<'a> {
        let event_id = own(r.event_id);
        let reject = |reason: String| RejectReason {
            event_id: event_id.as_deref().map(str::to_owned),
            reason,
        };
        let Some(event_name) = own(r.event_name) else {
            return Outcome::Rejected(reject("missing eventName".into()));
        };
        let event_time = match r.event_time.as_str() {
            None | Some("") => return Outcome::Rejected(reject("missing eventTime".into())),
            Some(t) => match parse_event_time(t) {
                Some(v) => v,
                None => return Outcome::Rejected(reject(format!("unparseable eventTime {t:?}"))),
            },
        };
        let Some(event_id) = event_id else {
            return Outcome::Rejected(reject("missing eventID".into()));
        };

        let aws_region = own(r.aws_region);
        let account_id = own(r.recipient_account_id);
        let event_type = own(r.event_type);
        let source_ip = own(r.source_ip_address);
        let ui = r.user_identity.0.unwrap_or_default();
        let sc = ui.session_context.0.unwrap_or_default();
        let attrs = sc.attributes.0.unwrap_or_default();
        let issuer = sc.session_issuer.0.unwrap_or_default();

        let principal_type = own(ui.kind);
        let principal_arn = own(ui.arn);
        let invoked_by = own(ui.invoked_by);
        let session_issuer_arn = own(issuer.arn);
        let principal = stable_principal(
            principal_type.as_deref(),
            &principal_arn,
            &session_issuer_arn,
            &invoked_by,
        );
        let principal_account = own(ui.account_id).or_else(|| {
            let arn = principal_arn.as_ref()?;
            arn_account(arn).map(|a| part_of(arn, a))
        });
        let via_aws_service = principal_type.as_deref() == Some("AWSService")
            || event_type.as_deref() == Some("AwsServiceEvent")
            || invoked_by.as_deref().is_some_and(is_aws_service_name)
            || source_ip.as_deref().is_some_and(is_aws_service_name);

        let req = r.req;
        let resp = r.resp;
        let is_reencrypt = event_name == "ReEncrypt";

        // Keys named by resources[]: type AWS::KMS::Key, or (type missing) a :key/ ARN.
        let mut resource_keys: Vec<Cow<'a, str>> = Vec::new();
        let mut resource_account: Option<Cow<'a, str>> = None;
        for res in r.resources.0.into_iter().filter_map(|o| o.0) {
            let is_key_type = res.kind.as_str() == Some("AWS::KMS::Key");
            let arn = own(res.arn);
            let arn_is_key = arn.as_deref().is_some_and(|a| a.contains(":key/"));
            if is_key_type || (res.kind.as_str().is_none() && arn_is_key) {
                if let Some(arn) = arn.filter(|_| arn_is_key) {
                    resource_keys.push(arn);
                } else if resource_account.is_none() {
                    resource_account = own(res.account_id);
                }
            }
        }

        let key_ref = own(req.key_id);
        let region = aws_region.as_deref();
        let account = account_id.as_deref();
        let dest_ref = own(req.destination_key_id);
        let destination_key_arn = if is_reencrypt {
            dest_ref
                .as_deref()
                .and_then(|k| key_arn_from_ref(k, region, account))
                .or_else(|| {
                    (resource_keys.len() > 1)
                        .then(|| resource_keys[resource_keys.len() - 1].clone())
                })
        } else {
            None
        };
        let source_ref = if is_reencrypt {
            own(req.source_key_id)
        } else {
            key_ref.clone()
        };
        let key_arn = resource_keys
            .iter()
            .find(|k| destination_key_arn.as_deref() != Some(k.as_ref()))
            .cloned()
            .or_else(|| {
                source_ref
                    .as_deref()
                    .and_then(|k| key_arn_from_ref(k, region, account))
            })
            .or_else(|| {
                own(r.service_event_key_id).and_then(|k| key_arn_from_ref(&k, region, account))
            })
            .or_else(|| own(resp.key_metadata_arn).filter(|a| a.contains(":key/")))
            .or_else(|| own(resp.key_id).filter(|a| a.contains(":key/")));
        let key_parts = key_arn
            .as_ref()
            .and_then(|arn| split_key_arn(arn).map(|p| (arn, p)));
        let (key_id, key_account, key_region) = match key_parts {
            Some((arn, parts)) => (
                Some(part_of(arn, parts.key_id)),
                Some(part_of(arn, parts.account)),
                Some(part_of(arn, parts.region)),
            ),
            None => (None, resource_account, None),
        };
        let destination_key_account = destination_key_arn
            .as_ref()
            .and_then(|arn| split_key_arn(arn).map(|p| part_of(arn, p.account)));
        let alias_name = own(req.alias_name).or_else(|| {
            let r = key_ref.as_ref()?;
            alias_of(r).map(|a| part_of(r, a))
        });

        let (encryption_context, destination_encryption_context) = if is_reencrypt {
            (
                req.source_encryption_context.0,
                req.destination_encryption_context.0,
            )
        } else {
            (req.encryption_context.0, None)
        };
        let encryption_algorithm = own(req.encryption_algorithm)
            .or_else(|| own(req.destination_encryption_algorithm))
            .or_else(|| own(req.signing_algorithm))
            .or_else(|| own(req.mac_algorithm));
        let key_spec = own(req.key_spec)
            .or_else(|| own(req.key_pair_spec))
            .or_else(|| own(req.customer_master_key_spec));
        let operations = req.operations.0;
        let grant_operations = (!operations.is_empty())
            .then(|| operations.into_iter().filter_map(own).collect::<Vec<_>>());

        Outcome::Kms(KmsEvent {
            event_id,
            event_time,
            event_name,
            event_type,
            event_version: own(r.event_version),
            event_category: own(r.event_category),
            aws_region,
            account_id,
            read_only: r.read_only.0,
            management_event: r.management_event.0,
            request_id: own(r.request_id),
            shared_event_id: own(r.shared_event_id),
            principal_type,
            principal_arn,
            principal,
            principal_account,
            principal_id: own(ui.principal_id),
            user_name: own(ui.user_name).or_else(|| own(issuer.user_name)),
            access_key_id: own(ui.access_key_id),
            session_issuer_arn,
            session_creation_time: attrs.creation_date.as_str().and_then(parse_event_time),
            mfa_authenticated: attrs.mfa_authenticated.0,
            invoked_by,
            via_aws_service,
            source_ip,
            user_agent: own(r.user_agent),
            vpc_endpoint_id: own(r.vpc_endpoint_id),
            vpc_endpoint_account_id: own(r.vpc_endpoint_account_id),
            tls_version: own(r.tls_version),
            key_arn,
            key_id,
            key_account,
            key_region,
            key_ref,
            alias_name,
            encryption_context,
            destination_key_arn,
            destination_key_account,
            destination_encryption_context,
            encryption_algorithm,
            key_spec,
            key_usage: own(req.key_usage),
            key_origin: own(req.origin),
            grantee_principal: own(req.grantee_principal),
            retiring_principal: own(req.retiring_principal),
            grant_operations,
            grant_id: own(resp.grant_id).or_else(|| own(req.grant_id)),
            key_policy: own(req.policy).or_else(|| own(resp.replica_policy)),
            bypass_policy_lockout_safety_check: req.bypass_policy_lockout_safety_check.0,
            pending_window_in_days: req
                .pending_window_in_days
                .as_str()
                .and_then(|s| s.trim().parse::<f64>().ok())
                .filter(|v| v.fract() == 0.0 && v.abs() < 1e9)
                .map(|v| v as i32),
            error_code: own(r.error_code),
            error_message: own(r.error_message),
            request_parameters: raw_text(r.request_parameters),
            response_elements: raw_text(r.response_elements),
            additional_event_data: raw_text(r.additional_event_data),
            source_object,
        })
    }
}

/// The identity baselines should key on: the role behind an assumed-role session, else the
/// user/root ARN, else the invoking service.
fn stable_principal<'a>(
    kind: Option<&str>,
    arn: &Option<Cow<'a, str>>,
    issuer_arn: &Option<Cow<'a, str>>,
    invoked_by: &Option<Cow<'a, str>>,
) -> Option<Cow<'a, str>> {
    match kind {
        Some("AssumedRole") | Some("FederatedUser") => {
            if issuer_arn.is_some() {
                return issuer_arn.clone();
            }
            if let Some(role) = arn.as_deref().and_then(role_arn_from_session) {
                return Some(Cow::Owned(role));
            }
        }
        Some("AWSService") if invoked_by.is_some() => return invoked_by.clone(),
        _ => {}
    }
    arn.clone().or_else(|| invoked_by.clone())
}

/// `arn:aws:sts::111122223333:assumed-role/Role/session` → `arn:aws:iam::111122223333:role/Role`
/// (the role path is not in a session ARN; the session issuer, when present, has it).
fn role_arn_from_session(arn: &str) -> Option<String> {
    let mut parts = arn.splitn(6, ':');
    let (_, partition, service, _, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let role = resource.strip_prefix("assumed-role/")?.split('/').next()?;
    (service == "sts").then(|| format!("arn:{partition}:iam::{account}:role/{role}"))
}

/// `part` (a sub-slice of `whole`) with `whole`'s lifetime when `whole` is borrowed, so
/// derived columns (key id, account, alias) cost no allocation.
fn part_of<'a>(whole: &Cow<'a, str>, part: &str) -> Cow<'a, str> {
    match whole {
        Cow::Borrowed(w) => {
            let start = (part.as_ptr() as usize).wrapping_sub(w.as_ptr() as usize);
            let sub = start
                .checked_add(part.len())
                .and_then(|end| w.get(start..end))
                .filter(|sub| sub.as_ptr() == part.as_ptr());
            match sub {
                Some(sub) => Cow::Borrowed(sub),
                None => Cow::Owned(part.to_owned()),
            }
        }
        Cow::Owned(_) => Cow::Owned(part.to_owned()),
    }
}

/// True for an AWS service principal name (`s3.amazonaws.com`) or `AWS Internal`.
pub(crate) fn is_aws_service_name(s: &str) -> bool {
    s == "AWS Internal" || (s.ends_with(".amazonaws.com") && !s.contains(' '))
}

/// The account of any ARN (`arn:partition:service:region:account:resource`).
pub fn arn_account(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    if parts.next()? != "arn" {
        return None;
    }
    let account = parts.nth(3)?;
    (!account.is_empty()).then_some(account)
}

/// The parts of a KMS key ARN.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct KeyArnParts<'s> {
    pub partition: &'s str,
    pub region: &'s str,
    pub account: &'s str,
    pub key_id: &'s str,
}

/// Splits `arn:aws:kms:us-east-1:111122223333:key/<id>`.
pub(crate) fn split_key_arn(arn: &str) -> Option<KeyArnParts<'_>> {
    // Every KMS row resolves its key through here, so the colons are found with memchr
    // rather than a general string splitter (about 40% of its instructions, by callgrind).
    let rest = arn.strip_prefix("arn:")?;
    let mut colons = memchr::memchr_iter(b':', rest.as_bytes());
    let (c1, c2, c3, c4) = (
        colons.next()?,
        colons.next()?,
        colons.next()?,
        colons.next()?,
    );
    let partition = rest.get(..c1)?;
    if rest.get(c1 + 1..c2)? != "kms" {
        return None;
    }
    let region = rest.get(c2 + 1..c3)?;
    let account = rest.get(c3 + 1..c4)?;
    let key_id = rest.get(c4 + 1..)?.strip_prefix("key/")?;
    (!key_id.is_empty()).then_some(KeyArnParts {
        partition,
        region,
        account,
        key_id,
    })
}

/// The alias name of an alias reference (`alias/x` or an alias ARN).
fn alias_of(key_ref: &str) -> Option<&str> {
    if key_ref.starts_with("alias/") {
        return Some(key_ref);
    }
    let (_, resource) = key_ref.strip_prefix("arn:")?.rsplit_once(':')?;
    resource.starts_with("alias/").then_some(resource)
}

/// The AWS partition of a region.
pub(crate) fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("eu-isoe-") {
        "aws-iso-e"
    } else {
        "aws"
    }
}

/// Resolves a keyId as a caller gave it to a key ARN: an ARN with `:key/` as is, a bare key
/// id (UUID or `mrk-`) with the event's region and account. Aliases resolve to nothing.
fn key_arn_from_ref<'a>(
    key_ref: &str,
    region: Option<&str>,
    account: Option<&str>,
) -> Option<Cow<'a, str>> {
    if key_ref.starts_with("arn:") {
        return split_key_arn(key_ref).map(|_| Cow::Owned(key_ref.to_owned()));
    }
    if key_ref.starts_with("alias/") || key_ref.contains(['/', ':', ' ']) {
        return None;
    }
    let (region, account) = (region?, account?);
    Some(Cow::Owned(format!(
        "arn:{}:kms:{region}:{account}:key/{key_ref}",
        partition_of(region)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arn_helpers() {
        assert_eq!(
            role_arn_from_session("arn:aws:sts::111122223333:assumed-role/Admin/alice").as_deref(),
            Some("arn:aws:iam::111122223333:role/Admin")
        );
        assert_eq!(
            role_arn_from_session("arn:aws:iam::111122223333:user/x"),
            None
        );
        assert_eq!(
            arn_account("arn:aws:iam::111122223333:root"),
            Some("111122223333")
        );
        assert_eq!(arn_account("s3.amazonaws.com"), None);
        assert_eq!(
            alias_of("arn:aws:kms:us-east-1:1:alias/app"),
            Some("alias/app")
        );
        assert_eq!(alias_of("alias/app"), Some("alias/app"));
        assert_eq!(alias_of("1234"), None);
        assert_eq!(partition_of("cn-north-1"), "aws-cn");
        assert_eq!(partition_of("us-gov-west-1"), "aws-us-gov");
        assert_eq!(
            key_arn_from_ref("mrk-1234", Some("cn-north-1"), Some("1")).as_deref(),
            Some("arn:aws-cn:kms:cn-north-1:1:key/mrk-1234")
        );
        assert_eq!(key_arn_from_ref("alias/x", Some("r"), Some("1")), None);
        assert_eq!(
            key_arn_from_ref("arn:aws:kms:r:1:alias/x", Some("r"), Some("1")),
            None
        );
        assert!(is_aws_service_name("s3.amazonaws.com"));
        assert!(!is_aws_service_name("10.0.0.1"));
        assert_eq!(
            split_key_arn("arn:aws-cn:kms:cn-north-1:111122223333:key/mrk-1"),
            Some(KeyArnParts {
                partition: "aws-cn",
                region: "cn-north-1",
                account: "111122223333",
                key_id: "mrk-1",
            })
        );
        assert_eq!(split_key_arn("arn:aws:kms:r:1:alias/x"), None);
        assert_eq!(split_key_arn("arn:aws:s3:::bucket/key/x"), None);
        assert_eq!(split_key_arn("arn:aws:kms:r:1:key/"), None);
    }

    /// The splitter as it was written first, with a general string split.
    fn split_key_arn_reference(arn: &str) -> Option<KeyArnParts<'_>> {
        let mut parts = arn.splitn(6, ':');
        if parts.next()? != "arn" {
            return None;
        }
        let partition = parts.next()?;
        if parts.next()? != "kms" {
            return None;
        }
        let (region, account) = (parts.next()?, parts.next()?);
        let key_id = parts.next()?.strip_prefix("key/")?;
        (!key_id.is_empty()).then_some(KeyArnParts {
            partition,
            region,
            account,
            key_id,
        })
    }

    proptest::proptest! {
        #[test]
        fn key_arns_split_like_a_general_splitter(
            arn in "(arn:)?(aws|)(:kms|:s3|)(:[a-z0-9-]{0,4}){0,3}(:key/|:alias/|key/|:)?[a-z0-9:/é-]{0,6}"
        ) {
            proptest::prop_assert_eq!(split_key_arn(&arn), split_key_arn_reference(&arn));
        }
    }

    const KMS_RECORD: &str = r#"{"eventVersion":"1.09","eventTime":"2026-11-03T21:35:40Z","eventSource":"kms.amazonaws.com","eventName":"Decrypt","awsRegion":"eu-west-1","userAgent":"agent ünï ☃ aws-cli/2.15.30 Python/3.11.8 Linux/6.1 exe/x86_64","requestParameters":{"encryptionContext":{"app":"billing"}},"eventID":"abc-1","recipientAccountId":"111122223333"}"#;

    /// The record-level check is simdutf8's; it must accept and reject exactly what std
    /// does, and name the same place.
    fn check_utf8_like_std(bytes: &[u8]) -> Result<(), String> {
        match (
            std::str::from_utf8(bytes),
            classify(bytes, "s3://b/o.json.gz"),
        ) {
            (Ok(_), Outcome::Kms(e)) if e.event_id == "abc-1" => Ok(()),
            (Err(want), Outcome::Rejected(r)) => {
                if r.reason == format!("invalid UTF-8: {want}")
                    && r.event_id.as_deref() == Some("abc-1")
                {
                    Ok(())
                } else {
                    Err(format!("std says {want}, got {r:?}"))
                }
            }
            (want, got) => Err(format!("std says {want:?}, got {got:?}")),
        }
    }

    #[test]
    fn invalid_utf8_rejects_the_record_and_says_where() {
        assert_eq!(check_utf8_like_std(KMS_RECORD.as_bytes()), Ok(()));
        let at = KMS_RECORD.find("agent").expect("a user agent");
        let mut bad = KMS_RECORD.as_bytes().to_vec();
        bad[at] = 0xFF;
        let Outcome::Rejected(r) = classify(&bad, "o") else {
            panic!("a record with invalid UTF-8 is rejected");
        };
        assert_eq!(
            r.reason,
            format!("invalid UTF-8: invalid utf-8 sequence of 1 bytes from index {at}")
        );
        assert_eq!(check_utf8_like_std(&bad), Ok(()));
    }

    proptest::proptest! {
        #[test]
        fn record_utf8_check_agrees_with_std(
            edits in proptest::collection::vec((0usize..1000, 0x80u8..=0xFF), 0..4)
        ) {
            let mut bytes = KMS_RECORD.as_bytes().to_vec();
            // Edits land inside the user agent's text, so the JSON stays well-formed and
            // only the UTF-8 can be wrong.
            let start = KMS_RECORD.find("agent").expect("a user agent");
            let len = KMS_RECORD[start..].find('"').expect("its end");
            for (at, b) in edits {
                bytes[start + at % len] = b;
            }
            proptest::prop_assert_eq!(check_utf8_like_std(&bytes), Ok(()));
        }
    }

    /// The blocks read in place keep only a repeated member's last value, as every other
    /// member does, including a last value that is not an object.
    #[test]
    fn repeated_blocks_keep_their_last_value() {
        let record = |blocks: &str| {
            format!(
                r#"{{"eventSource":"kms.amazonaws.com","eventName":"Decrypt","eventTime":"2026-11-03T21:35:40Z","eventID":"e1","awsRegion":"eu-west-1","recipientAccountId":"111122223333",{blocks}}}"#
            )
        };
        fn event(text: &str) -> KmsEvent<'_> {
            match classify(text.as_bytes(), "o") {
                Outcome::Kms(e) => e,
                other => panic!("not an event: {other:?}"),
            }
        }
        let text = record(
            r#""requestParameters":{"keyId":"k-first","encryptionAlgorithm":"RSAES_OAEP_SHA_256"},"userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/a","sessionContext":{"attributes":{"mfaAuthenticated":"true"}}},"requestParameters":{"keyId":"k-second"},"userIdentity":{"type":"Root","sessionContext":{"sessionIssuer":{"arn":"arn:aws:iam::111122223333:role/R"}}}"#,
        );
        let e = event(&text);
        assert_eq!(e.key_ref.as_deref(), Some("k-second"));
        assert_eq!(e.encryption_algorithm, None);
        assert_eq!(e.principal_type.as_deref(), Some("Root"));
        assert_eq!(e.principal_arn, None);
        assert_eq!(e.mfa_authenticated, None);
        assert_eq!(
            e.session_issuer_arn.as_deref(),
            Some("arn:aws:iam::111122223333:role/R")
        );
        let text = record(
            r#""requestParameters":{"keyId":"k-first"},"userIdentity":{"type":"IAMUser"},"requestParameters":null,"userIdentity":"gone""#,
        );
        let e = event(&text);
        assert_eq!(e.key_ref, None);
        assert_eq!(e.request_parameters, None);
        assert_eq!(e.principal_type, None);
    }

    #[test]
    fn sniffs_event_id_of_broken_records() {
        assert_eq!(
            sniff_event_id(br#"{"eventID": "abc-1", "eventSource":"kms.amazonaws.com", oops}"#)
                .as_deref(),
            Some("abc-1")
        );
        assert_eq!(sniff_event_id(b"{}"), None);
    }
}
