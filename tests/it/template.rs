//! `template.yaml` against the code: the Glue table is the Arrow schema, and the security
//! properties docs/aws.md promises hold for every resource (cfn-lint checks the rest, in
//! scripts/test).

use arrow::datatypes::{DataType, TimeUnit};
use kms_audit::schema::{PARTITION_COLUMN, schema};
use serde_yaml_ng::Value;

fn template() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    let text = std::fs::read_to_string(path).expect("template.yaml");
    serde_yaml_ng::from_str(&text).expect("template.yaml is YAML")
}

fn resources(t: &Value) -> Vec<(String, &Value)> {
    t["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), v))
        .collect()
}

fn of_type<'a>(t: &'a Value, ty: &str) -> Vec<(String, &'a Value)> {
    resources(t)
        .into_iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(ty))
        .collect()
}

/// Athena's name for an Arrow type of the lake.
fn athena_type(dt: &DataType) -> String {
    match dt {
        DataType::Utf8 => "string".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Int32 => "int".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => "timestamp".into(),
        DataType::Date32 => "date".into(),
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(f) => format!(
                "map<{},{}>",
                athena_type(f[0].data_type()),
                athena_type(f[1].data_type())
            ),
            other => panic!("map entries {other}"),
        },
        DataType::List(item) => format!("array<{}>", athena_type(item.data_type())),
        other => panic!("no Athena type for {other}"),
    }
}

#[test]
fn the_glue_table_is_the_arrow_schema_exactly() {
    let t = template();
    let tables = of_type(&t, "AWS::Glue::Table");
    assert_eq!(tables.len(), 1);
    let input = &tables[0].1["Properties"]["TableInput"];
    assert_eq!(input["Name"].as_str(), Some("kms_events"));
    let columns: Vec<(String, String)> = input["StorageDescriptor"]["Columns"]
        .as_sequence()
        .expect("columns")
        .iter()
        .map(|c| {
            (
                c["Name"].as_str().unwrap_or_default().to_owned(),
                c["Type"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    // The Delta table's schema: the file columns, then the partition column.
    let expected: Vec<(String, String)> = kms_audit::lake::table::events_table_schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), athena_type(f.data_type())))
        .collect();
    assert_eq!(schema().fields().len() + 1, expected.len());
    assert_eq!(
        expected.last().map(|c| c.0.as_str()),
        Some(PARTITION_COLUMN)
    );
    assert_eq!(
        columns, expected,
        "Glue columns (name, type, order) differ from the lake"
    );
    // Athena reads the table's log, so it sees each version's files: no Hive partitions.
    assert!(
        input["PartitionKeys"]
            .as_sequence()
            .is_none_or(|k| k.is_empty())
    );
    let params = &input["Parameters"];
    assert_eq!(params["table_type"].as_str(), Some("DELTA"));
    assert!(params["projection.enabled"].is_null());
    let location = format!("{:?}", input["StorageDescriptor"]["Location"]);
    assert!(location.contains("/lake/kms_events"), "{location}");
}

/// The actions each function's policies allow on the lake bucket's objects.
fn lake_object_actions(t: &Value, function: &str) -> Vec<String> {
    let f = of_type(t, "AWS::Serverless::Function")
        .into_iter()
        .find(|(name, _)| name == function)
        .unwrap_or_else(|| panic!("no function {function}"));
    let mut out = Vec::new();
    statements(&f.1["Properties"]["Policies"], &mut out);
    out.into_iter()
        .filter(|(effect, _)| effect == "Allow")
        .flat_map(|(_, actions)| actions)
        .filter(|a| a.starts_with("s3:") && a != "s3:ListBucket")
        .collect()
}

#[test]
fn only_the_compaction_function_may_delete_lake_files() {
    let t = template();
    let ingest = lake_object_actions(&t, "IngestFunction");
    assert!(ingest.contains(&"s3:PutObject".to_owned()), "{ingest:?}");
    assert!(!ingest.iter().any(|a| a.contains("Delete")), "{ingest:?}");
    let compact = lake_object_actions(&t, "CompactFunction");
    assert!(
        compact.contains(&"s3:DeleteObject".to_owned()),
        "{compact:?}"
    );
    for f in ["DetectFunction", "ReportFunction"] {
        let actions = lake_object_actions(&t, f);
        assert!(
            !actions.iter().any(|a| a.contains("Delete")),
            "{f}: {actions:?}"
        );
    }
}

/// Every `Action` of a policy document's statements with their effect.
fn statements(v: &Value, out: &mut Vec<(String, Vec<String>)>) {
    match v {
        Value::Mapping(m) => {
            if let (Some(effect), Some(action)) = (m.get("Effect"), m.get("Action")) {
                let actions = match action {
                    Value::String(s) => vec![s.clone()],
                    Value::Sequence(s) => s
                        .iter()
                        .filter_map(|a| a.as_str().map(str::to_owned))
                        .collect(),
                    other => panic!("Action {other:?}"),
                };
                out.push((effect.as_str().unwrap_or_default().to_owned(), actions));
            }
            for (_, child) in m {
                statements(child, out);
            }
        }
        Value::Sequence(s) => s.iter().for_each(|c| statements(c, out)),
        Value::Tagged(t) => statements(&t.value, out),
        _ => {}
    }
}

#[test]
fn no_allow_statement_has_a_wildcard_action() {
    let t = template();
    let mut all = Vec::new();
    statements(&t["Resources"], &mut all);
    assert!(all.len() >= 12, "found only {} statements", all.len());
    for (effect, actions) in &all {
        for a in actions {
            if effect == "Allow" {
                assert!(!a.contains('*'), "Allow with a wildcard action: {a}");
            } else {
                assert_eq!(effect, "Deny", "{effect}");
            }
        }
    }
}

#[test]
fn every_bucket_queue_and_topic_is_encrypted_with_the_lake_key_and_private() {
    let t = template();
    let buckets = of_type(&t, "AWS::S3::Bucket");
    assert!(!buckets.is_empty());
    for (name, b) in &buckets {
        let p = &b["Properties"];
        let sse = &p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0];
        assert_eq!(
            sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"].as_str(),
            Some("aws:kms"),
            "{name}"
        );
        assert!(
            !sse["ServerSideEncryptionByDefault"]["KMSMasterKeyID"].is_null(),
            "{name}"
        );
        assert_eq!(sse["BucketKeyEnabled"].as_bool(), Some(true), "{name}");
        let block = &p["PublicAccessBlockConfiguration"];
        for k in [
            "BlockPublicAcls",
            "BlockPublicPolicy",
            "IgnorePublicAcls",
            "RestrictPublicBuckets",
        ] {
            assert_eq!(block[k].as_bool(), Some(true), "{name} {k}");
        }
        assert_eq!(
            p["VersioningConfiguration"]["Status"].as_str(),
            Some("Enabled")
        );
        // A TLS-only bucket policy names it.
        let policies = of_type(&t, "AWS::S3::BucketPolicy");
        assert!(
            policies.iter().any(|(_, pol)| {
                let s = serde_yaml_ng::to_string(&pol["Properties"]).unwrap_or_default();
                s.contains(name.as_str()) && s.contains("aws:SecureTransport")
            }),
            "{name} has no TLS-only policy"
        );
    }
    for ty in ["AWS::SQS::Queue", "AWS::SNS::Topic"] {
        for (name, q) in of_type(&t, ty) {
            assert!(
                !q["Properties"]["KmsMasterKeyId"].is_null(),
                "{name} is not KMS-encrypted"
            );
        }
    }
    let keys = of_type(&t, "AWS::KMS::Key");
    assert_eq!(keys.len(), 1);
    assert_eq!(
        keys[0].1["Properties"]["EnableKeyRotation"].as_bool(),
        Some(true)
    );
}

#[test]
fn the_function_is_built_from_this_workspace_for_lambda() {
    let t = template();
    let functions = of_type(&t, "AWS::Serverless::Function");
    assert!(!functions.is_empty());
    let workspace = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml"))
        .expect("Cargo.toml");
    for (name, f) in functions {
        assert_eq!(
            f["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{name}"
        );
        let binary = f["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .expect("Binary");
        let crate_dir = format!("functions/{binary}");
        assert!(
            workspace.contains(&format!("\"{crate_dir}\"")),
            "{crate_dir} is not a workspace member"
        );
        let p = &f["Properties"];
        assert_eq!(p["Runtime"].as_str(), Some("provided.al2023"));
        assert_eq!(p["Architectures"][0].as_str(), Some("arm64"));
    }
}

#[test]
fn the_detect_function_reaches_security_hub_and_eventbridge_only_where_chosen() {
    let t = template();
    let f = &t["Resources"]["DetectFunction"]["Properties"];
    let env = &f["Environment"]["Variables"];
    for var in ["KMS_AUDIT_SECURITY_HUB", "KMS_AUDIT_EVENT_BUS"] {
        assert!(!env[var].is_null(), "{var} is set from a parameter");
    }
    let text = serde_yaml_ng::to_string(&f["Policies"]).expect("yaml");
    let mut all = Vec::new();
    statements(&f["Policies"], &mut all);
    let actions: Vec<&str> = all
        .iter()
        .flat_map(|(_, a)| a.iter().map(String::as_str))
        .collect();
    assert!(actions.contains(&"securityhub:BatchImportFindings"));
    assert!(actions.contains(&"events:PutEvents"));
    // Least privilege: the default product of this account, the chosen bus.
    assert!(text.contains("product/${AWS::AccountId}/default"), "{text}");
    assert!(text.contains("event-bus/${AlertEventBusName}"), "{text}");
    assert!(!text.contains("securityhub:*") && !text.contains("events:*"));
}

#[test]
fn ingest_batches_are_large_and_the_queue_outlasts_them() {
    let t = template();
    let f = &t["Resources"]["IngestFunction"]["Properties"];
    let sqs = &f["Events"]["TrailObjects"]["Properties"];
    let param = |p: &str| {
        let name = match &sqs[p] {
            Value::Tagged(r) if r.tag == "Ref" => r.value.as_str(),
            v => v["Ref"].as_str(),
        };
        &t["Parameters"][name.unwrap_or_else(|| panic!("{p} is a parameter"))]
    };
    let number = |v: &Value| v.as_u64().expect("a number");
    // One invocation is one commit: batches of a few objects gave a file per object.
    let batch = param("BatchSize");
    assert!(number(&batch["Default"]) >= 100);
    let window = param("MaximumBatchingWindowInSeconds");
    assert!(number(&window["Default"]) >= 60);
    // Lambda requires a window of at least 1 s for batches of more than 10, and at most 300.
    assert!(number(&window["MinValue"]) >= 1);
    assert!(number(&window["MaxValue"]) <= 300);
    assert!(number(&batch["MaxValue"]) <= 10_000);
    // Lambda's SQS integration asks for six times the function timeout plus the window.
    let queue = &t["Resources"]["IngestQueue"]["Properties"];
    assert!(
        number(&queue["VisibilityTimeout"])
            >= 6 * number(&f["Timeout"]) + number(&window["MaxValue"])
    );
}
