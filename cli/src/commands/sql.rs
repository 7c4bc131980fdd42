//! `kms-audit sql`: SQL over the lake, or an interactive prompt.

use anyhow::Result;
use clap::ValueEnum;
use kms_audit::sql::{OutputFormat, run_sql, write_batches};

use super::{LakeArg, as_of};

/// Run SQL over the lake (no SQL: an interactive prompt)
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The query; table `kms_events`
    sql: Option<String>,
    #[command(flatten)]
    lake: LakeArg,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Read an earlier version of the lake: a table version number, or a time
    /// (2026-11-01T12:00:00Z, 2026-11-01, 3d) for the version current then
    #[arg(long, value_name = "VERSION|TIME")]
    as_of: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    /// One JSON object per row per line
    Json,
}

impl From<Format> for OutputFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Table => OutputFormat::Table,
            Format::Csv => OutputFormat::Csv,
            Format::Json => OutputFormat::Json,
        }
    }
}

pub fn run(args: Args) -> Result<i32> {
    let lake = crate::lake::Lake::open(&args.lake.lake, false)?;
    let ctx = lake.query_as_of(&as_of(args.as_of.as_deref())?)?;
    let format = args.format.into();
    match args.sql {
        Some(q) => {
            let batches = lake.rt.block_on(run_sql(&ctx, &q))?;
            write_batches(&mut std::io::stdout().lock(), &batches, format)?;
            Ok(0)
        }
        None => crate::prompt::run(&lake.rt, &ctx, lake.location(), format),
    }
}
