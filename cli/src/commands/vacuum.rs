//! `kms-audit vacuum`: delete the files no recent table version references.

use std::io::Write;

use anyhow::{Context, Result};
use kms_audit::lake::compact::vacuum;

use super::LakeArg;

/// Delete data files that compaction replaced (or failed writers left) once no table
/// version younger than the retention references them; older versions can then no
/// longer be read with --as-of
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    lake: LakeArg,
    /// Keep files referenced by versions younger than this (7d, 36h, 0s)
    #[arg(long, default_value = "7d")]
    retain: String,
    /// List what would be deleted, delete nothing
    #[arg(long)]
    dry_run: bool,
    /// One JSON object on stdout
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<i32> {
    let micros = kms_audit::time::parse_span(&args.retain).with_context(|| {
        format!(
            "--retain {}: expected a span such as 7d, 36h, 0s",
            args.retain
        )
    })?;
    let lake = crate::lake::Lake::open(&args.lake.lake, false)?;
    let report = vacuum(
        lake.store.as_ref(),
        chrono::Duration::microseconds(micros),
        args.dry_run,
    )
    .with_context(|| format!("vacuuming {}", lake.location()))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &report)?;
        writeln!(out)?;
    } else {
        for f in &report.files {
            writeln!(out, "{f}")?;
        }
        eprintln!(
            "{} file(s) {}",
            report.files.len(),
            if args.dry_run {
                "would be deleted"
            } else {
                "deleted"
            }
        );
    }
    Ok(0)
}
