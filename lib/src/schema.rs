//! The `kms_events` table: one row per KMS CloudTrail record.
//!
//! [`COLUMNS`] is the single source of truth: the Arrow schema and `kms-audit schema` are
//! derived from it, and `tests/it/docs.rs` holds the column reference (docs/schema.md) to it.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// The name the lake's event table is registered under.
pub const TABLE: &str = "kms_events";
/// The Hive partition column (from the directory name, not stored in the files).
pub const PARTITION_COLUMN: &str = "event_date";

/// How a column is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Utf8,
    Bool,
    Int32,
    /// Timestamp, microseconds, UTC.
    Timestamp,
    /// Map<Utf8, Utf8>.
    StrMap,
    /// List<Utf8>.
    StrList,
}

/// One column of `kms_events`.
#[derive(Debug)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
    pub nullable: bool,
    /// Where it comes from and what it means.
    pub doc: &'static str,
}

const fn col(name: &'static str, ty: ColumnType, doc: &'static str) -> Column {
    Column {
        name,
        ty,
        nullable: true,
        doc,
    }
}

const fn required(name: &'static str, ty: ColumnType, doc: &'static str) -> Column {
    Column {
        name,
        ty,
        nullable: false,
        doc,
    }
}

use ColumnType::*;

/// Every stored column, in file order.
pub const COLUMNS: &[Column] = &[
    required(
        "event_id",
        Utf8,
        "eventID. Unique per event, but CloudTrail can deliver a record twice (see the kms_events_dedup view).",
    ),
    required("event_time", Timestamp, "eventTime, UTC, microseconds."),
    required(
        "event_name",
        Utf8,
        "eventName: the KMS operation (Decrypt, PutKeyPolicy, RotateKey, ...).",
    ),
    col(
        "event_type",
        Utf8,
        "eventType: AwsApiCall, AwsServiceEvent, ...",
    ),
    col(
        "event_version",
        Utf8,
        "eventVersion as written (\"1.0\" to \"1.11\"; compare as integers, never floats).",
    ),
    col(
        "event_category",
        Utf8,
        "eventCategory (Management, Data) when present.",
    ),
    col(
        "aws_region",
        Utf8,
        "awsRegion: the region of the KMS endpoint called.",
    ),
    col(
        "account_id",
        Utf8,
        "recipientAccountId: the account whose trail received the record.",
    ),
    col("read_only", Bool, "readOnly."),
    col("management_event", Bool, "managementEvent."),
    col("request_id", Utf8, "requestID."),
    col(
        "shared_event_id",
        Utf8,
        "sharedEventID: links the copies of a cross-account event delivered to each account.",
    ),
    col(
        "principal_type",
        Utf8,
        "userIdentity.type: IAMUser, AssumedRole, Root, AWSService, FederatedUser, AWSAccount; null for service events without one.",
    ),
    col(
        "principal_arn",
        Utf8,
        "userIdentity.arn as given (an STS session ARN for assumed roles).",
    ),
    col(
        "principal",
        Utf8,
        "Stable identity for baselines: the role ARN behind an assumed-role session, else the user/root ARN, else the invoking service.",
    ),
    col(
        "principal_account",
        Utf8,
        "userIdentity.accountId (the caller's account), else the account in principal_arn.",
    ),
    col("principal_id", Utf8, "userIdentity.principalId."),
    col(
        "user_name",
        Utf8,
        "userIdentity.userName, else the session issuer's userName.",
    ),
    col("access_key_id", Utf8, "userIdentity.accessKeyId."),
    col(
        "session_issuer_arn",
        Utf8,
        "userIdentity.sessionContext.sessionIssuer.arn (the role or user that issued the session).",
    ),
    col(
        "session_creation_time",
        Timestamp,
        "userIdentity.sessionContext.attributes.creationDate.",
    ),
    col(
        "mfa_authenticated",
        Bool,
        "sessionContext.attributes.mfaAuthenticated (\"true\"/\"false\" in CloudTrail); null when the record has no session context.",
    ),
    col(
        "invoked_by",
        Utf8,
        "userIdentity.invokedBy: the AWS service that made the call, when one did.",
    ),
    required(
        "via_aws_service",
        Bool,
        "True when an AWS service called KMS on the principal's behalf (invokedBy, a service source address, AWSService identity or a service event).",
    ),
    col(
        "source_ip",
        Utf8,
        "sourceIPAddress as given: an IP, a service DNS name, \"AWS Internal\", or two comma-separated addresses.",
    ),
    col("user_agent", Utf8, "userAgent."),
    col(
        "vpc_endpoint_id",
        Utf8,
        "vpcEndpointId: the interface VPC endpoint the call came through.",
    ),
    col(
        "vpc_endpoint_account_id",
        Utf8,
        "vpcEndpointAccountId (event version 1.09+).",
    ),
    col("tls_version", Utf8, "tlsDetails.tlsVersion."),
    col(
        "key_arn",
        Utf8,
        "The full key ARN when knowable: resources[] (type AWS::KMS::Key or a :key/ ARN), then an ARN keyId, then a bare key id with the region and account, then the key in the response. Null when only an alias is known.",
    ),
    col(
        "key_id",
        Utf8,
        "The key id (UUID or mrk-...) part of key_arn.",
    ),
    col(
        "key_account",
        Utf8,
        "The account that owns the key (from key_arn, else resources[].accountId).",
    ),
    col("key_region", Utf8, "The region of the key (from key_arn)."),
    col(
        "key_ref",
        Utf8,
        "requestParameters.keyId exactly as the caller gave it: key id, key ARN, alias name or alias ARN.",
    ),
    col(
        "alias_name",
        Utf8,
        "The alias involved: aliasName (CreateAlias/UpdateAlias/DeleteAlias) or an alias keyId.",
    ),
    col(
        "encryption_context",
        StrMap,
        "requestParameters.encryptionContext (for ReEncrypt: sourceEncryptionContext).",
    ),
    col(
        "destination_key_arn",
        Utf8,
        "ReEncrypt: the destination key, resolved like key_arn.",
    ),
    col(
        "destination_key_account",
        Utf8,
        "ReEncrypt: the account owning the destination key.",
    ),
    col(
        "destination_encryption_context",
        StrMap,
        "ReEncrypt: destinationEncryptionContext.",
    ),
    col(
        "encryption_algorithm",
        Utf8,
        "encryptionAlgorithm (ReEncrypt: destinationEncryptionAlgorithm; Sign/Verify: signingAlgorithm; GenerateMac/VerifyMac: macAlgorithm).",
    ),
    col(
        "key_spec",
        Utf8,
        "keySpec, keyPairSpec or customerMasterKeySpec of the request (CreateKey, GenerateDataKey*).",
    ),
    col("key_usage", Utf8, "keyUsage (CreateKey)."),
    col(
        "key_origin",
        Utf8,
        "origin (CreateKey): AWS_KMS, EXTERNAL, AWS_CLOUDHSM, EXTERNAL_KEY_STORE.",
    ),
    col("grantee_principal", Utf8, "CreateGrant: granteePrincipal."),
    col(
        "retiring_principal",
        Utf8,
        "CreateGrant: retiringPrincipal.",
    ),
    col("grant_operations", StrList, "CreateGrant: operations."),
    col(
        "grant_id",
        Utf8,
        "The grant created, retired or revoked (response or request grantId).",
    ),
    col(
        "key_policy",
        Utf8,
        "PutKeyPolicy/CreateKey/ReplicateKey: the policy document (a JSON string in CloudTrail; for ReplicateKey the request's policy, else the replicaPolicy KMS applied).",
    ),
    col(
        "bypass_policy_lockout_safety_check",
        Bool,
        "PutKeyPolicy/CreateKey: bypassPolicyLockoutSafetyCheck.",
    ),
    col(
        "pending_window_in_days",
        Int32,
        "ScheduleKeyDeletion: pendingWindowInDays (7-30).",
    ),
    col(
        "error_code",
        Utf8,
        "errorCode (AccessDenied, KMSInvalidStateException, ...); null on success.",
    ),
    col("error_message", Utf8, "errorMessage."),
    col(
        "request_parameters",
        Utf8,
        "requestParameters as raw JSON text: nothing is lost.",
    ),
    col(
        "response_elements",
        Utf8,
        "responseElements as raw JSON text.",
    ),
    col(
        "additional_event_data",
        Utf8,
        "additionalEventData as raw JSON text.",
    ),
    required(
        "source_object",
        Utf8,
        "The object the record came from (s3://bucket/key or a file path).",
    ),
];

/// Documentation of the partition column, which is not stored in the files.
pub const PARTITION_DOC: &str = "The UTC date of event_time (YYYY-MM-DD), the Delta table's partition column (not stored in the data files); filter on it to prune files.";

impl ColumnType {
    pub fn data_type(self) -> DataType {
        match self {
            Utf8 => DataType::Utf8,
            Bool => DataType::Boolean,
            Int32 => DataType::Int32,
            Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            StrMap => DataType::Map(Arc::new(map_entries()), false),
            StrList => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        }
    }

    /// The type as SQL (Hive/Athena) spells it, for catalog definitions.
    pub fn hive_type(self) -> &'static str {
        match self {
            Utf8 => "string",
            Bool => "boolean",
            Int32 => "int",
            Timestamp => "timestamp",
            StrMap => "map<string,string>",
            StrList => "array<string>",
        }
    }
}

/// The `entries` struct of a Map<Utf8, Utf8>, as arrow's MapBuilder names it.
pub(crate) fn map_entries() -> Field {
    Field::new(
        "entries",
        DataType::Struct(Fields::from(vec![
            Field::new("keys", DataType::Utf8, false),
            Field::new("values", DataType::Utf8, true),
        ])),
        false,
    )
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(
        COLUMNS
            .iter()
            .map(|c| Field::new(c.name, c.ty.data_type(), c.nullable))
            .collect::<Vec<_>>(),
    ))
});

/// The Arrow schema of the files in the lake (without the partition column).
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// Index of a column in [`COLUMNS`].
pub fn column_index(name: &str) -> Option<usize> {
    COLUMNS.iter().position(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case_and_documented() {
        let mut seen = std::collections::HashSet::new();
        for c in COLUMNS {
            assert!(seen.insert(c.name), "duplicate column {}", c.name);
            assert!(
                c.name
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch == '_' || ch.is_ascii_digit()),
                "{}",
                c.name
            );
            assert!(c.doc.len() > 5, "{} has no doc", c.name);
        }
        assert!(!seen.contains(PARTITION_COLUMN));
    }

    #[test]
    fn contract_columns_exist_with_contract_types() {
        let s = schema();
        for name in [
            "event_id",
            "event_name",
            "event_type",
            "event_version",
            "aws_region",
            "account_id",
            "request_id",
            "principal_type",
            "principal_arn",
            "principal",
            "principal_account",
            "access_key_id",
            "session_issuer_arn",
            "invoked_by",
            "source_ip",
            "user_agent",
            "vpc_endpoint_id",
            "key_arn",
            "key_id",
            "key_account",
            "key_ref",
            "encryption_algorithm",
            "key_spec",
            "error_code",
            "error_message",
            "request_parameters",
            "response_elements",
            "additional_event_data",
            "source_object",
        ] {
            assert_eq!(
                s.field_with_name(name).expect(name).data_type(),
                &DataType::Utf8,
                "{name}"
            );
        }
        for name in ["read_only", "mfa_authenticated", "via_aws_service"] {
            assert_eq!(
                s.field_with_name(name).expect(name).data_type(),
                &DataType::Boolean
            );
        }
        assert_eq!(
            s.field_with_name("event_time")
                .expect("event_time")
                .data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert!(matches!(
            s.field_with_name("encryption_context")
                .expect("ec")
                .data_type(),
            DataType::Map(_, false)
        ));
    }
}
