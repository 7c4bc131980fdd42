//! Generates the built-in query catalog from the `queries/` folders, so a rule or report
//! section is added by adding its files: `$OUT_DIR/catalog.rs` embeds every
//! `queries/detections/<id>.sql` + `<id>.yaml` and `queries/reports/<nn>_<id>.sql` + `.yaml`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn pairs(dir: &Path) -> Vec<(String, PathBuf, PathBuf)> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("sql") {
            continue;
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("UTF-8 file name")
            .to_owned();
        let yaml = path.with_extension("yaml");
        assert!(
            yaml.is_file(),
            "{} has no metadata file {}",
            path.display(),
            yaml.display()
        );
        out.push((stem, path, yaml));
    }
    out.sort();
    out
}

fn table(out: &mut String, name: &str, doc: &str, dir: &Path) {
    println!("cargo::rerun-if-changed={}", dir.display());
    writeln!(out, "/// {doc}").ok();
    writeln!(out, "pub(crate) const {name}: &[(&str, &str, &str)] = &[").ok();
    for (stem, sql, yaml) in pairs(dir) {
        writeln!(
            out,
            "    ({stem:?}, include_str!({:?}), include_str!({:?})),",
            sql.display().to_string(),
            yaml.display().to_string()
        )
        .ok();
    }
    writeln!(out, "];").ok();
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let queries = manifest.join("../queries");
    let mut out = String::new();
    table(
        &mut out,
        "DETECTIONS",
        "`(rule id, sql, yaml)` of `queries/detections/`, by id.",
        &queries.join("detections"),
    );
    table(
        &mut out,
        "REPORT_SECTIONS",
        "`(file stem, sql, yaml)` of `queries/reports/`, in file order (the report's order).",
        &queries.join("reports"),
    );
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("catalog.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("{}: {e}", dest.display()));
}
