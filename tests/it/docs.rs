//! The docs stay in step with the code: the column reference with the schema, the rule
//! list with the catalog, the README short and its links alive.

use std::path::Path;

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn schema_doc_documents_every_column_with_its_type() {
    let doc = read("docs/schema.md");
    for c in kms_audit::schema::COLUMNS {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", c.name)))
            .unwrap_or_else(|| panic!("docs/schema.md has no row for column {}", c.name));
        assert!(
            row.contains(c.doc),
            "docs/schema.md row for {} differs from schema.rs",
            c.name
        );
        assert_eq!(row.contains("NOT NULL"), !c.nullable, "{}", c.name);
    }
    assert!(doc.contains("| `event_date` |"));
    // The objects table: every column named in its section, with its nullability.
    let objects = doc
        .split("# The `objects` table")
        .nth(1)
        .expect("docs/schema.md documents the objects table");
    for f in kms_audit::lake::table::objects_schema().fields() {
        let row = objects
            .lines()
            .find(|l| l.starts_with('|') && l.contains(&format!("`{}`", f.name())))
            .unwrap_or_else(|| panic!("no row for objects.{}", f.name()));
        assert_eq!(
            row.contains("NOT NULL"),
            !f.is_nullable(),
            "objects.{}",
            f.name()
        );
    }
    // The digests and trail_events tables likewise (a row may name several columns).
    for (table, schema) in [
        ("digests", kms_audit::integrity::lake::digests_schema()),
        (
            "trail_events",
            kms_audit::lake::trail::trail_events_schema(),
        ),
    ] {
        let section = doc
            .split(&format!("# The `{table}` table"))
            .nth(1)
            .unwrap_or_else(|| panic!("docs/schema.md documents the {table} table"));
        let section = section.split("\n# ").next().unwrap_or(section);
        for f in schema.fields() {
            let row = section
                .lines()
                .find(|l| l.starts_with('|') && l.contains(&format!("`{}`", f.name())))
                .unwrap_or_else(|| panic!("no row for {table}.{}", f.name()));
            assert_eq!(
                row.contains("NOT NULL"),
                !f.is_nullable(),
                "{table}.{}",
                f.name()
            );
        }
    }
}

#[test]
fn detections_doc_lists_every_rule() {
    let doc = read("docs/detections.md");
    for rule in kms_audit::detect::builtin_rules().expect("rules") {
        assert!(
            doc.contains(&format!("| `{}` |", rule.meta.id)),
            "docs/detections.md has no row for {}",
            rule.meta.id
        );
    }
}

#[test]
fn readme_is_a_front_door_with_live_links() {
    let readme = read("README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= 300,
        "README.md has {lines} lines; details go to docs/"
    );
    // The README's test command is what CI runs.
    assert!(readme.contains("scripts/test") && read(".ci/run").contains("scripts/test"));
    // Every relative link of the README and the docs names a file that exists.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let docs: Vec<String> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| format!("docs/{}", p.file_name().expect("name").to_string_lossy()))
        .chain(["README.md".to_owned(), "CONTRIBUTING.md".to_owned()])
        .collect();
    for doc in docs {
        let text = read(&doc);
        let base = root.join(&doc);
        let dir = base.parent().expect("dir");
        for (i, _) in text.match_indices("](") {
            let target: String = text[i + 2..].chars().take_while(|c| *c != ')').collect();
            if target.contains("://") || target.starts_with('#') {
                continue;
            }
            let file = target.split('#').next().unwrap_or_default();
            assert!(
                dir.join(file).exists(),
                "{doc}: link to {target}, which does not exist"
            );
        }
    }
}
