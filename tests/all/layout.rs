//! The shape of `host/src`, checked on every run: the modules are floors
//! (the module map in `lib.rs`), every `crate::…` path and every `super::…`
//! path that leaves a file's own folder points down, no file is longer than
//! a reader can hold, and every file says its job in its first `//!` line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bottom to top. A module may use only modules on a lower floor.
const FLOORS: &[&[&str]] = &[
    &[
        "event",
        "metrics",
        "otlp",
        "admission",
        "step_limits",
        "tls",
        "error_chain",
    ],
    &["oci"],
    &["manifest", "runtime"],
    &["registry"],
    &["sequence"],
    &["server"],
    &["app"],
];

/// Longest file, in lines: a file holds one job.
const MAX_LINES: usize = 400;

fn floor_of(module: &str) -> Option<usize> {
    FLOORS.iter().position(|f| f.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read host/src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`runtime/nn/host.rs` → runtime).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

/// Top-level modules named by `crate::X` paths in the file's code (comments,
/// doc links included, are not imports and are skipped).
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push((n + 1, name));
            }
            rest = after;
        }
    }
    found
}

#[test]
fn imports_point_down_the_floors() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    let mut modules = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        // lib.rs is the module map; bin/ is the binary, above every floor.
        if module == "lib" || module == "bin" {
            continue;
        }
        let Some(floor) = floor_of(&module) else {
            wrong.push(format!(
                "{}: module {module:?} is on no floor",
                file.display()
            ));
            continue;
        };
        modules.insert(module.clone(), floor);
        let text = std::fs::read_to_string(file).expect("read");
        for (line, used) in crate_paths(&text) {
            if used == module {
                continue;
            }
            match floor_of(&used) {
                Some(f) if f < floor => {}
                _ => wrong.push(format!(
                    "{}:{line}: {module} (floor {floor}) uses crate::{used} (floor {:?})",
                    file.display(),
                    floor_of(&used)
                )),
            }
        }
    }
    assert!(
        modules.len() >= 11,
        "the walk found too few modules: {modules:?}"
    );
    assert!(
        wrong.is_empty(),
        "imports that do not point down:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_file_is_short_and_says_its_job() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        let lines = text.lines().count();
        if lines > MAX_LINES {
            wrong.push(format!(
                "{}: {lines} lines (at most {MAX_LINES})",
                file.display()
            ));
        }
        if !text.starts_with("//! ") {
            wrong.push(format!(
                "{}: does not open with a `//!` line",
                file.display()
            ));
        }
    }
    assert!(files.len() > 30, "found only {} files", files.len());
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_flag_is_in_the_reference() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/reference.md");
    let reference = std::fs::read_to_string(&docs).expect("docs/reference.md");
    let mut missing = Vec::new();
    for command in ["serve", "validate"] {
        let help = std::process::Command::new(env!("CARGO_BIN_EXE_stephost"))
            .args([command, "--help"])
            .output()
            .expect("run stephost --help");
        let help = String::from_utf8_lossy(&help.stdout).to_string();
        let flags: Vec<&str> = help
            .split_whitespace()
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(|w| w.trim_end_matches(|c: char| !(c.is_ascii_alphanumeric() || c == '-')))
            .filter(|f| *f != "--help")
            .collect();
        assert!(flags.len() > 3, "{command} --help shows no flags: {help}");
        for flag in flags {
            if !reference.contains(flag) {
                missing.push(format!("{command} {flag}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "flags not in docs/reference.md: {missing:?}"
    );
}
