//! The `report` Lambda binary: builds the clients once, then serves scheduled invocations.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use report_fn::Reporter;
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
        .without_time()
        .with_target(false)
        .init();
    let reporter = Reporter::from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let reporter = reporter.clone();
        async move { reporter.handle(event).await.map_err(Error::from) }
    }))
    .await
}
