//! `kms-audit`: the command line. Argument parsing and glue only; the work is in the
//! `kms_audit` library.

mod demo;
mod detect;
mod lake;
mod prompt;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use kms_audit::generate::{GenConfig, generate_tree};
use kms_audit::ingest::{
    ObjectError, ObjectReport, RunSummary, SkippedObject, SourceObject, ingest_all, local_sources,
};
use kms_audit::query::{OutputFormat, run_sql, write_batches};
use kms_audit::s3::{S3Uri, s3_sources};
use kms_audit::schema::{COLUMNS, PARTITION_COLUMN, PARTITION_DOC};

#[derive(Parser, Debug)]
#[command(
    name = "kms-audit",
    version,
    about = "A typed, queryable audit trail of AWS KMS key usage from CloudTrail logs",
    long_about = "A typed, queryable audit trail of AWS KMS key usage from CloudTrail logs.\n\n\
                  Start with `kms-audit demo`: it generates a sample CloudTrail tree with \
                  planted incidents, ingests it and queries it. No AWS account needed."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Extract the KMS events of CloudTrail logs into the lake
    Ingest {
        /// CloudTrail files (.json.gz, .json), directories (walked recursively) or
        /// s3://bucket/prefix (every object under the prefix)
        #[arg(required = true)]
        sources: Vec<String>,
        #[command(flatten)]
        lake: LakeArg,
        /// Print the run summary as one JSON object on stdout
        #[arg(long)]
        json: bool,
    },
    /// Run SQL over the lake (no SQL: an interactive prompt)
    Sql {
        /// The query; table `kms_events`
        sql: Option<String>,
        #[command(flatten)]
        lake: LakeArg,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Run the detection rules over the lake and print new alerts
    Detect {
        #[command(flatten)]
        lake: LakeArg,
        /// A directory of rules (<id>.sql + <id>.yaml) instead of the built-in catalog
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Window start: RFC 3339 or a span before now (7d, 12h). Default: where the last run
        /// stopped, else the lake's first event + 24 h (the first day trains baselines)
        #[arg(long)]
        since: Option<String>,
        /// Window end (exclusive). Default: after the last event
        #[arg(long)]
        until: Option<String>,
        #[arg(long, value_enum, default_value_t = AlertFormat::Table)]
        format: AlertFormat,
        /// Accounts to trust besides those whose logs are in the lake (comma-separated)
        #[arg(long, env = "KMS_AUDIT_TRUSTED_ACCOUNTS", value_delimiter = ',')]
        trusted_accounts: Vec<String>,
        /// Do not read or write the deduplication state (<lake>/state/detections.json)
        #[arg(long)]
        no_state: bool,
        /// Also deliver new alerts to: file:PATH (NDJSON, appended), an http(s):// webhook
        /// (Slack-compatible) or an SNS topic ARN. Repeatable. A sink that fails after retries fails the run
        /// and leaves the state unchanged, so the alerts are sent again next run
        #[arg(long = "sink")]
        sinks: Vec<String>,
    },
    /// Merge each partition's small per-object files into few large ones, dropping
    /// duplicate event ids; queries running meanwhile see the partition before or after
    Compact {
        #[command(flatten)]
        lake: LakeArg,
        /// Only this day (YYYY-MM-DD); repeatable. Default: every partition
        #[arg(long = "date")]
        dates: Vec<String>,
        /// Keep replaced files this long after the swap (30s, 15m, 1h), for queries that
        /// listed the partition before it; they are deleted by a later run
        #[arg(long, default_value = "0s")]
        keep_replaced: String,
        /// Roll to a new output file after about this many MB
        #[arg(long, default_value_t = 128)]
        target_mb: u64,
        /// One JSON object per partition on stdout
        #[arg(long)]
        json: bool,
    },
    /// Write a compliance report (report.html, report.json, one CSV per section) over a
    /// period: key inventory, rotation, lifecycle, administrative changes, usage, denials,
    /// logging coverage, alerts
    Report {
        #[command(flatten)]
        lake: LakeArg,
        /// Directory to write the report into
        #[arg(long)]
        out: PathBuf,
        /// Period start: RFC 3339 or a span before now (30d). Default: 30 days before the end
        #[arg(long)]
        since: Option<String>,
        /// Period end (exclusive). Default: just after the lake's last event
        #[arg(long)]
        until: Option<String>,
        /// Accounts to trust besides those whose logs are in the lake (comma-separated)
        #[arg(long, env = "KMS_AUDIT_TRUSTED_ACCOUNTS", value_delimiter = ',')]
        trusted_accounts: Vec<String>,
        /// Leave out the alerts section (the detection rules over the period)
        #[arg(long)]
        no_alerts: bool,
    },
    /// List the detection rules with severity and references
    Rules {
        #[arg(long)]
        rules: Option<PathBuf>,
    },
    /// Generate a sample CloudTrail tree with planted incidents, ingest it and query it
    Demo {
        /// Where to put the sample tree and its lake
        #[arg(long, default_value = "./kms-demo")]
        dir: PathBuf,
    },
    /// Write a synthetic CloudTrail tree (what `demo` uses; also for tests and benchmarks)
    Generate {
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
        /// Write the manifest (files, counts per event name, incidents) to this file
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
    /// Print the columns of `kms_events` with their meaning
    Schema,
}

#[derive(clap::Args, Debug)]
struct LakeArg {
    /// The lake: a directory or s3://bucket/prefix (default from KMS_AUDIT_LAKE, else
    /// ./kms-lake)
    #[arg(long, env = "KMS_AUDIT_LAKE", default_value = "./kms-lake")]
    lake: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AlertFormat {
    Table,
    /// One alert per line
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Csv,
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

fn main() {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Ingest {
            sources,
            lake,
            json,
        } => cmd_ingest(&sources, &lake.lake, json),
        Command::Sql { sql, lake, format } => cmd_sql(sql.as_deref(), &lake.lake, format.into()),
        Command::Demo { dir } => demo::run(&dir),
        Command::Detect {
            lake,
            rules,
            since,
            until,
            format,
            trusted_accounts,
            no_state,
            sinks,
        } => {
            let json = matches!(format, AlertFormat::Json);
            let alerts = detect::run(&detect::DetectArgs {
                lake: &lake.lake,
                rules: rules.as_deref(),
                since: since.as_deref(),
                until: until.as_deref(),
                trusted_accounts: &trusted_accounts,
                state: !no_state,
                sinks: &sinks,
            })?;
            detect::print(&alerts, json)?;
            Ok(0)
        }
        Command::Compact {
            lake,
            dates,
            keep_replaced,
            target_mb,
            json,
        } => cmd_compact(&lake.lake, &dates, &keep_replaced, target_mb, json),
        Command::Report {
            lake,
            out,
            since,
            until,
            trusted_accounts,
            no_alerts,
        } => cmd_report(
            &lake.lake,
            &out,
            since.as_deref(),
            until.as_deref(),
            &trusted_accounts,
            !no_alerts,
        ),
        Command::Rules { rules } => {
            detect::list(rules.as_deref())?;
            Ok(0)
        }
        Command::Generate {
            out,
            hours,
            seed,
            accounts,
            regions,
            kms_per_hour,
            noise,
            no_incidents,
            manifest,
        } => {
            let cfg = GenConfig {
                seed,
                hours,
                accounts,
                regions,
                kms_per_hour,
                noise_per_kms: noise,
                incidents: !no_incidents,
                ..GenConfig::default()
            };
            let m = generate_tree(&cfg, &out)
                .with_context(|| format!("generating into {}", out.display()))?;
            if let Some(path) = manifest {
                let f = std::fs::File::create(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                serde_json::to_writer_pretty(f, &m)?;
            }
            println!(
                "wrote {} log files ({} records, {} KMS, {:.1} MB raw JSON), {} digest and {} Insights files, {} planted incidents under {}",
                m.log_files.len(),
                m.records,
                m.kms_records,
                m.raw_bytes as f64 / 1e6,
                m.digest_files.len(),
                m.insight_files.len(),
                m.incidents.len(),
                out.display()
            );
            Ok(0)
        }
        Command::Schema => {
            for c in COLUMNS {
                println!(
                    "{:<36} {:<22} {}",
                    c.name,
                    format!("{:?}{}", c.ty, if c.nullable { "" } else { " NOT NULL" }),
                    c.doc
                );
            }
            println!(
                "{PARTITION_COLUMN:<36} {:<22} {PARTITION_DOC}",
                "Date (partition)"
            );
            Ok(0)
        }
    }
}

pub(crate) fn cmd_ingest(sources: &[String], lake: &str, json: bool) -> Result<i32> {
    let any_s3 = sources.iter().any(|s| kms_audit::s3::is_s3(s));
    let lake = lake::Lake::open(lake, any_s3)?;
    let mut objects: Vec<Box<dyn SourceObject>> = Vec::new();
    let mut skipped: Vec<SkippedObject> = Vec::new();
    let mut paths = Vec::new();
    for s in sources {
        if let Some(uri) = S3Uri::parse(s) {
            let aws = lake.aws.as_ref().context("AWS configuration not loaded")?;
            let (o, sk) = lake
                .rt
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

    let bar = if std::io::stderr().is_terminal() && !json {
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
    // Objects in S3 wait on the network more than on the CPU: more of them in flight.
    let threads = if any_s3 || lake.aws.is_some() {
        rayon::current_num_threads().max(16)
    } else {
        rayon::current_num_threads()
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let mut run = pool.install(|| ingest_all(&objects, lake.store.as_ref(), &progress));
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    run.objects_skipped = skipped.len() as u64;
    report_problems(&run);
    print_summary(&run, json)?;
    Ok(if run.objects_failed > 0 { 1 } else { 0 })
}

fn cmd_compact(
    lake: &str,
    dates: &[String],
    keep: &str,
    target_mb: u64,
    json: bool,
) -> Result<i32> {
    use kms_audit::compact::{CompactOptions, compact};
    let keep_replaced = kms_audit::detect::parse_span(keep)
        .with_context(|| format!("--keep-replaced {keep}: expected a span such as 0s, 15m, 1h"))?;
    for d in dates {
        if kms_audit::time::parse_event_time(&format!("{d}T00:00:00Z")).is_none() {
            bail!("--date {d}: expected YYYY-MM-DD");
        }
    }
    let lake = lake::Lake::open(lake, false)?;
    let opts = CompactOptions {
        target_file_bytes: target_mb.max(1) * 1024 * 1024,
        keep_replaced,
        ..CompactOptions::default()
    };
    let started = std::time::Instant::now();
    let days = (!dates.is_empty()).then_some(dates);
    let reports = compact(lake.store.as_ref(), days, &opts)
        .with_context(|| format!("compacting {}", lake.location()))?;
    let mut out = std::io::stdout().lock();
    for r in &reports {
        if json {
            serde_json::to_writer(&mut out, r)?;
            writeln!(out)?;
        } else if r.files_in > 0 || r.files_deleted > 0 {
            writeln!(
                out,
                "{}: {} files ({:.1} MB, {} rows) -> {} files ({:.1} MB, {} rows, {} duplicates dropped); {} replaced files deleted",
                r.partition,
                r.files_in,
                r.bytes_in as f64 / 1e6,
                r.rows_in,
                r.files_out,
                r.bytes_out as f64 / 1e6,
                r.rows_out,
                r.duplicates_dropped,
                r.files_deleted
            )?;
        }
    }
    let merged = reports.iter().filter(|r| r.files_in > 0).count();
    eprintln!(
        "{merged} of {} partition(s) compacted in {:.2}s",
        reports.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}

fn cmd_report(
    lake: &str,
    out: &std::path::Path,
    since: Option<&str>,
    until: Option<&str>,
    trusted: &[String],
    alerts: bool,
) -> Result<i32> {
    use kms_audit::detect::{builtin_rules, parse_time_arg};
    use kms_audit::report::{ReportOptions, build_report, write_report};
    let now = chrono::Utc::now().timestamp_micros();
    let opts = ReportOptions {
        since: since.map(|s| parse_time_arg(s, now)).transpose()?,
        until: until.map(|s| parse_time_arg(s, now)).transpose()?,
        trusted_accounts: trusted.to_vec(),
        rules: if alerts { builtin_rules()? } else { Vec::new() },
    };
    let lake = lake::Lake::open(lake, false)?;
    let ctx = lake.query()?;
    let report = lake
        .rt
        .block_on(build_report(&ctx, lake.location(), &opts))?;
    let files = write_report(&report, out)?;
    let findings: Vec<String> = report
        .sections
        .iter()
        .map(|s| format!("{} {} ({:.1}s)", s.rows.len(), s.def.id, s.seconds))
        .collect();
    println!(
        "report {} .. {} ({} KMS events): {}; wrote {} files to {}",
        report.since,
        report.until,
        report.events_in_period,
        findings.join(", "),
        files.len(),
        out.display()
    );
    Ok(0)
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
    let files: usize = run.reports.iter().map(|r| r.published.files.len()).sum();
    if json {
        let v = serde_json::json!({
            "objects": run.objects,
            "objects_failed": run.objects_failed,
            "objects_skipped": run.objects_skipped,
            "records": c.records,
            "kms_events": c.kms_events,
            "skipped": c.skipped,
            "rejected": c.rejected,
            "bytes_in": c.bytes_in,
            "bytes_decompressed": c.bytes_decompressed,
            "files_written": files,
            "seconds": (run.seconds * 1000.0).round() / 1000.0,
        });
        println!("{v}");
    } else {
        let mb = c.bytes_decompressed as f64 / 1e6;
        println!(
            "{} objects ({} failed, {} skipped by name): {} records = {} KMS events + {} skipped + {} rejected; {} Parquet files; {:.1} MB ({:.1} MB compressed) in {:.2}s ({:.0} MB/s)",
            run.objects,
            run.objects_failed,
            run.objects_skipped,
            c.records,
            c.kms_events,
            c.skipped,
            c.rejected,
            files,
            mb,
            c.bytes_in as f64 / 1e6,
            run.seconds,
            mb / run.seconds.max(1e-9)
        );
    }
    if !c.reconciles() {
        bail!("internal error: record counts do not reconcile: {c:?}");
    }
    Ok(())
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn cmd_sql(sql: Option<&str>, lake: &str, format: OutputFormat) -> Result<i32> {
    let lake = lake::Lake::open(lake, false)?;
    let ctx = lake.query()?;
    let mut out = std::io::stdout().lock();
    match sql {
        Some(q) => {
            let batches = lake.rt.block_on(run_sql(&ctx, q))?;
            write_batches(&mut out, &batches, format)?;
            Ok(0)
        }
        None => prompt::run(&lake.rt, &ctx, lake.location(), format),
    }
}
