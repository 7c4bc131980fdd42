//! The `report` Lambda binary: builds the clients once, then serves scheduled invocations.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use report_fn::Reporter;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_common::init_logging();
    let reporter = Reporter::from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let reporter = reporter.clone();
        async move { reporter.handle(event).await.map_err(Error::from) }
    }))
    .await
}
