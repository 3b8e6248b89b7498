//! Host bindings generated from `guests/sdk/wit/step.wit` (the `step` world): the
//! `cloud-event` record and `step-error` a guest exchanges with the host,
//! and the typed `handle` export.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../guests/sdk/wit",
    world: "step",
    exports: { default: async },
});

pub use self::stephost::step::types::{CloudEvent as WitEvent, StepError as WitStepError};
