//! What every HTTP handler (the event endpoints in `ingress.rs`, the admin
//! API in `admin.rs`) shares: the live configuration, the dispatcher, the
//! admission door, metrics and the request limits.

use std::sync::Arc;

use crate::admission::{Admission, AdmissionLimits};
use crate::metrics::Metrics;
use crate::registry::LiveConfig;
use crate::runtime::Runtime;
use crate::sequence::{Dispatcher, Transport};

/// 30 s: hyper's own default header timeout and above Knative's 10 s
/// dispatcher connect budget; a slowloris client holds a connection no longer.
pub const DEFAULT_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Largest event body accepted by default. CloudEvents carriers commonly cap
/// events far lower (Kafka's default message size is 1 MB); 4 MiB leaves
/// room for batch-sized payloads while bounding the memory one request holds.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 4 << 20;

/// What every request handler shares.
pub struct AppState {
    /// The live configuration and its one way to change.
    pub live: LiveConfig,
    /// Calls steps and replies.
    pub dispatcher: Dispatcher,
    /// Largest request body accepted (413 beyond).
    pub max_event_bytes: usize,
    /// What `/metrics` exports.
    pub metrics: Arc<Metrics>,
    /// `STEPHOST_ADMIN_TOKEN`: the admin API exists only when set.
    pub admin_token: Option<String>,
    /// Largest component the admin API accepts.
    pub max_component_bytes: usize,
    /// The engine every configuration and admin upload is compiled with.
    pub runtime: Arc<Runtime>,
    /// Admission: events (Sequence runs and step calls) in progress at once.
    pub admission: Arc<Admission>,
    /// How long a request body may take to arrive (408 beyond).
    pub read_timeout: std::time::Duration,
    /// `--bare-answer`: Sequence events are answered with themselves, no
    /// step runs (the benchmark floor of the host's own cost).
    pub bare_answer: bool,
}

/// Largest component upload by default: the biggest reference guest with a
/// model inside (sentiment-tract) is 65 MB; 128 MiB leaves room while
/// bounding what one request can make the host hold.
pub const DEFAULT_MAX_COMPONENT_BYTES: usize = 128 << 20;

impl AppState {
    /// Enable the admin API with this bearer token (empty = stays off).
    pub fn with_admin_token(mut self, token: Option<String>, max_component_bytes: usize) -> Self {
        self.admin_token = token.filter(|t| !t.is_empty());
        self.max_component_bytes = max_component_bytes;
        self
    }

    /// The door events pass (see `admission`); refused events get 429 with
    /// `Retry-After`.
    pub fn with_admission(mut self, admission: Admission) -> Self {
        self.admission = Arc::new(admission);
        self
    }

    /// Bound how long a request body may take to arrive.
    pub fn with_read_timeout(mut self, read_timeout: std::time::Duration) -> Self {
        self.read_timeout = read_timeout;
        self
    }

    /// Bound remote calls whose delivery sets no `timeout` (`--remote-timeout`).
    pub fn with_remote_timeout(mut self, limit: std::time::Duration) -> Self {
        self.dispatcher = self.dispatcher.with_remote_timeout(limit);
        self
    }

    /// How binary-mode text attributes are written and read
    /// (`--attribute-encoding`).
    pub fn with_text_encoding(mut self, encoding: crate::event::TextEncoding) -> Self {
        self.dispatcher = self.dispatcher.with_text_encoding(encoding);
        self
    }

    /// Export a span per step call (OTLP), when configured.
    pub fn with_otlp(mut self, exporter: Option<crate::otlp::Exporter>) -> Self {
        self.dispatcher = self.dispatcher.with_otlp(exporter);
        self
    }

    /// Answer Sequence events with themselves without running a step
    /// (`--bare-answer`, a benchmark floor).
    pub fn with_bare_answer(mut self, on: bool) -> Self {
        if on {
            tracing::warn!(
                "--bare-answer: Sequence events are answered with themselves, no step runs"
            );
        }
        self.bare_answer = on;
        self
    }

    /// Turn the `stephostversions` extension on outputs on or off.
    pub fn with_versions_extension(mut self, on: bool) -> Self {
        self.dispatcher = self.dispatcher.with_versions_extension(on);
        self
    }

    /// State with no configuration loaded yet (not ready), compiling with
    /// `runtime` and calling remote hops through `transport`.
    pub fn new(max_event_bytes: usize, runtime: Arc<Runtime>, transport: Transport) -> Self {
        let metrics = Arc::new(Metrics::new());
        Self {
            live: LiveConfig::default(),
            dispatcher: Dispatcher::new(metrics.clone(), transport),
            max_event_bytes,
            metrics,
            admin_token: None,
            max_component_bytes: DEFAULT_MAX_COMPONENT_BYTES,
            runtime,
            admission: Arc::new(Admission::new(AdmissionLimits::defaults(
                crate::admission::workers(),
            ))),
            read_timeout: DEFAULT_READ_TIMEOUT,
            bare_answer: false,
        }
    }
}
