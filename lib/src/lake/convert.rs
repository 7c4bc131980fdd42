//! Turning a lake of the layout before Delta Lake into the Delta tables, in place.
//!
//! That layout had one Parquet file per source object and day under
//! `kms_events/event_date=D/`, and per partition a `_manifest.json` of compaction layers
//! saying which files a reader must skip. [`convert`] applies that rule once, commits the
//! files a reader of the old layout saw as the table's first version (no file is copied
//! or rewritten) and moves the manifests aside, so the lake is then read like any other.
//! The old files a manifest hid stay where they are until `kms-audit vacuum`.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

use crate::lake::{LakeError, LakeFile, LakeStore};
use crate::schema::{PARTITION_COLUMN, TABLE};

/// The manifest's name inside a partition directory.
pub const MANIFEST: &str = "_manifest.json";

/// Errors of the conversion.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Table(#[from] crate::lake::table::TableError),
    #[error("{path}: invalid manifest: {source}")]
    Manifest {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0}")]
    Runtime(#[from] std::io::Error),
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

/// The partitions (`YYYY-MM-DD`) of the lake's event table.
pub fn partitions(lake: &dyn LakeStore) -> Result<Vec<String>, ConvertError> {
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
pub fn read_manifest(lake: &dyn LakeStore, day: &str) -> Result<Manifest, ConvertError> {
    let rel = format!("{}/{MANIFEST}", partition_dir(day));
    match lake.read(&rel)? {
        None => Ok(Manifest::default()),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|source| ConvertError::Manifest { path: rel, source }),
    }
}

fn listing_of(lake: &dyn LakeStore, dir: &str) -> Result<BTreeMap<String, u64>, ConvertError> {
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

/// What a conversion did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConvertReport {
    pub partitions: usize,
    /// Files committed as the table's rows.
    pub files: usize,
    pub bytes: u64,
    /// Files the old manifests hid (left for `kms-audit vacuum`).
    pub hidden: usize,
    /// The `kms_events` version committed (none when there was nothing to convert).
    pub version: Option<i64>,
}

/// Converts a lake in the old layout (see the module docs). A lake already converted, or
/// empty, is left as it is.
pub fn convert(lake: &dyn LakeStore) -> Result<ConvertReport, ConvertError> {
    use crate::lake::table::{NewFile, Tables};
    let loc = lake.location()?;
    let tables = Tables::new(loc.clone());
    let mut report = ConvertReport::default();
    if !loc.block_on(tables.has_old_layout())?? {
        return Ok(report);
    }
    let mut files = Vec::new();
    let mut manifests = Vec::new();
    for day in partitions(lake)? {
        let dir = partition_dir(&day);
        let manifest = read_manifest(lake, &day)?;
        let listing = listing_of(lake, &dir)?;
        let hidden = hidden_files(&listing, &manifest);
        report.partitions += 1;
        for (name, size) in &listing {
            if !name.ends_with(".parquet") {
                continue;
            }
            if hidden.contains(name) {
                report.hidden += 1;
                continue;
            }
            report.files += 1;
            report.bytes += size;
            files.push(NewFile {
                path: format!("{PARTITION_COLUMN}={day}/{name}"),
                partition: Some(day.clone()),
                size: *size,
                rows: parquet_rows(lake, &format!("{dir}/{name}"))?,
                time_range: None,
            });
        }
        if listing.contains_key(MANIFEST) {
            manifests.push(format!("{dir}/{MANIFEST}"));
        }
    }
    // The manifests go first: with them gone the old layout is no longer detected, and
    // the tables can be created.
    for m in &manifests {
        if let Some(bytes) = lake.read(m)? {
            lake.write(&format!("converted/{m}"), &bytes)?;
        }
        lake.delete(m)?;
    }
    loc.block_on(tables.create_tables())??;
    let version = loc.block_on(tables.append_events(&files, &[]))??;
    report.version = Some(version);
    Ok(report)
}

/// A Parquet file's row count, from its footer.
fn parquet_rows(lake: &dyn LakeStore, rel: &str) -> Result<u64, ConvertError> {
    let local = crate::lake::staging_path(lake, "convert");
    lake.fetch(rel, &local)?;
    let rows = std::fs::File::open(&local)
        .ok()
        .and_then(|f| parquet::file::reader::SerializedFileReader::new(f).ok())
        .map(|r| {
            use parquet::file::reader::FileReader;
            r.metadata().file_metadata().num_rows().max(0) as u64
        })
        .unwrap_or(0);
    let _ = std::fs::remove_file(&local);
    Ok(rows)
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
