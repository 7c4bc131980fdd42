//! SQL over the lake with Apache DataFusion.
//!
//! [`open`] registers `kms_events` over the files of one version of the Delta table, with
//! `event_date` (a `DATE`) as the partition column, so `WHERE event_date >= DATE
//! '2026-11-01'` only opens the files of those days; `objects` likewise. The table schema
//! is fixed ([`crate::schema::schema`]), so queries on an empty lake return no rows rather
//! than failing.

pub mod policy;
mod udf;

use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::DataFusionError;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::ingest::trail::{TRAIL_PARTITION, TRAIL_TABLE};
use crate::lake::table::{
    AsOf, DIGESTS_PARTITION, DIGESTS_TABLE, Location, OBJECTS_PARTITION, OBJECTS_TABLE, TableError,
    Tables,
};
use crate::schema::{PARTITION_COLUMN, TABLE, schema};

/// Errors of the query layer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
    #[error("{0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("lake {lake}: {reason}")]
    Lake { lake: String, reason: String },
    #[error(transparent)]
    Table(Box<TableError>),
}

impl From<TableError> for QueryError {
    fn from(e: TableError) -> Self {
        QueryError::Table(Box::new(e))
    }
}

/// A DataFusion session with kms-audit's defaults (UTC, identifiers as written).
pub fn new_context() -> SessionContext {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .set_str("datafusion.execution.time_zone", "UTC")
        .set_bool("datafusion.sql_parser.enable_ident_normalization", true)
        // Plain Utf8 everywhere, as stored: results keep the lake's types, and callers of
        // the library read strings one way.
        .set_bool("datafusion.sql_parser.map_string_types_to_utf8view", false);
    let ctx = SessionContext::new_with_config(config);
    crate::sql::udf::register(&ctx);
    ctx
}

/// Listing options of the lake's event table.
pub(crate) fn listing_options() -> ListingOptions {
    ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![(PARTITION_COLUMN.to_owned(), DataType::Date32)])
}

/// Registers `kms_events` (and `objects`) for the lake at `lake_url` (a directory URL
/// such as `file:///x/lake/` or an object-store URL whose store is registered on `ctx`),
/// and the views over them. Which files the tables hold is up to the store: see
/// [`SnapshotStore`].
pub(crate) fn register_events(ctx: &SessionContext, lake_url: &str) -> Result<(), QueryError> {
    let base = lake_url.trim_end_matches('/');
    let table_url = ListingTableUrl::parse(format!("{base}/{TABLE}/"))?;
    let config = ListingTableConfig::new(table_url)
        .with_listing_options(listing_options())
        .with_schema(schema());
    let table = ListingTable::try_new(config)?;
    ctx.register_table(TABLE, Arc::new(table))?;
    // Trail events always have a date: a plain table, like kms_events.
    let trail_url = ListingTableUrl::parse(format!("{base}/{TRAIL_TABLE}/"))?;
    let trail_options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![(TRAIL_PARTITION.to_owned(), DataType::Date32)]);
    let config = ListingTableConfig::new(trail_url)
        .with_listing_options(trail_options)
        .with_schema(crate::lake::trail::trail_events_file_schema());
    ctx.register_table(TRAIL_TABLE, Arc::new(ListingTable::try_new(config)?))?;
    let without = |all: arrow::datatypes::SchemaRef, partition: &str| {
        let fields: Vec<_> = all
            .fields()
            .iter()
            .filter(|f| f.name() != partition)
            .cloned()
            .collect();
        Arc::new(arrow::datatypes::Schema::new(fields))
    };
    for (name, partition, schema) in [
        (
            OBJECTS_TABLE,
            OBJECTS_PARTITION,
            without(crate::lake::table::objects_schema(), OBJECTS_PARTITION),
        ),
        (
            DIGESTS_TABLE,
            DIGESTS_PARTITION,
            without(crate::integrity::lake::digests_schema(), DIGESTS_PARTITION),
        ),
    ] {
        // The partition as text: a row without a date sits under Delta's null partition
        // directory, which DataFusion cannot read as a date. The table (a view) shows it as
        // a DATE, null there; `<name>_files` keeps the text, for filters that prune files.
        let url = ListingTableUrl::parse(format!("{base}/{name}/"))?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![(partition.to_owned(), DataType::Utf8)]);
        let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(schema);
        let files = format!("{name}_files");
        ctx.register_table(&files, Arc::new(ListingTable::try_new(config)?))?;
        let sql = format!(
            "SELECT {}, CAST(NULLIF({partition}, '{NULL_PARTITION}') AS DATE) AS {partition} FROM {files}",
            columns.join(", ")
        );
        let plan = futures::executor::block_on(ctx.state().create_logical_plan(&sql))?;
        ctx.register_table(
            name,
            Arc::new(datafusion::datasource::ViewTable::new(plan, Some(sql))),
        )?;
    }
    for (name, sql) in VIEWS {
        // Planning against the in-memory catalog awaits nothing: safe to block on here.
        let plan = futures::executor::block_on(ctx.state().create_logical_plan(sql))?;
        let view = datafusion::datasource::ViewTable::new(plan, Some((*sql).to_owned()));
        ctx.register_table(*name, Arc::new(view))?;
    }
    Ok(())
}

/// Delta's (and Hive's) directory name for a null partition value.
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// Views registered next to `kms_events` (documented in docs/guide.md).
pub const VIEWS: &[(&str, &str)] = &[
    (
        // One row per event id (CloudTrail may deliver an event twice; re-ingesting a
        // changed object can too): the copy from the first source object.
        "kms_events_dedup",
        "SELECT * EXCLUDE (dedup_rank) FROM (SELECT *, row_number() OVER \
         (PARTITION BY event_id ORDER BY source_object) AS dedup_rank FROM kms_events) \
         WHERE dedup_rank = 1",
    ),
    (
        "key_usage_daily",
        "SELECT event_date, key_arn, principal, event_name, count(*) AS calls, \
         count(*) FILTER (WHERE error_code IS NOT NULL) AS errors, \
         count(DISTINCT source_ip) AS source_addresses, min(event_time) AS first_seen, \
         max(event_time) AS last_seen FROM kms_events WHERE key_arn IS NOT NULL \
         GROUP BY event_date, key_arn, principal, event_name",
    ),
    (
        "principals",
        "SELECT principal, min(principal_type) AS principal_type, \
         min(principal_account) AS principal_account, count(*) AS calls, \
         count(DISTINCT key_arn) AS keys, array_agg(DISTINCT event_name) AS operations, \
         count(*) FILTER (WHERE error_code IS NOT NULL) AS errors, \
         count(*) FILTER (WHERE mfa_authenticated) AS calls_with_mfa, \
         bool_or(via_aws_service) AS via_aws_service, \
         min(event_time) AS first_seen, max(event_time) AS last_seen \
         FROM kms_events GROUP BY principal",
    ),
];

/// A session over the lake at one version of its tables: `kms_events` and `objects` hold
/// exactly the files of that version, and the view `lake_version` says which it is
/// (`SELECT version FROM lake_version`; -1 for a lake nothing was ingested into). It
/// writes nothing; a lake in the layout before Delta Lake is an error that says how to
/// convert it.
pub async fn open(loc: &Location, as_of: &AsOf) -> Result<SessionContext, QueryError> {
    let tables = Tables::new(loc.clone());
    let events = tables.read_snapshot(TABLE, as_of).await?;
    let objects = tables.read_snapshot(OBJECTS_TABLE, &AsOf::Latest).await?;
    let digests = tables.read_snapshot(DIGESTS_TABLE, &AsOf::Latest).await?;
    let trail = tables.read_snapshot(TRAIL_TABLE, &AsOf::Latest).await?;
    let mut live = std::collections::HashSet::new();
    for (name, snap) in [
        (TABLE, &events),
        (OBJECTS_TABLE, &objects),
        (DIGESTS_TABLE, &digests),
        (TRAIL_TABLE, &trail),
    ] {
        for f in &snap.files {
            live.insert(loc.path(&format!("{name}/{}", f.path)).to_string());
        }
    }
    let tables_prefixes = [TABLE, OBJECTS_TABLE, DIGESTS_TABLE, TRAIL_TABLE]
        .iter()
        .map(|t| format!("{}/", loc.path(t)))
        .collect();
    let ctx = new_context();
    let store = SnapshotStore {
        inner: loc.store().clone(),
        live: Arc::new(live),
        tables: tables_prefixes,
    };
    let store_url = url::Url::parse(&loc.store_url()).map_err(|e| QueryError::Lake {
        lake: loc.url().to_string(),
        reason: e.to_string(),
    })?;
    ctx.register_object_store(&store_url, Arc::new(store));
    register_events(&ctx, loc.url().as_str())?;
    let version = format!(
        "SELECT CAST({} AS BIGINT) AS version, to_timestamp_millis({}) AS committed_at",
        events.version,
        events
            .timestamp_ms
            .map(|t| t.to_string())
            .unwrap_or_else(|| "NULL".into())
    );
    let plan = ctx.state().create_logical_plan(&version).await?;
    ctx.register_table(
        "lake_version",
        Arc::new(datafusion::datasource::ViewTable::new(plan, Some(version))),
    )?;
    Ok(ctx)
}

/// [`open`] at the latest version, for a local lake directory (created if missing, so an
/// empty lake works). Callable from sync code, inside a runtime or not.
pub fn open_local(root: &Path) -> Result<SessionContext, QueryError> {
    open_local_as_of(root, &AsOf::Latest)
}

/// [`open_local`] at an earlier version.
pub fn open_local_as_of(root: &Path, as_of: &AsOf) -> Result<SessionContext, QueryError> {
    let loc = Location::local(root)?;
    loc.block_on(open(&loc, as_of))?
}

/// An object store whose listings under the tables' directories hold only the files of
/// one table version (the rest of the lake is listed as it is), so DataFusion's listing
/// tables read a Delta snapshot: files of newer commits, files replaced by a compaction,
/// and the log's own checkpoints are left out.
#[derive(Debug)]
pub(crate) struct SnapshotStore {
    inner: Arc<dyn ObjectStore>,
    /// Store paths of the version's files.
    live: Arc<std::collections::HashSet<String>>,
    /// Store path prefixes (ending in `/`) of the tables.
    tables: Vec<String>,
}

use datafusion::object_store::{
    self as os, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, path::Path as StorePath,
};
use futures::StreamExt;
use futures::stream::BoxStream;

/// Whether a listed object is shown: anything outside the tables, and the version's files.
fn in_snapshot(
    tables: &[String],
    live: &std::collections::HashSet<String>,
    m: &ObjectMeta,
) -> bool {
    let p = m.location.as_ref();
    !tables.iter().any(|t| p.starts_with(t.as_str())) || live.contains(p)
}

impl std::fmt::Display for SnapshotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Snapshot({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for SnapshotStore {
    async fn put_opts(
        &self,
        location: &StorePath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> os::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &StorePath,
        opts: PutMultipartOptions,
    ) -> os::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &StorePath, options: GetOptions) -> os::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, os::Result<StorePath>>,
    ) -> BoxStream<'static, os::Result<StorePath>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&StorePath>) -> BoxStream<'static, os::Result<ObjectMeta>> {
        let live = self.live.clone();
        let tables = self.tables.clone();
        self.inner
            .list(prefix)
            .filter(move |r| {
                // Errors pass through, to fail the listing.
                let keep = !matches!(r, Ok(m) if !in_snapshot(&tables, &live, m));
                futures::future::ready(keep)
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&StorePath>) -> os::Result<ListResult> {
        let mut r = self.inner.list_with_delimiter(prefix).await?;
        r.objects
            .retain(|m| in_snapshot(&self.tables, &self.live, m));
        Ok(r)
    }

    async fn copy_opts(
        &self,
        from: &StorePath,
        to: &StorePath,
        options: os::CopyOptions,
    ) -> os::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// A session over a lake in S3 (`s3://bucket/prefix`), read through an object store
/// configured like the SDK clients (credentials chain, region, endpoint).
#[cfg(feature = "aws")]
pub async fn open_s3(
    aws: &crate::s3::Aws,
    uri: &crate::s3::S3Uri,
    as_of: &AsOf,
) -> Result<SessionContext, QueryError> {
    let store = crate::s3::object_store(aws, &uri.bucket).map_err(DataFusionError::from)?;
    let loc = Location::s3(
        store,
        &uri.bucket,
        &uri.key,
        tokio::runtime::Handle::current(),
    )?;
    open(&loc, as_of).await
}

/// Runs one SQL statement and collects its result.
pub async fn run_sql(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    let df = ctx.sql(sql).await?;
    Ok(df.collect().await?)
}

/// What catalog queries (rules, report sections) may run: one query, no DDL (`CREATE VIEW`
/// would change what the queries after it read), no DML, no `SET`.
pub fn read_only() -> datafusion::execution::context::SQLOptions {
    datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// [`run_sql`] with [`read_only`] options.
pub async fn run_read_only(
    ctx: &SessionContext,
    sql: &str,
) -> Result<Vec<RecordBatch>, QueryError> {
    let df = ctx.sql_with_options(sql, read_only()).await?;
    Ok(df.collect().await?)
}

/// Output formats of query results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Csv,
    /// One JSON object per row per line.
    Json,
}

/// Writes batches in a format. Nested values (maps, lists) are rendered as text in tables
/// and CSV, and as JSON objects/arrays in JSON.
pub fn write_batches(
    out: &mut dyn std::io::Write,
    batches: &[RecordBatch],
    format: OutputFormat,
) -> Result<(), QueryError> {
    match format {
        OutputFormat::Table => {
            let table = arrow::util::pretty::pretty_format_batches(batches)?;
            writeln!(out, "{table}")?;
        }
        OutputFormat::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        OutputFormat::Csv => {
            let Some(first) = batches.first() else {
                return Ok(());
            };
            let header: Vec<String> = first
                .schema()
                .fields()
                .iter()
                .map(|f| csv_field(f.name()))
                .collect();
            writeln!(out, "{}", header.join(","))?;
            let opts = FormatOptions::default().with_null("");
            for b in batches {
                let formatters = b
                    .columns()
                    .iter()
                    .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
                    .collect::<Result<Vec<_>, _>>()?;
                for row in 0..b.num_rows() {
                    let mut line = String::new();
                    for (i, f) in formatters.iter().enumerate() {
                        if i > 0 {
                            line.push(',');
                        }
                        line.push_str(&csv_field(&f.value(row).to_string()));
                    }
                    writeln!(out, "{line}")?;
                }
            }
        }
    }
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
