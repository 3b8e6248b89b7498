//! The `stephost.dev/v1alpha1 WasmStep` document: a step's component (one,
//! or named versions with a traffic split), its config, limits, model grants,
//! smoke event and rollback policy.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::error::{Location, ObjectMeta};
use crate::step_limits::StepLimits;

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
    /// What the rules derived from `spec` at load (see [`StepSettings`]).
    #[serde(skip)]
    pub settings: StepSettings,
}

/// What a WasmStep's rules derived from its `spec` once it passed them,
/// typed, so nothing parses the same text again with a silent default.
#[derive(Debug, Clone, Default)]
pub struct StepSettings {
    /// `spec.limits`, defaults filled in.
    pub limits: StepLimits,
    /// `spec.smokeEvent` as a CloudEvent.
    pub smoke_event: Option<cloudevents::Event>,
    /// `spec.rollback.window`.
    pub rollback_window: Option<Duration>,
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
    /// Most elements per input tensor; `None` = the runtime's default.
    pub max_input_elements: Option<usize>,
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
    /// A component artifact in an OCI registry (`oci://…`, as written).
    Oci(String),
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
            None if text.starts_with(crate::oci::SCHEME) => ComponentSource::Oci(text.to_string()),
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
                let max_input_elements = max.map(|m| usize::try_from(m).unwrap_or(usize::MAX));
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

    /// The smoke event, parsed and checked at load.
    pub fn smoke_event(&self) -> Option<&cloudevents::Event> {
        self.settings.smoke_event.as_ref()
    }

    /// The step's limits, checked at load, defaults filled in.
    pub fn limits(&self) -> StepLimits {
        self.settings.limits
    }

    /// How long a traffic change is watched for automatic rollback (checked
    /// at load); `None` without `spec.rollback`.
    pub fn rollback_window(&self) -> Option<Duration> {
        self.settings.rollback_window
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
