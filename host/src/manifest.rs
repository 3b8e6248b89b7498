//! Reads and validates manifests: multi-document YAML holding unchanged
//! Knative `flows.knative.dev/v1 Sequence` documents and stephost's
//! `stephost.dev/v1alpha1 WasmStep` documents.
//!
//! Every error names the file, the document (index, kind, name) and the field
//! path, so a user can fix a manifest without guessing.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::runtime::StepLimits;

/// The Knative API group/version of a Sequence.
pub const SEQUENCE_API: &str = "flows.knative.dev/v1";
/// stephost's own API group/version.
pub const WASMSTEP_API: &str = "stephost.dev/v1alpha1";

/// Where in which manifest a problem is.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    /// The file (or `<embedded default>`).
    pub origin: String,
    /// 1-based index of the YAML document in the file.
    pub document: usize,
    /// The document's `kind` and `metadata.name`, when known.
    pub what: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.origin, self.document)?;
        if !self.what.is_empty() {
            write!(f, " ({})", self.what)?;
        }
        Ok(())
    }
}

/// A manifest that cannot be used, with where and why.
#[derive(Debug, Error, PartialEq)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read manifest {path}: {message}")]
    Read {
        /// The path given.
        path: String,
        /// The I/O error.
        message: String,
    },
    /// The text is not YAML.
    #[error("{origin}: not valid YAML: {message}")]
    Yaml {
        /// The file.
        origin: String,
        /// The parser's reason, with line and column.
        message: String,
    },
    /// A field is wrong.
    #[error("{at}: {field}: {message}")]
    Field {
        /// The document.
        at: Location,
        /// Dotted path of the field (`spec.steps[1].ref`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The manifests as a whole do not fit together.
    #[error("{0}")]
    Invalid(String),
}

impl ManifestError {
    pub(crate) fn field(
        at: &Location,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ManifestError::Field {
            at: at.clone(),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Everything read from the manifests given to the host.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    /// The Knative Sequences, in file order.
    pub sequences: Vec<SequenceDoc>,
    /// The WasmStep bindings, in file order.
    pub wasm_steps: Vec<WasmStepDoc>,
}

/// `metadata` of any document: only what stephost uses is typed; the rest of
/// Kubernetes' ObjectMeta (labels, uid, …) is accepted and ignored.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct ObjectMeta {
    /// The object's name: how steps and sequences are addressed.
    #[serde(default)]
    pub name: String,
    /// Namespace: used to resolve refs as Knative does (`Kn-Namespace`, URLs).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Anything else Kubernetes allows in metadata.
    #[serde(flatten)]
    pub other: BTreeMap<String, yaml_serde::Value>,
}

/// A Knative Sequence, as `flows.knative.dev/v1` defines it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SequenceDoc {
    /// Must be `flows.knative.dev/v1`.
    pub api_version: String,
    /// Must be `Sequence`.
    pub kind: String,
    /// Name and namespace.
    pub metadata: ObjectMeta,
    /// The steps, channel template and reply.
    pub spec: SequenceSpec,
    /// Written by Knative's controller; accepted and ignored.
    #[serde(default)]
    pub status: Option<yaml_serde::Value>,
    /// Where it was read from, for error messages.
    #[serde(skip)]
    pub at: Option<Location>,
}

/// `spec` of a Sequence (eventing `SequenceSpec`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SequenceSpec {
    /// The steps, called in order.
    #[serde(default)]
    pub steps: Vec<SequenceStep>,
    /// Which channel Knative would create; its `spec.delivery` is the default
    /// delivery of every step without its own.
    #[serde(default)]
    pub channel_template: Option<ChannelTemplate>,
    /// Where the last step's output goes.
    #[serde(default)]
    pub reply: Option<Destination>,
}

/// One step: a Destination plus its delivery options.
///
/// The Destination fields are repeated here rather than `#[serde(flatten)]`ed
/// because serde cannot combine `flatten` with `deny_unknown_fields`, and
/// rejecting unknown fields is worth the four repeated lines.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SequenceStep {
    /// A reference to an addressable object (here: usually a WasmStep name).
    #[serde(default, rename = "ref")]
    pub reference: Option<KReference>,
    /// An absolute URL, or a path relative to `ref`'s address.
    #[serde(default)]
    pub uri: Option<String>,
    /// PEM CA certificates for TLS to this step.
    #[serde(default, rename = "CACerts")]
    pub ca_certs: Option<String>,
    /// OIDC audience of the step.
    #[serde(default)]
    pub audience: Option<String>,
    /// Retries, backoff, timeout, dead-letter sink of this step.
    #[serde(default)]
    pub delivery: Option<DeliverySpec>,
}

impl SequenceStep {
    /// The step's Destination part.
    pub fn destination(&self) -> Destination {
        Destination {
            reference: self.reference.clone(),
            uri: self.uri.clone(),
            ca_certs: self.ca_certs.clone(),
            audience: self.audience.clone(),
        }
    }
}

/// A Knative duck `Destination`.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// A reference to an addressable object.
    #[serde(default, rename = "ref")]
    pub reference: Option<KReference>,
    /// An absolute URL, or a path relative to `ref`'s address.
    #[serde(default)]
    pub uri: Option<String>,
    /// PEM CA certificates.
    #[serde(default, rename = "CACerts")]
    pub ca_certs: Option<String>,
    /// OIDC audience.
    #[serde(default)]
    pub audience: Option<String>,
}

/// A Knative `KReference`.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KReference {
    /// `Service`, `Broker`, …
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// Defaults to the referring object's namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// `serving.knative.dev/v1`, `eventing.knative.dev/v1`, …
    #[serde(default)]
    pub api_version: Option<String>,
    /// API group (Knative's experimental alternative to apiVersion).
    #[serde(default)]
    pub group: Option<String>,
    /// Selects a named entry of the target's `status.addresses`.
    #[serde(default)]
    pub address: Option<String>,
}

/// `spec.channelTemplate`: the channel kind and its spec (kept verbatim by
/// Knative; stephost reads only `spec.delivery`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChannelTemplate {
    /// e.g. `messaging.knative.dev/v1`.
    pub api_version: String,
    /// e.g. `InMemoryChannel`.
    pub kind: String,
    /// The channel's spec; unknown fields are preserved, as in the CRD.
    #[serde(default)]
    pub spec: Option<ChannelSpec>,
}

/// The parts of a channel spec that matter to a fused Sequence.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct ChannelSpec {
    /// Default delivery for steps without their own.
    #[serde(default)]
    pub delivery: Option<DeliverySpec>,
    /// Other channel settings (the CRD preserves unknown fields).
    #[serde(flatten)]
    pub other: BTreeMap<String, yaml_serde::Value>,
}

/// A Knative `DeliverySpec` (eventing duck v1).
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeliverySpec {
    /// Where events go after the last failed attempt.
    #[serde(default)]
    pub dead_letter_sink: Option<Destination>,
    /// Retries after the first attempt.
    #[serde(default)]
    pub retry: Option<i64>,
    /// `linear` or `exponential`.
    #[serde(default)]
    pub backoff_policy: Option<String>,
    /// ISO-8601 base delay.
    #[serde(default)]
    pub backoff_delay: Option<String>,
    /// ISO-8601 bound of each attempt.
    #[serde(default)]
    pub timeout: Option<String>,
    /// ISO-8601 cap on an honoured `Retry-After`.
    #[serde(default)]
    pub retry_after_max: Option<String>,
    /// `json` or `binary`; validated, no effect on a Sequence (as in Knative).
    #[serde(default)]
    pub format: Option<String>,
}

/// A WasmStep: binds a step name to a component.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WasmStepDoc {
    /// Must be `stephost.dev/v1alpha1`.
    pub api_version: String,
    /// Must be `WasmStep`.
    pub kind: String,
    /// `name` is the step name Sequences refer to.
    pub metadata: ObjectMeta,
    /// The component and its settings.
    pub spec: WasmStepSpec,
    /// Where it was read from, and the directory relative paths start from.
    #[serde(skip)]
    pub at: Option<Location>,
    /// Directory of the manifest file, for relative component paths.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `spec` of a WasmStep.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WasmStepSpec {
    /// `./file.wasm` (relative to the manifest), `/abs/file.wasm`, or
    /// `builtin:<name>` for a guest built into the binary: shorthand for one
    /// version named `default`. Exactly one of `component` and `versions`.
    #[serde(default)]
    pub component: Option<String>,
    /// Named versions of the step's component, for a traffic split.
    #[serde(default)]
    pub versions: Vec<VersionSpec>,
    /// How events are split across `versions` (percentages summing to 100),
    /// with optional tags to address a version directly. Default: all
    /// traffic to the last version listed.
    #[serde(default)]
    pub traffic: Vec<TrafficSpec>,
    /// Settings the guest reads through the `config` import.
    #[serde(default)]
    pub config: BTreeMap<String, ConfigValue>,
    /// Memory and time limits.
    #[serde(default)]
    pub limits: Option<LimitsSpec>,
    /// Reuse instances across events (the guest keeps state, e.g. a loaded
    /// model) instead of a fresh instance per event. Default: fresh.
    #[serde(default)]
    pub reuse_instances: bool,
    /// Models the step may run on the host through `wasi:nn`, by the name the
    /// guest passes to `load-by-name`. Loaded and optimised once at start,
    /// shared by every instance. Default: none.
    #[serde(default)]
    pub models: BTreeMap<String, ModelSpec>,
    /// Let the step `load` model bytes of its own through `wasi:nn` (each load
    /// parses and optimises a graph: costly). Default: refused.
    #[serde(default)]
    pub allow_model_load: bool,
    /// A CloudEvent (structured-mode fields as YAML) every new version must
    /// handle without failing before it goes live (at start, on reload, on
    /// an admin upload). Default: none.
    #[serde(default)]
    pub smoke_event: Option<yaml_serde::Value>,
    /// Automatic rollback of an admin traffic change whose new versions fail
    /// too often. Default: none.
    #[serde(default)]
    pub rollback: Option<RollbackSpec>,
}

/// `spec.rollback`: after a traffic change, if a version that gained traffic
/// fails more than `maxErrorRate` of at least `minEvents` events within
/// `window`, traffic returns to the previous split.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RollbackSpec {
    /// Failed share of step calls (0–1) above which to roll back.
    pub max_error_rate: f64,
    /// ISO-8601: how long after the change the version is watched.
    pub window: String,
    /// Calls needed before the rate counts (avoids rolling back on one error).
    pub min_events: u64,
}

/// One entry of `spec.models`: `name: ./model.onnx` or the long form with
/// limits.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ModelSpec {
    /// `./model.onnx` (relative to the manifest), `/abs/model.onnx`, or
    /// `builtin:<name>` for a model built into the binary.
    Source(String),
    /// The source and its limits.
    Full(ModelSpecFull),
}

/// The long form of a `spec.models` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelSpecFull {
    /// As in the short form.
    pub source: String,
    /// The most elements one input tensor may have; larger inputs are refused
    /// with a wasi-nn error before the model sees them (e.g. 512 for a BERT
    /// model's 512 positions). Default 1,048,576.
    #[serde(default)]
    pub max_input_elements: Option<u64>,
}

/// Where a model's bytes come from, with its limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelSource {
    /// File or builtin, like a component.
    pub source: ComponentSource,
    /// Most elements per input tensor.
    pub max_input_elements: usize,
}

/// One entry of `spec.versions`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionSpec {
    /// The version's name (`v1`), unique within the step.
    pub name: String,
    /// Its component, as `spec.component`.
    pub component: String,
}

/// One entry of `spec.traffic`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficSpec {
    /// A name from `spec.versions`.
    pub version: String,
    /// Share of events, 0–100; all entries sum to 100.
    pub percent: u32,
    /// Address this version directly with `Stephost-Step-Tag: <step>=<tag>`.
    #[serde(default)]
    pub tag: Option<String>,
}

/// The name of the one version a `spec.component` shorthand makes.
pub const DEFAULT_VERSION: &str = "default";

/// A config value: YAML scalars are accepted and passed to the guest as text,
/// so `threshold: 0.5` works without quotes; maps and lists are refused.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ConfigValue {
    /// A string.
    Text(String),
    /// A number, passed as its YAML text.
    Number(yaml_serde::Number),
    /// A boolean, passed as `true`/`false`.
    Bool(bool),
}

impl fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigValue::Text(s) => f.write_str(s),
            ConfigValue::Number(n) => write!(f, "{n}"),
            ConfigValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// `spec.limits` of a WasmStep.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Kubernetes quantity (`128Mi`, `1Gi`, `64M`, bytes).
    #[serde(default)]
    pub memory: Option<yaml_serde::Value>,
    /// ISO-8601 duration (`PT5S`).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Largest output event, a Kubernetes quantity.
    #[serde(default, rename = "maxOutput")]
    pub max_output: Option<yaml_serde::Value>,
    /// Calls of the step at once.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Calls that may wait for a place; beyond, 429.
    #[serde(default, rename = "maxQueue")]
    pub max_queue: Option<u32>,
}

/// Where a component's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComponentSource {
    /// A file on disk (already resolved against the manifest's directory).
    File(PathBuf),
    /// A guest compiled into the binary.
    Builtin(String),
}

impl WasmStepDoc {
    /// The step name.
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// Every version: (name, where its component comes from), in order.
    pub fn versions(&self) -> Vec<(String, ComponentSource)> {
        let source = |text: &str| match text.strip_prefix("builtin:") {
            Some(name) => ComponentSource::Builtin(name.to_string()),
            None => ComponentSource::File(self.base_dir.join(text)),
        };
        match &self.spec.component {
            Some(c) => vec![(DEFAULT_VERSION.to_string(), source(c))],
            None => self
                .spec
                .versions
                .iter()
                .map(|v| (v.name.clone(), source(&v.component)))
                .collect(),
        }
    }

    /// The traffic split as (version index, percent, tag); defaults filled in.
    pub fn traffic(&self) -> Vec<(usize, u32, Option<String>)> {
        let names: Vec<String> = self.versions().into_iter().map(|(n, _)| n).collect();
        if self.spec.traffic.is_empty() {
            return vec![(names.len().saturating_sub(1), 100, None)];
        }
        self.spec
            .traffic
            .iter()
            .filter_map(|t| {
                let index = names.iter().position(|n| *n == t.version)?;
                Some((index, t.percent, t.tag.clone()))
            })
            .collect()
    }

    /// The granted models, name → source, resolved against the manifest's
    /// directory. Validated at load.
    pub fn models(&self) -> BTreeMap<String, ModelSource> {
        self.spec
            .models
            .iter()
            .map(|(name, spec)| {
                let (text, max) = match spec {
                    ModelSpec::Source(text) => (text, None),
                    ModelSpec::Full(full) => (&full.source, full.max_input_elements),
                };
                let source = match text.strip_prefix("builtin:") {
                    Some(b) => ComponentSource::Builtin(b.to_string()),
                    None => ComponentSource::File(self.base_dir.join(text)),
                };
                let max_input_elements = max
                    .map(|m| usize::try_from(m).unwrap_or(usize::MAX))
                    .unwrap_or(crate::nn::DEFAULT_MAX_INPUT_ELEMENTS);
                (
                    name.clone(),
                    ModelSource {
                        source,
                        max_input_elements,
                    },
                )
            })
            .collect()
    }

    /// The smoke event as a CloudEvent. Validated at load.
    pub fn smoke_event(&self) -> Option<Result<cloudevents::Event, String>> {
        let value = self.spec.smoke_event.as_ref()?;
        Some(smoke_event(value))
    }

    /// The step's limits, defaults filled in. Validated at load.
    pub fn limits(&self) -> StepLimits {
        let defaults = StepLimits::default();
        let spec = self.spec.limits.clone().unwrap_or_default();
        StepLimits {
            memory: spec
                .memory
                .as_ref()
                .and_then(|m| parse_quantity(m).ok())
                .unwrap_or(defaults.memory),
            timeout: spec
                .timeout
                .as_deref()
                .and_then(|t| parse_duration(t).ok())
                .unwrap_or(defaults.timeout),
            max_output: spec
                .max_output
                .as_ref()
                .and_then(|m| parse_quantity(m).ok())
                .and_then(|m| usize::try_from(m).ok())
                .unwrap_or(defaults.max_output),
            concurrency: spec
                .concurrency
                .map_or(defaults.concurrency, |c| c as usize),
            max_queue: spec.max_queue.map_or(defaults.max_queue, |q| q as usize),
        }
    }

    /// The config as (key, text) pairs.
    pub fn config_pairs(&self) -> Vec<(String, String)> {
        self.spec
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect()
    }
}

impl Manifest {
    /// Read and merge manifest files.
    pub fn load(paths: &[PathBuf]) -> Result<Self, ManifestError> {
        let mut manifest = Manifest::default();
        for path in paths {
            let text = std::fs::read_to_string(path).map_err(|e| ManifestError::Read {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            let base = path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            let base = if base.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                base
            };
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
        for (i, doc) in yaml_serde::Deserializer::from_str(text).enumerate() {
            let value = yaml_serde::Value::deserialize(doc).map_err(|e| ManifestError::Yaml {
                origin: origin.to_string(),
                message: e.to_string(),
            })?;
            if value.is_null() {
                continue; // an empty document (e.g. a trailing `---`)
            }
            let mut at = Location {
                origin: origin.to_string(),
                document: i + 1,
                what: String::new(),
            };
            let api = str_field(&value, "apiVersion");
            let kind = str_field(&value, "kind");
            let name = value
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(|n| n.as_str())
                .unwrap_or("");
            at.what = format!("{} {name:?}", kind.unwrap_or("?"));
            match (api, kind) {
                (Some(SEQUENCE_API), Some("Sequence")) => {
                    let mut doc: SequenceDoc = typed(value, &at)?;
                    doc.at = Some(at.clone());
                    validate_sequence(&doc, &at)?;
                    manifest.sequences.push(doc);
                }
                (Some(WASMSTEP_API), Some("WasmStep")) => {
                    let mut doc: WasmStepDoc = typed(value, &at)?;
                    doc.at = Some(at.clone());
                    doc.base_dir = base_dir.to_path_buf();
                    validate_wasm_step(&doc, &at)?;
                    manifest.wasm_steps.push(doc);
                }
                (None, _) => return Err(ManifestError::field(&at, "apiVersion", "missing")),
                (_, None) => return Err(ManifestError::field(&at, "kind", "missing")),
                (Some("v1"), Some("ConfigMap")) => {
                    // The ConfigMap a cluster mounts (manifests/configmap.yaml):
                    // serve the stephost manifests in its data, so the file
                    // you apply is the file you can run locally.
                    let data = value.get("data").and_then(|d| d.as_mapping());
                    for (key, text) in data.into_iter().flatten() {
                        let (Some(key), Some(text)) = (key.as_str(), text.as_str()) else {
                            continue;
                        };
                        if holds_stephost_documents(text) {
                            let inner = format!("{at} data.{key}");
                            manifest
                                .merge(Manifest::parse_inner(text, &inner, base_dir, lenient)?)?;
                        }
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

fn validate_sequence(doc: &SequenceDoc, at: &Location) -> Result<(), ManifestError> {
    if doc.metadata.name.is_empty() {
        return Err(ManifestError::field(at, "metadata.name", "missing"));
    }
    if doc.spec.steps.is_empty() {
        return Err(ManifestError::field(
            at,
            "spec.steps",
            "missing: a Sequence needs at least one step",
        ));
    }
    for (i, step) in doc.spec.steps.iter().enumerate() {
        let field = format!("spec.steps[{i}]");
        validate_destination(&step.destination(), at, &field)?;
        if let Some(delivery) = &step.delivery {
            validate_delivery(delivery, at, &format!("{field}.delivery"))?;
        }
    }
    if let Some(template) = &doc.spec.channel_template {
        if template.kind.is_empty() || template.api_version.is_empty() {
            return Err(ManifestError::field(
                at,
                "spec.channelTemplate",
                "kind and apiVersion must not be empty",
            ));
        }
        if let Some(delivery) = template.spec.as_ref().and_then(|s| s.delivery.as_ref()) {
            validate_delivery(delivery, at, "spec.channelTemplate.spec.delivery")?;
        }
    }
    if let Some(reply) = &doc.spec.reply {
        validate_destination(reply, at, "spec.reply")?;
    }
    Ok(())
}

/// Knative's `ValidateDestination` (knative/pkg apis/duck/v1/destination.go).
fn validate_destination(d: &Destination, at: &Location, field: &str) -> Result<(), ManifestError> {
    match (&d.reference, &d.uri) {
        (None, None) => Err(ManifestError::field(
            at,
            field,
            "expected at least one of ref, uri; got none",
        )),
        (Some(r), uri) => {
            if r.kind.is_empty() {
                return Err(ManifestError::field(
                    at,
                    format!("{field}.ref.kind"),
                    "missing",
                ));
            }
            if r.name.is_empty() {
                return Err(ManifestError::field(
                    at,
                    format!("{field}.ref.name"),
                    "missing",
                ));
            }
            if let Some(uri) = uri
                && url::Url::parse(uri).is_ok()
            {
                return Err(ManifestError::field(
                    at,
                    format!("{field}.uri"),
                    "absolute URI is not allowed when ref is present (give a path relative to \
                     the ref's address)",
                ));
            }
            Ok(())
        }
        (None, Some(uri)) => match url::Url::parse(uri) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
            Ok(u) => Err(ManifestError::field(
                at,
                format!("{field}.uri"),
                format!(
                    "{uri:?} must be an http(s) URL with a host, not scheme {:?}",
                    u.scheme()
                ),
            )),
            Err(e) => Err(ManifestError::field(
                at,
                format!("{field}.uri"),
                format!("{uri:?} is not an absolute URL ({e}); a relative uri needs a ref"),
            )),
        },
    }
}

/// Knative's DeliverySpec validation (eventing apis/duck/v1/delivery_types.go).
fn validate_delivery(d: &DeliverySpec, at: &Location, field: &str) -> Result<(), ManifestError> {
    if let Some(retry) = d.retry
        && retry < 0
    {
        return Err(ManifestError::field(
            at,
            format!("{field}.retry"),
            format!("must be >= 0, got {retry}"),
        ));
    }
    if let Some(policy) = &d.backoff_policy
        && policy != "linear"
        && policy != "exponential"
    {
        return Err(ManifestError::field(
            at,
            format!("{field}.backoffPolicy"),
            format!("must be \"linear\" or \"exponential\", got {policy:?}"),
        ));
    }
    for (name, value) in [
        ("backoffDelay", &d.backoff_delay),
        ("timeout", &d.timeout),
        ("retryAfterMax", &d.retry_after_max),
    ] {
        if let Some(text) = value {
            let parsed = parse_duration(text)
                .map_err(|e| ManifestError::field(at, format!("{field}.{name}"), e))?;
            if name == "timeout" && parsed.is_zero() {
                return Err(ManifestError::field(
                    at,
                    format!("{field}.timeout"),
                    "must be greater than zero",
                ));
            }
        }
    }
    if let Some(format) = &d.format
        && format != "json"
        && format != "binary"
    {
        return Err(ManifestError::field(
            at,
            format!("{field}.format"),
            format!("must be \"json\" or \"binary\", got {format:?}"),
        ));
    }
    if let Some(sink) = &d.dead_letter_sink {
        validate_destination(sink, at, &format!("{field}.deadLetterSink"))?;
    }
    Ok(())
}

fn validate_wasm_step(doc: &WasmStepDoc, at: &Location) -> Result<(), ManifestError> {
    if doc.metadata.name.is_empty() {
        return Err(ManifestError::field(at, "metadata.name", "missing"));
    }
    match (&doc.spec.component, doc.spec.versions.is_empty()) {
        (Some(c), true) if c.is_empty() => {
            return Err(ManifestError::field(
                at,
                "spec.component",
                "must not be empty",
            ));
        }
        (Some(_), true) => {}
        (Some(_), false) => {
            return Err(ManifestError::field(
                at,
                "spec",
                "set either component (one version) or versions, not both",
            ));
        }
        (None, true) => {
            return Err(ManifestError::field(
                at,
                "spec.component",
                "missing (or give spec.versions)",
            ));
        }
        (None, false) => {}
    }
    if doc.spec.component.is_some() && !doc.spec.traffic.is_empty() {
        return Err(ManifestError::field(
            at,
            "spec.traffic",
            "needs spec.versions (a single component takes all traffic)",
        ));
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, v) in doc.spec.versions.iter().enumerate() {
        let field = format!("spec.versions[{i}]");
        if v.name.is_empty()
            || !v
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(ManifestError::field(
                at,
                format!("{field}.name"),
                format!(
                    "{:?} must be non-empty letters, digits, '-', '_' or '.'",
                    v.name
                ),
            ));
        }
        if !names.insert(v.name.as_str()) {
            return Err(ManifestError::field(
                at,
                format!("{field}.name"),
                format!("version {:?} is listed twice", v.name),
            ));
        }
        if v.component.is_empty() {
            return Err(ManifestError::field(
                at,
                format!("{field}.component"),
                "must not be empty",
            ));
        }
    }
    if !doc.spec.traffic.is_empty() {
        check_traffic(&doc.spec.traffic, &names)
            .map_err(|(field, message)| ManifestError::field(at, field, message))?;
    }
    for (i, (_, source)) in doc.versions().iter().enumerate() {
        if let ComponentSource::File(path) = source
            && !path.is_file()
        {
            let field = if doc.spec.component.is_some() {
                "spec.component".to_string()
            } else {
                format!("spec.versions[{i}].component")
            };
            return Err(ManifestError::field(
                at,
                field,
                format!("component file {} does not exist", path.display()),
            ));
        }
    }
    if let Some(r) = &doc.spec.rollback {
        if !(0.0..=1.0).contains(&r.max_error_rate) {
            return Err(ManifestError::field(
                at,
                "spec.rollback.maxErrorRate",
                format!("{} is not within 0..1", r.max_error_rate),
            ));
        }
        let window = parse_duration(&r.window)
            .map_err(|e| ManifestError::field(at, "spec.rollback.window", e))?;
        if window.is_zero() {
            return Err(ManifestError::field(
                at,
                "spec.rollback.window",
                "must be greater than zero",
            ));
        }
        if r.min_events == 0 {
            return Err(ManifestError::field(
                at,
                "spec.rollback.minEvents",
                "must be at least 1",
            ));
        }
    }
    if let Some(Err(e)) = doc.smoke_event() {
        return Err(ManifestError::field(
            at,
            "spec.smokeEvent",
            format!("not a valid CloudEvent: {e}"),
        ));
    }
    for (name, model) in doc.models() {
        let field = format!("spec.models.{name}");
        if name.is_empty() {
            return Err(ManifestError::field(
                at,
                "spec.models",
                "a model name must not be empty",
            ));
        }
        if model.max_input_elements == 0 {
            return Err(ManifestError::field(
                at,
                format!("{field}.maxInputElements"),
                "must be at least 1",
            ));
        }
        if let ComponentSource::File(path) = &model.source
            && !path.is_file()
        {
            return Err(ManifestError::field(
                at,
                field,
                format!("model file {} does not exist", path.display()),
            ));
        }
    }
    if let Some(limits) = &doc.spec.limits {
        if let Some(memory) = &limits.memory {
            let bytes = parse_quantity(memory)
                .map_err(|e| ManifestError::field(at, "spec.limits.memory", e))?;
            if bytes < MIN_STEP_MEMORY {
                return Err(ManifestError::field(
                    at,
                    "spec.limits.memory",
                    format!("{bytes} bytes is below the 1Mi minimum a Rust guest needs to start"),
                ));
            }
        }
        if let Some(timeout) = &limits.timeout {
            let t = parse_duration(timeout)
                .map_err(|e| ManifestError::field(at, "spec.limits.timeout", e))?;
            if t.is_zero() {
                return Err(ManifestError::field(
                    at,
                    "spec.limits.timeout",
                    "must be greater than zero",
                ));
            }
        }
        if let Some(max_output) = &limits.max_output {
            let bytes = parse_quantity(max_output)
                .map_err(|e| ManifestError::field(at, "spec.limits.maxOutput", e))?;
            if bytes == 0 {
                return Err(ManifestError::field(
                    at,
                    "spec.limits.maxOutput",
                    "must be greater than zero",
                ));
            }
        }
        if limits.concurrency == Some(0) {
            return Err(ManifestError::field(
                at,
                "spec.limits.concurrency",
                "must be at least 1",
            ));
        }
    }
    Ok(())
}

/// A YAML map of structured-mode CloudEvent fields as an event, checked as
/// an inbound event would be.
fn smoke_event(value: &yaml_serde::Value) -> Result<cloudevents::Event, String> {
    let json = serde_json::to_vec(value).map_err(|e| e.to_string())?;
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/cloudevents+json"),
    );
    crate::event::from_http(&headers, json).map_err(|e| e.to_string())
}

/// Check a traffic split against a step's version names: known versions,
/// percentages 0–100 summing to 100, unique non-empty tags. The error is
/// (field path, message). Shared by manifests and the admin API.
pub fn check_traffic(
    traffic: &[TrafficSpec],
    names: &std::collections::BTreeSet<&str>,
) -> Result<(), (String, String)> {
    if traffic.is_empty() {
        return Err(("spec.traffic".into(), "must not be empty".into()));
    }
    let mut total = 0u32;
    let mut tags = std::collections::BTreeSet::new();
    for (i, t) in traffic.iter().enumerate() {
        let field = format!("spec.traffic[{i}]");
        if !names.contains(t.version.as_str()) {
            return Err((
                format!("{field}.version"),
                format!(
                    "no version {:?} in spec.versions (known: {})",
                    t.version,
                    names.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        if t.percent > 100 {
            return Err((
                format!("{field}.percent"),
                format!("{} is over 100", t.percent),
            ));
        }
        total += t.percent;
        if let Some(tag) = &t.tag
            && (tag.is_empty() || !tags.insert(tag.as_str()))
        {
            return Err((
                format!("{field}.tag"),
                format!("tag {tag:?} is empty or used twice"),
            ));
        }
    }
    if total != 100 {
        return Err((
            "spec.traffic".into(),
            format!("percentages sum to {total}, not 100"),
        ));
    }
    Ok(())
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

/// Below this a wasm32 Rust guest cannot even hold its stack (1 MiB by default).
const MIN_STEP_MEMORY: u64 = 1 << 20;

/// Parse an ISO-8601 duration (`PT5S`, `PT0.2S`, `P1D`), as Knative's delivery
/// fields use.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    iso8601::duration(text)
        .map(Duration::from)
        .map_err(|_| format!("{text:?} is not an ISO-8601 duration (e.g. PT0.5S, PT30S, PT1M)"))
}

/// Parse a Kubernetes memory quantity (`128Mi`, `1Gi`, `500M`, `1048576`).
pub fn parse_quantity(value: &yaml_serde::Value) -> Result<u64, String> {
    let text = match value {
        yaml_serde::Value::Number(n) => n.to_string(),
        yaml_serde::Value::String(s) => s.trim().to_string(),
        other => return Err(format!("expected a quantity like 128Mi, got {other:?}")),
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a quantity like 128Mi, 1Gi or 500M"))?;
    let unit: u64 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {suffix:?} (use Ki, Mi, Gi, k, M or G)"
            ));
        }
    };
    number
        .checked_mul(unit)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_and_durations_parse() {
        let q = |s: &str| parse_quantity(&yaml_serde::Value::String(s.into()));
        assert_eq!(q("128Mi"), Ok(128 << 20));
        assert_eq!(q("1Gi"), Ok(1 << 30));
        assert_eq!(q("500M"), Ok(500_000_000));
        assert!(q("12Qi").is_err());
        assert_eq!(parse_duration("PT0.2S"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("PT5S"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("5s").is_err());
    }
}
