//! `kms-audit ingest`: CloudTrail objects (files, directories, S3 prefixes) into the lake.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use kms_audit::ingest::{
    IngestOptions, ObjectError, ObjectReport, RunSummary, SkippedObject, SourceObject, ingest_with,
    local_sources,
};
use kms_audit::s3::{S3Uri, s3_sources};

use super::LakeArg;

/// Extract the KMS events of CloudTrail logs into the lake
#[derive(clap::Args, Debug)]
pub struct Args {
    /// CloudTrail files (.json.gz, .json), directories (walked recursively) or
    /// s3://bucket/prefix (every object under the prefix)
    #[arg(required = true)]
    pub sources: Vec<String>,
    #[command(flatten)]
    pub lake: LakeArg,
    /// Print the run summary as one JSON object on stdout
    #[arg(long)]
    pub json: bool,
    /// Commit after this many objects (and at the end). A commit adds about one file per
    /// writer and event day; a smaller one uses less memory and leaves less to read again
    /// after a crash, a larger one writes fewer files
    #[arg(long, default_value_t = IngestOptions::default().commit_objects)]
    pub commit_objects: usize,
    /// Parquet writers of a commit, each adding about one file per event day its objects
    /// cover [default: one per core, at most 8]
    #[arg(long)]
    pub writers: Option<usize>,
    /// Commit after this many MB of (compressed) objects
    #[arg(long, default_value_t = IngestOptions::default().commit_bytes >> 20)]
    pub commit_mb: u64,
    /// Read objects the lake already holds again (their events are then doubled until
    /// `kms-audit compact` drops the duplicate event ids)
    #[arg(long)]
    pub reingest: bool,
}

pub fn run(args: Args) -> Result<i32> {
    let any_s3 = args.sources.iter().any(|s| kms_audit::s3::is_s3(s));
    let lake = crate::lake::Lake::open(&args.lake.lake, any_s3)?;
    let (objects, skipped) = sources(&args.sources, &lake.rt, lake.aws.as_ref())?;

    let bar = if std::io::stderr().is_terminal() && !args.json {
        let bar = ProgressBar::new(objects.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} objects  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let totals = Mutex::new((0u64, 0u64));
    let progress = |r: &Result<ObjectReport, ObjectError>| {
        if let Some(bar) = &bar {
            if let Ok(rep) = r {
                let mut t = totals.lock().unwrap_or_else(|p| p.into_inner());
                t.0 += rep.counts.records;
                t.1 += rep.counts.kms_events;
                bar.set_message(format!("{} records, {} KMS events", t.0, t.1));
            }
            bar.inc(1);
        }
    };
    let pool = source_pool(any_s3 || lake.aws.is_some())?;
    let opts = IngestOptions {
        commit_objects: args.commit_objects.max(1),
        commit_bytes: args.commit_mb.max(1) << 20,
        reingest: args.reingest,
        writers: args.writers.map(|w| w.max(1)),
        // Only the objects with rejected records are reported at the end.
        keep_all_reports: false,
        ..IngestOptions::default()
    };
    let mut run = pool
        .install(|| ingest_with(&objects, lake.store.as_ref(), &opts, &progress))
        .with_context(|| format!("ingesting into {}", lake.location()))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    run.objects_skipped = skipped.len() as u64;
    report_problems(&run);
    print_summary(&run, args.json)?;
    Ok(if run.objects_failed > 0 { 1 } else { 0 })
}

pub type Objects = Vec<Box<dyn SourceObject>>;

/// The pool that reads sources: objects in S3 wait on the network more than on the CPU,
/// so more of them are in flight.
pub fn source_pool(s3: bool) -> Result<rayon::ThreadPool> {
    let threads = if s3 {
        rayon::current_num_threads().max(16)
    } else {
        rayon::current_num_threads()
    };
    Ok(rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?)
}

/// The objects under the sources (files, directories, `s3://bucket/prefix`), and those
/// skipped by name.
pub fn sources(
    sources: &[String],
    rt: &tokio::runtime::Runtime,
    aws: Option<&kms_audit::s3::Aws>,
) -> Result<(Objects, Vec<SkippedObject>)> {
    let mut objects: Vec<Box<dyn SourceObject>> = Vec::new();
    let mut skipped: Vec<SkippedObject> = Vec::new();
    let mut paths = Vec::new();
    for s in sources {
        if let Some(uri) = S3Uri::parse(s) {
            let aws = aws.context("AWS configuration not loaded")?;
            let (o, sk) = rt
                .block_on(s3_sources(aws, &uri))
                .with_context(|| format!("listing {s}"))?;
            if o.is_empty() && sk.is_empty() {
                bail!("source {s}: no objects under this prefix");
            }
            objects.extend(o.into_iter().map(|o| Box::new(o) as Box<dyn SourceObject>));
            skipped.extend(sk);
        } else if s.contains("://") {
            bail!("source {s}: a source is a file, a directory or an s3://bucket/prefix");
        } else {
            paths.push(PathBuf::from(s));
        }
    }
    let (files, sk) = local_sources(&paths)?;
    objects.extend(
        files
            .into_iter()
            .map(|f| Box::new(f) as Box<dyn SourceObject>),
    );
    skipped.extend(sk);
    Ok((objects, skipped))
}

fn report_problems(run: &RunSummary) {
    let mut err = std::io::stderr().lock();
    for f in &run.failures {
        let _ = writeln!(
            err,
            "error: {f} ({}; nothing from this object was written)",
            if f.retryable() {
                "retryable"
            } else {
                "not retryable"
            }
        );
    }
    for w in &run.warnings {
        let _ = writeln!(err, "warning: {w}");
    }
    for r in run.reports.iter().filter(|r| r.counts.rejected > 0) {
        let first = r
            .reject_examples
            .first()
            .map(|x| {
                format!(
                    "{} (event {})",
                    x.reason,
                    x.event_id.as_deref().unwrap_or("?")
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            err,
            "warning: {}: {} record(s) rejected, first: {first}; kept with reasons in {}",
            r.uri,
            r.counts.rejected,
            r.rejects_file.as_deref().unwrap_or("?")
        );
    }
}

fn print_summary(run: &RunSummary, json: bool) -> Result<()> {
    let c = &run.counts;
    let files = run.files_added;
    let mut out = std::io::stdout().lock();
    if json {
        let v = serde_json::json!({
            "objects": run.objects,
            "objects_failed": run.objects_failed,
            "objects_skipped": run.objects_skipped,
            "objects_already_ingested": run.objects_already_ingested,
            "digests": run.digests,
            "records": c.records,
            "kms_events": c.kms_events,
            "skipped": c.skipped,
            "rejected": c.rejected,
            "bytes_in": c.bytes_in,
            "bytes_decompressed": c.bytes_decompressed,
            "files_written": files,
            "versions": run.versions,
            "seconds": (run.seconds * 1000.0).round() / 1000.0,
        });
        writeln!(out, "{v}")?;
    } else {
        let mb = c.bytes_decompressed as f64 / 1e6;
        writeln!(
            out,
            "{} objects ({} failed, {} skipped by name, {} already in the lake, {} digests recorded): {} records = {} KMS events + {} skipped + {} rejected; {} Parquet files in {} commit(s); {:.1} MB ({:.1} MB compressed) in {:.2}s ({:.0} MB/s)",
            run.objects,
            run.objects_failed,
            run.objects_skipped,
            run.objects_already_ingested,
            run.digests,
            c.records,
            c.kms_events,
            c.skipped,
            c.rejected,
            files,
            run.versions.len(),
            mb,
            c.bytes_in as f64 / 1e6,
            run.seconds,
            mb / run.seconds.max(1e-9)
        )?;
    }
    if !c.reconciles() {
        bail!("internal error: record counts do not reconcile: {c:?}");
    }
    Ok(())
}
