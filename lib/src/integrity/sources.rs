//! Evidence from objects read now: digests parsed, logs hashed (streamed, in parallel).

use rayon::prelude::*;

use super::{Evidence, SeenLog, digest};
use crate::ingest::SourceObject;
use crate::ingest::object_name::{ObjectKind, SkipReason, classify_name};

/// Reads every digest and hashes every CloudTrail log among `objects` (other objects are
/// left out). A log that cannot be read is evidence too: a finding if a digest lists it.
pub fn evidence_from_sources<S: SourceObject>(objects: &[S]) -> Evidence {
    enum Read {
        Digest(Box<digest::Digest>),
        Log(String, SeenLog),
    }
    let read: Vec<Read> = objects
        .par_iter()
        .filter_map(|o| match classify_name(o.uri()) {
            ObjectKind::Skip(SkipReason::Digest) => {
                Some(Read::Digest(Box::new(digest::read_digest_or_reason(o))))
            }
            ObjectKind::Log(name) => Some(Read::Log(
                name.canonical,
                SeenLog {
                    source_uri: o.uri().to_owned(),
                    sha256: digest::hash_object(o).map_err(|e| e.to_string()),
                },
            )),
            _ => None,
        })
        .collect();
    let mut ev = Evidence::default();
    for r in read {
        match r {
            Read::Digest(d) => ev.add_digest(*d),
            Read::Log(c, seen) => {
                ev.logs.entry(c).or_insert(seen);
            }
        }
    }
    ev
}
