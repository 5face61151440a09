//! Embeds the shipped runbooks, the stdlib modules and the lab files in the binary, so that
//! `pgrunbook` works from any directory.

use std::fmt::Write;
use std::path::Path;

fn collect(dir: &Path, base: &Path, ext: Option<&str>, out: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            collect(&p, base, ext, out);
        } else if ext.is_none_or(|x| p.extension().is_some_and(|e| e == x)) {
            let rel = p
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.push((
                rel,
                p.canonicalize().unwrap().to_string_lossy().into_owned(),
            ));
        }
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut code = String::new();
    for (name, dir, ext) in [
        ("RUNBOOKS", "runbooks", Some("rhai")),
        ("STDLIB", "stdlib", Some("rhai")),
        ("LAB_FILES", "lab", None),
    ] {
        println!("cargo:rerun-if-changed={dir}");
        let mut files = vec![];
        collect(&root.join(dir), &root.join(dir), ext, &mut files);
        writeln!(code, "pub static {name}: &[(&str, &str)] = &[").unwrap();
        for (rel, abs) in files {
            writeln!(code, "    ({rel:?}, include_str!({abs:?})),").unwrap();
        }
        writeln!(code, "];").unwrap();
    }
    let out = std::env::var("OUT_DIR").unwrap();
    std::fs::write(Path::new(&out).join("embedded.rs"), code).unwrap();
}
