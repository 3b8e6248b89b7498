//! Settings fixed for the host's lifetime: the engine configuration (pooling allocator, compile
//! cache, epoch interruption), its defaults, and the epoch ticker thread that enforces step
//! deadlines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

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

/// Default of [`RuntimeConfig::inference_threads`]: one per CPU. The
/// threads take inferences from one queue (see `nn::InferencePool`), so a
/// core never idles between one inference and the next, and more threads
/// would only time-slice inferences on the same cores: filter → sentiment at
/// 4 and 16 clients had a p99 of 13–15 and 38–41 ms with two threads against
/// 19–21 and 44 ms with four, for the same events/s (bench/RESULTS.md,
/// "P5: where the time goes").
pub fn default_inference_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
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
    /// Threads that run wasi:nn inferences, host-wide (see
    /// [`default_inference_threads`]); more inferences wait without holding
    /// a thread.
    pub inference_threads: usize,
    /// Let an inference that starts while the host is otherwise idle spread
    /// its matrix products over every core, at most `inference_threads`
    /// (see `nn::InferencePool`). Off = every inference on one core.
    pub spread_inference: bool,
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
            inference_threads: default_inference_threads(),
            spread_inference: true,
            preinit: true,
            pagemap_scan: true,
            perfmap: false,
        }
    }
}

/// The compile cache in `dir`, with wasmtime's background recompression
/// switched off.
///
/// By default wasmtime's cache worker recompresses an entry at zstd level 20
/// once it has been loaded 256 times: for the content filter's 15.6 MB entry
/// that is ≈ 19 s of one core (measured here), on a thread that only lowers
/// its nice value by 3, so it takes a fifth or more of a 2-core machine from
/// serving events. A process killed before it finishes (a pod scaled to zero,
/// a rollout) writes nothing and the next start begins again. Level 20 saves
/// only disk (15.6 → 11.2 MB), so entries stay at the level they were
/// written with.
pub(super) fn cache_config(dir: &std::path::Path) -> wasmtime::CacheConfig {
    let mut cache = wasmtime::CacheConfig::new();
    cache
        .with_directory(dir)
        .with_optimized_compression_usage_counter_threshold(u64::MAX);
    cache
}

/// Wasmtime configuration: component model, async, epoch interruption, and
/// (with `pool`) the pooling allocator sized from the runtime config.
pub(super) fn engine_config(
    rt: &RuntimeConfig,
    pooling: bool,
    cache: Option<&wasmtime::Cache>,
) -> Config {
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

/// Advances the engine's epoch every [`EPOCH_TICK`] on its own thread, so
/// deadlines work even when every async worker is busy running guests.
pub(super) struct EpochTicker {
    /// Set on drop to end the thread.
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub(super) fn start(engine: Engine) -> Self {
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
