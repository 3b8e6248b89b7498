//! `stephost new NAME`: a ready project for a new step — its source (Rust on
//! the guest SDK, Python for componentize-py or JavaScript for jco), a native
//! unit test of its logic, a manifest binding it as a WasmStep in a one-step
//! Sequence, and a README with the commands.

mod js;
mod python;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The languages a project can be started in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Lang {
    /// A crate on the guest SDK (`stephost-guest`), built with cargo.
    Rust,
    /// A module built with componentize-py (PyPI) against the step WIT.
    Python,
    /// An ES module built with jco / componentize-js (npm) against the step WIT.
    Js,
}

/// What a Rust project's `Cargo.toml` depends on.
pub(crate) enum Sdk {
    /// The published crate, by version.
    Version(String),
    /// A local checkout of `guests/sdk` (before the crate is published, or to
    /// try changes).
    Path(PathBuf),
}

/// The step WIT and its dependency, written into Python and JavaScript
/// projects (a Rust project gets them through the SDK crate): the very files
/// of `guests/sdk/wit`, so every language builds against one contract.
const WIT_FILES: [(&str, &str); 4] = [
    (
        "wit/step.wit",
        include_str!("../../../../guests/sdk/wit/step.wit"),
    ),
    (
        "wit/deps/wasi-nn/wasi-nn.wit",
        include_str!("../../../../guests/sdk/wit/deps/wasi-nn/wasi-nn.wit"),
    ),
    (
        "wit/deps/wasi-nn/README.md",
        include_str!("../../../../guests/sdk/wit/deps/wasi-nn/README.md"),
    ),
    (
        "wit/deps/wasi-nn/LICENSE",
        include_str!("../../../../guests/sdk/wit/deps/wasi-nn/LICENSE"),
    ),
];

/// Write the project `name` in `lang` under `parent/name`.
pub(crate) fn new_step(name: &str, parent: &Path, lang: Lang, sdk: &Sdk) -> Result<PathBuf> {
    let valid = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        bail!(
            "{name:?} is not a step name: lower-case letters, digits and '-', starting with a \
             letter, at most 63 characters (it is the WasmStep's metadata.name and the crate name)"
        );
    }
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let files = match lang {
        Lang::Rust => rust_files(name, sdk)?,
        Lang::Python => python::files(name),
        Lang::Js => js::files(name),
    };
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(dir)
}

/// The step WIT as (path, text) pairs, for the languages that need it.
fn wit_files() -> impl Iterator<Item = (String, String)> {
    WIT_FILES
        .iter()
        .map(|(path, text)| (path.to_string(), text.to_string()))
}

/// A Rust project's files.
fn rust_files(name: &str, sdk: &Sdk) -> Result<Vec<(String, String)>> {
    let sdk_line = match sdk {
        Sdk::Version(v) => format!("stephost-guest = {v:?}"),
        Sdk::Path(p) => {
            let p = p
                .canonicalize()
                .with_context(|| format!("--sdk-path {}", p.display()))?;
            format!(
                "stephost-guest = {{ path = {:?} }}",
                p.display().to_string()
            )
        }
    };
    let file = name.replace('-', "_");
    Ok(vec![
        (
            "Cargo.toml".into(),
            CARGO_TOML
                .replace("{name}", name)
                .replace("{sdk}", &sdk_line),
        ),
        ("src/lib.rs".into(), LIB_RS.to_string()),
        (
            "step.yaml".into(),
            step_yaml(
                name,
                &format!("./target/wasm32-wasip2/release/{file}.wasm"),
                "32Mi",
            ),
        ),
        (
            "README.md".into(),
            readme(
                name,
                RUST_BUILD,
                &format!("target/wasm32-wasip2/release/{file}.wasm"),
            ),
        ),
        (".gitignore".into(), "/target\n".to_string()),
    ])
}

const CARGO_TOML: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# A component: `cargo build --release --target wasm32-wasip2` or `cargo component build --release`.
crate-type = ["cdylib"]

[dependencies]
{sdk}

[profile.release]
opt-level = "s"
lto = true
strip = true

# A project of its own, also when created inside another workspace.
[workspace]
"#;

const LIB_RS: &str = r#"//! A stephost step: receives one CloudEvent, returns the event to hand on
//! (`Ok(Some(..))`), nothing to drop it (`Ok(None)`), or an error
//! (`StepError::retryable` ≙ 5xx, retried; `StepError::fatal` ≙ 4xx, to the
//! dead-letter sink).

use stephost_guest::{Event, Step, StepError, config_or, export_step};

struct MyStep;

impl Step for MyStep {
    fn handle(mut event: Event) -> Result<Option<Event>, StepError> {
        // The manifest's `spec.config`, read per event.
        let suffix = config_or("suffix", "!");
        let text = format!("{}{suffix}", event.data_text()?);
        event.set_data_text(text);
        event.set_extension("handledby", "my-step");
        Ok(Some(event))
    }
}

export_step!(MyStep);

/// The step's logic on the host target: `cargo test`, no host, no wasm.
#[cfg(test)]
mod tests {
    use super::MyStep;
    use stephost_guest::Step;
    use stephost_guest::testing::{text_event, with_config};

    #[test]
    fn appends_the_configured_suffix() {
        let out = with_config(&[("suffix", "?")], || MyStep::handle(text_event("1", "hello")))
            .expect("handled")
            .expect("forwarded");
        assert_eq!(out.data_text().expect("text"), "hello?");
        assert_eq!(out.extension("handledby"), Some("my-step"));
    }
}
"#;

/// The manifest every project gets: the step bound as a WasmStep (its
/// component at `component`, `memory` of linear memory) in a one-step Sequence.
fn step_yaml(name: &str, component: &str, memory: &str) -> String {
    STEP_YAML
        .replace("{name}", name)
        .replace("{component}", component)
        .replace("{memory}", memory)
}

const STEP_YAML: &str = r#"# The step bound as a WasmStep, in a one-step Sequence:
#   stephost serve --manifest step.yaml    then POST an event to /sequences/{name}-sequence
apiVersion: stephost.dev/v1alpha1
kind: WasmStep
metadata:
  name: {name}
spec:
  component: {component}
  config:
    suffix: "!"
  limits:
    memory: {memory}
    timeout: PT2S
---
apiVersion: flows.knative.dev/v1
kind: Sequence
metadata:
  name: {name}-sequence
spec:
  steps:
    - ref:
        apiVersion: stephost.dev/v1alpha1
        kind: WasmStep
        name: {name}
"#;

/// The README every project gets: what it is, then `build` (the language's
/// commands, one per line, ending with the component at `wasm`), then the
/// commands to run and publish it, which are the same for every language.
fn readme(name: &str, build: &str, wasm: &str) -> String {
    README
        .replace("{build}", build.trim_end())
        .replace("{name}", name)
        .replace("{wasm}", wasm)
}

const README: &str = r#"# {name}

A stephost step (a WebAssembly component of the `stephost:step` world).

```sh
{build}
stephost validate step.yaml                          # compiles it, checks the world
stephost serve --manifest step.yaml                  # then:
curl -si localhost:8080/sequences/{name}-sequence -H 'ce-specversion: 1.0' -H 'ce-id: 1' \
  -H 'ce-source: /demo' -H 'ce-type: demo' -H 'content-type: text/plain' -d 'hello'
stephost push {wasm} oci://REGISTRY/steps/{name}:v1
```
"#;

const RUST_BUILD: &str = "\
cargo test                                           # the logic, natively
rustup target add wasm32-wasip2                      # once
cargo build --release --target wasm32-wasip2         # or: cargo component build --release
";
