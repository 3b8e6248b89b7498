//! stephost: runs the steps of a Knative Sequence as sandboxed WebAssembly
//! components inside one service, with the Sequence's event semantics.
//!
//! Data flows one way: [`manifest`] (parse + validate YAML) → [`registry`]
//! (resolved steps and sequences) → [`runtime`] (wasmtime engine, compiled
//! components, per-event instances) → [`sequence`] (chaining and delivery) →
//! [`server`] (HTTP, behind the [`admission`] door; [`app_state`] is what its
//! handlers and the [`admin`] API share). [`event`] converts CloudEvents between HTTP, the SDK and
//! the WIT record a step sees.

#![deny(missing_docs)]

pub mod admin;
pub mod admission;
pub mod app_state;
pub mod builtin;
pub mod event;
mod guest_log;
pub mod manifest;
pub mod metrics;
pub mod nn;
pub mod otlp;
pub mod preinit;
pub mod registry;
pub mod reload;
pub mod runtime;
pub mod schema;
pub mod sequence;
pub mod server;
