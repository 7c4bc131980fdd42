//! `kms-audit demo`: the first thing a new user runs.

use std::path::Path;

use anyhow::{Context, Result};
use kms_audit::generate::{GenConfig, generate_tree};
use kms_audit::query::{OutputFormat, open_local, run_sql, write_batches};

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

pub fn run(dir: &Path) -> Result<i32> {
    let trail = dir.join("cloudtrail");
    let lake = dir.join("lake");
    if trail.exists() {
        std::fs::remove_dir_all(&trail).with_context(|| format!("clearing {}", trail.display()))?;
    }
    let cfg = GenConfig::default();
    println!(
        "== 1. Generating {} hours of CloudTrail for {} accounts in {} regions under {}",
        cfg.hours,
        cfg.accounts,
        cfg.regions.len(),
        trail.display()
    );
    let manifest = generate_tree(&cfg, &trail)?;
    println!(
        "   {} log files ({} records, {} of them KMS), {} digests, {} Insights files, {} planted incidents",
        manifest.log_files.len(),
        manifest.records,
        manifest.kms_records,
        manifest.digest_files.len(),
        manifest.insight_files.len(),
        manifest.incidents.len()
    );

    println!(
        "\n== 2. kms-audit ingest {} --lake {}",
        trail.display(),
        lake.display()
    );
    let lake_str = lake.display().to_string();
    crate::cmd_ingest(&[trail.display().to_string()], &lake_str, false)?;

    println!("\n== 3. kms-audit sql ... (a few questions the lake answers)");
    let rt = crate::runtime()?;
    let ctx = open_local(&lake)?;
    let mut out = std::io::stdout().lock();
    for (title, sql) in QUERIES {
        println!("\n-- {title}");
        let batches = rt.block_on(run_sql(&ctx, sql))?;
        write_batches(&mut out, &batches, OutputFormat::Table)?;
    }

    println!(
        "\n== 4. kms-audit detect --lake {} (the first 24 hours train the baselines)",
        lake.display()
    );
    let alerts = crate::detect::run(&crate::detect::DetectArgs {
        lake: &lake_str,
        rules: None,
        since: None,
        until: None,
        trusted_accounts: &[],
        state: false,
        sinks: &[],
    })?;
    crate::detect::print(&alerts, false)?;

    println!("\n== 5. The planted incidents, and the events that show them");
    for i in &manifest.incidents {
        let found: Vec<&str> = alerts
            .iter()
            .filter(|a| i.event_ids.iter().any(|id| a.event_ids.contains(id)))
            .map(|a| a.rule_id.as_str())
            .collect();
        println!(
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
        );
    }
    println!(
        "\nTry your own: kms-audit sql --lake {} \"SELECT * FROM kms_events WHERE event_name = 'ScheduleKeyDeletion'\"",
        lake.display()
    );
    Ok(0)
}
