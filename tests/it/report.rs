//! Compliance reports on a generated lake with planted changes: each change cited by event
//! id in the right section; JSON, CSV and HTML agree; an empty lake gives a clear report.

use crate::rt;
use std::path::Path;

use kms_audit::detect::builtin_rules;
use kms_audit::ingest::{ingest_all, local_sources};
use kms_audit::lake::LocalLake;
use kms_audit::report::{Report, ReportOptions, build_report, cell_text, write_report};
use kms_audit::sql::open_local;
use kms_audit_generate::{GenConfig, Manifest, generate_tree};
use serde_json::Value;

fn lake_72h(dir: &Path) -> Manifest {
    let cfg = GenConfig {
        hours: 72,
        kms_per_hour: 15,
        files_per_hour: 1,
        ..GenConfig::default()
    };
    let m = generate_tree(&cfg, &dir.join("trail")).expect("generate");
    let lake = LocalLake::open(dir.join("lake")).expect("lake");
    let (objects, _) = local_sources(&[dir.join("trail")]).expect("sources");
    let run = ingest_all(&objects, &lake, &|_| {}).expect("ingest");
    assert_eq!(run.objects_failed, 0);
    // One file per day: as a deployed lake after its nightly compaction (and quick to scan
    // in a debug build).
    kms_audit::lake::compact::compact(
        &lake,
        None,
        &kms_audit::lake::compact::CompactOptions::default(),
    )
    .expect("compact");
    m
}

/// One 72-hour lake and its report, shared by the tests (building them is the slow part).
fn shared() -> &'static (tempfile::TempDir, Manifest, Report) {
    static SHARED: std::sync::OnceLock<(tempfile::TempDir, Manifest, Report)> =
        std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tmp");
        let m = lake_72h(dir.path());
        let r = report(dir.path(), true);
        (dir, m, r)
    })
}

fn report(dir: &Path, rules: bool) -> Report {
    let ctx = open_local(&dir.join("lake")).expect("open");
    let opts = ReportOptions {
        rules: if rules {
            builtin_rules().expect("rules")
        } else {
            Vec::new()
        },
        ..ReportOptions::default()
    };
    rt().block_on(build_report(&ctx, "lake", &opts))
        .expect("report")
}

fn rows<'a>(r: &'a Report, id: &str) -> &'a [serde_json::Map<String, Value>] {
    &r.sections
        .iter()
        .find(|s| s.def.id == id)
        .unwrap_or_else(|| panic!("no section {id}"))
        .rows
}

fn incident<'a>(m: &'a Manifest, kind: &str) -> &'a kms_audit_generate::Incident {
    m.incidents
        .iter()
        .find(|i| i.kind == kind)
        .unwrap_or_else(|| panic!("no incident {kind}"))
}

fn cited<'a>(
    rows: &'a [serde_json::Map<String, Value>],
    column: &str,
    ids: &[String],
) -> Vec<&'a serde_json::Map<String, Value>> {
    rows.iter()
        .filter(|r| {
            r.get(column)
                .and_then(Value::as_str)
                .is_some_and(|v| ids.iter().any(|i| i == v))
        })
        .collect()
}

/// RFC 4180 records (quoted fields may hold commas, quotes and newlines).
fn csv_records(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let (mut rec, mut field, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => rec.push(std::mem::take(&mut field)),
            ('\n', false) => {
                rec.push(std::mem::take(&mut field));
                out.push(std::mem::take(&mut rec));
            }
            (c, _) => field.push(c),
        }
    }
    if !field.is_empty() || !rec.is_empty() {
        rec.push(field);
        out.push(rec);
    }
    out
}

#[test]
fn every_planted_change_is_cited_by_event_id_in_its_section() {
    let (_, m, r) = shared();
    assert_eq!(
        r.events_in_period as u64, m.kms_records,
        "the default period covers the 72 hours"
    );

    let lifecycle = rows(r, "lifecycle");
    for (kind, event_name) in [
        ("key_deletion_scheduled", "ScheduleKeyDeletion"),
        ("key_disabled", "DisableKey"),
        ("imported_key_material_deleted", "DeleteImportedKeyMaterial"),
    ] {
        let inc = incident(m, kind);
        let hits = cited(lifecycle, "event_id", &inc.event_ids);
        assert!(
            hits.iter()
                .any(|h| h["event_name"] == event_name && h["effect"] == "destructive"),
            "{kind}: {hits:?}"
        );
        assert!(
            hits.iter()
                .all(|h| h["principal"].as_str() == Some(inc.principal.as_str()))
        );
    }

    let inc = incident(m, "key_rotation_disabled");
    let rot = cited(rows(r, "rotation"), "setting_event_id", &inc.event_ids);
    assert_eq!(rot.len(), 1, "{inc:?}");
    assert_eq!(rot[0]["rotation"], "rotation disabled");
    assert_eq!(rot[0]["finding"], true);

    let admin = rows(r, "admin_changes");
    let public = cited(
        admin,
        "event_id",
        &incident(m, "public_key_policy").event_ids,
    );
    assert!(
        public
            .iter()
            .any(|h| cell_text(h.get("policy_findings")).contains("public_principal")),
        "{public:?}"
    );
    let bypass = cited(
        admin,
        "event_id",
        &incident(m, "policy_lockout_bypass").event_ids,
    );
    assert!(
        bypass.iter().any(|h| h["lockout_check_bypassed"] == true),
        "{bypass:?}"
    );
    let grant = cited(
        admin,
        "event_id",
        &incident(m, "grant_to_external_account").event_ids,
    );
    assert!(
        grant.iter().any(|h| h["event_name"] == "CreateGrant"
            && h["external_accounts"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == m.external_account.as_str()))),
        "the external account is named: {grant:?}"
    );

    // The inventory knows the keys, and which were unused.
    let inventory = rows(r, "key_inventory");
    let deleted_key = incident(m, "key_deletion_scheduled")
        .key_arn
        .clone()
        .expect("key");
    let k = inventory
        .iter()
        .find(|k| k["key_arn"] == deleted_key.as_str())
        .expect("key in inventory");
    assert_eq!(k["state_at_period_end"], "PendingDeletion");
    assert!(
        incident(m, "key_deletion_scheduled")
            .event_ids
            .iter()
            .any(|i| k["state_event_id"] == i.as_str())
    );

    // Alerts of the period, and denied requests, cite events too.
    let alerts = rows(r, "alerts");
    assert!(
        alerts
            .iter()
            .any(|a| a["rule_id"] == "kms_key_deletion_scheduled")
    );
    assert!(rows(r, "denied").iter().all(|d| {
        d["sample_event_ids"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    }));
    assert!(!rows(r, "usage").is_empty() && !rows(r, "coverage").is_empty());
}

#[test]
fn json_csv_and_html_agree() {
    let (_, m, r) = shared();
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("report");
    let files = write_report(r, &out).expect("write");
    let csvs: Vec<&String> = files.iter().filter(|f| f.ends_with(".csv")).collect();
    assert!(csvs.len() >= 5, "{files:?}");
    let json: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).expect("json"))
            .expect("json");
    let html = std::fs::read_to_string(out.join("report.html")).expect("html");
    for s in json["sections"].as_array().expect("sections") {
        let id = s["id"].as_str().expect("id");
        let json_rows = s["rows"].as_array().expect("rows");
        let text = std::fs::read_to_string(out.join(format!("{id}.csv"))).expect("csv");
        let records = csv_records(&text);
        let header = &records[0];
        let columns: Vec<String> = s["columns"]
            .as_array()
            .expect("cols")
            .iter()
            .map(|c| c.as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(header, &columns, "{id}: CSV header");
        assert_eq!(
            records.len() - 1,
            json_rows.len(),
            "{id}: CSV rows vs JSON rows"
        );
        // The same event ids, row by row.
        if let Some(col) = columns.iter().position(|c| c == "event_id") {
            for (rec, row) in records[1..].iter().zip(json_rows) {
                assert_eq!(rec[col], cell_text(row.get("event_id")), "{id}");
            }
        }
        assert!(
            html.contains(&format!("id=\"{id}\"")),
            "{id} missing from the HTML"
        );
    }
    // Every planted change's event ids are in the HTML too.
    for kind in [
        "key_deletion_scheduled",
        "key_disabled",
        "key_rotation_disabled",
        "public_key_policy",
        "policy_lockout_bypass",
        "grant_to_external_account",
        "imported_key_material_deleted",
    ] {
        let inc = incident(m, kind);
        assert!(
            inc.event_ids.iter().any(|i| html.contains(i.as_str())),
            "{kind}"
        );
    }
    assert!(html.contains(&m.external_account));
    // Self-contained: no scripts, no external resources; charts inline.
    let lower = html.to_lowercase();
    assert!(
        !lower.contains("<script") && !lower.contains(" src=") && !lower.contains("href=\"http")
    );
    assert!(lower.contains("<svg") && lower.matches("<svg").count() >= 3);
}

#[test]
fn an_empty_lake_and_an_empty_period_give_a_clear_report() {
    let dir = tempfile::tempdir().expect("tmp");
    LocalLake::open(dir.path().join("lake")).expect("lake");
    let r = report(dir.path(), true);
    assert_eq!(r.events_in_period, 0);
    assert!(r.sections.iter().all(|s| s.rows.is_empty()));
    let files = write_report(&r, &dir.path().join("out")).expect("write");
    let html = std::fs::read_to_string(dir.path().join("out/report.html")).expect("html");
    assert!(html.contains("Nothing in the period") && html.contains("No data in the period"));
    assert!(files.len() >= 7);

    let m = lake_72h(dir.path());
    assert!(m.kms_records > 0);
    let ctx = open_local(&dir.path().join("lake")).expect("open");
    let opts = ReportOptions {
        since: Some(0),
        until: Some(1_000_000),
        ..ReportOptions::default()
    };
    let r = rt()
        .block_on(build_report(&ctx, "lake", &opts))
        .expect("report");
    assert_eq!(r.events_in_period, 0);
    assert!(rows(&r, "lifecycle").is_empty() && rows(&r, "usage").is_empty());
}

/// Chromium (Debian's package), or `None` when browser tests are knowingly skipped.
fn chromium() -> Option<String> {
    let candidates = ["chromium", "chromium-browser", "google-chrome"];
    let found = std::env::var("KMS_AUDIT_TEST_CHROMIUM").ok().or_else(|| {
        candidates.iter().find_map(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|_| (*c).to_owned())
        })
    });
    if found.is_none() {
        if std::env::var_os("KMS_AUDIT_SKIP_BROWSER_TESTS").is_some() {
            eprintln!("skipped: no chromium and KMS_AUDIT_SKIP_BROWSER_TESTS is set");
            return None;
        }
        panic!(
            "needs Chromium (Debian: apt-get install chromium), or KMS_AUDIT_SKIP_BROWSER_TESTS=1"
        );
    }
    found
}

fn headless(browser: &str, profile: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(browser);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        // Self-contained means no network: refuse every host name.
        "--host-resolver-rules=MAP * ~NOTFOUND",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

/// Counts the pixels of the controls' row colours in the top rows of a PNG (8-bit RGB or
/// RGBA, as Chromium writes screenshots), decoding it with the standard library only.
const PNG_COLORS_PY: &str = r#"
import json, struct, sys, zlib
data = open(sys.argv[1], "rb").read()
top = int(sys.argv[2])
pos, idat, w, h, ctype = 8, b"", 0, 0, 0
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
        assert depth == 8 and ctype in (2, 6), (depth, ctype)
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
raw = zlib.decompress(idat)
bpp = 3 if ctype == 2 else 4
stride = w * bpp
prev = bytearray(stride)
want = {"fde2e0": (0xfd, 0xe2, 0xe0), "e6f4ea": (0xe6, 0xf4, 0xea)}
counts = {k: 0 for k in want}
i = 0
for y in range(min(h, top)):
    f = raw[i]; line = bytearray(raw[i + 1:i + 1 + stride]); i += 1 + stride
    for x in range(stride):
        a = line[x - bpp] if x >= bpp else 0
        b = prev[x]
        c = prev[x - bpp] if x >= bpp else 0
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + b) & 255
        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    for x in range(0, stride, bpp):
        px = tuple(line[x:x + 3])
        for k, v in want.items():
            if px == v:
                counts[k] += 1
    prev = line
print(json.dumps(counts))
"#;

#[test]
fn the_html_renders_in_a_real_browser() {
    let Some(browser) = chromium() else { return };
    let (_, m, r) = shared();
    let dir = tempfile::tempdir().expect("tmp");
    write_report(r, dir.path()).expect("write");
    let url = format!("file://{}", dir.path().join("report.html").display());
    let profile = tempfile::tempdir().expect("profile");

    // The DOM after the browser parsed and laid it out: every section, the charts.
    let dom = headless(&browser, profile.path())
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("chromium");
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    for s in &r.sections {
        assert!(
            dom.contains(&format!("id=\"{}\"", s.def.id)),
            "{} not rendered",
            s.def.id
        );
    }
    assert_eq!(dom.matches("<svg").count(), 3, "three inline charts");
    // The verdict comes first: the control table, then the findings, then the evidence.
    let at = |id: &str| dom.find(&format!("id=\"{id}\"")).unwrap_or(usize::MAX);
    assert!(at("controls") < at("findings") && at("findings") < at("charts"));
    assert!(dom.contains("No key scheduled for deletion or disabled"));
    let deletion = &incident(m, "key_deletion_scheduled").event_ids[0];
    assert!(dom.contains(deletion.as_str()));

    // A screenshot and a PDF: the page paints and prints.
    let shot = dir.path().join("report.png");
    let pdf = dir.path().join("report.pdf");
    let o = headless(&browser, profile.path())
        .arg("--window-size=1280,2000")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .expect("chromium");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let png = std::fs::read(&shot).expect("screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a painted page, {} bytes",
        png.len()
    );
    // The first screen shows the control table: the rows of failed controls (their red)
    // and of passed ones (their green) are painted in its top 1,000 pixels.
    if let Ok(python) = std::env::var("KMS_AUDIT_TEST_PYTHON") {
        let o = std::process::Command::new(python)
            .arg("-c")
            .arg(PNG_COLORS_PY)
            .arg(&shot)
            .arg("1000")
            .output()
            .expect("python");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let counts: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        assert!(
            counts["fde2e0"].as_u64().unwrap_or(0) > 5_000,
            "no failed control rows painted: {counts}"
        );
        assert!(
            counts["e6f4ea"].as_u64().unwrap_or(0) > 2_000,
            "no passed control rows painted: {counts}"
        );
    }
    let o = headless(&browser, profile.path())
        .arg("--no-pdf-header-footer")
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(&url)
        .output()
        .expect("chromium");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pdf = std::fs::read(&pdf).expect("pdf");
    let pages = pdf
        .windows(b"/Type /Page\n".len())
        .filter(|w| w.starts_with(b"/Type /Page") && !w.starts_with(b"/Type /Pages"))
        .count();
    assert!(
        pdf.starts_with(b"%PDF") && pages >= 2,
        "printable: {pages} page(s)"
    );
}

#[test]
fn duckdb_reads_the_lake_and_agrees_with_datafusion() {
    let Ok(python) = std::env::var("KMS_AUDIT_TEST_PYTHON") else {
        if std::env::var_os("KMS_AUDIT_SKIP_S3_TESTS").is_some() {
            return;
        }
        panic!("needs KMS_AUDIT_TEST_PYTHON, a Python with duckdb: run scripts/test");
    };
    let (dir, _, _) = shared();
    let lake = dir.path().join("lake");
    let sql = "SELECT event_name, count(*) AS n, count(DISTINCT event_id) AS ids, \
               count(*) FILTER (WHERE encryption_context['aws:s3:arn'] IS NOT NULL) AS s3_ctx, \
               min(event_date) AS first_day, count(*) FILTER (WHERE mfa_authenticated) AS mfa \
               FROM kms_events GROUP BY event_name ORDER BY event_name";
    // The files of the table's current version, by a log replay of the test's own (the
    // lake is compacted: the replaced files are still on disk).
    let script = format!(
        "{}\n\
         files = [os.path.join('{lake}', 'kms_events', f) for f in replay(os.path.join('{lake}', 'kms_events'))[0]]\n\
         con = duckdb.connect()\n\
         con.execute(\"SET TimeZone='UTC'\")\n\
         con.execute(f\"CREATE VIEW kms_events AS SELECT * FROM read_parquet({{files!r}}, hive_partitioning=true, hive_types={{{{'event_date': 'DATE'}}}})\")\n\
         rows = con.execute(\"\"\"{sql}\"\"\").fetchall()\n\
         print(json.dumps([[str(c) for c in r] for r in rows]))\n",
        crate::lake::REPLAY_PY,
        lake = lake.display()
    );
    let o = std::process::Command::new(&python)
        .arg("-c")
        .arg(&script)
        .output()
        .expect("python");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let duck: Vec<Vec<String>> = serde_json::from_slice(&o.stdout).expect("json");

    let ctx = open_local(&lake).expect("open");
    let batches = rt()
        .block_on(kms_audit::sql::run_sql(&ctx, sql))
        .expect("sql");
    let mut csv = Vec::new();
    kms_audit::sql::write_batches(&mut csv, &batches, kms_audit::sql::OutputFormat::Csv)
        .expect("csv");
    let ours: Vec<Vec<String>> = csv_records(&String::from_utf8_lossy(&csv))[1..].to_vec();
    assert!(ours.len() > 5);
    assert_eq!(
        duck, ours,
        "DuckDB and DataFusion read the same lake differently"
    );
}

#[test]
fn report_sections_are_the_query_files_with_their_metadata() {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../queries/reports"));
    let mut stems: Vec<String> = std::fs::read_dir(dir)
        .expect("queries/reports")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .map(|p| {
            assert!(
                p.with_extension("yaml").is_file(),
                "{} has no metadata sidecar",
                p.display()
            );
            p.file_stem().expect("stem").to_string_lossy().into_owned()
        })
        .collect();
    stems.sort();
    let sections = kms_audit::report::builtin_sections().expect("sections");
    let ids: Vec<&str> = sections.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        sections.len(),
        stems.len(),
        "every file is built in: {ids:?}"
    );
    for (s, stem) in sections.iter().zip(&stems) {
        assert!(stem.ends_with(&s.id), "{stem} holds section {}", s.id);
        assert!(!s.title.is_empty() && !s.description.is_empty(), "{}", s.id);
        assert!(!s.sql.trim().is_empty(), "{} has no query", s.id);
        assert!(
            !s.references.is_empty() && s.references.other.is_empty(),
            "{}: structured references",
            s.id
        );
    }
}

#[test]
fn a_report_names_the_version_it_read_and_that_version_reproduces_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = lake_72h(dir.path());
    let lake = dir.path().join("lake");
    let opts = ReportOptions {
        since: kms_audit::time::parse_event_time("2026-11-01T00:00:00Z"),
        until: kms_audit::time::parse_event_time("2026-11-10T00:00:00Z"),
        ..ReportOptions::default()
    };
    let build = |as_of: &kms_audit::lake::table::AsOf| {
        let ctx = kms_audit::sql::open_local_as_of(&lake, as_of).expect("open");
        rt().block_on(build_report(&ctx, "lake", &opts))
            .expect("report")
    };
    let first = build(&kms_audit::lake::table::AsOf::Latest);
    let version = first.lake_version.expect("the report names its version");
    assert_eq!(first.events_in_period as u64, m.kms_records);
    // More events of the same period arrive; the latest report changes, the one at the
    // first report's version does not.
    let late = dir.path().join("late");
    let cfg = GenConfig {
        hours: 6,
        kms_per_hour: 20,
        files_per_hour: 1,
        accounts: 1,
        regions: vec!["eu-west-1".into()],
        seed: 404,
        incidents: false,
        ..Default::default()
    };
    let extra = generate_tree(&cfg, &late).expect("gen").kms_records;
    let (objects, _) = local_sources(&[late]).expect("sources");
    ingest_all(&objects, &LocalLake::open(&lake).expect("lake"), &|_| {}).expect("ingest");
    let latest = build(&kms_audit::lake::table::AsOf::Latest);
    assert!(latest.lake_version > Some(version));
    assert_eq!(latest.events_in_period as u64, m.kms_records + extra);
    let again = build(&kms_audit::lake::table::AsOf::Version(version));
    assert_eq!(again.lake_version, Some(version));
    assert_eq!(again.events_in_period, first.events_in_period);
    // The same evidence: the rows of every section, up to the order of rows and of the
    // values of set-like columns (DISTINCT aggregates come in any order).
    fn canonical(rows: &[serde_json::Map<String, Value>]) -> Vec<String> {
        fn sort_arrays(v: &mut Value) {
            match v {
                Value::Array(a) => {
                    a.iter_mut().for_each(sort_arrays);
                    a.sort_by_key(|x| x.to_string());
                }
                Value::Object(o) => o.values_mut().for_each(sort_arrays),
                _ => {}
            }
        }
        let mut out: Vec<String> = rows
            .iter()
            .map(|r| {
                let mut v = Value::Object(r.clone());
                sort_arrays(&mut v);
                v.to_string()
            })
            .collect();
        out.sort();
        out
    }
    for (a, b) in first.sections.iter().zip(&again.sections) {
        let (ca, cb) = (canonical(&a.rows), canonical(&b.rows));
        assert_eq!(ca.len(), cb.len(), "section {}", a.def.id);
        if let Some((x, y)) = ca.iter().zip(&cb).find(|(x, y)| x != y) {
            panic!("section {} differs:\n{x}\n{y}", a.def.id);
        }
    }
    let json = serde_json::to_value(&again).expect("json");
    assert_eq!(json["lake_version"], version);
}
