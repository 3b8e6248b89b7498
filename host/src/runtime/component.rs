//! One compiled step version ([`StepComponent`]): runs an event in a fresh (or, for warm steps, a
//! reused) instance under the step's limits and checks what the guest returned.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{Store, Trap};

use super::bindings::{Step, StepPre, WitEvent, WitStepError};
use super::config::GUEST_LOG_CAPACITY;
use super::error::StepFailure;
use super::guest_log::GuestLog;
use super::nn::StepModels;
use super::store::{StepState, arm_deadline, limited_store};
use crate::event::MAX_EXTENSIONS;
use crate::metrics::instantiate_seconds;
use crate::step_limits::StepLimits;

/// A compiled step version, ready to instantiate; built once per version.
#[derive(Clone)]
pub struct StepComponent {
    /// Pre-linked instance: per event only the store and instance are new.
    pub(super) pre: StepPre<StepState>,
    /// Memory and time bounds applied to every event.
    pub(super) limits: StepLimits,
    /// The step's `spec.config`, shared read-only by every instance.
    pub(super) config: Arc<Vec<(String, String)>>,
    /// The runtime's instance slots (see [`Runtime`]).
    pub(super) slots: Arc<Semaphore>,
    /// Idle instances kept for reuse, when the step asked for warm state.
    pub(super) warm: Option<Arc<std::sync::Mutex<Vec<WarmInstance>>>>,
    /// The models this step may use through wasi:nn.
    pub(super) models: StepModels,
}

/// Idle warm instances kept per step. Each holds a pool slot and its memory;
/// 4 covers the events 2 cores run at once with room for a burst, and bounds
/// what an idle step holds.
pub const MAX_IDLE_WARM: usize = 4;

/// An instance kept between events for a step that declared warm state.
pub(super) struct WarmInstance {
    /// The instance's exports.
    instance: Step,
    /// Its store (memory, WASI context, limiter).
    store: Store<StepState>,
    /// Its captured stdout/stderr, cleared per event.
    log: GuestLog,
    /// The pool slot it occupies while alive.
    _slot: OwnedSemaphorePermit,
}

impl StepComponent {
    /// The settings it runs with (limits, config, instance reuse), as text
    /// that changes exactly when they do: part of the configuration digest.
    pub fn settings_text(&self) -> String {
        format!(
            "limits {:?} config {:?} warm {}",
            self.limits,
            self.config,
            self.warm.is_some()
        )
    }

    /// Reuse instances across events instead of a fresh one per event: the
    /// guest keeps its state (e.g. a loaded model) between events. A trapped
    /// instance is still never reused, and limits still apply per event.
    pub fn with_warm_instances(mut self) -> Self {
        self.warm = Some(Arc::default());
        self
    }

    /// Instantiate once without calling `handle`: what a new version must
    /// pass before it goes live (its memory fits the step's limit, its
    /// start-up does not trap).
    pub async fn check_instantiates(&self) -> Result<(), StepFailure> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| StepFailure::Trap("the runtime is shutting down".into()))?;
        let mut store = self.new_store(GuestLog::new(GUEST_LOG_CAPACITY));
        match self.pre.instantiate_async(&mut store).await {
            Ok(_) => Ok(()),
            Err(error) => Err(self.classify(&store, error)),
        }
    }

    /// Grant the step models through wasi:nn (`load-by-name`). Without a
    /// grant every wasi:nn load fails with a wasi-nn error.
    pub fn with_models(mut self, models: StepModels) -> Self {
        self.models = models;
        self
    }

    /// Run one event through a fresh instance, under the step's limits.
    ///
    /// Returns the guest's output (`None` = dropped by design) or why it
    /// failed. The instance is dropped afterwards either way, so a trapped
    /// instance is never reused.
    pub async fn handle(&self, event: WitEvent) -> Result<Option<WitEvent>, StepFailure> {
        // Counted from here (waiting for a slot included): an event on its
        // way through a step is using, or about to use, a core.
        let _running = self.models.instance_running();
        if let Some(pool) = &self.warm {
            return self.handle_warm(pool, event).await;
        }
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| StepFailure::Trap("the runtime is shutting down".into()))?;
        let log = GuestLog::new(GUEST_LOG_CAPACITY);
        let mut store = self.new_store(log.clone());
        // The epoch deadline stops guest code; this also stops a guest that
        // waits in a host call (a WASI sleep or poll) past its timeout.
        let outcome = tokio::time::timeout(
            self.limits.timeout,
            self.instantiate_and_call(&mut store, &event),
        )
        .await;
        let result = match outcome {
            Ok(Ok(returned)) => from_guest(returned).and_then(|out| self.check_output(out)),
            Ok(Err(error)) => Err(self.classify(&store, error)),
            Err(_) => Err(StepFailure::Timeout(self.limits.timeout)),
        };
        if let Err(failure) = &result {
            let stderr = log.contents_lossy();
            tracing::warn!(%failure, guest_stderr = %stderr, "wasm step failed");
        }
        result
    }

    /// A fresh store with the step's limits, an empty WASI context (nothing
    /// granted) and the epoch deadline armed.
    fn new_store(&self, log: GuestLog) -> Store<StepState> {
        limited_store(
            self.pre.engine(),
            self.limits,
            self.config.clone(),
            self.models.clone(),
            log,
        )
    }

    /// One event on a reused instance (taken from the idle list or new).
    async fn handle_warm(
        &self,
        pool: &std::sync::Mutex<Vec<WarmInstance>>,
        event: WitEvent,
    ) -> Result<Option<WitEvent>, StepFailure> {
        let idle = match pool.lock() {
            Ok(mut list) => list.pop(),
            Err(poisoned) => poisoned.into_inner().pop(),
        };
        let mut warm = match idle {
            Some(warm) => warm,
            None => self.new_warm().await?,
        };
        warm.log.clear();
        arm_deadline(&mut warm.store, self.limits.timeout);
        let outcome = tokio::time::timeout(
            self.limits.timeout,
            warm.instance
                .stephost_step_handler()
                .call_handle(&mut warm.store, &event),
        )
        .await;
        let result = match outcome {
            Ok(Ok(returned)) => from_guest(returned).and_then(|out| self.check_output(out)),
            // Cut off inside a host call: the instance is mid-call, drop it.
            Err(_) => {
                let failure = StepFailure::Timeout(self.limits.timeout);
                tracing::warn!(%failure, guest_stderr = %warm.log.contents_lossy(), "wasm step failed");
                return Err(failure);
            }
            Ok(Err(error)) => {
                // A trap poisons the instance: log and drop it.
                let failure = self.classify(&warm.store, error);
                tracing::warn!(%failure, guest_stderr = %warm.log.contents_lossy(), "wasm step failed");
                return Err(failure);
            }
        };
        if let Err(failure) = &result {
            tracing::warn!(%failure, guest_stderr = %warm.log.contents_lossy(), "wasm step failed");
        }
        if let Ok(mut list) = pool.lock()
            && list.len() < MAX_IDLE_WARM
        {
            list.push(warm);
        }
        result
    }

    async fn new_warm(&self) -> Result<WarmInstance, StepFailure> {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StepFailure::Trap("the runtime is shutting down".into()))?;
        let log = GuestLog::new(GUEST_LOG_CAPACITY);
        let mut store = self.new_store(log.clone());
        let started = Instant::now();
        match self.pre.instantiate_async(&mut store).await {
            Ok(instance) => {
                instantiate_seconds().observe(started.elapsed().as_secs_f64());
                Ok(WarmInstance {
                    instance,
                    store,
                    log,
                    _slot: slot,
                })
            }
            Err(error) => Err(self.classify(&store, error)),
        }
    }

    async fn instantiate_and_call(
        &self,
        store: &mut Store<StepState>,
        event: &WitEvent,
    ) -> wasmtime::Result<Result<Option<WitEvent>, WitStepError>> {
        let started = Instant::now();
        let instance: Step = self.pre.instantiate_async(&mut *store).await?;
        instantiate_seconds().observe(started.elapsed().as_secs_f64());
        instance
            .stephost_step_handler()
            .call_handle(&mut *store, event)
            .await
    }

    /// Refuse an output over `limits.maxOutput` or with more than
    /// [`MAX_EXTENSIONS`] extensions, before it is converted or sent.
    fn check_output(&self, output: Option<WitEvent>) -> Result<Option<WitEvent>, StepFailure> {
        let Some(event) = output else {
            return Ok(None);
        };
        if event.extensions.len() > MAX_EXTENSIONS {
            return Err(StepFailure::OutputTooLarge(format!(
                "{} extensions, at most {MAX_EXTENSIONS} are allowed",
                event.extensions.len()
            )));
        }
        let size = output_size(&event);
        if size > self.limits.max_output {
            return Err(StepFailure::OutputTooLarge(format!(
                "{size} bytes, over the step's limits.maxOutput of {} bytes",
                self.limits.max_output
            )));
        }
        Ok(Some(event))
    }

    /// Turn a wasmtime error into the failure it means for delivery.
    fn classify(&self, store: &Store<StepState>, error: wasmtime::Error) -> StepFailure {
        if store.data().limiter.exceeded {
            return StepFailure::MemoryExhausted(self.limits.memory);
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => StepFailure::Timeout(self.limits.timeout),
            Some(trap) => StepFailure::Trap(trap.to_string()),
            // Not a trap: an instantiation or host error. The full chain can
            // hold a wasm backtrace; callers get the first line, logs the rest.
            None => {
                tracing::debug!(error = ?error, "wasm step error detail");
                // The outer layers are wasmtime's backtrace context; the
                // root is what the host function said.
                StepFailure::Trap(error.root_cause().to_string())
            }
        }
    }
}

/// Bytes an event takes: its data and the text of every attribute.
fn output_size(event: &WitEvent) -> usize {
    let optional = [
        &event.subject,
        &event.time,
        &event.datacontenttype,
        &event.dataschema,
    ]
    .iter()
    .map(|v| v.as_ref().map_or(0, String::len))
    .sum::<usize>();
    event.id.len()
        + event.source.len()
        + event.specversion.len()
        + event.type_.len()
        + optional
        + event
            .extensions
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
        + event.data.as_ref().map_or(0, Vec::len)
}

/// What the guest's `handle` returned, as the host sees it.
fn from_guest(
    returned: Result<Option<WitEvent>, WitStepError>,
) -> Result<Option<WitEvent>, StepFailure> {
    match returned {
        Ok(output) => Ok(output),
        Err(WitStepError::Retryable(msg)) => Err(StepFailure::Retryable(msg)),
        Err(WitStepError::Fatal(msg)) => Err(StepFailure::Fatal(msg)),
    }
}
