//! Running the `kms-audit` binary in the CLI tests.

#![allow(dead_code)] // each test binary uses its own part of this

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// `kms-audit ARGS` in `cwd`, with no lake from the environment.
pub fn command(args: &[&str], cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kms-audit"));
    c.args(args).current_dir(cwd).env_remove("KMS_AUDIT_LAKE");
    c
}

pub fn kms_audit(args: &[&str], cwd: &Path) -> Output {
    command(args, cwd).output().expect("run kms-audit")
}

/// `kms-audit generate --out OUT --hours H --accounts A --regions us-east-1 EXTRA...` in
/// `cwd`, which must succeed.
pub fn generate(cwd: &Path, out: &str, hours: u32, accounts: u32, extra: &[&str]) {
    let (hours, accounts) = (hours.to_string(), accounts.to_string());
    let mut args = vec![
        "generate",
        "--out",
        out,
        "--hours",
        &hours,
        "--accounts",
        &accounts,
        "--regions",
        "us-east-1",
    ];
    args.extend_from_slice(extra);
    let o = kms_audit(&args, cwd);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Runs a command with `input` on its stdin.
pub fn with_stdin(mut c: Command, input: &str) -> Output {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kms-audit");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for kms-audit")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
