//! The one owner of the live configuration. Every event reads the current
//! [`Registry`] snapshot here (lock-free); every change — the first build,
//! a manifest reload, an admin upload, traffic change or rollback, an
//! automatic rollback — goes through [`LiveConfig::change`], one at a time.
//!
//! A change reads the snapshot, may work for seconds (an admin upload
//! compiles), and then stores what it derived: without one lock around the
//! whole change, a reload stored meanwhile would be undone (test
//! `reload::a_reload_during_an_admin_upload_is_kept`).

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use tokio::sync::MutexGuard;

use super::build::Registry;
use super::step::WasmStep;

/// The live configuration, the lock that serialises its changes, and why
/// the last manifest reload failed.
#[derive(Default)]
pub struct LiveConfig {
    /// The snapshot events take; `None` until every component is compiled.
    current: ArcSwapOption<Registry>,
    /// Held for the whole of a change (read, work, store).
    changes: tokio::sync::Mutex<()>,
    /// Why the last manifest reload failed (the old configuration keeps
    /// serving); cleared by the next successful one. Shown by `/readyz`.
    reload_error: Mutex<Option<String>>,
}

impl LiveConfig {
    /// The snapshot an event runs on from start to end; `None` while the
    /// first configuration is still compiling.
    pub fn current(&self) -> Option<Arc<Registry>> {
        self.current.load_full()
    }

    /// Begin a change: waits for the one in progress to finish.
    pub async fn change(&self) -> Change<'_> {
        Change {
            live: self,
            _held: self.changes.lock().await,
        }
    }

    /// Why the last manifest reload failed, if it did.
    pub fn reload_error(&self) -> Option<String> {
        self.reload_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }
}

/// A change of the live configuration in progress (the lock is held until
/// it is dropped).
pub struct Change<'a> {
    /// The configuration being changed.
    live: &'a LiveConfig,
    /// The changes lock.
    _held: MutexGuard<'a, ()>,
}

impl Change<'_> {
    /// The snapshot as it is now, under the lock.
    pub fn current(&self) -> Option<Arc<Registry>> {
        self.live.current()
    }

    /// Make `registry` live (a start or a manifest reload) and clear a past
    /// reload error.
    pub fn install(&self, registry: Registry) {
        self.live.current.store(Some(Arc::new(registry)));
        self.set_reload_error(None);
    }

    /// Make `registry` with `step` replaced live (admin changes, rollbacks).
    pub fn replace_step(&self, registry: &Registry, step: WasmStep) {
        self.live
            .current
            .store(Some(Arc::new(registry.with_step(step))));
    }

    /// Record why a manifest reload failed (the old configuration stays).
    pub fn set_reload_error(&self, error: Option<String>) {
        if let Ok(mut e) = self.live.reload_error.lock() {
            *e = error;
        }
    }
}
