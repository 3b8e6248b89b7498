//! [`Registry::build`]: a validated manifest compiled and resolved into one
//! immutable configuration — every WasmStep's versions compiled, granted
//! their models, checked to go live; every Sequence resolved.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::error::RegistryError;
use super::gate::StepGate;
use super::go_live::{self, go_live};
use super::resolve::{Resolver, Sequence, StepTarget, resolve_sequence};
use super::step::{RollbackPolicy, StepVersion, Traffic, WasmStep, component_digest};
use crate::manifest::{ComponentSource, Location, Manifest, ModelSource, WasmStepDoc};
use crate::runtime::nn::{LoadedModel, StepModels};
use crate::runtime::{Runtime, RuntimeError};

/// The whole live configuration.
#[derive(Clone)]
pub struct Registry {
    /// Sequences by name.
    pub sequences: BTreeMap<String, Arc<Sequence>>,
    /// Compiled Wasm steps by name (served at `/steps/{name}`).
    pub steps: BTreeMap<String, Arc<WasmStep>>,
}

/// Bytes of a built-in component by name, and the names that exist.
/// `Sync`: models load on a thread of their own while components compile.
pub trait Builtins: Sync {
    /// The component called `name`.
    fn get(&self, name: &str) -> Option<&'static [u8]>;
    /// Every name, for error messages.
    fn names(&self) -> Vec<&'static str>;
    /// The bytes of built-in model `name` (`builtin:<name>` in `spec.models`).
    fn model(&self, _name: &str) -> Option<&'static [u8]> {
        None
    }
    /// Every built-in model name, for error messages.
    fn model_names(&self) -> Vec<&'static str> {
        Vec::new()
    }
    /// The registry client for `oci://` components; `None` refuses them.
    fn oci(&self) -> Option<&crate::oci::Puller> {
        None
    }
}

impl Registry {
    /// Compile every WasmStep and resolve every Sequence. CPU-heavy
    /// (compilation): call it off the async reactor.
    pub fn build(
        manifest: &Manifest,
        runtime: &Runtime,
        resolver: &Resolver,
        builtins: &dyn Builtins,
    ) -> Result<Self, RegistryError> {
        for warning in manifest.warnings() {
            tracing::warn!("{warning}");
        }
        // Every model is read and optimised on a thread of its own while the
        // components compile on this one (at a warm start the two take about
        // as long each), each model file once however many steps it serves.
        let steps = std::thread::scope(|scope| {
            let mut loading = Some(scope.spawn(|| load_models(manifest, builtins)));
            let mut models = None;
            let no_models = LoadedModels::new();
            let mut steps = BTreeMap::new();
            for doc in &manifest.wasm_steps {
                if !doc.models().is_empty()
                    && let Some(handle) = loading.take()
                {
                    models = Some(handle.join().unwrap_or_else(|_| {
                        // A panic while parsing: every model fails with it.
                        model_sources(manifest)
                            .map(|s| (s, Err("the model loader panicked".to_string())))
                            .collect()
                    }));
                }
                let loaded = models.as_ref().unwrap_or(&no_models);
                let step = build_step(doc, runtime, builtins, loaded)?;
                steps.insert(step.name.clone(), Arc::new(step));
            }
            Ok::<_, RegistryError>(steps)
        })?;
        let mut sequences = BTreeMap::new();
        for doc in &manifest.sequences {
            let seq = resolve_sequence(doc, &steps, resolver)?;
            sequences.insert(seq.name.clone(), Arc::new(seq));
        }
        Ok(Self { sequences, steps })
    }

    /// A copy of this configuration with `step` replaced (by name) in the
    /// step table and in every Sequence that runs it. The original is not
    /// touched: events that entered with it finish on it.
    pub fn with_step(&self, step: WasmStep) -> Registry {
        let step = Arc::new(step);
        let mut steps = self.steps.clone();
        steps.insert(step.name.clone(), step.clone());
        let sequences = self
            .sequences
            .iter()
            .map(|(name, seq)| {
                let mut seq = (**seq).clone();
                for s in &mut seq.steps {
                    if let StepTarget::Wasm(w) = &s.target
                        && w.name == step.name
                    {
                        s.target = StepTarget::Wasm(step.clone());
                    }
                }
                (name.clone(), Arc::new(seq))
            })
            .collect();
        Registry { sequences, steps }
    }

    /// The Sequence `POST /` runs: the only one there is.
    pub fn default_sequence(&self) -> Option<&Arc<Sequence>> {
        match self.sequences.len() {
            1 => self.sequences.values().next(),
            _ => None,
        }
    }
}

/// One WasmStep: its model grant, every version compiled and checked, its
/// traffic split, rollback policy and gate.
fn build_step(
    doc: &WasmStepDoc,
    runtime: &Runtime,
    builtins: &dyn Builtins,
    models: &LoadedModels,
) -> Result<WasmStep, RegistryError> {
    let at = doc.at.as_ref().map(Location::to_string).unwrap_or_default();
    let limits = doc.limits();
    // Before compiling: refusing a step must not cost a Cranelift run.
    if limits.memory > runtime.config().max_memory {
        return Err(RegistryError::Component {
            at: at.clone(),
            source: RuntimeError::Compile {
                origin: "spec.limits.memory".into(),
                message: format!(
                    "{} bytes is above the host's --max-step-memory of {} bytes",
                    limits.memory,
                    runtime.config().max_memory
                ),
            },
        });
    }
    let step_models = grant_models(doc, &at, runtime, models)?;
    let smoke_event = doc.smoke_event().cloned().map(Arc::new);
    let mut versions = Vec::new();
    for (version, source) in doc.versions() {
        let pulled = source_bytes(&source, |n| builtins.get(n), builtins.oci());
        let (origin, bytes) = pulled.map_err(|e| match e {
            SourceError::Read { path, source } => RegistryError::Component {
                at: at.clone(),
                source: RuntimeError::Read { path, source },
            },
            SourceError::UnknownBuiltin(name) => RegistryError::UnknownBuiltin {
                at: at.clone(),
                name,
                known: builtins.names().join(", "),
            },
            SourceError::Pull(message) => RegistryError::Pull {
                at: at.clone(),
                version: version.clone(),
                message,
            },
        })?;
        let compiled = runtime
            .compile(&origin, &bytes, limits, doc.config_pairs())
            .map_err(|source| RegistryError::Component {
                at: at.clone(),
                source,
            })?;
        let compiled = if doc.spec.reuse_instances {
            compiled.with_warm_instances()
        } else {
            compiled
        };
        let compiled = match &step_models {
            Some(m) => compiled.with_models(m.clone()),
            None => compiled,
        };
        go_live::block_on(go_live(&compiled, smoke_event.as_deref()))
            .map_err(go_live::NotLive::Blocked)
            .and_then(|r| r)
            .map_err(|failed| failed.into_registry_error(&at, &version))?;
        versions.push(StepVersion {
            name: version,
            component: compiled,
            source: origin,
            digest: component_digest(&bytes),
            stats: Arc::default(),
        });
    }
    let version_names: Vec<&str> = versions.iter().map(|v| v.name.as_str()).collect();
    let traffic = Traffic::from_specs(&doc.spec.traffic, &version_names);
    Ok(WasmStep {
        name: doc.name().to_string(),
        traffic,
        versions,
        previous_traffic: Vec::new(),
        smoke_event,
        rollback: doc
            .spec
            .rollback
            .as_ref()
            .zip(doc.rollback_window())
            .map(|(r, window)| RollbackPolicy {
                max_error_rate: r.max_error_rate,
                window,
                min_events: r.min_events,
            }),
        changed: None,
        gate: Arc::new(StepGate::new(limits.concurrency, limits.max_queue)),
    })
}

/// The step's wasi:nn grant (`None` without models or `allowModelLoad`);
/// each model file is optimised once across steps (`models`).
fn grant_models(
    doc: &WasmStepDoc,
    at: &str,
    runtime: &Runtime,
    models: &LoadedModels,
) -> Result<Option<StepModels>, RegistryError> {
    let grants = doc.models();
    if grants.is_empty() && !doc.spec.allow_model_load {
        return Ok(None);
    }
    let mut graphs = HashMap::new();
    for (name, source) in grants {
        let loaded = match models.get(&source) {
            Some(Ok(loaded)) => loaded.clone(),
            Some(Err(message)) => {
                return Err(RegistryError::Model {
                    at: at.to_string(),
                    name,
                    message: message.clone(),
                });
            }
            None => {
                return Err(RegistryError::Model {
                    at: at.to_string(),
                    name,
                    message: "not loaded (internal error: the manifest changed while it was built)"
                        .to_string(),
                });
            }
        };
        graphs.insert(name, loaded);
    }
    Ok(Some(StepModels::new(
        graphs,
        doc.spec.allow_model_load,
        runtime.inference_pool(),
    )))
}

/// Every model of a manifest, loaded or why not, by source.
type LoadedModels = HashMap<ModelSource, Result<LoadedModel, String>>;

/// Every distinct model source the manifest grants.
fn model_sources(manifest: &Manifest) -> impl Iterator<Item = ModelSource> {
    let mut sources: Vec<ModelSource> = manifest
        .wasm_steps
        .iter()
        .flat_map(|doc| doc.models().into_values())
        .collect();
    sources.sort();
    sources.dedup();
    sources.into_iter()
}

/// Read and optimise every model the manifest grants, each source once.
fn load_models(manifest: &Manifest, builtins: &dyn Builtins) -> LoadedModels {
    model_sources(manifest)
        .map(|source| {
            let loaded = load_model(builtins, &source);
            if let Ok(model) = &loaded {
                tracing::info!(
                    model = ?source.source,
                    load_ms = model.load_time.as_millis() as u64,
                    "model loaded and optimised"
                );
            }
            (source, loaded)
        })
        .collect()
}

/// Why a component's or model's bytes could not be had.
enum SourceError {
    /// The file could not be read.
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `builtin:<name>` names nothing built in.
    UnknownBuiltin(String),
    /// An `oci://` component could not be pulled.
    Pull(String),
}

/// The bytes a source names, with the origin logs and errors show: a file
/// read from disk, or a built-in looked up with `builtin`.
fn source_bytes(
    source: &ComponentSource,
    builtin: impl Fn(&str) -> Option<&'static [u8]>,
    oci: Option<&crate::oci::Puller>,
) -> Result<(String, Cow<'static, [u8]>), SourceError> {
    match source {
        ComponentSource::Oci(reference) => {
            let puller = oci.ok_or_else(|| {
                SourceError::Pull(format!("{reference}: no registry client here"))
            })?;
            let pulled = go_live::block_on(puller.pull(reference))
                .map_err(SourceError::Pull)?
                .map_err(|e| SourceError::Pull(e.to_string()))?;
            Ok((pulled.pinned, pulled.bytes.into()))
        }
        ComponentSource::File(path) => {
            let bytes = std::fs::read(path).map_err(|source| SourceError::Read {
                path: path.display().to_string(),
                source,
            })?;
            Ok((path.display().to_string(), bytes.into()))
        }
        ComponentSource::Builtin(name) => {
            let bytes = builtin(name).ok_or_else(|| SourceError::UnknownBuiltin(name.clone()))?;
            Ok((format!("builtin:{name}"), bytes.into()))
        }
    }
}

/// Read and optimise one model for the runtime's inference pool.
fn load_model(builtins: &dyn Builtins, source: &ModelSource) -> Result<LoadedModel, String> {
    let (origin, bytes) =
        source_bytes(&source.source, |n| builtins.model(n), None).map_err(|e| match e {
            SourceError::Read { path, source } => {
                format!("cannot read model file {path}: {source}")
            }
            SourceError::UnknownBuiltin(name) => format!(
                "no built-in model {name:?} (built in: {})",
                builtins.model_names().join(", ")
            ),
            SourceError::Pull(message) => message,
        })?;
    let max_input_elements = source
        .max_input_elements
        .unwrap_or(crate::runtime::nn::DEFAULT_MAX_INPUT_ELEMENTS);
    crate::runtime::nn::load_onnx(&origin, &bytes, max_input_elements).map_err(|e| e.to_string())
}
