//! The README's column reference stays in step with the schema.

#[test]
fn readme_documents_every_column_with_its_type() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    for c in kms_audit::schema::COLUMNS {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", c.name)))
            .unwrap_or_else(|| panic!("README has no row for column {}", c.name));
        assert!(
            row.contains(c.doc),
            "README row for {} differs from schema.rs",
            c.name
        );
        assert_eq!(row.contains("NOT NULL"), !c.nullable, "{}", c.name);
    }
    assert!(readme.contains("| `event_date` |"));
    // The README's test command is what CI runs.
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../.ci/run"))
        .expect(".ci/run");
    assert!(readme.contains("scripts/test") && ci.contains("scripts/test"));
}
