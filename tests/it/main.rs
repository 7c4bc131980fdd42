//! kms-audit integration tests: one binary, a module per topic.

mod detections;
mod docs;
mod fixtures;
mod pipeline;
mod reader_props;
mod sinks;
mod udfs;
