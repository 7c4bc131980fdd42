//! `kms-audit demo`: the first thing a new user runs.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use kms_audit::sql::{OutputFormat, open_local, run_sql, write_batches};
use kms_audit_generate::{GenConfig, generate_tree_with_progress};

use super::{LakeArg, TrustedArg, compact, detect, ingest, report};

/// Generate a sample CloudTrail tree with planted incidents, ingest it, query it, run the
/// detections and write the compliance report
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to put the sample tree, its lake and the report
    #[arg(long, default_value = "./kms-demo")]
    dir: PathBuf,
}

/// Queries the demo shows, with what each answers.
const QUERIES: &[(&str, &str)] = &[
    (
        "KMS events by operation",
        "SELECT event_name, count(*) AS events, count(DISTINCT principal) AS principals \
         FROM kms_events GROUP BY event_name ORDER BY events DESC LIMIT 12",
    ),
    (
        "Who uses which key, and how (top 10)",
        "SELECT principal, split_part(key_arn, ':', 5) AS key_account, \
                split_part(key_arn, '/', 2) AS key_id, count(*) AS calls, \
                bool_or(via_aws_service) AS via_service, bool_or(vpc_endpoint_id IS NOT NULL) AS via_vpce \
         FROM kms_events GROUP BY 1, 2, 3 ORDER BY calls DESC LIMIT 10",
    ),
    (
        "Encryption-context keys seen",
        "SELECT ctx_key, count(*) AS events FROM \
           (SELECT unnest(map_keys(encryption_context)) AS ctx_key FROM kms_events) \
         GROUP BY ctx_key ORDER BY events DESC",
    ),
    (
        "Destructive and policy changes (what the detections will alert on)",
        "SELECT event_time, event_name, principal, mfa_authenticated AS mfa, key_arn, \
                pending_window_in_days AS window_days, bypass_policy_lockout_safety_check AS bypass, \
                grantee_principal, event_id \
         FROM kms_events \
         WHERE event_name IN ('ScheduleKeyDeletion','DisableKey','DisableKeyRotation','PutKeyPolicy', \
                              'DeleteImportedKeyMaterial','CreateGrant') \
           AND NOT via_aws_service \
         ORDER BY event_time",
    ),
    (
        "Errors by principal and code",
        "SELECT principal, error_code, count(*) AS errors, count(DISTINCT key_arn) AS keys, \
                min(event_time) AS first_seen, max(event_time) AS last_seen \
         FROM kms_events WHERE error_code IS NOT NULL GROUP BY 1, 2 ORDER BY errors DESC",
    ),
];

pub fn run(args: Args) -> Result<i32> {
    let dir = &args.dir;
    let trail = dir.join("cloudtrail");
    let lake = dir.join("lake");
    if trail.exists() {
        std::fs::remove_dir_all(&trail).with_context(|| format!("clearing {}", trail.display()))?;
    }
    let cfg = GenConfig::default();
    let lake_str = lake.display().to_string();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "== 1. Generating {} hours of CloudTrail for {} accounts in {} regions under {}",
        cfg.hours,
        cfg.accounts,
        cfg.regions.len(),
        trail.display()
    )?;
    let manifest = generate_tree_with_progress(&cfg, &trail, &mut |done, hours| {
        if done % 24 == 0 || done == hours {
            // Progress only: a closed stdout is reported by the next step's write.
            let _ = writeln!(std::io::stdout(), "   {done} of {hours} hours written");
        }
    })?;
    writeln!(
        out,
        "   {} log files ({} records, {} of them KMS), {} digests, {} Insights files, {} planted incidents",
        manifest.log_files.len(),
        manifest.records,
        manifest.kms_records,
        manifest.digest_files.len(),
        manifest.insight_files.len(),
        manifest.incidents.len()
    )?;

    writeln!(
        out,
        "\n== 2. kms-audit ingest {} --lake {}",
        trail.display(),
        lake.display()
    )?;
    drop(out);
    let lake_arg = LakeArg {
        lake: lake_str.clone(),
    };
    ingest::run(ingest::Args {
        sources: vec![trail.display().to_string()],
        lake: lake_arg.clone(),
        json: false,
        commit_objects: kms_audit::ingest::IngestOptions::default().commit_objects,
        commit_mb: kms_audit::ingest::IngestOptions::default().commit_bytes >> 20,
        reingest: false,
        writers: None,
    })?;

    // Ingest commits about one file per writer (core) and day; compaction makes it one
    // per day, as a scheduled compaction would.
    writeln!(
        std::io::stdout(),
        "\n== 3. kms-audit compact --lake {} (each day's files into one)",
        lake.display()
    )?;
    compact::run(compact::Args::every_day(lake_arg.clone()))?;

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "\n== 4. kms-audit sql ... (a few questions the lake answers)"
    )?;
    let rt = crate::lake::runtime()?;
    let ctx = open_local(&lake)?;
    for (title, sql) in QUERIES {
        writeln!(out, "\n-- {title}")?;
        let batches = rt.block_on(run_sql(&ctx, sql))?;
        write_batches(&mut out, &batches, OutputFormat::Table)?;
    }

    writeln!(
        out,
        "\n== 5. kms-audit detect --lake {} (baseline rules learn from the first 24 hours)",
        lake.display()
    )?;
    drop(out);
    let detect_args = detect::Args {
        lake: lake_arg.clone(),
        rules: None,
        since: None,
        until: None,
        format: detect::AlertFormat::Table,
        trusted: TrustedArg::default(),
        no_state: true,
        sinks: Vec::new(),
        // The generated digests are not signed by CloudTrail.
        public_keys: None,
        trail_keys: Vec::new(),
        critical_keys: Vec::new(),
        abac_tag_keys: Vec::new(),
    };
    let (rules, alerts) = detect::evaluate_and_deliver(&detect_args)?;
    detect::print(&alerts, detect::AlertFormat::Table, &rules)?;

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "\n== 6. The planted incidents, and the events that show them"
    )?;
    for i in &manifest.incidents {
        let found: Vec<&str> = alerts
            .iter()
            .filter(|a| i.event_ids.iter().any(|id| a.event_ids.contains(id)))
            .map(|a| a.rule_id.as_str())
            .collect();
        writeln!(
            out,
            "  {:<32} {} ({} event{}, first {}); alerted by: {}",
            i.kind,
            i.description,
            i.event_ids.len(),
            if i.event_ids.len() == 1 { "" } else { "s" },
            i.event_ids.first().map(String::as_str).unwrap_or("-"),
            if found.is_empty() {
                "NOTHING".to_owned()
            } else {
                found.join(", ")
            }
        )?;
    }

    let report_dir = dir.join("report");
    writeln!(
        out,
        "\n== 7. kms-audit report --lake {} --out {}",
        lake.display(),
        report_dir.display()
    )?;
    drop(out);
    report::run(report::Args {
        lake: lake_arg,
        out: report_dir.clone(),
        since: None,
        until: None,
        trusted: TrustedArg::default(),
        no_alerts: false,
        as_of: None,
        public_keys: None,
        compare: None,
        expected_keys: Vec::new(),
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "   open {} in a browser",
        report_dir.join("report.html").display()
    )?;
    writeln!(
        out,
        "\nTry your own: kms-audit sql --lake {} \"SELECT * FROM kms_events WHERE event_name = 'ScheduleKeyDeletion'\"",
        lake.display()
    )?;
    Ok(0)
}
