//! The `ingest` Lambda binary: builds the clients once, then serves invocations.

use ingest_fn::Handler;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .with_ansi(false)
        .without_time() // CloudWatch stamps every line
        .with_target(false)
        .init();
    let handler = Handler::from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let handler = handler.clone();
        async move { handler.handle(event).await.map_err(Error::from) }
    }))
    .await
}
