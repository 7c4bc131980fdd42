//! Arbitrary bytes through the whole per-record path: gzip detection, record splitting,
//! the KMS test, the lenient parse and the Arrow batch. It must never panic, and every
//! record must be accounted for.
#![no_main]

use kms_audit::ingest::batch::EventBatchBuilder;
use kms_audit::ingest::reader::{Item, RecordReader, decompressing};
use kms_audit::ingest::record::{Outcome, classify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = decompressing(std::io::Cursor::new(data.to_vec())) else {
        return;
    };
    let mut reader = RecordReader::new(src);
    let mut builder = EventBatchBuilder::with_capacity(16);
    let (mut records, mut accounted) = (0u64, 0u64);
    while let Ok(Some(item)) = reader.next_item() {
        records += 1;
        match item {
            Item::Object(bytes) => match classify(bytes, "fuzz") {
                Outcome::Kms(e) => {
                    builder.append(&e);
                    accounted += 1;
                }
                Outcome::Skipped | Outcome::Rejected(_) => accounted += 1,
            },
            Item::NotAnObject(_) => accounted += 1,
        }
    }
    assert_eq!(records, accounted);
    builder.finish().expect("a batch of accepted events always builds");
});
