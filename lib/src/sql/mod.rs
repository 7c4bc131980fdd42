//! SQL over the lake with Apache DataFusion.
//!
//! [`open_local`] registers `kms_events` as a listing table over
//! `<lake>/kms_events/event_date=*/` with `event_date` (a `DATE`) as the partition column,
//! so `WHERE event_date >= DATE '2026-11-01'` only opens the files of those days. The table
//! schema is fixed ([`crate::schema::schema`]), so queries on an empty lake return no rows
//! rather than failing.

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

/// Registers `kms_events` for the lake at `url` (a directory URL such as `file:///x/lake/`
/// or an object-store URL whose store is registered on `ctx`).
pub(crate) fn register_events(ctx: &SessionContext, lake_url: &str) -> Result<(), QueryError> {
    let base = lake_url.trim_end_matches('/');
    let table_url = ListingTableUrl::parse(format!("{base}/{TABLE}/"))?;
    let config = ListingTableConfig::new(table_url)
        .with_listing_options(listing_options())
        .with_schema(schema());
    let table = ListingTable::try_new(config)?;
    ctx.register_table(TABLE, Arc::new(table))?;
    for (name, sql) in VIEWS {
        // Planning against the in-memory catalog awaits nothing: safe to block on here.
        let plan = futures::executor::block_on(ctx.state().create_logical_plan(sql))?;
        let view = datafusion::datasource::ViewTable::new(plan, Some((*sql).to_owned()));
        ctx.register_table(*name, Arc::new(view))?;
    }
    Ok(())
}

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

/// A session over a local lake directory (created if missing, so an empty lake works).
pub fn open_local(root: &Path) -> Result<SessionContext, QueryError> {
    use datafusion::execution::object_store::ObjectStoreUrl;
    let events = root.join(TABLE);
    std::fs::create_dir_all(&events)?;
    let abs = std::fs::canonicalize(root)?;
    let ctx = new_context();
    let local = Arc::new(datafusion::object_store::local::LocalFileSystem::new());
    ctx.register_object_store(
        ObjectStoreUrl::local_filesystem().as_ref(),
        Arc::new(CompactionAwareStore::new(local)),
    );
    register_events(&ctx, &abs.display().to_string())?;
    Ok(ctx)
}

/// An object store that applies the compaction manifests ([`crate::lake::compact`]) to every
/// listing: files a compaction replaced, and outputs of a compaction still uploading, are
/// left out, so a query sees each partition before or after a compaction, never both.
#[derive(Debug)]
pub(crate) struct CompactionAwareStore {
    inner: Arc<dyn ObjectStore>,
}

use datafusion::object_store::{
    self as os, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    path::Path as StorePath,
};
use futures::StreamExt;
use futures::stream::BoxStream;

impl CompactionAwareStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        CompactionAwareStore { inner }
    }

    /// Drops the hidden files of every partition directory in `metas` that has a manifest.
    async fn filter(
        inner: &Arc<dyn ObjectStore>,
        metas: Vec<ObjectMeta>,
    ) -> os::Result<Vec<ObjectMeta>> {
        use std::collections::{BTreeMap, HashSet};
        let mut dirs: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for m in &metas {
            let (dir, name) = split_location(&m.location);
            dirs.entry(dir).or_default().insert(name, m.size);
        }
        let mut hidden: HashSet<String> = HashSet::new();
        for (dir, listing) in &dirs {
            if !listing.contains_key(crate::lake::compact::MANIFEST) {
                continue;
            }
            let path = StorePath::parse(format!("{dir}/{}", crate::lake::compact::MANIFEST))?;
            // Listed a moment ago, and manifests are never deleted: an error here fails the
            // query rather than guessing.
            let bytes = inner.get(&path).await?.bytes().await?;
            let manifest: crate::lake::compact::Manifest =
                serde_json::from_slice(&bytes).map_err(|source| os::Error::Generic {
                    store: "kms-audit lake",
                    source: Box::new(crate::lake::compact::CompactError::Manifest {
                        path: path.to_string(),
                        source,
                    }),
                })?;
            for name in crate::lake::compact::hidden_files(listing, &manifest) {
                hidden.insert(format!("{dir}/{name}"));
            }
        }
        Ok(metas
            .into_iter()
            .filter(|m| !hidden.contains(m.location.as_ref()))
            .collect())
    }
}

fn split_location(p: &StorePath) -> (String, String) {
    let s = p.as_ref();
    match s.rsplit_once('/') {
        Some((d, n)) => (d.to_owned(), n.to_owned()),
        None => (String::new(), s.to_owned()),
    }
}

impl std::fmt::Display for CompactionAwareStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CompactionAware({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for CompactionAwareStore {
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
        let inner = self.inner.clone();
        let listing = self.inner.list(prefix);
        futures::stream::once(async move {
            let metas: Vec<ObjectMeta> = listing
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<os::Result<_>>()?;
            CompactionAwareStore::filter(&inner, metas).await
        })
        .flat_map(|r: os::Result<Vec<ObjectMeta>>| match r {
            Ok(v) => futures::stream::iter(v.into_iter().map(Ok).collect::<Vec<_>>()),
            Err(e) => futures::stream::iter(vec![Err(e)]),
        })
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&StorePath>) -> os::Result<ListResult> {
        let mut r = self.inner.list_with_delimiter(prefix).await?;
        r.objects = CompactionAwareStore::filter(&self.inner, r.objects).await?;
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
pub fn open_s3(aws: &crate::s3::Aws, uri: &crate::s3::S3Uri) -> Result<SessionContext, QueryError> {
    use datafusion::execution::object_store::ObjectStoreUrl;
    let ctx = new_context();
    let store = crate::s3::object_store(aws, &uri.bucket).map_err(DataFusionError::from)?;
    let store = Arc::new(CompactionAwareStore::new(store));
    let url = ObjectStoreUrl::parse(format!("s3://{}", uri.bucket))?;
    ctx.register_object_store(url.as_ref(), store);
    let prefix = uri.key.trim_matches('/');
    let location = if prefix.is_empty() {
        format!("s3://{}", uri.bucket)
    } else {
        format!("s3://{}/{prefix}", uri.bucket)
    };
    register_events(&ctx, &location)?;
    Ok(ctx)
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
