//! Hot reload: the manifest files `serve` was given are watched, and a
//! changed configuration is compiled off the async threads and swapped in
//! atomically, or refused while the old one keeps serving.
//!
//! Watching is by polling each file's *contents* (following symlinks) every
//! interval. A Kubernetes ConfigMap volume updates by atomically re-pointing a
//! `..data` symlink: inotify watches on the file see nothing of that, while
//! re-reading the path always sees the current contents. Polling a few small
//! files once a second costs nothing measurable, needs no platform-specific
//! code, and so no dependency (the `notify` crate) was taken for it.
//!
//! The live configuration is an immutable [`Registry`] owned by
//! [`crate::registry::LiveConfig`]. An event takes the snapshot once, when
//! it enters, and keeps it to the end: every step it runs comes from one
//! configuration, never a half-applied change. A replaced snapshot (its
//! compiled components and models) is freed when the last event holding it
//! finishes.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::builtin::Sources;
use crate::manifest::Manifest;
use crate::metrics::labels;
use crate::registry::{Registry, Resolver};
use crate::runtime::Runtime;
use crate::server::AppState;

/// What a reload needs: the files, how to resolve and compile them.
pub struct Reloader {
    /// The manifest files, as given to `serve`.
    pub files: Vec<PathBuf>,
    /// Compiles components (shared with the live configuration).
    pub runtime: Arc<Runtime>,
    /// Resolves Destinations as at start.
    pub resolver: Resolver,
    /// Built-in guests and the registry client, as at start.
    pub sources: Sources,
    /// How often the files are read.
    pub interval: Duration,
}

/// Longest wait between two tries of a failed pull.
const MAX_PULL_BACKOFF: Duration = Duration::from_secs(60);

/// A fingerprint of the files' current contents (missing files included as
/// such): a change of it is what triggers a reload.
fn contents_fingerprint(files: &[PathBuf]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for file in files {
        match std::fs::read(file) {
            Ok(bytes) => bytes.hash(&mut hasher),
            Err(e) => e.kind().hash(&mut hasher),
        }
    }
    hasher.finish()
}

impl Reloader {
    /// Watch until the process ends: on every change of the files' contents,
    /// build the new configuration and swap it in, or keep the old one and
    /// report why (log, `/readyz` `lastReloadError`, metric).
    pub async fn run(self, state: Arc<AppState>) {
        let this = Arc::new(self);
        let mut seen = contents_fingerprint(&this.files);
        // A failed pull (registry down, network) is tried again, first after
        // a second, then less often, up to a minute apart; any other failure
        // waits for the files to change.
        let mut pull_backoff = Duration::ZERO;
        loop {
            tokio::time::sleep(this.interval).await;
            let files = this.files.clone();
            let now = match tokio::task::spawn_blocking(move || contents_fingerprint(&files)).await
            {
                Ok(d) => d,
                Err(_) => continue,
            };
            if now == seen {
                continue;
            }
            let before = seen;
            seen = now;
            let started = Instant::now();
            let build = this.clone();
            let outcome = tokio::task::spawn_blocking(move || build.build()).await;
            let outcome = match outcome {
                Ok(result) => result,
                Err(e) => Err((format!("reload task failed: {e}"), false)),
            };
            match outcome {
                Ok(registry) => {
                    let steps: Vec<&String> = registry.steps.keys().collect();
                    tracing::info!(
                        ?steps,
                        took_ms = started.elapsed().as_millis() as u64,
                        "manifest changed: new configuration live"
                    );
                    // Waits for an admin change in progress: the manifest
                    // (the source of truth) lands last.
                    state.live.change().await.install(registry);
                    count(&state, "applied");
                    pull_backoff = Duration::ZERO;
                }
                Err((message, pull_failed)) => {
                    tracing::error!(
                        error = %message,
                        "manifest changed but cannot be used: the previous configuration keeps serving"
                    );
                    state.live.change().await.set_reload_error(Some(message));
                    count(&state, "failed");
                    if pull_failed {
                        pull_backoff =
                            (pull_backoff * 2).clamp(Duration::from_secs(1), MAX_PULL_BACKOFF);
                        seen = before;
                        tokio::time::sleep(pull_backoff).await;
                    }
                }
            }
        }
    }

    /// Parse, validate and compile the files (CPU-heavy: a blocking thread).
    /// An error says whether it was a failed pull (worth trying again).
    fn build(&self) -> Result<Registry, (String, bool)> {
        let manifest = Manifest::load(&self.files).map_err(|e| (e.to_string(), false))?;
        Registry::build(&manifest, &self.runtime, &self.resolver, &self.sources).map_err(|e| {
            let pull = matches!(e, crate::registry::RegistryError::Pull { .. });
            (e.to_string(), pull)
        })
    }
}

fn count(state: &AppState, outcome: &str) {
    state
        .metrics
        .reloads
        .get_or_create(&labels(&[("outcome", outcome)]))
        .inc();
}
