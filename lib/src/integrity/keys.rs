//! CloudTrail's public keys and the RSA-SHA256 check of a digest signature.

use std::collections::HashMap;

use base64::Engine as _;

/// A key that signed digests, as `cloudtrail:ListPublicKeys` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub fingerprint: String,
    /// DER `RSAPublicKey` (PKCS #1).
    pub der: Vec<u8>,
    pub valid_from: Option<String>,
    pub valid_to: Option<String>,
}

/// The public keys by fingerprint (lower-case hex).
#[derive(Debug, Clone, Default)]
pub struct PublicKeys {
    by_fingerprint: HashMap<String, PublicKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("public keys: not the JSON of `aws cloudtrail list-public-keys`: {0}")]
    Json(#[from] serde_json::Error),
    #[error("public key {fingerprint}: Value is not base64: {source}")]
    Base64 {
        fingerprint: String,
        source: base64::DecodeError,
    },
    #[error("public keys: the list is empty")]
    Empty,
    #[error("cloudtrail:ListPublicKeys in {region}: {message}")]
    Aws { region: String, message: String },
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyList {
    public_key_list: Vec<RawKey>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawKey {
    value: String,
    fingerprint: String,
    validity_start_time: Option<serde_json::Value>,
    validity_end_time: Option<serde_json::Value>,
}

fn time_text(v: Option<serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

impl PublicKeys {
    /// Parses the output of `aws cloudtrail list-public-keys` (`Value` in base64).
    pub fn from_json(text: &str) -> Result<PublicKeys, KeysError> {
        let list: KeyList = serde_json::from_str(text)?;
        if list.public_key_list.is_empty() {
            return Err(KeysError::Empty);
        }
        let mut keys = PublicKeys::default();
        for k in list.public_key_list {
            let cleaned: String = k.value.split_whitespace().collect();
            let der = base64::engine::general_purpose::STANDARD
                .decode(cleaned.as_bytes())
                .map_err(|source| KeysError::Base64 {
                    fingerprint: k.fingerprint.clone(),
                    source,
                })?;
            keys.insert(PublicKey {
                fingerprint: k.fingerprint,
                der,
                valid_from: time_text(k.validity_start_time),
                valid_to: time_text(k.validity_end_time),
            });
        }
        Ok(keys)
    }

    pub fn insert(&mut self, key: PublicKey) {
        self.by_fingerprint
            .insert(key.fingerprint.to_ascii_lowercase(), key);
    }

    pub fn get(&self, fingerprint: &str) -> Option<&PublicKey> {
        self.by_fingerprint.get(&fingerprint.to_ascii_lowercase())
    }

    pub fn len(&self) -> usize {
        self.by_fingerprint.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_fingerprint.is_empty()
    }
}

/// The keys CloudTrail used in `regions` (the trails' home regions) between `start` and
/// `end` (microseconds), from `cloudtrail:ListPublicKeys`.
#[cfg(feature = "aws")]
pub async fn list_public_keys(
    aws: &crate::s3::Aws,
    regions: &[String],
    start: i64,
    end: i64,
) -> Result<PublicKeys, KeysError> {
    use aws_sdk_cloudtrail::primitives::DateTime;
    let mut keys = PublicKeys::default();
    for region in regions {
        let conf = aws_sdk_cloudtrail::config::Builder::from(&aws.config)
            .region(aws_sdk_cloudtrail::config::Region::new(region.clone()))
            .build();
        let client = aws_sdk_cloudtrail::Client::from_conf(conf);
        let mut token: Option<String> = None;
        loop {
            let out = client
                .list_public_keys()
                .start_time(DateTime::from_millis(start / 1000))
                .end_time(DateTime::from_millis(end / 1000))
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| KeysError::Aws {
                    region: region.clone(),
                    message: aws_sdk_cloudtrail::error::DisplayErrorContext(e).to_string(),
                })?;
            for k in out.public_key_list() {
                keys.insert(from_sdk(k));
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
    }
    if keys.is_empty() {
        return Err(KeysError::Empty);
    }
    Ok(keys)
}

/// The keys that signed the digests a lake holds: [`list_public_keys`] for their home
/// regions and period ([`super::alerts::key_scope`]); none when the lake has no digest.
#[cfg(feature = "aws")]
pub async fn lake_public_keys(
    aws: &crate::s3::Aws,
    ctx: &datafusion::prelude::SessionContext,
) -> Result<Result<PublicKeys, KeysError>, crate::sql::QueryError> {
    Ok(match super::alerts::key_scope(ctx).await? {
        (_, None) => Ok(PublicKeys::default()),
        (regions, Some((start, end))) => list_public_keys(aws, &regions, start, end).await,
    })
}

#[cfg(feature = "aws")]
fn from_sdk(k: &aws_sdk_cloudtrail::types::PublicKey) -> PublicKey {
    let time = |t: Option<&aws_sdk_cloudtrail::primitives::DateTime>| {
        t.and_then(|t| t.to_millis().ok())
            .map(|ms| crate::time::format_micros(ms * 1000))
    };
    PublicKey {
        fingerprint: k.fingerprint().unwrap_or_default().to_owned(),
        der: k.value().map(|b| b.as_ref().to_vec()).unwrap_or_default(),
        valid_from: time(k.validity_start_time()),
        valid_to: time(k.validity_end_time()),
    }
}

/// The string CloudTrail signs for a digest: its end time, `bucket/key`, the hex SHA-256
/// of its decompressed bytes and the previous digest's signature (`null` for a chain's
/// first), one per line.
pub fn string_to_sign(
    end_text: &str,
    bucket: &str,
    key: &str,
    sha256: &str,
    previous_signature: Option<&str>,
) -> String {
    format!(
        "{end_text}\n{bucket}/{key}\n{sha256}\n{}",
        previous_signature.unwrap_or("null")
    )
}

/// Whether `signature_hex` is `key`'s RSA PKCS #1 v1.5 SHA-256 signature of `message`.
pub fn verify_signature(key: &PublicKey, message: &[u8], signature_hex: &str) -> bool {
    let Some(sig) = unhex(signature_hex.trim()) else {
        return false;
    };
    let der = rsa_public_key(&key.der).unwrap_or(&key.der);
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, der)
        .verify(message, &sig)
        .is_ok()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The `RSAPublicKey` inside a `SubjectPublicKeyInfo` (what some tools export instead of
/// PKCS #1); None when `der` is not one.
fn rsa_public_key(der: &[u8]) -> Option<&[u8]> {
    // SEQUENCE { SEQUENCE { OID rsaEncryption, NULL }, BIT STRING { 0, RSAPublicKey } }
    const RSA_OID: [u8; 11] = [
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];
    let (tag, outer, _) = der_item(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, alg, rest) = der_item(outer)?;
    if tag != 0x30 || !alg.starts_with(&RSA_OID) {
        return None;
    }
    let (tag, bits, _) = der_item(rest)?;
    if tag != 0x03 || bits.first() != Some(&0) {
        return None;
    }
    Some(&bits[1..])
}

/// One DER item: (tag, contents, what follows).
fn der_item(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)? as usize;
    let (len, head) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let len = b
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, &x| (acc << 8) | x as usize);
        (len, 2 + n)
    };
    let body = b.get(head..head + len)?;
    Some((tag, body, &b[head + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lists_parse_and_match_by_fingerprint_in_any_case() {
        let keys = PublicKeys::from_json(
            r#"{"PublicKeyList":[{"Value":"AAEC","ValidityStartTime":"2026-01-01T00:00:00+00:00",
            "ValidityEndTime":"2027-01-01T00:00:00+00:00","Fingerprint":"ABCD"}]}"#,
        )
        .expect("parses");
        assert_eq!(keys.get("abcd").map(|k| k.der.clone()), Some(vec![0, 1, 2]));
        assert!(matches!(
            PublicKeys::from_json(r#"{"PublicKeyList":[]}"#),
            Err(KeysError::Empty)
        ));
        assert!(matches!(
            PublicKeys::from_json(r#"{"PublicKeyList":[{"Value":"!!","Fingerprint":"x"}]}"#),
            Err(KeysError::Base64 { .. })
        ));
    }

    #[cfg(feature = "aws")]
    #[test]
    fn sdk_keys_carry_their_der_bytes_and_fingerprint() {
        let k = aws_sdk_cloudtrail::types::PublicKey::builder()
            .value(aws_sdk_cloudtrail::primitives::Blob::new(vec![0x30, 1, 2]))
            .fingerprint("AB12")
            .validity_start_time(aws_sdk_cloudtrail::primitives::DateTime::from_secs(0))
            .build();
        let mine = from_sdk(&k);
        assert_eq!(mine.der, vec![0x30, 1, 2]);
        assert_eq!(mine.fingerprint, "AB12");
        assert_eq!(mine.valid_from.as_deref(), Some("1970-01-01T00:00:00Z"));
        let mut keys = PublicKeys::default();
        keys.insert(mine);
        assert!(keys.get("ab12").is_some());
    }

    #[test]
    fn signed_string_and_bad_signatures() {
        assert_eq!(
            string_to_sign("2026-11-01T13:05:12Z", "b", "k/x.json.gz", "ab", None),
            "2026-11-01T13:05:12Z\nb/k/x.json.gz\nab\nnull"
        );
        let key = PublicKey {
            fingerprint: "x".into(),
            der: vec![0x30, 0],
            valid_from: None,
            valid_to: None,
        };
        assert!(!verify_signature(&key, b"m", "zz"));
        assert!(!verify_signature(&key, b"m", "abc"));
        assert!(!verify_signature(&key, b"m", "abcd"));
    }
}
