//! Key-policy analysis: what a KMS key policy document (a JSON string in CloudTrail's
//! `PutKeyPolicy`/`CreateKey` records) grants, in terms a detection can act on.
//!
//! Findings, per `Allow` statement:
//!
//! * [`FindingKind::PublicPrincipal`]: `"Principal": "*"` or `{"AWS": "*"}` that no
//!   condition narrows (judged by operator and value: `StringNotEquals` narrows nothing,
//!   `...IfExists` only on keys every request has, a wildcard value nothing;
//!   `kms:ViaService` and `kms:GrantIsForAWSResource` restrict the path, not who) and no
//!   `Deny` fences (`Deny "*"` unless `kms:CallerAccount` is one of a list);
//! * [`FindingKind::AccountPrincipal`]: every AWS account a principal names (an account id,
//!   `arn:...:root`, a user/role ARN), and those a wildcard is narrowed to by
//!   `kms:CallerAccount`, `aws:PrincipalAccount`, `aws:PrincipalArn`, ... or a `Deny`
//!   fence, so callers can compare with their trusted set;
//! * [`FindingKind::OrgPrincipal`] / [`FindingKind::EndpointPrincipal`]: a wildcard
//!   narrowed to organizations (`aws:PrincipalOrgID`, org paths) or only to VPC endpoints
//!   (`aws:SourceVpce`), named by value, to compare with the trusted organizations and the
//!   endpoints seen in use;
//! * [`FindingKind::NotPrincipalAllow`]: `NotPrincipal` with `Allow` (grants everyone else);
//! * [`FindingKind::AdminWithoutMfa`]: key administration actions (patterns such as
//!   `kms:*`, `kms:Put*` expanded over them, or a `NotAction` that leaves one out) granted to
//!   a specific user or role without a binding MFA condition (`"false"` or `...IfExists`
//!   do not count). Statements naming an account root delegate to IAM and are not reported;
//! * [`FindingKind::Unparseable`]: not JSON ([`analyze_or_finding`]);
//! * [`FindingKind::RootAccess`]: an account root (or bare account id) allowed, without
//!   conditions, to change the policy: what keeps a key recoverable through IAM.

use serde_json::Value;

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    PublicPrincipal,
    AccountPrincipal,
    NotPrincipalAllow,
    AdminWithoutMfa,
    /// The document is not JSON: nobody can tell what it grants.
    Unparseable,
    /// An account (its root, or the bare id) may change the policy: its IAM can always
    /// recover the key. A policy without one for the key's own account risks lockout.
    RootAccess,
    /// A wildcard principal narrowed to an organization (`aws:PrincipalOrgID`, org paths):
    /// the value is the organization id, for callers to compare with their trusted ones.
    OrgPrincipal,
    /// A wildcard principal narrowed only to a VPC endpoint (`aws:SourceVpce`): whoever
    /// owns that endpoint. The value is the endpoint id.
    EndpointPrincipal,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::PublicPrincipal => "public_principal",
            FindingKind::AccountPrincipal => "account_principal",
            FindingKind::NotPrincipalAllow => "not_principal_allow",
            FindingKind::AdminWithoutMfa => "admin_without_mfa",
            FindingKind::Unparseable => "unparseable",
            FindingKind::RootAccess => "root_access",
            FindingKind::OrgPrincipal => "org_principal",
            FindingKind::EndpointPrincipal => "endpoint_principal",
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

/// Condition keys whose values name the caller's account (kms:CallerAccount is always
/// present, so `...IfExists` on it restricts too).
const ACCOUNT_KEYS: &[&str] = &[
    "kms:calleraccount",
    "aws:principalaccount",
    "aws:sourceaccount",
];
/// Condition keys whose values are ARNs of the caller or its source.
const ARN_KEYS: &[&str] = &["aws:principalarn", "aws:sourcearn"];
/// Condition keys whose values are organization ids or paths (`o-.../r-.../ou-...`).
const ORG_KEYS: &[&str] = &[
    "aws:principalorgid",
    "aws:principalorgpaths",
    "aws:sourceorgid",
    "aws:sourceorgpaths",
];
/// Condition keys that restrict the caller to a network or an identity (the endpoint,
/// `aws:SourceVpce`, is judged by its value).
const OTHER_RESTRICTING_KEYS: &[&str] = &[
    "aws:sourcevpc",
    "aws:sourceip",
    "aws:vpcsourceip",
    "aws:userid",
];
/// Keys always present in a request: `...IfExists` on them still restricts.
const ALWAYS_PRESENT: &[&str] = &[
    "kms:calleraccount",
    "aws:principalaccount",
    "aws:principalarn",
];

/// Actions that administer (or destroy) a key.
const ADMIN_ACTIONS: &[&str] = &[
    "kms:putkeypolicy",
    "kms:schedulekeydeletion",
    "kms:disablekey",
    "kms:deletealias",
    "kms:deleteimportedkeymaterial",
    "kms:disablekeyrotation",
    "kms:creategrant",
    "kms:updatealias",
    "kms:importkeymaterial",
    "kms:replicatekey",
    "kms:updateprimaryregion",
    "kms:tagresource",
    "kms:untagresource",
];

/// One condition: its operator (lowercase, set qualifiers and `IfExists` taken off), the
/// key (lowercase) and the values.
#[derive(Debug)]
struct Cond {
    op: String,
    if_exists: bool,
    key: String,
    values: Vec<String>,
}

impl Cond {
    /// A positive test (`StringEquals`, `ArnLike`, `IpAddress`, ...), not a negated one.
    fn positive(&self) -> bool {
        !self.op.contains("not") && self.op != "null" && self.op != "bool"
    }
    fn negated(&self) -> bool {
        self.op.contains("not")
    }
    /// Whether it binds every request (`IfExists` passes requests without the key).
    fn binding(&self) -> bool {
        !self.if_exists || ALWAYS_PRESENT.contains(&self.key.as_str())
    }
}

fn conditions(condition: Option<&Value>) -> Vec<Cond> {
    let Some(Value::Object(ops)) = condition else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (op, m) in ops {
        let Some(m) = m.as_object() else { continue };
        let mut o = op.to_ascii_lowercase();
        for q in ["foranyvalue:", "forallvalues:"] {
            if let Some(rest) = o.strip_prefix(q) {
                o = rest.to_owned();
            }
        }
        let if_exists = o.ends_with("ifexists");
        let o = o.trim_end_matches("ifexists").to_owned();
        for (k, v) in m {
            out.push(Cond {
                op: o.clone(),
                if_exists,
                key: k.to_ascii_lowercase(),
                values: match v {
                    Value::Bool(b) => vec![b.to_string()],
                    Value::Number(n) => vec![n.to_string()],
                    other => strings(Some(other)),
                },
            });
        }
    }
    out
}

/// Who a wildcard principal is narrowed to, by an Allow's conditions or a Deny fence. The
/// constraints are ANDed, so the most specific one says who can call: accounts, then
/// organizations, then VPC endpoints; `other` is a restriction by network or identity
/// that names none of them.
#[derive(Debug, Default, Clone)]
struct Narrowed {
    accounts: Vec<String>,
    orgs: Vec<String>,
    endpoints: Vec<String>,
    other: bool,
}

impl Narrowed {
    /// Both constraints at once: a set named by both is their intersection (an empty one
    /// lets nobody in, a restriction of its own).
    fn and(mut self, other: Narrowed) -> Narrowed {
        fn meet(a: Vec<String>, b: Vec<String>, none_left: &mut bool) -> Vec<String> {
            match (a.is_empty(), b.is_empty()) {
                (true, _) => b,
                (_, true) => a,
                _ => {
                    let both: Vec<String> = a.into_iter().filter(|x| b.contains(x)).collect();
                    *none_left |= both.is_empty();
                    both
                }
            }
        }
        let mut none = self.other || other.other;
        self.accounts = meet(self.accounts, other.accounts, &mut none);
        self.orgs = meet(self.orgs, other.orgs, &mut none);
        self.endpoints = meet(self.endpoints, other.endpoints, &mut none);
        self.other = none;
        self
    }

    /// The findings for a wildcard principal so narrowed (public when open).
    fn findings(mut self) -> Vec<(FindingKind, String)> {
        let (kind, mut values) = if !self.accounts.is_empty() {
            (
                FindingKind::AccountPrincipal,
                std::mem::take(&mut self.accounts),
            )
        } else if !self.orgs.is_empty() {
            (FindingKind::OrgPrincipal, std::mem::take(&mut self.orgs))
        } else if !self.endpoints.is_empty() {
            (
                FindingKind::EndpointPrincipal,
                std::mem::take(&mut self.endpoints),
            )
        } else if self.other {
            return Vec::new();
        } else {
            return vec![(FindingKind::PublicPrincipal, "*".to_owned())];
        };
        values.sort();
        values.dedup();
        values.into_iter().map(|v| (kind, v)).collect()
    }
}

/// The organization of an organization id or path (`o-abc/r-ab12/ou-.../`), unless
/// a wildcard leaves it open.
fn org_of(v: &str) -> Option<String> {
    let first = v.split('/').next()?;
    (first.starts_with("o-") && !first.contains(['*', '?'])).then(|| first.to_owned())
}

/// What one condition narrows a wildcard principal to, read from its values; `None` when
/// it narrows nothing (an unknown key, a wildcard value).
fn narrowing(c: &Cond) -> Option<Narrowed> {
    let wild = |v: &str| v.is_empty() || v.contains(['*', '?']);
    let mut n = Narrowed::default();
    let key = c.key.as_str();
    if c.values.is_empty() {
        return None;
    }
    if ACCOUNT_KEYS.contains(&key) {
        if c.values.iter().any(|v| wild(v)) {
            return None;
        }
        n.accounts = c.values.clone();
    } else if ARN_KEYS.contains(&key) {
        let accts: Option<Vec<&str>> = c.values.iter().map(|v| principal_account(v)).collect();
        n.accounts = accts?.into_iter().map(str::to_owned).collect();
    } else if ORG_KEYS.contains(&key) {
        n.orgs = c.values.iter().map(|v| org_of(v)).collect::<Option<_>>()?;
    } else if key == "aws:sourcevpce" {
        if c.values.iter().any(|v| wild(v)) {
            return None;
        }
        n.endpoints = c.values.clone();
    } else if OTHER_RESTRICTING_KEYS.contains(&key) {
        if c.values.iter().any(|v| v == "*" || v.is_empty()) {
            return None;
        }
        n.other = true;
    } else {
        return None;
    }
    Some(n)
}

/// Who a wildcard principal is narrowed to by an Allow statement's conditions.
fn narrowed(conds: &[Cond]) -> Narrowed {
    let mut out = Narrowed::default();
    for c in conds.iter().filter(|c| c.positive() && c.binding()) {
        if let Some(n) = narrowing(c) {
            out = out.and(n);
        }
    }
    // `{"Null": {"aws:SourceVpce": "false"}}`: only calls through an endpoint.
    if conds.iter().any(|c| {
        c.op == "null"
            && (OTHER_RESTRICTING_KEYS.contains(&c.key.as_str()) || c.key == "aws:sourcevpce")
            && c.values.iter().all(|v| v.eq_ignore_ascii_case("false"))
    }) {
        out.other = true;
    }
    out
}

/// Whether an IAM action pattern (`kms:Put*`, `kms:*Key*`, `*`) matches an action.
fn action_matches(pattern: &str, action: &str) -> bool {
    fn go(p: &[u8], a: &[u8]) -> bool {
        match (p.first(), a.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], a) || (!a.is_empty() && go(p, &a[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &a[1..]),
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(y) => go(&p[1..], &a[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), action.as_bytes())
}

/// Whether a statement allows some key administration: `Action` patterns matching an
/// administrative action, or a `NotAction` that leaves one out. `CreateGrant` bound to
/// `kms:GrantIsForAWSResource` (the console's default for key users: services attaching
/// the key to a volume or a database) is use, not administration.
fn grants_admin(st: &Value, conds: &[Cond]) -> bool {
    let for_aws_resources = conds.iter().any(|c| {
        c.key == "kms:grantisforawsresource"
            && c.op == "bool"
            && !c.if_exists
            && c.values.iter().all(|v| v.eq_ignore_ascii_case("true"))
    });
    let mut admin = ADMIN_ACTIONS
        .iter()
        .filter(|a| !(for_aws_resources && **a == "kms:creategrant"));
    if let Some(not) = st.get("NotAction") {
        let excluded = strings(Some(not));
        return admin.any(|a| !excluded.iter().any(|p| action_matches(p, a)));
    }
    let actions = strings(st.get("Action"));
    admin.any(|a| actions.iter().any(|p| action_matches(p, a)))
}

/// Whether the conditions require MFA: `Bool aws:MultiFactorAuthPresent "true"` or an
/// `aws:MultiFactorAuthAge` limit, on every request (not `...IfExists`).
fn requires_mfa(conds: &[Cond]) -> bool {
    conds.iter().any(|c| {
        !c.if_exists
            && ((c.key == "aws:multifactorauthpresent"
                && c.op == "bool"
                && c.values.iter().all(|v| v.eq_ignore_ascii_case("true")))
                || (c.key == "aws:multifactorauthage" && c.op.starts_with("numericless")))
    })
}

/// Who a `Deny` statement leaves as the only possible callers: `Principal "*"` denied
/// unless the caller's account, organization or endpoint is one of a list
/// (`StringNotEquals kms:CallerAccount`, `aws:PrincipalOrgID`, `aws:SourceVpce`).
fn deny_all_but(st: &Value) -> Option<Narrowed> {
    if !aws_principals(st.get("Principal")).iter().any(|p| p == "*") {
        return None;
    }
    let mut out: Option<Narrowed> = None;
    for c in conditions(st.get("Condition"))
        .iter()
        .filter(|c| c.negated() && !c.if_exists)
    {
        if let Some(n) = narrowing(c) {
            out = Some(match out {
                // A Deny applies only when all its conditions match, so a caller gets past
                // the fence by failing any one: it lets in the union of what each names.
                // (Where they name different kinds, the most specific is reported.)
                Some(mut o) => {
                    o.accounts.extend(n.accounts);
                    o.orgs.extend(n.orgs);
                    o.endpoints.extend(n.endpoints);
                    o.other |= n.other;
                    o
                }
                None => n,
            });
        }
    }
    out
}

/// Analyses a policy document. Invalid JSON is an error ([`analyze_or_finding`] makes it a
/// finding); unexpected shapes inside a valid document are skipped, not errors.
pub fn analyze(policy: &str) -> Result<Vec<Finding>, serde_json::Error> {
    let doc: Value = serde_json::from_str(policy)?;
    let mut out = Vec::new();
    let statements: Vec<&Value> = match doc.get("Statement") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(s @ Value::Object(_)) => vec![s],
        _ => Vec::new(),
    };
    let effect = |st: &Value, e: &str| {
        st.get("Effect")
            .and_then(Value::as_str)
            .is_some_and(|x| x.eq_ignore_ascii_case(e))
    };
    // Deny statements subtract: "deny everyone not in these accounts" narrows every Allow.
    let mut fence = Narrowed::default();
    for st in statements.iter().filter(|st| effect(st, "deny")) {
        if let Some(n) = deny_all_but(st) {
            fence = fence.and(n);
        }
    }
    for st in statements.iter().filter(|st| effect(st, "allow")) {
        let sid = st.get("Sid").and_then(Value::as_str).map(str::to_owned);
        let conds = conditions(st.get("Condition"));
        let finding = |kind, value: &str| Finding {
            kind,
            sid: sid.clone(),
            value: value.to_owned(),
        };
        if st.get("NotPrincipal").is_some() {
            out.push(finding(FindingKind::NotPrincipalAllow, "*"));
        }
        let principals = aws_principals(st.get("Principal"));
        let mut accounts: Vec<String> = principals
            .iter()
            .filter_map(|p| principal_account(p))
            .map(str::to_owned)
            .collect();
        let mut wildcard = Vec::new();
        if principals.iter().any(|p| p == "*") {
            for (kind, v) in narrowed(&conds).and(fence.clone()).findings() {
                match kind {
                    FindingKind::AccountPrincipal => accounts.push(v),
                    _ => wildcard.push(finding(kind, &v)),
                }
            }
        }
        accounts.sort();
        accounts.dedup();
        let (public, narrowed_to): (Vec<Finding>, Vec<Finding>) = wildcard
            .into_iter()
            .partition(|f| f.kind == FindingKind::PublicPrincipal);
        out.extend(public);
        for a in &accounts {
            out.push(finding(FindingKind::AccountPrincipal, a));
        }
        out.extend(narrowed_to);
        let may_change_policy = match st.get("NotAction") {
            Some(not) => !strings(Some(not))
                .iter()
                .any(|p| action_matches(p, "kms:putkeypolicy")),
            None => strings(st.get("Action"))
                .iter()
                .any(|p| action_matches(p, "kms:putkeypolicy")),
        };
        if may_change_policy && conds.is_empty() {
            for p in &principals {
                let root = if p.len() == 12 && p.bytes().all(|b| b.is_ascii_digit()) {
                    Some(p.as_str())
                } else if p.ends_with(":root") {
                    principal_account(p)
                } else {
                    None
                };
                if let Some(a) = root {
                    out.push(finding(FindingKind::RootAccess, a));
                }
            }
        }
        if grants_admin(st, &conds) && !requires_mfa(&conds) {
            for p in principals.iter().filter(|p| is_identity(p)) {
                out.push(finding(FindingKind::AdminWithoutMfa, p));
            }
        }
    }
    Ok(out)
}

/// [`analyze`], with a policy that is not JSON as a finding of its own: a document no one
/// can read is not a safe one.
pub fn analyze_or_finding(policy: &str) -> Vec<Finding> {
    analyze(policy).unwrap_or_else(|e| {
        vec![Finding {
            kind: FindingKind::Unparseable,
            sid: None,
            value: e.to_string(),
        }]
    })
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
        assert_eq!(
            kinds(p),
            vec![
                ("account_principal", "111122223333".into()),
                ("root_access", "111122223333".into())
            ]
        );
    }

    #[test]
    fn public_principals_with_and_without_conditions() {
        let open = r#"{"Statement":[{"Sid":"Open","Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*"}]}"#;
        assert_eq!(kinds(open), vec![("public_principal", "*".into())]);
        let open_aws =
            r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":["*"]},"Action":"kms:Decrypt"}}"#;
        assert_eq!(kinds(open_aws), vec![("public_principal", "*".into())]);
        // Narrowed to an account: that account is what the policy grants.
        let restricted = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":["kms:Decrypt"],"Condition":{"StringEquals":{"kms:CallerAccount":"111122223333","kms:ViaService":"s3.us-east-1.amazonaws.com"}}}]}"#;
        assert_eq!(
            kinds(restricted),
            vec![("account_principal", "111122223333".into())]
        );
        let org = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-abc"}}}]}"#;
        assert_eq!(kinds(org), vec![("org_principal", "o-abc".into())]);
        // A condition that does not restrict the caller does not help.
        let weak = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Condition":{"Bool":{"aws:SecureTransport":"true"}}}]}"#;
        assert_eq!(kinds(weak), vec![("public_principal", "*".into())]);
        // Deny statements grant nothing.
        let deny = r#"{"Statement":[{"Effect":"Deny","Principal":"*","Action":"kms:*"}]}"#;
        assert!(kinds(deny).is_empty());
    }

    #[test]
    fn conditions_are_judged_by_operator_and_value() {
        let with = |cond: &str| {
            kinds(&format!(
                r#"{{"Statement":[{{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Condition":{cond}}}]}}"#
            ))
        };
        // An outside account through kms:CallerAccount is that account, not "restricted".
        assert_eq!(
            with(r#"{"StringEquals":{"kms:CallerAccount":"999988887777"}}"#),
            vec![("account_principal", "999988887777".into())]
        );
        // Negations, wildcards, IfExists on a key a request may lack, and path-only keys
        // narrow nothing.
        for open in [
            r#"{"StringNotEquals":{"kms:CallerAccount":"111122223333"}}"#,
            r#"{"StringLike":{"kms:CallerAccount":"*"}}"#,
            r#"{"StringEqualsIfExists":{"aws:SourceVpce":"vpce-1a2b"}}"#,
            r#"{"StringEquals":{"kms:ViaService":"s3.us-east-1.amazonaws.com"}}"#,
            r#"{"Bool":{"kms:GrantIsForAWSResource":"true"}}"#,
            r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::*:role/app"}}"#,
        ] {
            assert_eq!(with(open), vec![("public_principal", "*".into())], "{open}");
        }
        assert_eq!(
            with(r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::210987654321:role/app"}}"#),
            vec![("account_principal", "210987654321".into())]
        );
        assert!(with(r#"{"Null":{"aws:SourceVpce":"false"}}"#).is_empty());
        assert_eq!(
            with(r#"{"ForAnyValue:StringEquals":{"aws:PrincipalOrgID":["o-abc"]}}"#),
            vec![("org_principal", "o-abc".into())]
        );
        assert_eq!(
            with(
                r#"{"ForAnyValue:StringLike":{"aws:PrincipalOrgPaths":["o-abc/r-ab12/ou-ab12-1111/*"]}}"#
            ),
            vec![("org_principal", "o-abc".into())]
        );
        assert_eq!(
            with(r#"{"StringEquals":{"aws:SourceVpce":["vpce-1a2b","vpce-3c4d"]}}"#),
            vec![
                ("endpoint_principal", "vpce-1a2b".into()),
                ("endpoint_principal", "vpce-3c4d".into())
            ]
        );
        // The most specific constraint says who: an account within an organization.
        assert_eq!(
            with(
                r#"{"StringEquals":{"aws:PrincipalOrgID":"o-abc","kms:CallerAccount":"111122223333","aws:SourceVpce":"vpce-1a2b"}}"#
            ),
            vec![("account_principal", "111122223333".into())]
        );
        for open in [
            r#"{"StringLike":{"aws:PrincipalOrgID":"o-*"}}"#,
            r#"{"StringLike":{"aws:SourceVpce":"vpce-*"}}"#,
            r#"{"StringNotEquals":{"aws:PrincipalOrgID":"o-abc"}}"#,
        ] {
            assert_eq!(with(open), vec![("public_principal", "*".into())], "{open}");
        }
    }

    #[test]
    fn deny_statements_fence_what_allows_grant() {
        let p = r#"{"Statement":[
            {"Sid":"Open","Effect":"Allow","Principal":"*","Action":"kms:Decrypt"},
            {"Sid":"Fence","Effect":"Deny","Principal":"*","Action":"kms:*","Condition":{"StringNotEquals":{"kms:CallerAccount":["111122223333","444455556666"]}}}
        ]}"#;
        assert_eq!(
            kinds(p),
            vec![
                ("account_principal", "111122223333".into()),
                ("account_principal", "444455556666".into())
            ]
        );
        // An organization fence, and an Allow narrowed within the fence.
        let org = r#"{"Statement":[
            {"Effect":"Allow","Principal":"*","Action":"kms:Decrypt"},
            {"Effect":"Deny","Principal":"*","Action":"kms:*","Condition":{"StringNotEquals":{"aws:PrincipalOrgID":"o-abc"}}}
        ]}"#;
        assert_eq!(kinds(org), vec![("org_principal", "o-abc".into())]);
        // Allowed to an account the fence keeps out: nobody gets in.
        let shut = r#"{"Statement":[
            {"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Condition":{"StringEquals":{"kms:CallerAccount":"999988887777"}}},
            {"Effect":"Deny","Principal":"*","Action":"kms:*","Condition":{"StringNotEquals":{"kms:CallerAccount":"111122223333"}}}
        ]}"#;
        assert!(kinds(shut).is_empty());
    }

    #[test]
    fn admin_actions_by_pattern_not_action_and_false_mfa() {
        let role = "arn:aws:iam::111122223333:role/ops";
        let st = |rest: &str| {
            kinds(&format!(
                r#"{{"Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{role}"}},{rest}}}]}}"#
            ))
            .into_iter()
            .filter(|(k, _)| *k == "admin_without_mfa")
            .count()
        };
        assert_eq!(st(r#""Action":"kms:Put*""#), 1);
        assert_eq!(st(r#""Action":"kms:*Key*""#), 1);
        assert_eq!(st(r#""NotAction":"kms:Decrypt""#), 1);
        assert_eq!(st(r#""Action":["kms:Decrypt","kms:Describe*"]"#), 0);
        assert_eq!(
            st(r#""Action":"kms:*","Condition":{"Bool":{"aws:MultiFactorAuthPresent":"false"}}"#),
            1
        );
        assert_eq!(
            st(
                r#""Action":"kms:*","Condition":{"BoolIfExists":{"aws:MultiFactorAuthPresent":"true"}}"#
            ),
            1
        );
        assert_eq!(
            st(r#""Action":"kms:*","Condition":{"Bool":{"aws:MultiFactorAuthPresent":"true"}}"#),
            0
        );
        assert_eq!(
            st(
                r#""Action":"kms:*","Condition":{"NumericLessThan":{"aws:MultiFactorAuthAge":"3600"}}"#
            ),
            0
        );
        assert_eq!(
            analyze_or_finding("{not json")
                .into_iter()
                .map(|f| f.kind.as_str())
                .collect::<Vec<_>>(),
            vec!["unparseable"]
        );
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
                // A bare account id may change the policy: its IAM can recover the key.
                ("root_access", Some("Admins"), "444455556666"),
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
