//! Log-file integrity: trees whose digests are written and signed by `digest_fixture.py`
//! (keys generated there, with Python's `cryptography`), five kinds of tampering, the
//! tree path and the lake path agreeing on the same objects, a chain's first and newest
//! digests, key rotation, and S3 metadata signatures on moto.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kms_audit::ingest::{LocalFile, SourceObject, ingest_all, local_sources};
use kms_audit::integrity::lake::evidence_from_lake;
use kms_audit::integrity::sources::evidence_from_sources;
use kms_audit::integrity::{Kind, PublicKeys, Verification, Window, verify};
use kms_audit::lake::LocalLake;
use kms_audit::lake::table::Location;
use kms_audit_generate::{GenConfig, generate_tree};
use serde_json::Value;

use crate::aws::S3Env;

pub const FIXTURE_PY: &str = include_str!("digest_fixture.py");
const BUCKET: &str = "org-trail-logs";

struct Signed {
    _tmp: tempfile::TempDir,
    tree: PathBuf,
    keys: PublicKeys,
    /// Each digest written: key, signature, logs listed.
    digests: Vec<Value>,
    logs: usize,
}

/// A 2-account, 2-region tree of `hours` hours (4 logs an hour each) with digests.
fn signed_tree(hours: u32, extra: &[&str]) -> Option<Signed> {
    let python = crate::lake::python()?;
    let tmp = tempfile::tempdir().expect("tmp");
    let tree = tmp.path().join("trail");
    let m = generate_tree(
        &GenConfig {
            hours,
            kms_per_hour: 6,
            files_per_hour: 4,
            accounts: 2,
            regions: vec!["us-east-1".into(), "eu-west-1".into()],
            incidents: false,
            digests: false,
            ..GenConfig::default()
        },
        &tree,
    )
    .expect("generate");
    let keys_path = tmp.path().join("keys.json");
    let o = std::process::Command::new(python)
        .arg("-c")
        .arg(FIXTURE_PY)
        .arg(&tree)
        .arg(&keys_path)
        .arg(BUCKET)
        .args(extra)
        .output()
        .expect("run python");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let digests: Vec<Value> = serde_json::from_slice(&o.stdout).expect("manifest");
    let keys =
        PublicKeys::from_json(&std::fs::read_to_string(&keys_path).expect("keys")).expect("keys");
    Some(Signed {
        _tmp: tmp,
        tree,
        keys,
        digests,
        logs: m.log_files.len(),
    })
}

fn from_tree(tree: &Path, keys: &PublicKeys) -> Verification {
    let (objects, _) = local_sources(&[tree.to_path_buf()]).expect("sources");
    verify(&evidence_from_sources(&objects), keys, Window::default())
}

/// Ingests the tree into a fresh lake, then judges what the lake recorded, with the tree
/// and the lake's event data gone: the lake path reads only `digests` and `objects`.
fn from_lake(tree: &Path, keys: &PublicKeys) -> Verification {
    let tmp = tempfile::tempdir().expect("tmp");
    let lake = LocalLake::open(tmp.path().join("lake")).expect("lake");
    let (objects, _) = local_sources(&[tree.to_path_buf()]).expect("sources");
    let run = ingest_all(&objects, &lake, &|_| {}).expect("ingest");
    assert_eq!(run.objects_failed, 0, "{:?}", run.failures);
    let moved = tmp.path().join("tree-gone");
    std::fs::rename(tree, &moved).expect("hide tree");
    std::fs::remove_dir_all(tmp.path().join("lake/kms_events")).expect("drop events");
    let loc = Location::local(lake.root()).expect("loc");
    let ev = loc
        .block_on(evidence_from_lake(&loc, Window::default()))
        .expect("runtime")
        .expect("evidence");
    std::fs::rename(&moved, tree).expect("restore tree");
    verify(&ev, keys, Window::default())
}

fn failures(v: &Verification) -> BTreeSet<(String, String)> {
    v.findings
        .iter()
        .filter(|f| f.kind.is_failure())
        .map(|f| (f.kind.as_str().to_owned(), f.object.clone()))
        .collect()
}

fn key_of(tree: &Path, path: &Path) -> String {
    path.strip_prefix(tree)
        .expect("in tree")
        .to_string_lossy()
        .replace('\\', "/")
}

fn log_paths(tree: &Path) -> Vec<PathBuf> {
    let (objects, _) = local_sources(&[tree.to_path_buf()]).expect("sources");
    objects
        .iter()
        .filter(|o| o.uri().contains("/CloudTrail/"))
        .map(|o| o.path().to_path_buf())
        .collect()
}

fn rewrite_gz(path: &Path, f: impl FnOnce(String) -> String) {
    let raw = std::fs::read(path).expect("read");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&raw[..]), &mut text)
        .expect("gunzip");
    std::fs::write(path, crate::gz(f(text).as_bytes())).expect("write");
}

#[test]
fn signed_trees_verify_with_rotated_keys_and_the_lake_agrees() {
    let Some(s) = signed_tree(8, &["--rotate-after", "4"]) else {
        return;
    };
    assert_eq!(s.keys.len(), 2, "two fingerprints");
    let tree = from_tree(&s.tree, &s.keys);
    assert_eq!(tree.findings, vec![], "{:#?}", tree.findings);
    assert!(!tree.failed());
    assert_eq!(tree.summary.digests as usize, s.digests.len());
    assert_eq!(tree.summary.digests_valid as usize, s.digests.len());
    assert_eq!(tree.summary.logs as usize, s.logs);
    assert_eq!(tree.summary.logs_verified as usize, s.logs);
    assert_eq!(
        s.digests
            .iter()
            .map(|d| d["logs"].as_u64().unwrap_or(0))
            .sum::<u64>() as usize,
        s.logs,
        "every log is listed once"
    );
    let lake = from_lake(&s.tree, &s.keys);
    assert_eq!(lake, tree);

    // Another key set: every digest names an unknown fingerprint.
    let other = PublicKeys::from_json(
        r#"{"PublicKeyList":[{"Value":"MAA=","Fingerprint":"00000000000000000000000000000000"}]}"#,
    )
    .expect("keys");
    let v = from_tree(&s.tree, &other);
    assert_eq!(
        v.summary.findings.get("digest_key_unknown").copied(),
        Some(s.digests.len() as u64)
    );
    assert!(v.failed());
}

/// Five tamperings of a signed tree: a log modified, a log deleted, a forged log, a digest
/// deleted mid-chain, a digest edited without re-signing. Returns the failures expected
/// (kind, object) and the digests whose logs are left unproven.
fn tamper_five(s: &Signed) -> (BTreeSet<(String, String)>, [usize; 2]) {
    let logs = log_paths(&s.tree);
    let pick = |n: usize| logs[n * logs.len() / 7].clone();
    let mut want = BTreeSet::new();

    // 1. A log modified (still a valid log: an event name changed).
    let modified = pick(1);
    rewrite_gz(&modified, |t| {
        t.replacen("\"Decrypt\"", "\"Encrypt\"", 1).replacen(
            "\"eventVersion\"",
            "\"eventVersion\" ",
            1,
        )
    });
    want.insert((
        "log_modified".to_owned(),
        format!("s3://{BUCKET}/{}", key_of(&s.tree, &modified)),
    ));
    // 2. A log deleted.
    let deleted = pick(2);
    std::fs::remove_file(&deleted).expect("delete log");
    want.insert((
        "log_missing".to_owned(),
        format!("s3://{BUCKET}/{}", key_of(&s.tree, &deleted)),
    ));
    // 3. A forged log beside a real one, stamped inside a covered hour.
    let model = pick(3);
    let name = model
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let (head, _) = name.rsplit_once('_').expect("unique part");
    let forged = model.with_file_name(format!("{head}_F0rg3dF0rg3dF0rg.json.gz"));
    std::fs::copy(&model, &forged).expect("forge");
    want.insert((
        "log_not_in_digest".to_owned(),
        LocalFile::new(&forged).uri().to_owned(),
    ));
    // 4. A digest deleted mid-chain (with its signature file).
    let digest_key = |i: usize| s.digests[i]["key"].as_str().expect("key").to_owned();
    let gone = digest_key(5);
    std::fs::remove_file(s.tree.join(&gone)).expect("delete digest");
    std::fs::remove_file(s.tree.join(format!("{gone}.signature"))).expect("delete sig");
    want.insert(("digest_missing".to_owned(), format!("s3://{BUCKET}/{gone}")));
    // 5. A digest edited without re-signing: one listed hash changed.
    let edited = digest_key(s.digests.len() / 2 + 3);
    rewrite_gz(&s.tree.join(&edited), |t| {
        let at = t.find("\"hashValue\":\"").expect("a listed log") + 13;
        let flipped = if &t[at..at + 1] == "0" { "1" } else { "0" };
        format!("{}{flipped}{}", &t[..at], &t[at + 1..])
    });
    want.insert((
        "digest_signature_invalid".to_owned(),
        format!("s3://{BUCKET}/{edited}"),
    ));
    // The next digest records the edited one's SHA-256.
    want.insert((
        "digest_chain_broken".to_owned(),
        format!("s3://{BUCKET}/{edited}"),
    ));

    (want, [5, s.digests.len() / 2 + 3])
}

#[test]
fn five_tamperings_are_each_named_by_the_tree_and_the_lake_and_nothing_else() {
    let Some(s) = signed_tree(24, &[]) else {
        return;
    };
    assert!(s.logs >= 280, "{} logs", s.logs);
    let (want, unproven) = tamper_five(&s);
    let tree = from_tree(&s.tree, &s.keys);
    assert_eq!(failures(&tree), want, "{:#?}", tree.findings);
    assert!(tree.failed());
    // Nothing unprovable either: the newest digests carry signature files.
    assert!(
        tree.findings.iter().all(|f| f.kind.is_failure()),
        "{:#?}",
        tree.findings
    );
    // Logs listed by the deleted and the edited digests are unverified, not blamed.
    let listed_there: u64 = unproven
        .iter()
        .map(|&i| s.digests[i]["logs"].as_u64().unwrap_or(0))
        .sum();
    assert!(listed_there > 0);
    let sum = &tree.summary;
    assert_eq!(
        sum.logs_verified + 2 + listed_there,
        s.logs as u64,
        "{sum:?}"
    );
    // Present: all but the deleted one, plus the forged one.
    assert_eq!(sum.logs, s.logs as u64);
    assert_eq!(sum.logs_unverified, listed_there, "{sum:?}");
    assert_eq!(sum.logs_failed, 2);

    let lake = from_lake(&s.tree, &s.keys);
    assert_eq!(lake.findings, tree.findings);
    assert_eq!(lake.summary, tree.summary);
}

#[test]
fn without_signature_files_the_chain_proves_all_but_its_newest_digest() {
    let Some(s) = signed_tree(4, &["--no-signature-files"]) else {
        return;
    };
    let v = from_tree(&s.tree, &s.keys);
    // Two accounts by two regions: four chains, each with a first digest (previous
    // `null`, verified from the next one's record) and a newest (nothing to verify).
    let chains = 4;
    assert_eq!(v.summary.digests_unverifiable, chains, "{:#?}", v.findings);
    assert_eq!(v.summary.digests_valid as usize, s.digests.len() - 4);
    assert!(!v.failed(), "{:#?}", v.findings);
    let unverifiable: BTreeSet<&str> = v
        .findings
        .iter()
        .map(|f| {
            assert_eq!(f.kind, Kind::DigestUnverifiable);
            f.object.as_str()
        })
        .collect();
    assert_eq!(unverifiable.len(), 4);
}

#[test]
fn digests_in_s3_are_verified_with_their_metadata_signatures() {
    let Some(env) = S3Env::connect() else { return };
    let Some(s) = signed_tree(3, &["--no-signature-files"]) else {
        return;
    };
    let bucket = env.bucket("trail");
    let signatures: std::collections::HashMap<String, String> = s
        .digests
        .iter()
        .map(|d| {
            (
                d["key"].as_str().unwrap_or_default().to_owned(),
                d["signature"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    // The newest digest of one chain gets a wrong signature.
    let newest = s.digests.last().expect("digests")["key"]
        .as_str()
        .expect("key")
        .to_owned();
    for entry in walkdir::WalkDir::new(&s.tree) {
        let entry = entry.expect("walk");
        if !entry.file_type().is_file() {
            continue;
        }
        let key = key_of(&s.tree, entry.path());
        let mut put = env
            .aws
            .s3
            .put_object()
            .bucket(&bucket)
            .key(&key)
            .body(std::fs::read(entry.path()).expect("read").into());
        if let Some(sig) = signatures.get(&key) {
            let sig = if key == newest {
                sig.chars().rev().collect()
            } else {
                sig.clone()
            };
            put = put
                .metadata("signature", sig)
                .metadata("signature-algorithm", "SHA256withRSA");
        }
        env.rt.block_on(put.send()).expect("put");
    }
    let (objects, _) = env
        .rt
        .block_on(kms_audit::s3::s3_sources(
            &env.aws,
            &kms_audit::s3::S3Uri::parse(&format!("s3://{bucket}/")).expect("uri"),
        ))
        .expect("list");
    let ev = {
        let _guard = env.rt.enter();
        evidence_from_sources(&objects)
    };
    // S3's own bucket name differs from the one CloudTrail signed: the signed string uses
    // the digest's own `digestS3Bucket`, so signatures still verify.
    let v = verify(&ev, &s.keys, Window::default());
    assert_eq!(
        failures(&v),
        BTreeSet::from([(
            "digest_signature_invalid".to_owned(),
            format!("s3://{BUCKET}/{newest}")
        )]),
        "{:#?}",
        v.findings
    );
    assert_eq!(v.summary.digests_valid as usize, s.digests.len() - 1);
    assert_eq!(
        v.summary.logs_verified as usize + v.summary.logs_unverified as usize,
        s.logs
    );

    // Ingest records the metadata signatures in `digests`; the lake path agrees.
    let tmp = tempfile::tempdir().expect("tmp");
    let lake = LocalLake::open(tmp.path().join("lake")).expect("lake");
    let run = {
        let _guard = env.rt.enter();
        ingest_all(&objects, &lake, &|_| {}).expect("ingest")
    };
    assert_eq!(run.objects_failed, 0, "{:?}", run.failures);
    assert_eq!(run.digests as usize, s.digests.len());
    let loc = Location::local(lake.root()).expect("loc");
    let from_lake = loc
        .block_on(evidence_from_lake(&loc, Window::default()))
        .expect("runtime")
        .expect("evidence");
    assert_eq!(verify(&from_lake, &s.keys, Window::default()), v);
}

/// What the scheduled detect run does: judge the digests that arrived since the last
/// check, alert once per tampering (critical), and alert account-regions whose digests
/// stopped (high).
#[test]
fn scheduled_checks_alert_once_per_tampering_and_when_digests_stop() {
    use kms_audit::detect::{DetectState, Severity};
    use kms_audit::integrity::alerts::{RULE_ID, check_with_state};
    let Some(s) = signed_tree(6, &[]) else {
        return;
    };
    let modified = log_paths(&s.tree)[5].clone();
    rewrite_gz(&modified, |t| t.replacen("\"Records\"", "\"Records\" ", 1));
    let tmp = tempfile::tempdir().expect("tmp");
    let lake = LocalLake::open(tmp.path().join("lake")).expect("lake");
    let (objects, _) = local_sources(std::slice::from_ref(&s.tree)).expect("sources");
    ingest_all(&objects, &lake, &|_| {}).expect("ingest");
    let newest = s
        .digests
        .iter()
        .filter_map(|d| kms_audit::integrity::DigestName::parse(d["key"].as_str()?)?.end)
        .max()
        .expect("digests");
    let ctx = kms_audit::sql::open_local(lake.root()).expect("open");
    let mut state = DetectState::default();
    let check = |now: i64, state: &mut DetectState| {
        crate::rt()
            .block_on(check_with_state(
                &ctx,
                &s.keys,
                Window::default(),
                now,
                Some(state),
            ))
            .expect("check")
    };
    let first = check(newest + 1_800_000_000, &mut state);
    assert_eq!(first.alerts.len(), 1, "{:#?}", first.alerts);
    let a = &first.alerts[0];
    assert_eq!(a.rule_id, RULE_ID);
    assert_eq!(a.severity, Severity::Critical);
    assert!(
        a.summary.starts_with("log_modified: s3://"),
        "{}",
        a.summary
    );
    assert!(
        a.summary.contains(&key_of(&s.tree, &modified)),
        "{}",
        a.summary
    );
    assert_eq!(first.verification.summary.digests as usize, s.digests.len());
    assert!(state.digests_ingested_at.is_some());

    // Nothing arrived since: nothing judged, nothing raised again.
    let again = check(newest + 1_800_000_000, &mut state);
    assert_eq!(again.window, None);
    assert_eq!(again.alerts, vec![]);

    // Three hours later with no new digest: every account-region's digests stopped.
    let later = check(newest + 3 * 3_600_000_000, &mut state);
    assert_eq!(later.alerts.len(), 4, "{:#?}", later.alerts);
    assert!(
        later
            .alerts
            .iter()
            .all(|a| a.severity == Severity::High && a.summary.starts_with("digests_stopped"))
    );
    let regions: BTreeSet<(Option<String>, Option<String>)> = later
        .alerts
        .iter()
        .map(|a| (a.account_id.clone(), a.aws_region.clone()))
        .collect();
    assert_eq!(regions.len(), 4);
    // Reported once per gap.
    assert_eq!(check(newest + 4 * 3_600_000_000, &mut state).alerts, vec![]);
}

/// The scheduled detect Lambda on moto: a tampered S3 trail ingested into an S3 lake
/// raises critical `log_integrity` alerts on SNS, once. The keys are given: moto does not
/// implement `cloudtrail:ListPublicKeys`, which the deployed function calls instead.
#[test]
fn the_detect_lambda_publishes_integrity_alerts_once() {
    use crate::detect_fn::{drain, invoke, scheduled_event, topic_with_queue};
    use ::detect_fn::{Detector, PublicKeysSource};
    use kms_audit::detect::sinks::AwsSinkSpec;
    let Some(env) = S3Env::connect() else { return };
    let Some(s) = signed_tree(3, &[]) else {
        return;
    };
    let logs = log_paths(&s.tree);
    std::fs::remove_file(&logs[2]).expect("delete a log");
    let trail = env.bucket("trail");
    env.upload_tree(&trail, "", &s.tree);
    let uri =
        kms_audit::s3::S3Uri::parse(&format!("s3://{}/lake", env.bucket("lake"))).expect("uri");
    let (objects, _) = env
        .rt
        .block_on(kms_audit::s3::s3_sources(
            &env.aws,
            &kms_audit::s3::S3Uri::parse(&format!("s3://{trail}/")).expect("uri"),
        ))
        .expect("list");
    let lake = env.lake(&uri);
    let run = {
        let _guard = env.rt.enter();
        ingest_all(&objects, &lake, &|_| {}).expect("ingest")
    };
    assert_eq!(run.digests as usize, s.digests.len());
    let (topic, queue) = topic_with_queue(&env, &format!("integrity-{}", std::process::id()));
    let detector = {
        let _guard = env.rt.enter();
        Detector::new(env.aws.clone(), &uri, vec![AwsSinkSpec::Sns(topic)], vec![])
            .expect("detector")
            .with_public_keys(PublicKeysSource::Given(s.keys.clone()))
    };
    let out = invoke(&env, &detector, scheduled_event()).expect("run");
    let alerts = drain(&env, &queue);
    assert_eq!(out["alerts"].as_u64(), Some(alerts.len() as u64));
    let integrity: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["rule_id"] == "log_integrity" && a["severity"] == "critical")
        .collect();
    assert_eq!(integrity.len(), 1, "{alerts:#?}");
    let missing = format!("log_missing: s3://{BUCKET}/{}", key_of(&s.tree, &logs[2]));
    assert!(
        integrity[0]["summary"]
            .as_str()
            .is_some_and(|t| t.starts_with(&missing)),
        "{:#}",
        integrity[0]
    );
    // The digests ended long before now: each account-region's gap is alerted (high).
    let gaps = alerts
        .iter()
        .filter(|a| a["rule_id"] == "log_integrity" && a["severity"] == "high")
        .count();
    assert_eq!(gaps, 4, "{alerts:#?}");
    let again = invoke(&env, &detector, scheduled_event()).expect("run");
    assert_eq!(again["alerts"], 0);
    assert!(drain(&env, &queue).is_empty());
}

/// `kms-audit generate` writes digests as CloudTrail does, unsigned: without keys their
/// chain and every listed log's SHA-256 check out, and nothing is blamed.
#[test]
fn generated_trees_carry_a_digest_chain_that_checks_out_unsigned() {
    let tmp = tempfile::tempdir().expect("tmp");
    let m = generate_tree(
        &GenConfig {
            hours: 5,
            kms_per_hour: 6,
            // Planted incidents past the last hour are delivered after the last digest.
            incidents: false,
            ..GenConfig::default()
        },
        tmp.path(),
    )
    .expect("generate");
    assert!(!m.digest_files.is_empty());
    let v = from_tree(tmp.path(), &PublicKeys::default());
    assert!(!v.summary.signatures_checked);
    assert_eq!(v.summary.failures, 0, "{:#?}", v.findings);
    assert_eq!(v.summary.digests as usize, m.digest_files.len());
    assert_eq!(
        v.summary.digests_unverifiable as usize,
        m.digest_files.len()
    );
    assert_eq!(v.summary.logs_listed, v.summary.logs, "{:?}", v.summary);
    assert_eq!(v.summary.logs_unverified, v.summary.logs);
    // One log changed: its SHA-256 no longer matches, signatures or not.
    let log = &m.log_files[3];
    rewrite_gz(log, |t| t.replacen("\"Records\"", "\"Records\" ", 1));
    let v = from_tree(tmp.path(), &PublicKeys::default());
    assert_eq!(
        failures(&v),
        BTreeSet::from([(
            "log_modified".to_owned(),
            format!("s3://trail-bucket/{}", key_of(tmp.path(), log))
        )])
    );
}

/// The report's integrity sections over the same tampered tree: every tampered object is
/// a failure finding, the account-regions they touch are FAILED, the others verified.
#[test]
fn the_report_names_every_tampered_object() {
    use kms_audit::report::{ReportOptions, build_report};
    let Some(s) = signed_tree(24, &[]) else {
        return;
    };
    let (want, _) = tamper_five(&s);
    let tmp = tempfile::tempdir().expect("tmp");
    let lake = LocalLake::open(tmp.path().join("lake")).expect("lake");
    let (objects, _) = local_sources(std::slice::from_ref(&s.tree)).expect("sources");
    ingest_all(&objects, &lake, &|_| {}).expect("ingest");
    let ctx = kms_audit::sql::open_local(lake.root()).expect("open");
    let opts = ReportOptions {
        since: Some(kms_audit::time::parse_event_time("2026-11-01T00:00:00Z").expect("t")),
        until: Some(kms_audit::time::parse_event_time("2026-11-05T00:00:00Z").expect("t")),
        public_keys: Some(s.keys.clone()),
        ..ReportOptions::default()
    };
    let report = crate::rt()
        .block_on(build_report(&ctx, "lake", &opts))
        .expect("report");
    let section = |id: &str| {
        report
            .sections
            .iter()
            .find(|x| x.def.id == id)
            .unwrap_or_else(|| panic!("no section {id}"))
    };
    let findings: BTreeSet<(String, String)> = section("integrity_findings")
        .rows
        .iter()
        .filter(|r| r["failure"] == Value::Bool(true))
        .map(|r| {
            (
                r["kind"].as_str().unwrap_or_default().to_owned(),
                r["object"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(findings, want);
    let rows = &section("integrity").rows;
    assert_eq!(rows.len(), 4, "{rows:#?}");
    let failed = rows.iter().filter(|r| r["status"] == "FAILED").count();
    assert!((1..4).contains(&failed), "{rows:#?}");
    for r in rows.iter().filter(|r| r["status"] != "FAILED") {
        assert_eq!(r["status"], "verified", "{r:#?}");
        assert_eq!(r["digests_present"], r["digests_valid"], "{r:#?}");
        assert_eq!(r["digests_expected"], r["digests_present"], "{r:#?}");
    }
    // The deleted digest shows as expected but not present.
    assert!(
        rows.iter().any(|r| r["digests_missing"] == 1
            && r["digests_expected"].as_u64() > r["digests_present"].as_u64()),
        "{rows:#?}"
    );
    // The verdict: the log integrity control fails, its findings the tampered objects.
    let control = report
        .controls
        .iter()
        .find(|c| c.id == "log_integrity")
        .expect("control");
    assert_eq!(control.status, kms_audit::report::controls::Status::Fail);
    let named: BTreeSet<&str> = control
        .findings
        .iter()
        .filter_map(|f| f.subject.as_deref())
        .collect();
    for (_, object) in &want {
        assert!(
            named.contains(object.as_str()),
            "{object} not among {named:?}"
        );
    }
    // And in the HTML, each tampered object is named.
    let dir = tmp.path().join("report");
    kms_audit::report::write_report(&report, &dir).expect("write");
    let html = std::fs::read_to_string(dir.join("report.html")).expect("html");
    for (_, object) in &want {
        assert!(
            html.contains(object.as_str()),
            "{object} not in report.html"
        );
    }
}

/// CloudTrail's own events that switch KMS evidence off: kept in `trail_events` beside
/// the KMS events, alerted by the trail rules, listed by the report's `trail_changes`.
#[test]
fn trail_tampering_is_kept_alerted_and_reported() {
    use kms_audit::detect::{Window as DetectWindow, builtin_rules, run_rules};
    use kms_audit::report::{ReportOptions, build_report};
    let key = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let trail = |id: &str, t: &str, source: &str, name: &str, rp: Value| {
        serde_json::json!({"eventID": id, "eventTime": t, "eventSource": source, "eventName": name,
            "readOnly": false, "requestParameters": rp})
    };
    let records: Vec<Value> = [
        trail("t-create", "2026-11-10T00:00:00Z", "cloudtrail.amazonaws.com", "CreateTrail",
            serde_json::json!({"name": "org-trail", "s3BucketName": "org-trail-logs", "kmsKeyId": key})),
        trail("t-stop", "2026-11-11T01:00:00Z", "cloudtrail.amazonaws.com", "StopLogging",
            serde_json::json!({"name": "org-trail"})),
        trail("t-sel", "2026-11-11T02:00:00Z", "cloudtrail.amazonaws.com", "PutEventSelectors",
            serde_json::json!({"trailName": "org-trail", "eventSelectors": [{"readWriteType": "All",
                "includeManagementEvents": true, "excludeManagementEventSources": ["kms.amazonaws.com"]}]})),
        trail("t-life", "2026-11-11T03:00:00Z", "s3.amazonaws.com", "PutBucketLifecycle",
            serde_json::json!({"bucketName": "org-trail-logs"})),
        trail("t-other", "2026-11-11T03:30:00Z", "s3.amazonaws.com", "PutBucketPolicy",
            serde_json::json!({"bucketName": "website"})),
        trail("t-look", "2026-11-11T03:40:00Z", "cloudtrail.amazonaws.com", "LookupEvents",
            serde_json::Value::Null),
        serde_json::json!({"eventID": "k-dis", "eventTime": "2026-11-11T04:00:00Z", "eventName": "DisableKey",
            "readOnly": false, "requestParameters": {"keyId": key},
            "resources": [{"ARN": key, "accountId": "111122223333", "type": "AWS::KMS::Key"}]}),
    ]
    .iter()
    .flat_map(crate::detections::expand)
    .collect();
    let tmp = tempfile::tempdir().expect("tmp");
    let lake = crate::detections::lake_with(tmp.path(), &records);
    let ctx = kms_audit::sql::open_local(lake.root()).expect("open");
    let rows = crate::rt()
        .block_on(kms_audit::sql::run_sql(
            &ctx,
            "SELECT event_id, impact FROM trail_events ORDER BY event_id",
        ))
        .expect("sql");
    let kept: Vec<(String, String)> = rows
        .iter()
        .flat_map(|b| {
            let ids = arrow::array::AsArray::as_string::<i32>(b.column(0)).clone();
            let impacts = arrow::array::AsArray::as_string::<i32>(b.column(1)).clone();
            (0..b.num_rows()).map(move |i| (ids.value(i).to_owned(), impacts.value(i).to_owned()))
        })
        .collect();
    assert_eq!(
        kept,
        [
            ("t-create", "trail_created"),
            ("t-life", "bucket_lifecycle_changed"),
            ("t-other", "bucket_policy_changed"),
            ("t-sel", "kms_events_excluded"),
            ("t-stop", "logging_stopped"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let since = kms_audit::time::parse_event_time("2026-11-11T00:00:00Z").expect("t");
    let until = kms_audit::time::parse_event_time("2026-11-12T00:00:00Z").expect("t");
    let alerts = crate::rt()
        .block_on(run_rules(
            &ctx,
            &builtin_rules().expect("rules"),
            DetectWindow::new(since, until),
            &[],
        ))
        .expect("rules");
    let by_rule: BTreeSet<(String, String)> = alerts
        .iter()
        .filter(|a| a.rule_id.starts_with("kms_trail_"))
        .flat_map(|a| a.event_ids.iter().map(|e| (a.rule_id.clone(), e.clone())))
        .collect();
    assert_eq!(
        by_rule,
        [
            ("kms_trail_bucket_tampered", "t-life"),
            ("kms_trail_events_excluded", "t-sel"),
            ("kms_trail_key_disabled", "k-dis"),
            ("kms_trail_logging_stopped", "t-stop"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .into_iter()
        .collect()
    );
    let report = crate::rt()
        .block_on(build_report(
            &ctx,
            "lake",
            &ReportOptions {
                since: Some(since),
                until: Some(until),
                ..ReportOptions::default()
            },
        ))
        .expect("report");
    let changes = report
        .sections
        .iter()
        .find(|s| s.def.id == "trail_changes")
        .expect("trail_changes");
    let findings: BTreeSet<&str> = changes
        .rows
        .iter()
        .filter(|r| r["finding"] == Value::Bool(true))
        .filter_map(|r| r["event_id"].as_str())
        .collect();
    assert_eq!(findings, BTreeSet::from(["t-life", "t-sel", "t-stop"]));
    // Another bucket's policy is not the trail's business.
    assert!(changes.rows.iter().all(|r| r["event_id"] != "t-other"));
}
