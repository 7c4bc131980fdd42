//! `kms-audit`: the command line. Parsing and dispatch only: each command is a module of
//! [`commands`] with its arguments and a `run` returning the exit code; the work is in the
//! `kms_audit` library.

mod commands;
mod lake;
mod prompt;

use clap::{Parser, Subcommand};

use commands::{
    compact, convert, demo, detect, generate, ingest, policy, report, rules, schema, sql, vacuum,
    verify,
};

#[derive(Parser, Debug)]
#[command(
    name = "kms-audit",
    version,
    about = "A typed, queryable audit trail of AWS KMS key usage from CloudTrail logs",
    long_about = "A typed, queryable audit trail of AWS KMS key usage from CloudTrail logs.\n\n\
                  Start with `kms-audit demo`: it generates a sample CloudTrail tree with \
                  planted incidents, ingests it, queries it, detects and reports. No AWS \
                  account needed."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Ingest(ingest::Args),
    Sql(sql::Args),
    Detect(detect::Args),
    Compact(compact::Args),
    Vacuum(vacuum::Args),
    Convert(convert::Args),
    Report(report::Args),
    Rules(rules::Args),
    Demo(demo::Args),
    Generate(generate::Args),
    Schema(schema::Args),
    Verify(verify::Args),
    Policy(policy::Args),
}

fn main() {
    let result = match Cli::parse().command {
        Command::Ingest(a) => ingest::run(a),
        Command::Sql(a) => sql::run(a),
        Command::Detect(a) => detect::run(a),
        Command::Compact(a) => compact::run(a),
        Command::Vacuum(a) => vacuum::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Report(a) => report::run(a),
        Command::Rules(a) => rules::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Schema(a) => schema::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Policy(a) => policy::run(a),
    };
    let code = match result {
        Ok(code) => code,
        // `kms-audit sql ... | head`: the reader has what it wanted.
        Err(e) if commands::is_broken_pipe(&e) => 0,
        Err(e) => {
            eprintln!("error: {}", commands::error_message(&e));
            2
        }
    };
    std::process::exit(code);
}
