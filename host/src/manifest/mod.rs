//! Reads and validates manifests: multi-document YAML holding unchanged
//! Knative `flows.knative.dev/v1 Sequence` documents and stephost's
//! `stephost.dev/v1alpha1 WasmStep` documents, parsed once into typed,
//! validated documents the registry builds from.
//!
//! Every error names the file, the document (index, kind, name) and the field
//! path, so a user can fix a manifest without guessing.
//!
//! - `knative.rs`: the Sequence, Destination and delivery documents (Knative's
//!   own field names) and their rules;
//! - `wasm_step.rs`: the WasmStep document, `wasm_step_rules.rs` its rules;
//! - `units.rs`: Kubernetes quantities and ISO-8601 durations;
//! - `schema.rs`: `stephost validate`'s check against the real Knative CRDs.

mod error;
mod knative;
pub mod schema;
mod units;
mod wasm_step;
mod wasm_step_rules;

pub use error::{Location, ManifestError, ObjectMeta};
pub use knative::{
    BackoffPolicy, ChannelSpec, ChannelTemplate, DeliverySettings, DeliverySpec, Destination,
    KReference, SequenceDoc, SequenceSpec, SequenceStep,
};
pub use units::{parse_duration, parse_quantity};
pub use wasm_step::{
    ComponentSource, ConfigValue, DEFAULT_VERSION, LimitsSpec, ModelSource, ModelSpec,
    ModelSpecFull, RollbackSpec, StepSettings, TrafficSpec, VersionSpec, WasmStepDoc, WasmStepSpec,
};
pub use wasm_step_rules::{check_traffic, check_version_name};

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use knative::validate_sequence;
use wasm_step_rules::validate_wasm_step;

/// The Knative API group/version of a Sequence.
pub const SEQUENCE_API: &str = "flows.knative.dev/v1";

/// stephost's own API group/version.
pub const WASMSTEP_API: &str = "stephost.dev/v1alpha1";

/// Everything read from the manifests given to the host.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    /// The Knative Sequences, in file order.
    pub sequences: Vec<SequenceDoc>,
    /// The WasmStep bindings, in file order.
    pub wasm_steps: Vec<WasmStepDoc>,
}

impl Manifest {
    /// Read and merge manifest files.
    pub fn load(paths: &[PathBuf]) -> Result<Self, ManifestError> {
        let mut manifest = Manifest::default();
        for path in paths {
            let (text, base) = read_file(path)?;
            manifest.merge(Manifest::parse(&text, &path.display().to_string(), &base)?)?;
        }
        Ok(manifest)
    }

    /// Parse one multi-document YAML text; relative component paths start at `base_dir`.
    pub fn parse(text: &str, origin: &str, base_dir: &Path) -> Result<Self, ManifestError> {
        Self::parse_inner(text, origin, base_dir, false)
    }

    /// Like [`Manifest::parse`], but documents of other kinds (a Knative
    /// Service, a ConfigMap, …) are skipped instead of refused: `validate`
    /// checks those against their schemas separately.
    pub fn parse_lenient(text: &str, origin: &str, base_dir: &Path) -> Result<Self, ManifestError> {
        Self::parse_inner(text, origin, base_dir, true)
    }

    fn parse_inner(
        text: &str,
        origin: &str,
        base_dir: &Path,
        lenient: bool,
    ) -> Result<Self, ManifestError> {
        let mut manifest = Manifest::default();
        for Document { at, value } in documents(text, origin)? {
            let api = str_field(&value, "apiVersion");
            let kind = str_field(&value, "kind");
            match (api, kind) {
                (Some(SEQUENCE_API), Some("Sequence")) => {
                    let mut doc: SequenceDoc = typed(value, &at)?;
                    doc.at = Some(at.clone());
                    validate_sequence(&mut doc, &at)?;
                    manifest.sequences.push(doc);
                }
                (Some(WASMSTEP_API), Some("WasmStep")) => {
                    let mut doc: WasmStepDoc = typed(value, &at)?;
                    doc.at = Some(at.clone());
                    doc.base_dir = base_dir.to_path_buf();
                    doc.settings = validate_wasm_step(&doc, &at)?;
                    manifest.wasm_steps.push(doc);
                }
                (None, _) => return Err(ManifestError::field(&at, "apiVersion", "missing")),
                (_, None) => return Err(ManifestError::field(&at, "kind", "missing")),
                (Some("v1"), Some("ConfigMap")) => {
                    // The ConfigMap a cluster mounts (manifests/configmap.yaml):
                    // serve the stephost manifests in its data, so the file
                    // you apply is the file you can run locally.
                    for (key, text) in embedded_manifests(&value) {
                        let inner = format!("{at} data.{key}");
                        manifest.merge(Manifest::parse_inner(text, &inner, base_dir, lenient)?)?;
                    }
                }
                (Some(_), Some(_)) if lenient => {}
                (Some(api), Some(kind)) => {
                    return Err(ManifestError::field(
                        &at,
                        "kind",
                        format!(
                            "unsupported {api} {kind}: stephost reads {SEQUENCE_API} Sequence, \
                             {WASMSTEP_API} WasmStep, and v1 ConfigMap holding them"
                        ),
                    ));
                }
            }
        }
        Ok(manifest)
    }

    /// What is valid but will not do what a Knative user may expect, one
    /// line each (document and field first): logged whenever a
    /// configuration is built (`serve`, reloads, `validate`).
    pub fn warnings(&self) -> Vec<String> {
        self.sequences
            .iter()
            .filter_map(|doc| {
                let template = doc.spec.channel_template.as_ref()?;
                (template.kind != "InMemoryChannel").then(|| {
                    let at = doc.at.as_ref().map(Location::to_string).unwrap_or_default();
                    format!(
                        "{at}: spec.channelTemplate: {} {}: stephost runs every Sequence \
                         in-process with InMemoryChannel semantics (synchronous, nothing \
                         persisted between steps), so that channel's durability and \
                         ordering guarantees do not apply",
                        template.api_version, template.kind
                    )
                })
            })
            .collect()
    }

    /// Add another file's documents; names must stay unique.
    pub fn merge(&mut self, other: Manifest) -> Result<(), ManifestError> {
        for seq in other.sequences {
            if let Some(prev) = self
                .sequences
                .iter()
                .find(|s| s.metadata.name == seq.metadata.name)
            {
                return Err(duplicate("Sequence", &seq.metadata.name, &prev.at, &seq.at));
            }
            self.sequences.push(seq);
        }
        for step in other.wasm_steps {
            if let Some(prev) = self.wasm_steps.iter().find(|s| s.name() == step.name()) {
                return Err(duplicate("WasmStep", step.name(), &prev.at, &step.at));
            }
            self.wasm_steps.push(step);
        }
        Ok(())
    }
}

/// A manifest file's text and the directory its relative paths start from.
pub(crate) fn read_file(path: &Path) -> Result<(String, PathBuf), ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|e| ManifestError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((text, base))
}

/// One document of a multi-document YAML text and where it is.
pub(crate) struct Document {
    /// File, document index, and `Kind "name"`.
    pub at: Location,
    /// The document as YAML.
    pub value: yaml_serde::Value,
}

/// The non-empty documents of a multi-document YAML text, each with its
/// location; the first YAML error ends the walk (the deserializer repeats it
/// forever: test `fuzz_corpus::every_seed_and_past_crash_passes_its_harness`).
pub(crate) fn documents(text: &str, origin: &str) -> Result<Vec<Document>, ManifestError> {
    let mut found = Vec::new();
    for (i, doc) in yaml_serde::Deserializer::from_str(text).enumerate() {
        let value = yaml_serde::Value::deserialize(doc).map_err(|e| ManifestError::Yaml {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue; // an empty document (e.g. a trailing `---`)
        }
        let kind = str_field(&value, "kind").unwrap_or("?");
        let name = value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(|n| n.as_str())
            .unwrap_or("");
        let at = Location {
            origin: origin.to_string(),
            document: i + 1,
            what: format!("{kind} {name:?}"),
        };
        found.push(Document { at, value });
    }
    Ok(found)
}

/// The stephost manifests a ConfigMap document carries in its `data`, as
/// (key, text): how `manifests/configmap.yaml` ships them to a cluster.
pub(crate) fn embedded_manifests(configmap: &yaml_serde::Value) -> Vec<(&str, &str)> {
    let data = configmap.get("data").and_then(|d| d.as_mapping());
    data.into_iter()
        .flatten()
        .filter_map(|(key, text)| Some((key.as_str()?, text.as_str()?)))
        .filter(|(_, text)| holds_stephost_documents(text))
        .collect()
}

fn duplicate(kind: &str, name: &str, a: &Option<Location>, b: &Option<Location>) -> ManifestError {
    let show = |l: &Option<Location>| l.as_ref().map(|l| l.to_string()).unwrap_or_default();
    ManifestError::Invalid(format!(
        "two {kind} documents are named {name:?}: {} and {}",
        show(a),
        show(b)
    ))
}

fn str_field<'a>(value: &'a yaml_serde::Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(|v| v.as_str())
}

/// Deserialize a document, reporting the failing field's path.
fn typed<T: DeserializeOwned>(value: yaml_serde::Value, at: &Location) -> Result<T, ManifestError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "(document)".to_string()
        } else {
            path
        };
        let message = e.into_inner().to_string();
        ManifestError::field(at, field, message)
    })
}

/// Whether a text (a ConfigMap value) is a stephost manifest: it has a
/// WasmStep or a Sequence document. A text that is not valid YAML counts
/// when it names one of those kinds, so its YAML error is reported instead
/// of the document being skipped.
pub fn holds_stephost_documents(text: &str) -> bool {
    // The YAML document iterator yields the same error forever after a
    // syntax error: stop at the first one, or this loops without end
    // (fuzz/regressions/manifest, test
    // `fuzz_corpus::every_seed_and_past_crash_passes_its_harness`).
    for doc in yaml_serde::Deserializer::from_str(text) {
        match yaml_serde::Value::deserialize(doc) {
            Ok(v) => {
                if matches!(
                    v.get("kind").and_then(|k| k.as_str()),
                    Some("WasmStep") | Some("Sequence")
                ) {
                    return true;
                }
            }
            Err(_) => {
                return text.contains("WasmStep") || text.contains("kind: Sequence");
            }
        }
    }
    false
}
