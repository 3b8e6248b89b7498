//! `stephost new NAME`: a ready project for a new step — a Rust crate on the
//! guest SDK with a unit test of its logic, a manifest binding it as a
//! WasmStep in a one-step Sequence, and a README with the commands.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// What the project's `Cargo.toml` depends on.
pub(crate) enum Sdk {
    /// The published crate, by version.
    Version(String),
    /// A local checkout of `guests/sdk` (before the crate is published, or to
    /// try changes).
    Path(PathBuf),
}

/// Write the project `name` under `parent/name`.
pub(crate) fn new_step(name: &str, parent: &Path, sdk: &Sdk) -> Result<PathBuf> {
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
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let write = |path: &str, text: String| {
        std::fs::write(dir.join(path), text).with_context(|| format!("writing {path}"))
    };
    write(
        "Cargo.toml",
        CARGO_TOML
            .replace("{name}", name)
            .replace("{sdk}", &sdk_line),
    )?;
    write("src/lib.rs", LIB_RS.to_string())?;
    write(
        "step.yaml",
        STEP_YAML.replace("{name}", name).replace("{file}", &file),
    )?;
    write(
        "README.md",
        README.replace("{name}", name).replace("{file}", &file),
    )?;
    write(".gitignore", "/target\n".to_string())?;
    Ok(dir)
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

const STEP_YAML: &str = r#"# The step bound as a WasmStep, in a one-step Sequence:
#   stephost serve --manifest step.yaml    then POST an event to /sequences/{name}-sequence
apiVersion: stephost.dev/v1alpha1
kind: WasmStep
metadata:
  name: {name}
spec:
  component: ./target/wasm32-wasip2/release/{file}.wasm
  config:
    suffix: "!"
  limits:
    memory: 32Mi
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

const README: &str = r#"# {name}

A stephost step (a WebAssembly component of the `stephost:step` world).

```sh
cargo test                                           # the logic, natively
rustup target add wasm32-wasip2                      # once
cargo build --release --target wasm32-wasip2         # or: cargo component build --release
stephost validate step.yaml                          # compiles it, checks the world
stephost serve --manifest step.yaml                  # then:
curl -si localhost:8080/sequences/{name}-sequence -H 'ce-specversion: 1.0' -H 'ce-id: 1' \
  -H 'ce-source: /demo' -H 'ce-type: demo' -H 'content-type: text/plain' -d 'hello'
stephost push target/wasm32-wasip2/release/{file}.wasm oci://REGISTRY/steps/{name}:v1
```
"#;
