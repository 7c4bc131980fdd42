//! `kms-audit detect`: the rules over the lake, new alerts to stdout and the sinks.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use arrow::array::AsArray;
use clap::ValueEnum;
use kms_audit::detect::sinks::aws::aws_sink;
use kms_audit::detect::sinks::{AwsSinkSpec, deliver_all, parse_sink};
use kms_audit::detect::{
    Alert, DetectOptions, DetectState, Rule, builtin_rules, evaluate, load_rules,
};

use super::{LakeArg, TrustedArg};

/// Run the detection rules over the lake and print new alerts
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub lake: LakeArg,
    /// A directory of rules (<id>.sql + <id>.yaml) instead of the built-in catalog
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Window start: RFC 3339 or a span before now (7d, 12h). Default: where the last run
    /// stopped, else the lake's first event (baseline rules: its first 24 h only train them)
    #[arg(long)]
    pub since: Option<String>,
    /// Window end (exclusive). Default: after the last event
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long, value_enum, default_value_t = AlertFormat::Table)]
    pub format: AlertFormat,
    #[command(flatten)]
    pub trusted: TrustedArg,
    /// Do not read or write the deduplication state (<lake>/state/detections.json)
    #[arg(long)]
    pub no_state: bool,
    /// Also deliver new alerts to: file:PATH (NDJSON, appended), an https:// webhook
    /// (Slack-compatible; http only to loopback; redirects not followed), an SNS topic ARN, eventbridge[:BUS] (PutEvents, detail-type "KMS
    /// alert") or securityhub (ASFF findings, updated in place when an alert is sent again).
    /// Repeatable. A sink that fails after retries fails the run and leaves the state
    /// unchanged, so the alerts are sent again next run
    #[arg(long = "sink")]
    pub sinks: Vec<String>,
    /// Also check CloudTrail log-file integrity (rule `log_integrity`): the digests
    /// recorded since the last run, and account-regions whose digests stopped. The keys:
    /// a file of `aws cloudtrail list-public-keys` JSON, or `aws` to ask CloudTrail
    #[arg(long, env = "KMS_AUDIT_PUBLIC_KEYS", value_name = "FILE|aws")]
    pub public_keys: Option<String>,
    /// Keys that encrypt the trail's logs (ARNs or ids, comma-separated), besides those
    /// its CreateTrail/UpdateTrail events name: disabling one is critical
    #[arg(long, env = "KMS_AUDIT_TRAIL_KEYS", value_delimiter = ',')]
    pub trail_keys: Vec<String>,
    /// Keys whose alerts are raised one severity level (ARNs or ids, comma-separated): the
    /// lake's key, keys of critical data
    #[arg(long, env = "KMS_AUDIT_CRITICAL_KEYS", value_delimiter = ',')]
    pub critical_keys: Vec<String>,
    /// Tag keys used for access control (ABAC), besides those the key policies read:
    /// changing them on a key is alerted
    #[arg(long, env = "KMS_AUDIT_ABAC_TAG_KEYS", value_delimiter = ',')]
    pub abac_tag_keys: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AlertFormat {
    Table,
    /// One alert per line
    Json,
    /// One OCSF Detection Finding (class 2004) per line
    Ocsf,
}

pub fn run(args: Args) -> Result<i32> {
    let (rules, alerts) = evaluate_and_deliver(&args)?;
    print(&alerts, args.format, &rules)?;
    Ok(0)
}

/// The built-in catalog, or the rules of a directory.
pub fn rules(dir: Option<&Path>) -> Result<Vec<Rule>> {
    Ok(match dir {
        Some(d) => load_rules(d).with_context(|| format!("loading rules from {}", d.display()))?,
        None => builtin_rules()?,
    })
}

/// Runs the rules and delivers to the sinks; returns the rules and the alerts that are new
/// (not already reported).
pub fn evaluate_and_deliver(args: &Args) -> Result<(Vec<Rule>, Vec<Alert>)> {
    let any_aws = args.sinks.iter().any(|s| AwsSinkSpec::parse(s).is_some())
        || args.public_keys.as_deref() == Some("aws");
    let lake = crate::lake::Lake::open(&args.lake.lake, any_aws)?;
    let rules = rules(args.rules.as_deref())?;
    let rt = &lake.rt;
    let ctx = lake.query()?;
    kms_audit::detect::set_trail_keys(&ctx, &args.trail_keys)?;
    kms_audit::detect::set_critical_keys(&ctx, &args.critical_keys)?;
    kms_audit::detect::set_trusted_orgs(&ctx, &args.trusted.trusted_orgs)?;
    kms_audit::detect::set_abac_tag_keys(&ctx, &args.abac_tag_keys)?;
    let (since, until) = super::period(args.since.as_deref(), args.until.as_deref())?;
    let mut opts = DetectOptions {
        since,
        until,
        trusted_accounts: args.trusted.trusted_accounts.clone(),
        ..DetectOptions::default()
    };
    let sinks = {
        let _guard = rt.enter();
        args.sinks
            .iter()
            .map(|s| match (AwsSinkSpec::parse(s), lake.aws.as_ref()) {
                (Some(spec), Some(aws)) => Ok(aws_sink(aws, &spec, &rules)),
                _ => Ok(parse_sink(s)?),
            })
            .collect::<Result<Vec<_>>>()?
    };
    let mut state = if !args.no_state {
        Some(DetectState::load(lake.store.as_ref())?)
    } else {
        None
    };
    let keys = args
        .public_keys
        .as_deref()
        .map(|spec| super::verify::lake_keys(spec, &lake, &ctx))
        .transpose()?;
    let loc = lake.store.location()?;
    (opts.lake_version, opts.arrived) =
        rt.block_on(kms_audit::detect::arrivals(&ctx, &loc, state.as_ref()))?;
    let judged = rt.block_on(evaluate(&ctx, &rules, &opts, state.as_mut()))?;
    let mut integrity = Vec::new();
    if let Some(keys) = &keys {
        let explicit = kms_audit::integrity::Window { since, until };
        let check = rt.block_on(kms_audit::integrity::alerts::check_with_state(
            &ctx,
            keys,
            explicit,
            kms_audit::time::now_micros(),
            state.as_mut(),
        ))?;
        let s = &check.verification.summary;
        eprintln!(
            "log_integrity: {} digests judged ({} valid, {} failed, {} missing), {} logs verified: {} alert(s)",
            s.digests,
            s.digests_valid,
            s.digests_failed,
            s.digests_missing,
            s.logs_verified,
            check.alerts.len()
        );
        integrity = check.alerts;
    }
    let (window, mut alerts) = match judged {
        Some((window, alerts)) => (Some(window), alerts),
        None => {
            eprintln!(
                "no events to judge in {} (an empty lake, or nothing new since the last run)",
                args.lake.lake
            );
            (None, Vec::new())
        }
    };
    alerts.extend(integrity);
    kms_audit::detect::sort_alerts(&mut alerts);
    // Deliver before remembering: if a sink fails, the state is left as it was and the
    // next run sends these alerts again (at least once, never silently dropped).
    let failures = deliver_all(&sinks, &alerts, 3, std::time::Duration::from_millis(500));
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("error: {f}");
        }
        print(&alerts, AlertFormat::Json, &rules)?;
        anyhow::bail!(
            "{} sink(s) failed; the alerts above were printed and will be sent again next run",
            failures.len()
        );
    }
    if let Some(st) = &state {
        st.save(lake.store.as_ref())?;
    }
    let Some(window) = window else {
        return Ok((rules, alerts));
    };
    if window.baselines_since > window.since {
        eprintln!(
            "first run: signature rules judged every event; baseline rules learned from {} .. {} and judged from there",
            kms_audit::time::format_micros(window.since),
            kms_audit::time::format_micros(window.baselines_since.min(window.until)),
        );
    }
    let trust = rt.block_on(kms_audit::sql::run_sql(
        &ctx,
        "SELECT (SELECT count(*) FROM trusted_accounts) AS a, (SELECT count(*) FROM trusted_orgs) AS o, \
                (SELECT max(source) FROM trust_basis) AS s",
    ))?;
    if let Some(b) = trust.first().filter(|b| b.num_rows() == 1) {
        let text = |i: usize| {
            arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Utf8)
                .ok()
                .and_then(|c| {
                    c.as_string::<i32>()
                        .iter()
                        .next()
                        .flatten()
                        .map(str::to_owned)
                })
                .unwrap_or_default()
        };
        eprintln!(
            "trusted: {} account(s), {} organization(s), {}",
            text(0),
            text(1),
            if text(2) == "records" {
                "from the records' recipientAccountId (no log key in the AWSLogs/ layout) and the configuration"
            } else {
                "from the log objects' keys and the configuration"
            }
        );
    }
    eprintln!(
        "{} rules over {} .. {}: {} alert(s)",
        rules.len(),
        kms_audit::time::format_micros(window.since),
        kms_audit::time::format_micros(window.until),
        alerts.len()
    );
    Ok((rules, alerts))
}

/// Alerts on stdout: a table, one JSON alert per line, or one OCSF finding per line.
pub fn print(alerts: &[Alert], format: AlertFormat, rules: &[Rule]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        AlertFormat::Table => {}
        AlertFormat::Json => {
            for a in alerts {
                serde_json::to_writer(&mut out, a)?;
                writeln!(out)?;
            }
            return Ok(());
        }
        AlertFormat::Ocsf => {
            let now_ms = kms_audit::time::now_micros() / 1000;
            for a in alerts {
                let meta = rules
                    .iter()
                    .find(|r| r.meta.id == a.rule_id)
                    .map(|r| &r.meta);
                let finding = kms_audit::detect::ocsf::detection_finding(a, meta, now_ms);
                serde_json::to_writer(&mut out, &finding)?;
                writeln!(out)?;
            }
            return Ok(());
        }
    }
    if alerts.is_empty() {
        writeln!(out, "no alerts")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<9} {:<36} {:<21} {:>6}  summary",
        "severity", "rule", "first seen", "events"
    )?;
    for a in alerts {
        writeln!(
            out,
            "{:<9} {:<36} {:<21} {:>6}  {}",
            a.severity.as_str().to_uppercase(),
            a.rule_id,
            a.first_seen,
            a.count,
            a.summary
        )?;
    }
    Ok(())
}
