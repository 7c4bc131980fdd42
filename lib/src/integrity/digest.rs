//! CloudTrail digest files: their names, their contents, and reading one.
//!
//! A digest is a gzipped JSON document CloudTrail writes hourly per account and region
//! under `CloudTrail-Digest/`. It lists the SHA-256 of every log file delivered in its
//! period and chains to the previous digest (its object, the SHA-256 of its decompressed
//! bytes, its signature). The digest itself is signed (RSA-SHA256); the signature is in the
//! object's S3 metadata, not in the file.

use std::io::{self, Read};

use serde::Deserialize;

use crate::ingest::object_name::canonical_key;
use crate::ingest::reader::decompressing;
use crate::ingest::{SourceObject, hex};

/// Larger decompressed digests are refused: an hourly digest of a busy organization
/// account-region lists a few thousand logs (~300 bytes each).
pub const MAX_DIGEST_BYTES: u64 = 64 << 20;

/// The parts of a digest object key:
/// `AWSLogs/[o-org/]<account>/CloudTrail-Digest/<region>/YYYY/MM/DD/<account>_CloudTrail-Digest_<region>_<trail>_<home region>_<YYYYMMDDTHHMMSSZ>.json.gz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestName {
    pub account: String,
    pub region: String,
    /// `YYYY-MM-DD` from the path.
    pub date: String,
    pub trail: String,
    /// The trail's home region: its key signed the digest.
    pub home_region: String,
    /// The end of its period, from the stamp in its name.
    pub end: Option<i64>,
    /// The key from `AWSLogs/` on.
    pub canonical: String,
}

impl DigestName {
    /// Parses a digest key or path; None unless it follows the layout.
    pub fn parse(key: &str) -> Option<DigestName> {
        let canonical = canonical_key(key)?;
        let mut parts: Vec<&str> = canonical.split('/').collect();
        if parts.len() == 9 && parts[1].starts_with("o-") {
            parts.remove(1);
        }
        if parts.len() != 8 || parts[2] != "CloudTrail-Digest" {
            return None;
        }
        let (account, region, y, m, d, file) =
            (parts[1], parts[3], parts[4], parts[5], parts[6], parts[7]);
        let stem = file
            .strip_suffix(".json.gz")
            .or_else(|| file.strip_suffix(".json"))?;
        let rest = stem.strip_prefix(&format!("{account}_CloudTrail-Digest_{region}_"))?;
        // `<trail>_<home region>_<stamp>`: trail names may hold underscores, regions not.
        let (rest, stamp) = rest.rsplit_once('_')?;
        let (trail, home) = rest.rsplit_once('_')?;
        // `YYYYMMDDTHHMMSSZ` (older digests and copies: `YYYYMMDDTHHMMZ`).
        if !matches!(stamp.len(), 14 | 16) || !stamp.ends_with('Z') || trail.is_empty() {
            return None;
        }
        let date = format!("{y}-{m}-{d}");
        crate::time::parse_time_arg(&date, 0).ok()?;
        let end = (|| {
            let sec = if stamp.len() == 16 {
                &stamp[13..15]
            } else {
                "00"
            };
            crate::time::parse_event_time(&format!(
                "{}-{}-{}T{}:{}:{sec}Z",
                stamp.get(0..4)?,
                stamp.get(4..6)?,
                stamp.get(6..8)?,
                stamp.get(9..11)?,
                stamp.get(11..13)?
            ))
        })();
        Some(DigestName {
            account: account.to_owned(),
            region: region.to_owned(),
            date,
            trail: trail.to_owned(),
            home_region: home.to_owned(),
            end,
            canonical: canonical.to_owned(),
        })
    }
}

/// A log file as a digest lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedLog {
    pub bucket: String,
    /// The key as CloudTrail wrote it.
    pub key: String,
    /// Hex SHA-256 of the log's decompressed bytes.
    pub hash: String,
    pub oldest_event_time: Option<i64>,
    pub newest_event_time: Option<i64>,
}

/// What a well-formed digest says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestBody {
    pub account_id: Option<String>,
    pub start: i64,
    pub end: i64,
    /// `digestEndTime` exactly as written: it is part of the signed string.
    pub end_text: String,
    pub bucket: String,
    pub key: String,
    pub fingerprint: String,
    pub signature_algorithm: Option<String>,
    pub previous_bucket: Option<String>,
    pub previous_key: Option<String>,
    pub previous_hash: Option<String>,
    /// None for the first digest of a chain (`null` in the file).
    pub previous_signature: Option<String>,
    pub logs: Vec<ListedLog>,
}

/// One digest object as found: where, its SHA-256, its signature if known, and its
/// contents or why they could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// The key from `AWSLogs/` on (identical wherever the object is copied).
    pub object: String,
    /// Where it was read (a path or `s3://bucket/key`).
    pub source_uri: String,
    pub name: Option<DigestName>,
    /// Hex SHA-256 of the decompressed bytes (empty when they could not be read).
    pub sha256: String,
    /// Hex RSA signature from S3 metadata or a `<digest>.signature` file.
    pub signature: Option<String>,
    pub body: Result<DigestBody, String>,
}

impl Digest {
    /// `s3://bucket/key` as the digest names itself, else where it was found.
    pub fn display(&self) -> String {
        match &self.body {
            Ok(b) => format!("s3://{}/{}", b.bucket, b.key),
            Err(_) => self.source_uri.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDigest {
    aws_account_id: Option<String>,
    digest_start_time: Option<String>,
    digest_end_time: Option<String>,
    digest_s3_bucket: Option<String>,
    digest_s3_object: Option<String>,
    digest_public_key_fingerprint: Option<String>,
    digest_signature_algorithm: Option<String>,
    previous_digest_s3_bucket: Option<String>,
    previous_digest_s3_object: Option<String>,
    previous_digest_hash_value: Option<String>,
    previous_digest_signature: Option<String>,
    log_files: Option<Vec<RawLog>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLog {
    s3_bucket: String,
    s3_object: String,
    hash_value: String,
    oldest_event_time: Option<String>,
    newest_event_time: Option<String>,
}

/// Parses a digest's decompressed JSON.
pub fn parse_body(json: &[u8]) -> Result<DigestBody, String> {
    let raw: RawDigest =
        serde_json::from_slice(json).map_err(|e| format!("not a digest document: {e}"))?;
    let need = |v: Option<String>, field: &str| v.ok_or_else(|| format!("no {field}"));
    let time = |v: Option<String>, field: &str| -> Result<(i64, String), String> {
        let text = need(v, field)?;
        let t = crate::time::parse_event_time(&text)
            .ok_or_else(|| format!("{field} {text:?} is not a time"))?;
        Ok((t, text))
    };
    let (start, _) = time(raw.digest_start_time, "digestStartTime")?;
    let (end, end_text) = time(raw.digest_end_time, "digestEndTime")?;
    let logs = raw
        .log_files
        .ok_or("no logFiles")?
        .into_iter()
        .map(|l| ListedLog {
            bucket: l.s3_bucket,
            key: l.s3_object,
            hash: l.hash_value.to_ascii_lowercase(),
            oldest_event_time: l
                .oldest_event_time
                .and_then(|t| crate::time::parse_event_time(&t)),
            newest_event_time: l
                .newest_event_time
                .and_then(|t| crate::time::parse_event_time(&t)),
        })
        .collect();
    Ok(DigestBody {
        account_id: raw.aws_account_id,
        start,
        end,
        end_text,
        bucket: need(raw.digest_s3_bucket, "digestS3Bucket")?,
        key: need(raw.digest_s3_object, "digestS3Object")?,
        fingerprint: need(
            raw.digest_public_key_fingerprint,
            "digestPublicKeyFingerprint",
        )?,
        signature_algorithm: raw.digest_signature_algorithm,
        previous_bucket: raw.previous_digest_s3_bucket,
        previous_key: raw.previous_digest_s3_object,
        previous_hash: raw
            .previous_digest_hash_value
            .map(|h| h.to_ascii_lowercase()),
        previous_signature: raw.previous_digest_signature,
        logs,
    })
}

/// Reads a digest object (bounded by [`MAX_DIGEST_BYTES`]). Content that is not a
/// digest (corrupt gzip, bad JSON, missing fields, too large) is a [`Digest`] whose body is
/// the reason: a finding, not an error. Errors are what a retry may cure (opening the
/// object, the connection).
pub fn read_digest(obj: &dyn SourceObject) -> io::Result<Digest> {
    let name = DigestName::parse(obj.uri());
    let object = name
        .as_ref()
        .map(|n| n.canonical.clone())
        .unwrap_or_else(|| obj.uri().to_owned());
    let (sha256, body) = match read_bounded(obj) {
        Ok(bytes) => (hex(&sha256(&bytes)), parse_body(&bytes)),
        Err(e) if is_content_error(&e) => (String::new(), Err(format!("unreadable: {e}"))),
        Err(e) => return Err(e),
    };
    Ok(Digest {
        object,
        source_uri: obj.uri().to_owned(),
        name,
        sha256,
        // Known once the object was opened (S3 metadata comes with GetObject).
        signature: obj.signature(),
        body,
    })
}

/// A digest read anyway: an object that cannot be read at all is evidence too.
pub fn read_digest_or_reason(obj: &dyn SourceObject) -> Digest {
    read_digest(obj).unwrap_or_else(|e| Digest {
        object: DigestName::parse(obj.uri())
            .map(|n| n.canonical)
            .unwrap_or_else(|| obj.uri().to_owned()),
        source_uri: obj.uri().to_owned(),
        name: DigestName::parse(obj.uri()),
        sha256: String::new(),
        signature: None,
        body: Err(format!("unreadable: {e}")),
    })
}

fn is_content_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof
    )
}

fn read_bounded(obj: &dyn SourceObject) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let n = decompressing(obj.open()?)?
        .take(MAX_DIGEST_BYTES + 1)
        .read_to_end(&mut out)?;
    if n as u64 > MAX_DIGEST_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("more than {MAX_DIGEST_BYTES} bytes decompressed"),
        ));
    }
    Ok(out)
}

pub(crate) fn sha256(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).to_vec()
}

/// Hex SHA-256 of an object's decompressed bytes, streamed.
pub fn hash_object(obj: &dyn SourceObject) -> io::Result<String> {
    use sha2::Digest as _;
    let mut src = decompressing(obj.open()?)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_names() {
        let n = DigestName::parse(
            "/x/pre/AWSLogs/o-abc123/111122223333/CloudTrail-Digest/eu-west-1/2026/11/01/111122223333_CloudTrail-Digest_eu-west-1_org_trail_us-east-1_20261101T130512Z.json.gz",
        )
        .expect("parses");
        assert_eq!(n.account, "111122223333");
        assert_eq!(n.region, "eu-west-1");
        assert_eq!(n.trail, "org_trail");
        assert_eq!(n.home_region, "us-east-1");
        assert_eq!(n.date, "2026-11-01");
        assert_eq!(
            n.end.map(crate::time::format_micros).as_deref(),
            Some("2026-11-01T13:05:12Z")
        );
        assert!(n.canonical.starts_with("AWSLogs/o-abc123/"));
        for bad in [
            "AWSLogs/111122223333/CloudTrail/eu-west-1/2026/11/01/111122223333_CloudTrail_eu-west-1_20261101T1305Z_abc.json.gz",
            "AWSLogs/111122223333/CloudTrail-Digest/eu-west-1/2026/11/01/readme.txt",
        ] {
            assert_eq!(DigestName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn bodies_parse_and_name_what_is_missing() {
        let doc = br#"{"awsAccountId":"111122223333","digestStartTime":"2026-11-01T12:05:12Z",
            "digestEndTime":"2026-11-01T13:05:12Z","digestS3Bucket":"b","digestS3Object":"k",
            "digestPublicKeyFingerprint":"ab","digestSignatureAlgorithm":"SHA256withRSA",
            "previousDigestS3Bucket":null,"previousDigestS3Object":null,
            "previousDigestHashValue":null,"previousDigestHashAlgorithm":null,
            "previousDigestSignature":null,
            "logFiles":[{"s3Bucket":"b","s3Object":"l","hashValue":"AB","hashAlgorithm":"SHA-256",
            "newestEventTime":"2026-11-01T12:59:00Z","oldestEventTime":"2026-11-01T12:50:00Z"}]}"#;
        let b = parse_body(doc).expect("parses");
        assert_eq!(b.end_text, "2026-11-01T13:05:12Z");
        assert_eq!(b.previous_signature, None);
        assert_eq!(b.logs.len(), 1);
        assert_eq!(b.logs[0].hash, "ab");
        let no_end = String::from_utf8_lossy(doc).replace("digestEndTime", "x");
        assert_eq!(
            parse_body(no_end.as_bytes()),
            Err("no digestEndTime".into())
        );
        assert!(
            parse_body(b"{")
                .expect_err("not a digest")
                .starts_with("not a digest document")
        );
    }
}
