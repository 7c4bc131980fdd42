//! `kms-audit policy`: what a key policy document grants, for infrastructure code's CI.

use std::io::{Read, Write};

use anyhow::{Context, Result};
use clap::ValueEnum;
use kms_audit::sql::policy::{FindingKind, analyze_or_finding};

use super::TrustedArg;

/// Analyse a KMS key policy document (a file, or - for stdin): public principals, outside
/// accounts (also through kms:CallerAccount and other conditions), organizations and VPC
/// endpoints a wildcard is narrowed to, NotPrincipal allows,
/// administration without MFA, unreadable documents. Exit 1 on any risk
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The policy document (JSON), or - to read it from stdin
    pub file: String,
    #[command(flatten)]
    pub trusted: TrustedArg,
    /// VPC endpoints (vpce-...) your accounts own: a wildcard narrowed to any other one is
    /// open to whoever owns it (comma-separated)
    #[arg(long, value_delimiter = ',')]
    pub trusted_endpoints: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    /// One finding per line: {"kind","sid","value","risk"}
    Json,
}

pub fn run(args: Args) -> Result<i32> {
    let mut text = String::new();
    if args.file == "-" {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file))?;
    }
    let trusted = &args.trusted.trusted_accounts;
    // Each kind of name is a risk only against a set of its kind; without one it is listed.
    let outside = |set: &[String], v: &str| !set.is_empty() && !set.iter().any(|t| t == v);
    let findings = analyze_or_finding(&text);
    let mut out = std::io::stdout().lock();
    let mut risks = 0;
    for f in &findings {
        let risk = match f.kind {
            FindingKind::AccountPrincipal => outside(trusted, &f.value),
            FindingKind::OrgPrincipal => outside(&args.trusted.trusted_orgs, &f.value),
            FindingKind::EndpointPrincipal => outside(&args.trusted_endpoints, &f.value),
            // What keeps the key recoverable through IAM: good news.
            FindingKind::RootAccess => false,
            FindingKind::PublicPrincipal
            | FindingKind::NotPrincipalAllow
            | FindingKind::AdminWithoutMfa
            | FindingKind::Unparseable => true,
        };
        risks += usize::from(risk);
        match args.format {
            Format::Json => writeln!(
                out,
                "{}",
                serde_json::json!({"kind": f.kind.as_str(), "sid": f.sid, "value": f.value, "risk": risk})
            )?,
            Format::Table => writeln!(
                out,
                "{}\t{}\t{}\t{}",
                if risk { "RISK" } else { "ok" },
                f.kind.as_str(),
                f.sid.as_deref().unwrap_or("-"),
                f.value
            )?,
        }
    }
    if matches!(args.format, Format::Table) {
        writeln!(
            out,
            "{} finding(s), {risks} risk(s){}",
            findings.len(),
            if trusted.is_empty() {
                " (no --trusted-accounts: accounts are listed, not judged)"
            } else {
                ""
            }
        )?;
    }
    Ok(if risks > 0 { 1 } else { 0 })
}
