//! Prometheus metrics (OpenMetrics text at `GET /metrics`): events by
//! sequence and outcome, per-step counts and latency, retries, dead-lettered
//! events, events in flight.
//!
//! Label values come from the configuration (sequence and step names, remote
//! URLs), never from event content, so their cardinality is bounded.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label pairs of one series.
pub type Labels = Vec<(String, String)>;

/// Labels from `(name, value)` pairs.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Step latency buckets: 10 µs (a trivial warm step) doubling to ≈ 5 s (the
/// default step timeout), so every realistic step lands in a finite bucket.
fn step_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 2.0, 20))
}

/// Every metric the host exports; cheap to clone (shared counters).
pub struct Metrics {
    /// The registry `encode` renders.
    registry: Registry,
    /// `stephost_events_total{sequence, outcome}`: outcome = replied, returned,
    /// dropped, dead_lettered, failed, rejected (bad input).
    pub events: Family<Labels, Counter>,
    /// `stephost_step_events_total{step, outcome}`: outcome = forwarded, dropped, failed.
    pub steps: Family<Labels, Counter>,
    /// `stephost_step_duration_seconds{step}`: one attempt of one step.
    pub step_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    /// `stephost_retries_total{target}`: attempts after the first.
    pub retries: Family<Labels, Counter>,
    /// `stephost_dead_lettered_total{sequence}`.
    pub dead_lettered: Family<Labels, Counter>,
    /// `stephost_events_in_flight`: Sequence runs in progress.
    pub in_flight: Gauge,
    /// `stephost_admission_limit`: `--max-running`, the events that may use
    /// this host's cores at once (set at each scrape, like the two below).
    pub admission_limit: Gauge,
    /// `stephost_events_running`: events holding a running place now; with
    /// the limit, it tells an operator how close the door is to queueing.
    pub events_running: Gauge,
    /// `stephost_admission_waiting`: arrivals waiting for a running place;
    /// above zero for long means the host is at capacity.
    pub admission_waiting: Gauge,
    /// Manifest reloads by outcome.
    pub reloads: Family<Labels, Counter>,
    /// Automatic rollbacks by step.
    pub auto_rollbacks: Family<Labels, Counter>,
    /// Compile-cache hits and misses (brought up to date at each scrape).
    pub compile_cache: Family<Labels, Counter>,
    /// `stephost_config_info{digest}` = 1: the configuration digest this
    /// replica serves (set at each scrape), to compare across a Service's pods.
    pub config_info: Family<Labels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All metrics registered, at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("stephost");
        let events = Family::<Labels, Counter>::default();
        let steps = Family::<Labels, Counter>::default();
        let step_seconds = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(
            step_histogram as fn() -> Histogram,
        );
        let retries = Family::<Labels, Counter>::default();
        let dead_lettered = Family::<Labels, Counter>::default();
        let in_flight = Gauge::default();
        let admission_limit = Gauge::default();
        let events_running = Gauge::default();
        let admission_waiting = Gauge::default();
        let reloads = Family::<Labels, Counter>::default();
        let auto_rollbacks = Family::<Labels, Counter>::default();
        let compile_cache = Family::<Labels, Counter>::default();
        let config_info = Family::<Labels, Gauge>::default();
        registry.register(
            "config_info",
            "The configuration digest served (label digest; 1): equal on every replica that converged",
            config_info.clone(),
        );
        registry.register(
            "compile_cache",
            "Component compilations by compile-cache result (hit, miss)",
            compile_cache.clone(),
        );
        registry.register(
            "auto_rollbacks",
            "Traffic changes undone by a step's rollback policy, by step",
            auto_rollbacks.clone(),
        );
        registry.register(
            "step_instantiate_seconds",
            "Time to instantiate a step (fresh store and instance), all steps",
            instantiate_seconds().clone(),
        );
        registry.register(
            "manifest_reloads",
            "Manifest reloads after a file change, by outcome (applied, failed)",
            reloads.clone(),
        );
        registry.register(
            "events",
            "Events received, by sequence and outcome",
            events.clone(),
        );
        registry.register(
            "step_events",
            "Step calls, by step and outcome",
            steps.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "Duration of one step attempt",
            step_seconds.clone(),
        );
        registry.register(
            "retries",
            "Delivery attempts after the first, by target",
            retries.clone(),
        );
        registry.register(
            "dead_lettered",
            "Events sent to a dead-letter sink, by sequence",
            dead_lettered.clone(),
        );
        registry.register(
            "events_in_flight",
            "Sequence runs in progress",
            in_flight.clone(),
        );
        registry.register(
            "admission_limit",
            "Events that may use this host's cores at once (--max-running)",
            admission_limit.clone(),
        );
        registry.register(
            "events_running",
            "Events using this host's cores now (not waiting on remote hops, backoff or senders)",
            events_running.clone(),
        );
        registry.register(
            "admission_waiting",
            "Events waiting for a place to run (at most --max-burst, --max-queue while overloaded)",
            admission_waiting.clone(),
        );
        Self {
            config_info,
            registry,
            events,
            steps,
            step_seconds,
            retries,
            dead_lettered,
            in_flight,
            admission_limit,
            events_running,
            admission_waiting,
            reloads,
            auto_rollbacks,
            compile_cache,
        }
    }

    /// Bring the compile-cache counters up to `(hits, misses)` (monotonic
    /// totals read from the runtime).
    pub fn set_compile_cache(&self, hits: u64, misses: u64) {
        for (result, total) in [("hit", hits), ("miss", misses)] {
            let counter = self
                .compile_cache
                .get_or_create(&labels(&[("result", result)]));
            let seen = counter.get();
            if total > seen {
                counter.inc_by(total - seen);
            }
        }
    }

    /// The series of one step version, looked up once: `get_or_create` on
    /// every call hashed freshly allocated label strings, 3.5 % of the
    /// host's CPU on the 3-appender Sequence (bench/RESULTS.md, the CPU split).
    pub fn step_series(&self, step: &str, version: &str) -> StepSeries {
        let counter = |outcome: &str| {
            self.steps
                .get_or_create(&labels(&[
                    ("step", step),
                    ("version", version),
                    ("outcome", outcome),
                ]))
                .clone()
        };
        StepSeries {
            seconds: self
                .step_seconds
                .get_or_create(&labels(&[("step", step), ("version", version)]))
                .clone(),
            forwarded: counter("forwarded"),
            dropped: counter("dropped"),
            failed: counter("failed"),
        }
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        text
    }
}

/// Handles on one step version's series in [`Metrics`] (shared values, so a
/// handle kept across calls writes what `/metrics` reads).
#[derive(Debug, Clone)]
pub struct StepSeries {
    /// `stephost_step_duration_seconds{step, version}`.
    pub seconds: Histogram,
    /// `stephost_step_events_total{…, outcome="forwarded"}`.
    pub forwarded: Counter,
    /// `stephost_step_events_total{…, outcome="dropped"}`.
    pub dropped: Counter,
    /// `stephost_step_events_total{…, outcome="failed"}`.
    pub failed: Counter,
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
