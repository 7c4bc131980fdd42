//! Property tests of the streaming reader: whatever the framing (envelope, bare array,
//! NDJSON), whitespace, gzip or read sizes, it yields exactly the records serde_json sees,
//! and on arbitrary bytes it returns an error instead of panicking.

use std::io::{self, Read, Write};

use kms_audit::ingest::reader::{Item, RecordReader, decompressing};
use proptest::prelude::*;
use serde_json::Value;

/// A reader that returns at most `n` bytes per call.
struct Trickle {
    data: Vec<u8>,
    pos: usize,
    n: usize,
}

impl Read for Trickle {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.n.min(out.len()).min(self.data.len() - self.pos);
        out[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[ -~\\u{e9}\\u{2603}\"\\\\{}\\[\\]]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z\"{}]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_record() -> impl Strategy<Value = Value> {
    (
        prop::collection::btree_map("[a-z]{1,8}", arb_value(), 0..5),
        any::<bool>(),
    )
        .prop_map(|(m, kms)| {
            let mut o: serde_json::Map<String, Value> = m.into_iter().collect();
            o.insert(
                "eventSource".into(),
                Value::from(if kms {
                    "kms.amazonaws.com"
                } else {
                    "s3.amazonaws.com"
                }),
            );
            Value::Object(o)
        })
}

#[derive(Debug, Clone, Copy)]
enum Framing {
    Envelope,
    Array,
    Ndjson,
}

fn frame(records: &[Value], framing: Framing, ws: &str) -> Vec<u8> {
    let body: Vec<String> = records.iter().map(|r| r.to_string()).collect();
    let s = match framing {
        Framing::Envelope => format!(
            "{ws}{{{ws}\"Records\"{ws}:{ws}[{ws}{}{ws}]{ws},\"tail\":{{\"x\":[1]}}}}{ws}",
            body.join(&format!("{ws},{ws}"))
        ),
        Framing::Array => format!("{ws}[{}]{ws}", body.join(&format!(",{ws}"))),
        Framing::Ndjson => body.iter().map(|b| format!("{b}\n{ws}")).collect(),
    };
    s.into_bytes()
}

fn read_all(data: Vec<u8>, n: usize) -> Result<Vec<Value>, String> {
    let src = decompressing(Trickle { data, pos: 0, n }).map_err(|e| e.to_string())?;
    let mut r = RecordReader::new(src);
    let mut out = Vec::new();
    while let Some(item) = r.next_item().map_err(|e| e.to_string())? {
        match item {
            Item::Object(b) => out.push(serde_json::from_slice(b).map_err(|e| e.to_string())?),
            Item::NotAnObject(b) => return Err(format!("not an object: {b:?}")),
        }
    }
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn splits_exactly_the_records(
        records in prop::collection::vec(arb_record(), 0..12),
        framing in prop_oneof![Just(Framing::Envelope), Just(Framing::Array), Just(Framing::Ndjson)],
        ws in prop_oneof![Just(""), Just(" "), Just("\n\t ")],
        n in 1usize..300,
        gzip in any::<bool>(),
    ) {
        let mut data = frame(&records, framing, ws);
        if gzip {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&data).expect("gz");
            data = e.finish().expect("gz");
        }
        let got = read_all(data, n).map_err(TestCaseError::fail)?;
        prop_assert_eq!(got, records);
    }

    #[test]
    fn never_panics_on_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..400), n in 1usize..64) {
        let _ = read_all(data, n);
    }

    #[test]
    fn truncation_is_always_detected(
        records in prop::collection::vec(arb_record(), 1..6),
        cut in 1usize..1000,
    ) {
        let data = frame(&records, Framing::Envelope, "");
        let cut = 1 + cut % (data.len() - 1);
        // Cutting anywhere before the closing brace of the envelope must be an error
        // (cuts inside the optional tail member's whitespace do not exist here).
        let result = read_all(data[..cut].to_vec(), 7);
        prop_assert!(result.is_err(), "cut at {} of {}: {:?}", cut, data.len(), result);
    }
}
