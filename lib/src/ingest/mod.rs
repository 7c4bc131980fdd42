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
pub(crate) mod lenient;
pub mod object_name;
pub mod reader;
pub mod record;

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::ingest::batch::{EventBatchBuilder, with_builder};
use crate::ingest::object_name::{ObjectKind, SkipReason, classify_name};
use crate::ingest::reader::{Item, ReadError, RecordReader, decompressing};
use crate::ingest::record::{Outcome, RejectReason, classify};
use crate::lake::{LakeError, LakeStore, ObjectWriter, Published};

/// Rows per Arrow batch (and the unit of memory of the ingest path).
pub const BATCH_ROWS: usize = 4096;
/// Rows a thread's batch builder is sized for up front: most CloudTrail objects hold a few
/// hundred KMS records. The builder grows as needed and keeps its capacity from object to
/// object.
pub const INITIAL_ROWS: usize = 256;
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
    pub counts: Counts,
    pub published: Published,
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

/// Writes rejected records, lazily, to `<lake>/rejects/<stem>.json` (NDJSON: one line per
/// rejected record with its reason and raw text).
struct RejectSink<'l> {
    lake: &'l dyn LakeStore,
    stem: String,
    object: String,
    file: Option<(PathBuf, BufWriter<File>)>,
}

impl RejectSink<'_> {
    fn write(&mut self, index: u64, reason: &RejectReason, raw: &[u8]) -> Result<(), LakeError> {
        if self.file.is_none() {
            let path = crate::lake::staging_path(self.lake, &format!("{}.rejects", self.stem));
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
        let rel = format!("rejects/{}.json", self.stem);
        self.lake.publish(&path, &rel)?;
        Ok(Some(rel))
    }
}

impl Drop for RejectSink<'_> {
    fn drop(&mut self) {
        if let Some((path, _)) = self.file.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Ingests one object into the lake.
pub fn ingest_object(
    obj: &dyn SourceObject,
    lake: &dyn LakeStore,
) -> Result<ObjectReport, ObjectError> {
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
    let mut reader = RecordReader::new(stream);
    let mut writer = ObjectWriter::new(lake, &uri);
    let mut rejects = RejectSink {
        lake,
        stem: writer.stem().to_owned(),
        object: uri.clone(),
        file: None,
    };
    let mut examples = Vec::new();
    let read = with_builder(INITIAL_ROWS, |builder| -> Result<(), ObjectError> {
        loop {
            let item = match reader.next_item() {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(e) => return Err(fail(e.for_input(gzip).into(), counts.records)),
            };
            let index = counts.records;
            counts.records += 1;
            let (outcome, raw) = match item {
                Item::Object(bytes) => (classify(bytes, &uri), bytes),
                Item::NotAnObject(bytes) => (
                    Outcome::Rejected(RejectReason {
                        event_id: None,
                        reason: "record is not a JSON object".into(),
                    }),
                    bytes,
                ),
            };
            match outcome {
                Outcome::Kms(event) => {
                    counts.kms_events += 1;
                    builder.append(&event);
                }
                Outcome::Skipped => counts.skipped += 1,
                Outcome::Rejected(reason) => {
                    counts.rejected += 1;
                    rejects
                        .write(index, &reason, raw)
                        .map_err(|e| fail(e.into(), counts.records))?;
                    if examples.len() < REJECT_EXAMPLES {
                        examples.push(reason);
                    }
                }
            }
            if builder.is_full(BATCH_ROWS) {
                flush(builder, &mut writer).map_err(|k| fail(k, counts.records))?;
            }
        }
        flush(builder, &mut writer).map_err(|k| fail(k, counts.records))
    });
    read?;
    counts.bytes_decompressed = reader.offset();
    drop(reader);
    counts.bytes_in = bytes_in.load(Ordering::Relaxed);
    debug_assert!(counts.reconciles());

    let published = writer
        .commit()
        .map_err(|e| fail(e.into(), counts.records))?;
    let rejects_file = rejects
        .commit()
        .map_err(|e| fail(e.into(), counts.records))?;
    Ok(ObjectReport {
        uri,
        counts,
        published,
        reject_examples: examples,
        rejects_file,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn flush(
    builder: &mut EventBatchBuilder,
    writer: &mut ObjectWriter<'_>,
) -> Result<(), ObjectErrorKind> {
    if builder.is_empty() {
        return Ok(());
    }
    let days = builder.days().to_vec();
    let batch = builder.finish()?;
    writer.write(&batch, &days)?;
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
/// objects to ingest and objects skipped by name. A file named explicitly is read unless it
/// is a digest or Insights file.
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
            for entry in walkdir::WalkDir::new(p).sort_by_file_name() {
                let entry = entry.map_err(|e| err(e.into()))?;
                if !entry.file_type().is_file() {
                    continue;
                }
                let path = entry.path();
                let name = path.to_string_lossy();
                match classify_name(&name) {
                    ObjectKind::Log(_) | ObjectKind::Json => files.push(LocalFile::new(path)),
                    ObjectKind::Skip(reason) => skipped.push(SkippedObject {
                        uri: name.into_owned(),
                        reason,
                    }),
                }
            }
        } else {
            let name = p.to_string_lossy();
            match classify_name(&name) {
                ObjectKind::Skip(reason @ (SkipReason::Digest | SkipReason::Insight)) => skipped
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

/// The result of a whole run.
#[derive(Debug, Default)]
pub struct RunSummary {
    pub objects: u64,
    pub objects_failed: u64,
    pub objects_skipped: u64,
    pub counts: Counts,
    pub seconds: f64,
    pub failures: Vec<ObjectError>,
    pub reports: Vec<ObjectReport>,
}

/// Ingests many objects in parallel (rayon's pool: all cores by default). `progress` is
/// called once per object as it finishes, from worker threads.
pub fn ingest_all<S: SourceObject>(
    objects: &[S],
    lake: &dyn LakeStore,
    progress: &(dyn Fn(&Result<ObjectReport, ObjectError>) + Sync),
) -> RunSummary {
    use rayon::prelude::*;
    let started = Instant::now();
    let results: Vec<Result<ObjectReport, ObjectError>> = objects
        .par_iter()
        .map(|o| {
            let r = ingest_object(o, lake);
            progress(&r);
            r
        })
        .collect();
    let mut summary = RunSummary::default();
    for r in results {
        summary.objects += 1;
        match r {
            Ok(report) => {
                summary.counts.add(&report.counts);
                summary.reports.push(report);
            }
            Err(e) => {
                summary.objects_failed += 1;
                summary.failures.push(e);
            }
        }
    }
    summary.seconds = started.elapsed().as_secs_f64();
    summary
}
