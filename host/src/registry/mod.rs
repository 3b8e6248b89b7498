//! The live configuration: every Sequence with its steps resolved to a
//! compiled Wasm component or a remote URL, its reply resolved to a URL.
//!
//! Built once per manifest version from a validated [`Manifest`] with the
//! runtime (manifest + runtime → registry); a [`Registry`] is immutable once
//! built, so an event always sees one consistent configuration. Swapping it
//! is [`LiveConfig`]'s job, nobody else's (`live.rs`).
//!
//! - `build.rs`: [`Registry::build`], a manifest compiled and resolved;
//! - `step.rs`: a WasmStep's versions and traffic split;
//! - `gate.rs`: per-step admission;
//! - `go_live.rs`: the check every new version passes;
//! - `resolve.rs`: Sequences, Destinations and delivery, resolved;
//! - `digest.rs`: [`Registry::config_digest`], what every replica compares.

mod build;
mod digest;
mod error;
mod gate;
mod go_live;
mod live;
mod resolve;
mod step;

pub use build::{Builtins, Registry};
pub use error::RegistryError;
pub use gate::{GateFull, StepGate};
pub use go_live::go_live;
pub use live::{Change, LiveConfig};
pub use resolve::{Address, Delivery, Hop, MAX_BACKOFF, Resolver, Sequence, StepTarget, resolve};
pub use step::{
    RollbackPolicy, StepVersion, Traffic, TrafficChange, VersionStats, WasmStep, component_digest,
};
