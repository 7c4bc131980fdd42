//! Amazon S3 and S3-compatible stores (feature `aws`): CloudTrail objects as sources, the
//! lake in a bucket, and the object store DataFusion reads the lake through.
//!
//! Credentials, region and endpoint come from the standard AWS chain (environment,
//! profiles, SSO, container and instance roles). `AWS_ENDPOINT_URL` (or
//! `AWS_ENDPOINT_URL_S3`) points every client at another endpoint, a local S3-compatible
//! server or a VPC endpoint, and then switches to path-style addressing.
//!
//! The SDK is async and the ingest path is synchronous (it runs on rayon's threads), so
//! the types here hold a tokio [`Handle`] and bridge: object bodies are streamed through
//! [`SyncIoBridge`], never buffered whole.

use std::future::Future;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio_util::io::SyncIoBridge;

use crate::ingest::object_name::{ObjectKind, SkipReason, classify_name};
use crate::ingest::{SkippedObject, SourceObject};
use crate::lake::{LakeError, LakeFile, LakeStore};

/// Files up to this size are uploaded with one `PutObject`; larger ones in parts of this
/// size (S3's minimum part size is 5 MiB).
pub const MULTIPART_PART_SIZE: u64 = 16 * 1024 * 1024;

/// `s3://bucket/key-or-prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Uri {
    pub bucket: String,
    /// The key or prefix, without a leading `/` (may be empty).
    pub key: String,
}

impl S3Uri {
    /// Parses `s3://bucket[/key]`; `None` for anything else.
    pub fn parse(uri: &str) -> Option<S3Uri> {
        let rest = uri.strip_prefix("s3://")?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return None;
        }
        Some(S3Uri {
            bucket: bucket.to_owned(),
            key: key.trim_start_matches('/').to_owned(),
        })
    }

    /// The key as a prefix that ends in `/` (empty stays empty).
    pub fn dir_prefix(&self) -> String {
        let k = self.key.trim_end_matches('/');
        if k.is_empty() {
            String::new()
        } else {
            format!("{k}/")
        }
    }
}

impl std::fmt::Display for S3Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// Whether a location is an `s3://` URI.
pub fn is_s3(uri: &str) -> bool {
    uri.starts_with("s3://")
}

/// The AWS configuration and the S3 client built from it, once per process (a Lambda cold
/// start, a CLI run).
#[derive(Debug, Clone)]
pub struct Aws {
    pub config: SdkConfig,
    pub s3: Client,
}

/// The region used when the chain names none (a local endpoint needs one to sign).
pub(crate) const FALLBACK_REGION: &str = "us-east-1";

impl Aws {
    /// Loads the standard AWS configuration chain.
    pub async fn load() -> Aws {
        let loaded = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let config = if loaded.region().is_none() {
            loaded
                .into_builder()
                .region(aws_config::Region::from_static(FALLBACK_REGION))
                .build()
        } else {
            loaded
        };
        Aws::from_config(config)
    }

    /// An S3 client for a configuration: path-style addressing when an endpoint is set.
    pub fn from_config(config: SdkConfig) -> Aws {
        let s3_config = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(config.endpoint_url().is_some())
            .build();
        Aws {
            s3: Client::from_conf(s3_config),
            config,
        }
    }

    /// The endpoint every client is pointed at, when not AWS's own.
    pub fn endpoint(&self) -> Option<&str> {
        self.config.endpoint_url()
    }

    pub fn region(&self) -> &str {
        self.config
            .region()
            .map(|r| r.as_ref())
            .unwrap_or(FALLBACK_REGION)
    }
}

/// Runs a future to completion from synchronous code, whether or not the calling thread is
/// inside a tokio runtime.
pub(crate) fn block_on<F>(handle: &Handle, f: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    match Handle::try_current() {
        Err(_) => handle.block_on(f),
        Ok(current) if current.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(f))
        }
        // A current-thread runtime cannot block in place: wait on another thread.
        Ok(_) => std::thread::scope(|s| {
            s.spawn(|| handle.block_on(f))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }),
    }
}

/// The full text of an SDK error (the top-level `Display` is only "service error").
fn describe<E, R>(e: &SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    DisplayErrorContext(e).to_string()
}

/// Maps an S3 error to an `io::Error` whose kind tells whether retrying can help:
/// `NotFound` (the object is gone) and `PermissionDenied` cannot; throttling, 5xx and
/// network trouble can (`Other`, `TimedOut`).
fn s3_io_error<E>(what: &str, e: SdkError<E, HttpResponse>) -> io::Error
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    let kind = match (e.code(), status, &e) {
        (Some("NoSuchKey" | "NoSuchBucket" | "NotFound"), _, _) | (_, Some(404), _) => {
            io::ErrorKind::NotFound
        }
        (Some("AccessDenied" | "AllAccessDisabled" | "InvalidObjectState"), _, _)
        | (_, Some(403), _) => io::ErrorKind::PermissionDenied,
        (_, _, SdkError::TimeoutError(_)) => io::ErrorKind::TimedOut,
        _ => io::ErrorKind::Other,
    };
    let detail = describe(&e);
    io::Error::new(
        kind,
        StepError {
            what: what.to_owned(),
            detail,
            source: Box::new(e),
        },
    )
}

/// A step of the S3 adapter that failed: what it was doing, the cause's whole text (SDK
/// errors show only "service error" at the top), and the cause itself.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {detail}")]
struct StepError {
    what: String,
    detail: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

/// An I/O error with what was being done, keeping its kind (retryable or not) and cause.
fn step_error<E>(what: String, e: E) -> io::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    io::Error::other(StepError {
        what,
        detail: e.to_string(),
        source: Box::new(e),
    })
}

/// One object in a bucket, read with `GetObject` as a stream.
#[derive(Debug, Clone)]
pub struct S3Object {
    client: Client,
    handle: Handle,
    bucket: String,
    key: String,
    uri: String,
    size: Option<u64>,
    /// The ETag `GetObject` answered with (recorded in the `objects` table).
    etag: std::sync::OnceLock<String>,
    /// The `signature` metadata CloudTrail puts on digest objects.
    signature: std::sync::OnceLock<String>,
}

impl S3Object {
    pub fn new(aws: &Aws, handle: Handle, bucket: &str, key: &str, size: Option<u64>) -> Self {
        S3Object {
            client: aws.s3.clone(),
            handle,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            uri: format!("s3://{bucket}/{key}"),
            size,
            etag: std::sync::OnceLock::new(),
            signature: std::sync::OnceLock::new(),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }
}

impl SourceObject for S3Object {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn size(&self) -> Option<u64> {
        self.size
    }

    fn etag(&self) -> Option<String> {
        self.etag.get().cloned()
    }

    fn signature(&self) -> Option<String> {
        self.signature.get().cloned()
    }

    fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        let request = self.client.get_object().bucket(&self.bucket).key(&self.key);
        let out = block_on(&self.handle, request.send())
            .map_err(|e| s3_io_error(&format!("GetObject {}", self.uri), e))?;
        if let Some(tag) = out.e_tag() {
            let _ = self.etag.set(tag.trim_matches('"').to_owned());
        }
        if let Some(sig) = out.metadata().and_then(|m| m.get("signature")) {
            let _ = self.signature.set(sig.trim().to_ascii_lowercase());
        }
        let body: Pin<Box<dyn tokio::io::AsyncRead + Send>> = Box::pin(out.body.into_async_read());
        Ok(Box::new(SyncIoBridge::new_with_handle(
            body,
            self.handle.clone(),
        )))
    }
}

/// Lists the keys (and sizes) under a prefix, every page.
pub async fn list_keys(
    client: &Client,
    bucket: &str,
    prefix: &str,
) -> io::Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let resp = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| s3_io_error(&format!("ListObjectsV2 s3://{bucket}/{prefix}"), e))?;
        for o in resp.contents() {
            if let Some(key) = o.key() {
                let size = o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
                out.push((key.to_owned(), size));
            }
        }
        match resp.next_continuation_token() {
            Some(t) if resp.is_truncated() == Some(true) => token = Some(t.to_owned()),
            _ => break,
        }
    }
    Ok(out)
}

/// Expands an `s3://bucket/prefix` into objects to ingest and objects skipped by name (as
/// [`crate::ingest::local_sources`] does for directories): logs, JSON files and digests. A
/// URI naming one object exactly is read unless it is an Insights file.
pub async fn s3_sources(aws: &Aws, uri: &S3Uri) -> io::Result<(Vec<S3Object>, Vec<SkippedObject>)> {
    let handle = Handle::current();
    let keys = list_keys(&aws.s3, &uri.bucket, &uri.key).await?;
    let mut objects = Vec::new();
    let mut skipped = Vec::new();
    let exact = keys.len() == 1 && keys[0].0 == uri.key;
    for (key, size) in keys {
        if key.ends_with('/') {
            continue; // a "folder" placeholder
        }
        let full = format!("s3://{}/{key}", uri.bucket);
        match (classify_name(&full), exact) {
            (ObjectKind::Log(_) | ObjectKind::Json | ObjectKind::Skip(SkipReason::Digest), _)
            | (ObjectKind::Skip(SkipReason::NotJson), true) => objects.push(S3Object::new(
                aws,
                handle.clone(),
                &uri.bucket,
                &key,
                Some(size),
            )),
            (ObjectKind::Skip(reason), _) => skipped.push(SkippedObject { uri: full, reason }),
        }
    }
    Ok((objects, skipped))
}

/// A lake under `s3://bucket/prefix`. Files are staged in a local temporary directory and
/// uploaded whole (multipart above [`MULTIPART_PART_SIZE`]); an S3 PUT is atomic, so a
/// reader sees the old file or the new one, never half of one.
#[derive(Debug)]
pub struct S3Lake {
    client: Client,
    handle: Handle,
    bucket: String,
    /// Key prefix of the lake, empty or ending in `/`.
    prefix: String,
    staging: tempfile::TempDir,
    /// The same bucket for the Delta tables' commits and DataFusion.
    store: Arc<dyn object_store::ObjectStore>,
}

impl S3Lake {
    /// A lake at `uri`, staging files under the system temporary directory (`/tmp` in
    /// Lambda). Must be called inside a tokio runtime, whose handle the lake keeps.
    pub fn open(aws: &Aws, uri: &S3Uri) -> Result<S3Lake, LakeError> {
        let staging = tempfile::Builder::new()
            .prefix("kms-audit-staging-")
            .tempdir()
            .map_err(|e| LakeError::Store {
                uri: uri.to_string(),
                source: step_error("creating a local staging directory".into(), e),
            })?;
        let store = object_store(aws, &uri.bucket).map_err(|e| LakeError::Store {
            uri: uri.to_string(),
            source: io::Error::other(e),
        })?;
        Ok(S3Lake {
            store,
            client: aws.s3.clone(),
            handle: Handle::current(),
            bucket: uri.bucket.clone(),
            prefix: uri.dir_prefix(),
            staging,
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The lake's key prefix (empty or ending in `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, rel: &str) -> String {
        format!("{}{rel}", self.prefix)
    }

    fn err(&self, rel: &str, source: io::Error) -> LakeError {
        LakeError::Store {
            uri: format!("s3://{}/{}", self.bucket, self.key(rel)),
            source,
        }
    }

    async fn upload(&self, staged: &Path, key: &str) -> io::Result<()> {
        let reading = |e| step_error(format!("reading staged file {}", staged.display()), e);
        let size = tokio::fs::metadata(staged).await.map_err(reading)?.len();
        if size <= MULTIPART_PART_SIZE {
            let body = ByteStream::from_path(staged)
                .await
                .map_err(|e| step_error(format!("reading staged file {}", staged.display()), e))?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(body)
                .send()
                .await
                .map_err(|e| s3_io_error("PutObject", e))?;
            return Ok(());
        }
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_io_error("CreateMultipartUpload", e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| io::Error::other("CreateMultipartUpload returned no upload id"))?
            .to_owned();
        let result = self.upload_parts(staged, key, &upload_id, size).await;
        match result {
            Ok(parts) => {
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| s3_io_error("CompleteMultipartUpload", e))?;
                Ok(())
            }
            Err(e) => {
                // Best effort; the bucket's lifecycle rule aborts what this misses.
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                Err(e)
            }
        }
    }

    async fn upload_parts(
        &self,
        staged: &Path,
        key: &str,
        upload_id: &str,
        size: u64,
    ) -> io::Result<Vec<CompletedPart>> {
        let mut parts = Vec::new();
        let mut offset = 0;
        let mut number = 1;
        while offset < size {
            let len = MULTIPART_PART_SIZE.min(size - offset);
            let body = ByteStream::read_from()
                .path(staged)
                .offset(offset)
                .length(Length::Exact(len))
                .build()
                .await
                .map_err(|e| step_error(format!("reading staged file {}", staged.display()), e))?;
            let part = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .body(body)
                .send()
                .await
                .map_err(|e| s3_io_error(&format!("UploadPart {number}"), e))?;
            parts.push(
                CompletedPart::builder()
                    .set_e_tag(part.e_tag().map(str::to_owned))
                    .part_number(number)
                    .build(),
            );
            offset += len;
            number += 1;
        }
        Ok(parts)
    }

    async fn get_bytes(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        let resp = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        let out = match resp {
            Ok(out) => out,
            Err(e) => {
                let err = s3_io_error("GetObject", e);
                return if err.kind() == io::ErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(err)
                };
            }
        };
        let data = out
            .body
            .collect()
            .await
            .map_err(|e| step_error("reading GetObject body".into(), e))?;
        Ok(Some(data.into_bytes().to_vec()))
    }
}

impl LakeStore for S3Lake {
    fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix.trim_end_matches('/'))
            .trim_end_matches('/')
            .to_owned()
    }

    fn staging_dir(&self) -> &Path {
        self.staging.path()
    }

    fn publish(&self, staged: &Path, rel: &str) -> Result<(), LakeError> {
        let key = self.key(rel);
        let result = block_on(&self.handle, self.upload(staged, &key));
        let _ = std::fs::remove_file(staged);
        result.map_err(|e| self.err(rel, e))
    }

    fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, LakeError> {
        let key = self.key(rel);
        block_on(&self.handle, self.get_bytes(&key)).map_err(|e| self.err(rel, e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<LakeFile>, LakeError> {
        let key_prefix = self.key(&format!("{}/", prefix.trim_end_matches('/')));
        let keys = block_on(
            &self.handle,
            list_keys(&self.client, &self.bucket, &key_prefix),
        )
        .map_err(|e| self.err(prefix, e))?;
        let mut out: Vec<LakeFile> = keys
            .into_iter()
            .filter(|(k, _)| !k.ends_with('/'))
            .filter_map(|(k, size)| {
                k.strip_prefix(&self.prefix).map(|rel| LakeFile {
                    rel: rel.to_owned(),
                    size,
                })
            })
            .collect();
        out.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok(out)
    }

    fn fetch(&self, rel: &str, local: &Path) -> Result<(), LakeError> {
        let key = self.key(rel);
        let fut = async {
            let out = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| s3_io_error("GetObject", e))?;
            let mut body = out.body.into_async_read();
            let mut file = tokio::fs::File::create(local)
                .await
                .map_err(|e| step_error(format!("creating {}", local.display()), e))?;
            tokio::io::copy_buf(&mut body, &mut file)
                .await
                .map_err(|e| step_error(format!("downloading to {}", local.display()), e))?;
            Ok::<_, io::Error>(())
        };
        block_on(&self.handle, fut).map_err(|e| self.err(rel, e))
    }

    fn location(&self) -> Result<crate::lake::table::Location, crate::lake::table::TableError> {
        crate::lake::table::Location::s3(
            self.store.clone(),
            &self.bucket,
            &self.prefix,
            self.handle.clone(),
        )
    }

    fn delete(&self, rel: &str) -> Result<(), LakeError> {
        let key = self.key(rel);
        let request = self.client.delete_object().bucket(&self.bucket).key(&key);
        block_on(&self.handle, request.send())
            .map(|_| ())
            .map_err(|e| self.err(rel, s3_io_error("DeleteObject", e)))
    }
}

/// Opens a lake at a location: `s3://bucket/prefix` or a local directory.
pub fn open_lake(aws: Option<&Aws>, location: &str) -> Result<Arc<dyn LakeStore>, LakeError> {
    match S3Uri::parse(location) {
        Some(uri) => {
            let aws = aws.ok_or_else(|| LakeError::NoAwsConfig {
                uri: location.to_owned(),
            })?;
            Ok(Arc::new(S3Lake::open(aws, &uri)?))
        }
        None => Ok(Arc::new(crate::lake::LocalLake::open(PathBuf::from(
            location,
        ))?)),
    }
}

/// Credentials for DataFusion's S3 object store from the SDK's provider chain, so queries
/// authenticate exactly as ingest does (profiles, SSO, roles).
#[derive(Debug)]
struct SdkCredentials(aws_credential_types::provider::SharedCredentialsProvider);

#[async_trait::async_trait]
impl object_store::CredentialProvider for SdkCredentials {
    type Credential = object_store::aws::AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<Self::Credential>> {
        use aws_credential_types::provider::ProvideCredentials;
        let c = self
            .0
            .provide_credentials()
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })?;
        Ok(Arc::new(object_store::aws::AwsCredential {
            key_id: c.access_key_id().to_owned(),
            secret_key: c.secret_access_key().to_owned(),
            token: c.session_token().map(str::to_owned),
        }))
    }
}

/// An object store for one bucket, configured like the SDK clients.
pub fn object_store(
    aws: &Aws,
    bucket: &str,
) -> Result<Arc<dyn object_store::ObjectStore>, object_store::Error> {
    let mut b = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(aws.region());
    if let Some(creds) = aws.config.credentials_provider() {
        b = b.with_credentials(Arc::new(SdkCredentials(creds)));
    }
    if let Some(endpoint) = aws.endpoint() {
        b = b
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(false)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    Ok(Arc::new(b.build()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_uris() {
        let u = S3Uri::parse("s3://trail/AWSLogs/1/").expect("uri");
        assert_eq!(u.bucket, "trail");
        assert_eq!(u.key, "AWSLogs/1/");
        assert_eq!(u.dir_prefix(), "AWSLogs/1/");
        let u = S3Uri::parse("s3://lake").expect("uri");
        assert_eq!(
            (u.bucket.as_str(), u.key.as_str(), u.dir_prefix()),
            ("lake", "", String::new())
        );
        assert_eq!(S3Uri::parse("s3:///x"), None);
        assert_eq!(S3Uri::parse("/tmp/x"), None);
        assert!(is_s3("s3://a/b") && !is_s3("./s3"));
    }
}
