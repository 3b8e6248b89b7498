//! `stephost-guest`: write a stephost step as a plain Rust type.
//!
//! A step implements [`Step`] and is exported with [`export_step!`]; the crate
//! hides the WIT bindings and gives the helpers every step needs (JSON data,
//! extensions, its manifest `config`). It builds with both
//! `cargo build --target wasm32-wasip2` and `cargo component build`.
//!
//! ```ignore
//! use stephost_guest::{export_step, Event, Step, StepError};
//!
//! struct Upper;
//! impl Step for Upper {
//!     fn handle(mut event: Event) -> Result<Option<Event>, StepError> {
//!         let text = event.data_text()?.to_uppercase();
//!         event.set_data_text(text);
//!         Ok(Some(event))
//!     }
//! }
//! export_step!(Upper);
//! ```

/// The generated WIT bindings of the `stephost:step` world; with the `nn`
/// feature, of `step-nn` (adds the standard `wasi:nn` imports); with
/// `preinit`, of `step-preinit` (adds the `wizer-initialize` export); with
/// both, of `step-nn-preinit`.
///
/// Public so that [`export_step!`] can reach them from a guest crate; a step
/// normally never names anything in here except, with `nn`, [`nn`].
#[doc(hidden)]
#[allow(missing_docs, unsafe_code)]
pub mod bindings {
    #[cfg(not(any(feature = "nn", feature = "preinit")))]
    wit_bindgen::generate!({
        path: "wit",
        world: "step",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "stephost_guest::bindings",
    });
    #[cfg(all(feature = "nn", not(feature = "preinit")))]
    wit_bindgen::generate!({
        path: "wit",
        world: "step-nn",
        generate_all,
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "stephost_guest::bindings",
    });
    #[cfg(all(feature = "preinit", not(feature = "nn")))]
    wit_bindgen::generate!({
        path: "wit",
        world: "step-preinit",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "stephost_guest::bindings",
    });
    #[cfg(all(feature = "nn", feature = "preinit"))]
    wit_bindgen::generate!({
        path: "wit",
        world: "step-nn-preinit",
        generate_all,
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "stephost_guest::bindings",
    });
}

/// The standard `wasi:nn` API (feature `nn`): inference that the host runs
/// natively on models the step's manifest grants (`spec.models`).
#[cfg(feature = "nn")]
pub use bindings::wasi::nn;

use serde::Serialize;
use serde::de::DeserializeOwned;

#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

#[cfg(all(
    feature = "event-arena",
    target_arch = "wasm32",
    not(target_feature = "atomics")
))]
pub mod arena;

/// The guest's allocator with the `event-arena` feature (the default): a
/// per-event bump arena in front of the standard allocator (see [`arena`]).
#[cfg(all(
    feature = "event-arena",
    target_arch = "wasm32",
    not(target_feature = "atomics")
))]
#[global_allocator]
static EVENT_ARENA: arena::EventArena = arena::EventArena::new();

/// Called by [`export_step!`] when set-up is over (after
/// `Step::preinitialize`, and on every event): from then on the guest
/// allocates from the per-event arena first. Without the `event-arena`
/// feature, nothing.
#[doc(hidden)]
pub fn __setup_done() {
    #[cfg(all(
        feature = "event-arena",
        target_arch = "wasm32",
        not(target_feature = "atomics")
    ))]
    EVENT_ARENA.activate();
}

/// One CloudEvent as the host hands it to a step (the WIT `cloud-event`).
pub use bindings::stephost::step::types::CloudEvent as Event;
/// How a step fails: `Retryable` (the host retries, ≙ 5xx) or `Fatal`
/// (straight to the dead-letter sink, ≙ 4xx).
pub use bindings::stephost::step::types::StepError;

/// What a step does with one event.
///
/// `Ok(Some(e))` forwards `e`, `Ok(None)` drops the event by design (the
/// Sequence stops and the sender is acknowledged), `Err(_)` fails it.
/// The host builds a fresh instance per event, so the step is a type with no
/// state: everything it needs comes from the event and [`config`].
pub trait Step {
    /// Handle one event.
    fn handle(event: Event) -> Result<Option<Event>, StepError>;

    /// With the `preinit` feature: work done once, when the host loads the
    /// component, instead of in every instance — e.g. parse a model into a
    /// `static`. The host snapshots the memory afterwards, so each fresh
    /// instance starts with the result. It may read [`config`]; it must not
    /// keep host resources (WASI handles, `wasi:nn` graphs). Default: nothing.
    fn preinitialize() {}
}

/// The `handler` export of a [`Step`] type, shared by both forms of
/// [`export_step!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __export_step_handler {
    ($step:ty) => {
        #[doc(hidden)]
        struct __StephostStepExport;
        impl $crate::bindings::exports::stephost::step::handler::Guest for __StephostStepExport {
            fn handle(
                event: $crate::Event,
            ) -> ::core::result::Result<::core::option::Option<$crate::Event>, $crate::StepError>
            {
                $crate::__setup_done();
                <$step as $crate::Step>::handle(event)
            }
        }
    };
}

/// Export a [`Step`] type as the component's `handler` (and, with the
/// `preinit` feature, its [`Step::preinitialize`] as `wizer-initialize`).
#[cfg(not(feature = "preinit"))]
#[macro_export]
macro_rules! export_step {
    ($step:ty) => {
        $crate::__export_step_handler!($step);
        $crate::bindings::export!(__StephostStepExport with_types_in $crate::bindings);
    };
}

/// Export a [`Step`] type as the component's `handler` (and, with the
/// `preinit` feature, its [`Step::preinitialize`] as `wizer-initialize`).
#[cfg(feature = "preinit")]
#[macro_export]
macro_rules! export_step {
    ($step:ty) => {
        $crate::__export_step_handler!($step);
        impl $crate::bindings::Guest for __StephostStepExport {
            fn wizer_initialize() {
                <$step as $crate::Step>::preinitialize();
                // The snapshot starts every event with the arena on.
                $crate::__setup_done();
            }
        }
        $crate::bindings::export!(__StephostStepExport with_types_in $crate::bindings);
    };
}

/// One setting from the step's manifest (`spec.config`), if set. Off wasm
/// (a step's unit tests), the value [`testing::with_config`] gave.
pub fn config(key: &str) -> Option<String> {
    #[cfg(target_arch = "wasm32")]
    return bindings::stephost::step::config::get(key);
    #[cfg(not(target_arch = "wasm32"))]
    return testing::config(key);
}

/// One setting, or `default` when the manifest does not set it.
pub fn config_or(key: &str, default: &str) -> String {
    config(key).unwrap_or_else(|| default.to_string())
}

impl StepError {
    /// A failure retrying cannot fix (bad input): goes to the dead-letter sink.
    pub fn fatal(message: impl Into<String>) -> Self {
        StepError::Fatal(message.into())
    }

    /// A failure that a retry may fix: retried per the delivery spec.
    pub fn retryable(message: impl Into<String>) -> Self {
        StepError::Retryable(message.into())
    }
}

impl Event {
    /// The value of extension `name`, if the event carries it.
    pub fn extension(&self, name: &str) -> Option<&str> {
        self.extensions
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Set extension `name` (replacing an existing value, keeping the others).
    pub fn set_extension(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.extensions.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.extensions.push((name.to_string(), value)),
        }
    }

    /// The data as UTF-8 text; a `Fatal` error when it is absent or not UTF-8,
    /// since retrying cannot change the input.
    pub fn data_text(&self) -> Result<&str, StepError> {
        let bytes = self
            .data
            .as_deref()
            .ok_or_else(|| StepError::fatal("the event has no data"))?;
        std::str::from_utf8(bytes).map_err(|e| StepError::fatal(format!("data is not UTF-8: {e}")))
    }

    /// The data parsed as JSON into `T`; a `Fatal` error naming what is wrong.
    pub fn data_json<T: DeserializeOwned>(&self) -> Result<T, StepError> {
        let bytes = self
            .data
            .as_deref()
            .ok_or_else(|| StepError::fatal("the event has no data"))?;
        serde_json::from_slice(bytes)
            .map_err(|e| StepError::fatal(format!("data is not the expected JSON: {e}")))
    }

    /// Replace the data with text, content type `text/plain`.
    pub fn set_data_text(&mut self, text: impl Into<String>) {
        self.data = Some(text.into().into_bytes());
        self.datacontenttype = Some("text/plain".to_string());
    }

    /// Replace the data with `value` as JSON, content type `application/json`.
    pub fn set_data_json<T: Serialize>(&mut self, value: &T) -> Result<(), StepError> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| StepError::fatal(format!("cannot encode data as JSON: {e}")))?;
        self.data = Some(bytes);
        self.datacontenttype = Some("application/json".to_string());
        Ok(())
    }

    /// The data's JSON object members, whatever the content type says — as
    /// the CloudEvents SDKs for Python and JavaScript read any body that
    /// parses as JSON — and the text of member `field` (`""` when absent, as
    /// Knative's bookstore functions default it). Data that is no JSON object
    /// is the text itself when the content type is `text/*`; anything else is
    /// a `Fatal` error naming what was expected.
    ///
    /// Members are kept in their order with their numbers exactly as written
    /// (this crate turns on serde_json's `preserve_order` and
    /// `arbitrary_precision`), so a step that only adds members hands the
    /// others on unchanged; replace `field` with `Map::insert` to keep its place.
    pub fn data_object_and_text(
        &self,
        field: &str,
    ) -> Result<(serde_json::Map<String, serde_json::Value>, String), StepError> {
        let bytes = self
            .data
            .as_deref()
            .ok_or_else(|| StepError::fatal("the event has no data"))?;
        if let Ok(fields) = serde_json::from_slice::<serde_json::Map<_, _>>(bytes) {
            return match fields.get(field) {
                None => Ok((fields, String::new())),
                Some(serde_json::Value::String(text)) => {
                    let text = text.clone();
                    Ok((fields, text))
                }
                Some(_) => Err(StepError::fatal(format!(
                    "data member \"{field}\" must be a string"
                ))),
            };
        }
        if self.data_is_text() {
            return Ok((serde_json::Map::new(), self.data_text()?.to_string()));
        }
        Err(StepError::fatal(format!(
            "data must be a JSON object (with a string member \"{field}\") or text/*; got {} \
             that is not a JSON object",
            self.datacontenttype.as_deref().unwrap_or("no content type")
        )))
    }

    /// Whether the content type is `text/*` (`text/plain`, `text/markdown`, …).
    pub fn data_is_text(&self) -> bool {
        self.datacontenttype.as_deref().is_some_and(|ct| {
            ct.trim_start()
                .get(..5)
                .is_some_and(|media| media.eq_ignore_ascii_case("text/"))
        })
    }

    /// Whether the content type says the data is JSON (`application/json`,
    /// `*/*+json`; absent counts as JSON, as in the CloudEvents JSON format).
    pub fn data_is_json(&self) -> bool {
        match self.datacontenttype.as_deref() {
            None => true,
            Some(ct) => {
                let media = ct
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                media == "application/json" || media == "text/json" || media.ends_with("+json")
            }
        }
    }
}
