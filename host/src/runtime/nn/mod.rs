//! Host-side inference for steps: the standard `wasi:nn` WIT
//! (`wasi:nn@0.2.0-rc-2024-10-28`, the version wasmtime-wasi-nn 48 ships),
//! implemented over tract, with models preloaded by name per step.
//!
//! A model is parsed and optimised once per host ([`load_onnx`], off the async
//! threads) and shared by every instance of every step granted it. A step sees
//! only its own grants ([`StepModels`]); `load` of raw bytes is refused unless
//! its manifest allows it. Inputs are checked against the model's limits
//! before tract sees them; inference runs on the [`InferencePool`]'s own
//! threads, while the calling guest waits asynchronously;
//! every failure is a wasi-nn `error` with a message, never a trap.
//!
//! Why not wasmtime-wasi-nn's backend traits: they work with tract (tried),
//! but its `error.data` carries only the backend error's top line ("Failed
//! while accessing backend"), so a step could not tell its user *why*
//! (too large, wrong type, not granted), and its host calls are synchronous,
//! so every inference would block a tokio worker. The WIT is small enough to
//! implement directly. As in wasmtime's own wasi-nn, the host side sits on a
//! view type ([`NnView`]) the embedder hands out of its store, never on the
//! embedder's store type, so this module imports nothing of the runtime.
//!
//! `tract.rs` is the backend (tract only), `resources.rs` the WIT bindings and
//! the resources they name, `host.rs` the host calls on [`NnView`].

mod host;
mod resources;
mod tract;

pub use resources::{NnContext, NnError, NnGraph, NnTensor};
use tract::TractGraph;
pub use tract::{LoadedModel, ModelError, load_onnx};

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use tract_linalg::multithread::{Executor, multithread_tract_scope};
use wasmtime::component::{HasData, ResourceTable};

/// Default cap on the elements of one input tensor: 1 Mi elements (8 MiB of
/// i64) is far above a 512-token sequence yet stops a guest from making the
/// host allocate without bound. A model's manifest entry can lower it.
pub const DEFAULT_MAX_INPUT_ELEMENTS: usize = 1 << 20;

/// The threads inferences run on, host-wide: each inference takes a core for
/// milliseconds, so as many threads as cores, each taking the next waiting
/// inference from one queue the moment it finishes the last. (On tokio's
/// blocking threads behind a semaphore of one permit per core, every core
/// idled through each hand-off — the permit passed to a waiting guest, which
/// a tokio worker had to poll before its inference could start — 10 % of the
/// CPU at 16 clients; more permits than cores filled the gap by time-slicing
/// inferences on one core instead.) Waiting guests wait asynchronously; they
/// hold no thread. The queue holds at most one inference per instance, and
/// instances are bounded (`--max-instances`).
///
/// It also decides how many cores one inference uses. An inference that
/// starts while the host is otherwise idle (no other inference queued or
/// running, no other Wasm instance running) spreads its matrix products over
/// every core (tract's multithreaded executor, a rayon pool of one thread
/// per core): at one client the other cores would sit idle. Under load each
/// inference runs on one core, so events do not fight over the cores.
/// Splitting a matrix product by output tiles leaves every sum in the same
/// order: the answers are bit-identical (the sentiment logits tests compare
/// them with native tract on one thread).
pub struct InferencePool {
    /// Where inferences wait for a thread.
    queue: mpsc::Sender<Job>,
    /// Inferences queued or running now.
    inferences: Arc<AtomicUsize>,
    /// Wasm instances running now, host-wide ([`InferencePool::instance_running`]).
    instances: Arc<AtomicUsize>,
    /// The every-core executor for an inference alone on the host; `None`
    /// with one core or when spreading is off.
    spread: Option<Executor>,
}

/// tract's threading thresholds for a spread inference: a matrix product of
/// at least this many kernel panels, and a row-wise operation of at least
/// [`SPREAD_ELEMENTS`] elements, is split across the cores. tract's defaults
/// (64 panels, 32768 elements) leave a short review's inference (15–18
/// tokens) almost whole on one core: 3.12–3.28 ms spread against 3.29 ms on
/// one; with 16 and 4096, 2.50–2.70 ms (`examples/spread_probe.rs`, figures
/// in bench/RESULTS.md). They only apply on the every-core executor.
const SPREAD_PANELS: usize = 16;

/// See [`SPREAD_PANELS`].
const SPREAD_ELEMENTS: usize = 4096;

/// One inference (or graph optimisation) for a pool thread.
type Job = Box<dyn FnOnce() + Send>;

/// Counts one running Wasm instance (see [`InferencePool::instance_running`])
/// until dropped.
pub struct RunningInstance(Arc<AtomicUsize>);

impl Drop for RunningInstance {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl InferencePool {
    /// A pool of `threads` inference threads (at least one); with `spread`,
    /// an inference alone on the host uses every CPU, at most `threads`.
    pub fn new(threads: usize, spread: bool) -> std::io::Result<Arc<Self>> {
        let threads = threads.max(1);
        let cores = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(threads);
        let spread = (spread && cores > 1).then(|| {
            tract_linalg::multithread::set_threading_panel_threshold(SPREAD_PANELS);
            tract_linalg::multithread::set_threading_element_threshold(SPREAD_ELEMENTS);
            Executor::multithread_with_name(cores, "stephost-nn")
        });
        let (queue, jobs) = mpsc::channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        for i in 0..threads {
            let jobs = jobs.clone();
            std::thread::Builder::new()
                .name(format!("stephost-infer-{i}"))
                .spawn(move || {
                    // Ends when the pool (the queue's sender) is dropped.
                    while let Some(job) = next_job(&jobs) {
                        // A job catches its own panics; this keeps the thread
                        // should one escape (its caller then sees a failure).
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                    }
                })?;
        }
        Ok(Arc::new(Self {
            queue,
            inferences: Arc::new(AtomicUsize::new(0)),
            instances: Arc::new(AtomicUsize::new(0)),
            spread,
        }))
    }

    /// Count a Wasm instance as running while the guard lives, so an
    /// inference knows whether other events are using the cores.
    pub fn instance_running(&self) -> RunningInstance {
        self.instances.fetch_add(1, Ordering::Relaxed);
        RunningInstance(self.instances.clone())
    }

    /// Run CPU-heavy `job` on a pool thread once one is free, on every core
    /// if the host is otherwise idle. A job whose caller stopped waiting
    /// before it started is skipped; once started, it runs to its end.
    async fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, String> {
        // Alone: no other inference, and no instance but the caller's.
        let alone = self.inferences.fetch_add(1, Ordering::Relaxed) == 0
            && self.instances.load(Ordering::Relaxed) <= 1;
        let queued = RunningInstance(self.inferences.clone());
        let spread = self.spread.clone().filter(|_| alone);
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _queued = queued;
            if answer.is_closed() {
                return;
            }
            let out = match spread {
                // The whole inference runs on a thread of the every-core
                // pool, so each matrix product splits across the pool
                // without waking this thread and handing back to it, op
                // after op.
                Some(Executor::MultiThread(pool)) => {
                    let executor = Executor::MultiThread(pool.clone());
                    pool.install(move || multithread_tract_scope(executor, job))
                }
                Some(executor) => multithread_tract_scope(executor, job),
                None => job(),
            };
            let _ = answer.send(out);
        });
        self.queue
            .send(job)
            .map_err(|_| "the host is shutting down".to_string())?;
        answered
            .await
            .map_err(|_| "inference thread failed".to_string())
    }
}

/// The next job for a pool thread; `None` once the pool is gone.
fn next_job(jobs: &Mutex<mpsc::Receiver<Job>>) -> Option<Job> {
    // A poisoned lock only means another thread panicked while waiting;
    // the receiver itself is intact.
    let jobs = jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    jobs.recv().ok()
}

/// The models one step is granted, by name — all `load-by-name` can see —
/// and whether it may `load` bytes of its own.
#[derive(Clone)]
pub struct StepModels {
    /// Granted models by the name `load-by-name` uses; shared, optimised once.
    graphs: Arc<HashMap<String, Arc<TractGraph>>>,
    /// Whether `load` of the step's own bytes is allowed (`allowModelLoad`).
    allow_load: bool,
    /// Where this step's inferences run (host-wide bound).
    pool: Arc<InferencePool>,
}

impl StepModels {
    /// Grant `models` by name on `pool`; `allow_load` additionally lets the
    /// step load ONNX bytes itself (optimised per call: costly, off by default).
    pub fn new(
        models: HashMap<String, LoadedModel>,
        allow_load: bool,
        pool: Arc<InferencePool>,
    ) -> Self {
        Self {
            graphs: Arc::new(models.into_iter().map(|(k, m)| (k, m.graph)).collect()),
            allow_load,
            pool,
        }
    }

    /// No grants at all: every wasi:nn load fails with `not-found`/`security`.
    pub fn none(pool: Arc<InferencePool>) -> Self {
        Self::new(HashMap::new(), false, pool)
    }

    /// Count an instance of this step as running (see
    /// [`InferencePool::instance_running`]).
    pub fn instance_running(&self) -> RunningInstance {
        self.pool.instance_running()
    }

    /// The granted names, sorted, for logs and errors.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.graphs.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// The wasi:nn state of one store: its grant, the host bytes its tensors
/// hold (capped), and the event's deadline.
pub struct NnState {
    /// What this store may load.
    models: StepModels,
    /// Host bytes held by this store's tensors now.
    tensor_bytes: usize,
    /// The most they may hold (the step's memory limit).
    max_tensor_bytes: usize,
    /// When the event's time is up: inference still running then fails with `timeout`.
    deadline: Option<Instant>,
}

impl NnState {
    /// State for one store; tensors it creates may hold at most
    /// `max_tensor_bytes` of host memory at once (the step's memory limit:
    /// a guest never needs more host tensor bytes than its own memory).
    pub fn new(models: StepModels, max_tensor_bytes: usize) -> Self {
        Self {
            models,
            tensor_bytes: 0,
            max_tensor_bytes,
            deadline: None,
        }
    }

    /// The event's deadline: inference still running then fails with `timeout`.
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
    }
}

/// What the wasi:nn host needs of a store: its resource table and its
/// [`NnState`]. The embedder hands it out of its own store type (as
/// wasmtime's `WasiNnView` does), so this module knows nothing of the
/// runtime's store and imports nothing from it.
pub struct NnView<'a> {
    /// The store's resource table (tensors, graphs, contexts, errors).
    pub table: &'a mut ResourceTable,
    /// The store's wasi:nn state.
    pub nn: &'a mut NnState,
}

/// The [`HasData`] marker that lets the generated bindings hand out an
/// [`NnView`] borrowed from the store.
struct HasNnView;

impl HasData for HasNnView {
    type Data<'a> = NnView<'a>;
}

/// Add the wasi:nn interfaces to a linker whose store data gives an
/// [`NnView`] through `view`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> NnView<'_>,
) -> wasmtime::Result<()> {
    resources::bindings::Ml::add_to_linker::<T, HasNnView>(linker, view)
}
