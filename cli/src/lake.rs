//! Opening a lake (a directory or `s3://bucket/prefix`) for the commands.

use std::sync::Arc;

use anyhow::{Context, Result};
use datafusion::prelude::SessionContext;
use kms_audit::lake::table::AsOf;
use kms_audit::lake::{LakeStore, LocalLake};
use kms_audit::s3::{Aws, S3Lake, S3Uri};

/// A lake and what commands need to work with it: the store, a tokio runtime, and the AWS
/// configuration when anything involved lives in S3.
#[derive(Debug)]
pub struct Lake {
    pub rt: tokio::runtime::Runtime,
    pub aws: Option<Aws>,
    pub store: Arc<dyn LakeStore>,
    location: String,
    local: Option<LocalLake>,
    s3: Option<S3Uri>,
}

impl Lake {
    /// Opens the lake at `location`; loads the AWS configuration when the lake or
    /// `more_s3` (other S3 locations of the command, such as sources) need it.
    pub fn open(location: &str, more_s3: bool) -> Result<Lake> {
        let rt = runtime()?;
        let s3 = S3Uri::parse(location);
        if s3.is_none() && location.contains("://") {
            anyhow::bail!("lake {location}: a lake is a directory or an s3://bucket/prefix");
        }
        let aws = if s3.is_some() || more_s3 {
            Some(rt.block_on(Aws::load()))
        } else {
            None
        };
        let (store, local): (Arc<dyn LakeStore>, _) = match (&s3, &aws) {
            (Some(uri), Some(aws)) => {
                let _guard = rt.enter();
                let lake =
                    S3Lake::open(aws, uri).with_context(|| format!("opening lake {location}"))?;
                (Arc::new(lake), None)
            }
            _ => {
                let lake = LocalLake::open(location)
                    .with_context(|| format!("opening lake {location}"))?;
                (Arc::new(lake.clone()), Some(lake))
            }
        };
        Ok(Lake {
            rt,
            aws,
            store,
            location: location.to_owned(),
            local,
            s3,
        })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// A DataFusion session with `kms_events` over this lake's latest version.
    pub fn query(&self) -> Result<SessionContext> {
        self.query_as_of(&AsOf::Latest)
    }

    /// A DataFusion session over one version of this lake's tables.
    pub fn query_as_of(&self, as_of: &AsOf) -> Result<SessionContext> {
        let _guard = self.rt.enter();
        let ctx = match (&self.local, &self.s3, &self.aws) {
            (Some(local), _, _) => kms_audit::sql::open_local_as_of(local.root(), as_of)?,
            (None, Some(uri), Some(aws)) => {
                self.rt.block_on(kms_audit::sql::open_s3(aws, uri, as_of))?
            }
            _ => anyhow::bail!("lake {}: cannot be queried", self.location),
        };
        Ok(ctx)
    }
}

/// The tokio runtime of a command (the AWS SDK and DataFusion are async).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
