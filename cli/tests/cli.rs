//! The `kms-audit` binary as users run it: arguments, stdout, stderr and exit codes.

mod common;

use common::{command, generate, kms_audit, stderr, stdout, with_stdin};

#[test]
fn ingest_json_summary_exit_codes_and_named_failures() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    generate(
        dir,
        "trail",
        3,
        1,
        &["--kms-per-hour", "10", "--manifest", "manifest.json"],
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest"))
            .expect("json");

    let ok = kms_audit(&["ingest", "trail", "--json"], dir);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let summary: serde_json::Value =
        serde_json::from_str(stdout(&ok).trim()).expect("one JSON object");
    for field in [
        "objects",
        "objects_failed",
        "records",
        "kms_events",
        "skipped",
        "rejected",
        "bytes_in",
        "seconds",
    ] {
        assert!(summary.get(field).is_some(), "missing {field}: {summary}");
    }
    assert_eq!(summary["kms_events"], manifest["kms_records"]);
    assert_eq!(summary["records"], manifest["records"]);
    assert_eq!(summary["objects_failed"], 0);
    assert_eq!(
        summary["records"].as_u64(),
        Some(
            summary["kms_events"].as_u64().unwrap_or(0)
                + summary["skipped"].as_u64().unwrap_or(0)
                + summary["rejected"].as_u64().unwrap_or(0)
        )
    );
    // The default lake is ./kms-lake.
    assert!(dir.join("kms-lake/kms_events").is_dir());

    // A corrupt object among good ones: named on stderr, exit 1, the good ones written.
    let bad = dir.join("trail/broken.json.gz");
    std::fs::write(&bad, b"\x1f\x8b\x08\x00garbage").expect("write");
    let mixed = kms_audit(&["ingest", "trail", "--json", "--lake", "lake2"], dir);
    assert_eq!(mixed.status.code(), Some(1), "{}", stderr(&mixed));
    let err = stderr(&mixed);
    assert!(err.contains("broken.json.gz"), "{err}");
    let summary: serde_json::Value = serde_json::from_str(stdout(&mixed).trim()).expect("json");
    assert_eq!(summary["objects_failed"], 1);
    assert_eq!(summary["kms_events"], manifest["kms_records"]);

    // SQL in every format.
    let q = "SELECT event_name, count(*) AS n FROM kms_events GROUP BY event_name ORDER BY n DESC, event_name";
    let csv = kms_audit(&["sql", q, "--lake", "lake2", "--format", "csv"], dir);
    assert!(csv.status.success(), "{}", stderr(&csv));
    let csv = stdout(&csv);
    assert_eq!(csv.lines().next(), Some("event_name,n"));
    let total: u64 = csv
        .lines()
        .skip(1)
        .map(|l| {
            l.rsplit(',')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .expect("count")
        })
        .sum();
    assert_eq!(Some(total), manifest["kms_records"].as_u64());
    let json = kms_audit(&["sql", q, "--lake", "lake2", "--format", "json"], dir);
    let rows: Vec<serde_json::Value> = stdout(&json)
        .lines()
        .map(|l| serde_json::from_str(l).expect("row"))
        .collect();
    assert_eq!(rows.len(), csv.lines().count() - 1);
    assert!(rows[0]["event_name"].is_string());
    let table = kms_audit(&["sql", q, "--lake", "lake2"], dir);
    assert!(
        stdout(&table).contains("| event_name"),
        "{}",
        stdout(&table)
    );

    // Nested columns in CSV and JSON.
    let nested = kms_audit(
        &[
            "sql",
            "SELECT encryption_context FROM kms_events WHERE encryption_context IS NOT NULL LIMIT 1",
            "--lake",
            "lake2",
            "--format",
            "json",
        ],
        dir,
    );
    let row: serde_json::Value = serde_json::from_str(stdout(&nested).trim()).expect("row");
    assert!(row["encryption_context"].is_object(), "{row}");

    // Bad SQL is an error, not a panic.
    let bad_sql = kms_audit(&["sql", "SELEC nonsense", "--lake", "lake2"], dir);
    assert_eq!(bad_sql.status.code(), Some(2));
    assert!(stderr(&bad_sql).contains("error:"));
}

#[test]
fn interactive_sql_reads_statements_from_stdin() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = with_stdin(
        command(&["sql", "--lake", "lake", "--format", "csv"], tmp.path()),
        "SELECT 1 AS one,\n  2 AS two;\nSELECT count(*) AS n FROM kms_events;\n",
    );
    assert!(out.status.success());
    assert_eq!(stdout(&out), "one,two\n1,2\nn\n0\n");
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    use std::io::BufRead;
    use std::process::Stdio;
    let tmp = tempfile::tempdir().expect("tmp");
    // `kms-audit sql ... | head -2`: far more output than a pipe holds.
    let sql = "SELECT unnest(range(0, 300000)) AS n";
    let mut child = command(
        &["sql", "--lake", "lake", "--format", "csv", sql],
        tmp.path(),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn");
    let mut reader = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    reader.read_line(&mut first).expect("a line");
    assert_eq!(first, "n\n");
    drop(reader);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(stderr(&out), "", "nothing said about the closed pipe");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn schema_lists_every_column() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = kms_audit(&["schema"], tmp.path());
    let text = stdout(&out);
    for c in kms_audit::schema::COLUMNS {
        assert!(text.lines().any(|l| l.starts_with(c.name)), "{}", c.name);
    }
    assert!(text.contains("event_date"));
}

#[test]
fn detect_json_alerts_follow_the_contract_and_state_deduplicates() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    generate(
        dir,
        "trail",
        30,
        1,
        &["--kms-per-hour", "20", "--manifest", "manifest.json"],
    );
    assert!(
        kms_audit(&["ingest", "trail", "--lake", "lake"], dir)
            .status
            .success()
    );

    // A sink that cannot be reached fails the run and leaves no state behind...
    let unreachable = kms_audit(
        &[
            "detect",
            "--lake",
            "lake",
            "--format",
            "json",
            "--sink",
            "http://127.0.0.1:9/hook",
        ],
        dir,
    );
    assert_ne!(unreachable.status.code(), Some(0));
    assert!(
        stderr(&unreachable).contains("sink"),
        "{}",
        stderr(&unreachable)
    );
    assert!(!dir.join("lake/state/detections.json").exists());

    // ...so the next run delivers the same alerts.
    let first = kms_audit(
        &[
            "detect",
            "--lake",
            "lake",
            "--format",
            "json",
            "--sink",
            "file:out/alerts.ndjson",
        ],
        dir,
    );
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(
        stdout(&unreachable).lines().count(),
        stdout(&first).lines().count(),
        "the failed run printed its alerts"
    );
    let delivered = std::fs::read_to_string(dir.join("out/alerts.ndjson")).expect("sink file");
    assert_eq!(delivered, stdout(&first));
    let alerts: Vec<serde_json::Value> = stdout(&first)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one alert per line"))
        .collect();
    assert!(alerts.len() >= 10, "{}", stdout(&first));
    for a in &alerts {
        for field in [
            "rule_id",
            "title",
            "severity",
            "first_seen",
            "last_seen",
            "count",
            "principal",
            "key_arn",
            "account_id",
            "aws_region",
            "source_ips",
            "event_ids",
            "summary",
            "dedup_key",
        ] {
            assert!(a.get(field).is_some(), "alert without {field}: {a}");
        }
        assert!(
            ["critical", "high", "medium", "low", "info"]
                .contains(&a["severity"].as_str().unwrap_or(""))
        );
        assert!(!a["event_ids"].as_array().expect("ids").is_empty());
    }
    let deletion = alerts
        .iter()
        .find(|a| a["rule_id"] == "kms_key_deletion_scheduled")
        .expect("the planted deletion alerts");
    assert_eq!(
        deletion["severity"], "critical",
        "a 7-day window is critical"
    );
    assert!(dir.join("lake/state/detections.json").is_file());

    // The same incidents are not reported twice; --no-state reports them all again.
    let second = kms_audit(&["detect", "--lake", "lake", "--format", "json"], dir);
    assert!(second.status.success());
    assert_eq!(
        stdout(&second).trim(),
        "",
        "re-alerted: {}",
        stdout(&second)
    );
    let stateless = kms_audit(
        &["detect", "--lake", "lake", "--format", "json", "--no-state"],
        dir,
    );
    assert_eq!(stdout(&stateless).lines().count(), alerts.len());

    // The same alerts as OCSF Detection Findings, with the class's required attributes.
    let ocsf = kms_audit(
        &["detect", "--lake", "lake", "--format", "ocsf", "--no-state"],
        dir,
    );
    assert!(ocsf.status.success(), "{}", stderr(&ocsf));
    let findings: Vec<serde_json::Value> = stdout(&ocsf)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one finding per line"))
        .collect();
    assert_eq!(findings.len(), alerts.len());
    for f in &findings {
        let a = alerts
            .iter()
            .find(|a| a["dedup_key"] == f["finding_info"]["uid"])
            .expect("a finding per alert");
        for required in kms_audit::detect::ocsf::REQUIRED_ATTRIBUTES {
            assert!(!f[*required].is_null(), "finding without {required}: {f}");
        }
        assert_eq!(f["class_uid"], 2004);
        assert_eq!(f["category_uid"], 2);
        assert_eq!(f["finding_info"]["uid"], a["dedup_key"]);
        assert_eq!(f["finding_info"]["analytic"]["uid"], a["rule_id"]);
        assert!(f["metadata"]["product"]["name"].is_string());
        assert_eq!(f["evidences"][0]["data"]["event_ids"], a["event_ids"]);
    }

    // The table is sorted by severity.
    let table = kms_audit(&["detect", "--lake", "lake", "--no-state"], dir);
    let sev: Vec<String> = stdout(&table)
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap_or("").to_owned())
        .collect();
    let rank = |s: &str| {
        ["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO"]
            .iter()
            .position(|x| *x == s)
    };
    let ranks: Vec<usize> = sev.iter().filter_map(|s| rank(s)).collect();
    assert_eq!(ranks.len(), sev.len());
    assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{sev:?}");

    let rules = kms_audit(&["rules"], dir);
    assert!(stdout(&rules).contains("kms_key_policy_public"));
    assert!(stdout(&rules).contains("MITRE ATT&CK"));
}

#[test]
fn the_sql_prompt_takes_multi_line_statements_and_meta_commands() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    generate(dir, "t", 2, 1, &[]);
    assert!(
        kms_audit(&["ingest", "t", "--lake", "l"], dir)
            .status
            .success()
    );
    let script =
        "\\d\n\\d kms_events\n\\d principals\nSELECT count(*) AS n\n  FROM kms_events_dedup;\n";
    let o = with_stdin(
        command(&["sql", "--lake", "l", "--format", "csv"], dir),
        script,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for t in [
        "kms_events,BASE TABLE",
        "kms_events_dedup,VIEW",
        "key_usage_daily,VIEW",
        "principals,VIEW",
    ] {
        assert!(out.contains(t), "\\d lists {t}: {out}");
    }
    // \d kms_events documents each column; \d of a view lists its columns.
    assert!(
        out.contains("encryption_context") && out.contains("requestParameters.encryptionContext")
    );
    assert!(out.contains("calls_with_mfa"));
    let n: u64 = out
        .lines()
        .skip_while(|l| *l != "n")
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("the count after the multi-line statement");
    assert!(n > 0);
    // A failing statement or unknown command makes piped input exit 1, after the rest ran.
    let o = with_stdin(
        command(&["sql", "--lake", "l"], dir),
        "SELECT nope FROM kms_events;\n\\x\nSELECT 1;\n",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nope") && stderr(&o).contains("unknown command \\x"));
    assert!(stdout(&o).contains("| 1 "), "{}", stdout(&o));
}

/// `verify` on a tree and on the lake: exit codes, JSON lines, the summary, plain text.
#[test]
fn verify_names_a_modified_log_on_the_tree_and_the_lake_and_exits_1() {
    let Ok(python) = std::env::var("KMS_AUDIT_TEST_PYTHON") else {
        assert!(
            std::env::var_os("KMS_AUDIT_CI").is_none(),
            "needs KMS_AUDIT_TEST_PYTHON (cryptography): run scripts/test"
        );
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    generate(
        dir,
        "trail",
        3,
        1,
        &["--kms-per-hour", "10", "--no-digests"],
    );
    let fixture = std::process::Command::new(python)
        .arg("-c")
        .arg(include_str!("../../tests/it/digest_fixture.py"))
        .args(["trail", "keys.json", "trail-bucket"])
        .current_dir(dir)
        .output()
        .expect("python");
    assert!(fixture.status.success(), "{}", stderr(&fixture));

    let clean = kms_audit(&["verify", "trail", "--public-keys", "keys.json"], dir);
    assert_eq!(clean.status.code(), Some(0), "{}", stderr(&clean));
    assert!(
        stdout(&clean).contains("integrity verified"),
        "{}",
        stdout(&clean)
    );
    let ingested = kms_audit(&["ingest", "trail", "--json"], dir);
    assert!(ingested.status.success(), "{}", stderr(&ingested));
    let summary: serde_json::Value = serde_json::from_str(stdout(&ingested).trim()).expect("json");
    assert!(summary["digests"].as_u64().unwrap_or(0) >= 3, "{summary}");

    // Modify one log after ingest: the tree sees it now, the lake when it is ingested.
    let log = walkdir::WalkDir::new(dir.join("trail"))
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .find(|e| e.file_type().is_file() && e.path().to_string_lossy().contains("/CloudTrail/"))
        .expect("a log")
        .into_path();
    let mut bytes = std::fs::read(&log).expect("read");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
        .expect("gunzip");
    std::io::Write::write_all(
        &mut gz,
        text.replacen("\"Records\"", "\"Records\" ", 1).as_bytes(),
    )
    .expect("gz");
    bytes = gz.finish().expect("gz");
    std::fs::write(&log, bytes).expect("write");

    let tree = kms_audit(
        &["verify", "trail", "--public-keys", "keys.json", "--json"],
        dir,
    );
    assert_eq!(tree.status.code(), Some(1), "{}", stderr(&tree));
    let lines: Vec<serde_json::Value> = stdout(&tree)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let (summary, findings) = lines.split_last().expect("lines");
    assert_eq!(findings.len(), 1, "{lines:?}");
    let f = &findings[0];
    assert_eq!(f["kind"], "log_modified");
    let key = log
        .strip_prefix(dir.join("trail"))
        .expect("rel")
        .to_string_lossy()
        .into_owned();
    assert_eq!(f["object"], format!("s3://trail-bucket/{key}"));
    assert!(
        f["digest"]
            .as_str()
            .is_some_and(|d| d.contains("CloudTrail-Digest")),
        "{f}"
    );
    assert!(
        f["detail"].as_str().is_some_and(|d| d.contains("SHA-256")),
        "{f}"
    );
    assert_eq!(summary["summary"]["failures"], 1);

    // The lake ingested the original: it verifies until the modified copy is ingested
    // as a new object (here, from another directory holding the same key).
    let lake_ok = kms_audit(&["verify", "--public-keys", "keys.json"], dir);
    assert_eq!(lake_ok.status.code(), Some(0), "{}", stdout(&lake_ok));
    let fresh = kms_audit(&["ingest", "trail", "--lake", "lake2"], dir);
    assert!(fresh.status.success(), "{}", stderr(&fresh));
    let lake = kms_audit(
        &[
            "verify",
            "--lake",
            "lake2",
            "--public-keys",
            "keys.json",
            "--json",
        ],
        dir,
    );
    assert_eq!(lake.status.code(), Some(1), "{}", stderr(&lake));
    assert_eq!(stdout(&lake), stdout(&tree));
    let text = kms_audit(
        &["verify", "--lake", "lake2", "--public-keys", "keys.json"],
        dir,
    );
    assert!(
        stdout(&text).starts_with("log_modified\ts3://trail-bucket/"),
        "{}",
        stdout(&text)
    );
    assert!(
        stdout(&text).contains("INTEGRITY FAILED"),
        "{}",
        stdout(&text)
    );

    // Keys that are not the list-public-keys JSON: an error (2), not a verdict.
    std::fs::write(dir.join("bad.json"), "{}").expect("write");
    let bad = kms_audit(&["verify", "trail", "--public-keys", "bad.json"], dir);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("list-public-keys"),
        "{}",
        stderr(&bad)
    );
}

/// A generated tree's unsigned digests: `--no-signatures` checks the chain and hashes.
#[test]
fn verify_without_signatures_checks_a_generated_tree() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    generate(
        dir,
        "trail",
        3,
        1,
        &["--kms-per-hour", "10", "--no-incidents"],
    );
    let v = kms_audit(&["verify", "trail", "--no-signatures", "--json"], dir);
    assert_eq!(v.status.code(), Some(0), "{}{}", stdout(&v), stderr(&v));
    let summary: serde_json::Value =
        serde_json::from_str(stdout(&v).lines().last().expect("summary")).expect("json");
    let s = &summary["summary"];
    assert_eq!(s["signatures_checked"], false);
    assert_eq!(s["failures"], 0);
    assert!(s["digests"].as_u64().unwrap_or(0) >= 3, "{s}");
    assert_eq!(s["logs_listed"], s["logs"], "{s}");
}

/// Reports written side by side: the later one finds the earlier and lists the changes.
#[test]
fn a_report_beside_an_earlier_one_lists_the_changes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    generate(dir, "trail", 6, 1, &["--kms-per-hour", "10"]);
    assert!(kms_audit(&["ingest", "trail"], dir).status.success());
    let first = kms_audit(
        &[
            "report",
            "--out",
            "reports/first",
            "--since",
            "2026-11-01",
            "--until",
            "2026-11-02T03:00:00Z",
        ],
        dir,
    );
    assert!(first.status.success(), "{}", stderr(&first));
    let second = kms_audit(
        &["report", "--out", "reports/second", "--since", "2026-11-01"],
        dir,
    );
    assert!(second.status.success(), "{}", stderr(&second));
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("reports/second/report.json")).expect("json"),
    )
    .expect("json");
    let changes = &json["changes"];
    assert!(
        changes["previous"]["location"]
            .as_str()
            .is_some_and(|l| l.ends_with("reports/first/report.json")),
        "{changes:#}"
    );
    assert!(changes["new_findings"].is_array(), "{changes:#}");
    let html = std::fs::read_to_string(dir.join("reports/second/report.html")).expect("html");
    assert!(html.contains("Changes since the previous report"));
    assert!(html.contains("Compared with the report of"));
    // --compare names it explicitly; the first report had nothing before it.
    let first_json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("reports/first/report.json")).expect("json"),
    )
    .expect("json");
    assert!(
        first_json["changes"].is_null(),
        "{:#}",
        first_json["changes"]
    );
}

/// `policy` on documents: exit 1 on a risk, 0 on the default policy; JSON lines.
#[test]
fn policy_judges_documents_for_ci() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let default = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}"#;
    let partner = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Partner","Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"kms:CallerAccount":"999988887777"}}}]}"#;
    std::fs::write(dir.join("default.json"), default).expect("write");
    std::fs::write(dir.join("partner.json"), partner).expect("write");
    let ok = kms_audit(
        &[
            "policy",
            "default.json",
            "--trusted-accounts",
            "111122223333",
        ],
        dir,
    );
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("0 risk(s)"), "{}", stdout(&ok));
    let bad = kms_audit(
        &[
            "policy",
            "partner.json",
            "--trusted-accounts",
            "111122223333",
            "--format",
            "json",
        ],
        dir,
    );
    assert_eq!(bad.status.code(), Some(1), "{}", stdout(&bad));
    let line: serde_json::Value = serde_json::from_str(stdout(&bad).trim()).expect("json");
    assert_eq!(line["kind"], "account_principal");
    assert_eq!(line["value"], "999988887777");
    assert_eq!(line["risk"], true);
    // Organizations and endpoints, each judged against its own trusted set.
    let org = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-a1b2c3d4e5"}}},{"Effect":"Allow","Principal":"*","Action":"kms:Encrypt","Condition":{"StringEquals":{"aws:SourceVpce":"vpce-0a1b2c3d"}}}]}"#;
    std::fs::write(dir.join("org.json"), org).expect("write");
    let judge = |orgs: &str, endpoints: &str| {
        let out = kms_audit(
            &[
                "policy",
                "org.json",
                "--trusted-orgs",
                orgs,
                "--trusted-endpoints",
                endpoints,
                "--format",
                "json",
            ],
            dir,
        );
        let risks: Vec<String> = stdout(&out)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["risk"] == true)
            .map(|v| {
                format!(
                    "{}={}",
                    v["kind"].as_str().unwrap_or(""),
                    v["value"].as_str().unwrap_or("")
                )
            })
            .collect();
        (out.status.code(), risks)
    };
    assert_eq!(judge("o-a1b2c3d4e5", "vpce-0a1b2c3d"), (Some(0), vec![]));
    assert_eq!(
        judge("o-zz9y8x7w6v", "vpce-0a1b2c3d"),
        (Some(1), vec!["org_principal=o-a1b2c3d4e5".to_owned()])
    );
    assert_eq!(
        judge("o-a1b2c3d4e5", "vpce-0ffff"),
        (Some(1), vec!["endpoint_principal=vpce-0a1b2c3d".to_owned()])
    );
    // From stdin; a document that is not JSON is a risk, not an error.
    let mut c = command(&["policy", "-"], dir);
    c.stdout(std::process::Stdio::piped());
    let broken = with_stdin(c, "{\"Statement\": [");
    assert_eq!(broken.status.code(), Some(1), "{}", stderr(&broken));
    assert!(
        stdout(&broken).contains("unparseable"),
        "{}",
        stdout(&broken)
    );
}

/// The evasion suite through the commands a user runs: `generate --evasions`, `ingest`,
/// `detect --abac-tag-keys`. Every incident's events alert and no look-alike's does; trust
/// comes from the log keys, which `detect` says.
#[test]
fn generated_evasions_alert_through_the_cli() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    generate(
        dir,
        "trail",
        72,
        2,
        &[
            "--kms-per-hour",
            "20",
            "--no-digests",
            "--evasions",
            "--manifest",
            "manifest.json",
        ],
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest"))
            .expect("json");
    let ingest = kms_audit(&["ingest", "trail", "--lake", "lake"], dir);
    assert!(ingest.status.success(), "{}", stderr(&ingest));
    let detect = kms_audit(
        &[
            "detect",
            "--lake",
            "lake",
            "--format",
            "json",
            "--no-state",
            "--abac-tag-keys",
            "Project",
        ],
        dir,
    );
    assert!(detect.status.success(), "{}", stderr(&detect));
    assert!(
        stderr(&detect).contains("from the log objects' keys"),
        "{}",
        stderr(&detect)
    );
    let alerted: std::collections::BTreeSet<String> = stdout(&detect)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .flat_map(|a| {
            a["event_ids"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
        })
        .collect();
    let ids = |list: &str, field: &str| -> Vec<(String, String)> {
        manifest[list]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|i| {
                let kind = i["kind"].as_str().unwrap_or("").to_owned();
                i[field]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(move |v| v.as_str().map(|s| (kind.clone(), s.to_owned())))
            })
            .collect()
    };
    let incidents = ids("incidents", "event_ids");
    assert!(
        incidents
            .iter()
            .filter(|(k, _)| k.starts_with("evasion_"))
            .count()
            >= 20
    );
    let missed: Vec<&(String, String)> = incidents
        .iter()
        .filter(|(_, id)| !alerted.contains(id))
        .collect();
    assert!(missed.is_empty(), "not alerted: {missed:?}");
    let on_lookalikes: Vec<(String, String)> = ids("lookalikes", "context_ids")
        .into_iter()
        .filter(|(_, id)| alerted.contains(id))
        .collect();
    assert!(on_lookalikes.is_empty(), "alerted: {on_lookalikes:?}");
}
