//! CloudTrail object names.
//!
//! CloudTrail delivers to
//! `[prefix/]AWSLogs/[o-orgid/]<account>/CloudTrail/<region>/YYYY/MM/DD/<account>_CloudTrail_<region>_<YYYYMMDDTHHmmZ>_<unique>.json.gz`
//! with digests under `CloudTrail-Digest/` and Insights events under `CloudTrail-Insight/`.
//! [`classify_name`] tells those apart; [`ObjectName::parse`] extracts the parts of a log
//! object's name.

/// What an object is, judged by its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectKind {
    /// A CloudTrail log file (follows the layout).
    Log(ObjectName),
    /// A name that does not follow the layout but looks like JSON records (an export):
    /// read it and let the content decide.
    Json,
    /// Not something to ingest; the reason says why.
    Skip(SkipReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    Digest,
    /// A `<digest>.signature` file: read with its digest.
    Signature,
    Insight,
    NotJson,
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SkipReason::Digest => "CloudTrail digest file (no events)",
            SkipReason::Signature => "signature of a CloudTrail digest (read with the digest)",
            SkipReason::Insight => "CloudTrail Insights file (not API events)",
            SkipReason::NotJson => "not a CloudTrail log or JSON file",
        })
    }
}

/// The parts of a CloudTrail log object key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectName {
    /// Everything before `AWSLogs/` (without the trailing slash), if any.
    pub prefix: Option<String>,
    /// The organization id of an organization trail (`o-...`).
    pub org_id: Option<String>,
    /// The account in the path (can differ from the records' recipientAccountId).
    pub account: String,
    pub region: String,
    /// `YYYY-MM-DD` from the path.
    pub date: String,
    /// The delivery stamp `YYYYMMDDTHHmmZ` from the file name.
    pub stamp: String,
    /// The 16-character unique suffix.
    pub unique: String,
    /// The key from `AWSLogs/` on: identical for the same object wherever it is copied.
    pub canonical: String,
}

fn is_digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

impl ObjectName {
    /// Parses a log object key or path. Returns None unless it follows the layout exactly.
    pub fn parse(key: &str) -> Option<ObjectName> {
        // Validated on borrowed parts before anything is allocated: a run parses each
        // object's name a few times, and `format!` and a `Vec` of parts cost more than the
        // checks.
        let key = forward_slashes(key);
        let at = find_segment(&key, "AWSLogs")?;
        let prefix = key[..at].trim_end_matches('/');
        let canonical = &key[at..];
        // AWSLogs / [o-org /] account / CloudTrail / region / Y / M / D / file
        let mut parts = [""; 9];
        let mut n = 0;
        for part in canonical.split('/') {
            *parts.get_mut(n)? = part;
            n += 1;
        }
        let (org_id, parts) = match n {
            9 if parts[1].starts_with("o-") => (
                Some(parts[1]),
                [
                    parts[0], parts[2], parts[3], parts[4], parts[5], parts[6], parts[7], parts[8],
                ],
            ),
            8 => (
                None,
                [
                    parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], parts[6], parts[7],
                ],
            ),
            _ => return None,
        };
        if parts[2] != "CloudTrail" {
            return None;
        }
        let (account, region, y, m, d, file) =
            (parts[1], parts[3], parts[4], parts[5], parts[6], parts[7]);
        if !is_digits(account, 12) || !is_digits(y, 4) || !is_digits(m, 2) || !is_digits(d, 2) {
            return None;
        }
        let stem = file
            .strip_suffix(".json.gz")
            .or_else(|| file.strip_suffix(".json"))?;
        // `<account>_CloudTrail_<region>_<stamp>_<unique>`
        let rest = stem
            .strip_prefix(account)?
            .strip_prefix("_CloudTrail_")?
            .strip_prefix(region)?
            .strip_prefix('_')?;
        let (stamp, unique) = rest.split_once('_')?;
        if stamp.len() != 14 || !stamp.ends_with('Z') || unique.is_empty() {
            return None;
        }
        Some(ObjectName {
            prefix: (!prefix.is_empty()).then(|| prefix.to_owned()),
            org_id: org_id.map(str::to_owned),
            account: account.to_owned(),
            region: region.to_owned(),
            date: [y, m, d].join("-"),
            stamp: stamp.to_owned(),
            unique: unique.to_owned(),
            canonical: canonical.to_owned(),
        })
    }
}

/// Whether [`classify_name`] says digest, without parsing a log's name.
pub fn is_digest_name(key: &str) -> bool {
    let norm = forward_slashes(key);
    let file = norm.rsplit('/').next().unwrap_or(&norm);
    not_a_log(&norm, file) == Some(SkipReason::Digest)
}

/// The signature, digest and Insights files of CloudTrail's layout, by their names.
fn not_a_log(norm: &str, file: &str) -> Option<SkipReason> {
    if file.ends_with(".json.gz.signature") || file.ends_with(".json.signature") {
        return Some(SkipReason::Signature);
    }
    if find_segment(norm, "CloudTrail-Digest").is_some() || file.contains("_CloudTrail-Digest_") {
        return Some(SkipReason::Digest);
    }
    if find_segment(norm, "CloudTrail-Insight").is_some() || file.contains("_CloudTrail-Insight_") {
        return Some(SkipReason::Insight);
    }
    None
}

/// `key` with Windows separators made `/` (a copy only when it has any).
fn forward_slashes(key: &str) -> std::borrow::Cow<'_, str> {
    if key.contains('\\') {
        key.replace('\\', "/").into()
    } else {
        key.into()
    }
}

/// The key from its `AWSLogs/` segment on: the same for an object wherever it is copied
/// (`s3://bucket/prefix/AWSLogs/...`, `/copy/AWSLogs/...`).
pub fn canonical_key(key: &str) -> Option<String> {
    let key = forward_slashes(key);
    let at = find_segment(&key, "AWSLogs")?;
    Some(key[at..].to_owned())
}

/// Byte index of a whole path segment.
fn find_segment(path: &str, segment: &str) -> Option<usize> {
    let mut from = 0;
    // memchr's search, not `str::find`, whose two-way searcher is built for every call.
    while let Some(i) = memchr::memmem::find(&path.as_bytes()[from..], segment.as_bytes()) {
        let at = from + i;
        let before_ok = at == 0 || path.as_bytes()[at - 1] == b'/';
        let after = at + segment.len();
        let after_ok = path.as_bytes().get(after) == Some(&b'/');
        if before_ok && after_ok {
            return Some(at);
        }
        from = after;
    }
    None
}

/// Classifies an object by its key or path.
pub fn classify_name(key: &str) -> ObjectKind {
    let norm = forward_slashes(key);
    let file = norm.rsplit('/').next().unwrap_or(&norm);
    if let Some(reason) = not_a_log(&norm, file) {
        return ObjectKind::Skip(reason);
    }
    if let Some(name) = ObjectName::parse(&norm) {
        return ObjectKind::Log(name);
    }
    let lower = file.to_ascii_lowercase();
    if [
        ".json.gz",
        ".json",
        ".jsonl",
        ".ndjson",
        ".jsonl.gz",
        ".ndjson.gz",
    ]
    .iter()
    .any(|ext| lower.ends_with(ext))
    {
        ObjectKind::Json
    } else {
        ObjectKind::Skip(SkipReason::NotJson)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/01/111122223333_CloudTrail_us-east-1_20261101T1205Z_AbCdEfGh12345678.json.gz";

    #[test]
    fn parses_the_documented_layout() {
        let n = ObjectName::parse(LOG).expect("log");
        assert_eq!(n.account, "111122223333");
        assert_eq!(n.region, "us-east-1");
        assert_eq!(n.date, "2026-11-01");
        assert_eq!(n.stamp, "20261101T1205Z");
        assert_eq!(n.unique, "AbCdEfGh12345678");
        assert_eq!(n.prefix, None);
        assert_eq!(n.org_id, None);
        assert_eq!(n.canonical, LOG);
    }

    #[test]
    fn prefix_and_organization() {
        let key = format!(
            "s3://trail-bucket/team/logs/AWSLogs/o-abc123def4/{}",
            &LOG[8..]
        );
        let n = ObjectName::parse(&key).expect("org log");
        assert_eq!(n.prefix.as_deref(), Some("s3://trail-bucket/team/logs"));
        assert_eq!(n.org_id.as_deref(), Some("o-abc123def4"));
        assert_eq!(n.account, "111122223333");
        assert!(
            n.canonical
                .starts_with("AWSLogs/o-abc123def4/111122223333/")
        );
    }

    #[test]
    fn the_file_account_must_match_the_path() {
        let bad = LOG.replace("111122223333_CloudTrail", "999999999999_CloudTrail");
        assert_eq!(ObjectName::parse(&bad), None);
        assert_eq!(classify_name(&bad), ObjectKind::Json);
    }

    #[test]
    fn classification() {
        assert!(matches!(classify_name(LOG), ObjectKind::Log(_)));
        assert_eq!(
            classify_name(
                "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/11/01/111122223333_CloudTrail-Digest_us-east-1_trail_us-east-1_20261101T120000Z.json.gz"
            ),
            ObjectKind::Skip(SkipReason::Digest)
        );
        assert_eq!(
            classify_name("AWSLogs/111122223333/CloudTrail-Insight/us-east-1/2026/11/01/x.json.gz"),
            ObjectKind::Skip(SkipReason::Insight)
        );
        assert_eq!(classify_name("exports/events.ndjson"), ObjectKind::Json);
        assert_eq!(classify_name("C:\\logs\\events.JSON"), ObjectKind::Json);
        assert_eq!(
            classify_name("AWSLogs/README.txt"),
            ObjectKind::Skip(SkipReason::NotJson)
        );
        assert_eq!(
            classify_name(".DS_Store"),
            ObjectKind::Skip(SkipReason::NotJson)
        );
        // "AWSLogsX" is not the AWSLogs segment.
        assert_eq!(
            ObjectName::parse(&format!("x/AWSLogsX/{}", &LOG[8..])),
            None
        );
        // Nor are longer ones, or nine segments without an organization.
        assert_eq!(
            ObjectName::parse(&LOG.replace("/CloudTrail/", "/CloudTrail/x/")),
            None
        );
        assert_eq!(
            ObjectName::parse(&LOG.replace("AWSLogs/", "AWSLogs/x-1/")),
            None
        );
        // Truncated layouts are not logs.
        assert_eq!(
            ObjectName::parse("AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/x.json.gz"),
            None
        );
    }

    #[test]
    fn is_digest_name_agrees_with_classify_name() {
        let digest = "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/11/01/111122223333_CloudTrail-Digest_us-east-1_trail_us-east-1_20261101T120000Z.json.gz";
        for name in [
            LOG,
            digest,
            &format!("C:\\copy\\{}", digest.replace('/', "\\")),
            &format!("{digest}.signature"),
            "exports/111122223333_CloudTrail-Digest_us-east-1_x.json.gz",
            "AWSLogs/111122223333/CloudTrail-Insight/us-east-1/2026/11/01/x.json.gz",
            "exports/events.ndjson",
        ] {
            assert_eq!(
                is_digest_name(name),
                classify_name(name) == ObjectKind::Skip(SkipReason::Digest),
                "{name}"
            );
        }
        assert!(is_digest_name(digest));
    }
}
