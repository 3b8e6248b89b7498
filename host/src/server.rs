//! HTTP surface on one port: Sequence ingress, per-step endpoints, health.
//!
//! - `POST /`, `POST /sequences/{name}`: run a Sequence (the fused mode).
//! - `POST /steps/{name}`: run one Wasm step and answer as a Knative
//!   subscriber does (200 + event, or 202 with no body when it drops).
//! - `GET /healthz` (alive), `GET /readyz` (every component compiled).
//! - `/admin/...` when `STEPHOST_ADMIN_TOKEN` is set (see `admin`).
//!
//! Errors are JSON `{"error": "...", "status": N}`; nothing is acknowledged
//! (2xx) before the event reached the reply, was returned, or was dropped by a
//! step on purpose.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cloudevents::{AttributesReader, Event};

use crate::admission::Overloaded;
use crate::app_state::{ApiError, api_error, error, live, read_body, too_large};
pub use crate::app_state::{
    AppState, DEFAULT_MAX_COMPONENT_BYTES, DEFAULT_MAX_EVENT_BYTES, DEFAULT_READ_TIMEOUT,
};
use crate::event;
use crate::metrics::{Metrics, labels};
use crate::registry::{Registry, Sequence, StepTarget};
use crate::sequence::{ChainError, Delivered, HopError, Inbound};

/// The router for all endpoints.
pub fn router(state: Arc<AppState>) -> Router {
    let admin = if state.admin_token.is_some() {
        crate::admin::router()
    } else {
        Router::new()
    };
    admin
        .route("/", post(ingress_default).options(options))
        .route("/sequences/{name}", post(ingress_named).options(options))
        .route("/steps/{name}", post(step_endpoint).options(options))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .with_state(state)
}

/// OPTIONS: the CloudEvents webhook handshake that Knative ingresses answer.
async fn options() -> Response {
    (
        StatusCode::OK,
        [
            (header::ALLOW, "POST, OPTIONS"),
            (
                header::HeaderName::from_static("webhook-allowed-origin"),
                "*",
            ),
            (header::HeaderName::from_static("webhook-allowed-rate"), "*"),
        ],
    )
        .into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    if let Some((hits, misses)) = state.runtime.get().and_then(|r| r.cache_stats()) {
        state.metrics.set_compile_cache(hits, misses);
    }
    let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let admission = &state.admission;
    state
        .metrics
        .admission_limit
        .set(gauge(admission.limits().max_running));
    state.metrics.events_running.set(gauge(admission.running()));
    state
        .metrics
        .admission_waiting
        .set(gauge(admission.waiting()));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.live.load_full() {
        Some(registry) => {
            let reload_error = state
                .reload_error
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default();
            let body = serde_json::json!({
                "ready": true,
                "sequences": registry.sequences.keys().collect::<Vec<_>>(),
                "steps": registry.steps.keys().collect::<Vec<_>>(),
                "lastReloadError": reload_error,
            });
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: components are still compiling".into(),
        ),
    }
}

async fn ingress_default(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    ingress(&state, None, headers, body).await
}

async fn ingress_named(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    ingress(&state, Some(name), headers, body).await
}

/// Find the Sequence (`None` = the only one) and run the event through it.
async fn ingress(
    state: &AppState,
    name: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let registry = live(state)?;
    let seq = match &name {
        Some(name) => registry.sequences.get(name).cloned().ok_or_else(|| {
            api_error(StatusCode::NOT_FOUND, format!("no Sequence named {name:?}"))
        })?,
        None => registry.default_sequence().cloned().ok_or_else(|| {
            let names: Vec<&String> = registry.sequences.keys().collect();
            api_error(
                StatusCode::NOT_FOUND,
                format!(
                    "POST / needs exactly one Sequence, this host has {}: POST \
                     /sequences/{{name}} with one of {names:?}",
                    names.len()
                ),
            )
        })?,
    };
    if headers.contains_key("stephost-step-tag") {
        check_tags(&registry, &Inbound::from_request(&headers))?;
    }
    Ok(run_sequence(state, &seq, headers, body).await)
}

async fn step_endpoint(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let registry = live(&state)?;
    let Some(step) = registry.steps.get(&name).cloned() else {
        return Err(api_error(
            StatusCode::NOT_FOUND,
            format!("no WasmStep named {name:?}"),
        ));
    };
    // An in-flight place first (the body may then be read); the running
    // place comes with `run`.
    let admitted = match state.admission.enter() {
        Ok(admitted) => admitted,
        Err(refusal) => return Ok(refused(refusal)),
    };
    let event = read_event(&state, &headers, body).await?;
    let inbound = Inbound::from_request(&headers);
    check_tags(&registry, &inbound)?;
    let ran = admitted
        .run(async {
            let version = inbound.choose(&step);
            let stamp = vec![(step.name.clone(), version.name.clone())];
            let target = StepTarget::Wasm(step.clone());
            let called = state
                .dispatcher
                .call_step(&target, Some(version), event, "", &inbound)
                .await;
            match called {
                Ok(Some(mut output)) => {
                    state.dispatcher.stamp_versions(&mut output, &stamp);
                    event_response(StatusCode::OK, output)
                }
                Ok(None) => StatusCode::ACCEPTED.into_response(),
                Err(hop) => hop_response(&hop, format!("step {name:?}: {}", hop.message)),
            }
        })
        .await;
    Ok(ran.unwrap_or_else(refused))
}

/// A `Stephost-Step-Tag` must name a step and one of its tags: a request for
/// a version that does not exist is refused, not silently split.
fn check_tags(registry: &Registry, inbound: &Inbound) -> Result<(), ApiError> {
    for (step, tag) in &inbound.tags {
        let Some(s) = registry.steps.get(step) else {
            return Err(api_error(
                StatusCode::BAD_REQUEST,
                format!("Stephost-Step-Tag: no WasmStep named {step:?}"),
            ));
        };
        if !s.has_tag(tag) {
            return Err(api_error(
                StatusCode::BAD_REQUEST,
                format!(
                    "Stephost-Step-Tag: step {step:?} has no version tagged {tag:?} (tags: {})",
                    s.tags().join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// A refusal by the admission door: 429 with `Retry-After`, so Knative's
/// dispatcher (which retries 429) backs off instead of the host queueing
/// without bound.
fn refused(refusal: Overloaded) -> Response {
    overloaded(format!("{refusal}; retry later"))
}

/// 429 with `Retry-After: 1`: Knative's dispatcher retries 429 with backoff.
fn overloaded(message: String) -> Response {
    let mut response = error(StatusCode::TOO_MANY_REQUESTS, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

async fn run_sequence(
    state: &AppState,
    seq: &Sequence,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let count = |outcome: &str| {
        state
            .metrics
            .events
            .get_or_create(&labels(&[("sequence", &seq.name), ("outcome", outcome)]))
            .inc();
    };
    let admitted = match state.admission.enter() {
        Ok(admitted) => admitted,
        Err(refusal) => {
            count("overloaded");
            return refused(refusal);
        }
    };
    let event = match read_event(state, &headers, body).await {
        Ok(event) => event,
        Err(e) => {
            count("rejected");
            return e.into_response();
        }
    };
    let ran = admitted
        .run(dispatch(state, seq, event, &headers, &count))
        .await;
    ran.unwrap_or_else(|refusal| {
        count("overloaded");
        refused(refusal)
    })
}

/// The running part of [`run_sequence`]: dispatch, answer.
async fn dispatch(
    state: &AppState,
    seq: &Sequence,
    event: Event,
    headers: &HeaderMap,
    count: impl Fn(&str),
) -> Response {
    state.metrics.in_flight.inc();
    let _in_flight = InFlight(&state.metrics);
    let id = event.id().to_string();
    let inbound = Inbound::from_request(headers);
    match state.dispatcher.run(seq, event, &inbound).await {
        Ok(Delivered::Replied(url)) => {
            count("replied");
            tracing::debug!(sequence = %seq.name, event_id = %id, reply = %url, "delivered");
            StatusCode::ACCEPTED.into_response()
        }
        Ok(Delivered::Dropped { step, label }) => {
            count("dropped");
            tracing::debug!(sequence = %seq.name, event_id = %id, step, %label, "dropped by step");
            StatusCode::ACCEPTED.into_response()
        }
        Ok(Delivered::Returned(output)) => {
            count("returned");
            event_response(StatusCode::OK, *output)
        }
        Ok(Delivered::DeadLettered { sink, cause }) => {
            count("dead_lettered");
            tracing::warn!(sequence = %seq.name, event_id = %id, sink = %sink, error = %cause, "event dead-lettered");
            StatusCode::ACCEPTED.into_response()
        }
        Err(chain) if chain.hop().is_shed() => {
            count("overloaded");
            tracing::debug!(sequence = %seq.name, event_id = %id, error = %chain, "shed");
            chain_response(seq, &chain)
        }
        Err(chain) => {
            count("failed");
            tracing::warn!(sequence = %seq.name, event_id = %id, error = %chain, "sequence failed");
            chain_response(seq, &chain)
        }
    }
}

/// Decrements the in-flight gauge when a run ends, however it ends.
struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// A failed chain that no dead-letter sink took: 500, so the sender retries
/// (Knative's channel ingress answers 500 to any dispatch failure). Nothing
/// was acknowledged, so nothing is lost.
fn chain_response(seq: &Sequence, chain: &ChainError) -> Response {
    if chain.hop().is_shed() {
        return overloaded(format!("sequence {:?}: {chain}", seq.name));
    }
    let hint = if chain.hop().is_retryable() {
        ""
    } else {
        " (retrying cannot help this event; configure a deadLetterSink to keep it)"
    };
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("sequence {:?}: {chain}{hint}", seq.name),
    )
}

fn hop_response(hop: &HopError, message: String) -> Response {
    if hop.is_shed() {
        return overloaded(message);
    }
    let status = if hop.is_retryable() {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    error(status, message)
}

/// Read the body (bounded) and parse one CloudEvent; 4xx on bad input.
async fn read_event(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Event, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > state.max_event_bytes) {
        return Err(too_large(state.max_event_bytes));
    }
    let bytes = read_body(state, body, state.max_event_bytes, "--max-event-bytes").await?;
    event::from_http(headers, bytes.to_vec())
        .map_err(|e| api_error(StatusCode::BAD_REQUEST, e.to_string()))
}

/// An event as a binary-mode HTTP response.
fn event_response(status: StatusCode, event: Event) -> Response {
    match event::to_http(event) {
        Ok((headers, body)) => {
            let mut response = (status, body).into_response();
            response.headers_mut().extend(headers);
            response
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// What one client connection may consume: how long it may take to send a
/// request, how big the request head may be, how many connections at once.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// A request's head must arrive within this (also how long an idle
    /// keep-alive connection stays open), and its body within this again.
    pub read_timeout: std::time::Duration,
    /// Largest request head (request line + headers), HTTP/1 and HTTP/2.
    pub max_header_bytes: usize,
    /// Open client connections at once; further ones wait in the kernel's
    /// accept backlog.
    pub max_connections: usize,
}

/// 64 KiB: CloudEvents binary mode puts attributes in headers, and brokers
/// add tracing and `knativeerror*` headers; 64 KiB is ample for that and an
/// eighth of what Go's net/http (the Knative data plane) allows.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 << 10;
/// 1024: far more than Knative's queue-proxy or dispatchers open to one pod,
/// while bounding the buffers idle connections hold (≈ 1024 × 64 KiB).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            read_timeout: DEFAULT_READ_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Serve until SIGTERM or SIGINT, then stop accepting and let in-flight
/// requests finish (Knative runtime contract: drain on SIGTERM), for at most
/// `drain_timeout`: events still running then are abandoned (their senders
/// see the connection close and, being Knative dispatchers, retry elsewhere)
/// so the process exits before the kubelet's SIGKILL.
///
/// Connections are served by hyper directly (not `axum::serve`) so that the
/// request head has a size limit and a read timeout, and connections a cap:
/// `axum::serve` sets neither, so a slowloris client could hold a
/// connection open forever.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    drain_timeout: std::time::Duration,
    limits: ConnectionLimits,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let app = router(state.clone());
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    // Not `pipeline_flush`: with it hyper 1.12 closes the connection without
    // writing its 431/400 answer to a malformed head (seen in
    // hostile::oversized_heads_and_too_many_headers_are_431).
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(limits.read_timeout))
        .keep_alive_timeout(limits.read_timeout);
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        let place = tokio::select! {
            place = connections.clone().acquire_owned() => match place {
                Ok(place) => place,
                Err(_) => break,
            },
            () = &mut signal => break,
        };
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause, go on.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut signal => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(place);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => Ok(()),
        () = tokio::time::sleep(drain_timeout) => {
            tracing::warn!(
                drain_timeout_ms = drain_timeout.as_millis() as u64,
                "drain timeout: exiting with events still in flight"
            );
            Ok(())
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received: draining in-flight requests");
}
