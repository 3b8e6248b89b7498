//! Builds every guest in `guests/` for `wasm32-wasip2` (a nested cargo run with
//! its own target directory, as wasmtime's test-programs do) and writes
//! `guests.rs`: one path constant per guest, the embedded reference guests and
//! a `foreach_guest!` macro, so `cargo run` and `cargo test` need no extra step.

use std::env;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

/// Every guest crate: (package name, embedded into the binary as `builtin:<name>`).
const GUESTS: &[(&str, bool)] = &[
    ("appender", false),
    ("dropper", false),
    ("faulty", false),
    ("nn-probe", false),
    ("content-filter", true),
    ("sentiment", true),
    ("sentiment-tract", false),
    ("wit-next", false),
];

fn main() {
    let host_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = host_dir
        .parent()
        .expect("host/ sits in the workspace root")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_absolute() { t } else { root.join(t) })
        .unwrap_or_else(|| root.join("target"))
        .join("guests");
    for watched in ["guests", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-changed=../manifests/default-sequence.yaml");

    ensure_wasm_target();
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target);
    for (name, _) in GUESTS {
        cmd.args(["-p", name]);
    }
    // The outer cargo's settings must not leak into the guest build: flags and
    // wrappers meant for the host (clippy-driver, coverage) would break it or
    // force needless rebuilds. Guests inherit -D warnings instead.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_PRIMARY_PACKAGE",
        "CLIPPY_ARGS",
        // Set by scripts/fuzz.sh for cargo fuzz; it would change every guest's
        // fingerprint and rebuild them all.
        "RUSTC_BOOTSTRAP",
    ] {
        cmd.env_remove(var);
    }
    // +simd128: tract and other numeric code use wasm SIMD (wasmtime runs it
    // natively); measured by the content_filter bench.
    cmd.env("RUSTFLAGS", "-D warnings -C target-feature=+simd128");
    let status = cmd.status().expect("cannot run cargo to build the guests");
    assert!(status.success(), "building the guests failed: {status}");

    let mut code = String::new();
    let mut embedded = String::new();
    let mut names = String::new();
    for (name, embed) in GUESTS {
        let file = target
            .join("wasm32-wasip2/release")
            .join(format!("{}.wasm", name.replace('-', "_")));
        assert!(
            file.is_file(),
            "guest {name} was built but {} is missing",
            file.display()
        );
        let constant = name.replace('-', "_").to_uppercase();
        writeln!(code, "/// Path of the built `{name}` guest component.").unwrap();
        writeln!(
            code,
            "pub const {constant}: &str = {:?};",
            file.display().to_string()
        )
        .unwrap();
        write!(names, "$m!({});", name.replace('-', "_")).unwrap();
        if *embed {
            writeln!(
                embedded,
                "    ({name:?}, include_bytes!({:?})),",
                file.display().to_string()
            )
            .unwrap();
        }
    }
    writeln!(
        code,
        "/// Built-in guests by name, bytes compiled into the binary."
    )
    .unwrap();
    writeln!(
        code,
        "pub const EMBEDDED: &[(&str, &[u8])] = &[\n{embedded}];"
    )
    .unwrap();
    writeln!(
        code,
        "/// Calls `$m!(guest)` for every built guest: tests use it so that every guest \
         must have a test.\n#[macro_export]\nmacro_rules! foreach_guest {{ ($m:ident) => {{ {names} }}; }}"
    )
    .unwrap();
    let model = root.join("guests/sentiment/model/model.onnx");
    assert!(model.is_file(), "{} is missing", model.display());
    writeln!(
        code,
        "/// Built-in models by name (`builtin:<name>` in a WasmStep's `spec.models`).\n\
         pub const EMBEDDED_MODELS: &[(&str, &[u8])] = &[\n    (\"sentiment\", include_bytes!({:?})),\n];",
        model.display().to_string()
    )
    .unwrap();
    std::fs::write(out_dir.join("guests.rs"), code).expect("cannot write guests.rs");
}

/// Make sure the toolchain has the `wasm32-wasip2` standard library.
/// rustup installs the targets named in `rust-toolchain.toml` only along
/// with a toolchain it installs itself, and not at all with
/// `RUSTUP_AUTO_INSTALL=0`; a machine whose 1.95 toolchain was there first
/// would otherwise fail deep in the guest build with "can't find crate for
/// `core`".
fn ensure_wasm_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let installed = |root: &PathBuf| root.join("lib/rustlib/wasm32-wasip2/lib").is_dir();
    if sysroot.as_ref().is_some_and(installed) {
        return;
    }
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "add", "wasm32-wasip2"]);
    if let Ok(toolchain) = env::var("RUSTUP_TOOLCHAIN") {
        rustup.args(["--toolchain", &toolchain]);
    }
    let added = rustup.status().is_ok_and(|status| status.success());
    assert!(
        added && sysroot.as_ref().is_some_and(installed),
        "the guests need the wasm32-wasip2 target, which this toolchain lacks and \
         `rustup target add wasm32-wasip2` could not add: install it, then build again"
    );
}
