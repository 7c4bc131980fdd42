//! One module per command: its `clap::Args` (the documentation of its flags) and a `run`
//! returning the process's exit code.

pub mod compact;
pub mod convert;
pub mod demo;
pub mod detect;
pub mod generate;
pub mod ingest;
pub mod policy;
pub mod report;
pub mod rules;
pub mod schema;
pub mod sql;
pub mod vacuum;
pub mod verify;

/// The lake argument every command that reads or writes the lake takes.
#[derive(clap::Args, Debug, Clone)]
pub struct LakeArg {
    /// The lake: a directory or s3://bucket/prefix (default from KMS_AUDIT_LAKE, else
    /// ./kms-lake)
    #[arg(long, env = "KMS_AUDIT_LAKE", default_value = "./kms-lake")]
    pub lake: String,
}

/// Accounts and organizations trusted besides those in the keys of the logs in the lake.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TrustedArg {
    /// Accounts to trust besides those whose logs are in the lake (comma-separated)
    #[arg(long, env = "KMS_AUDIT_TRUSTED_ACCOUNTS", value_delimiter = ',')]
    pub trusted_accounts: Vec<String>,
    /// Organizations (o-...) to trust besides those of organization trails in the lake
    /// (comma-separated)
    #[arg(long, env = "KMS_AUDIT_TRUSTED_ORGS", value_delimiter = ',')]
    pub trusted_orgs: Vec<String>,
}

/// `--since` and `--until` (RFC 3339, a date, or a span before now such as `7d`) in
/// microseconds.
pub fn period(
    since: Option<&str>,
    until: Option<&str>,
) -> Result<(Option<i64>, Option<i64>), kms_audit::time::InvalidTime> {
    let now = kms_audit::time::now_micros();
    let at = |s: Option<&str>| {
        s.map(|s| kms_audit::time::parse_time_arg(s, now))
            .transpose()
    };
    Ok((at(since)?, at(until)?))
}

/// Whether an error is stdout's reader having gone away (`| head`).
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// An error and its causes on one line, each said once: most of the library's errors show
/// their source in their own message too, which `{:#}` would repeat.
pub fn error_message(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
    }
    msg
}

/// `--as-of VERSION|TIME` ([`AsOf::parse`]); latest when absent.
pub fn as_of(text: Option<&str>) -> anyhow::Result<kms_audit::lake::table::AsOf> {
    use anyhow::Context;
    match text {
        None => Ok(kms_audit::lake::table::AsOf::Latest),
        Some(t) => kms_audit::lake::table::AsOf::parse(t)
            .with_context(|| format!("--as-of {t}: expected a version number or a time")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading {path}: {source}")]
    struct Shows {
        path: &'static str,
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn causes_are_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(Shows {
            path: "a",
            source: io,
        })
        .context("opening lake x");
        assert_eq!(error_message(&e), "opening lake x: reading a: no such file");
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(is_broken_pipe(&anyhow::Error::new(Shows {
            path: "b",
            source: pipe
        })));
        assert!(!is_broken_pipe(&e));
    }
}
