//! The reference in docs/ is generated from the code and must stay current.

mod common;
use common::*;

#[test]
fn primitives_reference_is_current() {
    let dir = tempfile::tempdir().unwrap();
    let r = pgrunbook_in(dir.path(), &["reference"], &[]).succeeds();
    let checked_in =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/primitives.md"))
            .unwrap();
    assert!(
        r.stdout == checked_in,
        "docs/primitives.md differs from what the code generates: run `cargo run -- reference > docs/primitives.md`"
    );
    // It documents every backend and the stdlib, each entry with a description.
    for needle in [
        "`sql(node: &str, query: &str) -> Array`",
        "`basebackup(",
        "`pgbackrest(",
        "`redis_log(",
        "`cluster::primary()`",
    ] {
        assert!(r.stdout.contains(needle), "reference lacks {needle}");
    }
    for line in r.stdout.lines().filter(|l| l.starts_with("- `")) {
        let i = r.stdout.find(line).unwrap();
        let next = r.stdout[i + line.len()..].lines().nth(1).unwrap_or("");
        assert!(next.trim().len() > 10, "{line} has no description");
    }
}

#[test]
fn reference_documents_every_stdlib_module() {
    let stdlib = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib");
    let mut modules: Vec<String> = std::fs::read_dir(&stdlib)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rhai"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    modules.sort();
    for shipped in ["backup", "cluster", "health", "lsn", "replication"] {
        assert!(
            modules.iter().any(|m| m == shipped),
            "stdlib/{shipped}.rhai not found in {modules:?}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let r = pgrunbook_in(dir.path(), &["reference"], &[]).succeeds();
    let missing: Vec<&String> = modules
        .iter()
        .filter(|m| {
            !r.stdout.contains(&format!(
                "## Stdlib: `import \"{m}\" as {m};` (`stdlib/{m}.rhai`)"
            ))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "the reference lacks the stdlib module(s) {missing:?}"
    );
}

#[test]
fn reference_fails_on_a_stdlib_module_that_does_not_compile() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("stdlib")).unwrap();
    std::fs::write(
        dir.path().join("stdlib/broken.rhai"),
        "//! Broken on purpose.\n\n/// Doc.\nfn f(x) { x + }\n",
    )
    .unwrap();
    pgrunbook_in(dir.path(), &["reference"], &[])
        .fails_with(3)
        .stderr_has("stdlib/broken.rhai:4:");
}

#[test]
fn definitions_are_written_for_editors() {
    let dir = tempfile::tempdir().unwrap();
    pgrunbook_in(dir.path(), &["definitions", "defs"], &[]).succeeds();
    let text: String = std::fs::read_dir(dir.path().join("defs"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(
        text.contains("fn basebackup("),
        "definitions lack the primitives"
    );
    assert!(text.contains("fn create_slot("));
}

/// Every `import "MODULE" as ALIAS` of a stdlib module, in the docs, the README, the shipped
/// runbooks and the stdlib, uses the alias the REPL imports the module as: its own name.
#[test]
fn stdlib_modules_are_imported_under_one_name_everywhere() {
    use pgrunbook::commands::repl::module_alias;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let modules: Vec<String> = pgrunbook::engine::runbook::module_names();
    assert_eq!(module_alias("replication"), "replication");
    let mut files = vec![root.join("README.md")];
    for (dir, ext) in [
        ("docs", "md"),
        ("runbooks", "rhai"),
        ("runbooks/examples", "rhai"),
        ("stdlib", "rhai"),
    ] {
        for e in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == ext) {
                files.push(e.path());
            }
        }
    }
    let mut seen = 0;
    let mut wrong = vec![];
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (at, _) in text.match_indices("import \"") {
            let rest = &text[at + "import \"".len()..];
            let Some((module, rest)) = rest.split_once('"') else {
                continue;
            };
            let Some(alias) = rest.trim_start().strip_prefix("as ") else {
                continue;
            };
            let alias: String = alias
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !modules.iter().any(|m| m == module) {
                continue;
            }
            seen += 1;
            if alias != module_alias(module) {
                wrong.push(format!(
                    "{}: import \"{module}\" as {alias}",
                    file.display()
                ));
            }
        }
    }
    assert!(seen > 10, "only {seen} imports of stdlib modules found");
    assert!(
        wrong.is_empty(),
        "imported under another name:\n{}",
        wrong.join("\n")
    );
}
