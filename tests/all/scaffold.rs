//! `stephost new` (issue #23): a project created in a temporary directory
//! outside the repository — Rust, Python or JavaScript — builds with the
//! documented commands, its native unit test passes, and its manifest serves
//! it in a Sequence unchanged.

use std::path::Path;
use std::process::Command;

use crate::support::{Host, STEPHOST, ce_headers, post};

/// `cargo ARGS` in `dir`, sharing one target directory between runs (a
/// clean one would rebuild wit-bindgen each time), without the outer
/// cargo's settings.
fn cargo(dir: &Path, args: &[&str]) -> String {
    let target = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/scaffold");
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
        .current_dir(dir)
        .args(args)
        .env("CARGO_TARGET_DIR", target);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
    ] {
        command.env_remove(var);
    }
    let out = command.output().expect("run cargo");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "cargo {args:?} in {}:\n{text}",
        dir.display()
    );
    if !dir.join("target").exists() {
        std::os::unix::fs::symlink(target, dir.join("target")).expect("link target");
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_step_builds_tests_and_serves_in_a_sequence() {
    let sdk = concat!(env!("CARGO_MANIFEST_DIR"), "/../guests/sdk");
    let (parent, project) = new_project("shout", &["--sdk-path", sdk]);
    for file in ["Cargo.toml", "src/lib.rs", "step.yaml", "README.md"] {
        assert!(project.join(file).is_file(), "{file} written");
    }
    // A second time: refused, nothing overwritten.
    let again = Command::new(STEPHOST)
        .args(["new", "shout", "--dir"])
        .arg(parent.path())
        .output()
        .expect("stephost new");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    // The README's commands: the native unit test, then the component.
    let tested = cargo(&project, &["test"]);
    assert!(tested.contains("1 passed"), "{tested}");
    cargo(
        &project,
        &["build", "--release", "--target", "wasm32-wasip2"],
    );

    // Its manifest, as written, serves it.
    serve_one_event(&project, "shout").await;
}

/// `program ARGS` in `dir` with the Python toolchain of
/// guests/build-polyglot.sh (a venv with componentize-py) first on PATH, as
/// the project's README has the user activate one.
fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    let venv = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/toolchains/python/bin"
    );
    assert!(
        Path::new(venv).join("componentize-py").is_file(),
        "{venv}/componentize-py is missing: run guests/build-polyglot.sh (tests/run.sh does)"
    );
    let path = format!("{venv}:{}", std::env::var("PATH").unwrap_or_default());
    let out = Command::new(program)
        .current_dir(dir)
        .args(args)
        .env("PATH", path)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?}:\n{text}");
    text
}

/// `stephost new NAME ARGS` in a fresh temporary directory.
fn new_project(name: &str, args: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
    let parent = tempfile::tempdir().expect("temp dir");
    let out = Command::new(STEPHOST)
        .args(["new", name, "--dir"])
        .arg(parent.path())
        .args(args)
        .output()
        .expect("stephost new");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let project = parent.path().join(name);
    (parent, project)
}

/// Serves the project's `step.yaml` as written and sends it one event.
async fn serve_one_event(project: &Path, name: &str) {
    let manifest = project.join("step.yaml");
    let host = Host::start_args(&["--manifest", manifest.to_str().expect("utf-8")]).await;
    let out = post(
        &format!("{}/sequences/{name}-sequence", host.url),
        &ce_headers("s-1", "text/plain"),
        "hello",
    )
    .await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(out.text(), "hello!");
    assert_eq!(out.header("ce-handledby"), "my-step");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_python_step_builds_tests_and_serves_in_a_sequence() {
    let (_parent, project) = new_project("greet-py", &["--lang", "python"]);
    for file in ["app.py", "test_app.py", "requirements.txt", "wit/step.wit"] {
        assert!(project.join(file).is_file(), "{file} written");
    }
    // The README's commands, in the venv the test suite made.
    run(
        &project,
        "pip",
        &["install", "--quiet", "-r", "requirements.txt"],
    );
    run(
        &project,
        "componentize-py",
        &["-d", "wit", "-w", "step", "bindings", "."],
    );
    let tested = run(&project, "python3", &["-m", "unittest", "test_app"]);
    assert!(
        tested.contains("Ran 2 tests") && tested.contains("OK"),
        "{tested}"
    );
    run(
        &project,
        "componentize-py",
        &[
            "-d",
            "wit",
            "-w",
            "step",
            "componentize",
            "app",
            "-o",
            "greet-py.wasm",
        ],
    );
    serve_one_event(&project, "greet-py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_javascript_step_builds_tests_and_serves_in_a_sequence() {
    let (_parent, project) = new_project("greet-js", &["--lang", "js"]);
    for file in [
        "step.js",
        "test/step.test.mjs",
        "package.json",
        "wit/step.wit",
    ] {
        assert!(project.join(file).is_file(), "{file} written");
    }
    // The README's commands: jco from npm, the native test, the build.
    run(
        &project,
        "npm",
        &["install", "--no-audit", "--no-fund", "--loglevel=error"],
    );
    let tested = run(&project, "npm", &["test"]);
    assert!(
        tested.contains("pass 2") && tested.contains("fail 0"),
        "{tested}"
    );
    run(&project, "npm", &["run", "build"]);
    serve_one_event(&project, "greet-js").await;
}
