//! Why a step could not be compiled ([`RuntimeError`], at load) or why one event failed in it
//! ([`StepFailure`], mapped to a delivery outcome by the dispatcher).

use std::time::Duration;

use thiserror::Error;

/// Errors from building the engine or compiling a step.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// The engine could not be created with the requested configuration.
    #[error("cannot create the wasmtime engine: {0:#}")]
    Engine(wasmtime::Error),
    /// The bytes are not a valid WebAssembly component.
    #[error("{origin}: not a valid WebAssembly component: {message}")]
    Compile {
        /// Where the component came from (path or builtin name).
        origin: String,
        /// wasmtime's reason.
        message: String,
    },
    /// The component is valid but does not fit the step world.
    #[error(
        "{origin}: does not implement the stephost step world (stephost:step/handler@0.1.0 \
         with only WASI and stephost:step/config imports): {message}"
    )]
    WrongWorld {
        /// Where the component came from.
        origin: String,
        /// wasmtime's reason (a missing export or an unsatisfied import).
        message: String,
    },
    /// The component was built against a `stephost:step` WIT version this
    /// host does not implement.
    #[error(
        "{origin}: built against stephost:step@{built}, but this host implements \
         stephost:step@{host}: rebuild it with a stephost-guest SDK for @{host} (or run a \
         stephost that implements @{built})"
    )]
    WitVersion {
        /// Where the component came from.
        origin: String,
        /// The version the component names.
        built: String,
        /// The version the host implements.
        host: &'static str,
    },
    /// The component's `wizer-initialize` failed (trapped, hit a limit).
    #[error("{origin}: pre-initialisation (wizer-initialize) failed: {message}{}",
        if stderr.is_empty() { String::new() } else { format!("; guest stderr: {stderr}") })]
    Preinit {
        /// Where the component came from.
        origin: String,
        /// Why it failed.
        message: String,
        /// What the guest wrote to stderr meanwhile.
        stderr: String,
    },
    /// The host could not start its inference threads.
    #[error("cannot start the inference threads: {0}")]
    Threads(#[from] std::io::Error),
    /// The component file could not be read.
    #[error("cannot read component {path}: {source}")]
    Read {
        /// The path that failed.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Why one event failed inside a Wasm step.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum StepFailure {
    /// The step returned `err(retryable(...))`: retrying may help.
    #[error("step failed (retryable): {0}")]
    Retryable(String),
    /// The step returned `err(fatal(...))`: the input cannot be processed.
    #[error("step rejected the event: {0}")]
    Fatal(String),
    /// The step's output is not a valid CloudEvent.
    #[error("step returned an invalid event: {0}")]
    InvalidOutput(String),
    /// The guest trapped (a panic, an unreachable, a bad memory access).
    #[error("step trapped: {0}")]
    Trap(String),
    /// The guest ran past its timeout and was interrupted.
    #[error("step timed out after {0:?}")]
    Timeout(Duration),
    /// The guest tried to grow its memory past its limit.
    #[error("step exceeded its memory limit of {0} bytes")]
    MemoryExhausted(u64),
    /// The guest returned an event over `limits.maxOutput` or with too many
    /// extensions.
    #[error("step output is too large: {0}")]
    OutputTooLarge(String),
}

impl StepFailure {
    /// Whether Knative's delivery rules would retry this failure: everything
    /// but a fatal error or an invalid output (both ≙ 4xx).
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            StepFailure::Fatal(_) | StepFailure::InvalidOutput(_) | StepFailure::OutputTooLarge(_)
        )
    }

    /// The HTTP status a Knative subscriber would answer with for this failure.
    pub fn http_status(&self) -> u16 {
        match self {
            StepFailure::Fatal(_)
            | StepFailure::InvalidOutput(_)
            | StepFailure::OutputTooLarge(_) => 422,
            _ => 500,
        }
    }
}
