//! The policy evaluator's own table (`tests/policies/cases.yaml`): every document, through
//! the library and through the `policy_findings` SQL function, gives exactly its findings.

use std::collections::BTreeSet;

use crate::rt;
use arrow::array::AsArray;
use kms_audit::sql::policy::analyze_or_finding;
use kms_audit::sql::{open_local, run_sql};

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    policy: String,
    findings: Vec<String>,
}

fn cases() -> Vec<Case> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/cases.yaml");
    let text = std::fs::read_to_string(path).expect("cases.yaml");
    serde_yaml_ng::from_str(&text).expect("cases.yaml is YAML")
}

fn label(kind: &str, value: &str) -> String {
    if kind == "unparseable" {
        kind.to_owned()
    } else {
        format!("{kind} {value}")
    }
}

#[test]
fn every_policy_in_the_table_gives_exactly_its_findings() {
    let cases = cases();
    assert!(cases.len() >= 40, "{} documents", cases.len());
    let tmp = tempfile::tempdir().expect("tmp");
    let ctx = open_local(tmp.path()).expect("open");
    let mut failures = Vec::new();
    for c in &cases {
        let expected: BTreeSet<String> = c.findings.iter().cloned().collect();
        let lib: BTreeSet<String> = analyze_or_finding(&c.policy)
            .iter()
            .map(|f| label(f.kind.as_str(), &f.value))
            .collect();
        let sql = format!(
            "SELECT f['kind'] AS kind, f['value'] AS value \
             FROM (SELECT unnest(policy_findings('{}')) AS f)",
            c.policy.replace('\'', "''")
        );
        let mut via_sql = BTreeSet::new();
        for b in rt().block_on(run_sql(&ctx, &sql)).expect(&c.name) {
            let (k, v) = (
                b.column(0).as_string::<i32>(),
                b.column(1).as_string::<i32>(),
            );
            for i in 0..b.num_rows() {
                via_sql.insert(label(k.value(i), v.value(i)));
            }
        }
        if lib != expected || via_sql != expected {
            failures.push(format!(
                "{}: library {lib:?}, SQL {via_sql:?}, expected {expected:?}",
                c.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
