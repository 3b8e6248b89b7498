//! The per-event store: a sandboxed WASI context (nothing granted), the
//! memory limiter, the step's config and wasi:nn state, and the armed epoch
//! deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings;
use super::guest_log::GuestLog;
use super::nn::{NnState, StepModels};
use crate::step_limits::StepLimits;

/// A store with the step's limits, an empty WASI context (nothing granted)
/// and the epoch deadline armed.
pub(super) fn limited_store(
    engine: &Engine,
    limits: StepLimits,
    config: Arc<Vec<(String, String)>>,
    models: StepModels,
    log: GuestLog,
) -> Store<StepState> {
    let state = StepState {
        wasi: sandbox_wasi(&log).build(),
        table: ResourceTable::new(),
        limiter: StepLimiter::new(limits.memory),
        config,
        nn: NnState::new(models, usize::try_from(limits.memory).unwrap_or(usize::MAX)),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    arm_deadline(&mut store, limits.timeout);
    store
}

/// The sandbox every step runs in: no preopens, env, args or network, and
/// output captured in `log`. WasiCtxBuilder's defaults allow socket creation
/// (with every address denied): that is switched off too.
fn sandbox_wasi(log: &GuestLog) -> WasiCtxBuilder {
    let mut wasi = WasiCtx::builder();
    wasi.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .stderr(log.clone())
        .stdout(log.clone());
    wasi
}

/// A WASI context like [`limited_store`]'s whose random sources are seeded
/// with `seed`, for pre-initialisation.
pub(super) fn deterministic_wasi(seed: u64, log: &GuestLog) -> WasiCtx {
    use rand::SeedableRng as _;
    let mut wasi = sandbox_wasi(log);
    wasi.secure_random(rand::rngs::StdRng::seed_from_u64(seed))
        .insecure_random(rand::rngs::StdRng::seed_from_u64(!seed))
        .insecure_random_seed(u128::from(seed));
    wasi.build()
}

/// Interrupt the store's guest `timeout` from now; until then yield to the
/// executor every epoch tick, so other events keep flowing while a CPU-heavy
/// guest runs.
pub(super) fn arm_deadline(store: &mut Store<StepState>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    store.data_mut().nn.set_deadline(deadline);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
}

/// Store data for one event (or, for a warm step, one instance's lifetime).
pub struct StepState {
    /// The (empty) WASI context: std's runtime needs WASI to start at all.
    pub(super) wasi: WasiCtx,
    /// WASI (and wasi:nn) resource handles of this instance.
    pub(super) table: ResourceTable,
    /// Enforces the step's memory cap and remembers that it was hit.
    pub(super) limiter: StepLimiter,
    /// The step's settings, answered by the `config` import.
    config: Arc<Vec<(String, String)>>,
    /// wasi:nn state: the step's model grant, tensor bytes, deadline.
    pub(super) nn: NnState,
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::stephost::step::types::Host for StepState {}

impl bindings::stephost::step::config::Host for StepState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }

    fn get_all(&mut self) -> Vec<(String, String)> {
        self.config.as_ref().clone()
    }
}

/// A memory limiter that traps on the first grow past the cap and remembers
/// it, so the failure is reported as memory exhaustion, not a generic trap.
pub(super) struct StepLimiter {
    /// The cap in bytes for all memories of the instance together.
    max: u64,
    /// Bytes currently committed by the instance's memories.
    used: u64,
    /// Set when a grow was refused.
    pub(super) exceeded: bool,
}

impl StepLimiter {
    fn new(max: u64) -> Self {
        Self {
            max,
            used: 0,
            exceeded: false,
        }
    }
}

/// Tables hold function references: 100k entries is far beyond any real guest
/// (a Rust guest has a few hundred) and bounds a hostile one to ~1.6 MB.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for StepLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grow = (desired - current) as u64;
        if self.used + grow > self.max {
            self.exceeded = true;
            return Err(wasmtime::Error::msg(format!(
                "memory limit of {} bytes exceeded",
                self.max
            )));
        }
        self.used += grow;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
