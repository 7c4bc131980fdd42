//! The `ingest` Lambda binary: builds the clients once, then serves invocations.

use ingest_fn::{Handler, IngestEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_common::init_logging();
    let handler = Handler::from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<IngestEvent>| {
        let handler = handler.clone();
        async move { handler.handle(event).await.map_err(Error::from) }
    }))
    .await
}
