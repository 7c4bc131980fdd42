//! kms-audit's SQL functions, through DataFusion as users call them.

use crate::rt;
use arrow::array::AsArray;
use kms_audit::sql::{open_local, run_sql};

fn query_strings(sql: &str) -> Vec<Option<String>> {
    let tmp = tempfile::tempdir().expect("tmp");
    let ctx = open_local(tmp.path()).expect("open");
    let batches = rt().block_on(run_sql(&ctx, sql)).expect(sql);
    let mut out = Vec::new();
    for b in batches {
        let col =
            arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).expect("cast");
        let s = col.as_string::<i32>();
        out.extend(s.iter().map(|v| v.map(str::to_owned)));
    }
    out
}

#[test]
fn is_private_ip_and_arn_account() {
    let got = query_strings(
        "SELECT CAST(is_private_ip(ip) AS VARCHAR) FROM (VALUES ('10.0.3.4'), ('198.51.100.7'), ('s3.amazonaws.com'), (NULL)) t(ip)",
    );
    assert_eq!(
        got,
        vec![
            Some("true".into()),
            Some("false".into()),
            Some("false".into()),
            None
        ]
    );
    let got = query_strings(
        "SELECT arn_account(a) FROM (VALUES ('arn:aws:iam::210987654321:role/x'), ('dynamodb.amazonaws.com')) t(a)",
    );
    assert_eq!(got, vec![Some("210987654321".into()), None]);
    // Scalar arguments work too.
    assert_eq!(
        query_strings("SELECT arn_account('arn:aws:kms:us-east-1:111122223333:key/k')"),
        vec![Some("111122223333".into())]
    );
}

#[test]
fn policy_findings_unnest_in_sql() {
    let policy = r#"{"Statement":[{"Sid":"Open","Effect":"Allow","Principal":"*","Action":"kms:Decrypt"},{"Sid":"Partner","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::210987654321:root"},"Action":"kms:Decrypt"}]}"#;
    let sql = format!(
        "SELECT f['kind'] || ':' || coalesce(f['sid'], '') || ':' || f['value'] FROM \
           (SELECT unnest(policy_findings(p)) AS f FROM (VALUES ('{policy}')) t(p))"
    );
    assert_eq!(
        query_strings(&sql),
        vec![
            Some("public_principal:Open:*".into()),
            Some("account_principal:Partner:210987654321".into()),
        ]
    );
    // Invalid JSON is a finding (a policy nobody can read is not safe), not an error.
    assert_eq!(
        query_strings("SELECT unnest(policy_findings('{nope'))['kind']"),
        vec![Some("unparseable".into())]
    );
}
