//! What every HTTP handler (ingress and step endpoints in `server`, the
//! admin API in `admin`) shares: the application state, JSON error answers
//! and the bounded reading of a request body. Both handler modules import
//! this one; it imports neither, so they form no circle.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};

use crate::admission::{Admission, AdmissionLimits};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::sequence::Dispatcher;

/// 30 s: hyper's own default header timeout and above Knative's 10 s
/// dispatcher connect budget; a slowloris client holds a connection no longer.
pub const DEFAULT_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Largest event body accepted by default. CloudEvents carriers commonly cap
/// events far lower (Kafka's default message size is 1 MB); 4 MiB leaves
/// room for batch-sized payloads while bounding the memory one request holds.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 4 << 20;

/// What every request handler shares.
pub struct AppState {
    /// The live configuration; `None` until every component is compiled.
    pub live: ArcSwapOption<Registry>,
    /// Calls steps and replies.
    pub dispatcher: Dispatcher,
    /// Largest request body accepted (413 beyond).
    pub max_event_bytes: usize,
    /// What `/metrics` exports.
    pub metrics: Arc<Metrics>,
    /// Why the last manifest reload failed (the old configuration keeps
    /// serving); cleared by the next successful one. Shown by `/readyz`.
    pub reload_error: std::sync::Mutex<Option<String>>,
    /// `STEPHOST_ADMIN_TOKEN`: the admin API exists only when set.
    pub admin_token: Option<String>,
    /// Largest component the admin API accepts.
    pub max_component_bytes: usize,
    /// The runtime, for compiling admin uploads (set once compiled).
    pub runtime: std::sync::OnceLock<Arc<crate::runtime::Runtime>>,
    /// Serialises every swap of the live configuration after start: admin
    /// changes (each a read-modify-swap of the snapshot) and manifest reloads.
    pub admin_lock: tokio::sync::Mutex<()>,
    /// Admission: events (Sequence runs and step calls) in progress at once.
    pub admission: Arc<Admission>,
    /// How long a request body may take to arrive (408 beyond).
    pub read_timeout: std::time::Duration,
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

    /// Export a span per step call (OTLP), when configured.
    pub fn with_otlp(mut self, exporter: Option<crate::otlp::Exporter>) -> Self {
        self.dispatcher = self.dispatcher.with_otlp(exporter);
        self
    }

    /// Turn the `stephostversions` extension on outputs on or off.
    pub fn with_versions_extension(mut self, on: bool) -> Self {
        self.dispatcher = self.dispatcher.with_versions_extension(on);
        self
    }

    /// State with no configuration loaded yet (not ready).
    pub fn new(max_event_bytes: usize) -> Self {
        let metrics = Arc::new(Metrics::new());
        Self {
            live: ArcSwapOption::empty(),
            dispatcher: Dispatcher::new(metrics.clone()),
            max_event_bytes,
            metrics,
            reload_error: std::sync::Mutex::new(None),
            admin_token: None,
            max_component_bytes: DEFAULT_MAX_COMPONENT_BYTES,
            runtime: std::sync::OnceLock::new(),
            admin_lock: tokio::sync::Mutex::new(()),
            admission: Arc::new(Admission::new(AdmissionLimits::defaults(
                crate::admission::workers(),
            ))),
            read_timeout: DEFAULT_READ_TIMEOUT,
        }
    }
}

/// A request that cannot be served: rendered as a JSON error body.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What is wrong, for the caller.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "status": self.status.as_u16() });
        (self.status, axum::Json(body)).into_response()
    }
}

/// A JSON error response.
pub(crate) fn error(status: StatusCode, message: String) -> Response {
    ApiError { status, message }.into_response()
}

/// An [`ApiError`] with this status and message.
pub(crate) fn api_error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
    }
}

/// The live configuration, or 503 while components are still compiling.
pub(crate) fn live(state: &AppState) -> Result<Arc<Registry>, ApiError> {
    state.live.load_full().ok_or_else(|| {
        api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: components are still compiling",
        )
    })
}

/// Read a request body of at most `limit` bytes within the read timeout:
/// 413 beyond the limit, 408 when the client stops sending (a slowloris
/// body, or a `Content-Length` larger than what is sent), 400 when the
/// body cannot be read (a reset, a malformed chunk).
pub(crate) async fn read_body(
    state: &AppState,
    body: Body,
    limit: usize,
    flag: &str,
) -> Result<bytes::Bytes, ApiError> {
    let read = tokio::time::timeout(state.read_timeout, Limited::new(body, limit).collect());
    match read.await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body is larger than the limit of {limit} bytes ({flag})"),
        )),
        Ok(Err(e)) => Err(api_error(
            StatusCode::BAD_REQUEST,
            format!("cannot read the request body: {e}"),
        )),
        Err(_) => Err(api_error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {:?} (--read-timeout)",
                state.read_timeout
            ),
        )),
    }
}

/// 413 for a body declared or found larger than `--max-event-bytes`.
pub(crate) fn too_large(limit: usize) -> ApiError {
    api_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("event body is larger than the limit of {limit} bytes (--max-event-bytes)"),
    )
}
