//! `kms-audit verify`: CloudTrail log-file integrity, from objects or from the lake.

use std::io::Write;

use anyhow::{Context, Result, bail};
use kms_audit::integrity::{PublicKeys, Verification, Window, json_lines, verify};

use super::LakeArg;

/// Prove CloudTrail log files were not modified, deleted or forged: digest signatures,
/// the digest chain, each log's SHA-256
#[derive(clap::Args, Debug)]
pub struct Args {
    /// CloudTrail trees holding logs and digests (directories, files, s3://bucket/prefix).
    /// Without sources, judge what ingest recorded in the lake (its `digests` and
    /// `objects` tables), reading no log object again
    pub sources: Vec<String>,
    #[command(flatten)]
    pub lake: LakeArg,
    /// The JSON of `aws cloudtrail list-public-keys` (every key that signed the period's
    /// digests). Default: ask CloudTrail (cloudtrail:ListPublicKeys in the trails' home
    /// regions, for the digests' period) with the standard AWS credentials
    #[arg(long, value_name = "FILE", conflicts_with = "no_signatures")]
    pub public_keys: Option<std::path::PathBuf>,
    /// Check the digest chain and every log's SHA-256 only, not signatures (no keys
    /// needed; no digest counts as valid)
    #[arg(long)]
    pub no_signatures: bool,
    /// Judge digests from this time on (RFC 3339, a date, or a span such as 7d)
    #[arg(long)]
    pub since: Option<String>,
    /// Judge digests up to this time
    #[arg(long)]
    pub until: Option<String>,
    /// One finding per line as JSON ({"kind","object","digest","detail"}), then
    /// {"summary": ...}
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<i32> {
    let from_file = args.public_keys.as_deref().map(keys_file).transpose()?;
    let (since, until) = super::period(args.since.as_deref(), args.until.as_deref())?;
    if let (Some(s), Some(u)) = (since, until)
        && s > u
    {
        bail!("--since is after --until");
    }
    let window = Window { since, until };
    let rt = crate::lake::runtime()?;
    let any_s3 = args.sources.iter().any(|s| kms_audit::s3::is_s3(s));
    let mut aws = any_s3.then(|| rt.block_on(kms_audit::s3::Aws::load()));
    let ev = if args.sources.is_empty() {
        let lake = crate::lake::Lake::open(&args.lake.lake, false)?;
        let loc = lake.store.location()?;
        lake.rt
            .block_on(kms_audit::integrity::lake::evidence_from_lake(&loc, window))
            .with_context(|| format!("reading the digests of {}", lake.location()))?
    } else {
        let (objects, _) = super::ingest::sources(&args.sources, &rt, aws.as_ref())?;
        let pool = super::ingest::source_pool(any_s3)?;
        let _guard = rt.enter();
        pool.install(|| kms_audit::integrity::sources::evidence_from_sources(&objects))
    };
    let keys = match from_file {
        Some(keys) => keys,
        None if args.no_signatures => PublicKeys::default(),
        None => {
            let (regions, span) = ev.key_scope();
            match span {
                // No digest: nothing to ask for.
                None => PublicKeys::default(),
                Some((start, end)) => {
                    let aws = aws.get_or_insert_with(|| rt.block_on(kms_audit::s3::Aws::load()));
                    rt.block_on(kms_audit::integrity::keys::list_public_keys(
                        aws, &regions, start, end,
                    ))
                    .context("no --public-keys: asking CloudTrail for its public keys")?
                }
            }
        }
    };
    let v = verify(&ev, &keys, window);
    print(&v, args.json)?;
    Ok(if v.failed() { 1 } else { 0 })
}

/// `--public-keys FILE|aws` of the commands that read the lake: a `list-public-keys` JSON
/// file, or `aws` to ask CloudTrail for the keys of the lake's digests (the lake must have
/// been opened with the AWS configuration).
pub fn lake_keys(
    spec: &str,
    lake: &crate::lake::Lake,
    ctx: &datafusion::prelude::SessionContext,
) -> Result<PublicKeys> {
    if spec != "aws" {
        return keys_file(std::path::Path::new(spec));
    }
    let aws = lake.aws.as_ref().context("AWS configuration not loaded")?;
    lake.rt
        .block_on(kms_audit::integrity::keys::lake_public_keys(aws, ctx))?
        .context("asking CloudTrail for its public keys")
}

/// Reads a `list-public-keys` JSON file.
pub fn keys_file(path: &std::path::Path) -> Result<PublicKeys> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    PublicKeys::from_json(&text).with_context(|| format!("reading {}", path.display()))
}

fn print(v: &Verification, json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        out.write_all(json_lines(v).as_bytes())?;
        return Ok(());
    }
    for f in &v.findings {
        let by = f
            .digest
            .as_deref()
            .map(|d| format!(" (digest {d})"))
            .unwrap_or_default();
        writeln!(out, "{}\t{}\t{}{by}", f.kind.as_str(), f.object, f.detail)?;
    }
    let s = &v.summary;
    writeln!(
        out,
        "{} digests: {} valid, {} unverifiable, {} failed, {} missing; {} logs: {} verified, {} failed, {} not proven by a valid digest",
        s.digests,
        s.digests_valid,
        s.digests_unverifiable,
        s.digests_failed,
        s.digests_missing,
        s.logs,
        s.logs_verified,
        s.logs_failed,
        s.logs_unverified
    )?;
    writeln!(
        out,
        "{}",
        if v.failed() {
            format!("INTEGRITY FAILED: {} finding(s)", s.failures)
        } else {
            "integrity verified".to_owned()
        }
    )?;
    Ok(())
}
