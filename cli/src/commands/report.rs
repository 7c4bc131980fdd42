//! `kms-audit report`: the compliance report over a period.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use kms_audit::detect::builtin_rules;
use kms_audit::report::{Report, ReportOptions, build_report, write_report};

use super::{LakeArg, TrustedArg};

/// Write a compliance report (report.html, report.json, one CSV per section) over a
/// period: key inventory, rotation, lifecycle, administrative changes, usage, denials,
/// logging coverage, alerts
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub lake: LakeArg,
    /// Directory to write the report into
    #[arg(long)]
    pub out: PathBuf,
    /// Period start: RFC 3339 or a span before now (30d). Default: 30 days before the end
    #[arg(long)]
    pub since: Option<String>,
    /// Period end (exclusive). Default: just after the lake's last event
    #[arg(long)]
    pub until: Option<String>,
    #[command(flatten)]
    pub trusted: TrustedArg,
    /// Leave out the alerts section (the detection rules over the period)
    #[arg(long)]
    pub no_alerts: bool,
    /// Report on an earlier version of the lake (a version number, or a time): the
    /// version a report.json names reproduces that report's evidence
    #[arg(long, value_name = "VERSION|TIME")]
    pub as_of: Option<String>,
    /// CloudTrail's public keys for the integrity section's signature checks: a file of
    /// `aws cloudtrail list-public-keys` JSON, or `aws` to ask CloudTrail. Without, the
    /// section checks the digest chain and every log's SHA-256, not signatures
    #[arg(long, env = "KMS_AUDIT_PUBLIC_KEYS", value_name = "FILE|aws")]
    pub public_keys: Option<String>,
    /// The previous report to list changes against (its report.json or its directory).
    /// Default: the latest earlier report in a directory beside --out
    #[arg(long, value_name = "PREV/report.json")]
    pub compare: Option<PathBuf>,
    /// Keys (ARNs or ids, comma-separated) whose deletion or disabling in the period is
    /// planned: they do not fail the deletion-or-disable control
    #[arg(long, env = "KMS_AUDIT_EXPECTED_KEYS", value_delimiter = ',')]
    pub expected_keys: Vec<String>,
}

pub fn run(args: Args) -> Result<i32> {
    let mut report = build(&args)?;
    report.changes = previous(&args, &report.until)?
        .map(|(location, prev)| kms_audit::report::changes::compare(&report, &prev, &location));
    let files = write_report(&report, &args.out)?;
    let sections: Vec<String> = report
        .sections
        .iter()
        .map(|s| format!("{} {} ({:.1}s)", s.rows.len(), s.def.id, s.seconds))
        .collect();
    writeln!(
        std::io::stdout(),
        "report {} .. {} ({} KMS events): {}; wrote {} files to {}",
        report.since,
        report.until,
        report.events_in_period,
        sections.join(", "),
        files.len(),
        args.out.display()
    )?;
    Ok(0)
}

/// The previous report: `--compare`, else the latest earlier `report.json` in a
/// directory beside `--out` (reports written side by side, one directory per period).
fn previous(args: &Args, until: &str) -> Result<Option<(String, serde_json::Value)>> {
    let read = |p: &std::path::Path| -> Result<serde_json::Value> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a report.json", p.display()))
    };
    if let Some(p) = &args.compare {
        let file = if p.is_dir() {
            p.join("report.json")
        } else {
            p.clone()
        };
        return Ok(Some((file.display().to_string(), read(&file)?)));
    }
    let out = std::fs::canonicalize(&args.out).unwrap_or_else(|_| args.out.clone());
    let Some(parent) = out.parent() else {
        return Ok(None);
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Ok(None);
    };
    let mut candidates = Vec::new();
    for e in entries.flatten() {
        let file = e.path().join("report.json");
        if e.path() != out && file.is_file() {
            // An unreadable neighbour is not this report's business.
            if let Ok(v) = read(&file) {
                candidates.push((file.display().to_string(), v));
            }
        }
    }
    Ok(kms_audit::report::changes::pick_previous(&candidates, until, "").cloned())
}

/// The report of a run, before it is written.
pub fn build(args: &Args) -> Result<Report> {
    let (since, until) = super::period(args.since.as_deref(), args.until.as_deref())?;
    let lake =
        crate::lake::Lake::open(&args.lake.lake, args.public_keys.as_deref() == Some("aws"))?;
    let ctx = lake.query_as_of(&super::as_of(args.as_of.as_deref())?)?;
    let opts = ReportOptions {
        since,
        until,
        trusted_accounts: args.trusted.trusted_accounts.clone(),
        trusted_orgs: args.trusted.trusted_orgs.clone(),
        rules: if args.no_alerts {
            Vec::new()
        } else {
            builtin_rules()?
        },
        public_keys: args
            .public_keys
            .as_deref()
            .map(|spec| super::verify::lake_keys(spec, &lake, &ctx))
            .transpose()?,
        expected_keys: args.expected_keys.clone(),
    };
    Ok(lake
        .rt
        .block_on(build_report(&ctx, lake.location(), &opts))?)
}
