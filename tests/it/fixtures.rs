//! Extraction of every record shape in the domain brief, on fixtures written for this
//! project (not copied from AWS's documentation).

use kms_audit::ingest::record::{KmsEvent, Outcome, classify};
use serde_json::{Value, json};

const ACCT: &str = "123456789012";
const KEY_ID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const REGION: &str = "eu-central-1";

fn key_arn() -> String {
    format!("arn:aws:kms:{REGION}:{ACCT}:key/{KEY_ID}")
}

/// A minimal KMS record; `extra` members are merged over it.
fn record(name: &str, extra: Value) -> Value {
    let mut base = json!({
        "eventVersion": "1.08",
        "userIdentity": {
            "type": "IAMUser",
            "principalId": "AIDAEXAMPLEUSER",
            "arn": format!("arn:aws:iam::{ACCT}:user/dana"),
            "accountId": ACCT,
            "accessKeyId": "AKIAEXAMPLEKEY",
            "userName": "dana"
        },
        "eventTime": "2026-10-05T08:09:10Z",
        "eventSource": "kms.amazonaws.com",
        "eventName": name,
        "awsRegion": REGION,
        "sourceIPAddress": "203.0.113.10",
        "userAgent": "aws-cli/2.17.0",
        "requestParameters": null,
        "responseElements": null,
        "requestID": "req-1",
        "eventID": format!("evt-{name}"),
        "readOnly": true,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": ACCT,
        "eventCategory": "Management"
    });
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        for (k, v) in e {
            if v.is_null() && k.starts_with('-') {
                b.remove(&k[1..]);
            } else {
                b.insert(k, v);
            }
        }
    }
    base
}

/// Runs a record through the real classifier and hands the event to `check`.
fn with_event(rec: &Value, check: impl FnOnce(&KmsEvent<'_>)) {
    let text = serde_json::to_string(rec).expect("json");
    match classify(text.as_bytes(), "fixture.json") {
        Outcome::Kms(e) => check(&e),
        other => panic!("expected a KMS event, got {other:?} for {text}"),
    }
}

fn s<'a>(v: &'a Option<std::borrow::Cow<'_, str>>) -> Option<&'a str> {
    v.as_deref()
}

fn ctx(e: &Option<kms_audit::ingest::record::Context<'_>>) -> Vec<(String, Option<String>)> {
    e.as_ref()
        .map(|c| {
            c.iter()
                .map(|(k, v)| (k.to_string(), v.as_ref().map(|v| v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn decrypt_without_key_id_takes_the_key_from_resources() {
    let rec = record(
        "Decrypt",
        json!({
            "requestParameters": {"encryptionAlgorithm": "SYMMETRIC_DEFAULT",
                                  "encryptionContext": {"aws:s3:arn": "arn:aws:s3:::bkt/a.txt"}},
            "resources": [{"accountId": ACCT, "type": "AWS::KMS::Key", "ARN": key_arn()}]
        }),
    );
    with_event(&rec, |e| {
        assert_eq!(e.event_id, "evt-Decrypt");
        assert_eq!(s(&e.key_arn), Some(key_arn().as_str()));
        assert_eq!(s(&e.key_id), Some(KEY_ID));
        assert_eq!(s(&e.key_account), Some(ACCT));
        assert_eq!(s(&e.key_region), Some(REGION));
        assert_eq!(e.key_ref, None);
        assert_eq!(
            ctx(&e.encryption_context),
            vec![("aws:s3:arn".into(), Some("arn:aws:s3:::bkt/a.txt".into()))]
        );
        assert_eq!(s(&e.encryption_algorithm), Some("SYMMETRIC_DEFAULT"));
        assert_eq!(e.read_only, Some(true));
        assert_eq!(s(&e.principal), Some("arn:aws:iam::123456789012:user/dana"));
        assert_eq!(s(&e.principal_account), Some(ACCT));
        assert!(!e.via_aws_service);
        assert_eq!(e.event_time, 1_791_187_750_000_000);
        assert_eq!(e.source_object, "fixture.json");
    });
}

#[test]
fn resources_without_type_and_empty_arns() {
    // No `type`, but a :key/ ARN: still the key.
    let rec = record(
        "GenerateDataKeyWithoutPlaintext",
        json!({"requestParameters": {"keyId": "alias/app", "keySpec": "AES_256"},
               "resources": [{"ARN": key_arn(), "accountId": ACCT}]}),
    );
    with_event(&rec, |e| {
        assert_eq!(s(&e.key_arn), Some(key_arn().as_str()));
        assert_eq!(s(&e.key_ref), Some("alias/app"));
        assert_eq!(s(&e.alias_name), Some("alias/app"));
        assert_eq!(s(&e.key_spec), Some("AES_256"));
    });
    // Type present but ARN empty (as AWS services write it): only the account is known.
    let rec = record(
        "GenerateDataKey",
        json!({"requestParameters": {"keyId": "", "keySpec": "AES_256",
                  "encryptionContext": {"aws:dynamodb:tableName": "Orders"}},
               "resources": [{"ARN": "", "accountId": "999988887777", "type": "AWS::KMS::Key"}]}),
    );
    with_event(&rec, |e| {
        assert_eq!(e.key_arn, None);
        assert_eq!(e.key_ref, None, "an empty keyId is no reference");
        assert_eq!(s(&e.key_account), Some("999988887777"));
    });
}

#[test]
fn every_key_id_form_resolves() {
    let alias_arn = format!("arn:aws:kms:{REGION}:{ACCT}:alias/payments");
    let mrk = "mrk-0123456789abcdef0123456789abcdef";
    let cases: Vec<(String, Option<String>, Option<&str>)> = vec![
        (KEY_ID.into(), Some(key_arn()), None),
        (key_arn(), Some(key_arn()), None),
        ("alias/payments".into(), None, Some("alias/payments")),
        (alias_arn.clone(), None, Some("alias/payments")),
        (
            mrk.into(),
            Some(format!("arn:aws:kms:{REGION}:{ACCT}:key/{mrk}")),
            None,
        ),
    ];
    for (key_ref, want_arn, want_alias) in cases {
        let rec = record("Encrypt", json!({"requestParameters": {"keyId": key_ref}}));
        with_event(&rec, |e| {
            assert_eq!(s(&e.key_ref), Some(key_ref.as_str()));
            assert_eq!(e.key_arn.as_deref(), want_arn.as_deref(), "{key_ref}");
            assert_eq!(s(&e.alias_name), want_alias, "{key_ref}");
        });
    }
    // A China-region bare id gets the right partition.
    let mut rec = record("Encrypt", json!({"requestParameters": {"keyId": KEY_ID}}));
    rec["awsRegion"] = json!("cn-north-1");
    with_event(&rec, |e| {
        assert_eq!(
            s(&e.key_arn),
            Some(format!("arn:aws-cn:kms:cn-north-1:{ACCT}:key/{KEY_ID}").as_str())
        );
    });
    // No keyId and no resources at all (keyId absent).
    with_event(
        &record("ListAliases", json!({"requestParameters": {"limit": 5}})),
        |e| {
            assert_eq!(e.key_arn, None);
            assert_eq!(e.key_ref, None);
        },
    );
}

#[test]
fn reencrypt_source_and_destination() {
    let dest =
        format!("arn:aws:kms:{REGION}:555566667777:key/11111111-2222-3333-4444-555555555555");
    let rec = record(
        "ReEncrypt",
        json!({
            "requestParameters": {
                "sourceEncryptionContext": {"Project": "Lima"},
                "destinationKeyId": dest,
                "destinationEncryptionContext": {"Project": "Lima", "Stage": "archive"},
                "sourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
                "destinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT"
            },
            "resources": [
                {"accountId": ACCT, "type": "AWS::KMS::Key", "ARN": key_arn()},
                {"accountId": "555566667777", "type": "AWS::KMS::Key", "ARN": dest}
            ]
        }),
    );
    with_event(&rec, |e| {
        assert_eq!(s(&e.key_arn), Some(key_arn().as_str()));
        assert_eq!(s(&e.destination_key_arn), Some(dest.as_str()));
        assert_eq!(s(&e.destination_key_account), Some("555566667777"));
        assert_eq!(
            ctx(&e.encryption_context),
            vec![("Project".into(), Some("Lima".into()))]
        );
        assert_eq!(ctx(&e.destination_encryption_context).len(), 2);
    });
    // Destination given by alias: the second resource is the destination.
    let mut rec2 = rec.clone();
    rec2["requestParameters"]["destinationKeyId"] = json!("alias/archive");
    with_event(&rec2, |e| {
        assert_eq!(s(&e.key_arn), Some(key_arn().as_str()));
        assert_eq!(s(&e.destination_key_arn), Some(dest.as_str()));
    });
}

#[test]
fn create_grant_fields() {
    let rec = record(
        "CreateGrant",
        json!({
            "readOnly": false,
            "requestParameters": {
                "keyId": key_arn(),
                "granteePrincipal": "arn:aws:iam::210987654321:role/partner",
                "retiringPrincipal": "arn:aws:iam::123456789012:role/ops",
                "operations": ["Decrypt", "GenerateDataKey"],
                "constraints": {"encryptionContextSubset": {"tenant": "t1"}}
            },
            "responseElements": {"grantId": "g-0123", "keyId": key_arn()}
        }),
    );
    with_event(&rec, |e| {
        assert_eq!(
            s(&e.grantee_principal),
            Some("arn:aws:iam::210987654321:role/partner")
        );
        assert_eq!(
            s(&e.retiring_principal),
            Some("arn:aws:iam::123456789012:role/ops")
        );
        let ops: Vec<&str> = e
            .grant_operations
            .as_ref()
            .expect("operations")
            .iter()
            .map(|c| c.as_ref())
            .collect();
        assert_eq!(ops, vec!["Decrypt", "GenerateDataKey"]);
        assert_eq!(s(&e.grant_id), Some("g-0123"));
        assert_eq!(e.read_only, Some(false));
        let raw: Value = serde_json::from_str(e.request_parameters.expect("raw")).expect("json");
        assert_eq!(
            raw["constraints"]["encryptionContextSubset"]["tenant"],
            "t1"
        );
    });
}

#[test]
fn key_policy_is_a_json_string_and_bypass_flag() {
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}]})
    .to_string();
    let rec = record(
        "PutKeyPolicy",
        json!({"readOnly": false, "requestParameters": {"keyId": KEY_ID, "policyName": "default",
               "policy": policy, "bypassPolicyLockoutSafetyCheck": true}}),
    );
    with_event(&rec, |e| {
        assert_eq!(s(&e.key_policy), Some(policy.as_str()));
        assert_eq!(e.bypass_policy_lockout_safety_check, Some(true));
        assert_eq!(s(&e.key_arn), Some(key_arn().as_str()));
    });
}

#[test]
fn create_key_takes_the_key_from_the_response() {
    let rec = record(
        "CreateKey",
        json!({
            "readOnly": false,
            "requestParameters": {"keyUsage": "ENCRYPT_DECRYPT", "origin": "EXTERNAL",
                "keySpec": "SYMMETRIC_DEFAULT", "customerMasterKeySpec": "SYMMETRIC_DEFAULT",
                "bypassPolicyLockoutSafetyCheck": false, "description": ""},
            "responseElements": {"keyMetadata": {"AWSAccountId": ACCT, "keyId": KEY_ID,
                "arn": key_arn(), "creationDate": "Oct 5, 2026, 8:09:10 AM", "keyState": "PendingImport",
                "multiRegion": false}}
        }),
    );
    with_event(&rec, |e| {
        assert_eq!(s(&e.key_arn), Some(key_arn().as_str()));
        assert_eq!(s(&e.key_origin), Some("EXTERNAL"));
        assert_eq!(s(&e.key_usage), Some("ENCRYPT_DECRYPT"));
        assert_eq!(s(&e.key_spec), Some("SYMMETRIC_DEFAULT"));
        assert_eq!(e.bypass_policy_lockout_safety_check, Some(false));
        assert!(e.response_elements.expect("raw").contains("PendingImport"));
    });
}

#[test]
fn schedule_key_deletion_window_and_free_form_dates() {
    let rec = record(
        "ScheduleKeyDeletion",
        json!({"readOnly": false,
               "requestParameters": {"keyId": KEY_ID, "pendingWindowInDays": 7},
               "responseElements": {"keyId": key_arn(), "keyState": "PendingDeletion",
                                    "deletionDate": "Oct 12, 2026 08:09:10 AM"}}),
    );
    with_event(&rec, |e| {
        assert_eq!(e.pending_window_in_days, Some(7));
        assert_eq!(s(&e.key_arn), Some(key_arn().as_str()));
    });
    // The window as a string still counts.
    let rec = record(
        "ScheduleKeyDeletion",
        json!({"requestParameters": {"keyId": KEY_ID, "pendingWindowInDays": "30"}}),
    );
    with_event(&rec, |e| assert_eq!(e.pending_window_in_days, Some(30)));
}

#[test]
fn service_events_without_a_user_identity_type() {
    let rec = record(
        "RotateKey",
        json!({
            "userIdentity": {"accountId": ACCT, "invokedBy": "AWS Internal"},
            "sourceIPAddress": "AWS Internal", "userAgent": "AWS Internal",
            "eventType": "AwsServiceEvent", "readOnly": false,
            "resources": [{"ARN": key_arn(), "accountId": ACCT, "type": "AWS::KMS::Key"}],
            "serviceEventDetails": {"keyId": KEY_ID}
        }),
    );
    with_event(&rec, |e| {
        assert_eq!(e.principal_type, None);
        assert_eq!(s(&e.principal), Some("AWS Internal"));
        assert_eq!(s(&e.principal_account), Some(ACCT));
        assert!(e.via_aws_service);
        assert_eq!(s(&e.event_type), Some("AwsServiceEvent"));
        assert_eq!(s(&e.key_arn), Some(key_arn().as_str()));
    });
    // DeleteKey service event whose only key reference is serviceEventDetails.
    let rec = record(
        "DeleteKey",
        json!({"userIdentity": {"accountId": ACCT, "invokedBy": "AWS Internal"},
               "eventType": "AwsServiceEvent", "serviceEventDetails": {"keyId": KEY_ID}}),
    );
    with_event(&rec, |e| {
        assert_eq!(s(&e.key_arn), Some(key_arn().as_str()))
    });
}

#[test]
fn assumed_roles_services_and_mfa() {
    let rec = record(
        "Decrypt",
        json!({
            "userIdentity": {
                "type": "AssumedRole", "principalId": "AROAEXAMPLE:worker-7",
                "arn": format!("arn:aws:sts::{ACCT}:assumed-role/etl/worker-7"),
                "accountId": ACCT, "accessKeyId": "ASIAEXAMPLE",
                "sessionContext": {
                    "sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLE",
                        "arn": format!("arn:aws:iam::{ACCT}:role/service-role/etl"),
                        "accountId": ACCT, "userName": "etl"},
                    "attributes": {"creationDate": "2026-10-05T08:00:00Z", "mfaAuthenticated": "false"}
                },
                "invokedBy": "secretsmanager.amazonaws.com"
            },
            "sourceIPAddress": "secretsmanager.amazonaws.com",
            "vpcEndpointId": "vpce-0a1b2c3d4e5f60718"
        }),
    );
    with_event(&rec, |e| {
        assert_eq!(s(&e.principal_type), Some("AssumedRole"));
        // The issuer ARN, with its path, is the stable identity.
        assert_eq!(
            s(&e.principal),
            Some(format!("arn:aws:iam::{ACCT}:role/service-role/etl").as_str())
        );
        assert_eq!(s(&e.session_issuer_arn), e.principal.as_deref());
        assert_eq!(e.mfa_authenticated, Some(false));
        assert_eq!(s(&e.invoked_by), Some("secretsmanager.amazonaws.com"));
        assert!(e.via_aws_service);
        assert_eq!(s(&e.vpc_endpoint_id), Some("vpce-0a1b2c3d4e5f60718"));
        assert_eq!(s(&e.user_name), Some("etl"));
        assert_eq!(e.session_creation_time, Some(1_791_187_200_000_000));
    });
    // Without a session issuer, the role is derived from the session ARN.
    let rec = record(
        "Decrypt",
        json!({"userIdentity": {"type": "AssumedRole",
            "arn": format!("arn:aws:sts::{ACCT}:assumed-role/reader/s1"), "accountId": ACCT,
            "sessionContext": {"attributes": {"mfaAuthenticated": "true"}}}}),
    );
    with_event(&rec, |e| {
        assert_eq!(
            s(&e.principal),
            Some(format!("arn:aws:iam::{ACCT}:role/reader").as_str())
        );
        assert_eq!(e.mfa_authenticated, Some(true));
    });
    // AWSService identity.
    let rec = record(
        "GenerateDataKey",
        json!({"userIdentity": {"type": "AWSService", "invokedBy": "dynamodb.amazonaws.com"},
               "sourceIPAddress": "dynamodb.amazonaws.com"}),
    );
    with_event(&rec, |e| {
        assert_eq!(s(&e.principal), Some("dynamodb.amazonaws.com"));
        assert_eq!(e.principal_account, None);
        assert!(e.via_aws_service);
    });
    // Root.
    let rec = record(
        "DisableKey",
        json!({"userIdentity": {"type": "Root", "principalId": ACCT,
               "arn": format!("arn:aws:iam::{ACCT}:root"), "accountId": ACCT}}),
    );
    with_event(&rec, |e| {
        assert_eq!(
            s(&e.principal),
            Some(format!("arn:aws:iam::{ACCT}:root").as_str())
        );
        assert_eq!(e.mfa_authenticated, None);
    });
}

#[test]
fn errors_and_odd_source_addresses() {
    let rec = record(
        "Decrypt",
        json!({"errorCode": "AccessDenied",
               "errorMessage": "User: arn:aws:iam::123456789012:user/dana is not authorized to perform: kms:Decrypt",
               "sourceIPAddress": "198.51.100.7, 10.0.0.12",
               "requestParameters": {"keyId": key_arn()}}),
    );
    with_event(&rec, |e| {
        assert_eq!(s(&e.error_code), Some("AccessDenied"));
        assert!(
            s(&e.error_message)
                .expect("message")
                .contains("not authorized")
        );
        assert_eq!(s(&e.source_ip), Some("198.51.100.7, 10.0.0.12"));
        assert!(!e.via_aws_service);
        assert_eq!(s(&e.key_arn), Some(key_arn().as_str()));
    });
}

#[test]
fn non_ascii_and_escaped_values_survive() {
    let rec = record(
        "Encrypt",
        json!({"requestParameters": {"keyId": KEY_ID,
               "encryptionContext": {"Département": "Ingénierie ☃", "quote\"key": "line\nbreak", "n": 42}},
               "userAgent": "ツール/1.0"}),
    );
    with_event(&rec, |e| {
        assert_eq!(
            ctx(&e.encryption_context),
            // In the order of the record's text (json! sorts its keys).
            vec![
                ("Département".into(), Some("Ingénierie ☃".into())),
                ("n".into(), Some("42".into())),
                ("quote\"key".into(), Some("line\nbreak".into())),
            ]
        );
        assert_eq!(s(&e.user_agent), Some("ツール/1.0"));
    });
}

#[test]
fn a_100_kb_request_parameters_block_is_kept_whole() {
    let big = "x".repeat(100 * 1024);
    let rec = record(
        "PutKeyPolicy",
        json!({"requestParameters": {"keyId": KEY_ID, "policy": big, "policyName": "default"}}),
    );
    with_event(&rec, |e| {
        let raw = e.request_parameters.expect("raw");
        assert!(raw.len() > 100 * 1024);
        let v: Value = serde_json::from_str(raw).expect("json");
        assert_eq!(v["policy"].as_str().map(str::len), Some(100 * 1024));
        assert_eq!(e.key_policy.as_deref().map(str::len), Some(100 * 1024));
    });
}

#[test]
fn schema_drift_keeps_the_record() {
    // Oldest version, strings where objects are expected, resources as an object,
    // readOnly as a string, unknown members.
    let rec = json!({
        "eventVersion": "1.0",
        "userIdentity": "arn:aws:iam::123456789012:user/legacy",
        "eventTime": "2014-11-04T00:53:12Z",
        "eventSource": "kms.amazonaws.com",
        "eventName": "Encrypt",
        "awsRegion": REGION,
        "requestParameters": "unparsed legacy text",
        "responseElements": [1, 2],
        "resources": {"ARN": key_arn()},
        "readOnly": "true",
        "eventID": "legacy-1",
        "recipientAccountId": ACCT,
        "somethingNew": {"nested": [true]}
    });
    with_event(&rec, |e| {
        assert_eq!(s(&e.event_version), Some("1.0"));
        assert_eq!(e.principal_type, None);
        assert_eq!(e.principal, None);
        assert_eq!(e.request_parameters, Some("\"unparsed legacy text\""));
        assert_eq!(e.response_elements, Some("[1,2]"));
        assert_eq!(
            s(&e.key_arn),
            Some(key_arn().as_str()),
            "a lone resource object still counts"
        );
        assert_eq!(e.read_only, Some(true));
    });
    // eventVersion 1.11 with fields we do not know.
    let rec = record(
        "Decapsulate",
        json!({"eventVersion": "1.11", "requestParameters": {"keyId": KEY_ID, "encapsulationAlgorithm": "ML_KEM"},
               "tlsDetails": {"tlsVersion": "TLSv1.3", "keyExchange": "X25519MLKEM768"},
               "vpcEndpointAccountId": ACCT}),
    );
    with_event(&rec, |e| {
        assert_eq!(s(&e.tls_version), Some("TLSv1.3"));
        assert_eq!(s(&e.vpc_endpoint_account_id), Some(ACCT));
        assert_eq!(s(&e.key_arn), Some(key_arn().as_str()));
    });
}

#[test]
fn unusable_records_are_rejected_with_reasons_and_others_skipped() {
    let cases = [
        (
            record("Decrypt", json!({"-eventID": null})),
            "missing eventID",
        ),
        (
            record("Decrypt", json!({"-eventTime": null})),
            "missing eventTime",
        ),
        (
            record("Decrypt", json!({"eventTime": "last tuesday"})),
            "unparseable eventTime",
        ),
        (
            record("Decrypt", json!({"eventName": ""})),
            "missing eventName",
        ),
    ];
    for (rec, want) in cases {
        let text = rec.to_string();
        match classify(text.as_bytes(), "x") {
            Outcome::Rejected(r) => assert!(r.reason.contains(want), "{} vs {want}", r.reason),
            other => panic!("{want}: {other:?}"),
        }
    }
    // Broken JSON that mentions KMS: rejected, with the event id sniffed.
    let broken = br#"{"eventID":"b-1","eventSource":"kms.amazonaws.com","eventName":"Decrypt",}"#;
    match classify(broken, "x") {
        Outcome::Rejected(r) => {
            assert_eq!(r.event_id.as_deref(), Some("b-1"));
            assert!(r.reason.starts_with("invalid JSON"));
        }
        other => panic!("{other:?}"),
    }
    // Other services, even ones mentioning KMS, are skipped.
    let s3 = json!({"eventSource": "s3.amazonaws.com", "eventName": "PutObject",
        "requestParameters": {"x-amz-server-side-encryption-context": "kms.amazonaws.com"}});
    assert!(matches!(
        classify(s3.to_string().as_bytes(), "x"),
        Outcome::Skipped
    ));
    assert!(matches!(
        classify(b"{\"eventSource\":\"ec2.amazonaws.com\"}", "x"),
        Outcome::Skipped
    ));
}
