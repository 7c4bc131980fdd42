//! Ingestion: source objects → records → KMS events → the lake, with exact accounting.
//!
//! For every object, `records == kms_events + skipped + rejected`. An object that cannot be
//! read (not gzip, truncated, invalid JSON envelope) is an [`ObjectError`] naming the object
//! and the reason; it publishes nothing (its staged files are discarded) and does not stop
//! the other objects. Rejected records are written, raw, with their reason under
//! `<lake>/rejects/` so nothing is lost.
//!
//! The stages, in the order an object meets them: [`object_name`] (is this key a log?),
//! [`reader`] (gunzip and split into records), [`record`] (is it KMS? parse it into a
//! [`record::KmsEvent`]), [`batch`] (into Arrow), then [`crate::lake`]. This module holds
//! the orchestration: sources, [`ingest_object`], [`ingest_all`] and their counters.

pub mod batch;
mod gunzip;
pub(crate) mod lenient;
pub mod object_name;
pub mod reader;
pub mod record;
pub mod trail;

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::ingest::batch::{EventBatchBuilder, with_builder};
use crate::ingest::object_name::{ObjectKind, ObjectName, SkipReason, classify_name};
use crate::ingest::reader::{Item, ReadError, RecordReader, decompressing};
use crate::ingest::record::{Outcome, RejectReason, classify};
use arrow::record_batch::RecordBatch;

use crate::lake::{DayWriters, LakeError, LakeStore, StagedFile};

/// Rows per Arrow batch (and the unit of memory of the ingest path).
pub const BATCH_ROWS: usize = 4096;
/// Rows a thread's batch builder is sized for up front: most CloudTrail objects hold a few
/// hundred KMS records. The builder grows as needed and keeps its capacity from object to
/// object.
pub const INITIAL_ROWS: usize = 256;
/// Rows a worker gathers, across objects, before writing them to its files. 256, 1,024
/// and 4,096 took the same time end to end (`KMS_AUDIT_BENCH_ONLY=e2e scripts/bench`, 3
/// runs of each, 2026-12-01); 4,096 raised the peak RSS from 92 to 119 MB, 1,024 did not.
pub const WORKER_BATCH_ROWS: usize = 1024;
/// Rejected examples kept in an object's report (all of them go to the rejects file).
pub const REJECT_EXAMPLES: usize = 5;

/// An object to ingest: anything that can be opened as a byte stream.
pub trait SourceObject: Send + Sync {
    /// The object's location as users write it (a path or `s3://bucket/key`).
    fn uri(&self) -> &str;
    /// Its size in bytes, when known before reading.
    fn size(&self) -> Option<u64>;
    /// Opens the raw (possibly compressed) bytes.
    fn open(&self) -> io::Result<Box<dyn Read + Send>>;
    /// Its S3 ETag, when known.
    fn etag(&self) -> Option<String> {
        None
    }
    /// The hex signature CloudTrail gave a digest (its S3 metadata `signature`, or a
    /// `<digest>.signature` file beside a local copy), once the object was opened.
    fn signature(&self) -> Option<String> {
        None
    }
}

impl<T: SourceObject + ?Sized> SourceObject for Box<T> {
    fn uri(&self) -> &str {
        (**self).uri()
    }
    fn size(&self) -> Option<u64> {
        (**self).size()
    }
    fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        (**self).open()
    }
    fn etag(&self) -> Option<String> {
        (**self).etag()
    }
    fn signature(&self) -> Option<String> {
        (**self).signature()
    }
}

impl<T: SourceObject + ?Sized> SourceObject for &T {
    fn uri(&self) -> &str {
        (**self).uri()
    }
    fn size(&self) -> Option<u64> {
        (**self).size()
    }
    fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        (**self).open()
    }
    fn etag(&self) -> Option<String> {
        (**self).etag()
    }
    fn signature(&self) -> Option<String> {
        (**self).signature()
    }
}

/// A local file.
#[derive(Debug, Clone)]
pub struct LocalFile {
    path: PathBuf,
    uri: String,
    size: Option<u64>,
}

impl LocalFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        // Canonical, so `./logs/x` and `/abs/logs/x` are the same object.
        let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        let size = std::fs::metadata(&path).ok().map(|m| m.len());
        LocalFile {
            uri: canonical.display().to_string(),
            path,
            size,
        }
    }
    /// A file found under a directory whose canonical path is already known: `path` is
    /// `root` joined with `relative`, and no component of `relative` is a symbolic link
    /// (a directory walk that follows none), so the canonical path is `canonical_root`
    /// joined with it. Canonicalizing each file instead resolves every component of its
    /// path again, one `readlink` each: 70 ms of CPU for the 3,456 files of the benchmark
    /// corpus, 2.7% of ingesting them.
    fn under(path: PathBuf, canonical_root: &Path, relative: &Path, size: Option<u64>) -> Self {
        LocalFile {
            uri: canonical_root.join(relative).display().to_string(),
            path,
            size,
        }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl SourceObject for LocalFile {
    fn uri(&self) -> &str {
        &self.uri
    }
    fn size(&self) -> Option<u64> {
        self.size
    }
    fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(File::open(&self.path)?))
    }
    fn signature(&self) -> Option<String> {
        let mut sidecar = self.path.clone().into_os_string();
        sidecar.push(".signature");
        // Hex, at most a few KB; anything else is not a signature file.
        let meta = std::fs::metadata(&sidecar).ok()?;
        if meta.len() > 16 << 10 {
            return None;
        }
        let text = std::fs::read_to_string(&sidecar).ok()?;
        Some(text.trim().to_ascii_lowercase())
    }
}

/// Per-object (and summed, per-run) counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub records: u64,
    pub kms_events: u64,
    pub skipped: u64,
    pub rejected: u64,
    /// Bytes read from the source (compressed size).
    pub bytes_in: u64,
    /// Bytes after decompression.
    pub bytes_decompressed: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.records += o.records;
        self.kms_events += o.kms_events;
        self.skipped += o.skipped;
        self.rejected += o.rejected;
        self.bytes_in += o.bytes_in;
        self.bytes_decompressed += o.bytes_decompressed;
    }

    /// The invariant every run must satisfy.
    pub fn reconciles(&self) -> bool {
        self.records == self.kms_events + self.skipped + self.rejected
    }
}

/// What ingesting one object did.
#[derive(Debug, Clone, Default)]
pub struct ObjectReport {
    pub uri: String,
    /// Its identity in the `objects` table ([`object_identity`]).
    pub object: String,
    /// The date in its CloudTrail key.
    pub object_date: Option<String>,
    /// Bytes as stored.
    pub size: u64,
    pub etag: Option<String>,
    /// Hex SHA-256 of the decompressed bytes.
    pub sha256: String,
    pub counts: Counts,
    /// The `kms_events` version that committed its rows.
    pub version: Option<i64>,
    /// The first few rejected records' reasons.
    pub reject_examples: Vec<RejectReason>,
    /// Where the rejected records were written, if any were.
    pub rejects_file: Option<String>,
    pub seconds: f64,
}

/// Why an object failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectErrorKind {
    #[error("cannot open: {0}")]
    Open(#[source] io::Error),
    #[error("{0}")]
    Read(#[from] ReadError),
    #[error("{0}")]
    Lake(#[from] LakeError),
    #[error("building Arrow batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Over one of the [`Limits`].
    #[error("refused: {0}")]
    Limit(String),
    /// Not read: the run's deadline came first (a Lambda about to time out).
    #[error("not read: the run's deadline was reached")]
    Deadline,
    /// The commit of the object's rows failed (with the other objects of its commit).
    #[error("committing: {0}")]
    Commit(std::sync::Arc<dyn std::error::Error + Send + Sync>),
}

/// An object that could not be ingested. Nothing of it was published.
#[derive(Debug, thiserror::Error)]
#[error("{object}: {kind}")]
pub struct ObjectError {
    pub object: String,
    #[source]
    pub kind: ObjectErrorKind,
    /// Records read before the failure (none of them were published).
    pub records_before_failure: u64,
}

impl ObjectError {
    /// Whether trying again could help (I/O trouble reaching the object or the lake), as
    /// opposed to content that will never parse.
    pub fn retryable(&self) -> bool {
        match &self.kind {
            ObjectErrorKind::Open(e) => e.kind() != io::ErrorKind::NotFound,
            ObjectErrorKind::Read(ReadError::Io { source, .. }) => !matches!(
                source.kind(),
                io::ErrorKind::InvalidData
                    | io::ErrorKind::InvalidInput
                    | io::ErrorKind::UnexpectedEof
            ),
            ObjectErrorKind::Read(_) => false,
            ObjectErrorKind::Lake(_) => true,
            ObjectErrorKind::Arrow(_) => false,
            ObjectErrorKind::Limit(_) => false,
            ObjectErrorKind::Deadline => true,
            ObjectErrorKind::Commit(_) => true,
        }
    }
}

/// Counts bytes pulled through a reader.
struct Counting<R> {
    inner: R,
    n: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The stem of the files named after an object, made on first use: only its rejects and
/// the rows of an object too large to wait in memory need one, and making it for every
/// object cost some 7,000 instructions each (callgrind).
struct Stem<'a> {
    identity: &'a str,
    stem: std::cell::OnceCell<String>,
}

impl<'a> Stem<'a> {
    fn new(identity: &'a str) -> Self {
        Stem {
            identity,
            stem: std::cell::OnceCell::new(),
        }
    }

    fn get(&self) -> &str {
        self.stem
            .get_or_init(|| crate::lake::file_stem_of_identity(self.identity))
    }
}

/// Writes rejected records, lazily, to `<lake>/rejects/<stem>.json` (NDJSON: one line per
/// rejected record with its reason and raw text).
struct RejectSink<'l, 's> {
    lake: &'l dyn LakeStore,
    stem: &'s Stem<'s>,
    object: String,
    file: Option<(PathBuf, BufWriter<File>)>,
}

impl RejectSink<'_, '_> {
    fn write(&mut self, index: u64, reason: &RejectReason, raw: &[u8]) -> Result<(), LakeError> {
        if self.file.is_none() {
            let stem = self.stem.get();
            let path = crate::lake::staging_path(self.lake, &format!("{stem}.rejects"));
            let f = File::create(&path).map_err(|e| LakeError::io("creating", &path, e))?;
            self.file = Some((path, BufWriter::new(f)));
        }
        let Some((path, w)) = self.file.as_mut() else {
            return Ok(());
        };
        let line = serde_json::json!({
            "object": self.object,
            "record_index": index,
            "event_id": reason.event_id,
            "reason": reason.reason,
            "raw": String::from_utf8_lossy(raw),
        });
        serde_json::to_writer(&mut *w, &line)
            .map_err(|e| LakeError::io("writing", path, e.into()))?;
        w.write_all(b"\n")
            .map_err(|e| LakeError::io("writing", path, e))
    }

    fn commit(mut self) -> Result<Option<String>, LakeError> {
        let Some((path, mut w)) = self.file.take() else {
            return Ok(None);
        };
        w.flush().map_err(|e| LakeError::io("writing", &path, e))?;
        drop(w);
        let rel = format!("rejects/{}.json", self.stem.get());
        self.lake.publish(&path, &rel)?;
        Ok(Some(rel))
    }
}

impl Drop for RejectSink<'_, '_> {
    fn drop(&mut self) {
        if let Some((path, _)) = self.file.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// What one object may hold before it fails alone with a named error: a gzip bomb or an
/// array of junk must not fill memory, `/tmp` or the rejects, nor fail the other objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Decompressed bytes (CloudTrail's objects are tens of MB at most).
    pub decompressed_bytes: u64,
    pub records: u64,
    /// Rejected records (each is kept with its reason: a bound on the rejects written).
    pub rejects: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            decompressed_bytes: 4 << 30,
            records: 20_000_000,
            rejects: 10_000,
        }
    }
}
/// Arrow bytes of one object's rows held in memory until the object is read whole; a
/// larger object's rows go to files of their own as they are read.
pub const OBJECT_MEMORY_BYTES: usize = 8 << 20;

/// Hashes (SHA-256) the decompressed bytes as they are read, and caps their number.
/// Public so that the benchmark times the reader ingest uses.
#[derive(Debug)]
pub struct Hashing<R> {
    inner: R,
    hasher: sha2::Sha256,
    n: u64,
    cap: u64,
}

impl<R> Hashing<R> {
    /// Reads `inner`, refusing more than `cap` bytes.
    pub fn new(inner: R, cap: u64) -> Self {
        Hashing {
            inner,
            hasher: sha2::Digest::new(),
            n: 0,
            cap,
        }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.n
    }

    /// The SHA-256 of the bytes read so far, in lower-case hex; the hash starts again.
    pub fn finish_hex(&mut self) -> String {
        hex(&sha2::Digest::finalize(std::mem::take(&mut self.hasher)))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.n += n as u64;
        if self.n > self.cap {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("more than {} bytes decompressed: refused", self.cap),
            ));
        }
        Ok(n)
    }
}

/// An object's rows, read and waiting for their commit.
#[derive(Debug)]
pub enum PendingRows {
    /// Small objects: batches in memory, and the event day of each row.
    Memory(Vec<(RecordBatch, Vec<i32>)>),
    /// Large objects: their own staged files.
    Files(Vec<StagedFile>),
}

/// An object read whole: its report and its rows.
#[derive(Debug)]
pub struct ReadObject {
    pub report: ObjectReport,
    pub rows: PendingRows,
    /// CloudTrail's own events that switch KMS evidence off (for `trail_events`).
    pub trail_events: Vec<trail::TrailEvent>,
}

/// Where an object's rows are while it is read.
enum RowsSoFar<'l> {
    Memory(Vec<(RecordBatch, Vec<i32>)>, usize),
    Files(DayWriters<'l>),
}

impl<'l> RowsSoFar<'l> {
    fn push(
        &mut self,
        lake: &'l dyn LakeStore,
        name: &Stem<'_>,
        batch: RecordBatch,
        days: Vec<i32>,
    ) -> Result<(), LakeError> {
        match self {
            RowsSoFar::Memory(batches, bytes) => {
                // The bytes the rows use: a finished batch's columns slice one shared
                // allocation, which get_array_memory_size would count once per column.
                *bytes += batch
                    .columns()
                    .iter()
                    .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0))
                    .sum::<usize>();
                batches.push((batch, days));
                if *bytes > OBJECT_MEMORY_BYTES {
                    let mut w = DayWriters::new(lake, name.get());
                    for (b, d) in batches.drain(..) {
                        w.write(&b, &d)?;
                    }
                    *self = RowsSoFar::Files(w);
                }
                Ok(())
            }
            RowsSoFar::Files(w) => w.write(&batch, &days),
        }
    }

    fn finish(self) -> Result<PendingRows, LakeError> {
        Ok(match self {
            RowsSoFar::Memory(b, _) => PendingRows::Memory(b),
            RowsSoFar::Files(w) => PendingRows::Files(w.finish()?),
        })
    }
}

/// Reads one object whole: every record classified and counted, its KMS events as Arrow
/// rows (in memory, or staged files for a large object), its rejects published, the
/// SHA-256 of its decompressed bytes. Nothing of it is in a table until a commit.
pub fn read_object(
    obj: &dyn SourceObject,
    lake: &dyn LakeStore,
) -> Result<ReadObject, ObjectError> {
    read_object_with(obj, lake, &Limits::default())
}

/// [`read_object`] within `limits`.
pub fn read_object_with(
    obj: &dyn SourceObject,
    lake: &dyn LakeStore,
    limits: &Limits,
) -> Result<ReadObject, ObjectError> {
    with_builder(INITIAL_ROWS, |builder| {
        let mut shared = Shared {
            builder,
            earlier: Vec::new(),
        };
        read_into(obj, lake, limits, &mut shared, false)
    })
}

/// Rows a worker gathers across the objects it reads, so that Parquet gets batches of
/// [`WORKER_BATCH_ROWS`] rather than one of some 60 rows per CloudTrail file (writing the
/// benchmark corpus's rows 66 at a time takes 1.3x the time of 1,024 at a time:
/// `KMS_AUDIT_BENCH_ONLY=parquet scripts/bench`).
struct Shared<'b> {
    /// Rows of objects read whole, then rows of the object being read.
    builder: &'b mut EventBatchBuilder,
    /// Rows of objects read whole, cut from a batch that the object being read filled:
    /// they go to the worker's files whatever becomes of that object.
    earlier: Vec<(RecordBatch, Vec<i32>)>,
}

/// Reads one object into `shared`. Its rows stay in the builder (`keep` and few enough to
/// wait in memory) or come back in [`ReadObject::rows`]; if it fails, the builder is cut
/// back to the rows before it.
fn read_into(
    obj: &dyn SourceObject,
    lake: &dyn LakeStore,
    limits: &Limits,
    shared: &mut Shared<'_>,
    keep: bool,
) -> Result<ReadObject, ObjectError> {
    let mut mark = shared.builder.len();
    let read = read_body(obj, lake, limits, shared, &mut mark, keep);
    if read.is_err() {
        shared.builder.truncate(mark);
    }
    read
}

fn read_body(
    obj: &dyn SourceObject,
    lake: &dyn LakeStore,
    limits: &Limits,
    shared: &mut Shared<'_>,
    mark: &mut usize,
    keep: bool,
) -> Result<ReadObject, ObjectError> {
    let started = Instant::now();
    let uri = obj.uri().to_owned();
    let bytes_in = Arc::new(AtomicU64::new(0));
    let mut counts = Counts::default();
    let fail = |kind: ObjectErrorKind, records: u64| ObjectError {
        object: uri.clone(),
        kind,
        records_before_failure: records,
    };

    let raw = obj.open().map_err(|e| fail(ObjectErrorKind::Open(e), 0))?;
    let counted = Counting {
        inner: raw,
        n: bytes_in.clone(),
    };
    let stream = decompressing(counted).map_err(|e| {
        fail(
            ObjectErrorKind::Read(ReadError::Io {
                offset: 0,
                source: e,
            }),
            0,
        )
    })?;
    let gzip = stream.is_gzip();
    let mut reader = RecordReader::new(Hashing::new(stream, limits.decompressed_bytes));
    let (object, object_date) = object_identity(&uri);
    let stem = Stem::new(&object);
    let mut rows = RowsSoFar::Memory(Vec::new(), 0);
    let mut rejects = RejectSink {
        lake,
        stem: &stem,
        object: uri.clone(),
        file: None,
    };
    let mut examples = Vec::new();
    let mut trail_events = Vec::new();
    let read = (|| -> Result<(), ObjectError> {
        loop {
            let item = match reader.next_item() {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(e) => return Err(fail(e.for_input(gzip).into(), counts.records)),
            };
            let index = counts.records;
            counts.records += 1;
            if counts.records > limits.records {
                let why = format!("more than {} records", limits.records);
                return Err(fail(ObjectErrorKind::Limit(why), counts.records));
            }
            // The outcome (an event of 1.2 KB) is matched where classify wrote it: moving
            // it into a tuple or an arm's binding copied it.
            let (raw, is_object) = match item {
                Item::Object(bytes) => (bytes, true),
                Item::NotAnObject(bytes) => (bytes, false),
            };
            let outcome = if is_object {
                classify(raw, &uri)
            } else {
                Outcome::Rejected(RejectReason {
                    event_id: None,
                    reason: "record is not a JSON object".into(),
                })
            };
            match outcome {
                Outcome::Kms(ref event) => {
                    counts.kms_events += 1;
                    shared.builder.append(event);
                }
                Outcome::Skipped => {
                    counts.skipped += 1;
                    if trail_events.len() < trail::MAX_PER_OBJECT
                        && trail::is_candidate(raw)
                        && let Some(e) = trail::parse(raw, &uri)
                    {
                        trail_events.push(e);
                    }
                }
                Outcome::Rejected(reason) => {
                    counts.rejected += 1;
                    if counts.rejected > limits.rejects {
                        let why = format!(
                            "more than {} rejected records: not a CloudTrail log",
                            limits.rejects
                        );
                        return Err(fail(ObjectErrorKind::Limit(why), counts.records));
                    }
                    rejects
                        .write(index, &reason, raw)
                        .map_err(|e| fail(e.into(), counts.records))?;
                    if examples.len() < REJECT_EXAMPLES {
                        examples.push(reason);
                    }
                }
            }
            if shared.builder.is_full(BATCH_ROWS) {
                flush(shared, mark, lake, &stem, &mut rows).map_err(|k| fail(k, counts.records))?;
            }
        }
        // Rows staged in files of their own join them; others may wait for the next object.
        if keep && matches!(rows, RowsSoFar::Memory(..)) {
            return Ok(());
        }
        flush(shared, mark, lake, &stem, &mut rows).map_err(|k| fail(k, counts.records))
    })();
    read?;
    counts.bytes_decompressed = reader.offset();
    // What follows the last record (whitespace) is part of the bytes CloudTrail hashes.
    reader.drain().map_err(|e| {
        fail(
            ObjectErrorKind::Read(ReadError::Io {
                offset: counts.bytes_decompressed,
                source: e,
            }),
            counts.records,
        )
    })?;
    let sha256 = reader.get_mut().finish_hex();
    drop(reader);
    counts.bytes_in = bytes_in.load(Ordering::Relaxed);
    debug_assert!(counts.reconciles());

    let rows = rows.finish().map_err(|e| fail(e.into(), counts.records))?;
    let rejects_file = rejects
        .commit()
        .map_err(|e| fail(e.into(), counts.records))?;
    Ok(ReadObject {
        report: ObjectReport {
            uri,
            object,
            object_date,
            size: obj.size().unwrap_or(counts.bytes_in),
            etag: obj.etag(),
            sha256,
            counts,
            reject_examples: examples,
            rejects_file,
            seconds: started.elapsed().as_secs_f64(),
            version: None,
        },
        rows,
        trail_events,
    })
}

/// A writer's files, one per day, and the first error writing them: it leaves every
/// object whose rows they were to hold uncommitted. Neighbouring workers share one.
#[cfg(feature = "query")]
struct WorkerFiles<'l> {
    days: DayWriters<'l>,
    broken: Option<LakeError>,
}

#[cfg(feature = "query")]
impl WorkerFiles<'_> {
    fn write(&mut self, batch: &RecordBatch, days: &[i32]) {
        if self.broken.is_none()
            && let Err(e) = self.days.write(batch, days)
        {
            self.broken = Some(e);
        }
    }

    /// Writes the builder's rows, all of objects read whole (the batch is built before the
    /// writer is locked).
    fn write_builder(files: &std::sync::Mutex<Self>, builder: &mut EventBatchBuilder) {
        if builder.is_empty() {
            return;
        }
        let days = builder.days().to_vec();
        let batch = builder.finish();
        let mut files = lock(files);
        match batch {
            Ok(batch) => files.write(&batch, &days),
            Err(e) => {
                files.broken.get_or_insert(LakeError::Parquet {
                    path: "worker files".into(),
                    source: e.into(),
                });
            }
        }
    }
}

/// The order objects are read and committed in: by delivery time (the date in the key,
/// then the stamp in the file name), then by URI; other files after CloudTrail's. A commit
/// then covers few days and each worker's share of it a stretch of time across every
/// account and region, so a day gets few files however many threads write it. By URI
/// within a day (account by account) every worker's share began with its region's first
/// objects after midnight, whose few late records of the day before each made a file
/// there: 35 files for a day of 17,160 objects on 2 cores, against 18 in time order.
///
/// Returns the object's sort key in that order and its identity ([`object_identity`]),
/// from one parse of its name.
#[cfg(feature = "query")]
fn delivery_order_and_identity(uri: &str) -> DeliveryAndIdentity {
    let name = ObjectName::parse(uri);
    let order = match &name {
        Some(n) => (false, n.date.clone(), n.stamp.clone(), uri.to_owned()),
        None => (true, String::new(), String::new(), uri.to_owned()),
    };
    (order, identity_of(name, uri))
}

/// An object's delivery-order sort key and its identity.
#[cfg(feature = "query")]
type DeliveryAndIdentity = ((bool, String, String, String), (String, Option<String>));

/// An object's identity in the `objects` table and the date in its CloudTrail key: its key
/// from `AWSLogs/` on (the same for an S3 original and a local copy), else its URI.
pub fn object_identity(uri: &str) -> (String, Option<String>) {
    identity_of(ObjectName::parse(uri), uri)
}

/// [`object_identity`] from the parsed name: the `objects` check of a run and the record
/// of what it read must agree on it.
fn identity_of(name: Option<ObjectName>, uri: &str) -> (String, Option<String>) {
    match name {
        Some(name) => (name.canonical, Some(name.date)),
        None => (uri.to_owned(), None),
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    // A table, not `write!` per byte: the formatter cost some 2 µs per object's digest.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|&b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0x0f)]])
        .map(char::from)
        .collect()
}

/// Finishes the builder's batch: the rows before `mark` (of objects read whole) go to
/// `shared.earlier`, the object's own to `rows`.
fn flush<'l>(
    shared: &mut Shared<'_>,
    mark: &mut usize,
    lake: &'l dyn LakeStore,
    name: &Stem<'_>,
    rows: &mut RowsSoFar<'l>,
) -> Result<(), ObjectErrorKind> {
    let b = &mut *shared.builder;
    if b.len() == *mark {
        return Ok(());
    }
    let mut days = b.days().to_vec();
    let mut batch = b.finish()?;
    if *mark > 0 {
        let own = days.split_off(*mark);
        shared.earlier.push((batch.slice(0, *mark), days));
        batch = batch.slice(*mark, own.len());
        days = own;
        *mark = 0;
    }
    rows.push(lake, name, batch, days)?;
    Ok(())
}

/// An object left out before reading, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedObject {
    pub uri: String,
    pub reason: SkipReason,
}

/// A local source that cannot be read or walked.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct SourceError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl From<SourceError> for io::Error {
    fn from(e: SourceError) -> io::Error {
        io::Error::new(e.source.kind(), e)
    }
}

/// Expands local paths (files and directories, walked recursively, in sorted order) into
/// objects to ingest (logs, JSON files and digests) and objects skipped by name. A file
/// named explicitly is read unless it is an Insights or digest signature file.
pub fn local_sources(
    paths: &[PathBuf],
) -> Result<(Vec<LocalFile>, Vec<SkippedObject>), SourceError> {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for p in paths {
        let err = |source| SourceError {
            path: p.clone(),
            source,
        };
        let meta = std::fs::metadata(p).map_err(err)?;
        if meta.is_dir() {
            let root = std::fs::canonicalize(p).map_err(err)?;
            // Symbolic links are neither followed nor taken, so every component below the
            // root is a real directory.
            let mut found = Vec::new();
            for entry in walkdir::WalkDir::new(p) {
                let entry = entry.map_err(|e| err(e.into()))?;
                if entry.file_type().is_file() {
                    found.push(entry);
                }
            }
            found.sort_by_cached_key(|e| walk_order(e.path()));
            for entry in found {
                let path = entry.path();
                let name = path.to_string_lossy();
                match classify_name(&name) {
                    ObjectKind::Log(_)
                    | ObjectKind::Json
                    | ObjectKind::Skip(SkipReason::Digest) => {
                        let relative = path.strip_prefix(p).unwrap_or(path);
                        let size = entry.metadata().ok().map(|m| m.len());
                        files.push(LocalFile::under(path.to_owned(), &root, relative, size))
                    }
                    ObjectKind::Skip(reason) => skipped.push(SkippedObject {
                        uri: name.into_owned(),
                        reason,
                    }),
                }
            }
        } else {
            let name = p.to_string_lossy();
            match classify_name(&name) {
                ObjectKind::Skip(reason @ (SkipReason::Signature | SkipReason::Insight)) => skipped
                    .push(SkippedObject {
                        uri: name.into_owned(),
                        reason,
                    }),
                _ => files.push(LocalFile::new(p)),
            }
        }
    }
    Ok((files, skipped))
}

/// A path's key in the order of a walk that visits each directory's entries sorted by
/// name: its bytes with the separator lowest (a NUL, which no path holds), so a name sorts
/// before its longer extensions' and a directory's files come together. Sorting the walk
/// itself (walkdir's `sort_by_file_name`) re-parsed both paths' last component for every
/// comparison, a third of the listing's instructions; keys compare as plain bytes.
fn walk_order(path: &Path) -> Vec<u8> {
    let bytes = path.as_os_str().as_encoded_bytes();
    bytes
        .iter()
        .map(|&c| if c == b'/' { 0 } else { c })
        .collect()
}

/// The result of a whole run.
#[derive(Debug, Default)]
pub struct RunSummary {
    pub objects: u64,
    pub objects_failed: u64,
    pub objects_skipped: u64,
    /// Objects the lake already holds (by identity): not read again.
    pub objects_already_ingested: u64,
    pub counts: Counts,
    pub seconds: f64,
    pub failures: Vec<ObjectError>,
    pub reports: Vec<ObjectReport>,
    /// The `kms_events` versions this run committed.
    pub versions: Vec<i64>,
    /// Data files those commits added.
    pub files_added: u64,
    /// Trouble that lost nothing (the `objects` table lagging a commit: the next writer
    /// projects it).
    pub warnings: Vec<String>,
    /// Digest objects recorded in `digests` now (counted in `objects` too; a digest that
    /// could not be read or recorded is in `failures`).
    pub digests: u64,
    /// Records kept in `trail_events` (CloudTrail's own events that switch KMS evidence
    /// off; counted in `skipped` too).
    pub trail_events: u64,
}

/// When an ingest run commits.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Objects per commit.
    pub commit_objects: usize,
    /// Stored (compressed) bytes per commit.
    pub commit_bytes: u64,
    /// A commit listing at least this many objects is followed by a checkpoint. Its log
    /// entry lists them (about 570 bytes each) and readers replay every entry after the
    /// last checkpoint (one every `CHECKPOINT_INTERVAL` versions otherwise), so the replay
    /// then holds none of the large ones. The default, 2,000, is an entry of about 1 MB;
    /// the Lambda, whose batches are smaller and more frequent, checkpoints after 100.
    pub checkpoint_objects: usize,
    /// Read objects the lake already holds again (their rows are then in the table twice
    /// until compaction drops the duplicate event ids).
    pub reingest: bool,
    /// Keep every committed object's report in [`RunSummary::reports`]. Without it only
    /// the reports of objects with rejected records are kept (the counts still add up
    /// every object, and `progress` still sees every report): a long run, such as a
    /// backfill of an organization's million objects, would otherwise hold all of them.
    pub keep_all_reports: bool,
    pub limits: Limits,
    /// Objects not started by then fail with [`ObjectErrorKind::Deadline`] (retryable);
    /// what was read is committed. A Lambda sets it shortly before its own deadline.
    pub deadline: Option<Instant>,
    /// Day-file writers per commit (`None`: one per core, at most [`MAX_DEFAULT_WRITERS`]).
    /// Each adds about one file per event day its objects cover, and the pool's threads
    /// share them: S3 sources are read 16 at a time because they wait on the network,
    /// which needs threads, not files.
    pub writers: Option<usize>,
}

/// Writers a commit has by default on a large machine. Writing Parquet is about a fifth of
/// ingest's CPU (`perf` of the benchmark's single-core phase: `DayWriters::write` 20%), so
/// 8 writers keep up with some 40 cores; more would only add files to every day.
pub const MAX_DEFAULT_WRITERS: usize = 8;

impl IngestOptions {
    /// The writers a commit has.
    pub fn writers(&self) -> usize {
        self.writers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_DEFAULT_WRITERS)
        })
    }
}

impl Default for IngestOptions {
    /// Measured (docs/performance.md, "Commit size"): a commit costs a log write and a
    /// sync of `objects`, and adds about one file per writer and day it covers, so a day
    /// gets about `writers × objects that day / commit_objects` files: 2,000 gave a day
    /// of 17,160 objects 18 files on 2 cores, 20,000 gave it 2, and by that arithmetic
    /// 20,000 keeps an organization's day (~115,000 objects) under 16 on 2 cores.
    fn default() -> Self {
        IngestOptions {
            commit_objects: 20_000,
            commit_bytes: 512 << 20,
            checkpoint_objects: 2_000,
            reingest: false,
            keep_all_reports: true,
            limits: Limits::default(),
            deadline: None,
            writers: None,
        }
    }
}

/// Why a whole run could not start or go on (per-object trouble is in [`RunSummary`]).
#[cfg(feature = "query")]
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Table(#[from] crate::lake::table::TableError),
    #[error("running the table I/O: {0}")]
    Runtime(#[from] io::Error),
}

/// [`ingest_with`] with the default options.
#[cfg(feature = "query")]
pub fn ingest_all<S: SourceObject>(
    objects: &[S],
    lake: &dyn LakeStore,
    progress: &(dyn Fn(&Result<ObjectReport, ObjectError>) + Sync),
) -> Result<RunSummary, IngestError> {
    ingest_with(objects, lake, &IngestOptions::default(), progress)
}

/// Ingests objects into the lake's tables, in commits of up to
/// [`IngestOptions::commit_objects`] objects. Within a commit the objects are read in
/// parallel (rayon's pool), and the rows of all of a worker's objects go through one file
/// per event day of the writer it shares ([`IngestOptions::writers`], one per core), so a
/// commit adds about one file per (writer, day), however many threads read. Objects the
/// lake already holds are left out before reading. `progress` is called once per object
/// as it is read, from worker threads.
#[cfg(feature = "query")]
pub fn ingest_with<S: SourceObject>(
    objects: &[S],
    lake: &dyn LakeStore,
    opts: &IngestOptions,
    progress: &(dyn Fn(&Result<ObjectReport, ObjectError>) + Sync),
) -> Result<RunSummary, IngestError> {
    use crate::lake::table::Tables;
    let started = Instant::now();
    let loc = lake.location()?;
    let tables = Tables::new(loc.clone());
    loc.block_on(tables.ensure())??;
    let mut summary = RunSummary::default();
    let (digests, objects): (Vec<&S>, Vec<&S>) = objects
        .iter()
        .partition(|o| object_name::is_digest_name(o.uri()));
    ingest_digests(&digests, &tables, opts, &mut summary);
    // Each name parsed once, for the order and for the identity the `objects` check uses.
    let mut named: Vec<(&S, DeliveryAndIdentity)> = objects
        .into_iter()
        .map(|o| (o, delivery_order_and_identity(o.uri())))
        .collect();
    named.sort_by(|a, b| a.1.0.cmp(&b.1.0));
    let (sorted, identities): (Vec<&S>, Vec<(String, Option<String>)>) =
        named.into_iter().map(|(o, (_, id))| (o, id)).unzip();
    let mut taken = 0;
    for group in commit_groups(&sorted, opts) {
        let wanted = &identities[taken..taken + group.len()];
        taken += group.len();
        let done = if opts.reingest {
            std::collections::HashSet::new()
        } else {
            loc.block_on(tables.ingested(wanted))??
        };
        // The same object twice in one run (an S3 original and its local copy) is read once.
        let mut seen = std::collections::HashSet::new();
        let todo: Vec<&S> = group
            .iter()
            .zip(wanted)
            .filter(|(_, (id, _))| !done.contains(id) && seen.insert(id.as_str()))
            .map(|(o, _)| *o)
            .collect();
        summary.objects_already_ingested += (group.len() - todo.len()) as u64;
        summary.objects += group.len() as u64;
        ingest_group(&todo, lake, &tables, opts, progress, &mut summary);
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Records digest objects in the `digests` table (one commit), leaving out those it holds.
/// Malformed digests are recorded with the reason (a finding for `verify`); objects that
/// cannot be read fail alone and are retried by the next run.
#[cfg(feature = "query")]
fn ingest_digests<S: SourceObject>(
    digests: &[&S],
    tables: &crate::lake::table::Tables,
    opts: &IngestOptions,
    summary: &mut RunSummary,
) {
    use crate::integrity::lake::{append_digests, digest_identity, recorded_digests};
    use rayon::prelude::*;
    if digests.is_empty() {
        return;
    }
    let loc = tables.location();
    let wanted: Vec<(String, Option<String>)> =
        digests.iter().map(|o| digest_identity(o.uri())).collect();
    type Shared = Arc<dyn std::error::Error + Send + Sync>;
    let done: Result<std::collections::HashSet<String>, Shared> = if opts.reingest {
        Ok(std::collections::HashSet::new())
    } else {
        loc.run(recorded_digests(tables, &wanted))
            .map_err(|e| Arc::new(e) as Shared)
    };
    let fail_all = |summary: &mut RunSummary, uris: Vec<String>, e: Shared| {
        for object in uris {
            summary.failures.push(ObjectError {
                object,
                kind: ObjectErrorKind::Commit(e.clone()),
                records_before_failure: 0,
            });
        }
    };
    let done = match done {
        Ok(d) => d,
        Err(e) => {
            fail_all(
                summary,
                digests.iter().map(|o| o.uri().to_owned()).collect(),
                e,
            );
            summary.objects += digests.len() as u64;
            summary.objects_failed = summary.failures.len() as u64;
            return;
        }
    };
    let mut seen = std::collections::HashSet::new();
    let todo: Vec<&S> = digests
        .iter()
        .zip(&wanted)
        .filter(|(_, (id, _))| !done.contains(id) && seen.insert(id.as_str()))
        .map(|(o, _)| *o)
        .collect();
    summary.objects += digests.len() as u64;
    summary.objects_already_ingested += (digests.len() - todo.len()) as u64;
    let read: Vec<Result<crate::integrity::Digest, ObjectError>> = todo
        .par_iter()
        .map(|o| {
            if opts.deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(ObjectError {
                    object: o.uri().to_owned(),
                    kind: ObjectErrorKind::Deadline,
                    records_before_failure: 0,
                });
            }
            crate::integrity::digest::read_digest(*o).map_err(|e| ObjectError {
                object: o.uri().to_owned(),
                kind: ObjectErrorKind::Open(e),
                records_before_failure: 0,
            })
        })
        .collect();
    let mut ok = Vec::new();
    for r in read {
        match r {
            Ok(d) => ok.push(d),
            Err(e) => summary.failures.push(e),
        }
    }
    let uris = |ds: &[crate::integrity::Digest]| ds.iter().map(|d| d.source_uri.clone()).collect();
    if !ok.is_empty() {
        match loc.run(append_digests(tables, &ok)) {
            Ok(_) => summary.digests += ok.len() as u64,
            Err(e) => fail_all(summary, uris(&ok), Arc::new(e)),
        }
    }
    summary.objects_failed = summary.failures.len() as u64;
}

/// Ingests one object in a commit of its own, reading it even when the lake holds it.
#[cfg(feature = "query")]
pub fn ingest_object(
    obj: &dyn SourceObject,
    lake: &dyn LakeStore,
) -> Result<ObjectReport, ObjectError> {
    let opts = IngestOptions {
        reingest: true,
        ..IngestOptions::default()
    };
    let mut run =
        ingest_with(std::slice::from_ref(&obj), lake, &opts, &|_| {}).map_err(|e| ObjectError {
            object: obj.uri().to_owned(),
            kind: ObjectErrorKind::Commit(Arc::new(e)),
            records_before_failure: 0,
        })?;
    if let Some(f) = run.failures.pop() {
        return Err(f);
    }
    run.reports.pop().ok_or_else(|| ObjectError {
        object: obj.uri().to_owned(),
        kind: ObjectErrorKind::Open(io::Error::other("not ingested")),
        records_before_failure: 0,
    })
}

/// Consecutive runs of objects within the commit limits.
#[cfg(feature = "query")]
fn commit_groups<'a, S: SourceObject>(objects: &'a [S], opts: &IngestOptions) -> Vec<&'a [S]> {
    let mut groups = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, o) in objects.iter().enumerate() {
        let n = i - start;
        if n > 0 && (n >= opts.commit_objects.max(1) || bytes >= opts.commit_bytes) {
            groups.push(&objects[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += o.size().unwrap_or(0);
    }
    if start < objects.len() {
        groups.push(&objects[start..]);
    }
    groups
}

/// What one worker read for a commit.
#[cfg(feature = "query")]
#[derive(Default)]
struct WorkerOut {
    reports: Vec<ObjectReport>,
    /// Objects whose rows went to the worker's writer: committed only if it finishes.
    pending: Vec<ObjectReport>,
    failures: Vec<ObjectError>,
    staged: Vec<StagedFile>,
    trail: Vec<trail::TrailEvent>,
}

/// Reads a group's objects on the pool's threads, then publishes and commits their rows.
#[cfg(feature = "query")]
fn ingest_group<S: SourceObject>(
    todo: &[&S],
    lake: &dyn LakeStore,
    tables: &crate::lake::table::Tables,
    opts: &IngestOptions,
    progress: &(dyn Fn(&Result<ObjectReport, ObjectError>) + Sync),
    summary: &mut RunSummary,
) {
    use rayon::prelude::*;
    if todo.is_empty() {
        return;
    }
    let workers = rayon::current_num_threads().max(1);
    let chunk = todo.len().div_ceil(workers);
    let chunks = todo.len().div_ceil(chunk);
    // Neighbouring workers (their objects neighbouring stretches of time) share a writer.
    let writers = opts.writers().clamp(1, chunks);
    let files: Vec<std::sync::Mutex<WorkerFiles>> = (0..writers)
        .map(|_| {
            std::sync::Mutex::new(WorkerFiles {
                days: DayWriters::new(lake, "part"),
                broken: None,
            })
        })
        .collect();
    let writer_of = |i: usize| i * writers / chunks;
    let outs: Vec<WorkerOut> = todo
        .par_chunks(chunk)
        .enumerate()
        .map(|(i, objs)| read_objects(objs, lake, &files[writer_of(i)], opts, progress))
        .collect();
    let finished: Vec<Result<Vec<StagedFile>, LakeError>> = files
        .into_iter()
        .map(|f| {
            let f = f.into_inner().unwrap_or_else(|e| e.into_inner());
            match f.broken {
                Some(e) => Err(e),
                None => f.days.finish(),
            }
        })
        .collect();
    let mut reports = Vec::new();
    let mut staged = Vec::new();
    let mut trail = Vec::new();
    for (i, out) in outs.into_iter().enumerate() {
        summary.failures.extend(out.failures);
        reports.extend(out.reports);
        staged.extend(out.staged);
        trail.extend(out.trail);
        match &finished[writer_of(i)] {
            Ok(_) => reports.extend(out.pending),
            Err(e) => {
                // Its files hold the rows of each small object with KMS events of its workers.
                summary
                    .failures
                    .extend(out.pending.into_iter().map(|r| ObjectError {
                        object: r.uri,
                        kind: ObjectErrorKind::Lake(LakeError::Io {
                            op: "writing",
                            path: "worker files".into(),
                            source: io::Error::other(e.to_string()),
                        }),
                        records_before_failure: r.counts.records,
                    }));
            }
        }
    }
    staged.extend(finished.into_iter().flatten().flatten());
    summary.objects_failed = summary.failures.len() as u64;
    if reports.is_empty() {
        staged.into_iter().for_each(StagedFile::discard);
        return;
    }
    // Only the objects about to be committed. Before their rows: a crash in between
    // reads them again (their trail events then twice), never loses them.
    let committed: std::collections::HashSet<&str> =
        reports.iter().map(|r| r.uri.as_str()).collect();
    trail.retain(|e| committed.contains(e.source_object.as_str()));
    let kept = trail.len() as u64;
    let trail_written = if trail.is_empty() {
        Ok(())
    } else {
        tables
            .location()
            .run(crate::lake::trail::append_trail_events(tables, &trail))
            .map(|_| ())
    };
    let committed = match trail_written {
        Ok(()) => commit_group(staged, &reports, lake, tables, opts),
        Err(e) => {
            staged.into_iter().for_each(StagedFile::discard);
            Err(e)
        }
    };
    match committed {
        Ok((version, files, warnings)) => {
            summary.trail_events += kept;
            summary.warnings.extend(warnings);
            summary.versions.push(version);
            summary.files_added += files;
            for mut r in reports {
                r.version = Some(version);
                summary.counts.add(&r.counts);
                if opts.keep_all_reports || r.counts.rejected > 0 {
                    summary.reports.push(r);
                }
            }
        }
        Err(e) => {
            let e: Arc<dyn std::error::Error + Send + Sync> = Arc::new(e);
            for r in reports {
                summary.failures.push(ObjectError {
                    object: r.uri,
                    kind: ObjectErrorKind::Commit(e.clone()),
                    records_before_failure: r.counts.records,
                });
            }
            summary.objects_failed = summary.failures.len() as u64;
        }
    }
}

/// One worker's objects: each read whole; the rows of the small ones go through the
/// writer the worker shares, a large one's staged files are kept as they are. An object
/// that fails leaves nothing behind.
#[cfg(feature = "query")]
fn read_objects<S: SourceObject>(
    objs: &[&S],
    lake: &dyn LakeStore,
    files: &std::sync::Mutex<WorkerFiles<'_>>,
    opts: &IngestOptions,
    progress: &(dyn Fn(&Result<ObjectReport, ObjectError>) + Sync),
) -> WorkerOut {
    with_builder(INITIAL_ROWS, |builder| {
        let mut shared = Shared {
            builder,
            earlier: Vec::new(),
        };
        let shared = &mut shared;
        let mut out = WorkerOut::default();
        for o in objs {
            let read = if opts.deadline.is_some_and(|d| Instant::now() >= d) {
                Err(ObjectError {
                    object: o.uri().to_owned(),
                    kind: ObjectErrorKind::Deadline,
                    records_before_failure: 0,
                })
            } else {
                read_into(*o, lake, &opts.limits, shared, true)
            };
            if !shared.earlier.is_empty() {
                let mut files = lock(files);
                for (b, d) in shared.earlier.drain(..) {
                    files.write(&b, &d);
                }
            }
            let read = match read {
                Ok(r) => r,
                Err(e) => {
                    let failed = Err(e);
                    progress(&failed);
                    if let Err(e) = failed {
                        out.failures.push(e);
                    }
                    continue;
                }
            };
            progress(&Ok(read.report.clone()));
            out.trail.extend(read.trail_events);
            match read.rows {
                PendingRows::Memory(batches) => {
                    if !batches.is_empty() {
                        let mut files = lock(files);
                        for (b, d) in &batches {
                            files.write(b, d);
                        }
                    }
                    // An object without KMS events has nothing in the shared files: their
                    // failure is not its.
                    if read.report.counts.kms_events == 0 {
                        out.reports.push(read.report);
                    } else {
                        out.pending.push(read.report);
                    }
                }
                PendingRows::Files(own) => {
                    out.staged.extend(own);
                    out.reports.push(read.report);
                }
            }
            if shared.builder.is_full(WORKER_BATCH_ROWS) {
                WorkerFiles::write_builder(files, shared.builder);
            }
        }
        WorkerFiles::write_builder(files, shared.builder);
        out
    })
}

/// A writer's lock. A worker that panics holding it fails the whole group (rayon raises
/// the panic again in the caller once the others are done), so they may go on past it.
#[cfg(feature = "query")]
fn lock<'a, 'l>(
    files: &'a std::sync::Mutex<WorkerFiles<'l>>,
) -> std::sync::MutexGuard<'a, WorkerFiles<'l>> {
    files.lock().unwrap_or_else(|e| e.into_inner())
}

/// Publishes staged files under `kms_events/` and commits them with the objects' records,
/// then projects them into `objects` and, after a large commit, writes a checkpoint.
/// Returns the version, the number of files and what went wrong after the commit (nothing
/// that loses a row).
#[cfg(feature = "query")]
fn commit_group(
    staged: Vec<StagedFile>,
    reports: &[ObjectReport],
    lake: &dyn LakeStore,
    tables: &crate::lake::table::Tables,
    opts: &IngestOptions,
) -> Result<(i64, u64, Vec<String>), crate::lake::table::TableError> {
    use crate::lake::table::{NewFile, ObjectRecord, part_name, partition_dir};
    use crate::schema::{PARTITION_COLUMN, TABLE};
    let mut files = Vec::with_capacity(staged.len());
    let mut rest = staged.into_iter();
    while let Some(f) = rest.next() {
        let day = crate::time::format_day(i64::from(f.day));
        let path = format!(
            "{}/{}",
            partition_dir(PARTITION_COLUMN, Some(&day)),
            part_name(i64::from(f.day))
        );
        let size = std::fs::metadata(&f.path).map(|m| m.len()).unwrap_or(0);
        let rows = f.rows as u64;
        let time_range = f.time_range;
        if let Err(e) = lake.publish(&f.path, &format!("{TABLE}/{path}")) {
            f.discard();
            rest.for_each(StagedFile::discard);
            return Err(e.into());
        }
        files.push(NewFile {
            path,
            partition: Some(day),
            size,
            rows,
            time_range,
        });
    }
    let now = crate::time::now_micros();
    let records: Vec<ObjectRecord> = reports
        .iter()
        .map(|r| ObjectRecord {
            object: r.object.clone(),
            source_uri: r.uri.clone(),
            object_date: r.object_date.clone(),
            size: r.size,
            etag: r.etag.clone(),
            sha256: r.sha256.clone(),
            records: r.counts.records,
            kms_events: r.counts.kms_events,
            skipped: r.counts.skipped,
            rejected: r.counts.rejected,
            ingested_at: now,
        })
        .collect();
    let loc = tables.location();
    let version = loc.block_on(tables.append_events(&files, &records))??;
    // The rows are committed: a failed projection into `objects` is healed by the next
    // writer's, so it is logged, not an object failure.
    let mut warnings = Vec::new();
    if let Err(e) = loc.run(tables.sync_objects()) {
        warnings.push(format!("objects table not updated yet: {e}"));
    }
    // See `IngestOptions::checkpoint_objects`.
    if records.len() >= opts.checkpoint_objects.max(1)
        && let Err(e) = loc.run(tables.checkpoint(TABLE, version))
    {
        warnings.push(format!(
            "no checkpoint after version {version} (readers replay more): {e}"
        ));
    }
    Ok((version, files.len() as u64, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let want: String = all.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex(&all), want);
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn writers_are_the_cores_up_to_a_cap_unless_given() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let opts = IngestOptions::default();
        assert_eq!(opts.writers(), cores.min(MAX_DEFAULT_WRITERS));
        let opts = IngestOptions {
            writers: Some(20),
            ..IngestOptions::default()
        };
        assert_eq!(opts.writers(), 20);
    }

    /// Objects go by delivery time across accounts and regions, not account by account.
    #[test]
    #[cfg(feature = "query")]
    fn objects_are_taken_in_delivery_order() {
        let key = |acct: &str, region: &str, stamp: &str| {
            let day = format!("{}/{}/{}", &stamp[..4], &stamp[4..6], &stamp[6..8]);
            format!(
                "/t/AWSLogs/o-aa11bb22cc/{acct}/CloudTrail/{region}/{day}/{acct}_CloudTrail_{region}_{stamp}_abcdefghijklmnop.json.gz"
            )
        };
        let a_late = key("111122223333", "us-east-1", "20261103T0005Z");
        let b_early = key("444455556666", "eu-west-1", "20261102T2355Z");
        let a_early = key("111122223333", "us-east-1", "20261102T0010Z");
        let b_mid = key("444455556666", "eu-west-1", "20261102T1200Z");
        let other = "/t/notes/export.json".to_owned();
        let mut uris = vec![&other, &a_late, &b_mid, &b_early, &a_early];
        uris.sort_by_cached_key(|u| delivery_order_and_identity(u).0);
        assert_eq!(uris, [&a_early, &b_mid, &b_early, &a_late, &other]);
    }

    /// The listing's order is that of a walk sorted by name in every directory, whatever
    /// the names' bytes below and above the separator, and each file's URI is its
    /// canonical path, also when the root is given relative to a symbolic link; links
    /// below the root are not followed.
    #[test]
    #[cfg(unix)]
    fn listing_is_in_walk_order_with_canonical_uris() {
        let tmp = tempfile::tempdir().expect("tmp");
        let real = tmp.path().join("real");
        // '-' and '.' sort below '/', and 'B' below 'a': a byte sort of whole paths would
        // put "a-b/..." before "a/...".
        let names = [
            "a/z.json",
            "a/b/y.json",
            "a-b/x.json",
            "a.json",
            "a/b.json",
            "B/w.json",
            "a/b-c/v.json",
        ];
        for name in names {
            let path = real.join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, b"{}").expect("write");
        }
        // Links below the root are neither followed nor taken.
        std::os::unix::fs::symlink(real.join("a"), real.join("c")).expect("symlink");
        std::os::unix::fs::symlink(real.join("a.json"), real.join("d.json")).expect("symlink");
        let mut want: Vec<PathBuf> = Vec::new();
        for entry in walkdir::WalkDir::new(&real).sort_by_file_name() {
            let entry = entry.expect("walk");
            if entry.file_type().is_file() {
                want.push(entry.path().to_owned());
            }
        }
        assert_eq!(want.len(), names.len());

        let (files, skipped) = local_sources(std::slice::from_ref(&real)).expect("list");
        assert!(skipped.is_empty());
        let got: Vec<PathBuf> = files.iter().map(|f| f.path().to_owned()).collect();
        assert_eq!(got, want);

        // Through a link to the root: the same objects, the same URIs.
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        let (through_link, _) = local_sources(&[link.join(".")]).expect("list");
        let canonical = std::fs::canonicalize(&real).expect("canonical");
        for (f, g) in files.iter().zip(&through_link) {
            let relative = f.path().strip_prefix(&real).expect("under the root");
            let want = canonical.join(relative).display().to_string();
            assert_eq!(f.uri(), want);
            assert_eq!(g.uri(), want);
            assert_eq!(f.uri(), LocalFile::new(f.path()).uri());
            assert_eq!(f.size(), Some(2));
        }
    }
}
