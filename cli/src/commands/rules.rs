//! `kms-audit rules`: the detection rules with severity and references.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use kms_audit::catalog::{Framework, mitre_technique};

/// List the detection rules with severity and references
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A directory of rules instead of the built-in catalog
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Group by the references of one framework
    #[arg(long, value_parser = ["mitre", "cis", "pci", "security_hub", "other"])]
    by: Option<String>,
}

pub fn run(args: Args) -> Result<i32> {
    let rules = super::detect::rules(args.rules.as_deref())?;
    let mut out = std::io::stdout().lock();
    let Some(by) = args.by else {
        for r in &rules {
            let m = &r.meta;
            writeln!(out, "{:<36} {:<8} {}", m.id, m.severity.as_str(), m.title)?;
            writeln!(
                out,
                "{:<36} dedup {}; {}",
                "",
                m.dedup_window,
                m.references.labels().join("; ")
            )?;
        }
        return Ok(0);
    };
    let Some(framework) = Framework::parse(&by) else {
        bail!("--by {by}: expected one of mitre, cis, pci, security_hub, other");
    };
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut none = Vec::new();
    for r in &rules {
        let ids = r.meta.references.ids(framework);
        if ids.is_empty() {
            none.push(r.meta.id.as_str());
        }
        for id in ids {
            groups.entry(id).or_default().push(&r.meta.id);
        }
    }
    for (id, ids) in &groups {
        let name = match framework {
            Framework::Mitre => mitre_technique(id).map(|t| t.name).unwrap_or(""),
            _ => "",
        };
        writeln!(
            out,
            "{}",
            format!("{} {id} {name}", framework.title()).trim_end()
        )?;
        for rule in ids {
            writeln!(out, "    {rule}")?;
        }
    }
    if !none.is_empty() {
        writeln!(out, "(no {} reference)", framework.title())?;
        for rule in none {
            writeln!(out, "    {rule}")?;
        }
    }
    Ok(0)
}
