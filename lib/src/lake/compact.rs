//! Compaction: a day's many small files of `kms_events` rewritten into few large ones
//! (about [`CompactOptions::target_file_bytes`] each), duplicate `event_id`s dropped, in
//! one Delta commit that removes the inputs and adds the outputs.
//!
//! The commit changes no data (`dataChange: false`, operation `OPTIMIZE`): detection by
//! arrival does not judge its rows again. It is committed over concurrent ingest appends
//! (their new files are not among its inputs, so no row committed meanwhile is lost) and
//! gives up, leaving its outputs for `vacuum`, when another compaction removed one of its
//! inputs first. Nothing is deleted here: replaced files stay readable by older versions
//! (time travel, readers that opened one) until `kms-audit vacuum` and its retention.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanBuilder};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;

use crate::lake::table::{AsOf, LiveFile, NewFile, TableError, Tables, part_name, partition_dir};
use crate::lake::{LakeError, LakeStore, compacted_writer_properties, fnv1a64};
use crate::schema::{PARTITION_COLUMN, TABLE};

/// Errors of compaction.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("{path}: {source}")]
    Parquet {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{path}: {source}")]
    Arrow {
        path: String,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Options of a compaction run.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Roll to a new output file after about this many bytes.
    pub target_file_bytes: u64,
    /// A day is rewritten when it has at least this many files, or duplicate event ids.
    pub min_files: usize,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            target_file_bytes: 128 * 1024 * 1024,
            min_files: 2,
        }
    }
}

/// What compacting one day did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PartitionReport {
    pub partition: String,
    pub files_in: usize,
    pub bytes_in: u64,
    pub rows_in: u64,
    pub duplicates_dropped: u64,
    pub files_out: usize,
    pub bytes_out: u64,
    pub rows_out: u64,
    /// The version committed; `None` when the day was left as it was (too few files, or
    /// another compaction of it committed first).
    pub version: Option<i64>,
}

/// The days (`YYYY-MM-DD`) of the table's current version, with their files.
async fn days_of(tables: &Tables) -> Result<BTreeMap<String, Vec<LiveFile>>, TableError> {
    let snap = tables.snapshot(TABLE, &AsOf::Latest).await?;
    let mut days: BTreeMap<String, Vec<LiveFile>> = BTreeMap::new();
    for f in snap.files {
        let day = f.partition.clone().unwrap_or_default();
        days.entry(day).or_default().push(f);
    }
    Ok(days)
}

/// The days of the lake's event table.
pub fn partitions(lake: &dyn LakeStore) -> Result<Vec<String>, CompactError> {
    let loc = lake.location()?;
    let tables = Tables::new(loc.clone());
    let days = loc.block_on(days_of(&tables)).map_err(io_err)??;
    Ok(days.into_keys().collect())
}

fn io_err(e: std::io::Error) -> CompactError {
    CompactError::Io {
        path: "lake".into(),
        source: e,
    }
}

/// Compacts the days in `days` (all when `None`), then brings `objects` up to date.
pub fn compact(
    lake: &dyn LakeStore,
    days: Option<&[String]>,
    opts: &CompactOptions,
) -> Result<Vec<PartitionReport>, CompactError> {
    let loc = lake.location()?;
    let tables = Tables::new(loc.clone());
    loc.block_on(tables.ensure()).map_err(io_err)??;
    let all = loc.block_on(days_of(&tables)).map_err(io_err)??;
    let mut out = Vec::new();
    for (day, files) in all {
        if days.is_some_and(|d| !d.contains(&day)) {
            continue;
        }
        out.push(compact_day(lake, &tables, &day, &files, opts)?);
    }
    loc.block_on(tables.sync_objects()).map_err(io_err)??;
    Ok(out)
}

/// Compacts one day's files (as listed by the version read).
fn compact_day(
    lake: &dyn LakeStore,
    tables: &Tables,
    day: &str,
    files: &[LiveFile],
    opts: &CompactOptions,
) -> Result<PartitionReport, CompactError> {
    let mut report = PartitionReport {
        partition: day.to_owned(),
        ..Default::default()
    };
    if files.len() < opts.min_files.max(1) {
        return Ok(report);
    }
    let dir = partition_dir(PARTITION_COLUMN, Some(day));
    let run_id = {
        let mut ids = String::new();
        for f in files {
            ids.push_str(&f.path);
            ids.push(';');
        }
        format!("{:016x}", fnv1a64(ids.as_bytes()))
    };
    let props = Arc::new(compacted_writer_properties());
    let mut seen: HashSet<u128> = HashSet::new();
    let mut outputs: Vec<Output> = Vec::new();
    let mut current: Option<Output> = None;
    let mut writer: Option<ArrowWriter<File>> = None;
    let staging = lake.staging_dir().to_path_buf();
    let result = (|| -> Result<(), CompactError> {
        for f in files {
            let rel = format!("{TABLE}/{}", f.path);
            let local = staging.join(format!("compact-in-{run_id}-{}.tmp", report.files_in));
            lake.fetch(&rel, &local)?;
            let file = File::open(&local).map_err(|source| CompactError::Io {
                path: local.display().to_string(),
                source,
            })?;
            let _ = std::fs::remove_file(&local); // the open handle keeps it readable
            let pq = |source| CompactError::Parquet {
                path: rel.clone(),
                source,
            };
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(pq)?
                .with_batch_size(8192)
                .build()
                .map_err(pq)?;
            report.files_in += 1;
            report.bytes_in += f.size;
            for batch in reader {
                let arrow_err = |source| CompactError::Arrow {
                    path: rel.clone(),
                    source,
                };
                let batch = batch.map_err(arrow_err)?;
                // Same columns as the lake's schema, or a clear error naming the file.
                let batch = arrow::record_batch::RecordBatch::try_new(
                    crate::schema::schema(),
                    batch.columns().to_vec(),
                )
                .map_err(arrow_err)?;
                report.rows_in += batch.num_rows() as u64;
                let ids = batch
                    .column_by_name("event_id")
                    .map(|c| c.as_string::<i32>().clone());
                let mut keep = BooleanBuilder::with_capacity(batch.num_rows());
                for i in 0..batch.num_rows() {
                    let id = ids.as_ref().filter(|c| c.is_valid(i)).map(|c| c.value(i));
                    keep.append_value(id.is_none_or(|id| seen.insert(id_hash(id))));
                }
                let batch = arrow::compute::filter_record_batch(&batch, &keep.finish())
                    .map_err(arrow_err)?;
                report.rows_out += batch.num_rows() as u64;
                if batch.num_rows() == 0 {
                    continue;
                }
                if writer.is_none() {
                    let path = staging.join(format!("compact-{run_id}-{}.tmp", outputs.len()));
                    let out = File::create(&path).map_err(|source| CompactError::Io {
                        path: path.display().to_string(),
                        source,
                    })?;
                    let w = ArrowWriter::try_new_with_options(
                        out,
                        crate::schema::schema(),
                        crate::lake::arrow_writer_options(&props),
                    )
                    .map_err(|source| CompactError::Parquet {
                        path: path.display().to_string(),
                        source,
                    })?;
                    writer = Some(w);
                    current = Some(Output {
                        path,
                        rows: 0,
                        time_range: None,
                    });
                }
                if let (Some(out), Some(w)) = (current.as_mut(), writer.as_mut()) {
                    w.write(&batch).map_err(|source| CompactError::Parquet {
                        path: out.path.display().to_string(),
                        source,
                    })?;
                    out.rows += batch.num_rows() as u64;
                    out.time_range = crate::lake::widen_time_range(out.time_range, &batch);
                    if w.bytes_written() as u64 + w.in_progress_size() as u64
                        >= opts.target_file_bytes
                    {
                        finish_output(current.take(), writer.take(), &mut outputs)?;
                    }
                }
            }
        }
        finish_output(current.take(), writer.take(), &mut outputs)
    })();
    report.duplicates_dropped = report.rows_in - report.rows_out;
    if let Err(e) = result {
        drop(writer);
        for o in outputs.iter().chain(current.as_ref()) {
            let _ = std::fs::remove_file(&o.path);
        }
        return Err(e);
    }
    // Uploaded one by one as they finish (Lambda's /tmp holds one at a time at most).
    let mut added = Vec::new();
    let mut upload = outputs.into_iter();
    while let Some(out) = upload.next() {
        let name = format!("{dir}/{}", part_name(out.rows as i64));
        let size = std::fs::metadata(&out.path).map(|m| m.len()).unwrap_or(0);
        if let Err(e) = lake.publish(&out.path, &format!("{TABLE}/{name}")) {
            let _ = std::fs::remove_file(&out.path);
            upload.for_each(|o| {
                let _ = std::fs::remove_file(o.path);
            });
            return Err(e.into());
        }
        report.files_out += 1;
        report.bytes_out += size;
        added.push(NewFile {
            path: name,
            partition: Some(day.to_owned()),
            size,
            rows: out.rows,
            time_range: out.time_range,
        });
    }
    let loc = tables.location();
    report.version = loc
        .block_on(tables.replace_files(
            TABLE,
            PARTITION_COLUMN,
            files,
            &added,
            opts.target_file_bytes as i64,
        ))
        .map_err(io_err)??;
    if report.version.is_none() {
        // Another compaction of this day won: our outputs are never referenced.
        report.files_out = 0;
        report.bytes_out = 0;
    }
    Ok(report)
}

/// An output file being written or finished.
struct Output {
    path: std::path::PathBuf,
    rows: u64,
    time_range: Option<(i64, i64)>,
}

/// Closes an output being written (if any) and records it.
fn finish_output(
    current: Option<Output>,
    writer: Option<ArrowWriter<File>>,
    outputs: &mut Vec<Output>,
) -> Result<(), CompactError> {
    let (Some(out), Some(w)) = (current, writer) else {
        return Ok(());
    };
    w.close().map_err(|source| CompactError::Parquet {
        path: out.path.display().to_string(),
        source,
    })?;
    outputs.push(out);
    Ok(())
}

/// 128 bits of an event id: collisions (which would drop a real event) are out of reach.
fn id_hash(id: &str) -> u128 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let a = fnv1a64(id.as_bytes());
    let b = BuildHasherDefault::<DefaultHasher>::default().hash_one(id);
    (u128::from(a) << 64) | u128::from(b)
}

/// What a vacuum did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VacuumReport {
    /// Files deleted (or, in a dry run, that would be), relative to the lake.
    pub files: Vec<String>,
    pub dry_run: bool,
}

/// Deletes the files of both tables that no version within `retain` references.
pub fn vacuum(
    lake: &dyn LakeStore,
    retain: chrono::Duration,
    dry_run: bool,
) -> Result<VacuumReport, CompactError> {
    let loc = lake.location()?;
    let tables = Tables::new(loc.clone());
    let files = loc
        .block_on(tables.vacuum(retain, dry_run))
        .map_err(io_err)??;
    Ok(VacuumReport { files, dry_run })
}
