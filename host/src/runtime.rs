//! The wasmtime side of stephost: one engine, one compiled component per step
//! version, and a fresh, limited store + instance for every event.
//!
//! The three lifetimes are visible in the types: [`Runtime`] is built once at
//! start (engine, linker, epoch ticker), [`StepComponent`] once per step
//! version (compiled component, `InstancePre`), and [`StepState`] once per
//! event (store data: WASI context, limiter, captured stderr).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    Trap, UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::guest_log::GuestLog;
use crate::nn::{InferencePool, NnState, NnView, StepModels};

mod bindings {
    //! Host bindings generated from `wit/step.wit`.
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "step",
        exports: { default: async },
    });
}

pub use bindings::stephost::step::types::{CloudEvent as WitEvent, StepError as WitStepError};
use bindings::{Step, StepPre};

/// How often the epoch ticks. Every running guest is checked against its
/// deadline at this granularity and yields to the async executor this often,
/// so a CPU-bound guest cannot starve the HTTP reactor for longer than this.
/// 10 ms keeps the ticker's cost negligible (100 wakeups/s) while keeping
/// timeouts precise to ~1% of the shortest useful timeout (1 s).
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bytes of a guest's stderr kept per event for the logs. Enough for a panic
/// message and a few lines of diagnostics; anything beyond is counted and
/// dropped rather than trapping the guest (wasmtime's MemoryOutputPipe would trap).
pub const GUEST_LOG_CAPACITY: usize = 16 * 1024;

/// Default of [`RuntimeConfig::keep_resident`] without `PAGEMAP_SCAN`, when
/// the first bytes of a slot are reset by memset whether touched or not.
/// 64 KiB covers the pages a small step touches per event (shadow stack top,
/// heap start, data), so they are reused warm; more only adds memset that
/// outweighs the saved faults (chosen with the `step_overhead` benchmark;
/// figures in bench/RESULTS.md).
pub const DEFAULT_KEEP_RESIDENT: usize = 64 << 10;

/// Default of [`RuntimeConfig::keep_resident`] with `PAGEMAP_SCAN`, which
/// resets only the pages an instance dirtied, so the budget costs nothing
/// where it is not used: 4 MiB holds the pre-initialised content filter's
/// whole working set (fresh instance 362 → 216 µs; 32 MiB: 214 µs), while a
/// trivial step costs the same as with 64 KiB (12.96 vs 12.91 µs); one run
/// of the `content_filter` and `step_overhead` benchmarks (bench/RESULTS.md).
pub const DEFAULT_KEEP_RESIDENT_PAGEMAP: usize = 4 << 20;

/// Whether this kernel has the `PAGEMAP_SCAN` ioctl (Linux ≥ 6.7), which
/// wasmtime's `Enabled::Auto` will then use. Read from the kernel release
/// instead of probing the ioctl, which would need `unsafe`; a wrong guess
/// only changes the default budget, never correctness.
pub fn pagemap_scan_supported() -> bool {
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return false;
    };
    let mut parts = release.trim().split(['.', '-']);
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 7)
}

/// The default `keep_resident` for this machine (see the two constants).
pub fn default_keep_resident() -> usize {
    if pagemap_scan_supported() {
        DEFAULT_KEEP_RESIDENT_PAGEMAP
    } else {
        DEFAULT_KEEP_RESIDENT
    }
}

/// Settings of the engine that cannot change per step.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Use the pooling instance allocator (pre-reserved slots, copy-on-write
    /// memory images): instantiation in µs instead of mmap/munmap per event.
    /// Off = on-demand allocation (for comparison, or where address space is short).
    pub pooling: bool,
    /// The largest linear memory any step may have. The pooling allocator
    /// sizes its slots by it, so a step's own `limits.memory` must not exceed it.
    pub max_memory: u64,
    /// How many instances may exist at once across all steps. Sizes the pool;
    /// events beyond it wait for a free slot instead of failing.
    pub max_instances: u32,
    /// Bytes of each pooled memory, table and fiber stack that stay resident
    /// when a slot is freed (reset by memset instead of madvise), so the next
    /// instance does not page-fault them in again.
    pub keep_resident: usize,
    /// Directory of wasmtime's compile cache (keyed by the component's hash
    /// and the engine's settings), so a restart or a second host skips
    /// Cranelift. `None` = compile every time.
    pub cache_dir: Option<std::path::PathBuf>,
    /// How many wasi:nn inferences run at once, host-wide. Each occupies a
    /// core for milliseconds; more than the cores only queues inside tract.
    pub inference_threads: usize,
    /// Pre-initialise components that export `wizer-initialize` (see
    /// `preinit`). Off = instances run their initialisation themselves.
    pub preinit: bool,
    /// Reset a freed slot by scanning which pages the instance really
    /// touched (Linux's `PAGEMAP_SCAN`, kernel ≥ 6.7; ignored elsewhere) and
    /// copying back only those, up to `keep_resident` bytes, instead of a
    /// memset of the first `keep_resident` bytes plus an `madvise` of the
    /// rest: the pages a step uses stay mapped, so the next instance takes
    /// no page faults, and no TLB shootdown hits the other cores.
    pub pagemap_scan: bool,
    /// Write `/tmp/perf-<pid>.map` naming the compiled guest functions, so
    /// `perf record` / `perf report` attribute samples inside a step to its
    /// own functions instead of anonymous JIT addresses. Off by default:
    /// the map grows with every component compiled.
    pub perfmap: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            pooling: true,
            // 512 MiB covers a tokeniser or a small embedded model; real models
            // live in the host (wasi-nn), not in guest memory.
            max_memory: 512 << 20,
            // 128 simultaneous instances: far above what 2 cores can execute at
            // once, so waiting for a slot only happens under real overload.
            max_instances: 128,
            keep_resident: default_keep_resident(),
            cache_dir: None,
            inference_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            preinit: true,
            pagemap_scan: true,
            perfmap: false,
        }
    }
}

/// Errors from building the engine or compiling a step.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// The engine could not be created with the requested configuration.
    #[error("cannot create the wasmtime engine: {0:#}")]
    Engine(wasmtime::Error),
    /// The bytes are not a valid WebAssembly component.
    #[error("{origin}: not a valid WebAssembly component: {message}")]
    Compile {
        /// Where the component came from (path or builtin name).
        origin: String,
        /// wasmtime's reason.
        message: String,
    },
    /// The component is valid but does not fit the step world.
    #[error(
        "{origin}: does not implement the stephost step world (stephost:step/handler@0.1.0 \
         with only WASI and stephost:step/config imports): {message}"
    )]
    WrongWorld {
        /// Where the component came from.
        origin: String,
        /// wasmtime's reason (a missing export or an unsatisfied import).
        message: String,
    },
    /// The component's `wizer-initialize` failed (trapped, hit a limit).
    #[error("{origin}: pre-initialisation (wizer-initialize) failed: {message}{}",
        if stderr.is_empty() { String::new() } else { format!("; guest stderr: {stderr}") })]
    Preinit {
        /// Where the component came from.
        origin: String,
        /// Why it failed.
        message: String,
        /// What the guest wrote to stderr meanwhile.
        stderr: String,
    },
    /// The component file could not be read.
    #[error("cannot read component {path}: {source}")]
    Read {
        /// The path that failed.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Why one event failed inside a Wasm step.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum StepFailure {
    /// The step returned `err(retryable(...))`: retrying may help.
    #[error("step failed (retryable): {0}")]
    Retryable(String),
    /// The step returned `err(fatal(...))`: the input cannot be processed.
    #[error("step rejected the event: {0}")]
    Fatal(String),
    /// The step's output is not a valid CloudEvent.
    #[error("step returned an invalid event: {0}")]
    InvalidOutput(String),
    /// The guest trapped (a panic, an unreachable, a bad memory access).
    #[error("step trapped: {0}")]
    Trap(String),
    /// The guest ran past its timeout and was interrupted.
    #[error("step timed out after {0:?}")]
    Timeout(Duration),
    /// The guest tried to grow its memory past its limit.
    #[error("step exceeded its memory limit of {0} bytes")]
    MemoryExhausted(u64),
    /// The guest returned an event over `limits.maxOutput` or with too many
    /// extensions.
    #[error("step output is too large: {0}")]
    OutputTooLarge(String),
}

impl StepFailure {
    /// Whether Knative's delivery rules would retry this failure: everything
    /// but a fatal error or an invalid output (both ≙ 4xx).
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            StepFailure::Fatal(_) | StepFailure::InvalidOutput(_) | StepFailure::OutputTooLarge(_)
        )
    }

    /// The HTTP status a Knative subscriber would answer with for this failure.
    pub fn http_status(&self) -> u16 {
        match self {
            StepFailure::Fatal(_)
            | StepFailure::InvalidOutput(_)
            | StepFailure::OutputTooLarge(_) => 422,
            _ => 500,
        }
    }
}

/// Per-step limits applied to every store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLimits {
    /// Linear memory cap in bytes (all memories of the instance together).
    pub memory: u64,
    /// Wall-clock bound of one `handle` call, instantiation included.
    pub timeout: Duration,
    /// Largest output event (data + attribute and extension text) a call
    /// may return; larger outputs fail the event.
    pub max_output: usize,
    /// Calls of the step that may run at once (all versions together).
    pub concurrency: usize,
    /// Calls that may wait for one of those places; beyond, the event is
    /// refused at once with 429 + `Retry-After`.
    pub max_queue: usize,
}

impl Default for StepLimits {
    fn default() -> Self {
        Self {
            // 128 MiB: a Rust guest with serde and a small table needs < 10 MiB;
            // this leaves room for text models while bounding a runaway guest.
            memory: 128 << 20,
            // 5 s: well under Knative's 300 s revision timeout and its 15 min
            // fanout wait, long enough for a CPU-heavy step on a loaded core.
            timeout: Duration::from_secs(5),
            // 4 MiB: the host's default inbound body limit (--max-event-bytes),
            // so what a step emits fits through the next hop's ingress under
            // the same default and one call cannot make the host hold more.
            max_output: 4 << 20,
            // 16: far above the 2–4 cores a pod has (CPU-bound steps saturate
            // the CPU well below it) yet only an eighth of the default
            // 128-instance pool, so one slow or stuck step cannot take every
            // sandbox from the others.
            concurrency: 16,
            // 64: Knative's queue-proxy queues 10× its concurrency; a fused
            // host is closer to the CPU, so 4× keeps the worst wait to a few
            // step durations before it pushes back with 429.
            max_queue: 64,
        }
    }
}

/// Most extensions an output event may carry. Binary mode sends each as an
/// HTTP header: hyper-based receivers refuse more than 100 headers and the
/// standard `ce-*` and transport headers need room too.
pub const MAX_OUTPUT_EXTENSIONS: usize = 64;

/// The engine and linker shared by every step; built once at start.
pub struct Runtime {
    /// The one engine: compiled code is only valid with the engine that made it.
    engine: Engine,
    /// WASI p2 + the stephost host interfaces, shared by every instantiation.
    linker: Linker<StepState>,
    /// Bounds simultaneous instances to the pool size, so a burst waits for a
    /// slot instead of failing with "pool exhausted".
    slots: Arc<Semaphore>,
    /// The engine configuration, kept to validate step limits against it.
    config: RuntimeConfig,
    /// Bounds host-side inference (wasi:nn) across all steps.
    inference: Arc<InferencePool>,
    /// The compile cache, for its hit/miss counts.
    cache: Option<wasmtime::Cache>,
    /// Dropped with the runtime to stop the epoch ticker thread.
    _ticker: EpochTicker,
}

impl Runtime {
    /// Build the engine (pooling allocator if asked and possible) and linker.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let cache = config.cache_dir.as_ref().and_then(|dir| {
            let mut cache = wasmtime::CacheConfig::new();
            cache.with_directory(dir);
            wasmtime::Cache::new(cache)
                .inspect_err(|e| {
                    tracing::warn!(error = %e, dir = %dir.display(), "compile cache disabled");
                })
                .ok()
        });
        let engine = match config.pooling {
            true => Engine::new(&engine_config(&config, true, cache.as_ref())).or_else(|e| {
                tracing::warn!(error = %e, "pooling allocator unavailable, using on-demand allocation");
                Engine::new(&engine_config(&config, false, cache.as_ref()))
            }),
            false => Engine::new(&engine_config(&config, false, cache.as_ref())),
        }
        .map_err(RuntimeError::Engine)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(RuntimeError::Engine)?;
        Step::add_to_linker::<_, HasSelf<StepState>>(&mut linker, |state| state)
            .map_err(RuntimeError::Engine)?;
        // wasi:nn for every step; what a step can load is its own grant.
        crate::nn::add_to_linker(&mut linker, |state: &mut StepState| NnView {
            table: &mut state.table,
            nn: &mut state.nn,
        })
        .map_err(RuntimeError::Engine)?;
        let ticker = EpochTicker::start(engine.clone());
        Ok(Self {
            engine,
            linker,
            slots: Arc::new(Semaphore::new(config.max_instances as usize)),
            inference: InferencePool::new(config.inference_threads),
            config,
            cache,
            _ticker: ticker,
        })
    }

    /// Compile-cache (hits, misses) since start; `None` without a cache.
    pub fn cache_stats(&self) -> Option<(u64, u64)> {
        self.cache
            .as_ref()
            .map(|c| (c.cache_hits() as u64, c.cache_misses() as u64))
    }

    /// The pool every wasi:nn inference of this runtime runs on.
    pub fn inference_pool(&self) -> Arc<InferencePool> {
        self.inference.clone()
    }

    /// The engine configuration this runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Compile a component from a file. CPU-heavy: call it off the async reactor.
    pub fn compile_file(
        &self,
        path: &Path,
        limits: StepLimits,
        config: Vec<(String, String)>,
    ) -> Result<StepComponent, RuntimeError> {
        let bytes = std::fs::read(path).map_err(|source| RuntimeError::Read {
            path: path.display().to_string(),
            source,
        })?;
        self.compile(&path.display().to_string(), &bytes, limits, config)
    }

    /// Compile a component and check it implements the step world.
    /// CPU-heavy: call it off the async reactor.
    pub fn compile(
        &self,
        origin: &str,
        bytes: &[u8],
        limits: StepLimits,
        config: Vec<(String, String)>,
    ) -> Result<StepComponent, RuntimeError> {
        let compile = |bytes: &[u8]| {
            Component::new(&self.engine, bytes).map_err(|e| RuntimeError::Compile {
                origin: origin.to_string(),
                message: format!("{e:#}"),
            })
        };
        let mut component = compile(bytes)?;
        let wrong_world = |e: wasmtime::Error| RuntimeError::WrongWorld {
            origin: origin.to_string(),
            message: format!("{e:#}"),
        };
        // Checked on the original first: a component of the wrong world is
        // reported as such, not as a failed pre-initialisation.
        self.linker
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        let mut config = config;
        config.sort();
        let config = Arc::new(config);
        if self.config.preinit && crate::preinit::wants_preinit(&component) {
            let started = Instant::now();
            let log = GuestLog::new(GUEST_LOG_CAPACITY);
            // WASI randomness seeded from the component's bytes: the snapshot
            // (e.g. HashMap keys drawn during init) is then a function of the
            // inputs, so the compile cache recognises it on the next start.
            let seed = {
                use sha2::Digest as _;
                let digest = sha2::Sha256::digest(bytes);
                u64::from_le_bytes(digest[..8].try_into().unwrap_or([0; 8]))
            };
            let new_store = || {
                let mut store = limited_store(
                    &self.engine,
                    limits,
                    config.clone(),
                    StepModels::none(self.inference.clone()),
                    log.clone(),
                );
                store.data_mut().wasi = deterministic_wasi(seed, &log);
                store
            };
            let snapshot =
                crate::preinit::preinitialize(&self.linker, bytes, new_store).map_err(|e| {
                    RuntimeError::Preinit {
                        origin: origin.to_string(),
                        message: format!("{:#}", e.root_cause()),
                        stderr: log.contents_lossy(),
                    }
                })?;
            component = compile(&snapshot)?;
            tracing::info!(
                origin,
                snapshot_bytes = snapshot.len(),
                took_ms = started.elapsed().as_millis() as u64,
                "pre-initialised (wizer-initialize ran once; instances start from the snapshot)"
            );
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        let pre = StepPre::new(pre).map_err(wrong_world)?;
        Ok(StepComponent {
            pre,
            limits,
            config,
            slots: self.slots.clone(),
            warm: None,
            models: StepModels::none(self.inference.clone()),
        })
    }
}

/// Wasmtime configuration: component model, async, epoch interruption, and
/// (with `pool`) the pooling allocator sized from the runtime config.
fn engine_config(rt: &RuntimeConfig, pooling: bool, cache: Option<&wasmtime::Cache>) -> Config {
    let mut config = Config::new();
    if let Some(cache) = cache {
        config.cache(Some(cache.clone()));
    }
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.parallel_compilation(true);
    if rt.perfmap {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if pooling {
        let instances = rt.max_instances;
        let mut pooling = PoolingAllocationConfig::default();
        pooling
            .total_component_instances(instances)
            // A Rust wasip2 component holds its main module plus a few small
            // canonical-ABI shim modules: 8 core instances each is generous.
            .total_core_instances(instances * 8)
            .max_core_instances_per_component(16)
            // One linear memory per Rust guest; 2 allows a guest with an
            // adapter module that keeps its own memory.
            .total_memories(instances * 2)
            .max_memories_per_component(2)
            .total_tables(instances * 8)
            .total_stacks(instances)
            .max_memory_size(usize::try_from(rt.max_memory).unwrap_or(usize::MAX))
            .linear_memory_keep_resident(rt.keep_resident)
            .table_keep_resident(rt.keep_resident)
            .async_stack_keep_resident(rt.keep_resident)
            .pagemap_scan(if rt.pagemap_scan {
                wasmtime::Enabled::Auto
            } else {
                wasmtime::Enabled::No
            });
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    }
    config
}

/// A compiled step version, ready to instantiate; built once per version.
#[derive(Clone)]
pub struct StepComponent {
    /// Pre-linked instance: per event only the store and instance are new.
    pre: StepPre<StepState>,
    /// Memory and time bounds applied to every event.
    limits: StepLimits,
    /// The step's `spec.config`, shared read-only by every instance.
    config: Arc<Vec<(String, String)>>,
    /// The runtime's instance slots (see [`Runtime`]).
    slots: Arc<Semaphore>,
    /// Idle instances kept for reuse, when the step asked for warm state.
    warm: Option<Arc<std::sync::Mutex<Vec<WarmInstance>>>>,
    /// The models this step may use through wasi:nn.
    models: StepModels,
}

/// Idle warm instances kept per step. Each holds a pool slot and its memory;
/// 4 covers the events 2 cores run at once with room for a burst, and bounds
/// what an idle step holds.
pub const MAX_IDLE_WARM: usize = 4;

/// An instance kept between events for a step that declared warm state.
struct WarmInstance {
    /// The instance's exports.
    instance: Step,
    /// Its store (memory, WASI context, limiter).
    store: Store<StepState>,
    /// Its captured stdout/stderr, cleared per event.
    log: GuestLog,
    /// The pool slot it occupies while alive.
    _slot: OwnedSemaphorePermit,
}

impl StepComponent {
    /// Reuse instances across events instead of a fresh one per event: the
    /// guest keeps its state (e.g. a loaded model) between events. A trapped
    /// instance is still never reused, and limits still apply per event.
    pub fn with_warm_instances(mut self) -> Self {
        self.warm = Some(Arc::default());
        self
    }

    /// Compile other bytes with this component's settings (limits, config,
    /// model grant, instance reuse): a new version of the same step.
    /// CPU-heavy: call it off the async reactor.
    pub fn sibling(
        &self,
        runtime: &Runtime,
        origin: &str,
        bytes: &[u8],
    ) -> Result<StepComponent, RuntimeError> {
        let mut compiled = runtime.compile(origin, bytes, self.limits, (*self.config).clone())?;
        compiled.models = self.models.clone();
        if self.warm.is_some() {
            compiled = compiled.with_warm_instances();
        }
        Ok(compiled)
    }

    /// Instantiate once without calling `handle`: what a new version must
    /// pass before it goes live (its memory fits the step's limit, its
    /// start-up does not trap).
    pub async fn check_instantiates(&self) -> Result<(), StepFailure> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| StepFailure::Trap("the runtime is shutting down".into()))?;
        let mut store = self.new_store(GuestLog::new(GUEST_LOG_CAPACITY));
        match self.pre.instantiate_async(&mut store).await {
            Ok(_) => Ok(()),
            Err(error) => Err(self.classify(&store, error)),
        }
    }

    /// Grant the step models through wasi:nn (`load-by-name`). Without a
    /// grant every wasi:nn load fails with a wasi-nn error.
    pub fn with_models(mut self, models: StepModels) -> Self {
        self.models = models;
        self
    }

    /// Run one event through a fresh instance, under the step's limits.
    ///
    /// Returns the guest's output (`None` = dropped by design) or why it
    /// failed. The instance is dropped afterwards either way, so a trapped
    /// instance is never reused.
    pub async fn handle(&self, event: WitEvent) -> Result<Option<WitEvent>, StepFailure> {
        if let Some(pool) = &self.warm {
            return self.handle_warm(pool, event).await;
        }
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| StepFailure::Trap("the runtime is shutting down".into()))?;
        let log = GuestLog::new(GUEST_LOG_CAPACITY);
        let mut store = self.new_store(log.clone());
        // The epoch deadline stops guest code; this also stops a guest that
        // waits in a host call (a WASI sleep or poll) past its timeout.
        let outcome = tokio::time::timeout(
            self.limits.timeout,
            self.instantiate_and_call(&mut store, &event),
        )
        .await;
        let result = match outcome {
            Ok(Ok(returned)) => from_guest(returned).and_then(|out| self.check_output(out)),
            Ok(Err(error)) => Err(self.classify(&store, error)),
            Err(_) => Err(StepFailure::Timeout(self.limits.timeout)),
        };
        if let Err(failure) = &result {
            let stderr = log.contents_lossy();
            tracing::warn!(%failure, guest_stderr = %stderr, "wasm step failed");
        }
        result
    }

    /// A fresh store with the step's limits, an empty WASI context (nothing
    /// granted) and the epoch deadline armed.
    fn new_store(&self, log: GuestLog) -> Store<StepState> {
        limited_store(
            self.pre.engine(),
            self.limits,
            self.config.clone(),
            self.models.clone(),
            log,
        )
    }

    /// One event on a reused instance (taken from the idle list or new).
    async fn handle_warm(
        &self,
        pool: &std::sync::Mutex<Vec<WarmInstance>>,
        event: WitEvent,
    ) -> Result<Option<WitEvent>, StepFailure> {
        let idle = match pool.lock() {
            Ok(mut list) => list.pop(),
            Err(poisoned) => poisoned.into_inner().pop(),
        };
        let mut warm = match idle {
            Some(warm) => warm,
            None => self.new_warm().await?,
        };
        warm.log.clear();
        arm_deadline(&mut warm.store, self.limits.timeout);
        let outcome = tokio::time::timeout(
            self.limits.timeout,
            warm.instance
                .stephost_step_handler()
                .call_handle(&mut warm.store, &event),
        )
        .await;
        let result = match outcome {
            Ok(Ok(returned)) => from_guest(returned).and_then(|out| self.check_output(out)),
            // Cut off inside a host call: the instance is mid-call, drop it.
            Err(_) => {
                let failure = StepFailure::Timeout(self.limits.timeout);
                tracing::warn!(%failure, guest_stderr = %warm.log.contents_lossy(), "wasm step failed");
                return Err(failure);
            }
            Ok(Err(error)) => {
                // A trap poisons the instance: log and drop it.
                let failure = self.classify(&warm.store, error);
                tracing::warn!(%failure, guest_stderr = %warm.log.contents_lossy(), "wasm step failed");
                return Err(failure);
            }
        };
        if let Err(failure) = &result {
            tracing::warn!(%failure, guest_stderr = %warm.log.contents_lossy(), "wasm step failed");
        }
        if let Ok(mut list) = pool.lock()
            && list.len() < MAX_IDLE_WARM
        {
            list.push(warm);
        }
        result
    }

    async fn new_warm(&self) -> Result<WarmInstance, StepFailure> {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StepFailure::Trap("the runtime is shutting down".into()))?;
        let log = GuestLog::new(GUEST_LOG_CAPACITY);
        let mut store = self.new_store(log.clone());
        let started = Instant::now();
        match self.pre.instantiate_async(&mut store).await {
            Ok(instance) => {
                instantiate_seconds().observe(started.elapsed().as_secs_f64());
                Ok(WarmInstance {
                    instance,
                    store,
                    log,
                    _slot: slot,
                })
            }
            Err(error) => Err(self.classify(&store, error)),
        }
    }

    async fn instantiate_and_call(
        &self,
        store: &mut Store<StepState>,
        event: &WitEvent,
    ) -> wasmtime::Result<Result<Option<WitEvent>, WitStepError>> {
        let started = Instant::now();
        let instance: Step = self.pre.instantiate_async(&mut *store).await?;
        instantiate_seconds().observe(started.elapsed().as_secs_f64());
        instance
            .stephost_step_handler()
            .call_handle(&mut *store, event)
            .await
    }

    /// Refuse an output over `limits.maxOutput` or with more than
    /// [`MAX_OUTPUT_EXTENSIONS`] extensions, before it is converted or sent.
    fn check_output(&self, output: Option<WitEvent>) -> Result<Option<WitEvent>, StepFailure> {
        let Some(event) = output else {
            return Ok(None);
        };
        if event.extensions.len() > MAX_OUTPUT_EXTENSIONS {
            return Err(StepFailure::OutputTooLarge(format!(
                "{} extensions, at most {MAX_OUTPUT_EXTENSIONS} are allowed",
                event.extensions.len()
            )));
        }
        let size = output_size(&event);
        if size > self.limits.max_output {
            return Err(StepFailure::OutputTooLarge(format!(
                "{size} bytes, over the step's limits.maxOutput of {} bytes",
                self.limits.max_output
            )));
        }
        Ok(Some(event))
    }

    /// Turn a wasmtime error into the failure it means for delivery.
    fn classify(&self, store: &Store<StepState>, error: wasmtime::Error) -> StepFailure {
        if store.data().limiter.exceeded {
            return StepFailure::MemoryExhausted(self.limits.memory);
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => StepFailure::Timeout(self.limits.timeout),
            Some(trap) => StepFailure::Trap(trap.to_string()),
            // Not a trap: an instantiation or host error. The full chain can
            // hold a wasm backtrace; callers get the first line, logs the rest.
            None => {
                tracing::debug!(error = ?error, "wasm step error detail");
                // The outer layers are wasmtime's backtrace context; the
                // root is what the host function said.
                StepFailure::Trap(error.root_cause().to_string())
            }
        }
    }
}

/// Time to instantiate a step (fresh store + instance), host-wide: the
/// per-event price of the sandbox. Registered in `/metrics` by `Metrics`.
pub fn instantiate_seconds() -> &'static prometheus_client::metrics::histogram::Histogram {
    static HISTOGRAM: std::sync::OnceLock<prometheus_client::metrics::histogram::Histogram> =
        std::sync::OnceLock::new();
    HISTOGRAM.get_or_init(|| {
        prometheus_client::metrics::histogram::Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.000_005, 2.0, 16),
        )
    })
}

/// Bytes an event takes: its data and the text of every attribute.
fn output_size(event: &WitEvent) -> usize {
    let optional = [
        &event.subject,
        &event.time,
        &event.datacontenttype,
        &event.dataschema,
    ]
    .iter()
    .map(|v| v.as_ref().map_or(0, String::len))
    .sum::<usize>();
    event.id.len()
        + event.source.len()
        + event.specversion.len()
        + event.type_.len()
        + optional
        + event
            .extensions
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
        + event.data.as_ref().map_or(0, Vec::len)
}

/// What the guest's `handle` returned, as the host sees it.
fn from_guest(
    returned: Result<Option<WitEvent>, WitStepError>,
) -> Result<Option<WitEvent>, StepFailure> {
    match returned {
        Ok(output) => Ok(output),
        Err(WitStepError::Retryable(msg)) => Err(StepFailure::Retryable(msg)),
        Err(WitStepError::Fatal(msg)) => Err(StepFailure::Fatal(msg)),
    }
}

/// A store with the step's limits, an empty WASI context (nothing granted)
/// and the epoch deadline armed.
fn limited_store(
    engine: &Engine,
    limits: StepLimits,
    config: Arc<Vec<(String, String)>>,
    models: StepModels,
    log: GuestLog,
) -> Store<StepState> {
    let mut wasi = WasiCtx::builder();
    // No preopens, env, args or network. WasiCtxBuilder's defaults allow
    // socket creation (with every address denied): switch that off too.
    wasi.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .stderr(log.clone())
        .stdout(log);
    let state = StepState {
        wasi: wasi.build(),
        table: ResourceTable::new(),
        limiter: StepLimiter::new(limits.memory),
        config,
        nn: NnState::new(models, usize::try_from(limits.memory).unwrap_or(usize::MAX)),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    arm_deadline(&mut store, limits.timeout);
    store
}

/// A WASI context like [`limited_store`]'s whose random sources are seeded
/// with `seed`, for pre-initialisation.
fn deterministic_wasi(seed: u64, log: &GuestLog) -> WasiCtx {
    use rand::SeedableRng as _;
    let mut wasi = WasiCtx::builder();
    wasi.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .stderr(log.clone())
        .stdout(log.clone())
        .secure_random(rand::rngs::StdRng::seed_from_u64(seed))
        .insecure_random(rand::rngs::StdRng::seed_from_u64(!seed))
        .insecure_random_seed(u128::from(seed));
    wasi.build()
}

/// Interrupt the store's guest `timeout` from now; until then yield to the
/// executor every epoch tick, so other events keep flowing while a CPU-heavy
/// guest runs.
fn arm_deadline(store: &mut Store<StepState>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    store.data_mut().nn.set_deadline(deadline);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
}

/// Store data for one event (or, for a warm step, one instance's lifetime).
pub struct StepState {
    /// The (empty) WASI context: std's runtime needs WASI to start at all.
    wasi: WasiCtx,
    /// WASI (and wasi:nn) resource handles of this instance.
    table: ResourceTable,
    /// Enforces the step's memory cap and remembers that it was hit.
    limiter: StepLimiter,
    /// The step's settings, answered by the `config` import.
    config: Arc<Vec<(String, String)>>,
    /// wasi:nn state: the step's model grant, tensor bytes, deadline.
    nn: NnState,
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::stephost::step::types::Host for StepState {}

impl bindings::stephost::step::config::Host for StepState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }

    fn get_all(&mut self) -> Vec<(String, String)> {
        self.config.as_ref().clone()
    }
}

/// A memory limiter that traps on the first grow past the cap and remembers
/// it, so the failure is reported as memory exhaustion, not a generic trap.
struct StepLimiter {
    /// The cap in bytes for all memories of the instance together.
    max: u64,
    /// Bytes currently committed by the instance's memories.
    used: u64,
    /// Set when a grow was refused.
    exceeded: bool,
}

impl StepLimiter {
    fn new(max: u64) -> Self {
        Self {
            max,
            used: 0,
            exceeded: false,
        }
    }
}

/// Tables hold function references: 100k entries is far beyond any real guest
/// (a Rust guest has a few hundred) and bounds a hostile one to ~1.6 MB.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for StepLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grow = (desired - current) as u64;
        if self.used + grow > self.max {
            self.exceeded = true;
            return Err(wasmtime::Error::msg(format!(
                "memory limit of {} bytes exceeded",
                self.max
            )));
        }
        self.used += grow;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on its own thread, so
/// deadlines work even when every async worker is busy running guests.
struct EpochTicker {
    /// Set on drop to end the thread.
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("stephost-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the epoch ticker: step timeouts will not fire");
        }
        Self { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
