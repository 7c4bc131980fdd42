//! `kms-audit convert`: a lake of the layout before Delta Lake into the Delta tables.

use std::io::Write;

use anyhow::{Context, Result};
use kms_audit::lake::convert::convert;

use super::LakeArg;

/// Turn a lake written before the Delta Lake tables (Parquet files and _manifest.json
/// under kms_events/) into them, in place: the files readers saw become the table's first
/// version, nothing is copied
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    lake: LakeArg,
    /// One JSON object on stdout
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<i32> {
    let lake = crate::lake::Lake::open(&args.lake.lake, false)?;
    let report =
        convert(lake.store.as_ref()).with_context(|| format!("converting {}", lake.location()))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &report)?;
        writeln!(out)?;
    } else if report.version.is_none() {
        writeln!(out, "{}: nothing to convert", lake.location())?;
    } else {
        writeln!(
            out,
            "{}: {} files ({:.1} MB) of {} days committed as version {}; {} files the old manifests hid are left for `kms-audit vacuum`",
            lake.location(),
            report.files,
            report.bytes as f64 / 1e6,
            report.partitions,
            report.version.unwrap_or_default(),
            report.hidden
        )?;
    }
    Ok(0)
}
