//! Detection rules through the real path: each rule's own test records → a gzipped
//! CloudTrail object → ingest → Parquet → DataFusion → alerts, asserting exactly which
//! event ids alert. Plus a lint of the rule files.

use crate::rt;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use kms_audit::catalog::mitre_technique;
use kms_audit::detect::{Rule, Window, builtin_rule_ids, builtin_rules, load_rules, run_rules};
use kms_audit::ingest::{ingest_all, local_sources};
use kms_audit::lake::LocalLake;
use kms_audit::sql::open_local;
use kms_audit::time::{format_micros, parse_event_time, parse_span};
use serde_json::{Value, json};

/// What every test record is merged over.
fn default_record() -> Value {
    json!({
        "eventVersion": "1.09",
        "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "arn": "arn:aws:iam::111122223333:user/dana",
                         "accountId": "111122223333", "userName": "dana"},
        "eventTime": "2026-11-11T01:00:00Z",
        "eventSource": "kms.amazonaws.com",
        "eventName": "Decrypt",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "10.0.0.10",
        "userAgent": "aws-cli/2.17.0",
        "requestParameters": null,
        "responseElements": null,
        "requestID": "req",
        "readOnly": true,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": "111122223333",
        "eventCategory": "Management"
    })
}

/// Merges a test record over the default and expands `_repeat: {count, every}`.
pub fn expand(record: &Value) -> Vec<Value> {
    let mut base = default_record();
    let mut repeat = None;
    if let (Some(b), Some(r)) = (base.as_object_mut(), record.as_object()) {
        for (k, v) in r {
            if k == "_repeat" {
                repeat = Some(v.clone());
            } else {
                b.insert(k.clone(), v.clone());
            }
        }
    }
    let Some(rep) = repeat else {
        return vec![base];
    };
    let count = rep["count"].as_u64().expect("_repeat.count");
    let every = parse_span(rep["every"].as_str().expect("_repeat.every")).expect("span");
    let t0 = parse_event_time(base["eventTime"].as_str().expect("time")).expect("time");
    let id = base["eventID"].as_str().expect("eventID").to_owned();
    (0..count)
        .map(|i| {
            let mut r = base.clone();
            r["eventID"] = json!(format!("{id}-{i}"));
            r["eventTime"] = json!(format_micros(t0 + i as i64 * every));
            r
        })
        .collect()
}

/// Ingests records into a fresh lake, as one gzipped CloudTrail object per recipient
/// account, each under that account's `AWSLogs/` prefix.
pub fn lake_with(dir: &Path, records: &[Value]) -> LocalLake {
    lake_delivered(dir, records, None, None)
}

/// [`lake_with`], all records under `account`'s prefix when given (whatever their
/// `recipientAccountId` says), in an organization trail's layout when `org` is given.
pub fn lake_delivered(
    dir: &Path,
    records: &[Value],
    account: Option<&str>,
    org: Option<&str>,
) -> LocalLake {
    let trail = dir.join("trail");
    let mut by_account: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for r in records {
        let a = account
            .or(r["recipientAccountId"].as_str())
            .unwrap_or("111122223333");
        by_account.entry(a.to_owned()).or_default().push(r);
    }
    for (i, (acct, recs)) in by_account.iter().enumerate() {
        let first = recs
            .iter()
            .filter_map(|r| r["eventTime"].as_str())
            .min()
            .unwrap_or("2026-11-11T00:00:00Z");
        let region = recs[0]["awsRegion"].as_str().unwrap_or("us-east-1");
        let (day, stamp) = (
            &first[..10],
            format!(
                "{}T{}{}Z",
                first[..10].replace('-', ""),
                &first[11..13],
                &first[14..16]
            ),
        );
        let mut path = trail.join("AWSLogs");
        if let Some(o) = org {
            path.push(o);
        }
        path.push(acct);
        path.push("CloudTrail");
        path.push(region);
        path.extend(day.split('-'));
        std::fs::create_dir_all(&path).expect("mkdir");
        let file = path.join(format!(
            "{acct}_CloudTrail_{region}_{stamp}_test{i:012}.json.gz"
        ));
        let body = json!({ "Records": recs }).to_string();
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(file).expect("create"),
            flate2::Compression::fast(),
        );
        gz.write_all(body.as_bytes()).expect("write");
        gz.finish().expect("gz");
    }
    if records.is_empty() {
        std::fs::create_dir_all(&trail).expect("mkdir");
    }
    let lake = LocalLake::open(dir.join("lake")).expect("lake");
    let (objects, _) = local_sources(&[trail]).expect("sources");
    let run = ingest_all(&objects, &lake, &|_| {}).expect("ingest");
    assert_eq!(run.objects_failed, 0, "{:?}", run.failures);
    // Every KMS test record is a KMS event; the others (CloudTrail's own events) are
    // skipped, and kept in `trail_events` when they matter to the trail.
    let kms = records
        .iter()
        .filter(|r| r["eventSource"] == "kms.amazonaws.com")
        .count();
    assert_eq!(run.counts.kms_events as usize, kms);
    assert_eq!(run.counts.skipped as usize, records.len() - kms);
    lake
}

fn matches(expect: &str, id: &str) -> bool {
    match expect.strip_suffix('*') {
        Some(prefix) => id.starts_with(prefix),
        None => expect == id,
    }
}

fn check_rule(rule: &Rule) -> Vec<String> {
    let mut failures = Vec::new();
    let rt = rt();
    for test in &rule.meta.tests {
        let records: Vec<Value> = test.records.iter().flat_map(expand).collect();
        let tmp = tempfile::tempdir().expect("tmp");
        let lake = lake_delivered(
            tmp.path(),
            &records,
            test.delivered_account.as_deref(),
            test.delivered_org.as_deref(),
        );
        let ctx = open_local(lake.root()).expect("open");
        let times: Vec<i64> = records
            .iter()
            .map(|r| parse_event_time(r["eventTime"].as_str().unwrap_or("")).expect("time"))
            .collect();
        let since = test
            .since
            .as_deref()
            .map(|s| parse_event_time(s).expect("since"))
            .unwrap_or_else(|| times.iter().copied().min().unwrap_or(0));
        let until = times.iter().copied().max().unwrap_or(0) + 1;
        let alerts = match rt.block_on(run_rules(
            &ctx,
            std::slice::from_ref(rule),
            Window::new(since, until),
            &[],
        )) {
            Ok(a) => a,
            Err(e) => {
                failures.push(format!("{} / {}: {e}", rule.meta.id, test.name));
                continue;
            }
        };
        let alerted: BTreeSet<String> = alerts.iter().flat_map(|a| a.event_ids.clone()).collect();
        let ids: Vec<String> = records
            .iter()
            .map(|r| r["eventID"].as_str().unwrap_or("").to_owned())
            .collect();
        let expected: BTreeSet<String> = ids
            .iter()
            .filter(|id| test.alerts.iter().any(|e| matches(e, id)))
            .cloned()
            .collect();
        if alerted != expected {
            failures.push(format!(
                "{} / {}: alerted {:?}, expected {:?}",
                rule.meta.id, test.name, alerted, expected
            ));
        }
        for a in &alerts {
            if let Some(want) = test.severity
                && a.severity != want
            {
                failures.push(format!(
                    "{} / {}: severity {:?}, expected {want:?}",
                    rule.meta.id, test.name, a.severity
                ));
            }
            if a.rule_id != rule.meta.id || a.summary.is_empty() || a.dedup_key.is_empty() {
                failures.push(format!(
                    "{} / {}: malformed alert {a:?}",
                    rule.meta.id, test.name
                ));
            }
        }
    }
    failures
}

#[test]
fn every_rule_passes_its_own_cases() {
    let rules = builtin_rules().expect("rules");
    let failures: Vec<String> = rules.iter().flat_map(check_rule).collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn rule_files_are_complete_and_all_built_in() {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../queries/detections"
    ));
    let from_dir = load_rules(dir).expect("load");
    let mut ids: Vec<String> = from_dir.iter().map(|r| r.meta.id.clone()).collect();
    let mut builtin: Vec<String> = builtin_rule_ids().iter().map(|s| s.to_string()).collect();
    ids.sort();
    builtin.sort();
    assert_eq!(
        ids, builtin,
        "every rule file is in the binary's catalog, and only those"
    );
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let p = entry.path();
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        assert!(
            matches!(ext, "sql" | "yaml"),
            "unexpected file {}",
            p.display()
        );
        let partner = p.with_extension(if ext == "sql" { "yaml" } else { "sql" });
        assert!(
            partner.exists(),
            "{} has no {}",
            p.display(),
            partner.display()
        );
    }
    for r in &from_dir {
        let m = &r.meta;
        assert!(
            !m.title.is_empty() && !m.description.is_empty() && !m.why.is_empty(),
            "{}",
            m.id
        );
        assert!(!m.references.is_empty(), "{} has no references", m.id);
        assert!(
            m.references.other.is_empty(),
            "{}: references are structured (mitre, cis, pci, security_hub), not text: {:?}",
            m.id,
            m.references.other
        );
        for t in &m.references.mitre {
            assert!(
                mitre_technique(t).is_some(),
                "{}: ATT&CK technique {t} is not in kms_audit::catalog::TECHNIQUES",
                m.id
            );
        }
        assert!(!m.runbook.is_empty(), "{} has no runbook", m.id);
        assert!(
            m.tests.iter().any(|t| !t.alerts.is_empty()),
            "{} has no positive case",
            m.id
        );
        assert!(
            m.tests.iter().any(|t| t.alerts.is_empty()),
            "{} has no negative case",
            m.id
        );
        assert!(m.id.starts_with("kms_"), "{}", m.id);
    }
}

/// A multi-day, multi-account tree with planted incidents among benign traffic (services,
/// VPC endpoint traffic, rotations, admins reading keys with MFA): every incident alerts,
/// benign traffic raises at most 2 alerts, and a second run over the same window with the
/// state adds nothing.
#[test]
fn planted_incidents_alert_and_benign_traffic_stays_quiet() {
    use kms_audit::detect::{DetectOptions, DetectState, resolve_window, suppress_reported};
    use kms_audit_generate::GenConfig;

    let tmp = tempfile::tempdir().expect("tmp");
    let (manifest, lake) = generated_lake(
        tmp.path(),
        &GenConfig {
            hours: 40,
            accounts: 2,
            regions: vec!["us-east-1".into()],
            kms_per_hour: 40,
            files_per_hour: 1,
            ..GenConfig::default()
        },
    );

    let rt = rt();
    let ctx = open_local(lake.root()).expect("open");
    let rules = builtin_rules().expect("rules");
    let window = rt
        .block_on(resolve_window(&ctx, &DetectOptions::default(), None))
        .expect("window")
        .expect("events after the first day");
    let alerts = rt
        .block_on(run_rules(&ctx, &rules, window, &[]))
        .expect("detect");

    let (missed, benign) = judge(&manifest, &alerts);
    assert!(missed.is_empty(), "incidents without an alert: {missed:#?}");
    assert!(
        benign.len() <= 2,
        "benign traffic raised {} alerts: {benign:#?}",
        benign.len()
    );

    // Deduplication across runs: the same window again reports nothing new.
    let mut state = DetectState::default();
    let first = suppress_reported(alerts.clone(), &rules, &mut state, window);
    assert_eq!(first.len(), alerts.len());
    let again = rt
        .block_on(run_rules(&ctx, &rules, window, &[]))
        .expect("detect");
    let second = suppress_reported(again, &rules, &mut state, window);
    assert!(second.is_empty(), "re-alerted: {second:#?}");
    assert_eq!(state.high_water_mark, Some(window.until));
}

/// Generates a tree under `dir/trail` and ingests it into `dir/lake`: every object read.
fn generated_lake(
    dir: &Path,
    cfg: &kms_audit_generate::GenConfig,
) -> (kms_audit_generate::Manifest, LocalLake) {
    let trail = dir.join("trail");
    let manifest = kms_audit_generate::generate_tree(cfg, &trail).expect("generate");
    let lake = LocalLake::open(dir.join("lake")).expect("lake");
    let (objects, _) = local_sources(&[trail]).expect("sources");
    let run = ingest_all(&objects, &lake, &|_| {}).expect("ingest");
    assert_eq!(run.objects_failed, 0, "{:?}", run.failures);
    (manifest, lake)
}

/// Judges alerts against a generated manifest: the incident events no alert names
/// (`kind: event`), and the alerts that name no event of any incident (false: on benign
/// traffic or on a look-alike).
fn judge<'a>(
    manifest: &kms_audit_generate::Manifest,
    alerts: &'a [kms_audit::detect::Alert],
) -> (Vec<String>, Vec<&'a kms_audit::detect::Alert>) {
    let alerted: BTreeSet<&str> = alerts
        .iter()
        .flat_map(|a| a.event_ids.iter().map(String::as_str))
        .collect();
    let missed = manifest
        .incidents
        .iter()
        .flat_map(|i| {
            i.event_ids
                .iter()
                .filter(|id| !alerted.contains(id.as_str()))
                .map(move |id| format!("{}: {id}", i.kind))
        })
        .collect();
    let incident_ids: BTreeSet<&str> = manifest
        .incidents
        .iter()
        .flat_map(|i| i.event_ids.iter().chain(&i.context_ids))
        .map(String::as_str)
        .collect();
    let false_alerts = alerts
        .iter()
        .filter(|a| {
            !a.event_ids
                .iter()
                .any(|id| incident_ids.contains(id.as_str()))
        })
        .collect();
    (missed, false_alerts)
}

/// The evasion suite: besides the classic incidents, one incident of each evasion class
/// (policies narrowed by value, outside keys through S3, service-form grantees, key
/// stores, expiring material, aliases, ABAC tags, endpoints, people with SDK agents, new
/// principals, split bursts, forged recipients, the lake's first hours) next to properly
/// restricted look-alikes. Every incident alerts; at most 2 alerts are false, and none is
/// on a look-alike.
#[test]
fn evasions_alert_and_their_lookalikes_stay_quiet() {
    use kms_audit::detect::{DetectOptions, resolve_window, set_abac_tag_keys};
    use kms_audit_generate::GenConfig;

    let tmp = tempfile::tempdir().expect("tmp");
    let (manifest, lake) = generated_lake(
        tmp.path(),
        &GenConfig {
            hours: 72,
            accounts: 2,
            regions: vec!["us-east-1".into()],
            kms_per_hour: 30,
            files_per_hour: 1,
            digests: false,
            evasions: true,
            ..GenConfig::default()
        },
    );
    let evasions = manifest
        .incidents
        .iter()
        .filter(|i| i.kind.starts_with("evasion_"))
        .count();
    assert!(evasions >= 18, "{evasions} evasions planted");
    assert!(manifest.lookalikes.len() >= 14);

    let rt = rt();
    let ctx = open_local(lake.root()).expect("open");
    set_abac_tag_keys(&ctx, &manifest.abac_tag_keys).expect("abac");
    let rules = builtin_rules().expect("rules");
    let window = rt
        .block_on(resolve_window(&ctx, &DetectOptions::default(), None))
        .expect("window")
        .expect("events");
    let alerts = rt
        .block_on(run_rules(&ctx, &rules, window, &[]))
        .expect("detect");
    let (missed, false_alerts) = judge(&manifest, &alerts);
    for i in &manifest.incidents {
        let by: BTreeSet<&str> = alerts
            .iter()
            .filter(|a| i.event_ids.iter().any(|id| a.event_ids.contains(id)))
            .map(|a| a.rule_id.as_str())
            .collect();
        eprintln!("{:<36} {by:?}", i.kind);
    }
    assert!(missed.is_empty(), "incidents without an alert: {missed:#?}");
    let lookalike_ids: BTreeSet<&str> = manifest
        .lookalikes
        .iter()
        .flat_map(|l| l.context_ids.iter().map(String::as_str))
        .collect();
    let on_lookalikes: Vec<String> = alerts
        .iter()
        .filter(|a| {
            a.event_ids
                .iter()
                .any(|id| lookalike_ids.contains(id.as_str()))
        })
        .map(|a| format!("{}: {}", a.rule_id, a.summary))
        .collect();
    assert!(
        on_lookalikes.is_empty(),
        "alerts on look-alikes: {on_lookalikes:#?}"
    );
    assert!(
        false_alerts.len() <= 2,
        "{} false alerts: {false_alerts:#?}",
        false_alerts.len()
    );
}

/// Logs copied into a flat directory (no `AWSLogs/` key): the records' recipients stand in
/// as the trusted accounts, with the configured ones, and the trust view says so.
#[test]
fn without_cloudtrail_keys_the_recipients_and_configuration_are_trusted() {
    let tmp = tempfile::tempdir().expect("tmp");
    let trail = tmp.path().join("flat");
    std::fs::create_dir_all(&trail).expect("mkdir");
    let key = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let policy = |acct: &str, id: &str| {
        let doc = json!({"Statement": [{"Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{acct}:root")},
            "Action": "kms:Decrypt", "Resource": "*"}]});
        expand(
            &json!({"eventID": id, "eventName": "PutKeyPolicy", "readOnly": false,
            "requestParameters": {"keyId": key, "policy": doc.to_string()},
            "resources": [{"ARN": key, "accountId": "111122223333", "type": "AWS::KMS::Key"}]}),
        )
    };
    let records: Vec<Value> = [
        policy("111122223333", "own"),
        policy("444455556666", "partner"),
        policy("999988887777", "outsider"),
    ]
    .concat();
    let body = json!({ "Records": records }).to_string();
    std::fs::write(trail.join("export.json"), body).expect("write");
    let lake = LocalLake::open(tmp.path().join("lake")).expect("lake");
    let (objects, _) = local_sources(&[trail]).expect("sources");
    ingest_all(&objects, &lake, &|_| {}).expect("ingest");
    let ctx = open_local(lake.root()).expect("open");
    let rules: Vec<Rule> = builtin_rules()
        .expect("rules")
        .into_iter()
        .filter(|r| r.meta.id == "kms_key_policy_external_account")
        .collect();
    let t = parse_event_time("2026-11-11T01:00:00Z").expect("time");
    let alerts = rt()
        .block_on(run_rules(
            &ctx,
            &rules,
            Window::new(t, t + 1),
            &["444455556666".to_owned()],
        ))
        .expect("detect");
    let alerted: BTreeSet<&str> = alerts
        .iter()
        .flat_map(|a| a.event_ids.iter().map(String::as_str))
        .collect();
    assert_eq!(alerted, BTreeSet::from(["outsider"]));
    let basis = rt()
        .block_on(kms_audit::sql::run_sql(
            &ctx,
            "SELECT source FROM trust_basis",
        ))
        .expect("basis");
    let col =
        arrow::compute::cast(basis[0].column(0), &arrow::datatypes::DataType::Utf8).expect("cast");
    assert_eq!(
        arrow::array::AsArray::as_string::<i32>(&col).value(0),
        "records"
    );
}

#[test]
fn rules_are_read_only_and_cannot_change_what_other_rules_read() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ctx = open_local(tmp.path()).expect("ctx");
    let template = builtin_rules().expect("rules").remove(0);
    let window = Window::new(0, parse_event_time("2026-11-12T00:00:00Z").expect("time"));
    for (id, sql) in [
        (
            "redefines_a_view",
            "CREATE OR REPLACE VIEW window_events AS SELECT 1 AS x",
        ),
        ("drops_a_view", "DROP VIEW history_events"),
        ("inserts", "INSERT INTO kms_events SELECT * FROM kms_events"),
        ("sets", "SET datafusion.execution.batch_size = 1"),
    ] {
        let mut evil = template.clone();
        evil.meta.id = id.to_owned();
        evil.sql = sql.to_owned();
        let err = rt()
            .block_on(run_rules(&ctx, &[evil], window, &[]))
            .expect_err("a rule may only query");
        assert!(err.to_string().contains(id), "{err}");
    }
    // The views the rules read are as the engine defined them.
    let cols = rt()
        .block_on(kms_audit::sql::run_sql(
            &ctx,
            "SELECT event_id FROM window_events UNION ALL SELECT event_id FROM history_events",
        ))
        .expect("both views still stand, with their columns");
    assert_eq!(cols.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
}

#[test]
fn a_new_lake_is_judged_from_its_first_event_and_baselines_learn_its_first_day() {
    use kms_audit::detect::{DetectOptions, resolve_window};
    let key = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let mut records = expand(
        &json!({"eventID": "base", "eventTime": "2026-11-10T00:00:00Z",
        "_repeat": {"count": 30, "every": "1h"}}),
    );
    // Hour 2: a burst from a public address no baseline has seen (only learned from).
    records.extend(expand(
        &json!({"eventID": "early", "eventTime": "2026-11-10T02:00:00Z",
        "sourceIPAddress": "198.51.100.7", "_repeat": {"count": 40, "every": "1m"}}),
    ));
    // Hour 21: a key scheduled for deletion (a signature: judged on the first run).
    records.extend(expand(
        &json!({"eventID": "del-21", "eventTime": "2026-11-10T21:00:00Z",
        "eventName": "ScheduleKeyDeletion", "readOnly": false,
        "requestParameters": {"keyId": key, "pendingWindowInDays": 7},
        "resources": [{"ARN": key, "accountId": "111122223333", "type": "AWS::KMS::Key"}]}),
    ));
    let tmp = tempfile::tempdir().expect("tmp");
    let lake = lake_with(tmp.path(), &records);
    let ctx = open_local(lake.root()).expect("open");
    let rules = builtin_rules().expect("rules");
    let rt = rt();
    let window = rt
        .block_on(resolve_window(&ctx, &DetectOptions::default(), None))
        .expect("window")
        .expect("a new lake has a window");
    let first = parse_event_time("2026-11-10T00:00:00Z").expect("time");
    assert_eq!(
        window.since, first,
        "signature rules judge from the first event"
    );
    assert_eq!(window.baselines_since, first + kms_audit::time::DAY_MICROS);
    let alerts = rt
        .block_on(run_rules(&ctx, &rules, window, &[]))
        .expect("detect");
    assert!(
        alerts
            .iter()
            .any(|a| a.rule_id == "kms_key_deletion_scheduled"
                && a.event_ids.contains(&"del-21".to_owned())),
        "the deletion at hour 21 alerts: {alerts:?}"
    );
    for a in alerts.iter().filter(|a| {
        rules
            .iter()
            .any(|r| r.meta.id == a.rule_id && r.is_baseline())
    }) {
        let first_seen = parse_event_time(&a.first_seen).expect("time");
        assert!(
            first_seen >= window.baselines_since,
            "{} judged the learning day: {a:?}",
            a.rule_id
        );
    }
}

/// Writes records as one more gzipped object and ingests it into `lake`.
fn ingest_more(dir: &Path, name: &str, lake: &LocalLake, records: &[Value]) {
    let trail = dir.join(name);
    std::fs::create_dir_all(&trail).expect("mkdir");
    let body = json!({ "Records": records }).to_string();
    std::fs::write(trail.join("records.json.gz"), crate::gz(body.as_bytes())).expect("write");
    let (objects, _) = local_sources(&[trail]).expect("sources");
    let run = ingest_all(&objects, lake, &|_| {}).expect("ingest");
    assert_eq!(run.counts.kms_events as usize, records.len());
}

/// A scheduled run: what arrived since the state's version, judged, the state advanced.
fn scheduled_run(
    lake: &LocalLake,
    state: &mut kms_audit::detect::DetectState,
    opts: kms_audit::detect::DetectOptions,
) -> Option<Vec<kms_audit::detect::Alert>> {
    use kms_audit::lake::LakeStore;
    let ctx = open_local(lake.root()).expect("open");
    let rules = builtin_rules().expect("rules");
    let rt = rt();
    let loc = lake.location().expect("location");
    let mut opts = opts;
    (opts.lake_version, opts.arrived) = rt
        .block_on(kms_audit::detect::arrivals(&ctx, &loc, Some(state)))
        .expect("arrivals");
    rt.block_on(kms_audit::detect::evaluate(
        &ctx,
        &rules,
        &opts,
        Some(state),
    ))
    .expect("evaluate")
    .map(|(_, alerts)| alerts)
}

#[test]
fn detection_judges_what_arrived_late_objects_and_future_dated_records_included() {
    use kms_audit::detect::{DetectOptions, DetectState};
    let key = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let tmp = tempfile::tempdir().expect("tmp");
    let lake = lake_with(
        tmp.path(),
        &expand(
            &json!({"eventID": "base", "eventTime": "2026-11-10T00:00:00Z",
                        "_repeat": {"count": 30, "every": "1h"}}),
        ),
    );
    let mut state = DetectState::default();
    scheduled_run(&lake, &mut state, DetectOptions::default()).expect("first run");
    let v1 = state
        .version
        .expect("the first run records the version it judged");

    // A record dated a month ahead (a skewed clock, or a forged one).
    ingest_more(
        tmp.path(),
        "future",
        &lake,
        &expand(&json!({"eventID": "future", "eventTime": "2026-12-31T00:00:00Z"})),
    );
    scheduled_run(&lake, &mut state, DetectOptions::default()).expect("second run");
    assert!(state.version > Some(v1));

    // An object that arrives late: its deletion happened 20 hours before the newest
    // normal event, and after the future-dated one was ingested.
    ingest_more(
        tmp.path(),
        "late",
        &lake,
        &expand(
            &json!({"eventID": "late-del", "eventTime": "2026-11-10T09:00:00Z",
            "eventName": "ScheduleKeyDeletion", "readOnly": false,
            "requestParameters": {"keyId": key, "pendingWindowInDays": 7},
            "resources": [{"ARN": key, "accountId": "111122223333", "type": "AWS::KMS::Key"}]}),
        ),
    );
    let alerts = scheduled_run(&lake, &mut state, DetectOptions::default()).expect("third run");
    assert!(
        alerts
            .iter()
            .any(|a| a.rule_id == "kms_key_deletion_scheduled"
                && a.event_ids.contains(&"late-del".to_owned())),
        "the late deletion alerts: {alerts:?}"
    );
    // Nothing new: nothing to judge, and the state stays.
    let before = state.clone();
    assert!(scheduled_run(&lake, &mut state, DetectOptions::default()).is_none());
    assert_eq!(state, before);
    // A run over an explicit period re-judges without moving the state's position.
    let explicit = DetectOptions {
        since: parse_event_time("2026-11-10T00:00:00Z"),
        until: parse_event_time("2026-11-11T00:00:00Z"),
        ..DetectOptions::default()
    };
    scheduled_run(&lake, &mut state, explicit).expect("explicit run");
    assert_eq!(
        (state.version, state.high_water_mark),
        (before.version, before.high_water_mark)
    );
}

/// Alerts on a critical key (configured, or one a trail is created with) are raised one
/// severity level and say so; the same alert on another key is not.
#[test]
fn alerts_on_critical_keys_are_raised_a_level() {
    use kms_audit::detect::{Severity, set_critical_keys};
    let key = |id: &str| format!("arn:aws:kms:us-east-1:111122223333:key/{id}");
    let disable = |event: &str, id: &str| {
        json!({"eventID": event, "eventName": "DisableKey", "readOnly": false,
               "requestParameters": {"keyId": key(id)},
               "resources": [{"ARN": key(id), "accountId": "111122223333", "type": "AWS::KMS::Key"}]})
    };
    let records: Vec<Value> = [
        disable("crit", "1111aaaa-12ab-34cd-56ef-1234567890ab"),
        disable("plain", "2222bbbb-12ab-34cd-56ef-1234567890ab"),
    ]
    .iter()
    .flat_map(expand)
    .collect();
    let tmp = tempfile::tempdir().expect("tmp");
    let lake = lake_with(tmp.path(), &records);
    let ctx = open_local(lake.root()).expect("open");
    set_critical_keys(&ctx, &["1111aaaa-12ab-34cd-56ef-1234567890ab".to_owned()]).expect("set");
    let t = parse_event_time("2026-11-11T01:00:00Z").expect("t");
    let rules: Vec<_> = builtin_rules()
        .expect("rules")
        .into_iter()
        .filter(|r| r.meta.id == "kms_key_disabled")
        .collect();
    let alerts = rt()
        .block_on(run_rules(&ctx, &rules, Window::new(t, t + 1), &[]))
        .expect("rules");
    let by_event: BTreeMap<String, (Severity, String)> = alerts
        .iter()
        .map(|a| (a.event_ids[0].clone(), (a.severity, a.summary.clone())))
        .collect();
    assert_eq!(by_event["crit"].0, Severity::Critical, "{by_event:?}");
    assert!(by_event["crit"].1.ends_with("(a critical key)"));
    assert_eq!(by_event["plain"].0, Severity::High, "{by_event:?}");
}
