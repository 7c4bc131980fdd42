//! Key-policy analysis: what a KMS key policy document (a JSON string in CloudTrail's
//! `PutKeyPolicy`/`CreateKey` records) grants, in terms a detection can act on.
//!
//! Findings, per `Allow` statement:
//!
//! * [`FindingKind::PublicPrincipal`]: `"Principal": "*"` or `{"AWS": "*"}` without a
//!   condition that restricts who can use it (`kms:CallerAccount`, `aws:PrincipalOrgID`,
//!   `aws:PrincipalAccount`, `aws:SourceAccount`, `aws:SourceVpce`, ...);
//! * [`FindingKind::AccountPrincipal`]: every AWS account a principal names (an account id,
//!   `arn:...:root`, or a user/role ARN), so callers can compare with their trusted set;
//! * [`FindingKind::NotPrincipalAllow`]: `NotPrincipal` with `Allow` (grants everyone else);
//! * [`FindingKind::AdminWithoutMfa`]: key administration actions (`kms:*`,
//!   `kms:PutKeyPolicy`, `kms:ScheduleKeyDeletion`, ...) granted to a specific user or role
//!   without an MFA condition. Statements naming an account root delegate to IAM and are not
//!   reported.

use serde_json::Value;

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    PublicPrincipal,
    AccountPrincipal,
    NotPrincipalAllow,
    AdminWithoutMfa,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::PublicPrincipal => "public_principal",
            FindingKind::AccountPrincipal => "account_principal",
            FindingKind::NotPrincipalAllow => "not_principal_allow",
            FindingKind::AdminWithoutMfa => "admin_without_mfa",
        }
    }
}

/// One finding of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: FindingKind,
    /// The statement's `Sid`, if it has one.
    pub sid: Option<String>,
    /// The account (for `AccountPrincipal`), the principal (for `AdminWithoutMfa`), or `*`.
    pub value: String,
}

/// Condition keys that restrict a wildcard principal to known callers.
const RESTRICTING_KEYS: &[&str] = &[
    "kms:calleraccount",
    "aws:principalorgid",
    "aws:principalorgpaths",
    "aws:principalaccount",
    "aws:principalarn",
    "aws:sourceaccount",
    "aws:sourcearn",
    "aws:sourceorgid",
    "aws:sourcevpce",
    "aws:sourcevpc",
    "aws:sourceip",
    "aws:userid",
    "kms:viaservice",
    "kms:grantisforawsresource",
];

const MFA_KEYS: &[&str] = &["aws:multifactorauthpresent", "aws:multifactorauthage"];

/// Actions that administer (or destroy) a key.
const ADMIN_ACTIONS: &[&str] = &[
    "kms:*",
    "*",
    "kms:putkeypolicy",
    "kms:schedulekeydeletion",
    "kms:disablekey",
    "kms:deletealias",
    "kms:deleteimportedkeymaterial",
    "kms:disablekeyrotation",
    "kms:creategrant",
    "kms:updatealias",
    "kms:importkeymaterial",
];

/// Analyses a policy document. Invalid JSON is an error; unexpected shapes inside a valid
/// document are skipped, not errors.
pub fn analyze(policy: &str) -> Result<Vec<Finding>, serde_json::Error> {
    let doc: Value = serde_json::from_str(policy)?;
    let mut out = Vec::new();
    let statements: Vec<&Value> = match doc.get("Statement") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(s @ Value::Object(_)) => vec![s],
        _ => Vec::new(),
    };
    for st in statements {
        if !st
            .get("Effect")
            .and_then(Value::as_str)
            .is_some_and(|e| e.eq_ignore_ascii_case("allow"))
        {
            continue;
        }
        let sid = st.get("Sid").and_then(Value::as_str).map(str::to_owned);
        let condition_keys = condition_keys(st.get("Condition"));
        let finding = |kind, value: &str| Finding {
            kind,
            sid: sid.clone(),
            value: value.to_owned(),
        };
        if st.get("NotPrincipal").is_some() {
            out.push(finding(FindingKind::NotPrincipalAllow, "*"));
        }
        let principals = aws_principals(st.get("Principal"));
        let restricted = condition_keys
            .iter()
            .any(|k| RESTRICTING_KEYS.contains(&k.as_str()));
        if principals.iter().any(|p| p == "*") && !restricted {
            out.push(finding(FindingKind::PublicPrincipal, "*"));
        }
        let mut accounts: Vec<&str> = principals
            .iter()
            .filter_map(|p| principal_account(p))
            .collect();
        accounts.sort_unstable();
        accounts.dedup();
        for a in accounts {
            out.push(finding(FindingKind::AccountPrincipal, a));
        }
        let admin = strings(st.get("Action"))
            .iter()
            .any(|a| ADMIN_ACTIONS.contains(&a.to_ascii_lowercase().as_str()));
        let mfa = condition_keys
            .iter()
            .any(|k| MFA_KEYS.contains(&k.as_str()));
        if admin && !mfa {
            for p in principals.iter().filter(|p| is_identity(p)) {
                out.push(finding(FindingKind::AdminWithoutMfa, p));
            }
        }
    }
    Ok(out)
}

/// Condition keys of a statement, lowercased (`{"StringEquals": {"kms:CallerAccount": ..}}`).
fn condition_keys(condition: Option<&Value>) -> Vec<String> {
    let Some(Value::Object(ops)) = condition else {
        return Vec::new();
    };
    ops.values()
        .filter_map(Value::as_object)
        .flat_map(|m| m.keys().map(|k| k.to_ascii_lowercase()))
        .collect()
}

/// A string or list of strings.
fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// The AWS principals of `Principal` (`"*"` counts as the AWS wildcard).
fn aws_principals(p: Option<&Value>) -> Vec<String> {
    match p {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Object(m)) => m
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("AWS"))
            .flat_map(|(_, v)| strings(Some(v)))
            .collect(),
        _ => Vec::new(),
    }
}

/// The account a principal belongs to: a bare 12-digit id or the account field of an ARN.
pub fn principal_account(p: &str) -> Option<&str> {
    if p.len() == 12 && p.bytes().all(|b| b.is_ascii_digit()) {
        return Some(p);
    }
    crate::ingest::record::arn_account(p)
        .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
}

/// A specific user or role (not `*`, not an account root, not a bare account id).
fn is_identity(p: &str) -> bool {
    p.starts_with("arn:") && !p.ends_with(":root")
}

/// True for addresses that are not on the public internet: RFC 1918, loopback, link-local,
/// CGNAT (100.64/10), IPv6 unique-local and link-local. Not an IP (a service name,
/// "AWS Internal") is false. For `"a, b"` (a proxy chain), the first address decides.
pub fn is_private_ip(s: &str) -> bool {
    let first = s.split(',').next().unwrap_or("").trim();
    match first.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        Ok(std::net::IpAddr::V6(v6)) => {
            let seg = v6.segments()[0];
            v6.is_loopback() || (seg & 0xfe00) == 0xfc00 || (seg & 0xffc0) == 0xfe80
        }
        Err(_) => false,
    }
}

/// The network an address belongs to for "seen before" baselines: the /24 of an IPv4
/// address, the /48 of an IPv6 address (an office NAT pool or a DHCP range is one network).
/// None for what is not an IP. For `"a, b"`, the first address.
pub fn ip_network(s: &str) -> Option<String> {
    let first = s.split(',').next().unwrap_or("").trim();
    match first.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            Some(format!("{}.{}.{}.0/24", o[0], o[1], o[2]))
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            Some(format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(policy: &str) -> Vec<(&'static str, String)> {
        analyze(policy)
            .expect("valid")
            .into_iter()
            .map(|f| (f.kind.as_str(), f.value))
            .collect()
    }

    #[test]
    fn default_key_policy_names_only_its_account() {
        let p = r#"{"Version":"2012-10-17","Id":"key-default-1","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}"#;
        assert_eq!(kinds(p), vec![("account_principal", "111122223333".into())]);
    }

    #[test]
    fn public_principals_with_and_without_conditions() {
        let open = r#"{"Statement":[{"Sid":"Open","Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*"}]}"#;
        assert_eq!(kinds(open), vec![("public_principal", "*".into())]);
        let open_aws =
            r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":["*"]},"Action":"kms:Decrypt"}}"#;
        assert_eq!(kinds(open_aws), vec![("public_principal", "*".into())]);
        let restricted = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":["kms:Decrypt"],"Condition":{"StringEquals":{"kms:CallerAccount":"111122223333","kms:ViaService":"s3.us-east-1.amazonaws.com"}}}]}"#;
        assert!(kinds(restricted).is_empty());
        let org = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-abc"}}}]}"#;
        assert!(kinds(org).is_empty());
        // A condition that does not restrict the caller does not help.
        let weak = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Condition":{"Bool":{"aws:SecureTransport":"true"}}}]}"#;
        assert_eq!(kinds(weak), vec![("public_principal", "*".into())]);
        // Deny statements grant nothing.
        let deny = r#"{"Statement":[{"Effect":"Deny","Principal":"*","Action":"kms:*"}]}"#;
        assert!(kinds(deny).is_empty());
    }

    #[test]
    fn accounts_not_principal_and_admin_without_mfa() {
        let p = r#"{"Statement":[
            {"Sid":"Admins","Effect":"Allow","Principal":{"AWS":["arn:aws:iam::210987654321:role/ops","444455556666"]},"Action":["kms:PutKeyPolicy","kms:Describe*"],"Resource":"*"},
            {"Sid":"MfaAdmins","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"kms:*","Condition":{"Bool":{"aws:MultiFactorAuthPresent":"true"}}},
            {"Sid":"Everyone else","Effect":"Allow","NotPrincipal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:Decrypt"},
            {"Sid":"Services","Effect":"Allow","Principal":{"Service":"logs.amazonaws.com"},"Action":"kms:Encrypt*"}
        ]}"#;
        let got = analyze(p).expect("valid");
        let flat: Vec<(&str, Option<&str>, &str)> = got
            .iter()
            .map(|f| (f.kind.as_str(), f.sid.as_deref(), f.value.as_str()))
            .collect();
        assert_eq!(
            flat,
            vec![
                ("account_principal", Some("Admins"), "210987654321"),
                ("account_principal", Some("Admins"), "444455556666"),
                (
                    "admin_without_mfa",
                    Some("Admins"),
                    "arn:aws:iam::210987654321:role/ops"
                ),
                ("account_principal", Some("MfaAdmins"), "111122223333"),
                ("not_principal_allow", Some("Everyone else"), "*"),
            ]
        );
    }

    #[test]
    fn invalid_json_is_an_error_and_odd_shapes_are_not() {
        assert!(analyze("{not json").is_err());
        assert!(analyze("[]").expect("valid").is_empty());
        assert!(
            analyze(r#"{"Statement":"nope"}"#)
                .expect("valid")
                .is_empty()
        );
        assert!(
            analyze(r#"{"Statement":[1,{"Effect":7}]}"#)
                .expect("valid")
                .is_empty()
        );
    }

    #[test]
    fn networks() {
        assert_eq!(
            ip_network("198.51.100.14").as_deref(),
            Some("198.51.100.0/24")
        );
        assert_eq!(
            ip_network("203.0.113.9, 10.0.0.1").as_deref(),
            Some("203.0.113.0/24")
        );
        assert_eq!(
            ip_network("2600:1f18:abcd:12::1").as_deref(),
            Some("2600:1f18:abcd::/48")
        );
        assert_eq!(ip_network("s3.amazonaws.com"), None);
    }

    #[test]
    fn private_addresses() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "fd00::1",
            "fe80::1",
            "::1",
            "10.0.0.5, 203.0.113.9",
        ] {
            assert!(is_private_ip(ip), "{ip}");
        }
        for ip in [
            "203.0.113.9",
            "172.32.0.1",
            "8.8.8.8",
            "100.128.0.1",
            "2600:1f18::1",
            "s3.amazonaws.com",
            "AWS Internal",
            "",
            "203.0.113.9, 10.0.0.5",
        ] {
            assert!(!is_private_ip(ip), "{ip}");
        }
    }
}
