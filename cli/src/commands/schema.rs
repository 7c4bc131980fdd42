//! `kms-audit schema`: the columns of `kms_events` with their meaning.

use std::io::Write;

use anyhow::Result;
use kms_audit::schema::{COLUMNS, PARTITION_COLUMN, PARTITION_DOC};

/// Print the columns of `kms_events` with their meaning
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_: Args) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    for c in COLUMNS {
        let ty = format!("{:?}{}", c.ty, if c.nullable { "" } else { " NOT NULL" });
        writeln!(out, "{:<36} {ty:<22} {}", c.name, c.doc)?;
    }
    writeln!(
        out,
        "{PARTITION_COLUMN:<36} {:<22} {PARTITION_DOC}",
        "Date (partition)"
    )?;
    Ok(0)
}
