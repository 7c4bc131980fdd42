//! `kms-audit sql` without a query: an interactive prompt.
//!
//! Statements end with `;` and may span lines. On a terminal: line editing and history
//! (`~/.kms_audit_history`), and each result's row count and time. Meta-commands:
//! `\d` lists tables and views, `\d NAME` describes one (for `kms_events`, with each
//! column's meaning), `\timing` toggles timing, `\?` helps, `\q` quits. Piped input runs
//! the same way without the editor, and exits 1 if a statement failed.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Result;
use datafusion::prelude::SessionContext;
use kms_audit::schema::{COLUMNS, PARTITION_COLUMN, PARTITION_DOC, TABLE};
use kms_audit::sql::{OutputFormat, run_sql, write_batches};
use rustyline::error::ReadlineError;

const HELP: &str = "\\d            list tables and views
\\d NAME       describe a table or view (kms_events: with each column's meaning)
\\timing       toggle timing of statements
\\q            quit
Statements end with ';' and may span lines. Ctrl-C clears the statement being typed.";

/// Where lines come from.
enum Input {
    Editor(Box<rustyline::DefaultEditor>, Option<std::path::PathBuf>),
    Piped(std::io::StdinLock<'static>),
}

impl Input {
    /// The next line; `None` at the end of input.
    fn line(&mut self, continuation: bool) -> Result<Option<String>> {
        match self {
            Input::Editor(rl, _) => {
                match rl.readline(if continuation { "...> " } else { "kms> " }) {
                    Ok(l) => Ok(Some(l)),
                    // Ctrl-C clears the statement being typed, as in psql.
                    Err(ReadlineError::Interrupted) => Ok(Some("\\c".into())),
                    Err(ReadlineError::Eof) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
            Input::Piped(stdin) => {
                let mut l = String::new();
                Ok((stdin.read_line(&mut l)? > 0)
                    .then(|| l.trim_end_matches(['\n', '\r']).to_owned()))
            }
        }
    }

    fn remember(&mut self, statement: &str) {
        if let Input::Editor(rl, _) = self {
            let _ = rl.add_history_entry(statement);
        }
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        if let Input::Editor(rl, Some(path)) = self {
            let _ = rl.save_history(path);
        }
    }
}

pub fn run(
    rt: &tokio::runtime::Runtime,
    ctx: &SessionContext,
    location: &str,
    format: OutputFormat,
) -> Result<i32> {
    let tty = std::io::stdin().is_terminal();
    let mut input = if tty {
        let mut rl = rustyline::DefaultEditor::new()?;
        let history = std::env::var_os("HOME")
            .map(|h| std::path::PathBuf::from(h).join(".kms_audit_history"));
        if let Some(h) = &history {
            let _ = rl.load_history(h);
        }
        eprintln!(
            "kms-audit SQL over {location}: table kms_events, views kms_events_dedup, key_usage_daily, principals."
        );
        eprintln!(
            "End statements with ';'. \\d lists tables, \\d NAME describes one, \\? helps, \\q quits."
        );
        Input::Editor(Box::new(rl), history)
    } else {
        Input::Piped(std::io::stdin().lock())
    };
    let mut timing = tty;
    let mut failed = false;
    let mut buf = String::new();
    while let Some(line) = input.line(!buf.is_empty())? {
        let t = line.trim();
        if buf.is_empty() && t.starts_with('\\') {
            let mut parts = t.splitn(2, char::is_whitespace);
            match (parts.next().unwrap_or(""), parts.next().map(str::trim)) {
                ("\\q", _) => break,
                ("\\c", _) => {}
                ("\\?" | "\\h", _) => eprintln!("{HELP}"),
                ("\\timing", _) => {
                    timing = !timing;
                    eprintln!("timing {}", if timing { "on" } else { "off" });
                }
                ("\\d", None | Some("")) => {
                    if let Err(e) = list_tables(rt, ctx, format) {
                        eprintln!("error: {e}");
                        failed = true;
                    }
                }
                ("\\d", Some(name)) => {
                    if let Err(e) = describe(rt, ctx, name) {
                        eprintln!("error: {e}");
                        failed = true;
                    }
                }
                (other, _) => {
                    eprintln!("unknown command {other}; \\? lists them");
                    failed = true;
                }
            }
            input.remember(t);
            continue;
        }
        if t == "\\c" {
            buf.clear();
            continue;
        }
        if buf.is_empty() && matches!(t, "quit" | "exit") {
            break;
        }
        if t.is_empty() && buf.is_empty() {
            continue;
        }
        buf.push_str(&line);
        buf.push('\n');
        if !t.ends_with(';') {
            continue;
        }
        let statement = buf.trim().to_owned();
        buf.clear();
        input.remember(&statement);
        let started = std::time::Instant::now();
        match rt.block_on(run_sql(ctx, &statement)) {
            Ok(batches) => {
                let mut out = std::io::stdout().lock();
                write_batches(&mut out, &batches, format)?;
                out.flush()?;
                let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
                if timing {
                    eprintln!("{rows} row(s) in {:.3}s", started.elapsed().as_secs_f64());
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed && !tty { 1 } else { 0 })
}

fn list_tables(
    rt: &tokio::runtime::Runtime,
    ctx: &SessionContext,
    format: OutputFormat,
) -> Result<()> {
    let batches = rt.block_on(run_sql(
        ctx,
        "SELECT table_name, table_type FROM information_schema.tables \
         WHERE table_schema = 'public' ORDER BY table_type, table_name",
    ))?;
    write_batches(&mut std::io::stdout().lock(), &batches, format)?;
    Ok(())
}

fn describe(rt: &tokio::runtime::Runtime, ctx: &SessionContext, name: &str) -> Result<()> {
    let name = name.trim_end_matches(';');
    let df = rt.block_on(ctx.table(name))?;
    let mut out = std::io::stdout().lock();
    for f in df.schema().fields() {
        let doc = if name == TABLE {
            COLUMNS
                .iter()
                .find(|c| c.name == f.name())
                .map(|c| c.doc)
                .or_else(|| (f.name() == PARTITION_COLUMN).then_some(PARTITION_DOC))
                .unwrap_or("")
        } else {
            ""
        };
        writeln!(
            out,
            "{:<36} {:<28} {}",
            f.name(),
            format!(
                "{}{}",
                f.data_type(),
                if f.is_nullable() { "" } else { " NOT NULL" }
            ),
            doc
        )?;
    }
    Ok(())
}
