//! stephost: runs the steps of a Knative Sequence as sandboxed WebAssembly
//! components inside one service, with the Sequence's event semantics.
//!
//! The modules are floors; imports only point down:
//!
//! ```text
//! app        boot, manifest reloads, automatic rollback, built-in guests
//! server     HTTP: ingress, step endpoints, admin API, health, metrics
//! sequence   the dispatcher: steps in turn, delivery (retry, reply, dead letter)
//! registry   manifest + runtime → the immutable live configuration
//! manifest   YAML → typed, validated documents    runtime   wasmtime only
//! oci        components from OCI registries (pull, cache, push)
//! event  metrics  otlp  admission  step_limits  tls  error_chain    (no wasmtime, no YAML)
//! ```
//!
//! An event enters through [`server`] behind the [`admission`] door, takes
//! one [`registry::Registry`] snapshot, runs through [`sequence`]'s
//! dispatcher, whose Wasm steps run in [`runtime`]; [`event`] reads and
//! writes it as a CloudEvent on the way in and out. The test
//! `layout::imports_point_down_the_floors` keeps the floors honest.

#![deny(missing_docs)]

pub mod admission;
pub mod app;
pub mod error_chain;
pub mod event;
pub mod manifest;
pub mod metrics;
pub mod oci;
pub mod otlp;
pub mod registry;
pub mod runtime;
pub mod sequence;
pub mod server;
pub mod step_limits;
pub mod tls;
