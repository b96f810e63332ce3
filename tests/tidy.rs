//! Source-tree rules that drift when nothing checks them.
//! 1. Layers: a module never imports a higher layer.
//! 2. `unsafe` lives only in `src/io/mapping.rs`, each block under a `// SAFETY:` comment.
//! 3. Only the storage seam's real implementation touches `std::fs`.
//! 4. Functions stay short enough to read in one screen.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

/// Layers, lowest first: a module may import only the ones before it.
const LAYERS: &[&str] = &[
    "error",
    "io",
    "run",
    "memtable",
    "spine",
    "changelog",
    "wal",
    "checkpoint",
    "recovery",
    "remote",
    "store",
];
const UNSAFE_MODULE: &str = "src/io/mapping.rs";
const STD_FS_MODULES: &[&str] = &["src/io/real.rs", "src/io/mapping.rs", "src/io/lock.rs"];
/// Longest function body allowed, in lines.
const MAX_FN_LINES: usize = 100;

fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(&root.join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

fn layer_of(rel: &str) -> Option<usize> {
    let name = rel.strip_prefix("src/")?.split(['/', '.']).next()?;
    LAYERS.iter().position(|l| *l == name)
}

#[test]
fn lower_layers_never_import_higher_ones() {
    let mut violations = Vec::new();
    for (rel, text) in sources() {
        let Some(own) = layer_of(&rel) else { continue };
        for (n, line) in text.lines().enumerate() {
            for layer in &LAYERS[own + 1..] {
                if line.contains(&format!("crate::{layer}")) {
                    violations.push(format!(
                        "{rel}:{}: layer {} uses higher layer {layer}",
                        n + 1,
                        LAYERS[own]
                    ));
                }
            }
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn unsafe_only_in_the_mapping_module_and_always_justified() {
    let mut violations = Vec::new();
    for (rel, text) in sources() {
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if !code.contains("unsafe {")
                && !code.contains("unsafe fn")
                && !code.contains("allow(unsafe_code)")
            {
                continue;
            }
            if rel != UNSAFE_MODULE {
                violations.push(format!("{rel}:{}: unsafe outside {UNSAFE_MODULE}", n + 1));
            }
            if code.contains("unsafe {")
                && !lines[n.saturating_sub(8)..n]
                    .iter()
                    .any(|l| l.contains("// SAFETY:"))
            {
                violations.push(format!(
                    "{rel}:{}: unsafe block without a // SAFETY: comment",
                    n + 1
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn only_the_storage_seam_touches_std_fs() {
    let mut violations = Vec::new();
    for (rel, text) in sources() {
        if STD_FS_MODULES.contains(&rel.as_str()) {
            continue;
        }
        // Test modules sit at the end of a file: everything after the first
        // `#[cfg(test)]` may use the real file system for fixtures.
        let tests_start = text
            .lines()
            .position(|l| l.contains("#[cfg(test)]"))
            .unwrap_or(usize::MAX);
        for (n, line) in text.lines().enumerate() {
            let in_test = n > tests_start;
            let code = line.split("//").next().unwrap_or("");
            if !in_test && (code.contains("std::fs") || code.contains("File::open")) {
                violations.push(format!("{rel}:{}: file-system call outside the io seam", n + 1));
            }
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn functions_stay_short() {
    let mut violations = Vec::new();
    for (rel, text) in sources() {
        let lines: Vec<&str> = text.lines().collect();
        for (start, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            let is_fn = t.starts_with("fn ") || t.starts_with("pub fn ") || t.starts_with("pub(crate) fn ");
            if !is_fn || t.ends_with(';') {
                continue;
            }
            let indent = line.len() - t.len();
            let close = " ".repeat(indent) + "}";
            let end = lines[start..]
                .iter()
                .position(|l| *l == close)
                .map_or(0, |p| p + start);
            if end - start > MAX_FN_LINES {
                violations.push(format!("{rel}:{}: function of {} lines", start + 1, end - start));
            }
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");
}
