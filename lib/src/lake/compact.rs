//! Compaction: a partition's many small per-object files merged into few large ones,
//! duplicate `event_id`s dropped, swapped in so that readers never see missing or doubled
//! rows.
//!
//! A lake store has no multi-file rename, so the swap goes through a small manifest per
//! partition, `kms_events/event_date=D/_manifest.json` (not `.parquet`, and `_`-prefixed:
//! no engine reads it as data). It keeps up to three *layers*, each a set of output files
//! and the files they replace:
//!
//! 1. outputs are built in local staging (so their names and sizes are known);
//! 2. the manifest gets a `pending` layer naming them;
//! 3. the outputs are uploaded;
//! 4. the manifest's `pending` layer becomes `committed` (the old one becomes `previous`);
//! 5. replaced files are deleted (after `keep_replaced`, so queries that listed the
//!    partition before the swap can still read them).
//!
//! A reader lists a partition and reads its manifest, then takes the newest layer whose
//! outputs are *all* in its listing (with their recorded sizes), hides that layer's
//! replaced files and the outputs of any newer layer. Whatever the interleaving, that is
//! the partition as it was either before or after one compaction. [`hidden_files`] is
//! the rule; the query layer applies it to every listing (see
//! [`crate::sql::CompactionAwareStore`]).
//!
//! Replaced names are kept in the manifest after their files are deleted, so ingesting the
//! same object again (same name, same bytes) stays hidden rather than doubling its rows.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::File;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanBuilder};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use crate::lake::{LakeError, LakeFile, LakeStore, compacted_writer_properties, fnv1a64};
use crate::schema::{PARTITION_COLUMN, TABLE};

/// The manifest's name inside a partition directory.
pub const MANIFEST: &str = "_manifest.json";

/// Errors of compaction.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error(transparent)]
    Lake(#[from] LakeError),
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
    #[error("{path}: invalid manifest: {source}")]
    Manifest {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A file named by a manifest: name inside the partition directory and size in bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FileRef {
    pub name: String,
    pub size: u64,
}

/// One compaction's result: its outputs and every file they stand for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub outputs: Vec<FileRef>,
    /// Every file whose rows the outputs hold (original per-object files and earlier
    /// outputs), kept after deletion so re-ingested copies stay hidden.
    pub replaced: BTreeSet<FileRef>,
    /// When the layer was committed (microseconds since the epoch).
    #[serde(default)]
    pub committed_at: i64,
}

impl Layer {
    /// Whether every output is in a partition listing (name → size) with its recorded size.
    pub fn complete_in(&self, listing: &BTreeMap<String, u64>) -> bool {
        self.outputs
            .iter()
            .all(|o| listing.get(&o.name) == Some(&o.size))
    }

    /// The replaced files still in a listing, with their recorded size (a file re-ingested
    /// with other bytes is not one of them), never one of this layer's own outputs.
    pub fn replaced_in<'a>(
        &'a self,
        listing: &'a BTreeMap<String, u64>,
    ) -> impl Iterator<Item = &'a FileRef> + 'a {
        let outputs: HashSet<&str> = self.outputs.iter().map(|o| o.name.as_str()).collect();
        self.replaced.iter().filter(move |r| {
            listing.get(&r.name) == Some(&r.size) && !outputs.contains(r.name.as_str())
        })
    }
}

/// A partition's compaction manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(default)]
    pub previous: Option<Layer>,
    #[serde(default)]
    pub committed: Option<Layer>,
    #[serde(default)]
    pub pending: Option<Layer>,
}

/// The files of a partition listing (name → size) a reader must not read, per the rule in
/// the module docs.
pub(crate) fn hidden_files(
    listing: &BTreeMap<String, u64>,
    manifest: &Manifest,
) -> HashSet<String> {
    // Newest first; a reader with none complete sees the partition as before any.
    let layers: Vec<&Layer> = [&manifest.pending, &manifest.committed, &manifest.previous]
        .into_iter()
        .flatten()
        .collect();
    let chosen = layers
        .iter()
        .position(|l| l.complete_in(listing))
        .unwrap_or(layers.len());
    let mut hidden = HashSet::new();
    // Outputs of newer layers than the chosen one are not (fully) there yet.
    for newer in &layers[..chosen] {
        for o in newer
            .outputs
            .iter()
            .filter(|o| listing.contains_key(&o.name))
        {
            hidden.insert(o.name.clone());
        }
    }
    if let Some(layer) = layers.get(chosen) {
        hidden.extend(layer.replaced_in(listing).map(|r| r.name.clone()));
    }
    hidden
}

/// Options of a compaction run.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Roll to a new output file after about this many bytes.
    pub target_file_bytes: u64,
    /// Replaced files are deleted once their replacement has been committed this long
    /// (microseconds; 0: at once).
    pub keep_replaced: i64,
    /// "Now" (microseconds), for the grace period.
    pub now: i64,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            target_file_bytes: 128 * 1024 * 1024,
            keep_replaced: 0,
            now: crate::time::now_micros(),
        }
    }
}

/// What compacting one partition did.
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
    /// Replaced files deleted by this run (including ones kept from an earlier run).
    pub files_deleted: usize,
}

/// The partitions (`YYYY-MM-DD`) of the lake's event table.
pub fn partitions(lake: &dyn LakeStore) -> Result<Vec<String>, CompactError> {
    let mut days = BTreeSet::new();
    for f in lake.list(TABLE)? {
        if let Some(rest) = f.rel.strip_prefix(&format!("{TABLE}/{PARTITION_COLUMN}="))
            && let Some((day, _)) = rest.split_once('/')
        {
            days.insert(day.to_owned());
        }
    }
    Ok(days.into_iter().collect())
}

fn partition_dir(day: &str) -> String {
    format!("{TABLE}/{PARTITION_COLUMN}={day}")
}

/// Reads a partition's manifest (empty when it has none).
pub fn read_manifest(lake: &dyn LakeStore, day: &str) -> Result<Manifest, CompactError> {
    let rel = format!("{}/{MANIFEST}", partition_dir(day));
    match lake.read(&rel)? {
        None => Ok(Manifest::default()),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|source| CompactError::Manifest { path: rel, source }),
    }
}

fn write_manifest(lake: &dyn LakeStore, day: &str, m: &Manifest) -> Result<(), CompactError> {
    let rel = format!("{}/{MANIFEST}", partition_dir(day));
    let bytes = serde_json::to_vec(m).map_err(|source| CompactError::Manifest {
        path: rel.clone(),
        source,
    })?;
    lake.write(&rel, &bytes)?;
    Ok(())
}

/// Deletes the replaced files of `layer` that are still there, if it was committed long
/// enough ago.
fn delete_replaced(
    lake: &dyn LakeStore,
    dir: &str,
    layer: Option<&Layer>,
    listing: &BTreeMap<String, u64>,
    opts: &CompactOptions,
) -> Result<usize, CompactError> {
    let Some(layer) = layer else { return Ok(0) };
    if opts.now - layer.committed_at < opts.keep_replaced {
        return Ok(0);
    }
    let mut n = 0;
    for r in layer.replaced_in(listing) {
        lake.delete(&format!("{dir}/{}", r.name))?;
        n += 1;
    }
    Ok(n)
}

fn listing_of(lake: &dyn LakeStore, dir: &str) -> Result<BTreeMap<String, u64>, CompactError> {
    let prefix = format!("{dir}/");
    Ok(lake
        .list(dir)?
        .into_iter()
        .filter_map(|LakeFile { rel, size }| {
            let name = rel.strip_prefix(&prefix)?;
            (!name.contains('/')).then(|| (name.to_owned(), size))
        })
        .collect())
}

/// Compacts one partition (`YYYY-MM-DD`). Does nothing (but finish an earlier run's
/// deletions) when the partition has fewer than two live files.
pub fn compact_partition(
    lake: &dyn LakeStore,
    day: &str,
    opts: &CompactOptions,
) -> Result<PartitionReport, CompactError> {
    let dir = partition_dir(day);
    let mut report = PartitionReport {
        partition: day.to_owned(),
        ..Default::default()
    };
    let mut manifest = read_manifest(lake, day)?;
    let mut listing = listing_of(lake, &dir)?;

    // An interrupted run: its pending outputs are garbage, or, if all there, the result.
    if let Some(p) = manifest.pending.take() {
        if p.complete_in(&listing) {
            manifest.previous = manifest.committed.take();
            manifest.committed = Some(Layer {
                committed_at: opts.now,
                ..p
            });
        } else {
            for o in &p.outputs {
                lake.delete(&format!("{dir}/{}", o.name))?;
                listing.remove(&o.name);
            }
        }
        write_manifest(lake, day, &manifest)?;
    }
    report.files_deleted +=
        delete_replaced(lake, &dir, manifest.committed.as_ref(), &listing, opts)?;
    listing = listing_of(lake, &dir)?;

    let hidden = hidden_files(&listing, &manifest);
    let live: Vec<FileRef> = listing
        .iter()
        .filter(|(name, _)| name.ends_with(".parquet") && !hidden.contains(*name))
        .map(|(name, &size)| FileRef {
            name: name.clone(),
            size,
        })
        .collect();
    if live.len() < 2 {
        return Ok(report);
    }

    // Build the outputs locally.
    let run_id = {
        let mut ids = String::new();
        for f in &live {
            ids.push_str(&format!("{}:{};", f.name, f.size));
        }
        format!("{:016x}", fnv1a64(ids.as_bytes()))
    };
    let props = Arc::new(compacted_writer_properties());
    let mut seen: HashSet<u128> = HashSet::new();
    let mut outputs: Vec<(FileRef, std::path::PathBuf)> = Vec::new();
    let mut current: Option<(String, std::path::PathBuf, ArrowWriter<File>)> = None;
    let staging = lake.staging_dir().to_path_buf();
    let result = (|| -> Result<(), CompactError> {
        for f in &live {
            let rel = format!("{dir}/{}", f.name);
            let local = staging.join(format!("compact-in-{run_id}-{}.tmp", outputs.len()));
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
                let batch = batch.map_err(|source| CompactError::Arrow {
                    path: rel.clone(),
                    source,
                })?;
                // Same columns as the lake's schema, or a clear error naming the file.
                let batch = arrow::record_batch::RecordBatch::try_new(
                    crate::schema::schema(),
                    batch.columns().to_vec(),
                )
                .map_err(|source| CompactError::Arrow {
                    path: rel.clone(),
                    source,
                })?;
                report.rows_in += batch.num_rows() as u64;
                let ids = batch
                    .column_by_name("event_id")
                    .map(|c| c.as_string::<i32>().clone());
                let mut keep = BooleanBuilder::with_capacity(batch.num_rows());
                for i in 0..batch.num_rows() {
                    let id = ids.as_ref().filter(|c| c.is_valid(i)).map(|c| c.value(i));
                    let fresh = match id {
                        Some(id) => seen.insert(id_hash(id)),
                        None => true,
                    };
                    keep.append_value(fresh);
                }
                let batch = arrow::compute::filter_record_batch(&batch, &keep.finish()).map_err(
                    |source| CompactError::Arrow {
                        path: rel.clone(),
                        source,
                    },
                )?;
                report.rows_out += batch.num_rows() as u64;
                report.duplicates_dropped = report.rows_in - report.rows_out;
                if batch.num_rows() == 0 {
                    continue;
                }
                if current.is_none() {
                    let name = format!("compacted-{run_id}-{:03}.parquet", outputs.len());
                    let path = staging.join(format!("{name}.tmp"));
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
                    current = Some((name, path, w));
                }
                if let Some((_, path, w)) = current.as_mut() {
                    w.write(&batch).map_err(|source| CompactError::Parquet {
                        path: path.display().to_string(),
                        source,
                    })?;
                    if w.bytes_written() as u64 + w.in_progress_size() as u64
                        >= opts.target_file_bytes
                    {
                        finish_output(current.take(), &mut outputs)?;
                    }
                }
            }
        }
        finish_output(current.take(), &mut outputs)?;
        Ok(())
    })();
    if let Err(e) = result {
        for (_, p) in &outputs {
            let _ = std::fs::remove_file(p);
        }
        if let Some((_, p, _)) = current {
            let _ = std::fs::remove_file(p);
        }
        return Err(e);
    }

    // Swap: pending → upload → committed → delete.
    let mut replaced: BTreeSet<FileRef> = manifest
        .committed
        .as_ref()
        .map(|c| c.replaced.clone())
        .unwrap_or_default();
    replaced.extend(live.iter().cloned());
    let layer = Layer {
        outputs: outputs.iter().map(|(f, _)| f.clone()).collect(),
        replaced,
        committed_at: 0,
    };
    manifest.pending = Some(layer.clone());
    write_manifest(lake, day, &manifest)?;
    let mut upload = outputs.into_iter();
    for (f, path) in upload.by_ref() {
        report.bytes_out += f.size;
        report.files_out += 1;
        if let Err(e) = lake.publish(&path, &format!("{dir}/{}", f.name)) {
            for (_, p) in upload {
                let _ = std::fs::remove_file(p);
            }
            return Err(e.into());
        }
    }
    manifest.pending = None;
    manifest.previous = manifest.committed.take();
    manifest.committed = Some(Layer {
        committed_at: opts.now,
        ..layer
    });
    write_manifest(lake, day, &manifest)?;
    let listing = listing_of(lake, &dir)?;
    report.files_deleted +=
        delete_replaced(lake, &dir, manifest.committed.as_ref(), &listing, opts)?;
    Ok(report)
}

/// Closes an output being written (if any) and records it with its size.
fn finish_output(
    current: Option<(String, std::path::PathBuf, ArrowWriter<File>)>,
    outputs: &mut Vec<(FileRef, std::path::PathBuf)>,
) -> Result<(), CompactError> {
    let Some((name, path, w)) = current else {
        return Ok(());
    };
    w.close().map_err(|source| CompactError::Parquet {
        path: path.display().to_string(),
        source,
    })?;
    let size = file_size(&path)?;
    outputs.push((FileRef { name, size }, path));
    Ok(())
}

fn file_size(path: &std::path::Path) -> Result<u64, CompactError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| CompactError::Io {
            path: path.display().to_string(),
            source,
        })
}

/// 128 bits of an event id: collisions (which would drop a real event) are out of reach.
fn id_hash(id: &str) -> u128 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let a = fnv1a64(id.as_bytes());
    let b = BuildHasherDefault::<DefaultHasher>::default().hash_one(id);
    (u128::from(a) << 64) | u128::from(b)
}

/// Compacts the partitions whose day is in `days` (all of them when `None`).
pub fn compact(
    lake: &dyn LakeStore,
    days: Option<&[String]>,
    opts: &CompactOptions,
) -> Result<Vec<PartitionReport>, CompactError> {
    let all = partitions(lake)?;
    let mut out = Vec::new();
    for day in all {
        if days.is_some_and(|d| !d.contains(&day)) {
            continue;
        }
        out.push(compact_partition(lake, &day, opts)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, size: u64) -> FileRef {
        FileRef {
            name: name.into(),
            size,
        }
    }

    fn listing(files: &[(&str, u64)]) -> BTreeMap<String, u64> {
        files.iter().map(|(n, s)| ((*n).to_owned(), *s)).collect()
    }

    fn sorted(h: HashSet<String>) -> Vec<String> {
        let mut v: Vec<String> = h.into_iter().collect();
        v.sort();
        v
    }

    #[test]
    fn readers_see_before_or_after_never_both_nor_neither() {
        let layer = Layer {
            outputs: vec![f("c.parquet", 100)],
            replaced: [f("a.parquet", 10), f("b.parquet", 20)].into(),
            committed_at: 0,
        };
        let pending = Manifest {
            pending: Some(layer.clone()),
            ..Default::default()
        };
        let committed = Manifest {
            committed: Some(layer.clone()),
            ..Default::default()
        };
        let before = listing(&[("a.parquet", 10), ("b.parquet", 20)]);
        let during = listing(&[("a.parquet", 10), ("b.parquet", 20), ("c.parquet", 100)]);
        let partial = listing(&[("a.parquet", 10), ("b.parquet", 20), ("c.parquet", 50)]);
        let after = listing(&[("c.parquet", 100)]);
        // Pending, outputs not (fully) uploaded: the originals.
        assert!(hidden_files(&before, &pending).is_empty());
        assert_eq!(sorted(hidden_files(&partial, &pending)), ["c.parquet"]);
        // Outputs all there (pending or committed): the outputs only.
        assert_eq!(
            sorted(hidden_files(&during, &pending)),
            ["a.parquet", "b.parquet"]
        );
        assert_eq!(
            sorted(hidden_files(&during, &committed)),
            ["a.parquet", "b.parquet"]
        );
        assert!(hidden_files(&after, &committed).is_empty());
        // A listing taken before the upload, with the manifest read after the commit.
        assert!(hidden_files(&before, &committed).is_empty());
        // A re-ingested identical file stays hidden; a different one is shown.
        let reingested = listing(&[("a.parquet", 10), ("c.parquet", 100)]);
        assert_eq!(sorted(hidden_files(&reingested, &committed)), ["a.parquet"]);
        let changed = listing(&[("a.parquet", 11), ("c.parquet", 100)]);
        assert!(hidden_files(&changed, &committed).is_empty());
    }

    #[test]
    fn a_second_compaction_falls_back_to_the_first_while_uploading() {
        let first = Layer {
            outputs: vec![f("c1.parquet", 100)],
            replaced: [f("a.parquet", 10)].into(),
            committed_at: 0,
        };
        let second = Layer {
            outputs: vec![f("c2.parquet", 200)],
            replaced: [f("a.parquet", 10), f("c1.parquet", 100), f("d.parquet", 5)].into(),
            committed_at: 0,
        };
        let m = Manifest {
            previous: Some(first),
            committed: Some(second),
            pending: None,
        };
        // Listed before c2 was uploaded (a kept within the grace period): the first layer.
        let l = listing(&[("a.parquet", 10), ("c1.parquet", 100), ("d.parquet", 5)]);
        assert_eq!(sorted(hidden_files(&l, &m)), ["a.parquet"]);
        let l = listing(&[
            ("a.parquet", 10),
            ("c1.parquet", 100),
            ("c2.parquet", 200),
            ("d.parquet", 5),
        ]);
        assert_eq!(
            sorted(hidden_files(&l, &m)),
            ["a.parquet", "c1.parquet", "d.parquet"]
        );
    }
}
