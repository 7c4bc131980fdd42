//! The evasion suite: incidents shaped to walk past naive rules (a wildcard narrowed to an
//! outside account, an outside key used through S3, a grantee in a service form, a burst
//! split across a 10-minute boundary, ...), each next to a properly restricted look-alike
//! of the same shape that must stay quiet.
//!
//! The actor is an automation role (`<env>-deploy-pipeline`) from a private address, so no
//! rule about people, networks or MFA catches an evasion by accident: the rule the class is
//! about has to.

use super::*;

const OUTSIDE_ORG: &str = "o-zz9y8x7w6v";
const FORGED_ACCOUNT: &str = "777766665555";
const ABAC_TAG: &str = "Project";

/// What [`plant`] adds to the manifest.
pub(crate) struct Planted {
    pub incidents: Vec<Incident>,
    pub lookalikes: Vec<Incident>,
    pub abac_tag_keys: Vec<String>,
}

/// `Nov 20, 2026 8:00:00 PM`, the way CloudTrail writes `validTo`.
fn kms_date(micros: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let day = micros.div_euclid(DAY_MICROS);
    let (y, m, d) = civil_from_days(day);
    let secs = micros.rem_euclid(DAY_MICROS) / 1_000_000;
    let (h, min, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let (h12, ampm) = match h {
        0 => (12, "AM"),
        1..=11 => (h, "AM"),
        12 => (12, "PM"),
        _ => (h - 12, "PM"),
    };
    format!(
        "{} {d}, {y} {h12}:{min:02}:{s:02} {ampm}",
        MONTHS[(m - 1) as usize]
    )
}

/// A key policy document as CloudTrail carries it: a JSON string inside the request.
fn policy(account: &str, extra: serde_json::Value) -> String {
    let doc = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
             "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
             "Action": "kms:*", "Resource": "*"},
            extra
        ]
    });
    serde_json::Value::String(doc.to_string()).to_string()
}

fn wildcard(sid: &str, condition: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"Sid": sid, "Effect": "Allow", "Principal": {"AWS": "*"},
        "Action": ["kms:Decrypt", "kms:DescribeKey"], "Resource": "*", "Condition": condition})
}

/// Plants the evasions and their look-alikes in the production site, from hour 40 on (one
/// in the lake's first hours, which signature rules must judge too). Needs 60 hours.
pub(crate) fn plant(
    rng: &mut Rng,
    sites: &[Site],
    t0: i64,
    hours: u32,
    organization: Option<&str>,
    out: &mut Vec<Rec>,
) -> Planted {
    let prod = &sites[0];
    let acct = prod.account;
    let hour = 3_600_000_000i64;
    let mut step = 0i64;
    // Each case in its own 45 minutes, from hour 40.
    let mut next = || {
        step += 1;
        t0 + 40 * hour + (step - 1) * 45 * 60_000_000
    };
    // Roles of the production account, named `<env>-<name>`.
    let role = |name: &str, session: &str, via: Option<&'static str>| Who::Role {
        account: acct.to_owned(),
        role: format!("{}-{name}", prod.env),
        session: session.into(),
        mfa: false,
        via,
    };
    let deploy = role("deploy-pipeline", "deploy-4711", None);
    let app = |via| role("app-backend", "i-0cafe0cafe", via);
    let ip = "10.20.0.15";
    let mk = |rng: &mut Rng, time: i64, name: &'static str, who: Who| {
        Rec::planted(rng, prod, time, name, who, ip, SDK_AGENTS[0])
    };
    let app_key = prod.key("alias/app-data").clone();
    let s3_key = prod.key("alias/s3-data").clone();
    let secrets_key = prod.key("alias/secrets").clone();
    let ebs_key = prod.key("alias/ebs").clone();
    let mut planted = Planted {
        incidents: Vec::new(),
        lookalikes: Vec::new(),
        abac_tag_keys: vec![ABAC_TAG.to_owned()],
    };
    let record = |list: &mut Vec<Incident>,
                  out: &mut Vec<Rec>,
                  kind: &str,
                  desc: &str,
                  key: Option<&Key>,
                  alerting: Vec<Rec>,
                  context: Vec<Rec>| {
        let principal = alerting
            .first()
            .or(context.first())
            .map(|r| r.who.principal())
            .unwrap_or_default();
        list.push(Incident {
            kind: kind.into(),
            description: desc.into(),
            account_id: acct.to_owned(),
            principal,
            key_arn: key.map(|k| k.arn.clone()),
            event_ids: alerting.iter().map(|r| r.event_id.clone()).collect(),
            context_ids: context.iter().map(|r| r.event_id.clone()).collect(),
        });
        out.extend(alerting);
        out.extend(context);
    };
    let put_policy = |rng: &mut Rng, time: i64, key: &Key, doc: String| {
        let mut r = mk(rng, time, "PutKeyPolicy", deploy.clone());
        r.request = Some(format!(
            "{{\"keyId\":\"{}\",\"policyName\":\"default\",\"policy\":{doc},\"bypassPolicyLockoutSafetyCheck\":false}}",
            key.arn
        ));
        r.resources = vec![(key.arn.clone(), acct.into())];
        r
    };

    // A wildcard narrowed to an outside account through kms:CallerAccount.
    let caller = |a: &str| {
        wildcard(
            "ThroughS3",
            serde_json::json!({"StringEquals": {"kms:CallerAccount": a,
                "kms:ViaService": format!("s3.{}.amazonaws.com", prod.region)}}),
        )
    };
    let t = next();
    let e = put_policy(rng, t, &app_key, policy(acct, caller(EXTERNAL_ACCOUNT)));
    let l = put_policy(rng, t + 600_000_000, &app_key, policy(acct, caller(acct)));
    record(
        &mut planted.incidents,
        out,
        "evasion_policy_caller_account",
        "Principal * narrowed by kms:CallerAccount to an outside account",
        Some(&app_key),
        vec![e],
        vec![],
    );
    record(
        &mut planted.lookalikes,
        out,
        "lookalike_policy_caller_account",
        "Principal * narrowed by kms:CallerAccount to our account (the AWS managed key shape)",
        Some(&app_key),
        vec![],
        vec![l],
    );

    // kms:ViaService alone: any account's S3 can use the key.
    let t = next();
    let via_only = wildcard(
        "AnyS3",
        serde_json::json!({"StringEquals": {"kms:ViaService": format!("s3.{}.amazonaws.com", prod.region)}}),
    );
    let e = put_policy(rng, t, &s3_key, policy(acct, via_only));
    record(
        &mut planted.incidents,
        out,
        "evasion_policy_via_service_only",
        "Principal * restricted only by kms:ViaService (any account's S3)",
        Some(&s3_key),
        vec![e],
        vec![],
    );

    // A wildcard narrowed to another organization.
    if let Some(org) = organization {
        let t = next();
        let by_org = |o: &str| {
            wildcard(
                "Org",
                serde_json::json!({"StringEquals": {"aws:PrincipalOrgID": o}}),
            )
        };
        let e = put_policy(rng, t, &secrets_key, policy(acct, by_org(OUTSIDE_ORG)));
        let l = put_policy(
            rng,
            t + 600_000_000,
            &secrets_key,
            policy(acct, by_org(org)),
        );
        record(
            &mut planted.incidents,
            out,
            "evasion_policy_outside_org",
            "Principal * narrowed by aws:PrincipalOrgID to another organization",
            Some(&secrets_key),
            vec![e],
            vec![],
        );
        record(
            &mut planted.lookalikes,
            out,
            "lookalike_policy_own_org",
            "Principal * narrowed to our organization",
            Some(&secrets_key),
            vec![],
            vec![l],
        );
    }

    // A wildcard narrowed only to a VPC endpoint no trusted account uses.
    let t = next();
    let by_vpce = |v: &str| {
        wildcard(
            "Endpoint",
            serde_json::json!({"StringEquals": {"aws:SourceVpce": v}}),
        )
    };
    let e = put_policy(
        rng,
        t,
        &ebs_key,
        policy(acct, by_vpce("vpce-0feedfacefeedface")),
    );
    let l = put_policy(
        rng,
        t + 600_000_000,
        &ebs_key,
        policy(acct, by_vpce(&prod.vpce)),
    );
    record(
        &mut planted.incidents,
        out,
        "evasion_policy_unknown_endpoint",
        "Principal * narrowed only to a VPC endpoint none of our accounts uses",
        Some(&ebs_key),
        vec![e],
        vec![],
    );
    record(
        &mut planted.lookalikes,
        out,
        "lookalike_policy_own_endpoint",
        "Principal * narrowed to the endpoint our applications use",
        Some(&ebs_key),
        vec![],
        vec![l],
    );

    // NotPrincipal with Allow (everyone else), next to the guard-rail Deny form.
    let t = next();
    let admin = format!("arn:aws:iam::{acct}:role/KeyAdmin");
    let e = put_policy(
        rng,
        t,
        &app_key,
        policy(
            acct,
            serde_json::json!({"Sid": "AllButAdmins", "Effect": "Allow",
        "NotPrincipal": {"AWS": admin}, "Action": "kms:Decrypt", "Resource": "*"}),
        ),
    );
    let l = put_policy(
        rng,
        t + 600_000_000,
        &app_key,
        policy(
            acct,
            serde_json::json!({"Sid": "OnlyAdmins", "Effect": "Deny",
        "NotPrincipal": {"AWS": [admin, format!("arn:aws:iam::{acct}:root")]},
        "Action": ["kms:PutKeyPolicy", "kms:ScheduleKeyDeletion"], "Resource": "*"}),
        ),
    );
    record(
        &mut planted.incidents,
        out,
        "evasion_policy_not_principal",
        "Allow with NotPrincipal: everyone but the administrators",
        Some(&app_key),
        vec![e],
        vec![],
    );
    record(
        &mut planted.lookalikes,
        out,
        "lookalike_policy_not_principal_deny",
        "Deny with NotPrincipal: only administrators administer",
        Some(&app_key),
        vec![],
        vec![l],
    );

    // A replica created with its own, public policy.
    let t = next();
    let replicate = |rng: &mut Rng, time: i64, doc: String| {
        let mut r = mk(rng, time, "ReplicateKey", deploy.clone());
        r.request = Some(format!(
            "{{\"keyId\":\"{}\",\"replicaRegion\":\"eu-central-1\",\"policy\":{doc},\"bypassPolicyLockoutSafetyCheck\":false}}",
            app_key.arn
        ));
        r.resources = vec![(app_key.arn.clone(), acct.into())];
        r
    };
    let open = serde_json::json!({"Sid": "Open", "Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"});
    let e = replicate(rng, t, policy(acct, open));
    let l = replicate(
        rng,
        t + 600_000_000,
        policy(
            acct,
            serde_json::json!({"Sid": "Use", "Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{acct}:role/{}-app-backend", prod.env)},
        "Action": "kms:Decrypt", "Resource": "*"}),
        ),
    );
    record(
        &mut planted.incidents,
        out,
        "evasion_replica_public_policy",
        "ReplicateKey with a public replica policy",
        Some(&app_key),
        vec![e],
        vec![],
    );
    record(
        &mut planted.lookalikes,
        out,
        "lookalike_replica_policy",
        "ReplicateKey with a policy for our application role",
        Some(&app_key),
        vec![],
        vec![l],
    );

    // Our data encrypted by S3 under an outside account's key (the KMS ransomware shape).
    let t = next();
    let outside_key = format!(
        "arn:aws:kms:{}:{EXTERNAL_ACCOUNT}:key/{}",
        prod.region,
        rng.uuid()
    );
    let s3_encrypt = |rng: &mut Rng, time: i64, key_arn: &str, owner: &str| {
        let mut r = mk(rng, time, "GenerateDataKey", app(Some("s3.amazonaws.com")));
        r.ip = "s3.amazonaws.com".into();
        r.agent = "s3.amazonaws.com".into();
        r.read_only = true;
        r.request = Some(format!(
            "{{\"keyId\":\"{key_arn}\",\"keySpec\":\"AES_256\",\"encryptionContext\":{}}}",
            obj(&[(
                "aws:s3:arn",
                &format!("arn:aws:s3:::{}/exports/2026/q4.csv", prod.buckets[0])
            )])
        ));
        r.resources = vec![(key_arn.to_owned(), owner.to_owned())];
        r
    };
    let e = s3_encrypt(rng, t, &outside_key, EXTERNAL_ACCOUNT);
    let l = s3_encrypt(rng, t + 600_000_000, &s3_key.arn, acct);
    record(
        &mut planted.incidents,
        out,
        "evasion_outside_key_via_s3",
        "S3 encrypting our object under an outside account's key",
        None,
        vec![e],
        vec![],
    );
    record(
        &mut planted.lookalikes,
        out,
        "lookalike_own_key_via_s3",
        "S3 encrypting our object under our own key",
        Some(&s3_key),
        vec![],
        vec![l],
    );

    // Grantees in a service form: an outside account's EC2 infrastructure, and ours.
    let t = next();
    let grant = |rng: &mut Rng, time: i64, grantee: String| {
        let mut r = mk(rng, time, "CreateGrant", app(Some("ec2.amazonaws.com")));
        r.ip = "ec2.amazonaws.com".into();
        r.agent = "ec2.amazonaws.com".into();
        r.request = Some(format!(
            "{{\"keyId\":\"{}\",\"granteePrincipal\":\"{grantee}\",\"operations\":[\"Decrypt\",\"ReEncryptFrom\"],\"constraints\":{{\"encryptionContextSubset\":{{\"aws:ebs:id\":\"vol-0{}\"}}}}}}",
            ebs_key.arn,
            hex(rng, 16)
        ));
        r.response = Some(format!(
            "{{\"grantId\":\"{}\",\"keyId\":\"{}\"}}",
            hex(rng, 64),
            ebs_key.arn
        ));
        r.resources = vec![(ebs_key.arn.clone(), acct.into())];
        r
    };
    let e = grant(rng, t, format!("{EXTERNAL_ACCOUNT}:aws:ec2-infrastructure"));
    let instance = hex(rng, 16);
    let l = grant(
        rng,
        t + 600_000_000,
        format!("{acct}:aws:ec2-infrastructure:i-0{instance}"),
    );
    record(
        &mut planted.incidents,
        out,
        "evasion_grant_service_form",
        "CreateGrant to an outside account's EC2 infrastructure (a grantee with no ARN)",
        Some(&ebs_key),
        vec![e],
        vec![],
    );
    record(
        &mut planted.lookalikes,
        out,
        "lookalike_grant_own_ec2",
        "CreateGrant to our own EC2 infrastructure",
        Some(&ebs_key),
        vec![],
        vec![l],
    );

    // A custom key store disconnected: every key in it stops working.
    let t = next();
    let store = format!("cks-{}", hex(rng, 17));
    let mut e = mk(rng, t, "DisconnectCustomKeyStore", deploy.clone());
    e.request = Some(format!("{{\"customKeyStoreId\":\"{store}\"}}"));
    let mut l = mk(
        rng,
        t + 600_000_000,
        "DescribeCustomKeyStores",
        deploy.clone(),
    );
    l.read_only = true;
    l.request = Some(format!("{{\"customKeyStoreId\":\"{store}\"}}"));
    record(
        &mut planted.incidents,
        out,
        "evasion_key_store_disconnected",
        "DisconnectCustomKeyStore",
        None,
        vec![e],
        vec![],
    );
    record(
        &mut planted.lookalikes,
        out,
        "lookalike_key_store_described",
        "DescribeCustomKeyStores",
        None,
        vec![],
        vec![l],
    );

    // Imported material that expires in two days; material that does not expire.
    let t = next();
    let import = |rng: &mut Rng, time: i64, expires: Option<i64>| {
        let mut r = mk(rng, time, "ImportKeyMaterial", deploy.clone());
        r.request = Some(match expires {
            Some(at) => format!(
                "{{\"keyId\":\"{}\",\"validTo\":\"{}\",\"expirationModel\":\"KEY_MATERIAL_EXPIRES\"}}",
                secrets_key.id,
                kms_date(at)
            ),
            None => format!(
                "{{\"keyId\":\"{}\",\"expirationModel\":\"KEY_MATERIAL_DOES_NOT_EXPIRE\"}}",
                secrets_key.id
            ),
        });
        r.resources = vec![(secrets_key.arn.clone(), acct.into())];
        r
    };
    let e = import(rng, t, Some(t + 2 * DAY_MICROS));
    let l = import(rng, t + 600_000_000, None);
    record(
        &mut planted.incidents,
        out,
        "evasion_material_expires",
        "ImportKeyMaterial with material that expires in two days",
        Some(&secrets_key),
        vec![e],
        vec![],
    );
    record(
        &mut planted.lookalikes,
        out,
        "lookalike_material_does_not_expire",
        "ImportKeyMaterial of the key's material, not expiring",
        Some(&secrets_key),
        vec![],
        vec![l],
    );

    // A key whose material lives outside KMS.
    let t = next();
    let create = |rng: &mut Rng, time: i64, origin: &str| {
        let id = rng.uuid();
        let arn = format!("arn:aws:kms:{}:{acct}:key/{id}", prod.region);
        let mut r = mk(rng, time, "CreateKey", deploy.clone());
        r.request = Some(if origin == "EXTERNAL_KEY_STORE" {
            format!(
                "{{\"origin\":\"{origin}\",\"customKeyStoreId\":\"{store}\",\"xksKeyId\":\"xks-key-7\",\"keySpec\":\"SYMMETRIC_DEFAULT\",\"keyUsage\":\"ENCRYPT_DECRYPT\"}}"
            )
        } else {
            format!(
                "{{\"origin\":\"{origin}\",\"keySpec\":\"SYMMETRIC_DEFAULT\",\"keyUsage\":\"ENCRYPT_DECRYPT\"}}"
            )
        });
        r.response = Some(format!(
            "{{\"keyMetadata\":{{\"keyId\":\"{id}\",\"arn\":\"{arn}\",\"origin\":\"{origin}\",\"keyState\":\"Enabled\"}}}}"
        ));
        r.resources = vec![(arn.clone(), acct.into())];
        (r, id, arn)
    };
    let (e, _, _) = create(rng, t, "EXTERNAL_KEY_STORE");
    let (l, _, _) = create(rng, t + 600_000_000, "AWS_KMS");
    record(
        &mut planted.incidents,
        out,
        "evasion_key_outside_material",
        "CreateKey in an external key store",
        None,
        vec![e],
        vec![],
    );
    record(
        &mut planted.lookalikes,
        out,
        "lookalike_key_kms_material",
        "CreateKey with KMS key material",
        None,
        vec![],
        vec![l],
    );

    // The alias production traffic uses, moved to a brand-new key; a new alias created.
    let t = next();
    let (new_key, new_id, new_arn) = create(rng, t, "AWS_KMS");
    let mut e = mk(rng, t + 600_000_000, "UpdateAlias", deploy.clone());
    e.request = Some(format!(
        "{{\"aliasName\":\"{}\",\"targetKeyId\":\"{new_id}\"}}",
        app_key.alias
    ));
    e.resources = vec![
        (
            format!("arn:aws:kms:{}:{acct}:{}", prod.region, app_key.alias),
            acct.into(),
        ),
        (new_arn.clone(), acct.into()),
    ];
    let mut l = mk(rng, t + 900_000_000, "CreateAlias", deploy.clone());
    l.request = Some(format!(
        "{{\"aliasName\":\"alias/reports-2027\",\"targetKeyId\":\"{new_id}\"}}"
    ));
    l.resources = vec![
        (
            format!("arn:aws:kms:{}:{acct}:alias/reports-2027", prod.region),
            acct.into(),
        ),
        (new_arn, acct.into()),
    ];
    record(
        &mut planted.incidents,
        out,
        "evasion_alias_repointed",
        "UpdateAlias: the alias production uses now points to a key created minutes before",
        Some(&app_key),
        vec![e],
        vec![new_key],
    );
    record(
        &mut planted.lookalikes,
        out,
        "lookalike_alias_created",
        "CreateAlias for a new alias",
        None,
        vec![],
        vec![l],
    );

    // An ABAC tag changed; a cost tag changed.
    let t = next();
    let tag = |rng: &mut Rng, time: i64, k: &str, v: &str| {
        let mut r = mk(rng, time, "TagResource", deploy.clone());
        r.request = Some(format!(
            "{{\"keyId\":\"{}\",\"tags\":[{{\"tagKey\":\"{k}\",\"tagValue\":\"{v}\"}}]}}",
            app_key.arn
        ));
        r.resources = vec![(app_key.arn.clone(), acct.into())];
        r
    };
    let e = tag(rng, t, ABAC_TAG, "payments");
    let l = tag(rng, t + 600_000_000, "CostCenter", "4711");
    record(
        &mut planted.incidents,
        out,
        "evasion_abac_tag_changed",
        "TagResource on a tag key policies use for access (ABAC)",
        Some(&app_key),
        vec![e],
        vec![],
    );
    record(
        &mut planted.lookalikes,
        out,
        "lookalike_cost_tag_changed",
        "TagResource on a cost-allocation tag",
        Some(&app_key),
        vec![],
        vec![l],
    );

    // Decrypt through an outside account's VPC endpoint, and through a new one of ours;
    // the usual endpoint with its owner named.
    let t = next();
    let decrypt_via = |rng: &mut Rng, time: i64, vpce: &str, owner: &str| {
        let mut r = mk(rng, time, "Decrypt", app(None));
        r.read_only = true;
        r.ip = "10.0.12.34".into();
        r.vpce = Some(vpce.to_owned());
        r.vpce_account = Some(owner.to_owned());
        r.request = Some(format!(
            "{{\"encryptionAlgorithm\":\"SYMMETRIC_DEFAULT\",\"encryptionContext\":{}}}",
            obj(&[("app", "billing"), ("tenant", "tenant-001")])
        ));
        r.resources = vec![(app_key.arn.clone(), acct.into())];
        r
    };
    let e1 = decrypt_via(rng, t, "vpce-0bad0bad0bad0bad0", EXTERNAL_ACCOUNT);
    let e2 = decrypt_via(rng, t + 900_000_000, "vpce-0aaa1111bbbb22223", acct);
    let l = decrypt_via(rng, t + 1_200_000_000, &prod.vpce, acct);
    record(
        &mut planted.incidents,
        out,
        "evasion_vpce_outside_account",
        "Decrypt through a VPC endpoint of an outside account",
        Some(&app_key),
        vec![e1],
        vec![],
    );
    record(
        &mut planted.incidents,
        out,
        "evasion_vpce_new_endpoint",
        "Decrypt through an endpoint the role never used",
        Some(&app_key),
        vec![e2],
        vec![],
    );
    record(
        &mut planted.lookalikes,
        out,
        "lookalike_vpce_usual",
        "Decrypt through the usual endpoint, its owner named",
        Some(&app_key),
        vec![],
        vec![l],
    );

    // A person with an SDK user agent, without MFA; the same with MFA.
    let t = next();
    let primary = |rng: &mut Rng, time: i64, name: &str, mfa: bool| {
        let mut r = mk(
            rng,
            time,
            "UpdatePrimaryRegion",
            Who::User {
                account: acct.to_owned(),
                name: name.into(),
                mfa: Some(mfa),
            },
        );
        r.agent = "Boto3/1.35.0 md/Botocore#1.35.0 ua/2.0 os/linux#6.1 lang/python#3.12.3".into();
        r.request = Some(format!(
            "{{\"keyId\":\"{}\",\"primaryRegion\":\"eu-west-1\"}}",
            s3_key.arn
        ));
        r.resources = vec![(s3_key.arn.clone(), acct.into())];
        r
    };
    let e = primary(rng, t, "ops-breakglass", false);
    let l = primary(rng, t + 600_000_000, "alice", true);
    record(
        &mut planted.incidents,
        out,
        "evasion_person_sdk_agent",
        "An IAM user without MFA moving a key's primary region with an SDK user agent",
        Some(&s3_key),
        vec![e],
        vec![],
    );
    record(
        &mut planted.lookalikes,
        out,
        "lookalike_person_with_mfa",
        "The same by a user with MFA",
        Some(&s3_key),
        vec![],
        vec![l],
    );

    // A role with no history decrypting 400 times in an hour; another decrypting 30.
    let t = next();
    let mut burst = Vec::new();
    let mut quiet = Vec::new();
    for (name, n, into) in [
        ("batch-export", 400i64, &mut burst),
        ("report-builder", 30, &mut quiet),
    ] {
        for i in 0..n {
            let mut r = mk(
                rng,
                t + i * (40 * 60_000_000 / n),
                "Decrypt",
                role(name, "job-1", None),
            );
            r.read_only = true;
            r.request = Some(format!(
                "{{\"encryptionAlgorithm\":\"SYMMETRIC_DEFAULT\",\"encryptionContext\":{}}}",
                obj(&[
                    ("app", "billing"),
                    ("tenant", &format!("tenant-{:03}", i % 50))
                ])
            ));
            r.resources = vec![(app_key.arn.clone(), acct.into())];
            into.push(r);
        }
    }
    record(
        &mut planted.incidents,
        out,
        "evasion_new_principal_spike",
        "A role with no history: 400 Decrypts in 40 minutes",
        Some(&app_key),
        burst,
        vec![],
    );
    record(
        &mut planted.lookalikes,
        out,
        "lookalike_new_principal_quiet",
        "A role with no history: 30 Decrypts",
        Some(&app_key),
        vec![],
        quiet,
    );

    // Nine denials before a 10-minute boundary and nine after; six spread over an hour.
    let t = next();
    let boundary = t - t.rem_euclid(600_000_000) + 600_000_000;
    let denied = |rng: &mut Rng, time: i64, name: &str| {
        let mut r = mk(rng, time, "Decrypt", role(name, "probe", None));
        r.read_only = true;
        r.request = Some(format!(
            "{{\"keyId\":\"{}\",\"encryptionAlgorithm\":\"SYMMETRIC_DEFAULT\"}}",
            secrets_key.arn
        ));
        r.error = Some((
            "AccessDenied",
            format!(
                "User: arn:aws:sts::{acct}:assumed-role/{}-{name}/probe is not authorized to perform: kms:Decrypt on resource: {}",
                prod.env, secrets_key.arn
            ),
        ));
        r.resources = vec![(secrets_key.arn.clone(), acct.into())];
        r
    };
    let split: Vec<Rec> = (0..18i64)
        .map(|i| denied(rng, boundary - 9 * 10_000_000 + i * 10_000_000, "reporting"))
        .collect();
    let spread: Vec<Rec> = (0..6i64)
        .map(|i| denied(rng, t + i * 600_000_000, "nightly-etl"))
        .collect();
    record(
        &mut planted.incidents,
        out,
        "evasion_denied_burst_split",
        "18 AccessDenied in 3 minutes, split across a 10-minute boundary",
        Some(&secrets_key),
        split,
        vec![],
    );
    record(
        &mut planted.lookalikes,
        out,
        "lookalike_denials_spread",
        "6 AccessDenied spread over an hour",
        Some(&secrets_key),
        vec![],
        spread,
    );

    // A forged record naming an outsider as the recipient, then a policy granting that
    // outsider: the record's contents must not make the outsider trusted.
    let t = next();
    let mut forged = mk(
        rng,
        t,
        "Decrypt",
        Who::Role {
            account: FORGED_ACCOUNT.to_owned(),
            role: "partner".into(),
            session: "s".into(),
            mfa: false,
            via: None,
        },
    );
    forged.read_only = true;
    forged.recipient = FORGED_ACCOUNT.to_owned();
    forged.delivered_under = Some(acct.to_owned());
    forged.resources = vec![(app_key.arn.clone(), acct.into())];
    let e = put_policy(
        rng,
        t + 600_000_000,
        &app_key,
        policy(
            acct,
            serde_json::json!({"Sid": "Partner", "Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{FORGED_ACCOUNT}:root")}, "Action": "kms:Decrypt", "Resource": "*"}),
        ),
    );
    record(
        &mut planted.incidents,
        out,
        "evasion_forged_recipient",
        "A policy granting an account that only a record's recipientAccountId names",
        Some(&app_key),
        vec![e],
        vec![forged],
    );

    // In the lake's first hours: a key deletion scheduled (signature rules judge from the
    // first event); the same refused.
    let t = t0 + 3 * hour + 1_500_000_000;
    let schedule = |rng: &mut Rng, time: i64, refused: bool| {
        let mut r = mk(rng, time, "ScheduleKeyDeletion", deploy.clone());
        r.request = Some(format!(
            "{{\"keyId\":\"{}\",\"pendingWindowInDays\":7}}",
            ebs_key.arn
        ));
        r.resources = vec![(ebs_key.arn.clone(), acct.into())];
        if refused {
            r.error = Some(("AccessDeniedException", "not authorized".into()));
        }
        r
    };
    let e = schedule(rng, t, false);
    let l = schedule(rng, t + 600_000_000, true);
    record(
        &mut planted.incidents,
        out,
        "evasion_first_day_deletion",
        "ScheduleKeyDeletion in the lake's first hours",
        Some(&ebs_key),
        vec![e],
        vec![],
    );
    record(
        &mut planted.lookalikes,
        out,
        "lookalike_deletion_refused",
        "ScheduleKeyDeletion refused",
        Some(&ebs_key),
        vec![],
        vec![l],
    );

    // Cases that would fall after the last hour are dropped, with their records.
    let end = t0 + i64::from(hours) * hour;
    let late: std::collections::HashSet<String> = out
        .iter()
        .filter(|r| r.time >= end)
        .map(|r| r.event_id.clone())
        .collect();
    out.retain(|r| r.time < end);
    for list in [&mut planted.incidents, &mut planted.lookalikes] {
        list.retain(|i| {
            !i.event_ids
                .iter()
                .chain(&i.context_ids)
                .any(|id| late.contains(id))
        });
    }
    planted
}

#[cfg(test)]
mod tests {
    use super::kms_date;
    use kms_audit::time::{DAY_MICROS, days_from_civil};

    #[test]
    fn valid_to_is_written_the_way_cloudtrail_writes_it() {
        let t = days_from_civil(2026, 11, 20) * DAY_MICROS + 20 * 3_600_000_000;
        assert_eq!(kms_date(t), "Nov 20, 2026 8:00:00 PM");
        assert_eq!(kms_date(t - 20 * 3_600_000_000), "Nov 20, 2026 12:00:00 AM");
    }
}
