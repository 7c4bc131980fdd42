//! The lake's tables in Delta Lake format: `kms_events` (the events, partitioned by
//! `event_date`) and `objects` (one row per ingested source object, partitioned by
//! `object_date`, the date in the CloudTrail key).
//!
//! Both are plain Delta tables, protocol reader 1 / writer 2 with no table features, so
//! Athena, Trino, Spark, DuckDB and delta-rs read them. Commits are written with
//! put-if-absent (a local rename that refuses to replace, S3's `If-None-Match`), so
//! concurrent writers coordinate without a lock table.
//!
//! How the two tables stay consistent without a transaction across them: every ingest
//! commit to `kms_events` carries the records of the objects it covers in its
//! `commitInfo` (`kmsAuditObjects`). The `objects` table is a projection of those commits:
//! [`Tables::sync_objects`] appends the records of every `kms_events` commit after the
//! last one it projected (a `txn` action with app id `kms_events` holds that version) and
//! commits without retrying over other writers, so two syncs never project the same
//! commit twice. A process that dies between its data commit and its sync leaves
//! `objects` behind by one commit; the next ingest, compaction or `kms-audit sync` of any
//! process projects it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path as StorePath};
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{
    CommitBuilder, CommitProperties, TableReference, TransactionError,
};
use deltalake::kernel::{Action, Add, Remove, StructType, Transaction};
use deltalake::logstore::{LogStoreRef, StorageConfig, default_logstore};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableError};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::schema::{PARTITION_COLUMN, TABLE};

/// The table of CloudTrail digests: one row per log file a digest lists.
pub const DIGESTS_TABLE: &str = "digests";
/// `digests`' partition: the date in the digest's key.
pub const DIGESTS_PARTITION: &str = "digest_date";

/// The table of ingested source objects.
pub const OBJECTS_TABLE: &str = "objects";
/// Its partition column: the date in the object's CloudTrail key (null for other files).
pub const OBJECTS_PARTITION: &str = "object_date";
/// The `commitInfo` field of an ingest commit that lists the objects it covers.
pub const COMMIT_OBJECTS_FIELD: &str = "kmsAuditObjects";
/// The `txn` app id by which `objects` records how far it projects `kms_events`.
const SYNC_APP_ID: &str = "kms_events";
/// A new table's checkpoint interval (`delta.checkpointInterval`; delta-rs's default is
/// 100). Every commit and every reader loads the last checkpoint and replays the entries
/// after it: with 100, a lake committed 9 objects at a time (as the Lambda's 5-minute
/// batches do) took 31.3 to 31.8 s of CPU for 96 commits, with 10 it took 9.8 s, the
/// checkpoints included. Older tables keep the interval they were created with.
pub const CHECKPOINT_INTERVAL: u64 = 10;
/// At most this many `kms_events` entries without objects are left unrecorded by a sync;
/// past them it commits its progress, so no sync ever reads more of them.
const UNRECORDED_EMPTY_SYNC: i64 = 16;

/// Errors of the lake's tables.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("table {table}: {source}")]
    Delta {
        table: String,
        #[source]
        source: Box<DeltaTableError>,
    },
    #[error("lake {lake}: {source}")]
    Store {
        lake: String,
        #[source]
        source: datafusion::object_store::Error,
    },
    #[error("lake {lake}: {reason}")]
    Invalid { lake: String, reason: String },
    #[error(
        "lake {lake} is in the layout before Delta Lake (Parquet files under kms_events/ \
         without a _delta_log/): run `kms-audit convert --lake {lake}` once to turn it into \
         a Delta table"
    )]
    OldLayout { lake: String },
    #[error("building the {table} rows: {source}")]
    Arrow {
        table: String,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("writing Parquet for {table}: {source}")]
    Parquet {
        table: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("table {table}: gave up after {attempts} attempts to commit over concurrent writers")]
    Contended { table: String, attempts: usize },
    #[error("publishing a data file: {0}")]
    Publish(#[from] crate::lake::LakeError),
    #[error("running the table I/O: {0}")]
    Runtime(#[from] std::io::Error),
}

/// Where a lake is: its URL, an object store rooted where its paths start (`/` for local
/// directories, the bucket for S3), and the lake's prefix in that store.
#[derive(Debug, Clone)]
pub struct Location {
    url: Url,
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// The runtime whose connections `store` uses (S3); local lakes need none.
    handle: Option<tokio::runtime::Handle>,
}

impl Location {
    /// A lake in a local directory (created if missing).
    pub fn local(dir: &Path) -> Result<Location, TableError> {
        let invalid = |reason: String| TableError::Invalid {
            lake: dir.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| invalid(e.to_string()))?;
        let abs = std::fs::canonicalize(dir).map_err(|e| invalid(e.to_string()))?;
        let url = Url::from_directory_path(&abs)
            .map_err(|()| invalid("not an absolute directory path".into()))?;
        let prefix = StorePath::from_absolute_path(&abs)
            .map_err(|e| invalid(e.to_string()))?
            .to_string();
        Ok(Location {
            url,
            store: Arc::new(datafusion::object_store::local::LocalFileSystem::new()),
            prefix,
            handle: None,
        })
    }

    /// A lake at `s3://bucket/prefix` read and written through `store` (rooted at the
    /// bucket), whose HTTP connections live on the runtime of `handle`.
    pub fn s3(
        store: Arc<dyn ObjectStore>,
        bucket: &str,
        prefix: &str,
        handle: tokio::runtime::Handle,
    ) -> Result<Location, TableError> {
        let prefix = prefix.trim_matches('/').to_owned();
        let text = if prefix.is_empty() {
            format!("s3://{bucket}/")
        } else {
            format!("s3://{bucket}/{prefix}/")
        };
        let url = Url::parse(&text).map_err(|e| TableError::Invalid {
            lake: text.clone(),
            reason: e.to_string(),
        })?;
        Ok(Location {
            url,
            store,
            prefix,
            handle: Some(handle),
        })
    }

    /// The lake's URL, ending in `/`.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The object store the lake's paths are in.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The URL of the object store, as DataFusion registers it (`file:///`, `s3://bucket`).
    pub fn store_url(&self) -> String {
        match self.url.scheme() {
            "file" => "file:///".to_owned(),
            scheme => format!("{scheme}://{}", self.url.host_str().unwrap_or_default()),
        }
    }

    /// The store path of `rel` (a `/`-separated path inside the lake).
    pub fn path(&self, rel: &str) -> StorePath {
        if self.prefix.is_empty() {
            StorePath::from(rel)
        } else {
            StorePath::from(format!("{}/{rel}", self.prefix))
        }
    }

    fn table_url(&self, name: &str) -> Url {
        // Joining a plain name to a URL ending in '/' cannot fail.
        self.url
            .join(&format!("{name}/"))
            .unwrap_or_else(|_| self.url.clone())
    }

    fn log_store(&self, name: &str) -> LogStoreRef {
        let prefixed = Arc::new(datafusion::object_store::prefix::PrefixStore::new(
            self.store.clone(),
            self.path(name),
        ));
        default_logstore(
            prefixed,
            self.store.clone(),
            &self.table_url(name),
            &StorageConfig::default(),
        )
    }

    fn lake_name(&self) -> String {
        match self.url.scheme() {
            "file" => self
                .url
                .to_file_path()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|()| self.url.to_string()),
            _ => self.url.as_str().trim_end_matches('/').to_owned(),
        }
    }
}

/// One source object's record: what ingest read from it and which commit holds its rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    /// The object's identity: its key from `AWSLogs/` on for CloudTrail objects (the same
    /// for an S3 original and a local copy), else its URI.
    pub object: String,
    /// Where it was read from.
    pub source_uri: String,
    /// The date in its CloudTrail key, `YYYY-MM-DD`.
    pub object_date: Option<String>,
    /// Bytes as stored (compressed).
    pub size: u64,
    /// The S3 ETag, when read from S3.
    pub etag: Option<String>,
    /// Hex SHA-256 of the decompressed bytes (what CloudTrail digest files list).
    pub sha256: String,
    pub records: u64,
    pub kms_events: u64,
    pub skipped: u64,
    pub rejected: u64,
    /// When it was ingested, microseconds since the epoch.
    pub ingested_at: i64,
}

/// A data file written for a commit, already in place under the table's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFile {
    /// Path relative to the table root (`event_date=2026-11-01/part-....parquet`).
    pub path: String,
    /// Its partition value (`YYYY-MM-DD`), or `None` for null.
    pub partition: Option<String>,
    pub size: u64,
    pub rows: u64,
    /// Least and greatest `event_time` (microseconds), for the statistics readers skip
    /// files by and detection finds what arrived by.
    pub time_range: Option<(i64, i64)>,
}

/// A file of a table version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveFile {
    /// Path relative to the table root.
    pub path: String,
    pub partition: Option<String>,
    pub size: u64,
    pub rows: Option<u64>,
}

/// One version of a table: its files.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub version: i64,
    /// Commit time of the version, milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
    pub files: Vec<LiveFile>,
}

/// Which version of the tables to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsOf {
    Latest,
    Version(i64),
    /// The newest version committed at or before this time (microseconds since the epoch).
    Time(i64),
}

impl AsOf {
    /// Parses `--as-of`: a version number, or a time as `--since` takes it.
    pub fn parse(text: &str) -> Result<AsOf, crate::time::InvalidTime> {
        if let Ok(v) = text.trim().parse::<i64>() {
            return Ok(AsOf::Version(v));
        }
        crate::time::parse_time_arg(text, crate::time::now_micros()).map(AsOf::Time)
    }
}

/// The lake's Delta tables.
#[derive(Debug, Clone)]
pub struct Tables {
    loc: Location,
}

/// The Arrow schema of `kms_events` as a Delta table: the file columns and the partition.
pub fn events_table_schema() -> SchemaRef {
    let mut fields: Vec<Field> = crate::schema::schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(PARTITION_COLUMN, DataType::Date32, true));
    Arc::new(Schema::new(fields))
}

/// The columns of `objects` (the partition column last).
pub fn objects_schema() -> SchemaRef {
    Arc::new(Schema::new(objects_fields(true)))
}

fn objects_fields(with_partition: bool) -> Vec<Field> {
    let mut f = vec![
        Field::new("object", DataType::Utf8, false),
        Field::new("source_uri", DataType::Utf8, false),
        Field::new("size", DataType::Int64, false),
        Field::new("etag", DataType::Utf8, true),
        Field::new("sha256", DataType::Utf8, false),
        Field::new("records", DataType::Int64, false),
        Field::new("kms_events", DataType::Int64, false),
        Field::new("skipped", DataType::Int64, false),
        Field::new("rejected", DataType::Int64, false),
        Field::new("table_version", DataType::Int64, false),
        Field::new(
            "ingested_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ];
    if with_partition {
        f.push(Field::new(OBJECTS_PARTITION, DataType::Date32, true));
    }
    f
}

impl Tables {
    pub fn new(loc: Location) -> Tables {
        Tables { loc }
    }

    pub fn location(&self) -> &Location {
        &self.loc
    }

    fn delta_err(&self, table: &str, source: DeltaTableError) -> TableError {
        TableError::Delta {
            table: format!("{}{table}", self.loc.url),
            source: Box::new(source),
        }
    }

    fn store_err(&self, source: datafusion::object_store::Error) -> TableError {
        TableError::Store {
            lake: self.loc.lake_name(),
            source,
        }
    }

    /// Creates both tables when missing. A lake in the layout before Delta Lake is an error
    /// that says how to convert it.
    pub async fn ensure(&self) -> Result<(), TableError> {
        if self.has_old_layout().await? {
            return Err(TableError::OldLayout {
                lake: self.loc.lake_name(),
            });
        }
        self.create_tables().await
    }

    /// Creates the tables when missing, whatever else is in the lake.
    pub async fn create_tables(&self) -> Result<(), TableError> {
        self.ensure_table(TABLE, &events_table_schema(), PARTITION_COLUMN)
            .await?;
        self.ensure_table(OBJECTS_TABLE, &objects_schema(), OBJECTS_PARTITION)
            .await?;
        self.ensure_table(
            DIGESTS_TABLE,
            &crate::integrity::lake::digests_schema(),
            DIGESTS_PARTITION,
        )
        .await?;
        self.ensure_table(
            crate::ingest::trail::TRAIL_TABLE,
            &crate::lake::trail::trail_events_schema(),
            crate::ingest::trail::TRAIL_PARTITION,
        )
        .await
    }

    /// Appends small batches (one file per partition value) to a table in one commit,
    /// over concurrent appends. Returns the version committed.
    pub async fn append_small(
        &self,
        name: &str,
        partition: &str,
        batches: Vec<(Option<String>, RecordBatch)>,
    ) -> Result<i64, TableError> {
        let mut files = Vec::new();
        for (value, batch) in batches {
            let bytes = small_parquet(&batch).map_err(|source| TableError::Parquet {
                table: name.into(),
                source,
            })?;
            let path = format!(
                "{}/{}",
                partition_dir(partition, value.as_deref()),
                part_name(0)
            );
            let size = bytes.len() as u64;
            self.loc
                .store
                .put(
                    &self.loc.path(&format!("{name}/{path}")),
                    PutPayload::from(bytes),
                )
                .await
                .map_err(|e| self.store_err(e))?;
            files.push(NewFile {
                path,
                partition: value,
                size,
                rows: batch.num_rows() as u64,
                time_range: None,
            });
        }
        let mut table = self.load(name, &AsOf::Latest).await?;
        let actions = files.iter().map(|f| add_action(f, partition)).collect();
        commit(
            &mut table,
            actions,
            HashMap::new(),
            Vec::new(),
            write_op(partition),
            true,
        )
        .await
        .map_err(|e| self.delta_err(name, e))
    }

    /// Whether a table has a log (any file under `_delta_log/`).
    async fn has_log(&self, name: &str) -> Result<bool, TableError> {
        use futures::TryStreamExt;
        let log = self.loc.path(&format!("{name}/_delta_log"));
        let mut logs = self.loc.store.list(Some(&log));
        Ok(logs
            .try_next()
            .await
            .map_err(|e| self.store_err(e))?
            .is_some())
    }

    /// Parquet files under `kms_events/` and no `_delta_log/`.
    pub async fn has_old_layout(&self) -> Result<bool, TableError> {
        use futures::TryStreamExt;
        if self.has_log(TABLE).await? {
            return Ok(false);
        }
        let mut files = self.loc.store.list(Some(&self.loc.path(TABLE)));
        while let Some(meta) = files.try_next().await.map_err(|e| self.store_err(e))? {
            let name = meta.location.as_ref();
            if name.ends_with(".parquet") || name.ends_with(crate::lake::convert::MANIFEST) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn ensure_table(
        &self,
        name: &str,
        schema: &Schema,
        partition: &str,
    ) -> Result<(), TableError> {
        if self.has_log(name).await? {
            return Ok(());
        }
        let columns: StructType = schema
            .try_into_kernel()
            .map_err(|e| self.delta_err(name, DeltaTableError::from(e)))?;
        match self.create(name, &columns, partition).await {
            Ok(_) => Ok(()),
            // Another process created it in the meantime.
            Err(e) => match self.has_log(name).await {
                Ok(true) => Ok(()),
                _ => Err(self.delta_err(name, e)),
            },
        }
    }

    /// Writes version 0 of a table: protocol (1, 2) and its metadata (with a checkpoint
    /// every [`CHECKPOINT_INTERVAL`] versions), as delta-rs's
    /// `CreateBuilder` does, without the two full loads of the new table that follow its
    /// commit (half of the CPU of a first ingest of one object into a fresh lake).
    async fn create(
        &self,
        name: &str,
        columns: &StructType,
        partition: &str,
    ) -> Result<(), DeltaTableError> {
        use deltalake::kernel::MetadataExt;
        let protocol: deltalake::kernel::Protocol = serde_json::from_value(
            serde_json::json!({"minReaderVersion": 1, "minWriterVersion": 2}),
        )?;
        let metadata = deltalake::kernel::new_metadata(
            columns,
            [partition],
            [(
                "delta.checkpointInterval".to_owned(),
                CHECKPOINT_INTERVAL.to_string(),
            )],
        )?
        .with_name(name.to_owned())?;
        let log_store = self.loc.log_store(name);
        let op = DeltaOperation::Create {
            mode: SaveMode::Ignore,
            location: log_store.root_url().clone(),
            protocol: protocol.clone(),
            metadata: metadata.clone(),
        };
        // A concurrent creator's version 0 fails this one (not a second metadata commit
        // on top of it).
        let builder = CommitBuilder::from(CommitProperties::default().with_max_retries(0))
            .with_actions(vec![Action::Protocol(protocol), Action::Metadata(metadata)]);
        write_entry(builder, None, log_store, op).await?;
        Ok(())
    }

    /// Loads a table at a version.
    pub async fn load(&self, name: &str, as_of: &AsOf) -> Result<DeltaTable, TableError> {
        let mut table = DeltaTable::new(self.loc.log_store(name));
        let loaded = match as_of {
            AsOf::Latest => table.load().await,
            AsOf::Version(v) => table.load_version((*v).max(0) as u64).await,
            AsOf::Time(t) => match chrono::DateTime::from_timestamp_micros(*t) {
                Some(at) => table.load_with_datetime(at).await,
                None => Err(DeltaTableError::Generic(format!("time out of range: {t}"))),
            },
        };
        loaded.map_err(|e| self.delta_err(name, e))?;
        Ok(table)
    }

    /// For readers, which must not write: the files of a table version, or no files at
    /// version -1 when the table does not exist yet (a lake nothing was ingested into).
    /// A lake in the old layout is an error that says how to convert it.
    pub async fn read_snapshot(&self, name: &str, as_of: &AsOf) -> Result<Snapshot, TableError> {
        if !self.has_log(name).await? {
            if self.has_old_layout().await? {
                return Err(TableError::OldLayout {
                    lake: self.loc.lake_name(),
                });
            }
            if *as_of == AsOf::Latest {
                return Ok(Snapshot {
                    version: -1,
                    timestamp_ms: None,
                    files: Vec::new(),
                });
            }
        }
        self.snapshot(name, as_of).await
    }

    /// The files of a table version.
    pub async fn snapshot(&self, name: &str, as_of: &AsOf) -> Result<Snapshot, TableError> {
        let table = self.load(name, as_of).await?;
        snapshot_of(&table).map_err(|e| self.delta_err(name, e))
    }

    /// Appends files to `kms_events` in one commit that also records `objects` (see the
    /// module docs). Returns the version committed.
    pub async fn append_events(
        &self,
        files: &[NewFile],
        objects: &[ObjectRecord],
    ) -> Result<i64, TableError> {
        let mut table = self.load(TABLE, &AsOf::Latest).await?;
        let actions = files
            .iter()
            .map(|f| add_action(f, PARTITION_COLUMN))
            .collect();
        let meta = HashMap::from([(
            COMMIT_OBJECTS_FIELD.to_owned(),
            serde_json::to_value(objects).unwrap_or_default(),
        )]);
        let version = commit(
            &mut table,
            actions,
            meta,
            Vec::new(),
            write_op(PARTITION_COLUMN),
            true,
        )
        .await
        .map_err(|e| self.delta_err(TABLE, e))?;
        Ok(version)
    }

    /// Projects every `kms_events` commit not yet in `objects` into it. Returns the last
    /// projected version of `kms_events`.
    pub async fn sync_objects(&self) -> Result<i64, TableError> {
        const ATTEMPTS: usize = 20;
        let events_log = self.loc.log_store(TABLE);
        for attempt in 0..ATTEMPTS {
            let mut objects = self.load(OBJECTS_TABLE, &AsOf::Latest).await?;
            let state = objects
                .snapshot()
                .map_err(|e| self.delta_err(OBJECTS_TABLE, e))?
                .clone();
            let done = state
                .transaction_version(objects.log_store().as_ref(), SYNC_APP_ID)
                .await
                .map_err(|e| self.delta_err(OBJECTS_TABLE, e))?
                .unwrap_or(-1);
            let latest = events_log
                .get_latest_version(done.max(0) as u64)
                .await
                .map_err(|e| self.delta_err(TABLE, e))? as i64;
            if latest <= done {
                return Ok(done);
            }
            let mut rows: Vec<(ObjectRecord, i64)> = Vec::new();
            for (v, entry) in self.event_commit_entries(done, latest).await? {
                rows.extend(commit_objects(&entry).into_iter().map(|rec| (rec, v)));
            }
            if rows.is_empty() && latest - done <= UNRECORDED_EMPTY_SYNC {
                // Nothing to project (a new table's first version, a compaction): no
                // commit, and the next sync reads these few entries again.
                return Ok(latest);
            }
            let files = self.write_objects_files(&rows, latest).await?;
            let actions = files
                .iter()
                .map(|f| add_action(f, OBJECTS_PARTITION))
                .collect();
            let txn = Transaction {
                app_id: SYNC_APP_ID.to_owned(),
                version: latest,
                last_updated: Some(chrono::Utc::now().timestamp_millis()),
            };
            match commit(
                &mut objects,
                actions,
                HashMap::new(),
                vec![txn],
                write_op(OBJECTS_PARTITION),
                false,
            )
            .await
            {
                Ok(_) => return Ok(latest),
                Err(e) if is_conflict(&e) => {
                    // Another writer projected first: its files stay, ours are never
                    // referenced (vacuum removes them). Back off a little and look again.
                    tokio::time::sleep(std::time::Duration::from_millis(20 * (attempt as u64 + 1)))
                        .await;
                }
                Err(e) => return Err(self.delta_err(OBJECTS_TABLE, e)),
            }
        }
        Err(TableError::Contended {
            table: OBJECTS_TABLE.into(),
            attempts: ATTEMPTS,
        })
    }

    /// Writes `objects` rows, one file per `object_date`, into place.
    async fn write_objects_files(
        &self,
        rows: &[(ObjectRecord, i64)],
        version: i64,
    ) -> Result<Vec<NewFile>, TableError> {
        let mut by_day: BTreeMap<Option<String>, Vec<&(ObjectRecord, i64)>> = BTreeMap::new();
        for r in rows {
            by_day.entry(r.0.object_date.clone()).or_default().push(r);
        }
        let mut out = Vec::new();
        let schema = Arc::new(Schema::new(objects_fields(false)));
        for (day, mut rows) in by_day {
            rows.sort_by(|a, b| a.0.object.cmp(&b.0.object));
            let batch = objects_batch(&schema, &rows).map_err(|source| TableError::Arrow {
                table: OBJECTS_TABLE.into(),
                source,
            })?;
            let bytes = small_parquet(&batch).map_err(|source| TableError::Parquet {
                table: OBJECTS_TABLE.into(),
                source,
            })?;
            let dir = partition_dir(OBJECTS_PARTITION, day.as_deref());
            let path = format!("{dir}/{}", part_name(version));
            let size = bytes.len() as u64;
            self.loc
                .store
                .put(
                    &self.loc.path(&format!("{OBJECTS_TABLE}/{path}")),
                    PutPayload::from(bytes),
                )
                .await
                .map_err(|e| self.store_err(e))?;
            out.push(NewFile {
                path,
                partition: day,
                size,
                rows: rows.len() as u64,
                time_range: None,
            });
        }
        Ok(out)
    }

    /// Which of `objects` (identity, `object_date`) are recorded as ingested, in `objects`
    /// or in a `kms_events` commit not yet projected. Reads the `object` column of the
    /// `objects` files of those dates only.
    pub async fn ingested(
        &self,
        wanted: &[(String, Option<String>)],
    ) -> Result<HashSet<String>, TableError> {
        if wanted.is_empty() {
            return Ok(HashSet::new());
        }
        self.sync_objects().await?;
        self.find_in_column(OBJECTS_TABLE, "object", wanted).await
    }

    /// Which of `wanted` (value, partition value) a string column of a table holds,
    /// reading that column of the files of those partitions only.
    pub async fn find_in_column(
        &self,
        name: &str,
        column: &str,
        wanted: &[(String, Option<String>)],
    ) -> Result<HashSet<String>, TableError> {
        let keys: HashSet<&str> = wanted.iter().map(|(k, _)| k.as_str()).collect();
        let days: HashSet<Option<&str>> = wanted.iter().map(|(_, d)| d.as_deref()).collect();
        let snap = self.read_snapshot(name, &AsOf::Latest).await?;
        let mut found = HashSet::new();
        for f in snap
            .files
            .iter()
            .filter(|f| days.contains(&f.partition.as_deref()))
        {
            let path = self.loc.path(&format!("{name}/{}", f.path));
            let bytes = self
                .loc
                .store
                .get(&path)
                .await
                .map_err(|e| self.store_err(e))?
                .bytes()
                .await
                .map_err(|e| self.store_err(e))?;
            for value in
                read_string_column(bytes, column).map_err(|source| TableError::Parquet {
                    table: name.into(),
                    source,
                })?
            {
                if keys.contains(value.as_str()) {
                    found.insert(value);
                }
            }
        }
        Ok(found)
    }

    /// Replaces `remove` by `add` in one commit that does not change the table's data
    /// (compaction). Retries over concurrent appends; gives up (returning `Ok(None)`) when a
    /// file to remove is no longer in the table (another compaction won).
    pub async fn replace_files(
        &self,
        name: &str,
        partition: &str,
        remove: &[LiveFile],
        add: &[NewFile],
        target_size: i64,
    ) -> Result<Option<i64>, TableError> {
        const ATTEMPTS: usize = 20;
        for _ in 0..ATTEMPTS {
            let mut table = self.load(name, &AsOf::Latest).await?;
            let live: HashSet<String> = snapshot_of(&table)
                .map_err(|e| self.delta_err(name, e))?
                .files
                .into_iter()
                .map(|f| f.path)
                .collect();
            if remove.iter().any(|f| !live.contains(&f.path)) {
                return Ok(None);
            }
            let now = chrono::Utc::now().timestamp_millis();
            let mut actions: Vec<Action> = remove
                .iter()
                .map(|f| {
                    Action::Remove(Remove {
                        path: f.path.clone(),
                        data_change: false,
                        deletion_timestamp: Some(now),
                        extended_file_metadata: Some(true),
                        partition_values: Some(HashMap::from([(
                            partition.to_owned(),
                            f.partition.clone(),
                        )])),
                        size: Some(f.size as i64),
                        ..Default::default()
                    })
                })
                .collect();
            actions.extend(add.iter().map(|f| {
                let mut a = add_action(f, partition);
                if let Action::Add(add) = &mut a {
                    add.data_change = false;
                }
                a
            }));
            let op = DeltaOperation::Optimize {
                predicate: None,
                target_size,
            };
            match commit(&mut table, actions, HashMap::new(), Vec::new(), op, false).await {
                Ok(v) => return Ok(Some(v)),
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(self.delta_err(name, e)),
            }
        }
        Err(TableError::Contended {
            table: name.into(),
            attempts: ATTEMPTS,
        })
    }

    /// Writes a checkpoint of `name` at `version`: readers then replay no log entry up to
    /// it, however large.
    pub async fn checkpoint(&self, name: &str, version: i64) -> Result<(), TableError> {
        let table = self.load(name, &AsOf::Version(version)).await?;
        deltalake::checkpoints::create_checkpoint(&table, None)
            .await
            .map_err(|e| self.delta_err(name, e))
    }

    /// Deletes files no version newer than `retain` references, in both tables.
    pub async fn vacuum(
        &self,
        retain: chrono::Duration,
        dry_run: bool,
    ) -> Result<Vec<String>, TableError> {
        let mut deleted = Vec::new();
        for name in [TABLE, OBJECTS_TABLE] {
            let table = self.load(name, &AsOf::Latest).await?;
            let (table, metrics) = table
                .vacuum()
                .with_retention_period(retain)
                .with_enforce_retention_duration(false)
                .with_dry_run(dry_run)
                .await
                .map_err(|e| self.delta_err(name, e))?;
            deleted.extend(
                metrics
                    .files_deleted
                    .into_iter()
                    .map(|f| format!("{name}/{f}")),
            );
            if !dry_run {
                // A checkpoint of the current version, then the log entries older than it
                // and the log retention (30 days) go.
                deltalake::checkpoints::create_checkpoint(&table, None)
                    .await
                    .map_err(|e| self.delta_err(name, e))?;
                deltalake::checkpoints::cleanup_metadata(&table, None)
                    .await
                    .map_err(|e| self.delta_err(name, e))?;
            }
        }
        Ok(deleted)
    }

    /// The log entry of each `kms_events` commit in `(after, until]`, with its version.
    /// Commits expired from the log (older than its retention) are not there to read.
    async fn event_commit_entries(
        &self,
        after: i64,
        until: i64,
    ) -> Result<Vec<(i64, bytes::Bytes)>, TableError> {
        let log = self.loc.log_store(TABLE);
        let mut out = Vec::new();
        for v in (after + 1).max(0)..=until {
            if let Some(bytes) = log
                .read_commit_entry(v as u64)
                .await
                .map_err(|e| self.delta_err(TABLE, e))?
            {
                out.push((v, bytes));
            }
        }
        Ok(out)
    }

    /// What the `kms_events` commits in `(after, until]` added: files, rows and the span
    /// of their event times, from the commits' statistics (no data file is read).
    pub async fn arrivals(&self, after: i64, until: i64) -> Result<Arrivals, TableError> {
        let mut out = Arrivals::default();
        for (_, entry) in self.event_commit_entries(after, until).await? {
            // Not the commitInfo line: it lists the commit's objects (megabytes of them for
            // a large commit) and holds nothing counted here.
            for line in log_lines(&entry).filter(|l| !is_commit_info(l)) {
                let Ok(action) = serde_json::from_slice::<serde_json::Value>(line) else {
                    continue;
                };
                let Some(add) = action.get("add") else {
                    continue;
                };
                if add.get("dataChange").and_then(|d| d.as_bool()) != Some(true) {
                    continue;
                }
                out.files += 1;
                let stats: serde_json::Value = add
                    .get("stats")
                    .and_then(|s| s.as_str())
                    .and_then(|s| serde_json::from_str(s).ok())
                    .unwrap_or_default();
                out.rows += stats["numRecords"].as_u64().unwrap_or(0);
                let lo = stats["minValues"]["event_time"]
                    .as_str()
                    .and_then(parse_stats_time);
                let hi = stats["maxValues"]["event_time"]
                    .as_str()
                    .and_then(parse_stats_time);
                match (lo, hi) {
                    (Some(lo), Some(hi)) => {
                        let hi = hi + 999; // the statistics truncate to the millisecond
                        out.time_range = Some(match out.time_range {
                            Some((a, b)) => (a.min(lo), b.max(hi)),
                            None => (lo, hi),
                        });
                    }
                    _ if stats["numRecords"].as_u64() == Some(0) => {}
                    _ => out.without_stats += 1,
                }
            }
        }
        Ok(out)
    }
}

/// The Arrow schema of `objects` files (no partition column: it is in the path).
fn objects_batch(
    schema: &SchemaRef,
    rows: &[&(ObjectRecord, i64)],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let text = |f: fn(&ObjectRecord) -> Option<&str>| -> ArrayRef {
        Arc::new(rows.iter().map(|(r, _)| f(r)).collect::<StringArray>())
    };
    let int = |f: fn(&(ObjectRecord, i64)) -> i64| -> ArrayRef {
        Arc::new(rows.iter().map(|r| f(r)).collect::<Int64Array>())
    };
    let ingested: ArrayRef = Arc::new(
        arrow::array::TimestampMicrosecondArray::from(
            rows.iter().map(|(r, _)| r.ingested_at).collect::<Vec<_>>(),
        )
        .with_timezone("UTC"),
    );
    RecordBatch::try_new(
        schema.clone(),
        vec![
            text(|r| Some(&r.object)),
            text(|r| Some(&r.source_uri)),
            int(|r| r.0.size as i64),
            text(|r| r.etag.as_deref()),
            text(|r| Some(&r.sha256)),
            int(|r| r.0.records as i64),
            int(|r| r.0.kms_events as i64),
            int(|r| r.0.skipped as i64),
            int(|r| r.0.rejected as i64),
            int(|r| r.1),
            ingested,
        ],
    )
}

/// A small Parquet file in memory (zstd, statistics on every column).
fn small_parquet(batch: &RecordBatch) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props))?;
    w.write(batch)?;
    w.into_inner()
}

/// The values of one string column of a Parquet file.
fn read_string_column(
    bytes: bytes::Bytes,
    column: &str,
) -> Result<Vec<String>, parquet::errors::ParquetError> {
    use arrow::array::Array;
    use parquet::arrow::ProjectionMask;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let b = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let Some(idx) = b
        .parquet_schema()
        .columns()
        .iter()
        .position(|c| c.name() == column)
    else {
        return Ok(Vec::new());
    };
    let mask = ProjectionMask::leaves(b.parquet_schema(), [idx]);
    let mut out = Vec::new();
    for batch in b.with_projection(mask).build()? {
        let batch = batch?;
        if let Some(col) = batch.column(0).as_any().downcast_ref::<StringArray>() {
            out.extend(
                (0..col.len())
                    .filter(|&i| col.is_valid(i))
                    .map(|i| col.value(i).to_owned()),
            );
        }
    }
    Ok(out)
}

/// The objects an ingest commit's `commitInfo` lists, from the commit's log entry.
///
/// Read into the records directly: a commit of 20,000 objects lists about 10 MB of them,
/// and going through a `serde_json::Value` tree (and a copy of it) first multiplied that
/// several times over in the process that syncs.
pub fn commit_objects(entry: &[u8]) -> Vec<ObjectRecord> {
    #[derive(Deserialize)]
    struct Line {
        #[serde(rename = "commitInfo")]
        commit_info: Option<Info>,
    }
    #[derive(Deserialize)]
    struct Info {
        #[serde(rename = "kmsAuditObjects")]
        objects: Option<Vec<ObjectRecord>>,
    }
    log_lines(entry)
        .filter(|l| is_commit_info(l))
        .find_map(|l| serde_json::from_slice::<Line>(l).ok()?.commit_info?.objects)
        .unwrap_or_default()
}

/// Whether a log line is the commit's `commitInfo` action (delta-rs writes each action as
/// an object with one member, named after the action).
fn is_commit_info(line: &[u8]) -> bool {
    line.trim_ascii_start().starts_with(b"{\"commitInfo\"")
}

/// The non-empty lines of a log entry, one action each.
fn log_lines(entry: &[u8]) -> impl Iterator<Item = &[u8]> {
    entry.split(|&b| b == b'\n').filter(|l| !l.is_empty())
}

fn snapshot_of(table: &DeltaTable) -> Result<Snapshot, DeltaTableError> {
    let state = table.snapshot()?;
    let version = state.version();
    let files = state
        .log_data()
        .iter()
        .map(|f| {
            let partition = f.partition_values_map().into_values().next().flatten();
            LiveFile {
                path: f.path().into_owned(),
                partition,
                size: f.size().max(0) as u64,
                rows: f.num_records().map(|n| n as u64),
            }
        })
        .collect();
    Ok(Snapshot {
        version: version as i64,
        timestamp_ms: state.version_timestamp(version),
        files,
    })
}

fn write_op(partition: &str) -> DeltaOperation {
    DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: Some(vec![partition.to_owned()]),
        predicate: None,
    }
}

/// Commits `actions` on top of `table`'s version. With `retry`, concurrent commits that do
/// not conflict (appends) are committed over; without, any concurrent commit fails it.
async fn commit(
    table: &mut DeltaTable,
    actions: Vec<Action>,
    app_metadata: HashMap<String, serde_json::Value>,
    txns: Vec<Transaction>,
    op: DeltaOperation,
    retry: bool,
) -> Result<i64, DeltaTableError> {
    // Old log entries are deleted by vacuum (whose role may delete), never by a commit.
    let mut props = CommitProperties::default()
        .with_application_transactions(txns)
        .with_cleanup_expired_logs(Some(false));
    if !retry {
        props = props.with_max_retries(0);
    }
    let state = table.snapshot()?.clone();
    let interval =
        deltalake::table::config::TablePropertiesExt::checkpoint_interval(state.table_config())
            .get();
    let builder = CommitBuilder::from(props)
        .with_actions(actions)
        .with_app_metadata(app_metadata);
    let version = write_entry(builder, Some(&state), table.log_store(), op).await?;
    // delta-rs's checkpoint every `checkpointInterval` versions, which `write_entry` leaves
    // out with the rest of the post-commit work.
    if (version + 1).is_multiple_of(interval) && table.load_version(version).await.is_ok() {
        // A missed checkpoint makes readers replay more entries, until the next one.
        let _ = deltalake::checkpoints::create_checkpoint(table, None).await;
    }
    Ok(version as i64)
}

/// Writes a commit's entry on top of `state` (none for version 0) and returns its version,
/// without delta-rs's post-commit work: that replays the new entry into a snapshot no caller
/// here uses (an ingest entry lists every object it covers, 1.4 MB of JSON for 2,592
/// objects), and fails a commit already made when its checkpoint fails.
async fn write_entry(
    builder: CommitBuilder,
    state: Option<&dyn TableReference>,
    log_store: LogStoreRef,
    op: DeltaOperation,
) -> Result<u64, DeltaTableError> {
    let written = builder
        .build(state, log_store, op)
        .into_prepared_commit_future()
        .await?
        .await?;
    Ok(written.version)
}

fn is_conflict(e: &DeltaTableError) -> bool {
    matches!(
        e,
        DeltaTableError::Transaction {
            source: TransactionError::MaxCommitAttempts(_)
                | TransactionError::VersionAlreadyExists(_)
                | TransactionError::CommitConflict(_)
        }
    ) || matches!(e, DeltaTableError::VersionAlreadyExists(_))
}

fn add_action(f: &NewFile, partition: &str) -> Action {
    let mut stats = serde_json::json!({ "numRecords": f.rows });
    if let Some((lo, hi)) = f.time_range {
        // Delta's statistics hold timestamps to the millisecond, truncated.
        stats["minValues"] = serde_json::json!({ "event_time": stats_time(lo) });
        stats["maxValues"] = serde_json::json!({ "event_time": stats_time(hi) });
    }
    Action::Add(Add {
        path: f.path.clone(),
        partition_values: HashMap::from([(partition.to_owned(), f.partition.clone())]),
        size: f.size as i64,
        modification_time: chrono::Utc::now().timestamp_millis(),
        data_change: true,
        stats: Some(stats.to_string()),
        ..Default::default()
    })
}

fn stats_time(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros.div_euclid(1000) * 1000)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Microseconds of a statistics timestamp.
fn parse_stats_time(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_micros())
}

/// What the `kms_events` commits after a version added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Arrivals {
    /// Files added with new rows (compaction's rewrites are not new rows).
    pub files: usize,
    pub rows: u64,
    /// Least `event_time` and greatest (rounded up to the millisecond) of those rows.
    pub time_range: Option<(i64, i64)>,
    /// Files added without event-time statistics (their rows' times are unknown).
    pub without_stats: usize,
}

/// The runtime of local lakes' table futures, one for the process. Multi-threaded (with
/// one worker) because delta-rs gives each table operation on a current-thread runtime an
/// executor of its own, a thread with a runtime of its own: with a fresh current-thread
/// runtime for every call, one `kms-audit ingest` started 93 threads (8 now), and a fresh
/// blocking pool for the store's file operations each time.
fn local_runtime() -> std::io::Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("kms-audit-lake")
        .enable_all()
        .build()?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// `name=value` (or Hive's null partition).
pub fn partition_dir(column: &str, value: Option<&str>) -> String {
    format!("{column}={}", value.unwrap_or(crate::sql::NULL_PARTITION))
}

/// A fresh data file name: unique across processes and hosts.
pub fn part_name(hint: i64) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let salt = crate::lake::fnv1a64(
        format!(
            "{nanos}-{}-{n}-{hint}-{:?}",
            std::process::id(),
            std::thread::current().id()
        )
        .as_bytes(),
    );
    format!("part-{nanos:x}-{salt:016x}.parquet")
}

impl Location {
    /// Runs a future of the table API to completion from sync code (ingest's worker
    /// threads, the CLI), inside a runtime or not: on the lake's runtime (S3 connections
    /// belong to it) or on the one local lakes share, from a thread of its own when the
    /// caller is inside a runtime already.
    pub fn block_on<F>(&self, fut: F) -> std::io::Result<F::Output>
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        let run = |fut: F| match &self.handle {
            Some(h) => Ok(h.block_on(fut)),
            None => local_runtime().map(|rt| rt.block_on(fut)),
        };
        let panicked = |_| Err(std::io::Error::other("a lake table task panicked"));
        if self.handle.is_none() && tokio::runtime::Handle::try_current().is_err() {
            let call = std::panic::AssertUnwindSafe(|| run(fut));
            return std::panic::catch_unwind(call).unwrap_or_else(panicked);
        }
        std::thread::scope(|s| s.spawn(|| run(fut)).join().unwrap_or_else(panicked))
    }

    /// [`Location::block_on`] of a table API future: the runtime's own failure is a
    /// [`TableError`] too, so callers handle one error.
    pub fn run<T: Send>(
        &self,
        fut: impl std::future::Future<Output = Result<T, TableError>> + Send,
    ) -> Result<T, TableError> {
        self.block_on(fut)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u64) -> ObjectRecord {
        ObjectRecord {
            object: format!("AWSLogs/1/CloudTrail/eu-west-1/2026/11/0{n}/x{n}.json.gz"),
            source_uri: format!("/trail/x{n}.json.gz"),
            object_date: Some(format!("2026-11-0{n}")),
            size: 100 + n,
            etag: (n == 2).then(|| "\"e\"".to_owned()),
            sha256: "ab".repeat(32),
            records: 10 * n,
            kms_events: n,
            skipped: 9 * n,
            rejected: 0,
            ingested_at: 7,
        }
    }

    /// Commits stop once their entry is written (no post-commit replay) but still write
    /// the checkpoint every `checkpointInterval` versions, which a new table sets to
    /// [`CHECKPOINT_INTERVAL`], and a new table is one version-0 entry of protocol (1, 2)
    /// and its metadata.
    #[test]
    fn commits_checkpoint_every_interval() {
        let dir = tempfile::tempdir().expect("tmp");
        let loc = Location::local(dir.path()).expect("lake");
        let tables = Tables::new(loc.clone());
        loc.run(tables.create_tables()).expect("create");
        let log = dir.path().join(TABLE).join("_delta_log");
        let first = std::fs::read_to_string(log.join(format!("{:020}.json", 0))).expect("v0");
        assert!(first.contains(r#"{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}"#));
        assert!(
            first.contains(r#""partitionColumns":["event_date"]"#),
            "{first}"
        );
        let checkpoints = || -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(&log)
                .expect("log")
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".checkpoint.parquet"))
                .collect();
            names.sort();
            names
        };
        assert!(
            first.contains(r#""configuration":{"delta.checkpointInterval":"10"}"#),
            "{first}"
        );
        let interval = CHECKPOINT_INTERVAL;
        for n in 1..2 * interval {
            let v = loc
                .run(tables.append_events(&[], &[record(n % 9 + 1)]))
                .expect("commit");
            assert_eq!(v, n as i64);
            if n == interval - 2 {
                assert!(checkpoints().is_empty());
            }
        }
        let want: Vec<String> = [interval - 1, 2 * interval - 1]
            .iter()
            .map(|v| format!("{v:020}.checkpoint.parquet"))
            .collect();
        assert_eq!(checkpoints(), want);
        let snap = loc
            .run(tables.snapshot(TABLE, &AsOf::Latest))
            .expect("snap");
        assert_eq!(snap.version, 2 * interval as i64 - 1);
    }

    /// A local lake's table futures run from plain code, from inside either kind of tokio
    /// runtime and from several threads at once; one that panics is an error, not an
    /// unwind into the caller.
    #[test]
    fn local_table_futures_run_from_any_context() {
        let dir = tempfile::tempdir().expect("tmp");
        let loc = Location::local(dir.path()).expect("lake");
        let tables = Tables::new(loc.clone());
        let wanted = vec![("x".to_owned(), Some("2026-11-02".to_owned()))];
        let not_ingested = || {
            let found = loc.run(tables.ingested(&wanted)).expect("ingested");
            assert!(found.is_empty(), "{found:?}");
        };
        loc.run(tables.ensure()).expect("ensure from plain code");
        not_ingested();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(not_ingested);
            }
        });
        let panics = || {
            loc.block_on(async {
                if wanted.is_empty() {
                    0
                } else {
                    panic!("a test panic")
                }
            })
        };
        assert!(
            panics()
                .expect_err("a panic")
                .to_string()
                .contains("panicked")
        );
        let runtimes = [
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build(),
        ];
        for rt in runtimes {
            rt.expect("runtime").block_on(async {
                loc.run(tables.ensure()).expect("ensure inside a runtime");
                not_ingested();
                assert!(panics().is_err());
            });
        }
    }

    #[test]
    fn commit_objects_reads_the_commit_info_line_only() {
        let listed = vec![record(1), record(2)];
        let info = serde_json::json!({"commitInfo": {
            "timestamp": 1,
            "operation": "WRITE",
            COMMIT_OBJECTS_FIELD: listed,
        }});
        let entry = format!(
            "{}\n{}\n  {info}\n",
            r#"{"add":{"path":"a.parquet","kmsAuditObjects":[]}}"#,
            r#"{"txn":{"appId":"x","version":1}}"#,
        );
        assert_eq!(commit_objects(entry.as_bytes()), listed);
        // A commit that lists no objects (compaction, a sync) and an empty entry.
        let other = r#"{"commitInfo":{"timestamp":1,"operation":"OPTIMIZE"}}"#;
        assert!(commit_objects(other.as_bytes()).is_empty());
        assert!(commit_objects(b"").is_empty());
    }
}
