//! CloudTrail log-file integrity: digest signatures, the digest chain, each log's SHA-256.
//!
//! [`verify`] judges [`Evidence`]: the digests found (their contents, SHA-256 and
//! signature) and the logs found (their SHA-256). The evidence comes from objects read
//! now ([`sources::evidence_from_sources`], `kms-audit verify SOURCE...`) or from what
//! ingest recorded in the lake's `digests` and `objects` tables
//! ([`lake::evidence_from_lake`], `kms-audit verify --lake`): the same judgement either
//! way.
//!
//! What is checked, per digest: its contents parse, it sits where it says it was written,
//! its RSA-SHA256 signature (key matched by fingerprint) over CloudTrail's signing string,
//! the previous digest it names exists and hashes to what it records; per listed log: it
//! exists and hashes to the listed value; per log found: a digest lists it when its period
//! is covered by trustworthy digests. A log whose only digest is missing or fails is
//! *unverified* (counted), never blamed: the digest is.

pub mod alerts;
pub mod digest;
pub mod keys;
pub mod lake;
pub mod sources;

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::ingest::object_name::{ObjectName, canonical_key};

pub use digest::{Digest, DigestBody, DigestName, ListedLog};
pub use keys::{PublicKey, PublicKeys};

/// A log is expected in a digest only when trustworthy digests cover the period from its
/// stamp to this much later: CloudTrail stamps a file when it writes it and the digest
/// lists it by delivery, seconds to minutes later, possibly in the next hour's digest.
pub const DELIVERY_SLACK_MICROS: i64 = 15 * 60 * 1_000_000;

/// Logs found this long after the newest digest of their account and region mean the
/// digests stopped (digests are written hourly, with or without activity).
pub const DIGEST_GAP_MICROS: i64 = 2 * 3_600 * 1_000_000;

/// What a finding says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A listed log's SHA-256 differs from the digest's (or it is no longer readable).
    LogModified,
    /// A listed log is not there.
    LogMissing,
    /// A log in a period covered by trustworthy digests that none lists (forged, or
    /// written by something other than CloudTrail).
    LogNotInDigest,
    /// A digest named as previous by the next one is not there.
    DigestMissing,
    /// A digest that is not a readable digest document.
    DigestInvalid,
    /// A digest found somewhere other than where it says it was written.
    DigestMoved,
    /// The signature does not verify (the digest was edited or forged).
    DigestSignatureInvalid,
    /// No public key has the digest's fingerprint.
    DigestKeyUnknown,
    /// The previous digest's SHA-256 (or signature) is not what the next one records.
    DigestChainBroken,
    /// No signature to check: the newest digest of a chain without S3 metadata or a
    /// `.signature` file. Not valid, not invalid.
    DigestUnverifiable,
    /// A chain starts again with no previous digest (logging or validation was off).
    DigestChainRestarted,
    /// Logs of an account and region with no digest at all.
    DigestsAbsent,
    /// Logs found well after the newest digest of their account and region.
    DigestsStopped,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::LogModified => "log_modified",
            Kind::LogMissing => "log_missing",
            Kind::LogNotInDigest => "log_not_in_digest",
            Kind::DigestMissing => "digest_missing",
            Kind::DigestInvalid => "digest_invalid",
            Kind::DigestMoved => "digest_moved",
            Kind::DigestSignatureInvalid => "digest_signature_invalid",
            Kind::DigestKeyUnknown => "digest_key_unknown",
            Kind::DigestChainBroken => "digest_chain_broken",
            Kind::DigestUnverifiable => "digest_unverifiable",
            Kind::DigestChainRestarted => "digest_chain_restarted",
            Kind::DigestsAbsent => "digests_absent",
            Kind::DigestsStopped => "digests_stopped",
        }
    }

    /// Whether it is an integrity failure (exit 1, a critical alert), rather than a
    /// limit of what could be proven.
    pub fn is_failure(self) -> bool {
        !matches!(
            self,
            Kind::DigestUnverifiable
                | Kind::DigestChainRestarted
                | Kind::DigestsAbsent
                | Kind::DigestsStopped
        )
    }
}

/// One thing found wrong or unprovable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Finding {
    pub kind: Kind,
    /// The object at fault (`s3://bucket/key` as CloudTrail wrote it, or where found).
    pub object: String,
    /// The digest that testifies (None when the finding is about a digest by itself).
    pub digest: Option<String>,
    pub detail: String,
}

/// What was looked at and how much of it is proven.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub digests: u64,
    pub digests_valid: u64,
    pub digests_unverifiable: u64,
    pub digests_failed: u64,
    /// Digests referenced by a later one and not found.
    pub digests_missing: u64,
    pub logs: u64,
    pub logs_listed: u64,
    /// Listed by a valid digest and hashing to its value.
    pub logs_verified: u64,
    pub logs_failed: u64,
    /// Found, but no trustworthy digest covers them (yet).
    pub logs_unverified: u64,
    pub failures: u64,
    pub findings: BTreeMap<String, u64>,
    /// False when no public keys were given: hashes and the chain were checked, signatures
    /// were not, and no digest counts as valid.
    pub signatures_checked: bool,
}

/// The result of [`verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    pub findings: Vec<Finding>,
    pub summary: Summary,
    /// The same counts per account and region.
    #[serde(skip)]
    pub by_chain: BTreeMap<(String, String), Summary>,
}

/// Counts for the whole and per account and region.
struct Tally {
    total: Summary,
    chains: BTreeMap<(String, String), Summary>,
}

impl Tally {
    fn add(&mut self, chain: &(String, String), f: impl Fn(&mut Summary)) {
        f(&mut self.total);
        f(self.chains.entry(chain.clone()).or_default());
    }
}

/// The account and region in a log or digest key (`s3://bucket/...` or a path).
fn chain_of_key(key: &str) -> Option<(String, String)> {
    let c = canonical_key(key)?;
    let mut parts: Vec<&str> = c.split('/').collect();
    if parts.get(1).is_some_and(|p| p.starts_with("o-")) {
        parts.remove(1);
    }
    match (parts.get(1), parts.get(2), parts.get(3)) {
        (Some(a), Some(kind), Some(r)) if kind.starts_with("CloudTrail") => {
            Some(((*a).to_owned(), (*r).to_owned()))
        }
        _ => None,
    }
}

impl Verification {
    pub fn failed(&self) -> bool {
        self.summary.failures > 0
    }
}

/// A log found: where, and its SHA-256 or why it could not be hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenLog {
    pub source_uri: String,
    pub sha256: Result<String, String>,
}

/// Digests and logs to judge, each by canonical key (from `AWSLogs/` on).
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub digests: BTreeMap<String, Digest>,
    pub logs: BTreeMap<String, SeenLog>,
}

impl Evidence {
    /// The home regions whose keys signed the digests, and the span of their periods:
    /// what to ask `cloudtrail:ListPublicKeys` for.
    pub fn key_scope(&self) -> (Vec<String>, Option<(i64, i64)>) {
        let mut regions: Vec<String> = self
            .digests
            .values()
            .filter_map(|d| d.name.as_ref().map(|n| n.home_region.clone()))
            .collect();
        regions.sort();
        regions.dedup();
        let span = self
            .digests
            .values()
            .filter_map(|d| d.body.as_ref().ok().map(|b| (b.start, b.end)))
            .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)));
        (regions, span)
    }

    /// Adds a digest unless one with its identity is already there.
    pub fn add_digest(&mut self, d: Digest) {
        self.digests.entry(d.object.clone()).or_insert(d);
    }
}

/// Which period to judge: digests overlapping it, logs stamped in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl Window {
    fn contains(&self, t: i64) -> bool {
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t <= u)
    }
    fn overlaps(&self, start: i64, end: i64) -> bool {
        self.since.is_none_or(|s| end >= s) && self.until.is_none_or(|u| start <= u)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Valid,
    Unverifiable,
    Failed,
}

/// The stamp of a log file name (`YYYYMMDDTHHmmZ`) in microseconds.
pub(crate) fn log_stamp(name: &ObjectName) -> Option<i64> {
    let s = &name.stamp;
    let text = format!(
        "{}-{}-{}T{}:{}:00Z",
        s.get(0..4)?,
        s.get(4..6)?,
        s.get(6..8)?,
        s.get(9..11)?,
        s.get(11..13)?
    );
    crate::time::parse_event_time(&text)
}

fn chain_of(d: &Digest) -> (String, String) {
    match (&d.name, &d.body) {
        (Some(n), _) => (n.account.clone(), n.region.clone()),
        (None, Ok(b)) => (b.account_id.clone().unwrap_or_default(), String::new()),
        (None, Err(_)) => (String::new(), String::new()),
    }
}

/// Judges the evidence. Findings come sorted by kind, then object.
pub fn verify(ev: &Evidence, keys: &PublicKeys, window: Window) -> Verification {
    let mut out: Vec<Finding> = Vec::new();
    let mut sum = Tally {
        total: Summary {
            signatures_checked: !keys.is_empty(),
            ..Summary::default()
        },
        chains: BTreeMap::new(),
    };
    // The digest that names each one as its previous.
    let mut next_of: HashMap<String, &Digest> = HashMap::new();
    for d in ev.digests.values() {
        if let Ok(b) = &d.body
            && let Some(prev) = b.previous_key.as_deref()
        {
            next_of.insert(canonical_key(prev).unwrap_or_else(|| prev.to_owned()), d);
        }
    }
    // Earliest start of each chain (account, region): a previous digest older than the
    // evidence is outside it, not missing.
    let mut earliest: HashMap<(String, String), i64> = HashMap::new();
    for d in ev.digests.values() {
        if let Ok(b) = &d.body {
            let e = earliest.entry(chain_of(d)).or_insert(b.start);
            *e = (*e).min(b.start);
        }
    }
    let in_scope = |d: &Digest| match (&d.body, &d.name) {
        (Ok(b), _) => window.overlaps(b.start, b.end),
        (Err(_), Some(n)) => crate::time::parse_time_arg(&n.date, 0)
            .map(|day| window.overlaps(day, day + crate::time::DAY_MICROS))
            .unwrap_or(true),
        (Err(_), None) => true,
    };

    let mut status: HashMap<&str, Status> = HashMap::new();
    for d in ev.digests.values().filter(|d| in_scope(d)) {
        let chain = chain_of(d);
        let s = judge_digest(d, keys, &ev.digests, &next_of, &earliest, &mut out);
        sum.add(&chain, |t| {
            t.digests += 1;
            match s {
                Status::Valid => t.digests_valid += 1,
                Status::Unverifiable => t.digests_unverifiable += 1,
                Status::Failed => t.digests_failed += 1,
            }
        });
        status.insert(d.object.as_str(), s);
    }

    // Listed logs, checked against trustworthy digests only: an edited digest's values
    // prove nothing about the logs it lists.
    let mut listed: HashSet<String> = HashSet::new();
    // Logs checked against a digest: whether that digest is proven (valid).
    let mut checked: HashMap<String, bool> = HashMap::new();
    for d in ev.digests.values() {
        let Ok(b) = &d.body else { continue };
        let st = status.get(d.object.as_str()).copied();
        for l in &b.logs {
            let c = canonical_key(&l.key).unwrap_or_else(|| l.key.clone());
            listed.insert(c.clone());
            if st.is_none() || st == Some(Status::Failed) || checked.contains_key(&c) {
                continue;
            }
            sum.add(&chain_of(d), |t| t.logs_listed += 1);
            let object = format!("s3://{}/{}", l.bucket, l.key);
            match ev.logs.get(&c) {
                None => out.push(Finding {
                    kind: Kind::LogMissing,
                    object,
                    digest: Some(d.display()),
                    detail: "listed by the digest, not found".into(),
                }),
                Some(seen) => match &seen.sha256 {
                    Ok(h) if *h == l.hash => {
                        checked.insert(c, st == Some(Status::Valid));
                    }
                    Ok(h) => out.push(Finding {
                        kind: Kind::LogModified,
                        object,
                        digest: Some(d.display()),
                        detail: format!(
                            "SHA-256 of {} is {h}; the digest lists {}",
                            seen.source_uri, l.hash
                        ),
                    }),
                    Err(reason) => out.push(Finding {
                        kind: Kind::LogModified,
                        object,
                        digest: Some(d.display()),
                        detail: format!("{} cannot be hashed: {reason}", seen.source_uri),
                    }),
                },
            }
        }
    }

    let failed_logs: HashSet<String> = out
        .iter()
        .filter(|f| f.kind == Kind::LogModified)
        .filter_map(|f| {
            let key = f.object.strip_prefix("s3://")?.split_once('/')?.1;
            canonical_key(key)
        })
        .collect();
    // Logs no digest lists: blamed only where trustworthy digests cover their period.
    let mut cover: HashMap<(String, String), Vec<(i64, i64)>> = HashMap::new();
    let mut newest: HashMap<(String, String), (i64, String)> = HashMap::new();
    for d in ev.digests.values() {
        let (Ok(b), Some(s)) = (&d.body, status.get(d.object.as_str())) else {
            continue;
        };
        if *s != Status::Failed {
            cover.entry(chain_of(d)).or_default().push((b.start, b.end));
        }
        let n = newest.entry(chain_of(d)).or_insert((b.end, d.display()));
        if b.end > n.0 {
            *n = (b.end, d.display());
        }
    }
    let covered = |spans: &[(i64, i64)], t: i64| spans.iter().any(|&(a, b)| a <= t && t <= b);
    let mut absent: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut stopped: BTreeMap<(String, String), (u64, i64)> = BTreeMap::new();
    for (c, seen) in &ev.logs {
        let Some(name) = ObjectName::parse(c) else {
            continue;
        };
        let Some(t) = log_stamp(&name) else { continue };
        if !window.contains(t) {
            continue;
        }
        let chain = (name.account.clone(), name.region.clone());
        sum.add(&chain, |t| t.logs += 1);
        match checked.get(c) {
            Some(true) => {
                sum.add(&chain, |t| t.logs_verified += 1);
                continue;
            }
            // Listed by a digest that is not proven (unverifiable or failed).
            Some(false) => {
                sum.add(&chain, |t| t.logs_unverified += 1);
                continue;
            }
            None if listed.contains(c) => {
                // Modified (a finding), or listed only by failed digests.
                if !failed_logs.contains(c) {
                    sum.add(&chain, |t| t.logs_unverified += 1);
                }
                continue;
            }
            None => {}
        }
        let spans = cover.get(&chain).map(Vec::as_slice).unwrap_or(&[]);
        if covered(spans, t) && covered(spans, t + DELIVERY_SLACK_MICROS) {
            out.push(Finding {
                kind: Kind::LogNotInDigest,
                object: seen.source_uri.clone(),
                digest: None,
                detail: format!(
                    "stamped {}; the digests of {} {} cover that period and none lists it",
                    crate::time::format_micros(t),
                    name.account,
                    name.region
                ),
            });
            continue;
        }
        sum.add(&chain, |t| t.logs_unverified += 1);
        match newest.get(&chain) {
            None => *absent.entry(chain).or_default() += 1,
            Some((end, _)) if t > end + DIGEST_GAP_MICROS => {
                let e = stopped.entry(chain).or_insert((0, t));
                e.0 += 1;
                e.1 = e.1.max(t);
            }
            Some(_) => {}
        }
    }
    for ((account, region), n) in absent {
        out.push(Finding {
            kind: Kind::DigestsAbsent,
            object: format!("AWSLogs/{account}/CloudTrail-Digest/{region}/"),
            digest: None,
            detail: format!(
                "{n} logs of {account} {region} and no digest: log file validation is off, or the digests are gone"
            ),
        });
    }
    for ((account, region), (n, last)) in stopped {
        let (end, digest) = newest[&(account.clone(), region.clone())].clone();
        out.push(Finding {
            kind: Kind::DigestsStopped,
            object: format!("AWSLogs/{account}/CloudTrail-Digest/{region}/"),
            digest: Some(digest),
            detail: format!(
                "{n} logs of {account} {region} up to {} and the newest digest ends {}",
                crate::time::format_micros(last),
                crate::time::format_micros(end)
            ),
        });
    }

    out.sort();
    out.dedup();
    for f in &out {
        let chain = chain_of_key(&f.object)
            .or_else(|| f.digest.as_deref().and_then(chain_of_key))
            .unwrap_or_default();
        sum.add(&chain, |t| {
            *t.findings.entry(f.kind.as_str().to_owned()).or_default() += 1;
            if f.kind.is_failure() {
                t.failures += 1;
            }
            if matches!(f.kind, Kind::LogModified | Kind::LogMissing) {
                t.logs_failed += 1;
            }
            if f.kind == Kind::DigestMissing {
                t.digests_missing += 1;
            }
        });
    }
    Verification {
        findings: out,
        summary: sum.total,
        by_chain: sum.chains,
    }
}

fn judge_digest(
    d: &Digest,
    keys: &PublicKeys,
    by_object: &BTreeMap<String, Digest>,
    next_of: &HashMap<String, &Digest>,
    earliest: &HashMap<(String, String), i64>,
    out: &mut Vec<Finding>,
) -> Status {
    let b = match &d.body {
        Ok(b) => b,
        Err(reason) => {
            out.push(Finding {
                kind: Kind::DigestInvalid,
                object: d.display(),
                digest: None,
                detail: reason.clone(),
            });
            return Status::Failed;
        }
    };
    let me = d.display();
    let mut status = Status::Valid;
    // Where it says it was written, from `AWSLogs/` on; in a copy without that layout,
    // by file name.
    let file = |k: &str| k.rsplit(['/', '\\']).next().unwrap_or(k).to_owned();
    let moved = match (canonical_key(&b.key), canonical_key(&d.object)) {
        (Some(said), Some(_)) => said != d.object,
        _ => file(&b.key) != file(&d.object),
    };
    if moved {
        out.push(Finding {
            kind: Kind::DigestMoved,
            object: me.clone(),
            digest: None,
            detail: format!("found at {}", d.source_uri),
        });
        status = Status::Failed;
    }
    let next = next_of.get(&d.object).copied();
    let next_sig = next.and_then(|n| n.body.as_ref().ok()?.previous_signature.clone());
    match d.signature.clone().or_else(|| next_sig.clone()) {
        // No keys given: the chain and the hashes are checked, signatures are not.
        _ if keys.is_empty() => {
            if status == Status::Valid {
                status = Status::Unverifiable;
            }
        }
        None => {
            out.push(Finding {
                kind: Kind::DigestUnverifiable,
                object: me.clone(),
                digest: None,
                detail: "no signature: no S3 metadata or .signature file, and no later digest records one"
                    .into(),
            });
            if status == Status::Valid {
                status = Status::Unverifiable;
            }
        }
        Some(sig) => match keys.get(&b.fingerprint) {
            None => {
                out.push(Finding {
                    kind: Kind::DigestKeyUnknown,
                    object: me.clone(),
                    digest: None,
                    detail: format!("no public key has fingerprint {}", b.fingerprint),
                });
                status = Status::Failed;
            }
            Some(key) => {
                let signed = keys::string_to_sign(
                    &b.end_text,
                    &b.bucket,
                    &b.key,
                    &d.sha256,
                    b.previous_signature.as_deref(),
                );
                if !keys::verify_signature(key, signed.as_bytes(), &sig) {
                    out.push(Finding {
                        kind: Kind::DigestSignatureInvalid,
                        object: me.clone(),
                        digest: None,
                        detail: format!(
                            "RSA-SHA256 signature does not verify with key {} (SHA-256 {})",
                            b.fingerprint, d.sha256
                        ),
                    });
                    status = Status::Failed;
                }
            }
        },
    }
    if let (Some(own), Some(theirs), Some(n)) = (&d.signature, &next_sig, next)
        && !own.eq_ignore_ascii_case(theirs)
    {
        out.push(Finding {
            kind: Kind::DigestChainBroken,
            object: me.clone(),
            digest: Some(n.display()),
            detail: "the next digest records a different signature for it".into(),
        });
    }
    match b.previous_key.as_deref() {
        Some(prev) => {
            let pc = canonical_key(prev).unwrap_or_else(|| prev.to_owned());
            let prev_uri = format!(
                "s3://{}/{prev}",
                b.previous_bucket.as_deref().unwrap_or(&b.bucket)
            );
            match by_object.get(&pc) {
                Some(p) if b.previous_hash.as_deref() != Some(p.sha256.as_str()) => {
                    out.push(Finding {
                        kind: Kind::DigestChainBroken,
                        object: p.display(),
                        digest: Some(me.clone()),
                        detail: format!(
                            "SHA-256 is {}; the next digest records {}",
                            p.sha256,
                            b.previous_hash.as_deref().unwrap_or("none")
                        ),
                    });
                }
                Some(_) => {}
                // Missing only when older digests of the chain are in the evidence.
                None if earliest
                    .get(&chain_of(d))
                    .is_some_and(|&first| first < b.start) =>
                {
                    out.push(Finding {
                        kind: Kind::DigestMissing,
                        object: prev_uri,
                        digest: Some(me.clone()),
                        detail: "named as the previous digest, not found".into(),
                    });
                }
                None => {}
            }
        }
        None => {
            if earliest
                .get(&chain_of(d))
                .is_some_and(|&first| first < b.start)
            {
                out.push(Finding {
                    kind: Kind::DigestChainRestarted,
                    object: me.clone(),
                    digest: None,
                    detail: format!(
                        "no previous digest: the chain starts again at {} (logging or validation was off before)",
                        crate::time::format_micros(b.start)
                    ),
                });
            }
        }
    }
    status
}

/// The findings as JSON lines, then `{"summary": ...}`.
pub fn json_lines(v: &Verification) -> String {
    let mut s = String::new();
    for f in &v.findings {
        s.push_str(
            &serde_json::json!({
                "kind": f.kind.as_str(),
                "object": f.object,
                "digest": f.digest,
                "detail": f.detail,
            })
            .to_string(),
        );
        s.push('\n');
    }
    s.push_str(&serde_json::json!({ "summary": v.summary }).to_string());
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000;

    fn digest(key: &str, found_at: &str, start: i64, previous: Option<&str>) -> Digest {
        Digest {
            object: canonical_key(found_at).unwrap_or_else(|| found_at.to_owned()),
            source_uri: found_at.to_owned(),
            name: DigestName::parse(found_at),
            sha256: format!("{start:064}"),
            signature: None,
            body: Ok(DigestBody {
                account_id: Some("111122223333".into()),
                start,
                end: start + H,
                end_text: String::new(),
                bucket: "b".into(),
                key: key.into(),
                fingerprint: "f".into(),
                signature_algorithm: None,
                previous_bucket: previous.map(|_| "b".into()),
                previous_key: previous.map(str::to_owned),
                previous_hash: previous.map(|_| format!("{:064}", start - H)),
                previous_signature: None,
                logs: Vec::new(),
            }),
        }
    }

    fn key(hour: u32) -> String {
        format!(
            "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/11/01/111122223333_CloudTrail-Digest_us-east-1_t_us-east-1_20261101T{hour:02}0000Z.json.gz"
        )
    }

    #[test]
    fn moved_digests_restarted_chains_and_copies_without_the_layout() {
        let mut ev = Evidence::default();
        // Found under another key than the one it names: moved.
        ev.add_digest(digest(&key(1), &format!("/copy/{}", key(2)), 0, None));
        let v = verify(&ev, &PublicKeys::default(), Window::default());
        assert_eq!(v.findings[0].kind, Kind::DigestMoved, "{:?}", v.findings);
        assert!(v.failed());

        // A chain that starts again after older digests: reported, not a failure.
        let mut ev = Evidence::default();
        ev.add_digest(digest(&key(1), &key(1), H, None));
        ev.add_digest(digest(&key(5), &key(5), 5 * H, None));
        let v = verify(&ev, &PublicKeys::default(), Window::default());
        let kinds: Vec<Kind> = v.findings.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, vec![Kind::DigestChainRestarted]);
        assert!(!v.failed());

        // A flat copy (no AWSLogs/ in its path) is judged by file name.
        let flat = format!("/flat/{}", key(1).rsplit('/').next().unwrap_or_default());
        let mut ev = Evidence::default();
        ev.add_digest(digest(&key(1), &flat, H, None));
        let v = verify(&ev, &PublicKeys::default(), Window::default());
        assert!(v.findings.is_empty(), "{:?}", v.findings);
    }
}
