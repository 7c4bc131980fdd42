//! `kms-audit generate`: a synthetic CloudTrail tree (what `demo` uses; also for tests and
//! benchmarks).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use kms_audit_generate::{GenConfig, generate_tree};

/// Write a synthetic CloudTrail tree (what `demo` uses; also for tests and benchmarks)
#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 72)]
    hours: u32,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Accounts in the organization (1-3)
    #[arg(long, default_value_t = 3)]
    accounts: usize,
    /// Regions (comma-separated)
    #[arg(long, default_value = "us-east-1,eu-west-1", value_delimiter = ',')]
    regions: Vec<String>,
    /// Mean KMS records per account, region and hour at the daily peak
    #[arg(long, default_value_t = 120)]
    kms_per_hour: u32,
    /// Non-KMS records per KMS record
    #[arg(long, default_value_t = 1.5)]
    noise: f64,
    /// Do not plant incidents
    #[arg(long)]
    no_incidents: bool,
    /// Also plant the evasion suite (incidents shaped to slip past naive rules, each with
    /// a look-alike that must stay quiet; needs --hours 60 or more). Its ABAC tag key is
    /// Project: pass --abac-tag-keys Project to detect
    #[arg(long)]
    evasions: bool,
    /// Write no digest or Insights files (only logs)
    #[arg(long)]
    no_digests: bool,
    /// Write the manifest (files, counts per event name, incidents) to this file
    #[arg(long)]
    manifest: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<i32> {
    let cfg = GenConfig {
        seed: args.seed,
        hours: args.hours,
        accounts: args.accounts,
        regions: args.regions,
        kms_per_hour: args.kms_per_hour,
        noise_per_kms: args.noise,
        incidents: !args.no_incidents,
        evasions: args.evasions,
        digests: !args.no_digests,
        ..GenConfig::default()
    };
    let out = &args.out;
    let m =
        generate_tree(&cfg, out).with_context(|| format!("generating into {}", out.display()))?;
    if let Some(path) = &args.manifest {
        let f =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        serde_json::to_writer_pretty(f, &m)?;
    }
    writeln!(
        std::io::stdout(),
        "wrote {} log files ({} records, {} KMS, {:.1} MB raw JSON), {} digest and {} Insights files, {} planted incidents under {}",
        m.log_files.len(),
        m.records,
        m.kms_records,
        m.raw_bytes as f64 / 1e6,
        m.digest_files.len(),
        m.insight_files.len(),
        m.incidents.len(),
        out.display()
    )?;
    Ok(0)
}
