//! `kms-audit compact`: each partition's small files into few large ones.

use std::io::Write;

use anyhow::{Context, Result, bail};
use kms_audit::lake::compact::{CompactOptions, compact};

use super::LakeArg;

/// Rewrite each day's small files into few large ones, dropping duplicate event ids, in
/// one commit per day; readers see the day before or after, and ingest may run meanwhile
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    lake: LakeArg,
    /// Only this day (YYYY-MM-DD); repeatable. Default: every partition
    #[arg(long = "date")]
    dates: Vec<String>,
    /// Roll to a new output file after about this many MB
    #[arg(long, default_value_t = 128)]
    target_mb: u64,
    /// One JSON object per partition on stdout
    #[arg(long)]
    json: bool,
}

impl Args {
    /// Every partition, with the defaults.
    pub fn every_day(lake: LakeArg) -> Args {
        Args {
            lake,
            dates: Vec::new(),
            target_mb: 128,
            json: false,
        }
    }
}

pub fn run(args: Args) -> Result<i32> {
    for d in &args.dates {
        if kms_audit::time::parse_event_time(&format!("{d}T00:00:00Z")).is_none() {
            bail!("--date {d}: expected YYYY-MM-DD");
        }
    }
    let lake = crate::lake::Lake::open(&args.lake.lake, false)?;
    let opts = CompactOptions {
        target_file_bytes: args.target_mb.max(1) * 1024 * 1024,
        ..CompactOptions::default()
    };
    let started = std::time::Instant::now();
    let days = (!args.dates.is_empty()).then_some(args.dates.as_slice());
    let reports = compact(lake.store.as_ref(), days, &opts)
        .with_context(|| format!("compacting {}", lake.location()))?;
    let mut out = std::io::stdout().lock();
    for r in &reports {
        if args.json {
            serde_json::to_writer(&mut out, r)?;
            writeln!(out)?;
        } else if r.version.is_some() {
            writeln!(
                out,
                "{}: {} files ({:.1} MB, {} rows) -> {} files ({:.1} MB, {} rows, {} duplicates dropped) in version {}",
                r.partition,
                r.files_in,
                r.bytes_in as f64 / 1e6,
                r.rows_in,
                r.files_out,
                r.bytes_out as f64 / 1e6,
                r.rows_out,
                r.duplicates_dropped,
                r.version.unwrap_or_default()
            )?;
        }
    }
    let merged = reports.iter().filter(|r| r.version.is_some()).count();
    eprintln!(
        "{merged} of {} day(s) compacted in {:.2}s; replaced files stay for time travel until `kms-audit vacuum`",
        reports.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}
