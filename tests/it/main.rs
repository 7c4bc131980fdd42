//! kms-audit integration tests: one binary, a module per topic.

mod aws;
mod compact;
mod detect_fn;
mod detections;
mod docs;
mod fixtures;
mod lambda;
mod pipeline;
mod reader_props;
mod report;
mod sinks;
mod template;
mod udfs;
