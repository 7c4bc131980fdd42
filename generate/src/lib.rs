//! Realistic synthetic CloudTrail trees, for the demo, tests and benchmarks.
//!
//! The world: a few AWS accounts (one organization) in a few regions, each with customer
//! managed keys for S3, Secrets Manager, EBS and an application. Every hour, with a daily
//! rhythm (busy days, quiet nights):
//!
//! * AWS services call KMS on behalf of principals with their encryption contexts (S3
//!   `aws:s3:arn`, Secrets Manager `SecretARN`/`SecretVersionId`, EBS `aws:ebs:id`);
//! * an application role calls Decrypt/GenerateDataKey through an interface VPC endpoint
//!   from private addresses, always with its encryption context;
//! * a batch role encrypts from the NAT gateway's public address;
//! * admins (IAM users, MFA) read key metadata and policies;
//! * KMS rotates keys (service events without `userIdentity.type`);
//! * other services produce noise (S3, EC2, STS, IAM, DynamoDB, Lambda...).
//!
//! Optionally, incidents are planted (key deletion, public key policy, external grant...);
//! the [`Manifest`] lists each with the event ids that show it, and counts every KMS
//! record by event name, so tests can check ingestion exactly.
//!
//! Output is deterministic for a seed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;

use kms_audit::time::{DAY_MICROS, civil_from_days, format_micros};

mod evasions;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub seed: u64,
    /// First hour (microseconds since the epoch; rounded down to the hour).
    pub start_micros: i64,
    pub hours: u32,
    /// Number of accounts (1 to 3).
    pub accounts: usize,
    pub regions: Vec<String>,
    /// Mean KMS records per account, region and hour at the daily peak.
    pub kms_per_hour: u32,
    /// Non-KMS records per KMS record.
    pub noise_per_kms: f64,
    /// Plant the incidents listed in [`Incident`].
    pub incidents: bool,
    /// Also plant the evasion suite: incidents shaped to slip past naive rules, each with
    /// a properly restricted look-alike (needs 60 hours).
    pub evasions: bool,
    /// Also write digest and Insights files (which ingest must skip).
    pub digests: bool,
    /// Organization trail layout (`AWSLogs/o-.../<account>/...`).
    pub organization: Option<String>,
    /// Key prefix before `AWSLogs/`.
    pub prefix: Option<String>,
    /// Delivery files per account, region and hour.
    pub files_per_hour: u32,
    /// gzip level of the written objects.
    pub gzip_level: u32,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            seed: 7,
            start_micros: kms_audit::time::days_from_civil(2026, 11, 2) * DAY_MICROS,
            hours: 72,
            accounts: 3,
            regions: vec!["us-east-1".into(), "eu-west-1".into()],
            kms_per_hour: 120,
            noise_per_kms: 1.5,
            incidents: true,
            evasions: false,
            digests: true,
            organization: Some("o-a1b2c3d4e5".into()),
            prefix: None,
            files_per_hour: 4,
            gzip_level: 6,
        }
    }
}

/// A planted incident and the records that show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Incident {
    /// Short stable name (`key_deletion_scheduled`, `public_key_policy`, ...).
    pub kind: String,
    pub description: String,
    pub account_id: String,
    pub principal: String,
    pub key_arn: Option<String>,
    /// The events that must alert (for a look-alike: none).
    pub event_ids: Vec<String>,
    /// Events that belong to it but need not alert (a look-alike's events, which must not;
    /// the key created before an alias is moved to it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub context_ids: Vec<String>,
}

/// What was generated.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Manifest {
    pub log_files: Vec<PathBuf>,
    pub digest_files: Vec<PathBuf>,
    pub insight_files: Vec<PathBuf>,
    /// Every record written to log files.
    pub records: u64,
    /// KMS records by event name.
    pub kms_by_event_name: BTreeMap<String, u64>,
    pub kms_records: u64,
    /// Raw (decompressed) JSON bytes written to log files.
    pub raw_bytes: u64,
    pub incidents: Vec<Incident>,
    /// Look-alikes of the evasions: shapes that must not alert.
    pub lookalikes: Vec<Incident>,
    /// Tag keys the evasion suite treats as ABAC tags (to configure as such).
    pub abac_tag_keys: Vec<String>,
    /// Accounts whose logs are in the tree (the trusted set).
    pub accounts: Vec<String>,
    /// The account used by the planted outsider.
    pub external_account: String,
}

// ---------------------------------------------------------------------------------------
// Deterministic randomness.

/// SplitMix64: tiny, fast, and stable forever (tests depend on its sequence).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    /// A random (version 4) UUID.
    pub fn uuid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }
    pub fn alnum(&mut self, n: usize) -> String {
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..n).map(|_| *self.pick(CHARS) as char).collect()
    }
    /// Poisson-ish count with the given mean (normal approximation, never negative).
    pub fn count(&mut self, mean: f64) -> u64 {
        if mean <= 0.0 {
            return 0;
        }
        let u1 = self.unit().max(1e-12);
        let u2 = self.unit();
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        (mean + z * mean.sqrt()).round().max(0.0) as u64
    }
}

// ---------------------------------------------------------------------------------------
// The world.

const ACCOUNTS: [(&str, &str); 3] = [
    ("111122223333", "prod"),
    ("444455556666", "dev"),
    ("777788889999", "shared-services"),
];
/// Not part of the organization: the outsider of the planted incidents.
pub const EXTERNAL_ACCOUNT: &str = "210987654321";

#[derive(Debug, Clone)]
struct Key {
    arn: String,
    id: String,
    alias: &'static str,
}

#[derive(Debug, Clone)]
struct Site {
    account: &'static str,
    env: &'static str,
    region: String,
    keys: Vec<Key>, // [s3, secrets, ebs, app]
    vpce: String,
    nat_ip: String,
    buckets: Vec<String>,
    secrets: Vec<String>,
    volumes: Vec<String>,
}

impl Site {
    fn key(&self, alias: &str) -> &Key {
        self.keys
            .iter()
            .find(|k| k.alias == alias)
            .unwrap_or(&self.keys[0])
    }
}

fn build_sites(cfg: &GenConfig, rng: &mut Rng) -> Vec<Site> {
    let mut sites = Vec::new();
    for &(account, env) in ACCOUNTS.iter().take(cfg.accounts.clamp(1, 3)) {
        for region in &cfg.regions {
            let keys = [
                "alias/s3-data",
                "alias/secrets",
                "alias/ebs",
                "alias/app-data",
            ]
            .into_iter()
            .map(|alias| {
                let id = if alias == "alias/app-data" {
                    format!("mrk-{}", rng.uuid().replace('-', ""))
                } else {
                    rng.uuid()
                };
                Key {
                    arn: format!("arn:aws:kms:{region}:{account}:key/{id}"),
                    id,
                    alias,
                }
            })
            .collect();
            sites.push(Site {
                account,
                env,
                region: region.clone(),
                keys,
                vpce: format!("vpce-0{}", hex(rng, 16)),
                nat_ip: format!(
                    "52.{}.{}.{}",
                    1 + rng.below(200),
                    rng.below(255),
                    1 + rng.below(250)
                ),
                buckets: (0..3).map(|i| format!("{env}-{region}-data-{i}")).collect(),
                secrets: (0..4)
                    .map(|i| {
                        format!(
                            "arn:aws:secretsmanager:{region}:{account}:secret:{env}/db-{i}-{}",
                            rng.alnum(6)
                        )
                    })
                    .collect(),
                volumes: (0..6).map(|_| format!("vol-0{}", hex(rng, 16))).collect(),
            });
        }
    }
    sites
}

fn hex(rng: &mut Rng, n: usize) -> String {
    let mut s = String::with_capacity(n);
    while s.len() < n {
        let _ = write!(s, "{:016x}", rng.next_u64());
    }
    s.truncate(n);
    s
}

// ---------------------------------------------------------------------------------------
// Records.

#[derive(Debug, Clone)]
enum Who {
    Role {
        account: String,
        role: String,
        session: String,
        mfa: bool,
        via: Option<&'static str>,
    },
    User {
        account: String,
        name: String,
        mfa: Option<bool>,
    },
    Root {
        account: String,
    },
    Service(&'static str),
    /// Service events: only accountId and invokedBy.
    Internal {
        account: String,
    },
}

impl Who {
    fn principal(&self) -> String {
        match self {
            Who::Role { account, role, .. } => format!("arn:aws:iam::{account}:role/{role}"),
            Who::User { account, name, .. } => format!("arn:aws:iam::{account}:user/{name}"),
            Who::Root { account } => format!("arn:aws:iam::{account}:root"),
            Who::Service(s) => (*s).to_owned(),
            Who::Internal { .. } => "AWS Internal".into(),
        }
    }
}

/// One record to write.
#[derive(Debug, Clone)]
struct Rec {
    time: i64,
    source: &'static str,
    name: &'static str,
    region: String,
    recipient: String,
    who: Who,
    ip: String,
    agent: String,
    request: Option<String>,
    response: Option<String>,
    additional: Option<String>,
    resources: Vec<(String, String)>,
    read_only: bool,
    event_type: &'static str,
    vpce: Option<String>,
    /// `vpcEndpointAccountId`: the endpoint's owner.
    vpce_account: Option<String>,
    /// The account whose log this record is delivered in, when not its recipient (a
    /// forged record).
    delivered_under: Option<String>,
    error: Option<(&'static str, String)>,
    event_id: String,
    version: &'static str,
    shared_event_id: Option<String>,
    management: bool,
}

/// Appends a JSON string literal.
fn js(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON object from string pairs (values already JSON when `raw`).
fn obj(pairs: &[(&str, &str)]) -> String {
    let mut o = String::from("{");
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        js(&mut o, k);
        o.push(':');
        js(&mut o, v);
    }
    o.push('}');
    o
}

impl Rec {
    /// A planted KMS call in `site` (an incident, an evasion or a look-alike): a management
    /// write by `who` from `ip`, through no endpoint, fields set by the caller as needed.
    fn planted(
        rng: &mut Rng,
        site: &Site,
        time: i64,
        name: &'static str,
        who: Who,
        ip: &str,
        agent: &str,
    ) -> Rec {
        Rec {
            time,
            source: "kms.amazonaws.com",
            name,
            region: site.region.clone(),
            recipient: site.account.to_owned(),
            who,
            ip: ip.to_owned(),
            agent: agent.to_owned(),
            request: None,
            response: None,
            additional: None,
            resources: Vec::new(),
            read_only: false,
            event_type: "AwsApiCall",
            vpce: None,
            vpce_account: None,
            delivered_under: None,
            error: None,
            event_id: rng.uuid(),
            version: "1.10",
            shared_event_id: None,
            management: true,
        }
    }

    fn write_json(&self, out: &mut String) {
        out.push_str("{\"eventVersion\":");
        js(out, self.version);
        out.push_str(",\"userIdentity\":");
        match &self.who {
            Who::Role {
                account,
                role,
                session,
                mfa,
                via,
            } => {
                let _ = write!(
                    out,
                    "{{\"type\":\"AssumedRole\",\"principalId\":\"AROA{}:{session}\",\"arn\":\"arn:aws:sts::{account}:assumed-role/{role}/{session}\",\"accountId\":\"{account}\",\"accessKeyId\":\"ASIA{}\",\"sessionContext\":{{\"sessionIssuer\":{{\"type\":\"Role\",\"principalId\":\"AROA{}\",\"arn\":\"arn:aws:iam::{account}:role/{role}\",\"accountId\":\"{account}\",\"userName\":\"{role}\"}},\"attributes\":{{\"creationDate\":\"{}\",\"mfaAuthenticated\":\"{mfa}\"}}}}",
                    short_id(role),
                    short_id(session),
                    short_id(role),
                    format_micros(self.time - (self.time % 3_600_000_000)),
                );
                if let Some(v) = via {
                    let _ = write!(out, ",\"invokedBy\":\"{v}\"");
                }
                out.push('}');
            }
            Who::User { account, name, mfa } => {
                let _ = write!(
                    out,
                    "{{\"type\":\"IAMUser\",\"principalId\":\"AIDA{}\",\"arn\":\"arn:aws:iam::{account}:user/{name}\",\"accountId\":\"{account}\",\"accessKeyId\":\"AKIA{}\",\"userName\":\"{name}\"",
                    short_id(name),
                    short_id(name)
                );
                if let Some(m) = mfa {
                    let _ = write!(
                        out,
                        ",\"sessionContext\":{{\"attributes\":{{\"creationDate\":\"{}\",\"mfaAuthenticated\":\"{m}\"}}}}",
                        format_micros(self.time - 600_000_000)
                    );
                }
                out.push('}');
            }
            Who::Root { account } => {
                let _ = write!(
                    out,
                    "{{\"type\":\"Root\",\"principalId\":\"{account}\",\"arn\":\"arn:aws:iam::{account}:root\",\"accountId\":\"{account}\",\"accessKeyId\":\"ASIAROOT{}\",\"sessionContext\":{{\"attributes\":{{\"creationDate\":\"{}\",\"mfaAuthenticated\":\"false\"}}}}}}",
                    &account[..4],
                    format_micros(self.time - 60_000_000)
                );
            }
            Who::Service(s) => {
                let _ = write!(out, "{{\"type\":\"AWSService\",\"invokedBy\":\"{s}\"}}");
            }
            Who::Internal { account } => {
                let _ = write!(
                    out,
                    "{{\"accountId\":\"{account}\",\"invokedBy\":\"AWS Internal\"}}"
                );
            }
        }
        let _ = write!(
            out,
            ",\"eventTime\":\"{}\",\"eventSource\":\"{}\",\"eventName\":\"{}\",\"awsRegion\":\"{}\",\"sourceIPAddress\":",
            format_micros(self.time),
            self.source,
            self.name,
            self.region
        );
        js(out, &self.ip);
        out.push_str(",\"userAgent\":");
        js(out, &self.agent);
        if let Some((code, msg)) = &self.error {
            let _ = write!(out, ",\"errorCode\":\"{code}\",\"errorMessage\":");
            js(out, msg);
        }
        out.push_str(",\"requestParameters\":");
        out.push_str(self.request.as_deref().unwrap_or("null"));
        out.push_str(",\"responseElements\":");
        out.push_str(self.response.as_deref().unwrap_or("null"));
        if let Some(a) = &self.additional {
            out.push_str(",\"additionalEventData\":");
            out.push_str(a);
        }
        let _ = write!(
            out,
            ",\"requestID\":\"{}\",\"eventID\":\"{}\",\"readOnly\":{}",
            short_uuid(&self.event_id),
            self.event_id,
            self.read_only
        );
        if !self.resources.is_empty() {
            out.push_str(",\"resources\":[");
            for (i, (arn, acct)) in self.resources.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(
                    out,
                    "{{\"accountId\":\"{acct}\",\"type\":\"AWS::KMS::Key\",\"ARN\":\"{arn}\"}}"
                );
            }
            out.push(']');
        }
        let _ = write!(
            out,
            ",\"eventType\":\"{}\",\"managementEvent\":{},\"recipientAccountId\":\"{}\"",
            self.event_type, self.management, self.recipient
        );
        if let Some(s) = &self.shared_event_id {
            let _ = write!(out, ",\"sharedEventID\":\"{s}\"");
        }
        if let Some(v) = &self.vpce {
            let _ = write!(out, ",\"vpcEndpointId\":\"{v}\"");
        }
        if let Some(a) = &self.vpce_account {
            let _ = write!(out, ",\"vpcEndpointAccountId\":\"{a}\"");
        }
        let _ = write!(
            out,
            ",\"eventCategory\":\"{}\"",
            if self.management {
                "Management"
            } else {
                "Data"
            }
        );
        if self.source == "kms.amazonaws.com" && !matches!(self.who, Who::Internal { .. }) {
            let _ = write!(
                out,
                ",\"tlsDetails\":{{\"tlsVersion\":\"TLSv1.3\",\"cipherSuite\":\"TLS_AES_128_GCM_SHA256\",\"clientProvidedHostHeader\":\"kms.{}.amazonaws.com\"}}",
                self.region
            );
        }
        out.push('}');
    }
}

fn short_id(s: &str) -> String {
    format!("{:016X}", kms_audit::lake::fnv1a64(s.as_bytes()))
}

fn short_uuid(id: &str) -> String {
    let h = kms_audit::lake::fnv1a64(id.as_bytes());
    format!(
        "{:08x}-{:04x}-{:04x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xffff
    )
}

/// Builds records for one site and hour.
struct Hour<'a> {
    rng: &'a mut Rng,
    site: &'a Site,
    start: i64,
    out: Vec<Rec>,
}

const SDK_AGENTS: &[&str] = &[
    "aws-sdk-java/2.25.60 Linux/5.10.219 OpenJDK_64-Bit_Server_VM/17.0.11",
    "Boto3/1.34.120 md/Botocore#1.34.120 ua/2.0 os/linux#5.10 lang/python#3.12.3",
    "aws-sdk-go-v2/1.30.0 os/linux lang/go#1.22.4 md/GOOS#linux api/kms#1.35.0",
];
const CONSOLE_AGENT: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15";

impl<'a> Hour<'a> {
    fn at(&mut self) -> i64 {
        self.start + self.rng.below(3_600_000_000) as i64 / 1_000_000 * 1_000_000
    }

    fn base(
        &mut self,
        name: &'static str,
        source: &'static str,
        who: Who,
        ip: String,
        agent: String,
    ) -> Rec {
        let time = self.at();
        Rec {
            time,
            source,
            name,
            region: self.site.region.clone(),
            recipient: self.site.account.to_owned(),
            who,
            ip,
            agent,
            request: None,
            response: None,
            additional: None,
            resources: Vec::new(),
            read_only: true,
            event_type: "AwsApiCall",
            vpce: None,
            vpce_account: None,
            delivered_under: None,
            error: None,
            event_id: self.rng.uuid(),
            version: "1.09",
            shared_event_id: None,
            management: true,
        }
    }

    fn app_role(&mut self) -> Who {
        Who::Role {
            account: self.site.account.to_owned(),
            role: format!("{}-app-backend", self.site.env),
            session: format!("i-0{}", hex(self.rng, 8)),
            mfa: false,
            via: None,
        }
    }

    fn private_ip(&mut self) -> String {
        format!(
            "10.{}.{}.{}",
            self.rng.below(4),
            self.rng.below(64),
            2 + self.rng.below(250)
        )
    }

    /// S3 with SSE-KMS: GenerateDataKey on PUT, Decrypt on GET, on behalf of a role.
    fn s3(&mut self) {
        let key = self.site.key("alias/s3-data").clone();
        let bucket = self.rng.pick(&self.site.buckets).clone();
        let object = format!(
            "events/{}/{}.parquet",
            self.rng.below(1000),
            self.rng.alnum(10)
        );
        let name = if self.rng.chance(0.6) {
            "Decrypt"
        } else {
            "GenerateDataKey"
        };
        let role = format!("{}-data-pipeline", self.site.env);
        let who = Who::Role {
            account: self.site.account.to_owned(),
            role,
            session: format!("pipeline-{}", self.rng.below(20)),
            mfa: false,
            via: Some("s3.amazonaws.com"),
        };
        let mut r = self.base(
            name,
            "kms.amazonaws.com",
            who,
            "s3.amazonaws.com".into(),
            "s3.amazonaws.com".into(),
        );
        let ctx = obj(&[("aws:s3:arn", &format!("arn:aws:s3:::{bucket}/{object}"))]);
        r.request = Some(if name == "Decrypt" {
            format!("{{\"encryptionAlgorithm\":\"SYMMETRIC_DEFAULT\",\"encryptionContext\":{ctx}}}")
        } else {
            format!(
                "{{\"keyId\":\"{}\",\"keySpec\":\"AES_256\",\"encryptionContext\":{ctx}}}",
                key.arn
            )
        });
        r.resources = vec![(key.arn.clone(), self.site.account.to_owned())];
        self.out.push(r);
    }

    /// Secrets Manager: Decrypt on GetSecretValue, by the service itself.
    fn secrets(&mut self) {
        let key = self.site.key("alias/secrets").clone();
        let secret = self.rng.pick(&self.site.secrets).clone();
        let session = format!("i-0{}", hex(self.rng, 8));
        let mut r = self.base(
            "Decrypt",
            "kms.amazonaws.com",
            Who::Role {
                account: self.site.account.to_owned(),
                role: format!("{}-app-backend", self.site.env),
                session,
                mfa: false,
                via: Some("secretsmanager.amazonaws.com"),
            },
            "secretsmanager.amazonaws.com".into(),
            "secretsmanager.amazonaws.com".into(),
        );
        let version = self.rng.uuid();
        r.request = Some(format!(
            "{{\"encryptionAlgorithm\":\"SYMMETRIC_DEFAULT\",\"encryptionContext\":{}}}",
            obj(&[("SecretARN", &secret), ("SecretVersionId", &version)])
        ));
        r.resources = vec![(key.arn.clone(), self.site.account.to_owned())];
        self.out.push(r);
    }

    /// EBS: the EC2 service creating and attaching encrypted volumes.
    fn ebs(&mut self) {
        let key = self.site.key("alias/ebs").clone();
        let vol = self.rng.pick(&self.site.volumes).clone();
        let name = *self
            .rng
            .pick(&["CreateGrant", "GenerateDataKeyWithoutPlaintext", "Decrypt"]);
        let who = Who::Role {
            account: self.site.account.to_owned(),
            role: "AWSServiceRoleForAutoScaling".into(),
            session: "AutoScaling".into(),
            mfa: false,
            via: Some("ec2.amazonaws.com"),
        };
        let mut r = self.base(
            name,
            "kms.amazonaws.com",
            who,
            "ec2.amazonaws.com".into(),
            "ec2.amazonaws.com".into(),
        );
        let ctx = obj(&[("aws:ebs:id", &vol)]);
        r.request = Some(match name {
            "CreateGrant" => {
                r.read_only = false;
                r.response = Some(format!("{{\"grantId\":\"{}\"}}", hex(self.rng, 64)));
                format!(
                    "{{\"keyId\":\"{}\",\"granteePrincipal\":\"{}:aws:ec2-infrastructure:i-0{}\",\"constraints\":{{\"encryptionContextSubset\":{ctx}}},\"operations\":[\"Decrypt\"],\"retiringPrincipal\":\"ec2.{}.amazonaws.com\"}}",
                    key.arn,
                    self.site.account,
                    hex(self.rng, 8),
                    self.site.region
                )
            }
            "Decrypt" => format!(
                "{{\"encryptionAlgorithm\":\"SYMMETRIC_DEFAULT\",\"encryptionContext\":{ctx}}}"
            ),
            _ => format!(
                "{{\"keyId\":\"{}\",\"numberOfBytes\":64,\"encryptionContext\":{ctx}}}",
                key.arn
            ),
        });
        r.resources = vec![(key.arn.clone(), self.site.account.to_owned())];
        self.out.push(r);
    }

    /// The application: envelope encryption through the VPC endpoint, from private IPs.
    fn app(&mut self) {
        let key = self.site.key("alias/app-data").clone();
        let name = *self.rng.pick(&[
            "Decrypt",
            "Decrypt",
            "Decrypt",
            "GenerateDataKey",
            "Encrypt",
        ]);
        let who = self.app_role();
        let ip = self.private_ip();
        let agent = (*self.rng.pick(SDK_AGENTS)).to_owned();
        let mut r = self.base(name, "kms.amazonaws.com", who, ip, agent);
        let tenant = format!("tenant-{:03}", self.rng.below(40));
        let ctx = obj(&[("app", "billing"), ("tenant", &tenant)]);
        // Callers name the key every way KMS allows.
        let key_ref = match self.rng.below(4) {
            0 => key.arn.clone(),
            1 => key.id.clone(),
            2 => key.alias.to_owned(),
            _ => format!(
                "arn:aws:kms:{}:{}:{}",
                self.site.region, self.site.account, key.alias
            ),
        };
        r.request = Some(match name {
            "GenerateDataKey" => format!(
                "{{\"keyId\":\"{key_ref}\",\"keySpec\":\"AES_256\",\"encryptionContext\":{ctx}}}"
            ),
            "Encrypt" => format!(
                "{{\"keyId\":\"{key_ref}\",\"encryptionAlgorithm\":\"SYMMETRIC_DEFAULT\",\"encryptionContext\":{ctx}}}"
            ),
            _ => format!(
                "{{\"encryptionAlgorithm\":\"SYMMETRIC_DEFAULT\",\"encryptionContext\":{ctx}}}"
            ),
        });
        r.resources = vec![(key.arn.clone(), self.site.account.to_owned())];
        r.vpce = Some(self.site.vpce.clone());
        self.out.push(r);
    }

    /// DynamoDB encrypting table keys as itself (an AWSService identity, empty keyId).
    fn dynamodb(&mut self) {
        let key = self.site.key("alias/app-data").clone();
        let who = Who::Service("dynamodb.amazonaws.com");
        let mut r = self.base(
            "GenerateDataKey",
            "kms.amazonaws.com",
            who,
            "dynamodb.amazonaws.com".into(),
            "dynamodb.amazonaws.com".into(),
        );
        let table = format!("{}-orders-{}", self.site.env, self.rng.below(3));
        r.request = Some(format!(
            "{{\"encryptionContext\":{},\"keySpec\":\"AES_256\",\"keyId\":\"\"}}",
            obj(&[
                ("aws:dynamodb:tableName", &table),
                ("aws:dynamodb:subscriberId", self.site.account)
            ])
        ));
        r.resources = vec![(key.arn.clone(), self.site.account.to_owned())];
        r.shared_event_id = Some(self.rng.uuid());
        self.out.push(r);
    }

    /// A batch job encrypting exports from the NAT gateway.
    fn batch(&mut self) {
        let key = self.site.key("alias/app-data").clone();
        let who = Who::Role {
            account: self.site.account.to_owned(),
            role: format!("{}-batch-export", self.site.env),
            session: "export-job".into(),
            mfa: false,
            via: None,
        };
        let ip = self.site.nat_ip.clone();
        let mut r = self.base(
            "Encrypt",
            "kms.amazonaws.com",
            who,
            ip,
            SDK_AGENTS[1].to_owned(),
        );
        r.request = Some(format!(
            "{{\"keyId\":\"{}\",\"encryptionAlgorithm\":\"SYMMETRIC_DEFAULT\",\"encryptionContext\":{}}}",
            key.arn,
            obj(&[("job", "nightly-export"), ("Département", "Comptabilité")])
        ));
        r.resources = vec![(key.arn.clone(), self.site.account.to_owned())];
        self.out.push(r);
    }

    /// An admin reading key metadata, with MFA, from the office.
    fn admin_read(&mut self) {
        let key = self.rng.pick(&self.site.keys).clone();
        let name = *self.rng.pick(&[
            "DescribeKey",
            "GetKeyPolicy",
            "ListAliases",
            "GetKeyRotationStatus",
            "ListGrants",
            "ListResourceTags",
        ]);
        let user = (*self.rng.pick(&["alice", "bob"])).to_owned();
        let who = Who::User {
            account: self.site.account.to_owned(),
            name: user,
            mfa: Some(true),
        };
        let ip = format!("198.51.100.{}", 10 + self.rng.below(5));
        let mut r = self.base(name, "kms.amazonaws.com", who, ip, CONSOLE_AGENT.to_owned());
        r.request = Some(match name {
            "ListAliases" => "{\"limit\":100}".to_owned(),
            "GetKeyPolicy" => format!("{{\"keyId\":\"{}\",\"policyName\":\"default\"}}", key.id),
            _ => format!("{{\"keyId\":\"{}\"}}", key.id),
        });
        if name != "ListAliases" {
            r.resources = vec![(key.arn.clone(), self.site.account.to_owned())];
        }
        self.out.push(r);
    }

    /// KMS rotating a key (service event).
    fn rotate(&mut self, key: &Key) {
        let who = Who::Internal {
            account: self.site.account.to_owned(),
        };
        let mut r = self.base(
            "RotateKey",
            "kms.amazonaws.com",
            who,
            "AWS Internal".into(),
            "AWS Internal".into(),
        );
        r.event_type = "AwsServiceEvent";
        r.read_only = false;
        r.version = "1.05";
        r.resources = vec![(key.arn.clone(), self.site.account.to_owned())];
        r.additional = Some(format!("{{\"keyId\":\"{}\"}}", key.id));
        self.out.push(r);
    }

    /// A record of another service.
    fn noise(&mut self) {
        const NOISE: &[(&str, &str, bool)] = &[
            ("s3.amazonaws.com", "GetObject", true),
            ("s3.amazonaws.com", "PutObject", false),
            ("ec2.amazonaws.com", "DescribeInstances", true),
            ("sts.amazonaws.com", "AssumeRole", true),
            ("iam.amazonaws.com", "ListRoles", true),
            ("dynamodb.amazonaws.com", "DescribeTable", true),
            ("lambda.amazonaws.com", "Invoke", false),
            ("monitoring.amazonaws.com", "PutMetricData", false),
            ("logs.amazonaws.com", "CreateLogStream", false),
            ("ssm.amazonaws.com", "GetParameter", true),
        ];
        let &(source, name, ro) = self.rng.pick(NOISE);
        let who = self.app_role();
        let ip = self.private_ip();
        let agent = (*self.rng.pick(SDK_AGENTS)).to_owned();
        let mut r = self.base(name, source, who, ip, agent);
        r.read_only = ro;
        r.management = !matches!(name, "GetObject" | "PutObject" | "Invoke");
        let bucket = self.rng.pick(&self.site.buckets).clone();
        r.request = Some(match source {
            "s3.amazonaws.com" => format!(
                "{{\"bucketName\":\"{bucket}\",\"Host\":\"{bucket}.s3.{}.amazonaws.com\",\"key\":\"events/{}/{}.parquet\",\"x-amz-server-side-encryption\":\"aws:kms\",\"x-amz-server-side-encryption-aws-kms-key-id\":\"{}\"}}",
                self.site.region,
                self.rng.below(1000),
                self.rng.alnum(10),
                self.site.key("alias/s3-data").arn
            ),
            "sts.amazonaws.com" => format!(
                "{{\"roleArn\":\"arn:aws:iam::{}:role/{}-worker\",\"roleSessionName\":\"w-{}\",\"durationSeconds\":3600}}",
                self.site.account,
                self.site.env,
                self.rng.alnum(8)
            ),
            _ => format!("{{\"maxResults\":{}}}", 10 + self.rng.below(90)),
        });
        if source == "sts.amazonaws.com" {
            r.response = Some(format!(
                "{{\"credentials\":{{\"accessKeyId\":\"ASIA{}\",\"sessionToken\":\"{}\",\"expiration\":\"Nov 3, 2026, 1:00:00 AM\"}}}}",
                self.rng.alnum(16),
                self.rng.alnum(120)
            ));
        }
        self.out.push(r);
    }
}

/// Relative load at an hour of the day (UTC): busy working hours, quiet nights.
fn rhythm(hour_of_day: i64) -> f64 {
    let x = (hour_of_day as f64 - 14.0) / 24.0 * 2.0 * std::f64::consts::PI;
    0.55 + 0.45 * x.cos()
}

/// Generates the hourly traffic of one site.
fn benign_hour(cfg: &GenConfig, rng: &mut Rng, site: &Site, start: i64) -> Vec<Rec> {
    let load = rhythm(start.rem_euclid(DAY_MICROS) / 3_600_000_000);
    let kms = rng.count(f64::from(cfg.kms_per_hour) * load);
    let mut h = Hour {
        rng,
        site,
        start,
        out: Vec::with_capacity((kms as f64 * (1.0 + cfg.noise_per_kms)) as usize + 8),
    };
    for _ in 0..kms {
        match h.rng.below(100) {
            0..=29 => h.s3(),
            30..=44 => h.secrets(),
            45..=54 => h.ebs(),
            55..=92 => h.app(),
            93..=94 => h.dynamodb(),
            95..=96 => h.batch(),
            _ => h.admin_read(),
        }
    }
    // Each key rotates about once a day here (on-demand rotation is allowed to be frequent);
    // enough to exercise service events.
    if start.rem_euclid(DAY_MICROS) / 3_600_000_000 == 3 {
        let keys = site.keys.clone();
        for k in &keys {
            h.rotate(k);
        }
    }
    let noise = h.rng.count(kms as f64 * cfg.noise_per_kms);
    for _ in 0..noise {
        h.noise();
    }
    h.out
}

// ---------------------------------------------------------------------------------------
// Incidents.

fn plant_incidents(
    rng: &mut Rng,
    sites: &[Site],
    t0: i64,
    hours: u32,
    out: &mut Vec<Rec>,
) -> Vec<Incident> {
    let prod = &sites[0];
    // Late enough that a day of history exists for baselines.
    let base = t0 + i64::from(hours.saturating_sub(1).min(36)) * 3_600_000_000;
    let hour = |h: i64| base + h * 3_600_000_000;
    let mut incidents = Vec::new();
    let admin = |mfa: bool| Who::User {
        account: prod.account.to_owned(),
        name: "mallory".into(),
        mfa: Some(mfa),
    };
    let mk = |rng: &mut Rng, time: i64, name: &'static str, who: Who, ip: &str| {
        Rec::planted(rng, prod, time, name, who, ip, SDK_AGENTS[2])
    };
    let attacker_ip = "203.0.113.66";
    let app_key = prod.key("alias/app-data").clone();
    let s3_key = prod.key("alias/s3-data").clone();
    let secrets_key = prod.key("alias/secrets").clone();
    let ebs_key = prod.key("alias/ebs").clone();
    let mut push = |out: &mut Vec<Rec>,
                    kind: &str,
                    desc: &str,
                    principal: String,
                    key: Option<&Key>,
                    recs: Vec<Rec>| {
        incidents.push(Incident {
            kind: kind.into(),
            description: desc.into(),
            account_id: prod.account.to_owned(),
            principal,
            key_arn: key.map(|k| k.arn.clone()),
            event_ids: recs.iter().map(|r| r.event_id.clone()).collect(),
            context_ids: Vec::new(),
        });
        out.extend(recs);
    };

    // 1. Key deletion scheduled with the shortest window, by a person without MFA.
    let mut r = mk(
        rng,
        hour(0) + 600_000_000,
        "ScheduleKeyDeletion",
        admin(false),
        attacker_ip,
    );
    r.request = Some(format!(
        "{{\"keyId\":\"{}\",\"pendingWindowInDays\":7}}",
        secrets_key.id
    ));
    r.response = Some(format!(
        "{{\"keyId\":\"{}\",\"keyState\":\"PendingDeletion\",\"deletionDate\":\"Nov 12, 2026, 12:10:00 PM\",\"pendingWindowInDays\":7}}",
        secrets_key.arn
    ));
    r.resources = vec![(secrets_key.arn.clone(), prod.account.into())];
    let principal = admin(false).principal();
    push(
        out,
        "key_deletion_scheduled",
        "ScheduleKeyDeletion with a 7-day window, without MFA",
        principal.clone(),
        Some(&secrets_key),
        vec![r],
    );

    // 2. Use of the key pending deletion fails.
    let mut recs = Vec::new();
    for i in 0..3 {
        let mut r = mk(
            rng,
            hour(1) + i * 60_000_000,
            "Decrypt",
            Who::Role {
                account: prod.account.into(),
                role: format!("{}-app-backend", prod.env),
                session: "i-0feedface".into(),
                mfa: false,
                via: Some("secretsmanager.amazonaws.com"),
            },
            "secretsmanager.amazonaws.com",
        );
        r.read_only = true;
        r.request = Some(format!(
            "{{\"encryptionAlgorithm\":\"SYMMETRIC_DEFAULT\",\"encryptionContext\":{}}}",
            obj(&[("SecretARN", &prod.secrets[0]), ("SecretVersionId", "v1")])
        ));
        r.error = Some((
            "KMSInvalidStateException",
            format!("{} is pending deletion.", secrets_key.arn),
        ));
        r.resources = vec![(secrets_key.arn.clone(), prod.account.into())];
        recs.push(r);
    }
    push(
        out,
        "key_pending_deletion_used",
        "Decrypt with a key pending deletion (KMSInvalidStateException)",
        format!(
            "arn:aws:iam::{}:role/{}-app-backend",
            prod.account, prod.env
        ),
        Some(&secrets_key),
        recs,
    );

    // 3. Key disabled.
    let mut r = mk(rng, hour(2), "DisableKey", admin(false), attacker_ip);
    r.request = Some(format!("{{\"keyId\":\"{}\"}}", ebs_key.arn));
    r.resources = vec![(ebs_key.arn.clone(), prod.account.into())];
    push(
        out,
        "key_disabled",
        "DisableKey on the EBS key",
        principal.clone(),
        Some(&ebs_key),
        vec![r],
    );

    // 4. Rotation disabled.
    let mut r = mk(
        rng,
        hour(2) + 300_000_000,
        "DisableKeyRotation",
        admin(false),
        attacker_ip,
    );
    r.request = Some(format!("{{\"keyId\":\"{}\"}}", s3_key.id));
    r.resources = vec![(s3_key.arn.clone(), prod.account.into())];
    push(
        out,
        "key_rotation_disabled",
        "DisableKeyRotation on the S3 key",
        principal.clone(),
        Some(&s3_key),
        vec![r],
    );

    // 5. Public key policy (Principal "*", no condition).
    let public_policy = format!(
        "{{\n  \"Version\" : \"2012-10-17\",\n  \"Statement\" : [ {{\n    \"Sid\" : \"Enable IAM User Permissions\",\n    \"Effect\" : \"Allow\",\n    \"Principal\" : {{ \"AWS\" : \"arn:aws:iam::{}:root\" }},\n    \"Action\" : \"kms:*\",\n    \"Resource\" : \"*\"\n  }}, {{\n    \"Sid\" : \"Open\",\n    \"Effect\" : \"Allow\",\n    \"Principal\" : \"*\",\n    \"Action\" : [ \"kms:Decrypt\", \"kms:DescribeKey\" ],\n    \"Resource\" : \"*\"\n  }} ]\n}}",
        prod.account
    );
    let mut r = mk(rng, hour(3), "PutKeyPolicy", admin(false), attacker_ip);
    r.request = Some(format!(
        "{{\"keyId\":\"{}\",\"policyName\":\"default\",\"policy\":{},\"bypassPolicyLockoutSafetyCheck\":false}}",
        app_key.id,
        serde_json::Value::String(public_policy)
    ));
    r.resources = vec![(app_key.arn.clone(), prod.account.into())];
    push(
        out,
        "public_key_policy",
        "PutKeyPolicy allowing Principal \"*\" without a condition",
        principal.clone(),
        Some(&app_key),
        vec![r],
    );

    // 6. Policy lockout safety check bypassed, granting an external account.
    let external_policy = format!(
        "{{\"Version\":\"2012-10-17\",\"Statement\":[{{\"Sid\":\"Admin\",\"Effect\":\"Allow\",\"Principal\":{{\"AWS\":\"arn:aws:iam::{EXTERNAL_ACCOUNT}:root\"}},\"Action\":\"kms:*\",\"Resource\":\"*\"}}]}}"
    );
    let mut r = mk(
        rng,
        hour(3) + 900_000_000,
        "PutKeyPolicy",
        admin(false),
        attacker_ip,
    );
    r.request = Some(format!(
        "{{\"keyId\":\"{}\",\"policyName\":\"default\",\"policy\":{},\"bypassPolicyLockoutSafetyCheck\":true}}",
        s3_key.arn,
        serde_json::Value::String(external_policy)
    ));
    r.resources = vec![(s3_key.arn.clone(), prod.account.into())];
    push(
        out,
        "policy_lockout_bypass",
        "PutKeyPolicy with bypassPolicyLockoutSafetyCheck, granting an external account",
        principal.clone(),
        Some(&s3_key),
        vec![r],
    );

    // 7. Grant to an external account.
    let mut r = mk(rng, hour(4), "CreateGrant", admin(false), attacker_ip);
    r.request = Some(format!(
        "{{\"keyId\":\"{}\",\"granteePrincipal\":\"arn:aws:iam::{EXTERNAL_ACCOUNT}:role/exfil\",\"operations\":[\"Decrypt\",\"GenerateDataKey\"]}}",
        app_key.arn
    ));
    r.response = Some(format!(
        "{{\"grantId\":\"{}\",\"keyId\":\"{}\"}}",
        hex(rng, 64),
        app_key.arn
    ));
    r.resources = vec![(app_key.arn.clone(), prod.account.into())];
    push(
        out,
        "grant_to_external_account",
        "CreateGrant to a role in an external account",
        principal.clone(),
        Some(&app_key),
        vec![r],
    );

    // 8. Imported key material deleted.
    let mut r = mk(
        rng,
        hour(4) + 1_200_000_000,
        "DeleteImportedKeyMaterial",
        admin(false),
        attacker_ip,
    );
    r.request = Some(format!("{{\"keyId\":\"{}\"}}", app_key.id));
    r.resources = vec![(app_key.arn.clone(), prod.account.into())];
    push(
        out,
        "imported_key_material_deleted",
        "DeleteImportedKeyMaterial",
        principal.clone(),
        Some(&app_key),
        vec![r],
    );

    // 9. Root user using KMS.
    let mut r = mk(
        rng,
        hour(5),
        "Decrypt",
        Who::Root {
            account: prod.account.into(),
        },
        attacker_ip,
    );
    r.read_only = true;
    r.request = Some(format!(
        "{{\"encryptionAlgorithm\":\"SYMMETRIC_DEFAULT\",\"encryptionContext\":{}}}",
        obj(&[("app", "billing"), ("tenant", "tenant-001")])
    ));
    r.resources = vec![(app_key.arn.clone(), prod.account.into())];
    push(
        out,
        "root_kms_use",
        "The root user called Decrypt",
        format!("arn:aws:iam::{}:root", prod.account),
        Some(&app_key),
        vec![r],
    );

    // 10. AccessDenied burst: one principal probing many keys.
    let probe = Who::Role {
        account: prod.account.into(),
        role: format!("{}-ci-runner", prod.env),
        session: "ci-1234".into(),
        mfa: false,
        via: None,
    };
    let mut recs = Vec::new();
    for i in 0..24i64 {
        let key = &sites[(i as usize) % sites.len()].keys[(i as usize) % 4];
        let mut r = mk(
            rng,
            hour(6) + i * 5_000_000,
            "Decrypt",
            probe.clone(),
            "34.201.10.20",
        );
        r.read_only = true;
        r.request = Some(format!(
            "{{\"keyId\":\"{}\",\"encryptionAlgorithm\":\"SYMMETRIC_DEFAULT\"}}",
            key.arn
        ));
        r.error = Some((
            "AccessDenied",
            format!(
                "User: arn:aws:sts::{}:assumed-role/{}-ci-runner/ci-1234 is not authorized to perform: kms:Decrypt on resource: {} because no identity-based policy allows the kms:Decrypt action",
                prod.account, prod.env, key.arn
            ),
        ));
        r.resources = vec![(
            key.arn.clone(),
            key.arn.split(':').nth(4).unwrap_or_default().to_owned(),
        )];
        recs.push(r);
    }
    push(
        out,
        "access_denied_burst",
        "24 AccessDenied Decrypts across many keys in two minutes",
        probe.principal(),
        None,
        recs,
    );

    // 11. Decrypt spike: the app role at 12x its usual hourly volume, from a new public IP
    //     and without the VPC endpoint or its usual encryption context.
    let mut recs = Vec::new();
    let spike_ip = "198.18.77.5";
    for i in 0..600i64 {
        let mut r = mk(
            rng,
            hour(7) + i * 4_000_000,
            "Decrypt",
            Who::Role {
                account: prod.account.into(),
                role: format!("{}-app-backend", prod.env),
                session: "i-0badc0de".into(),
                mfa: false,
                via: None,
            },
            spike_ip,
        );
        r.read_only = true;
        r.request = Some(format!(
            "{{\"keyId\":\"{}\",\"encryptionAlgorithm\":\"SYMMETRIC_DEFAULT\"}}",
            app_key.arn
        ));
        r.resources = vec![(app_key.arn.clone(), prod.account.into())];
        recs.push(r);
    }
    let app_principal = format!(
        "arn:aws:iam::{}:role/{}-app-backend",
        prod.account, prod.env
    );
    push(
        out,
        "decrypt_spike",
        "600 Decrypts in 40 minutes by the app role, without VPC endpoint, context, from a new public IP",
        app_principal,
        Some(&app_key),
        recs,
    );

    // 12. Cross-account key use by an outsider (not via a service).
    let outsider = Who::Role {
        account: EXTERNAL_ACCOUNT.into(),
        role: "exfil".into(),
        session: "x".into(),
        mfa: false,
        via: None,
    };
    let mut recs = Vec::new();
    for i in 0..5 {
        let mut r = mk(
            rng,
            hour(8) + i * 30_000_000,
            "Decrypt",
            outsider.clone(),
            attacker_ip,
        );
        r.read_only = true;
        r.request = Some(format!(
            "{{\"keyId\":\"{}\",\"encryptionAlgorithm\":\"SYMMETRIC_DEFAULT\"}}",
            app_key.arn
        ));
        r.resources = vec![(app_key.arn.clone(), prod.account.into())];
        r.shared_event_id = Some(rng.uuid());
        recs.push(r);
    }
    push(
        out,
        "cross_account_key_use",
        "An external account's role decrypting with a prod key",
        outsider.principal(),
        Some(&app_key),
        recs,
    );

    // 13. ReEncrypt into a key of the external account.
    let mut r = mk(
        rng,
        hour(8) + 1_800_000_000,
        "ReEncrypt",
        admin(false),
        attacker_ip,
    );
    r.read_only = true;
    let ext_key = format!(
        "arn:aws:kms:{}:{EXTERNAL_ACCOUNT}:key/{}",
        prod.region,
        rng.uuid()
    );
    r.request = Some(format!(
        "{{\"sourceEncryptionContext\":{},\"destinationKeyId\":\"{ext_key}\",\"sourceEncryptionAlgorithm\":\"SYMMETRIC_DEFAULT\",\"destinationEncryptionAlgorithm\":\"SYMMETRIC_DEFAULT\"}}",
        obj(&[("app", "billing"), ("tenant", "tenant-007")])
    ));
    r.resources = vec![
        (app_key.arn.clone(), prod.account.into()),
        (ext_key.clone(), EXTERNAL_ACCOUNT.into()),
    ];
    push(
        out,
        "reencrypt_to_external_key",
        "ReEncrypt into a key owned by an external account",
        principal,
        Some(&app_key),
        vec![r],
    );

    incidents
}

// ---------------------------------------------------------------------------------------
// Writing.

fn log_dir(
    cfg: &GenConfig,
    out: &Path,
    account: &str,
    region: &str,
    trail_kind: &str,
    day: i64,
) -> PathBuf {
    let (y, m, d) = civil_from_days(day);
    let mut dir = out.to_path_buf();
    if let Some(p) = &cfg.prefix {
        dir.push(p);
    }
    dir.push("AWSLogs");
    if let Some(org) = &cfg.organization {
        dir.push(org);
    }
    dir.push(account);
    dir.push(trail_kind);
    dir.push(region);
    dir.push(format!("{y:04}"));
    dir.push(format!("{m:02}"));
    dir.push(format!("{d:02}"));
    dir
}

fn stamp(micros: i64) -> String {
    // `YYYYMMDDTHHMM` of the digests' `YYYYMMDDTHHMMSSZ`.
    format!("{}Z", &stamp_seconds(micros)[..13])
}

/// The bucket the synthetic trail's digests name.
const TRAIL_BUCKET: &str = "trail-bucket";

/// `YYYYMMDDTHHMMSSZ`, as digest names carry.
fn stamp_seconds(micros: i64) -> String {
    let day = micros.div_euclid(DAY_MICROS);
    let (y, m, d) = civil_from_days(day);
    let secs = micros.rem_euclid(DAY_MICROS) / 1_000_000;
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Writes a gzipped envelope; returns its raw JSON size and the hex SHA-256 of that JSON
/// (what a digest lists).
fn write_envelope(path: &Path, recs: &[Rec], level: u32) -> io::Result<(u64, String)> {
    use sha2::Digest as _;
    let file = BufWriter::with_capacity(256 * 1024, File::create(path)?);
    let mut gz = GzEncoder::new(file, Compression::new(level));
    let mut hash = sha2::Sha256::new();
    let mut raw = 0u64;
    let mut buf = String::with_capacity(4096);
    let mut put = |bytes: &[u8], gz: &mut GzEncoder<BufWriter<File>>| -> io::Result<()> {
        hash.update(bytes);
        raw += bytes.len() as u64;
        gz.write_all(bytes)
    };
    put(b"{\"Records\":[", &mut gz)?;
    for (i, r) in recs.iter().enumerate() {
        buf.clear();
        if i > 0 {
            buf.push(',');
        }
        r.write_json(&mut buf);
        put(buf.as_bytes(), &mut gz)?;
    }
    put(b"]}", &mut gz)?;
    gz.finish()?.flush()?;
    Ok((raw, kms_audit::ingest::hex(&hash.finalize())))
}

/// Generates a CloudTrail tree under `out`.
pub fn generate_tree(cfg: &GenConfig, out: &Path) -> io::Result<Manifest> {
    generate_tree_with_progress(cfg, out, &mut |_, _| {})
}

/// [`generate_tree`], calling `progress(hours_done, hours)` after each simulated hour.
pub fn generate_tree_with_progress(
    cfg: &GenConfig,
    out: &Path,
    progress: &mut dyn FnMut(u32, u32),
) -> io::Result<Manifest> {
    let mut rng = Rng::new(cfg.seed);
    let sites = build_sites(cfg, &mut rng);
    let t0 = cfg.start_micros - cfg.start_micros.rem_euclid(3_600_000_000);
    let mut manifest = Manifest {
        accounts: sites.iter().map(|s| s.account.to_owned()).collect(),
        external_account: EXTERNAL_ACCOUNT.to_owned(),
        ..Default::default()
    };
    manifest.accounts.dedup();
    let mut planted = Vec::new();
    if cfg.incidents {
        manifest.incidents = plant_incidents(&mut rng, &sites, t0, cfg.hours, &mut planted);
    }
    if cfg.evasions {
        let e = evasions::plant(
            &mut rng,
            &sites,
            t0,
            cfg.hours,
            cfg.organization.as_deref(),
            &mut planted,
        );
        manifest.incidents.extend(e.incidents);
        manifest.lookalikes = e.lookalikes;
        manifest.abac_tag_keys = e.abac_tag_keys;
    }
    let files_per_hour = cfg.files_per_hour.max(1);
    let slot = 3_600_000_000 / i64::from(files_per_hour);
    // Each account-region's digest chain: its last digest's key and SHA-256.
    let mut previous_digest: BTreeMap<(&str, String), (String, String)> = BTreeMap::new();
    for h in 0..i64::from(cfg.hours) {
        let start = t0 + h * 3_600_000_000;
        for site in &sites {
            let mut recs = benign_hour(cfg, &mut rng, site, start);
            // Planted records are delivered with the site's hour they fall in.
            let (mine, rest): (Vec<Rec>, Vec<Rec>) =
                std::mem::take(&mut planted).into_iter().partition(|r| {
                    r.delivered_under.as_deref().unwrap_or(&r.recipient) == site.account
                        && r.region == site.region
                        && r.time >= start
                        && r.time < start + 3_600_000_000
                });
            planted = rest;
            recs.extend(mine);
            // Deliver by time slot; within a file, records are in no particular order.
            let mut slots: Vec<Vec<Rec>> = vec![Vec::new(); files_per_hour as usize];
            for r in recs {
                let s = ((r.time - start) / slot).clamp(0, i64::from(files_per_hour) - 1);
                slots[s as usize].push(r);
            }
            let mut written = Vec::new();
            for (i, mut recs) in slots.into_iter().enumerate() {
                if recs.is_empty() {
                    continue;
                }
                shuffle(&mut rng, &mut recs);
                let delivered = start + (i as i64 + 1) * slot + 300_000_000;
                written.push(deliver(
                    cfg,
                    out,
                    &mut rng,
                    &mut manifest,
                    site.account,
                    &site.region,
                    delivered,
                    &recs,
                )?);
            }
            if cfg.digests {
                let key = |p: &Path| {
                    p.strip_prefix(out)
                        .unwrap_or(p)
                        .to_string_lossy()
                        .replace('\\', "/")
                };
                let listed: Vec<serde_json::Value> = written
                    .iter()
                    .map(|(p, sha)| {
                        serde_json::json!({"s3Bucket": TRAIL_BUCKET, "s3Object": key(p),
                            "hashValue": sha, "hashAlgorithm": "SHA-256"})
                    })
                    .collect();
                // Logs of the hour are delivered up to 5 minutes after it.
                let end = start + 3_600_000_000 + 360_000_000;
                let dir = log_dir(
                    cfg,
                    out,
                    site.account,
                    &site.region,
                    "CloudTrail-Digest",
                    end.div_euclid(DAY_MICROS),
                );
                fs::create_dir_all(&dir)?;
                let path = dir.join(format!(
                    "{}_CloudTrail-Digest_{}_management-trail_{}_{}.json.gz",
                    site.account,
                    site.region,
                    cfg.regions.first().map_or("us-east-1", String::as_str),
                    stamp_seconds(end)
                ));
                let prev = previous_digest.get(&(site.account, site.region.clone()));
                // Unsigned: a synthetic trail has no CloudTrail key to sign with.
                let digest = serde_json::json!({
                    "awsAccountId": site.account,
                    "digestStartTime": format_micros(end - 3_600_000_000),
                    "digestEndTime": format_micros(end),
                    "digestS3Bucket": TRAIL_BUCKET,
                    "digestS3Object": key(&path),
                    "digestPublicKeyFingerprint": "00000000000000000000000000000000",
                    "digestSignatureAlgorithm": "SHA256withRSA",
                    "previousDigestS3Bucket": prev.map(|_| TRAIL_BUCKET),
                    "previousDigestS3Object": prev.map(|p| p.0.clone()),
                    "previousDigestHashValue": prev.map(|p| p.1.clone()),
                    "previousDigestHashAlgorithm": prev.map(|_| "SHA-256"),
                    "previousDigestSignature": serde_json::Value::Null,
                    "logFiles": listed,
                })
                .to_string();
                let mut gz = GzEncoder::new(File::create(&path)?, Compression::fast());
                gz.write_all(digest.as_bytes())?;
                gz.finish()?;
                let sha = {
                    use sha2::Digest as _;
                    kms_audit::ingest::hex(&sha2::Sha256::digest(digest.as_bytes()))
                };
                previous_digest.insert((site.account, site.region.clone()), (key(&path), sha));
                manifest.digest_files.push(path);
            }
        }
        progress(h as u32 + 1, cfg.hours);
    }
    // Planted records past the generated hours are delivered too, one file per site.
    let mut leftovers: BTreeMap<(String, String), Vec<Rec>> = BTreeMap::new();
    for r in planted {
        leftovers
            .entry((r.recipient.clone(), r.region.clone()))
            .or_default()
            .push(r);
    }
    for ((account, region), mut recs) in leftovers {
        shuffle(&mut rng, &mut recs);
        let last = recs.iter().map(|r| r.time).max().unwrap_or(t0);
        deliver(
            cfg,
            out,
            &mut rng,
            &mut manifest,
            &account,
            &region,
            last + 300_000_000,
            &recs,
        )?;
    }
    if cfg.digests {
        // One Insights file: not API events, must be skipped by name.
        let site = &sites[0];
        let dir = log_dir(
            cfg,
            out,
            site.account,
            &site.region,
            "CloudTrail-Insight",
            t0.div_euclid(DAY_MICROS),
        );
        fs::create_dir_all(&dir)?;
        let path = dir.join(format!(
            "{}_CloudTrail-Insight_{}_{}_{}.json.gz",
            site.account,
            site.region,
            stamp(t0),
            rng.alnum(16)
        ));
        let body = "{\"Records\":[{\"eventVersion\":\"1.07\",\"eventTime\":\"2026-11-02T00:00:00Z\",\"awsRegion\":\"us-east-1\",\"eventID\":\"insight-1\",\"eventType\":\"AwsCloudTrailInsight\",\"recipientAccountId\":\"111122223333\",\"sharedEventID\":\"s\",\"insightDetails\":{\"state\":\"Start\",\"eventSource\":\"kms.amazonaws.com\",\"eventName\":\"Decrypt\",\"insightType\":\"ApiCallRateInsight\"},\"eventCategory\":\"Insight\"}]}";
        let mut gz = GzEncoder::new(File::create(&path)?, Compression::fast());
        gz.write_all(body.as_bytes())?;
        gz.finish()?;
        manifest.insight_files.push(path);
    }
    Ok(manifest)
}

/// Writes one log file of records and accounts for it in the manifest.
#[allow(clippy::too_many_arguments)]
fn deliver(
    cfg: &GenConfig,
    out: &Path,
    rng: &mut Rng,
    manifest: &mut Manifest,
    account: &str,
    region: &str,
    delivered: i64,
    recs: &[Rec],
) -> io::Result<(PathBuf, String)> {
    let dir = log_dir(
        cfg,
        out,
        account,
        region,
        "CloudTrail",
        delivered.div_euclid(DAY_MICROS),
    );
    fs::create_dir_all(&dir)?;
    let name = format!(
        "{account}_CloudTrail_{region}_{}_{}.json.gz",
        stamp(delivered),
        rng.alnum(16)
    );
    let path = dir.join(name);
    let (raw, sha256) = write_envelope(&path, recs, cfg.gzip_level)?;
    manifest.raw_bytes += raw;
    manifest.records += recs.len() as u64;
    for r in recs {
        if r.source == "kms.amazonaws.com" {
            manifest.kms_records += 1;
            *manifest
                .kms_by_event_name
                .entry(r.name.to_owned())
                .or_default() += 1;
        }
    }
    manifest.log_files.push(path.clone());
    Ok((path, sha256))
}

fn shuffle<T>(rng: &mut Rng, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

/// Streams one large CloudTrail object of about `raw_bytes` of JSON (for memory tests and
/// benchmarks) without holding it in memory. Returns (records, kms records, raw bytes).
pub fn write_large_object(
    path: &Path,
    raw_bytes: u64,
    seed: u64,
    level: u32,
) -> io::Result<(u64, u64, u64)> {
    let cfg = GenConfig {
        seed,
        accounts: 1,
        regions: vec!["us-east-1".into()],
        incidents: false,
        ..Default::default()
    };
    let mut rng = Rng::new(seed);
    let sites = build_sites(&cfg, &mut rng);
    let file = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut gz = GzEncoder::new(file, Compression::new(level));
    gz.write_all(b"{\"Records\":[")?;
    let (mut raw, mut records, mut kms) = (12u64, 0u64, 0u64);
    let mut buf = String::with_capacity(1 << 16);
    let mut hour = cfg.start_micros;
    while raw < raw_bytes {
        for r in benign_hour(&cfg, &mut rng, &sites[0], hour) {
            buf.clear();
            if records > 0 {
                buf.push(',');
            }
            r.write_json(&mut buf);
            gz.write_all(buf.as_bytes())?;
            raw += buf.len() as u64;
            records += 1;
            kms += u64::from(r.source == "kms.amazonaws.com");
        }
        hour += 3_600_000_000;
    }
    gz.write_all(b"]}")?;
    raw += 2;
    gz.finish()?.flush()?;
    Ok((records, kms, raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_stable() {
        let mut r = Rng::new(1);
        let a: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        let mut r2 = Rng::new(1);
        let b: Vec<u64> = (0..3).map(|_| r2.next_u64()).collect();
        assert_eq!(a, b);
        let u = Rng::new(5).uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }

    #[test]
    fn records_are_valid_json() {
        let cfg = GenConfig {
            hours: 1,
            accounts: 1,
            regions: vec!["us-east-1".into()],
            kms_per_hour: 200,
            ..Default::default()
        };
        let mut rng = Rng::new(3);
        let sites = build_sites(&cfg, &mut rng);
        let mut recs = benign_hour(
            &cfg,
            &mut rng,
            &sites[0],
            cfg.start_micros + 3 * 3_600_000_000,
        );
        let incidents = plant_incidents(&mut rng, &sites, cfg.start_micros, 48, &mut recs);
        assert!(incidents.len() >= 13);
        for r in &recs {
            let mut s = String::new();
            r.write_json(&mut s);
            let v: serde_json::Value =
                serde_json::from_str(&s).unwrap_or_else(|e| panic!("{e}: {s}"));
            assert_eq!(v["eventID"], r.event_id.as_str());
        }
    }
}
