//! Detection rules: SQL over the lake, deduplicated alerts.
//!
//! A rule is `queries/detections/<rule_id>.sql` plus `<rule_id>.yaml` (metadata, references,
//! runbook, dedup window, and its own positive and negative test records). The catalog ships
//! inside the binary ([`builtin_rules`]); `--rules DIR` loads another directory.
//!
//! Rules read three relations the engine registers for each run:
//!
//! * `window_events`: `kms_events` in the detection window `[since, until)`;
//! * `history_events`: `kms_events` in the [`HISTORY_DAYS`] before `since` (what baselines
//!   learn from);
//! * `trusted_accounts(account_id)`, `trusted_orgs(org_id)`: the accounts and organizations
//!   in the keys of the objects delivered, plus the configured ones ([`trust`]);
//! * `known_vpc_endpoints(vpc_endpoint_id)`: endpoints the trusted accounts are seen using;
//!
//! and return one row per alert with the columns `principal, key_arn, account_id,
//! aws_region, first_seen, last_seen, count, source_ips, event_ids, summary`, optionally
//! `severity` (to override the rule's) and `dedup_on` (to separate incidents beyond
//! principal, key and account). Baseline rules (those that read `history_events`) never
//! judge a lake's first 24 hours, which they learn from; signature rules judge every event
//! from the first.
//!
//! Here: `rules.rs` (metadata, the built-in catalog, loading a directory), `engine.rs` (the
//! window, running the rules, alerts and their deduplication state), [`sinks`] (where new
//! alerts go).

mod engine;
pub mod ocsf;
mod rules;
pub mod sinks;
pub mod trust;

pub use engine::*;
pub use rules::*;

use crate::sql::QueryError;

/// Errors loading or running rules.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("rule {rule}: {reason}")]
    Rule { rule: String, reason: String },
    #[error("rule {rule}: metadata: {source}")]
    Metadata {
        rule: String,
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error("rule {rule}: {source}")]
    Query {
        rule: String,
        #[source]
        source: QueryError,
    },
    #[error("{0}")]
    Setup(#[from] QueryError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Time(#[from] crate::time::InvalidTime),
}
