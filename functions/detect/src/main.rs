//! The `detect` Lambda binary: builds the clients once, then serves scheduled invocations.

use detect_fn::Detector;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_common::init_logging();
    let detector = Detector::from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let detector = detector.clone();
        async move { detector.handle(event).await.map_err(Error::from) }
    }))
    .await
}
