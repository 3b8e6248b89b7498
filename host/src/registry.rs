//! The live configuration: every Sequence with its steps resolved to a
//! compiled Wasm component or a remote URL, and its reply resolved to a URL.
//!
//! Built from a validated [`Manifest`]; a [`Registry`] is immutable once
//! built, so an event always sees one consistent configuration.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use url::Url;

use crate::manifest::{
    ComponentSource, DeliverySpec, Destination, Location, Manifest, ModelSource, SequenceDoc,
    parse_duration,
};
use crate::nn::{LoadedModel, StepModels};
use crate::runtime::{Runtime, RuntimeError, StepComponent};

/// How refs that are not WasmSteps become URLs, as Knative resolves them.
#[derive(Debug, Clone)]
pub struct Resolver {
    /// Cluster DNS suffix (`svc.{cluster_domain}`), normally `cluster.local`.
    pub cluster_domain: String,
    /// Broker ingress base URL; a Broker `ns/name` resolves to `{base}/{ns}/{name}`.
    /// Default `http://broker-ingress.knative-eventing.svc.{cluster_domain}`.
    pub broker_ingress: Option<Url>,
    /// Namespace for refs and Sequences that name none.
    pub namespace: String,
    /// `K_SINK` (SinkBinding): the reply of a Sequence that has none.
    pub k_sink: Option<Url>,
    /// `K_CE_OVERRIDES` extensions (SinkBinding `ceOverrides`), set on every
    /// event sent to `K_SINK`.
    pub k_ce_overrides: Vec<(String, String)>,
}

impl Default for Resolver {
    fn default() -> Self {
        Self {
            cluster_domain: "cluster.local".into(),
            broker_ingress: None,
            namespace: "default".into(),
            k_sink: None,
            k_ce_overrides: Vec::new(),
        }
    }
}

/// Why the manifests cannot become a live configuration.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// A Destination cannot be turned into a URL.
    #[error("{at}: {field}: {message}")]
    Unresolvable {
        /// The document.
        at: String,
        /// The field (`spec.steps[0].ref`).
        field: String,
        /// Why.
        message: String,
    },
    /// A WasmStep's component failed to load or compile.
    #[error("{at}: spec.component: {source}")]
    Component {
        /// The WasmStep document.
        at: String,
        /// The runtime's reason.
        source: RuntimeError,
    },
    /// A model in `spec.models` could not be read or optimised.
    #[error("{at}: spec.models.{name}: {message}")]
    Model {
        /// The WasmStep document.
        at: String,
        /// The model's granted name.
        name: String,
        /// Why.
        message: String,
    },
    /// A version compiled but cannot be instantiated under its limits.
    #[error("{at}: version {version:?} cannot be instantiated: {message}")]
    Instantiate {
        /// The WasmStep document.
        at: String,
        /// The version.
        version: String,
        /// Why.
        message: String,
    },
    /// A version failed the step's smoke event.
    #[error("{at}: spec.smokeEvent: version {version:?} failed its smoke event: {message}")]
    Smoke {
        /// The WasmStep document.
        at: String,
        /// The version.
        version: String,
        /// How it failed.
        message: String,
    },
    /// `builtin:<name>` names no built-in guest.
    #[error("{at}: spec.component: no built-in component {name:?} (built in: {known})")]
    UnknownBuiltin {
        /// The WasmStep document.
        at: String,
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: String,
    },
}

/// A step as a Sequence calls it.
#[derive(Clone)]
pub enum StepTarget {
    /// A Wasm component run in-process.
    Wasm(Arc<WasmStep>),
    /// An HTTP subscriber, called as Knative's dispatcher would.
    Remote(Url),
}

impl StepTarget {
    /// A name for logs and errors: the WasmStep name or the URL.
    pub fn label(&self) -> String {
        match self {
            StepTarget::Wasm(step) => step.name.clone(),
            StepTarget::Remote(url) => url.to_string(),
        }
    }
}

/// A compiled WasmStep.
#[derive(Clone)]
pub struct WasmStep {
    /// The step name (the WasmStep's `metadata.name`).
    pub name: String,
    /// Its versions, each compiled with the step's limits, config and models.
    pub versions: Vec<StepVersion>,
    /// How events are split across versions (percentages sum to 100).
    pub traffic: Vec<Traffic>,
    /// The split before the last admin change, for `rollback` (empty: none).
    pub previous_traffic: Vec<Traffic>,
    /// The event each new version must handle before going live.
    pub smoke_event: Option<Arc<cloudevents::Event>>,
    /// When to undo an admin traffic change automatically.
    pub rollback: Option<RollbackPolicy>,
    /// The last admin traffic change: when, and each version's (events,
    /// errors) counts then, so the watchdog sees only what came after.
    pub changed: Option<Arc<TrafficChange>>,
    /// Bounds the step's calls at once and its waiting queue (all versions
    /// together; kept across admin changes of the same configuration).
    pub gate: Arc<StepGate>,
}

/// Per-step admission (`limits.concurrency`, `limits.maxQueue`): a step that
/// is slow or stuck holds at most `concurrency` sandboxes, at most
/// `max_queue` calls wait for them, and the rest are pushed back at once
/// (429) instead of queueing without bound.
#[derive(Debug)]
pub struct StepGate {
    places: Arc<tokio::sync::Semaphore>,
    waiting: std::sync::atomic::AtomicUsize,
    concurrency: usize,
    max_queue: usize,
}

/// The step's places and its queue are all taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateFull {
    /// `limits.concurrency`.
    pub concurrency: usize,
    /// `limits.maxQueue`.
    pub max_queue: usize,
}

impl StepGate {
    /// A gate with `concurrency` places (at least 1) and `max_queue` waiters.
    pub fn new(concurrency: usize, max_queue: usize) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            places: Arc::new(tokio::sync::Semaphore::new(concurrency)),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            concurrency,
            max_queue,
        }
    }

    /// Take a place, waiting in the queue if there is room in it.
    pub async fn enter(&self) -> Result<tokio::sync::OwnedSemaphorePermit, GateFull> {
        use std::sync::atomic::Ordering::SeqCst;
        if let Ok(place) = self.places.clone().try_acquire_owned() {
            return Ok(place);
        }
        let full = GateFull {
            concurrency: self.concurrency,
            max_queue: self.max_queue,
        };
        if self.waiting.fetch_add(1, SeqCst) >= self.max_queue {
            self.waiting.fetch_sub(1, SeqCst);
            return Err(full);
        }
        // Leaves the queue however the wait ends (also when cancelled).
        struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let _waiting = Waiting(&self.waiting);
        self.places.clone().acquire_owned().await.map_err(|_| full)
    }
}

/// `spec.rollback`, parsed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RollbackPolicy {
    /// Failed share above which to roll back.
    pub max_error_rate: f64,
    /// How long after a change its versions are watched.
    pub window: Duration,
    /// Calls needed before the rate counts.
    pub min_events: u64,
}

/// A traffic change, for the rollback watchdog.
#[derive(Debug)]
pub struct TrafficChange {
    /// When it went live.
    pub at: std::time::Instant,
    /// Per version (by index): (events, errors) at that moment.
    pub baseline: Vec<(u64, u64)>,
}

impl WasmStep {
    /// Per-version (events, errors) counts now.
    pub fn counts(&self) -> Vec<(u64, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        self.versions
            .iter()
            .map(|v| (v.stats.events.load(Relaxed), v.stats.errors.load(Relaxed)))
            .collect()
    }

    /// Whether the last traffic change should be undone now: a version that
    /// gained traffic in it failed more than the policy allows, within the
    /// window. Returns the offending version's name and its rate.
    pub fn rollback_due(&self) -> Option<(String, f64)> {
        let policy = self.rollback?;
        let change = self.changed.as_ref()?;
        if change.at.elapsed() > policy.window || self.previous_traffic.is_empty() {
            return None;
        }
        let share = |traffic: &[Traffic], v: usize| -> u32 {
            traffic
                .iter()
                .filter(|t| t.version == v)
                .map(|t| t.percent)
                .sum()
        };
        let now = self.counts();
        for (i, version) in self.versions.iter().enumerate() {
            if share(&self.traffic, i) <= share(&self.previous_traffic, i) {
                continue;
            }
            let (e0, f0) = change.baseline.get(i).copied().unwrap_or((0, 0));
            let (events, errors) = (now[i].0.saturating_sub(e0), now[i].1.saturating_sub(f0));
            if events >= policy.min_events {
                let rate = errors as f64 / events as f64;
                if rate > policy.max_error_rate {
                    return Some((version.name.clone(), rate));
                }
            }
        }
        None
    }
}

/// Run the smoke event through a freshly compiled version: it must not fail
/// (dropping it is fine) and its output must be a valid CloudEvent.
pub async fn smoke_test(
    component: &StepComponent,
    event: &cloudevents::Event,
) -> Result<(), String> {
    match component.handle(crate::event::to_wit(event)).await {
        Ok(Some(output)) => crate::event::from_wit(output)
            .map(|_| ())
            .map_err(|e| format!("its output is not a valid CloudEvent: {e}")),
        Ok(None) => Ok(()),
        Err(failure) => Err(failure.to_string()),
    }
}

/// Block on `future` from sync code: on the current runtime's handle when
/// called from a blocking thread of one, else on a small runtime of its own
/// (`stephost validate`).
fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, String> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => Ok(handle.block_on(future)),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| rt.block_on(future))
            .map_err(|e| format!("cannot start a runtime for the smoke event: {e}")),
    }
}

/// One compiled version of a step.
#[derive(Clone)]
pub struct StepVersion {
    /// The version's name (`default` for a `spec.component` shorthand).
    pub name: String,
    /// The compiled component with its limits and config.
    pub component: StepComponent,
    /// SHA-256 of the component's bytes (hex), to tell builds apart.
    pub digest: String,
    /// Events this version handled and how many failed (all attempts).
    pub stats: Arc<VersionStats>,
}

/// Per-version counters, kept across configuration swaps of the same version.
#[derive(Debug, Default)]
pub struct VersionStats {
    /// Step calls.
    pub events: std::sync::atomic::AtomicU64,
    /// Step calls that failed.
    pub errors: std::sync::atomic::AtomicU64,
}

/// Hex SHA-256 of component bytes.
pub fn digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One traffic entry of a step.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    /// Index into [`WasmStep::versions`].
    pub version: usize,
    /// Share of events, 0–100.
    pub percent: u32,
    /// Addresses this version directly (`Stephost-Step-Tag: <step>=<tag>`).
    pub tag: Option<String>,
}

impl WasmStep {
    /// The version a new event runs: the tagged one when `tag` names one,
    /// otherwise one drawn by the traffic split with `roll` in 0..100.
    pub fn pick(&self, tag: Option<&str>, roll: u32) -> &StepVersion {
        if let Some(tag) = tag
            && let Some(t) = self.traffic.iter().find(|t| t.tag.as_deref() == Some(tag))
        {
            return &self.versions[t.version];
        }
        let mut acc = 0;
        for t in &self.traffic {
            acc += t.percent;
            if roll < acc {
                return &self.versions[t.version];
            }
        }
        // Percentages sum to 100 (validated), so this is only reached by a
        // roll out of range: the last entry with traffic, else the last version.
        let last = self
            .traffic
            .iter()
            .rev()
            .find(|t| t.percent > 0)
            .map_or(self.versions.len() - 1, |t| t.version);
        &self.versions[last]
    }

    /// Whether `tag` addresses one of this step's versions.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.traffic.iter().any(|t| t.tag.as_deref() == Some(tag))
    }

    /// The step's tags, for error messages.
    pub fn tags(&self) -> Vec<&str> {
        self.traffic
            .iter()
            .filter_map(|t| t.tag.as_deref())
            .collect()
    }
}

/// One step of a resolved Sequence.
#[derive(Clone)]
pub struct SequenceStep {
    /// What to call.
    pub target: StepTarget,
    /// The step's own delivery, else the channel template's, else one attempt.
    pub delivery: Delivery,
}

/// How `backoffDelay` grows between retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackoffPolicy {
    /// `delay · k` before retry k.
    Linear,
    /// `delay · 2^(k−1)` before retry k.
    Exponential,
}

/// A resolved Knative DeliverySpec: what happens when a hop fails.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delivery {
    /// Retries after the first attempt (`retry`); 0 = one attempt.
    pub retry: u32,
    /// Policy and base delay; only when both `backoffPolicy` and
    /// `backoffDelay` are set (else retries are immediate, as in Knative).
    pub backoff: Option<(BackoffPolicy, Duration)>,
    /// Bound of each attempt (`timeout`).
    pub timeout: Option<Duration>,
    /// Cap of an honoured `Retry-After` on 429/503 (`retryAfterMax`); `None`
    /// = Retry-After is ignored, as in Knative when the field is unset.
    pub retry_after_max: Option<Duration>,
    /// Where the original event goes after the last failed attempt.
    pub dead_letter_sink: Option<Url>,
}

impl Delivery {
    /// The wait before retry `k` (1-based), without Retry-After.
    ///
    /// Linear waits `delay·k`, exponential `delay·2^(k−1)`: 0.1 s gives
    /// 0.1, 0.2, 0.3 s (linear) and 0.1, 0.2, 0.4 s (exponential). Knative's
    /// code makes the first linear retry immediate (go-retryablehttp counts
    /// from 0), which its docs do not describe; we follow the docs.
    pub fn backoff(&self, k: u32) -> Duration {
        match self.backoff {
            None => Duration::ZERO,
            Some((BackoffPolicy::Linear, delay)) => delay.saturating_mul(k),
            Some((BackoffPolicy::Exponential, delay)) => {
                let factor = 1u32.checked_shl(k.saturating_sub(1)).unwrap_or(u32::MAX);
                delay.saturating_mul(factor).min(MAX_BACKOFF)
            }
        }
    }
}

/// Ceiling of one backoff wait. Exponential backoff with a large `retry`
/// reaches days (knative/eventing#9278 proposes a `backoffMax` for this); a
/// wait longer than an hour would only hold the sender's request open.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// A Sequence ready to run.
#[derive(Clone)]
pub struct Sequence {
    /// `metadata.name`.
    pub name: String,
    /// Namespace, sent as `Kn-Namespace` to remote steps.
    pub namespace: String,
    /// The steps in order.
    pub steps: Vec<SequenceStep>,
    /// Where the final event goes (`spec.reply`, else `K_SINK`); `None` = the
    /// final event is returned to the sender.
    pub reply: Option<Url>,
    /// Extensions set on the final event before the reply gets it: the
    /// `K_CE_OVERRIDES` when the reply is `K_SINK`, else none.
    pub reply_overrides: Vec<(String, String)>,
}

/// The whole live configuration.
#[derive(Clone)]
pub struct Registry {
    /// Sequences by name.
    pub sequences: BTreeMap<String, Arc<Sequence>>,
    /// Compiled Wasm steps by name (served at `/steps/{name}`).
    pub steps: BTreeMap<String, Arc<WasmStep>>,
}

/// Bytes of a built-in component by name, and the names that exist.
pub trait Builtins {
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
        let mut steps = BTreeMap::new();
        // A model file granted to several steps is optimised once.
        let mut models: HashMap<ModelSource, LoadedModel> = HashMap::new();
        for doc in &manifest.wasm_steps {
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
            let grants = doc.models();
            let step_models = if grants.is_empty() && !doc.spec.allow_model_load {
                None
            } else {
                let mut graphs = HashMap::new();
                for (name, source) in grants {
                    let loaded = match models.get(&source) {
                        Some(loaded) => loaded.clone(),
                        None => {
                            let loaded = load_model(builtins, &source).map_err(|message| {
                                RegistryError::Model {
                                    at: at.clone(),
                                    name: name.clone(),
                                    message,
                                }
                            })?;
                            tracing::info!(
                                step = doc.name(),
                                model = %name,
                                load_ms = loaded.load_time.as_millis() as u64,
                                "model loaded and optimised"
                            );
                            models.insert(source.clone(), loaded.clone());
                            loaded
                        }
                    };
                    graphs.insert(name, loaded);
                }
                Some(StepModels::new(
                    graphs,
                    doc.spec.allow_model_load,
                    runtime.inference_pool(),
                ))
            };
            let smoke_event = doc.smoke_event().and_then(Result::ok).map(Arc::new);
            let mut versions = Vec::new();
            for (version, source) in doc.versions() {
                let (origin, bytes): (String, std::borrow::Cow<'static, [u8]>) = match source {
                    ComponentSource::File(path) => {
                        let bytes =
                            std::fs::read(&path).map_err(|source| RegistryError::Component {
                                at: at.clone(),
                                source: RuntimeError::Read {
                                    path: path.display().to_string(),
                                    source,
                                },
                            })?;
                        (path.display().to_string(), bytes.into())
                    }
                    ComponentSource::Builtin(name) => {
                        let bytes =
                            builtins
                                .get(&name)
                                .ok_or_else(|| RegistryError::UnknownBuiltin {
                                    at: at.clone(),
                                    name: name.clone(),
                                    known: builtins.names().join(", "),
                                })?;
                        (format!("builtin:{name}"), bytes.into())
                    }
                };
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
                block_on(compiled.check_instantiates())
                    .and_then(|r| r.map_err(|f| f.to_string()))
                    .map_err(|message| RegistryError::Instantiate {
                        at: at.clone(),
                        version: version.clone(),
                        message,
                    })?;
                if let Some(event) = &smoke_event {
                    block_on(smoke_test(&compiled, event))
                        .and_then(|r| r)
                        .map_err(|message| RegistryError::Smoke {
                            at: at.clone(),
                            version: version.clone(),
                            message,
                        })?;
                }
                versions.push(StepVersion {
                    name: version,
                    component: compiled,
                    digest: digest(&bytes),
                    stats: Arc::default(),
                });
            }
            let traffic = doc
                .traffic()
                .into_iter()
                .map(|(version, percent, tag)| Traffic {
                    version,
                    percent,
                    tag,
                })
                .collect();
            let step = WasmStep {
                name: doc.name().to_string(),
                versions,
                traffic,
                previous_traffic: Vec::new(),
                smoke_event,
                rollback: doc.spec.rollback.as_ref().and_then(|r| {
                    Some(RollbackPolicy {
                        max_error_rate: r.max_error_rate,
                        window: parse_duration(&r.window).ok()?,
                        min_events: r.min_events,
                    })
                }),
                changed: None,
                gate: Arc::new(StepGate::new(limits.concurrency, limits.max_queue)),
            };
            steps.insert(step.name.clone(), Arc::new(step));
        }
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

/// Read and optimise one model for the runtime's inference pool.
fn load_model(builtins: &dyn Builtins, source: &ModelSource) -> Result<LoadedModel, String> {
    let (origin, bytes): (String, std::borrow::Cow<'static, [u8]>) = match &source.source {
        ComponentSource::File(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| format!("cannot read model file {}: {e}", path.display()))?;
            (path.display().to_string(), bytes.into())
        }
        ComponentSource::Builtin(name) => {
            let bytes = builtins.model(name.as_str()).ok_or_else(|| {
                format!(
                    "no built-in model {name:?} (built in: {})",
                    builtins.model_names().join(", ")
                )
            })?;
            (format!("builtin:{name}"), bytes.into())
        }
    };
    crate::nn::load_onnx(&origin, &bytes, source.max_input_elements).map_err(|e| e.to_string())
}

fn resolve_sequence(
    doc: &SequenceDoc,
    steps: &BTreeMap<String, Arc<WasmStep>>,
    resolver: &Resolver,
) -> Result<Sequence, RegistryError> {
    let at = doc.at.as_ref().map(Location::to_string).unwrap_or_default();
    let namespace = doc
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| resolver.namespace.clone());
    let default_delivery = doc
        .spec
        .channel_template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.delivery.clone());
    let mut resolved = Vec::new();
    for (i, step) in doc.spec.steps.iter().enumerate() {
        let bound = match (&step.reference, &step.uri) {
            // A ref with no uri that names a WasmStep runs in-process.
            (Some(r), None) => steps.get(&r.name).cloned(),
            _ => None,
        };
        let target = match bound {
            Some(wasm) => StepTarget::Wasm(wasm),
            None => StepTarget::Remote(resolve(
                &step.destination(),
                &namespace,
                resolver,
                &at,
                &format!("spec.steps[{i}]"),
                steps,
            )?),
        };
        let spec = step.delivery.as_ref().or(default_delivery.as_ref());
        let field = match step.delivery {
            Some(_) => format!("spec.steps[{i}].delivery"),
            None => "spec.channelTemplate.spec.delivery".to_string(),
        };
        resolved.push(SequenceStep {
            target,
            delivery: resolve_delivery(spec, &namespace, resolver, &at, &field, steps)?,
        });
    }
    let (reply, reply_overrides) = match &doc.spec.reply {
        Some(dest) => (
            Some(resolve(
                dest,
                &namespace,
                resolver,
                &at,
                "spec.reply",
                steps,
            )?),
            Vec::new(),
        ),
        None => (resolver.k_sink.clone(), resolver.k_ce_overrides.clone()),
    };
    Ok(Sequence {
        name: doc.metadata.name.clone(),
        namespace,
        steps: resolved,
        reply,
        reply_overrides,
    })
}

/// Turn a validated DeliverySpec into durations and a dead-letter URL.
fn resolve_delivery(
    spec: Option<&DeliverySpec>,
    namespace: &str,
    resolver: &Resolver,
    at: &str,
    field: &str,
    steps: &BTreeMap<String, Arc<WasmStep>>,
) -> Result<Delivery, RegistryError> {
    let Some(spec) = spec else {
        return Ok(Delivery::default());
    };
    // Durations were validated with the manifest; `ok()` cannot drop a value.
    let duration = |d: &Option<String>| d.as_deref().and_then(|t| parse_duration(t).ok());
    let policy = match spec.backoff_policy.as_deref() {
        Some("linear") => Some(BackoffPolicy::Linear),
        Some("exponential") => Some(BackoffPolicy::Exponential),
        _ => None,
    };
    let dead_letter_sink = match &spec.dead_letter_sink {
        Some(dest) => Some(resolve(
            dest,
            namespace,
            resolver,
            at,
            &format!("{field}.deadLetterSink"),
            steps,
        )?),
        None => None,
    };
    Ok(Delivery {
        retry: u32::try_from(spec.retry.unwrap_or(0).max(0)).unwrap_or(u32::MAX),
        backoff: policy.zip(duration(&spec.backoff_delay)),
        timeout: duration(&spec.timeout),
        retry_after_max: duration(&spec.retry_after_max),
        dead_letter_sink,
    })
}

/// Resolve a Destination to a URL as Knative's addressable resolver does
/// (knative/pkg resolver/addressable_resolver.go): a `uri` alone must be
/// absolute; a `ref` resolves to its address and a `uri` with it is a
/// reference relative to that address (RFC 3986 §5.2).
pub fn resolve(
    dest: &Destination,
    namespace: &str,
    resolver: &Resolver,
    at: &str,
    field: &str,
    steps: &BTreeMap<String, Arc<WasmStep>>,
) -> Result<Url, RegistryError> {
    let fail = |message: String| RegistryError::Unresolvable {
        at: at.to_string(),
        field: field.to_string(),
        message,
    };
    let Some(r) = &dest.reference else {
        let uri = dest.uri.as_deref().unwrap_or_default();
        return Url::parse(uri).map_err(|e| fail(format!("uri {uri:?}: {e}")));
    };
    let ns = r.namespace.as_deref().unwrap_or(namespace);
    let group = r
        .api_version
        .as_deref()
        .or(r.group.as_deref())
        .unwrap_or("")
        .split('/')
        .next()
        .unwrap_or("");
    let base = match (r.kind.as_str(), group) {
        ("Service", "serving.knative.dev" | "v1" | "") => {
            format!("http://{}.{ns}.svc.{}/", r.name, resolver.cluster_domain)
        }
        ("Broker", "eventing.knative.dev" | "") => {
            let ingress = match &resolver.broker_ingress {
                Some(url) => url.as_str().trim_end_matches('/').to_string(),
                None => format!(
                    "http://broker-ingress.knative-eventing.svc.{}",
                    resolver.cluster_domain
                ),
            };
            format!("{ingress}/{ns}/{}", r.name)
        }
        (kind, _) => {
            let known: Vec<&str> = steps.keys().map(String::as_str).collect();
            return Err(fail(format!(
                "cannot resolve a ref to {} {kind} {:?}: no WasmStep has that name (WasmSteps: \
                 [{}]) and stephost resolves only Service and Broker refs; bind it with a \
                 WasmStep or give an absolute uri",
                r.api_version.as_deref().unwrap_or(""),
                r.name,
                known.join(", ")
            )));
        }
    };
    let base = Url::parse(&base).map_err(|e| fail(format!("ref {:?}: {e}", r.name)))?;
    match &dest.uri {
        None => Ok(base),
        Some(uri) => base
            .join(uri)
            .map_err(|e| fail(format!("uri {uri:?} relative to {base}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::KReference;

    fn dest(kind: &str, api: &str, name: &str, uri: Option<&str>) -> Destination {
        Destination {
            reference: Some(KReference {
                kind: kind.into(),
                name: name.into(),
                api_version: Some(api.into()),
                ..KReference::default()
            }),
            uri: uri.map(str::to_string),
            ..Destination::default()
        }
    }

    fn url(d: &Destination, resolver: &Resolver) -> String {
        resolve(d, "ns1", resolver, "test", "f", &BTreeMap::new())
            .expect("resolves")
            .to_string()
    }

    #[test]
    fn refs_resolve_as_knative_resolves_them() {
        let r = Resolver::default();
        let svc = dest(
            "Service",
            "serving.knative.dev/v1",
            "stephost",
            Some("/steps/content-filter"),
        );
        assert_eq!(
            url(&svc, &r),
            "http://stephost.ns1.svc.cluster.local/steps/content-filter"
        );
        let relative = dest("Service", "v1", "x", Some("foo"));
        assert_eq!(url(&relative, &r), "http://x.ns1.svc.cluster.local/foo");
        let broker = dest("Broker", "eventing.knative.dev/v1", "default", None);
        assert_eq!(
            url(&broker, &r),
            "http://broker-ingress.knative-eventing.svc.cluster.local/ns1/default"
        );
        let local = Resolver {
            broker_ingress: Some(Url::parse("http://127.0.0.1:9/").expect("url")),
            ..Resolver::default()
        };
        assert_eq!(url(&broker, &local), "http://127.0.0.1:9/ns1/default");
        let other = dest("Function", "x.dev/v1", "f", None);
        assert!(resolve(&other, "ns1", &r, "t", "f", &BTreeMap::new()).is_err());
    }
}
