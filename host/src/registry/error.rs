//! Why manifests cannot become a live configuration: every error names the
//! document (file, index, kind, name) and the field.

use thiserror::Error;

use crate::runtime::RuntimeError;

/// Why the manifests cannot become a live configuration.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// A Destination cannot be turned into a URL.
    #[error("{at}: {field}: {message}")]
    Unresolvable {
        /// The document.
        at: String,
        /// The field (`spec.steps[0].ref`).
        field: String,
        /// Why.
        message: String,
    },
    /// A WasmStep's component failed to load or compile.
    #[error("{at}: spec.component: {source}")]
    Component {
        /// The WasmStep document.
        at: String,
        /// The runtime's reason.
        source: RuntimeError,
    },
    /// A version's `oci://` component could not be pulled (the previous
    /// configuration keeps serving; the next reload tries again).
    #[error("{at}: version {version:?}: cannot pull the component: {message}")]
    Pull {
        /// The WasmStep document.
        at: String,
        /// The version.
        version: String,
        /// Why (the reference, the registry's answer).
        message: String,
    },
    /// A model in `spec.models` could not be read or optimised.
    #[error("{at}: spec.models.{name}: {message}")]
    Model {
        /// The WasmStep document.
        at: String,
        /// The model's granted name.
        name: String,
        /// Why.
        message: String,
    },
    /// A version compiled but cannot be instantiated under its limits.
    #[error("{at}: version {version:?} cannot be instantiated: {message}")]
    Instantiate {
        /// The WasmStep document.
        at: String,
        /// The version.
        version: String,
        /// Why.
        message: String,
    },
    /// A version failed the step's smoke event.
    #[error("{at}: spec.smokeEvent: version {version:?} failed its smoke event: {message}")]
    Smoke {
        /// The WasmStep document.
        at: String,
        /// The version.
        version: String,
        /// How it failed.
        message: String,
    },
    /// `builtin:<name>` names no built-in guest.
    #[error("{at}: spec.component: no built-in component {name:?} (built in: {known})")]
    UnknownBuiltin {
        /// The WasmStep document.
        at: String,
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: String,
    },
}
