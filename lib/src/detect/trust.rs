//! Who is trusted: the accounts and organizations that rules compare policies, grants,
//! keys and endpoints with.
//!
//! Trust comes from configuration (`--trusted-accounts`, `--trusted-orgs`, their env vars
//! and template parameters) and from where the logs were delivered: the account and the
//! organization in each CloudTrail object key (`AWSLogs/[o-org/]<account>/CloudTrail/...`).
//! CloudTrail's bucket policy decides who may write under a prefix; a record's own
//! `recipientAccountId` is whatever the file says, so it makes no account trusted. Only
//! when no object key follows that layout (logs copied into a flat directory) do the
//! records' recipients stand in, and [`Trusted::source`] says so.

use arrow::array::AsArray;
use datafusion::prelude::SessionContext;

use crate::lake::table::OBJECTS_TABLE;
use crate::sql::{QueryError, run_sql};

/// Where the trusted accounts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustSource {
    /// Object keys and/or configuration.
    Delivery,
    /// No object key in the CloudTrail layout: the records' `recipientAccountId`s, with
    /// the configured accounts.
    Records,
}

/// The trusted accounts and organizations for one run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Trusted {
    pub accounts: Vec<String>,
    pub orgs: Vec<String>,
    pub source: TrustSource,
}

fn is_account(a: &str) -> bool {
    a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit())
}

fn is_org(o: &str) -> bool {
    o.len() > 2 && o.starts_with("o-") && o[2..].bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The first column of a query, as text.
pub(crate) async fn strings(ctx: &SessionContext, sql: &str) -> Result<Vec<String>, QueryError> {
    let mut out = Vec::new();
    for b in run_sql(ctx, sql).await? {
        let c = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8)?;
        out.extend(c.as_string::<i32>().iter().flatten().map(str::to_owned));
    }
    Ok(out)
}

/// The trusted set for objects delivered from `first_day` to `last_day` (`YYYY-MM-DD`,
/// the dates in their keys), with the configured accounts and organizations.
pub async fn resolve(
    ctx: &SessionContext,
    first_day: &str,
    last_day: &str,
    accounts: &[String],
    orgs: &[String],
) -> Result<Trusted, QueryError> {
    let mut t = Trusted {
        accounts: accounts
            .iter()
            .map(|a| a.trim().to_owned())
            .filter(|a| is_account(a))
            .collect(),
        orgs: orgs
            .iter()
            .map(|o| o.trim().to_owned())
            .filter(|o| is_org(o))
            .collect(),
        source: TrustSource::Delivery,
    };
    let configured = t.accounts.len();
    let files = format!("{OBJECTS_TABLE}_files");
    if ctx.table_exist(&files).unwrap_or(false) {
        // The partition is text here (see `sql::open`): a plain range prunes the files.
        let in_keys = |group: &str| {
            format!(
                "SELECT DISTINCT regexp_match(object, '^AWSLogs/{group}')[1] FROM {files} \
                 WHERE object_date >= '{first_day}' AND object_date <= '{last_day}' \
                   AND object LIKE 'AWSLogs/%'"
            )
        };
        t.accounts
            .extend(strings(ctx, &in_keys("(?:o-[a-z0-9]+/)?([0-9]{12})/CloudTrail/")).await?);
        t.orgs
            .extend(strings(ctx, &in_keys("(o-[a-z0-9]+)/[0-9]{12}/CloudTrail/")).await?);
    }
    // No log in the CloudTrail layout: the records' recipients stand in (with what is
    // configured), or the lake's own accounts would look like outsiders.
    if t.accounts.len() == configured && ctx.table_exist("kms_events").unwrap_or(false) {
        t.accounts.extend(
            strings(
                ctx,
                "SELECT DISTINCT account_id FROM kms_events WHERE account_id IS NOT NULL",
            )
            .await?,
        );
        t.source = TrustSource::Records;
    }
    for v in [&mut t.accounts, &mut t.orgs] {
        v.retain(|x| !x.is_empty());
        v.sort();
        v.dedup();
    }
    Ok(t)
}

/// A view's SQL listing `values` as one text column (none: an empty relation).
pub(crate) fn values_view(column: &str, values: &[String]) -> String {
    if values.is_empty() {
        return format!("SELECT CAST(NULL AS VARCHAR) AS {column} WHERE false");
    }
    let rows: Vec<String> = values
        .iter()
        .map(|v| format!("('{}')", v.replace('\'', "''")))
        .collect();
    format!(
        "SELECT column1 AS {column} FROM (VALUES {})",
        rows.join(", ")
    )
}

/// Registers `trusted_accounts(account_id)`, `trusted_orgs(org_id)` and
/// `trust_basis(source)` (`delivery` or `records`, see [`TrustSource`]).
pub async fn register(ctx: &SessionContext, t: &Trusted) -> Result<(), QueryError> {
    let basis = vec![
        match t.source {
            TrustSource::Delivery => "delivery",
            TrustSource::Records => "records",
        }
        .to_owned(),
    ];
    for (name, column, values) in [
        ("trusted_accounts", "account_id", &t.accounts),
        ("trusted_orgs", "org_id", &t.orgs),
        ("trust_basis", "source", &basis),
    ] {
        run_sql(ctx, &format!("DROP VIEW IF EXISTS {name}")).await?;
        run_sql(
            ctx,
            &format!("CREATE VIEW {name} AS {}", values_view(column, values)),
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_ids_are_configured() {
        assert!(is_account("111122223333"));
        assert!(!is_account("11112222333x"));
        assert!(is_org("o-a1b2c3d4e5"));
        assert!(!is_org("o-"));
        assert!(!is_org("o-a1'; DROP"));
    }
}
