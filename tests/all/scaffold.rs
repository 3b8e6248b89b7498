//! `stephost new` (issue #23): a project created in a temporary directory
//! outside the repository builds with the documented command, its native unit
//! test passes, and its manifest serves it in a Sequence unchanged.

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
    let parent = tempfile::tempdir().expect("temp dir");
    let sdk = concat!(env!("CARGO_MANIFEST_DIR"), "/../guests/sdk");
    let out = Command::new(STEPHOST)
        .args(["new", "shout", "--dir"])
        .arg(parent.path())
        .args(["--sdk-path", sdk])
        .output()
        .expect("stephost new");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let project = parent.path().join("shout");
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
    let manifest = project.join("step.yaml");
    let host = Host::start_args(&["--manifest", manifest.to_str().expect("utf-8")]).await;
    let out = post(
        &format!("{}/sequences/shout-sequence", host.url),
        &ce_headers("s-1", "text/plain"),
        "hello",
    )
    .await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(out.text(), "hello!");
    assert_eq!(out.header("ce-handledby"), "my-step");
}
