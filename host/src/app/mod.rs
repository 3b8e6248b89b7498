//! The application: what `stephost serve` runs once its flags are read.
//! It listens at once (`/healthz` answers while components compile), builds
//! the first configuration off the async threads, makes it live, then keeps
//! it current: the manifest reloader (`reload.rs`) and the automatic
//! rollback watchdog (`rollback.rs`). `builtin.rs` holds the guests and the
//! default Sequence compiled into the binary.
//!
//! Every change of the live configuration goes through
//! [`crate::registry::LiveConfig`]; nothing here stores it any other way.

pub mod builtin;
pub mod reload;
mod rollback;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::manifest::Manifest;
use crate::registry::{Registry, RegistryError, Resolver};
use crate::server::{self, AppState, ConnectionLimits};
use reload::Reloader;

/// Everything `serve` decided from its flags.
pub struct ServeConfig {
    /// The manifests as read at start (already validated).
    pub manifest: Manifest,
    /// The files to watch for reloads (none: the built-in default).
    pub watched: Vec<PathBuf>,
    /// How often they are read; zero turns reloading off.
    pub watch_interval: Duration,
    /// How Destinations become URLs.
    pub resolver: Resolver,
    /// Built-in guests and the registry client for `oci://` components.
    pub sources: builtin::Sources,
    /// The state every request handler shares (not ready yet).
    pub state: AppState,
    /// Where to listen.
    pub addr: SocketAddr,
    /// How long in-flight events may finish after SIGTERM.
    pub drain_timeout: Duration,
    /// What one connection may consume.
    pub connection_limits: ConnectionLimits,
}

/// Why `serve` stopped with an error.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The first configuration could not be built.
    #[error(transparent)]
    Build(#[from] RegistryError),
    /// A task of the host ended abnormally (a panic).
    #[error("{0} task failed: {1}")]
    Task(&'static str, String),
    /// The server stopped with an I/O error.
    #[error("server: {0}")]
    Serve(std::io::Error),
}

/// Listen, build and publish the first configuration, keep it current, and
/// serve until SIGTERM/SIGINT has drained the events in flight.
pub async fn serve(config: ServeConfig) -> Result<(), ServeError> {
    let ServeConfig {
        manifest,
        watched,
        watch_interval,
        resolver,
        sources,
        state,
        addr,
        drain_timeout,
        connection_limits,
    } = config;
    let state = Arc::new(state);
    let runtime = state.runtime.clone();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen { addr, source })?;
    let local = listener.local_addr().map_err(ServeError::Serve)?;
    tracing::info!(
        address = %local,
        k_service = std::env::var("K_SERVICE").unwrap_or_default(),
        k_configuration = std::env::var("K_CONFIGURATION").unwrap_or_default(),
        k_revision = std::env::var("K_REVISION").unwrap_or_default(),
        "stephost listening"
    );
    println!("stephost listening on http://{local}");

    // Compile off the reactor; the port answers /healthz meanwhile and
    // /readyz turns 200 once every component is compiled.
    let build_runtime = runtime.clone();
    let build_resolver = resolver.clone();
    let build_sources = sources.clone();
    let compiled = tokio::task::spawn_blocking(move || {
        Registry::build(&manifest, &build_runtime, &build_resolver, &build_sources)
    });
    let serving = tokio::spawn(server::serve(
        listener,
        state.clone(),
        drain_timeout,
        connection_limits,
    ));
    let registry = compiled
        .await
        .map_err(|e| ServeError::Task("compile", e.to_string()))??;
    log_sequences(&registry);
    state.live.change().await.install(registry);
    tokio::spawn(rollback::rollback_watchdog(state.clone()));
    tracing::info!("ready");
    if !watched.is_empty() && !watch_interval.is_zero() {
        let reloader = Reloader {
            files: watched,
            runtime: runtime.clone(),
            resolver,
            sources,
            interval: watch_interval,
        };
        tokio::spawn(reloader.run(state));
    }
    serving
        .await
        .map_err(|e| ServeError::Task("server", e.to_string()))?
        .map_err(ServeError::Serve)
}

/// One log line per Sequence: its steps and where its reply goes.
fn log_sequences(registry: &Registry) {
    for seq in registry.sequences.values() {
        let steps: Vec<String> = seq.steps.iter().map(|s| s.target.label()).collect();
        tracing::info!(
            sequence = %seq.name,
            steps = ?steps,
            reply = seq.reply.as_ref().map(|u| u.to_string()).unwrap_or_else(|| "(none: returned to sender)".into()),
            "sequence ready"
        );
    }
}
