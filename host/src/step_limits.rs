//! The bounds one step runs under: set per step in the manifest
//! (`spec.limits`), enforced by the runtime (memory, time, output size) and
//! the registry's per-step gate (concurrency, queue). A plain value on the
//! ground floor so that neither side imports the other.

use std::time::Duration;

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
