//! The lake: two Delta Lake tables, rejected records, and where files are written.
//!
//! ```text
//! <lake>/kms_events/_delta_log/                             the events table's log
//! <lake>/kms_events/event_date=YYYY-MM-DD/part-*.parquet    its data files
//! <lake>/objects/_delta_log/, object_date=YYYY-MM-DD/       one row per ingested source object
//! <lake>/rejects/<object-stem>-<hash>.json                  what could not be used, and why
//! <lake>/.staging/                                          files being written
//! ```
//!
//! Data files are written under `.staging/`, published whole by rename (or upload) and
//! then committed to the table's log ([`table`]): a reader sees a file only once a commit
//! names it. A rejects file's name derives from its object (for CloudTrail objects from
//! the key from `AWSLogs/` on, so a local copy and the S3 original map to the same file).

#[cfg(feature = "query")]
pub mod compact;
#[cfg(feature = "query")]
pub mod convert;
pub mod pages;
#[cfg(feature = "query")]
pub mod table;
#[cfg(feature = "query")]
pub mod trail;

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowSchemaConverter;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use parquet::schema::types::{ColumnPath, SchemaDescriptor};

use crate::schema::TABLE;

/// Errors writing to the lake.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing Parquet {path}: {source}")]
    Parquet {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("lake storage {uri}: {source}")]
    Store {
        uri: String,
        #[source]
        source: std::io::Error,
    },
    #[error("lake {uri}: an S3 lake needs an AWS configuration")]
    NoAwsConfig { uri: String },
}

impl LakeError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        LakeError::Io {
            op,
            path: path.display().to_string(),
            source,
        }
    }
}

/// Where lake files end up. Files are always written locally first (under
/// [`LakeStore::staging_dir`]) and then published whole.
pub trait LakeStore: Send + Sync + std::fmt::Debug {
    /// The lake's location as users write it (a directory or `s3://bucket/prefix`).
    fn uri(&self) -> String;
    /// A local directory for files being written.
    fn staging_dir(&self) -> &Path;
    /// Publishes a finished staged file at `rel` (a `/`-separated path inside the lake),
    /// atomically replacing any file already there. The staged file is consumed.
    fn publish(&self, staged: &Path, rel: &str) -> Result<(), LakeError>;
    /// Reads a small file (state, manifests) whole; `None` when it does not exist.
    fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, LakeError>;
    /// Writes a small file whole, atomically replacing any file already there.
    fn write(&self, rel: &str, bytes: &[u8]) -> Result<(), LakeError> {
        let staged = staging_path_in(self.staging_dir(), "write");
        fs::write(&staged, bytes).map_err(|e| LakeError::io("writing", &staged, e))?;
        self.publish(&staged, rel).inspect_err(|_| {
            let _ = fs::remove_file(&staged);
        })
    }
    /// The files under `prefix` (a `/`-separated directory inside the lake), recursively,
    /// sorted by path.
    fn list(&self, prefix: &str) -> Result<Vec<LakeFile>, LakeError>;
    /// Downloads (or copies) a lake file to a local path.
    fn fetch(&self, rel: &str, local: &Path) -> Result<(), LakeError>;
    /// Deletes a file; deleting a file that does not exist is not an error.
    fn delete(&self, rel: &str) -> Result<(), LakeError>;
    /// Where the lake's Delta tables are ([`table`]).
    #[cfg(feature = "query")]
    fn location(&self) -> Result<table::Location, table::TableError>;
}

/// A file in the lake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeFile {
    /// `/`-separated path inside the lake.
    pub rel: String,
    pub size: u64,
}

/// A lake in a local directory.
#[derive(Debug, Clone)]
pub struct LocalLake {
    root: PathBuf,
    staging: PathBuf,
}

impl LocalLake {
    /// Opens (creating if needed) a lake directory.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, LakeError> {
        let root = root.into();
        let staging = root.join(".staging");
        fs::create_dir_all(&staging).map_err(|e| LakeError::io("creating", &staging, e))?;
        Ok(LocalLake { root, staging })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of the `kms_events` table.
    pub fn events_dir(&self) -> PathBuf {
        self.root.join(TABLE)
    }
}

impl LakeStore for LocalLake {
    fn uri(&self) -> String {
        self.root.display().to_string()
    }

    fn staging_dir(&self) -> &Path {
        &self.staging
    }

    fn publish(&self, staged: &Path, rel: &str) -> Result<(), LakeError> {
        let dest = self.root.join(rel);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| LakeError::io("creating", parent, e))?;
        }
        fs::rename(staged, &dest).map_err(|e| LakeError::io("publishing", &dest, e))
    }

    fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, LakeError> {
        let path = self.root.join(rel);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LakeError::io("reading", &path, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<LakeFile>, LakeError> {
        let dir = self.root.join(prefix);
        if !dir.exists() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for entry in walkdir::WalkDir::new(&dir).sort_by_file_name() {
            let entry = entry.map_err(|e| LakeError::Io {
                op: "listing",
                path: dir.display().to_string(),
                source: e.into(),
            })?;
            if !entry.file_type().is_file() {
                continue;
            }
            let Ok(rel) = entry.path().strip_prefix(&self.root) else {
                continue;
            };
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            out.push(LakeFile { rel, size });
        }
        out.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok(out)
    }

    fn fetch(&self, rel: &str, local: &Path) -> Result<(), LakeError> {
        let path = self.root.join(rel);
        fs::copy(&path, local)
            .map(|_| ())
            .map_err(|e| LakeError::io("copying", &path, e))
    }

    #[cfg(feature = "query")]
    fn location(&self) -> Result<table::Location, table::TableError> {
        table::Location::local(&self.root)
    }

    fn delete(&self, rel: &str) -> Result<(), LakeError> {
        let path = self.root.join(rel);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LakeError::io("deleting", &path, e)),
        }
    }
}

/// The stable base name of the lake files of one source object: a readable stem plus a
/// hash of the object's identity.
pub fn object_file_stem(source_uri: &str) -> String {
    file_stem_of_identity(&crate::ingest::object_identity(source_uri).0)
}

/// [`object_file_stem`] of an object whose identity ([`crate::ingest::object_identity`])
/// is known.
pub(crate) fn file_stem_of_identity(identity: &str) -> String {
    let file = identity.rsplit(['/', '\\']).next().unwrap_or(identity);
    let stem = file
        .strip_suffix(".gz")
        .unwrap_or(file)
        .trim_end_matches(".json")
        .trim_end_matches(".jsonl")
        .trim_end_matches(".ndjson");
    let mut clean: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(96)
        .collect();
    if clean.is_empty() {
        clean.push_str("object");
    }
    format!("{clean}-{:016x}", fnv1a64(identity.as_bytes()))
}

/// FNV-1a, 64 bit: stable across builds and platforms (file names depend on it).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Parquet settings of the files ingest writes, one per worker and day of a commit (or per
/// day of an object too large to wait in memory): zstd where it pays, dictionaries for the
/// low-cardinality columns only, `event_time` statistics for pruning, bounded row groups
/// for bounded memory.
///
/// zstd goes on [`INGEST_ZSTD_COLUMNS`] only: measured with `scripts/bench` when each
/// object had a file of its own, zstd on every non-dictionary column made ingest 1.2x slower
/// for 3% smaller files. Compaction rewrites the files with zstd on every column
/// ([`compacted_writer_properties`]).
pub(crate) fn writer_properties() -> WriterProperties {
    let mut b = lake_properties(Compression::UNCOMPRESSED)
        // Ingest files live until compaction, whose files carry the page index readers
        // prune with.
        .set_offset_index_disabled(true)
        // Nor statistics beyond `event_time`'s: every ingest file of a day holds every
        // account, key and principal seen that day, so min/max prune nothing there, and
        // computing them compared every value written.
        .set_statistics_enabled(EnabledStatistics::None)
        .set_column_statistics_enabled(column_path("event_time"), EnabledStatistics::Chunk)
        .set_max_row_group_row_count(Some(128 * 1024))
        .set_max_row_group_bytes(Some(8 * 1024 * 1024))
        // A dictionary column's page keeps an 8-byte index per row until it is written,
        // and its few bytes per row never reach the size limit: with Parquet's default of
        // 20,000 rows a page, those indices were 12.8 MB of a 72-hour trail's 47 MB heap
        // peak (heaptrack), grown again for every page. With 2,048 rows the heap peaks at
        // 29 MB, `kms-audit ingest` takes 35-42% fewer page faults (`perf stat -e
        // page-faults`) for the same instructions, and files grow by 0.5%.
        .set_data_page_row_count_limit(2048);
    for col in INGEST_ZSTD_COLUMNS {
        b = b.set_column_compression(column_path(col), zstd());
    }
    b.build()
}

/// Options of every Parquet writer of the lake, which writes [`crate::schema::schema`]. The
/// Arrow schema is not embedded in the files: the Parquet schema already says everything
/// the lake's readers need (the table schema comes from the table's log), and when each
/// object had a file of its own the embedded copy (4.5 KB for 56 columns) was a quarter of
/// its bytes.
pub(crate) fn arrow_writer_options(props: &WriterProperties) -> ArrowWriterOptions {
    let options = ArrowWriterOptions::new()
        .with_properties(props.clone())
        .with_skip_arrow_metadata(true);
    match &*LAKE_PARQUET_SCHEMA {
        Some(schema) => options.with_parquet_schema(schema.clone()),
        // The writer converts the schema itself and reports why it cannot.
        None => options,
    }
}

/// The Parquet schema of [`crate::schema::schema`], converted once: converting it for every
/// file (some 60 types and descriptors) was 1.4% of ingest's instructions. The writer's
/// default conversion, so the files are the same.
static LAKE_PARQUET_SCHEMA: std::sync::LazyLock<Option<SchemaDescriptor>> =
    std::sync::LazyLock::new(|| {
        ArrowSchemaConverter::new()
            .convert(&crate::schema::schema())
            .ok()
    });

/// A Parquet writer of rows of [`crate::schema::schema`] with the settings of ingest's
/// files ([`writer_properties`]).
pub fn ingest_file_writer<W: std::io::Write + Send>(
    w: W,
) -> Result<pages::IngestWriter<W>, parquet::errors::ParquetError> {
    pages::IngestWriter::try_new(
        w,
        crate::schema::schema(),
        arrow_writer_options(&INGEST_PROPERTIES),
    )
}

/// [`writer_properties`], built once.
static INGEST_PROPERTIES: std::sync::LazyLock<WriterProperties> =
    std::sync::LazyLock::new(writer_properties);

/// The settings of compacted files: large, so zstd on every column costs little and saves
/// a third of the bytes of ingest's files.
#[cfg(feature = "query")]
pub(crate) fn compacted_writer_properties() -> WriterProperties {
    let mut b = lake_properties(zstd())
        .set_max_row_group_row_count(Some(512 * 1024))
        .set_max_row_group_bytes(Some(64 * 1024 * 1024));
    // Booleans and tiny integers are bit-packed already.
    for col in [
        "read_only",
        "management_event",
        "mfa_authenticated",
        "via_aws_service",
        "bypass_policy_lockout_safety_check",
        "pending_window_in_days",
    ] {
        b = b.set_column_compression(column_path(col), Compression::UNCOMPRESSED);
    }
    b.build()
}

/// Columns zstd-compressed in ingest's files: the ones where it at least halves the bytes
/// even in a small file (unique ids, ARNs, the request block and the encryption context's
/// values), and the source object: its dictionary holds every object's key, which share
/// long prefixes, and where objects carry few KMS events it is the third largest column
/// (13.3 bytes per event on a trail of 13 KMS events per object; zstd level 1 takes its
/// dictionary from 438 KB to 44 KB).
pub(crate) const INGEST_ZSTD_COLUMNS: &[&str] = &[
    "event_id",
    "request_id",
    "principal_arn",
    "principal_id",
    "access_key_id",
    "request_parameters",
    "encryption_context.entries.values",
    "source_object",
];

fn zstd() -> Compression {
    Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default())
}

/// A leaf column's path from its dotted name.
fn column_path(dotted: &str) -> ColumnPath {
    ColumnPath::new(dotted.split('.').map(str::to_owned).collect())
}

/// What every file of the lake shares: the default codec given, column-chunk statistics,
/// and which columns get neither statistics nor a dictionary.
fn lake_properties(compression: Compression) -> WriterPropertiesBuilder {
    let mut b = WriterProperties::builder()
        .set_compression(compression)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_created_by(format!("kms-audit {}", env!("CARGO_PKG_VERSION")));
    // Min/max of raw JSON and free text prune nothing and cost comparisons of the longest
    // values in the file; nor do those of random ids (UUIDs, request ids, session ids and
    // access keys span their whole range in any file) or of the source object (one value
    // per file, and the file name already says it).
    for col in [
        "request_parameters",
        "response_elements",
        "additional_event_data",
        "key_policy",
        "user_agent",
        "error_message",
        "event_id",
        "request_id",
        "shared_event_id",
        "principal_id",
        "access_key_id",
        "grant_id",
        "source_object",
        "encryption_context.entries.values",
        "destination_encryption_context.entries.values",
    ] {
        b = b.set_column_statistics_enabled(column_path(col), EnabledStatistics::None);
    }
    // Unique, or nearly so (in a generated day's file, event times, principals, session
    // ids and access keys each have a distinct value for every second row): a dictionary
    // would be built, hashing every value, only to be dropped when its page fills.
    for col in [
        "event_id",
        "event_time",
        "principal_arn",
        "principal_id",
        "access_key_id",
        "request_id",
        "shared_event_id",
        "request_parameters",
        "response_elements",
        "additional_event_data",
        "key_policy",
        "grant_id",
    ] {
        b = b.set_column_dictionary_enabled(column_path(col), false);
    }
    b
}

/// Bytes of encoded-but-unwritten row groups one object may buffer across its day files.
pub(crate) const WRITER_MEMORY_BUDGET: usize = 16 * 1024 * 1024;
/// Day files of one object that may hold an open row group at once.
pub(crate) const MAX_BUFFERING_DAY_FILES: usize = 2;
/// Day files a writer keeps open; the least recently written beyond it is finished (a
/// later row of its day starts another file). An open Parquet writer holds its encoders
/// and row-group metadata until closed: a 1 GB export spanning 90 days peaked at 80 MB
/// RSS with every day open and 4 buffering, 65 MB with 8 open and 2 buffering, 60 MB with
/// 4 and 2 (`KMS_AUDIT_BENCH_ONLY=large scripts/bench`). Objects of a few days, as
/// CloudTrail delivers them, never reach the cap.
pub(crate) const MAX_OPEN_DAY_FILES: usize = 4;

/// A file being written for one day.
struct DayFile {
    day: i32,
    staged: PathBuf,
    writer: pages::IngestWriter<File>,
    rows: usize,
    /// Least and greatest `event_time` written (microseconds).
    time_range: Option<(i64, i64)>,
    /// `DayWriters::writes` at this file's last write (for least-recently-written).
    last_write: u64,
}

/// Writes batches, split by event day, to staged files: one per day, whatever the number
/// of objects whose rows go in (an ingest worker writes all its objects of a commit through
/// one). [`DayWriters::finish`] closes them; [`Drop`] without it discards them.
pub(crate) struct DayWriters<'l> {
    lake: &'l dyn LakeStore,
    name: String,
    files: Vec<DayFile>,
    /// Files finished early to bound the open ones ([`MAX_OPEN_DAY_FILES`]).
    closed: Vec<StagedFile>,
    /// Files created so far (their staging names are unique).
    created: usize,
    writes: u64,
}

impl std::fmt::Debug for DayWriters<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DayWriters")
            .field("name", &self.name)
            .field("files", &self.files.len())
            .finish()
    }
}

/// A finished file in the staging directory, waiting to be published and committed.
#[derive(Debug)]
pub struct StagedFile {
    /// The event day of its rows (days since the epoch).
    pub day: i32,
    pub path: PathBuf,
    pub rows: usize,
    /// Least and greatest `event_time` of its rows (microseconds): the commit's statistics.
    pub time_range: Option<(i64, i64)>,
}

/// The least and greatest `event_time` of a batch of the lake's schema, widened by `range`.
pub fn widen_time_range(range: Option<(i64, i64)>, batch: &RecordBatch) -> Option<(i64, i64)> {
    use arrow::array::TimestampMicrosecondArray;
    let col = batch
        .column_by_name("event_time")?
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()?;
    let (lo, hi) = (arrow::compute::min(col), arrow::compute::max(col));
    match (range, lo, hi) {
        (Some((a, b)), Some(lo), Some(hi)) => Some((a.min(lo), b.max(hi))),
        (None, Some(lo), Some(hi)) => Some((lo, hi)),
        (r, _, _) => r,
    }
}

impl StagedFile {
    /// Deletes the staged file (after a failure).
    pub fn discard(self) {
        let _ = fs::remove_file(self.path);
    }
}

/// Closes a day file's writer; on failure the file is deleted.
fn close_day_file(f: DayFile) -> Result<StagedFile, LakeError> {
    let path = f.staged.display().to_string();
    match f.writer.close() {
        Ok(_) => Ok(StagedFile {
            day: f.day,
            path: f.staged,
            rows: f.rows,
            time_range: f.time_range,
        }),
        Err(source) => {
            let _ = fs::remove_file(&f.staged);
            Err(LakeError::Parquet { path, source })
        }
    }
}

impl<'l> DayWriters<'l> {
    pub fn new(lake: &'l dyn LakeStore, name: &str) -> Self {
        DayWriters {
            lake,
            name: name.to_owned(),
            files: Vec::new(),
            closed: Vec::new(),
            created: 0,
            writes: 0,
        }
    }

    /// Writes a batch whose rows fall on the given days (one entry per row).
    pub fn write(&mut self, batch: &RecordBatch, days: &[i32]) -> Result<(), LakeError> {
        debug_assert_eq!(batch.num_rows(), days.len());
        // Objects come in the order of their dates, so a batch usually holds each of its
        // days (most often just one) as one run of rows: slices, not copies.
        let mut runs: Vec<(i32, usize, usize)> = Vec::new();
        for (i, &d) in days.iter().enumerate() {
            match runs.last_mut() {
                Some((day, _, len)) if *day == d => *len += 1,
                _ => runs.push((d, i, 1)),
            }
        }
        let mut distinct: Vec<i32> = runs.iter().map(|r| r.0).collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() == runs.len() {
            for (day, offset, len) in runs {
                self.write_day(day, &batch.slice(offset, len))?;
            }
            return Ok(());
        }
        for day in distinct {
            let mask: arrow::array::BooleanArray = days.iter().map(|&d| Some(d == day)).collect();
            let part = arrow::compute::filter_record_batch(batch, &mask).map_err(|e| {
                LakeError::Parquet {
                    path: self.name.clone(),
                    source: e.into(),
                }
            })?;
            self.write_day(day, &part)?;
        }
        Ok(())
    }

    fn write_day(&mut self, day: i32, batch: &RecordBatch) -> Result<(), LakeError> {
        let idx = match self.files.iter().position(|f| f.day == day) {
            Some(i) => i,
            None => {
                if self.files.len() >= MAX_OPEN_DAY_FILES {
                    self.close_least_recent()?;
                }
                self.created += 1;
                let staged =
                    staging_path(self.lake, &format!("{}.{day}.{}", self.name, self.created));
                let file =
                    File::create(&staged).map_err(|e| LakeError::io("creating", &staged, e))?;
                // Batches have the lake schema (the builder's), which the options name.
                let writer = ingest_file_writer(file).map_err(|source| LakeError::Parquet {
                    path: staged.display().to_string(),
                    source,
                })?;
                self.files.push(DayFile {
                    day,
                    staged,
                    writer,
                    rows: 0,
                    time_range: None,
                    last_write: 0,
                });
                self.files.len() - 1
            }
        };
        let f = &mut self.files[idx];
        f.writer.write(batch).map_err(|source| LakeError::Parquet {
            path: f.staged.display().to_string(),
            source,
        })?;
        f.rows += batch.num_rows();
        f.time_range = widen_time_range(f.time_range, batch);
        self.writes += 1;
        f.last_write = self.writes;
        self.enforce_memory_budget()
    }

    /// Bounds what the day files buffer: rows spanning many days (an export, a backfill)
    /// would otherwise hold one open row group per day, each with 56 column encoders. At
    /// most [`MAX_BUFFERING_DAY_FILES`] files keep a row group open (the least recently
    /// written is flushed), and their buffers stay under [`WRITER_MEMORY_BUDGET`] (the
    /// largest is flushed first).
    fn enforce_memory_budget(&mut self) -> Result<(), LakeError> {
        loop {
            let buffering: Vec<usize> = (0..self.files.len())
                .filter(|&i| self.files[i].writer.in_progress_rows() > 0)
                .collect();
            if buffering.len() <= MAX_BUFFERING_DAY_FILES {
                break;
            }
            let oldest = buffering
                .into_iter()
                .min_by_key(|&i| self.files[i].last_write)
                .unwrap_or(0);
            self.flush_file(oldest)?;
        }
        let total: usize = self.files.iter().map(|f| f.writer.in_progress_size()).sum();
        if total <= WRITER_MEMORY_BUDGET {
            return Ok(());
        }
        let mut order: Vec<(usize, usize)> = self
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.writer.in_progress_size(), i))
            .collect();
        order.sort_unstable_by(|a, b| b.cmp(a));
        let mut remaining = total;
        for (size, i) in order {
            if remaining <= WRITER_MEMORY_BUDGET / 2 {
                break;
            }
            self.flush_file(i)?;
            remaining -= size;
        }
        Ok(())
    }

    /// Finishes the least recently written open file.
    fn close_least_recent(&mut self) -> Result<(), LakeError> {
        let Some(i) = (0..self.files.len()).min_by_key(|&i| self.files[i].last_write) else {
            return Ok(());
        };
        let f = self.files.swap_remove(i);
        let staged = close_day_file(f)?;
        self.closed.push(staged);
        Ok(())
    }

    fn flush_file(&mut self, i: usize) -> Result<(), LakeError> {
        let f = &mut self.files[i];
        f.writer.flush().map_err(|source| LakeError::Parquet {
            path: f.staged.display().to_string(),
            source,
        })
    }

    /// Finishes every file. On failure none is kept.
    pub fn finish(mut self) -> Result<Vec<StagedFile>, LakeError> {
        let files = std::mem::take(&mut self.files);
        let mut finished = std::mem::take(&mut self.closed);
        let mut failure = None;
        for f in files {
            match close_day_file(f) {
                Ok(staged) => finished.push(staged),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(err) = failure {
            finished.into_iter().for_each(StagedFile::discard);
            return Err(err);
        }
        Ok(finished)
    }
}

impl Drop for DayWriters<'_> {
    fn drop(&mut self) {
        for f in self.files.drain(..) {
            drop(f.writer);
            let _ = fs::remove_file(&f.staged);
        }
        self.closed.drain(..).for_each(StagedFile::discard);
    }
}

/// A fresh path in the lake's staging directory for a file about `name`: unique per process
/// and call (threads write different objects, but the same object may be ingested twice
/// concurrently).
pub(crate) fn staging_path(lake: &dyn LakeStore, name: &str) -> PathBuf {
    staging_path_in(lake.staging_dir(), name)
}

fn staging_path_in(dir: &Path, name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{name}.{}.{n}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_stable_and_copy_independent() {
        let key = "AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/01/111122223333_CloudTrail_us-east-1_20261101T1205Z_AbCdEfGh12345678.json.gz";
        let a = object_file_stem(&format!("s3://bucket/pfx/{key}"));
        let b = object_file_stem(&format!("/home/me/copy/{key}"));
        assert_eq!(a, b);
        assert!(
            a.starts_with("111122223333_CloudTrail_us-east-1_20261101T1205Z_AbCdEfGh12345678-")
        );
        assert_ne!(object_file_stem("/a/x.json"), object_file_stem("/b/x.json"));
        assert!(object_file_stem("/a/we ird/név?.json").starts_with("n_v_-"));
        // Pinned: changing the hash would duplicate every lake on re-ingest.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    /// Rows of many days, in day order (an export) and interleaved (a backfill): no more
    /// than [`MAX_OPEN_DAY_FILES`] writers stay open, every row lands in a file of its own
    /// day exactly once, and days in order get one file each.
    #[test]
    fn day_writers_bound_their_open_files_and_keep_every_row() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = LocalLake::open(dir.path()).expect("lake");
        let day_micros = 86_400_000_000i64;
        let batch_of = |days: &[i64]| {
            let mut b = crate::ingest::batch::EventBatchBuilder::with_capacity(days.len());
            for (i, d) in days.iter().enumerate() {
                b.append(&crate::ingest::record::KmsEvent {
                    event_id: format!("e{d}-{i}").into(),
                    event_name: "Decrypt".into(),
                    event_time: 20_000 * day_micros + d * day_micros + i as i64,
                    source_object: "x",
                    ..Default::default()
                });
            }
            let days = b.days().to_vec();
            (b.finish().expect("batch"), days)
        };
        // 12 days in order, then 3 batches each touching the same 12 days.
        let mut w = DayWriters::new(&lake, "x");
        for d in 0..12 {
            let (batch, days) = batch_of(&[d, d, d]);
            w.write(&batch, &days).expect("write");
            assert!(w.files.len() <= MAX_OPEN_DAY_FILES);
        }
        let in_order = w.finish().expect("finish");
        assert_eq!(in_order.len(), 12, "one file per day");
        let mut w = DayWriters::new(&lake, "y");
        for _ in 0..3 {
            let days: Vec<i64> = (0..12).collect();
            let (batch, days) = batch_of(&days);
            w.write(&batch, &days).expect("write");
            assert!(w.files.len() <= MAX_OPEN_DAY_FILES);
        }
        let interleaved = w.finish().expect("finish");
        // Days in runs (sliced) and days mixed within a batch (filtered).
        let mut w = DayWriters::new(&lake, "z");
        for days in [&[0, 0, 1, 1, 1][..], &[2, 1, 2, 1, 0]] {
            let (batch, days) = batch_of(days);
            w.write(&batch, &days).expect("write");
        }
        let mixed = w.finish().expect("finish");
        assert_eq!(mixed.len(), 3, "one file per day");
        for (files, rows) in [(&in_order, 36), (&interleaved, 36), (&mixed, 10)] {
            assert_eq!(files.iter().map(|f| f.rows).sum::<usize>(), rows);
            for f in files {
                let (lo, hi) = f.time_range.expect("range");
                assert_eq!(lo.div_euclid(day_micros), hi.div_euclid(day_micros));
                assert_eq!(i64::from(f.day), lo.div_euclid(day_micros));
            }
        }
        let paths: std::collections::BTreeSet<_> = in_order
            .iter()
            .chain(&interleaved)
            .map(|f| &f.path)
            .collect();
        assert_eq!(paths.len(), in_order.len() + interleaved.len());
    }

    /// What third-party readers of an ingest file see: exactly the lake's column types from
    /// the Parquet schema alone (no embedded Arrow schema), zstd only on the chosen columns.
    #[test]
    fn ingest_files_read_back_with_the_lake_schema() {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = LocalLake::open(dir.path()).expect("lake");
        let mut b = crate::ingest::batch::EventBatchBuilder::with_capacity(2);
        b.append(&crate::ingest::record::KmsEvent {
            event_id: "e1".into(),
            event_name: "Decrypt".into(),
            event_time: 1_700_000_000_000_000,
            source_object: "x",
            encryption_context: Some(vec![("k".into(), Some("v".into()))]),
            grant_operations: Some(vec!["Decrypt".into()]),
            ..Default::default()
        });
        let days = b.days().to_vec();
        let batch = b.finish().expect("batch");
        let mut w = DayWriters::new(&lake, "x");
        w.write(&batch, &days).expect("write");
        let staged = w.finish().expect("finish");
        let path = staged[0].path.clone();
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).expect("open"))
            .expect("read");
        let meta = reader.metadata().file_metadata();
        assert!(
            meta.key_value_metadata()
                .is_none_or(|kv| kv.iter().all(|k| k.key != "ARROW:schema"))
        );
        let lake_schema = crate::schema::schema();
        // The schema converted once is the one the writer would convert for each file.
        let converted = ArrowSchemaConverter::new()
            .convert(&lake_schema)
            .expect("convert");
        assert_eq!(
            reader
                .metadata()
                .file_metadata()
                .schema_descr()
                .root_schema(),
            converted.root_schema()
        );
        let file_schema = reader.schema();
        assert_eq!(file_schema.fields().len(), lake_schema.fields().len());
        for (want, got) in lake_schema.fields().iter().zip(file_schema.fields()) {
            assert_eq!(want.name(), got.name());
            assert_eq!(want.data_type(), got.data_type(), "{}", want.name());
        }
        let rg = reader.metadata().row_group(0);
        for col in rg.columns() {
            let path = col.column_path().string();
            let zstd = matches!(col.compression(), Compression::ZSTD(_));
            let want = INGEST_ZSTD_COLUMNS.contains(&path.as_str());
            assert_eq!(zstd, want, "{path}");
        }
        let rows: usize = reader
            .build()
            .expect("rows")
            .map(|b| b.expect("batch").num_rows())
            .sum();
        assert_eq!(rows, 1);
    }
}
