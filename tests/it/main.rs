//! kms-audit integration tests: one binary, a module per topic.

mod aws;
mod compact;
mod controls;
mod detect_fn;
mod detections;
mod docs;
mod findings;
mod fixtures;
mod integrity;
mod lake;
mod lambda;
mod pipeline;
mod policies;
mod reader_props;
mod report;
mod sinks;
mod template;
mod udfs;

/// A tokio runtime for the tests that query through DataFusion.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Gzips bytes (as CloudTrail delivers them).
pub fn gz(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gz");
    e.finish().expect("gz")
}
