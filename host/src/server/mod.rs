//! HTTP surface on one port: Sequence ingress, per-step endpoints, health.
//!
//! - `POST /`, `POST /sequences/{name}`: run a Sequence (the fused mode).
//! - `POST /steps/{name}`: run one Wasm step and answer as a Knative
//!   subscriber does (200 + event, or 202 with no body when it drops).
//! - `GET /healthz` (alive), `GET /readyz` (every component compiled).
//! - `/admin/...` when `STEPHOST_ADMIN_TOKEN` is set (`admin.rs`).
//!
//! `ingress.rs` holds the event handlers, `admin.rs` the admin API,
//! `state.rs` what they share, `error.rs` JSON errors and body limits.
//!
//! Errors are JSON `{"error": "...", "status": N}`; nothing is acknowledged
//! (2xx) before the event reached the reply, was returned, or was dropped by a
//! step on purpose.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

mod admin;
mod error;
mod ingress;
mod state;

pub use error::ApiError;
pub use state::{
    AppState, DEFAULT_MAX_COMPONENT_BYTES, DEFAULT_MAX_EVENT_BYTES, DEFAULT_READ_TIMEOUT,
};

use error::error;
use ingress::{ingress_default, ingress_named, step_endpoint};

/// The router for all endpoints.
pub fn router(state: Arc<AppState>) -> Router {
    let admin = if state.admin_token.is_some() {
        admin::router()
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
    if let Some((hits, misses)) = state.runtime.cache_stats() {
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
    state.metrics.config_info.clear();
    if let Some(registry) = state.live.current() {
        let digest = registry.config_digest();
        state
            .metrics
            .config_info
            .get_or_create(&crate::metrics::labels(&[("digest", &digest)]))
            .set(1);
    }
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
    match state.live.current() {
        Some(registry) => {
            let reload_error = state.live.reload_error();
            let body = serde_json::json!({
                "ready": true,
                "configDigest": registry.config_digest(),
                "sequences": registry.sequences.keys().collect::<Vec<_>>(),
                "steps": registry.steps.keys().collect::<Vec<_>>(),
                // What runs, per step and version: the digest an `oci://` tag
                // resolved to, the file, or the built-in.
                "components": registry.steps.iter().map(|(name, step)| {
                    let versions: serde_json::Map<String, serde_json::Value> = step
                        .versions
                        .iter()
                        .map(|v| (v.name.clone(), serde_json::Value::String(v.source.clone())))
                        .collect();
                    (name.clone(), serde_json::Value::Object(versions))
                }).collect::<serde_json::Map<String, serde_json::Value>>(),
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
