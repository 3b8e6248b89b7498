//! The wasmtime side of stephost: one engine, one compiled component per step
//! version, and a fresh, limited store + instance for every event. Nothing
//! here reads YAML or knows the manifest: what a step may do arrives as
//! [`StepLimits`], its config pairs and its model grant.
//!
//! The three lifetimes are visible in the types (as in Spin's runtime):
//! - once per host: [`Runtime`] (engine, linker, epoch ticker; `config.rs`);
//! - once per step version: [`StepComponent`] (compiled component,
//!   `InstancePre`; `component.rs`, pre-initialised by `preinit.rs`);
//! - once per event: the store and its [`StepState`] (WASI context, limiter,
//!   captured output; `store.rs`, `guest_log.rs`).
//!
//! `guest_event.rs` converts between the WIT record and the SDK's event;
//! `nn/` implements wasi:nn on a view type the store hands out.

mod bindings;
mod component;
mod config;
mod error;
pub mod guest_event;
mod guest_log;
pub mod nn;
mod preinit;
mod snapshots;
mod store;

pub use bindings::{WitEvent, WitStepError};
pub use component::{MAX_IDLE_WARM, StepComponent};
pub use config::{
    DEFAULT_KEEP_RESIDENT, DEFAULT_KEEP_RESIDENT_PAGEMAP, EPOCH_TICK, GUEST_LOG_CAPACITY,
    RuntimeConfig, default_keep_resident, pagemap_scan_supported,
};
pub use error::{RuntimeError, StepFailure};
pub use preinit::wants_preinit;
pub use snapshots::MAX_SNAPSHOTS;
pub use store::StepState;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use wasmtime::Engine;
use wasmtime::component::{Component, HasSelf, Linker};

use crate::step_limits::StepLimits;
use bindings::{Step, StepPre};
use config::{EpochTicker, cache_config, engine_config};
use guest_log::GuestLog;
use nn::{InferencePool, NnView, StepModels};
use snapshots::SnapshotCache;
use store::{deterministic_wasi, limited_store};

/// The version of the `stephost:step` WIT package (`guests/sdk/wit/step.wit`)
/// this host implements.
pub const STEP_WIT_VERSION: &str = "0.1.0";

/// Whether a component built against `built` runs on a host of `host`
/// (semver: same major; while the major is 0, same minor).
fn wit_compatible(built: &str, host: &str) -> bool {
    let parts = |v: &str| -> Vec<u64> {
        v.split(['.', '-', '+'])
            .take(3)
            .map(|p| p.parse().unwrap_or(u64::MAX))
            .collect()
    };
    let (b, h) = (parts(built), parts(host));
    match (b.first(), h.first()) {
        (Some(0), Some(0)) => b.get(1) == h.get(1),
        (Some(bm), Some(hm)) => bm == hm,
        _ => false,
    }
}

/// The engine and linker shared by every step; built once at start.
pub struct Runtime {
    /// The one engine: compiled code is only valid with the engine that made it.
    engine: Engine,
    /// WASI p2 + the stephost host interfaces, shared by every instantiation.
    linker: Linker<StepState>,
    /// Bounds simultaneous instances to the pool size, so a burst waits for a
    /// slot instead of failing with "pool exhausted".
    slots: Arc<Semaphore>,
    /// The engine configuration, kept to validate step limits against it.
    config: RuntimeConfig,
    /// Bounds host-side inference (wasi:nn) across all steps.
    inference: Arc<InferencePool>,
    /// The compile cache, for its hit/miss counts.
    cache: Option<wasmtime::Cache>,
    /// Pre-initialisation snapshots kept on disk beside the compile cache.
    snapshots: Option<SnapshotCache>,
    /// Dropped with the runtime to stop the epoch ticker thread.
    _ticker: EpochTicker,
}

impl Runtime {
    /// Build the engine (pooling allocator if asked and possible) and linker.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let cache = config.cache_dir.as_ref().and_then(|dir| {
            wasmtime::Cache::new(cache_config(dir))
                .inspect_err(|e| {
                    tracing::warn!(error = %e, dir = %dir.display(), "compile cache disabled");
                })
                .ok()
        });
        let engine = match config.pooling {
            true => Engine::new(&engine_config(&config, true, cache.as_ref())).or_else(|e| {
                tracing::warn!(error = %e, "pooling allocator unavailable, using on-demand allocation");
                Engine::new(&engine_config(&config, false, cache.as_ref()))
            }),
            false => Engine::new(&engine_config(&config, false, cache.as_ref())),
        }
        .map_err(RuntimeError::Engine)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(RuntimeError::Engine)?;
        Step::add_to_linker::<_, HasSelf<StepState>>(&mut linker, |state| state)
            .map_err(RuntimeError::Engine)?;
        // wasi:nn for every step; what a step can load is its own grant.
        nn::add_to_linker(&mut linker, |state: &mut StepState| NnView {
            table: &mut state.table,
            nn: &mut state.nn,
        })
        .map_err(RuntimeError::Engine)?;
        let ticker = EpochTicker::start(engine.clone());
        Ok(Self {
            engine,
            linker,
            slots: Arc::new(Semaphore::new(config.max_instances as usize)),
            inference: InferencePool::new(config.inference_threads, config.spread_inference)?,
            snapshots: cache
                .as_ref()
                .and(config.cache_dir.as_deref())
                .map(SnapshotCache::beside),
            config,
            cache,
            _ticker: ticker,
        })
    }

    /// Compile-cache (hits, misses) since start; `None` without a cache.
    pub fn cache_stats(&self) -> Option<(u64, u64)> {
        self.cache
            .as_ref()
            .map(|c| (c.cache_hits() as u64, c.cache_misses() as u64))
    }

    /// The pool every wasi:nn inference of this runtime runs on.
    pub fn inference_pool(&self) -> Arc<InferencePool> {
        self.inference.clone()
    }

    /// The engine configuration this runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Compile other bytes with `template`'s settings (limits, config, model
    /// grant, instance reuse): a new version of the same step.
    /// CPU-heavy: call it off the async reactor.
    pub fn compile_new_version(
        &self,
        template: &StepComponent,
        origin: &str,
        bytes: &[u8],
    ) -> Result<StepComponent, RuntimeError> {
        let mut compiled =
            self.compile(origin, bytes, template.limits, (*template.config).clone())?;
        compiled.models = template.models.clone();
        if template.warm.is_some() {
            compiled = compiled.with_warm_instances();
        }
        Ok(compiled)
    }

    /// Refuse a component that names another `stephost:step` version than
    /// [`STEP_WIT_VERSION`] (semver-compatible ones pass: same major, or same
    /// minor while the major is 0) with both versions in the message, not as
    /// a missing export.
    fn check_wit_version(&self, origin: &str, component: &Component) -> Result<(), RuntimeError> {
        let ty = component.component_type();
        let names: Vec<String> = ty
            .imports(&self.engine)
            .map(|(n, _)| n.to_string())
            .chain(ty.exports(&self.engine).map(|(n, _)| n.to_string()))
            .collect();
        for name in names {
            let Some(version) = name
                .strip_prefix("stephost:step/")
                .and_then(|rest| rest.split_once('@'))
                .map(|(_, v)| v)
            else {
                continue;
            };
            if !wit_compatible(version, STEP_WIT_VERSION) {
                return Err(RuntimeError::WitVersion {
                    origin: origin.to_string(),
                    built: version.to_string(),
                    host: STEP_WIT_VERSION,
                });
            }
        }
        Ok(())
    }

    /// The names of a component's imports and exports (`wasi:cli/environment@0.2.0`,
    /// `stephost:step/handler@…`), for the config of an OCI artifact.
    pub fn interface_names(
        &self,
        origin: &str,
        bytes: &[u8],
    ) -> Result<(Vec<String>, Vec<String>), RuntimeError> {
        let component = Component::new(&self.engine, bytes).map_err(|e| RuntimeError::Compile {
            origin: origin.to_string(),
            message: format!("{e:#}"),
        })?;
        let ty = component.component_type();
        let imports = ty
            .imports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let exports = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        Ok((imports, exports))
    }

    /// Compile a component and check it implements the step world.
    /// CPU-heavy: call it off the async reactor.
    pub fn compile(
        &self,
        origin: &str,
        bytes: &[u8],
        limits: StepLimits,
        config: Vec<(String, String)>,
    ) -> Result<StepComponent, RuntimeError> {
        let compile = |bytes: &[u8]| {
            Component::new(&self.engine, bytes).map_err(|e| RuntimeError::Compile {
                origin: origin.to_string(),
                message: format!("{e:#}"),
            })
        };
        let mut config = config;
        config.sort();
        let config = Arc::new(config);
        // A snapshot a previous start made stands for the original: same
        // imports and exports (the init export is kept), so it is checked
        // the same way, and the original need not be loaded at all.
        // The snapshot's key, hashed once for the lookup and the store.
        let key = (self.snapshots.is_some() && self.config.preinit)
            .then(|| SnapshotCache::key(&self.engine, bytes, &config, limits.memory));
        if let Some(component) = key
            .as_deref()
            .and_then(|key| self.cached_snapshot(origin, key, &compile))
        {
            return self.finish(origin, component, limits, config);
        }
        let mut component = compile(bytes)?;
        self.check_wit_version(origin, &component)?;
        let wrong_world = |e: wasmtime::Error| RuntimeError::WrongWorld {
            origin: origin.to_string(),
            message: format!("{e:#}"),
        };
        // Checked on the original first: a component of the wrong world is
        // reported as such, not as a failed pre-initialisation.
        self.linker
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        if self.config.preinit && preinit::wants_preinit(&component) {
            component =
                self.preinitialized(origin, bytes, limits, &config, key.as_deref(), &compile)?;
        }
        self.finish(origin, component, limits, config)
    }

    /// The step around a checked (and possibly pre-initialised) component.
    fn finish(
        &self,
        origin: &str,
        component: Component,
        limits: StepLimits,
        config: Arc<Vec<(String, String)>>,
    ) -> Result<StepComponent, RuntimeError> {
        let wrong_world = |e: wasmtime::Error| RuntimeError::WrongWorld {
            origin: origin.to_string(),
            message: format!("{e:#}"),
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        let pre = StepPre::new(pre).map_err(wrong_world)?;
        Ok(StepComponent {
            pre,
            limits,
            config,
            slots: self.slots.clone(),
            warm: None,
            models: StepModels::none(self.inference.clone()),
        })
    }

    /// The snapshot a previous start stored under `key`, compiled and
    /// checked (WIT version, world), if there is one.
    /// A snapshot that fails to compile or check is deleted; the caller then
    /// starts from the original.
    fn cached_snapshot(
        &self,
        origin: &str,
        key: &str,
        compile: &dyn Fn(&[u8]) -> Result<Component, RuntimeError>,
    ) -> Option<Component> {
        let cache = self.snapshots.as_ref()?;
        let started = Instant::now();
        let snapshot = cache.get(key)?;
        let checked = compile(&snapshot).and_then(|component| {
            self.check_wit_version(origin, &component)?;
            self.linker
                .instantiate_pre(&component)
                .map_err(|e| RuntimeError::WrongWorld {
                    origin: origin.to_string(),
                    message: format!("{e:#}"),
                })?;
            Ok(component)
        });
        match checked {
            Ok(component) => {
                tracing::info!(
                    origin,
                    snapshot_bytes = snapshot.len(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "pre-initialised: snapshot read from the cache (wizer-initialize ran at an earlier start)"
                );
                Some(component)
            }
            Err(e) => {
                tracing::warn!(origin, error = %e, "cached pre-initialisation snapshot unusable: made afresh");
                cache.remove(key);
                None
            }
        }
    }

    /// The pre-initialised snapshot of `bytes`, compiled, by running
    /// `wizer-initialize` once; stored under `key` (when caching) for the
    /// next start.
    fn preinitialized(
        &self,
        origin: &str,
        bytes: &[u8],
        limits: StepLimits,
        config: &Arc<Vec<(String, String)>>,
        key: Option<&str>,
        compile: &dyn Fn(&[u8]) -> Result<Component, RuntimeError>,
    ) -> Result<Component, RuntimeError> {
        let started = Instant::now();
        let log = GuestLog::new(GUEST_LOG_CAPACITY);
        // WASI randomness seeded from the component's bytes: the snapshot
        // (e.g. HashMap keys drawn during init) is then a function of the
        // inputs, so the caches recognise it on the next start.
        let seed = {
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(bytes);
            u64::from_le_bytes(digest[..8].try_into().unwrap_or([0; 8]))
        };
        let new_store = || {
            let mut store = limited_store(
                &self.engine,
                limits,
                config.clone(),
                StepModels::none(self.inference.clone()),
                log.clone(),
            );
            store.data_mut().wasi = deterministic_wasi(seed, &log);
            store
        };
        let snapshot = preinit::preinitialize(&self.linker, bytes, new_store).map_err(|e| {
            RuntimeError::Preinit {
                origin: origin.to_string(),
                message: format!("{:#}", e.root_cause()),
                stderr: log.contents_lossy(),
            }
        })?;
        let component = compile(&snapshot)?;
        if let (Some(cache), Some(key)) = (&self.snapshots, key) {
            cache.put(key, &snapshot);
        }
        tracing::info!(
            origin,
            snapshot_bytes = snapshot.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "pre-initialised (wizer-initialize ran once; instances start from the snapshot)"
        );
        Ok(component)
    }
}
