//! `kms-audit detect` and `kms-audit rules`.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use kms_audit::detect::{
    Alert, DetectOptions, DetectState, Rule, builtin_rules, evaluate, load_rules, parse_time_arg,
};
use kms_audit::sinks::{AlertSink, SnsSink, deliver_all, is_sns_topic, parse_sink};

/// Options of one detection run.
#[derive(Debug)]
pub struct DetectArgs<'a> {
    pub lake: &'a str,
    pub rules: Option<&'a Path>,
    pub since: Option<&'a str>,
    pub until: Option<&'a str>,
    pub trusted_accounts: &'a [String],
    /// Keep and honour deduplication state under `<lake>/state/`.
    pub state: bool,
    /// Where to deliver new alerts besides stdout (`file:PATH`, webhook URLs).
    pub sinks: &'a [String],
}

pub fn rules(dir: Option<&Path>) -> Result<Vec<Rule>> {
    Ok(match dir {
        Some(d) => load_rules(d).with_context(|| format!("loading rules from {}", d.display()))?,
        None => builtin_rules()?,
    })
}

/// Runs the rules; returns the alerts that are new (not already reported).
pub fn run(args: &DetectArgs<'_>) -> Result<Vec<Alert>> {
    let any_sns = args.sinks.iter().any(|s| is_sns_topic(s));
    let lake = crate::lake::Lake::open(args.lake, any_sns)?;
    let rules = rules(args.rules)?;
    let rt = &lake.rt;
    let ctx = lake.query()?;
    let now = chrono::Utc::now().timestamp_micros();
    let opts = DetectOptions {
        since: args.since.map(|s| parse_time_arg(s, now)).transpose()?,
        until: args.until.map(|s| parse_time_arg(s, now)).transpose()?,
        trusted_accounts: args.trusted_accounts.to_vec(),
    };
    let sinks = {
        let _guard = rt.enter();
        args.sinks
            .iter()
            .map(|s| match (is_sns_topic(s), lake.aws.as_ref()) {
                (true, Some(aws)) => Ok(Box::new(SnsSink::new(aws, s)) as Box<dyn AlertSink>),
                _ => parse_sink(s).map_err(anyhow::Error::msg),
            })
            .collect::<Result<Vec<_>>>()?
    };
    let mut state = if args.state {
        Some(DetectState::load(lake.store.as_ref())?)
    } else {
        None
    };
    let Some((window, alerts)) = rt.block_on(evaluate(&ctx, &rules, &opts, state.as_mut()))? else {
        eprintln!(
            "no events to judge in {} (an empty lake, or only its first 24 hours, which train baselines)",
            args.lake
        );
        return Ok(Vec::new());
    };
    // Deliver before remembering: if a sink fails, the state is left as it was and the
    // next run sends these alerts again (at least once, never silently dropped).
    let failures = deliver_all(&sinks, &alerts, 3, std::time::Duration::from_millis(500));
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("error: {f}");
        }
        print(&alerts, true)?;
        anyhow::bail!(
            "{} sink(s) failed; the alerts above were printed and will be sent again next run",
            failures.len()
        );
    }
    if let Some(st) = &state {
        st.save(lake.store.as_ref())?;
    }
    eprintln!(
        "{} rules over {} .. {}: {} alert(s)",
        rules.len(),
        kms_audit::time::format_micros(window.since),
        kms_audit::time::format_micros(window.until),
        alerts.len()
    );
    Ok(alerts)
}

pub fn print(alerts: &[Alert], json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        for a in alerts {
            serde_json::to_writer(&mut out, a)?;
            writeln!(out)?;
        }
        return Ok(());
    }
    if alerts.is_empty() {
        writeln!(out, "no alerts")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<9} {:<36} {:<21} {:>6}  summary",
        "severity", "rule", "first seen", "events"
    )?;
    for a in alerts {
        writeln!(
            out,
            "{:<9} {:<36} {:<21} {:>6}  {}",
            a.severity.as_str().to_uppercase(),
            a.rule_id,
            a.first_seen,
            a.count,
            a.summary
        )?;
    }
    Ok(())
}

pub fn list(dir: Option<&Path>) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for r in rules(dir)? {
        let m = &r.meta;
        writeln!(out, "{:<36} {:<8} {}", m.id, m.severity.as_str(), m.title)?;
        writeln!(
            out,
            "{:<36} dedup {}; {}",
            "",
            m.dedup_window,
            m.references.join("; ")
        )?;
    }
    Ok(())
}
