//! Why an HTTP request or response is not one valid CloudEvent, and the
//! media types whose names the errors quote.

use thiserror::Error;

/// Media type of structured-mode events (CloudEvents JSON format §3).
pub(super) const STRUCTURED: &str = "application/cloudevents+json";

/// Media type of batch-mode events (CloudEvents HTTP binding §3.3).
pub(super) const BATCH: &str = "application/cloudevents-batch+json";

/// Why an HTTP request or response is not one valid CloudEvent.
#[derive(Debug, Error, PartialEq)]
pub enum EventError {
    /// Batch mode is not supported by Knative channels or brokers either.
    #[error(
        "batched CloudEvents ({BATCH}) are not supported: send one event per request, \
         in binary or structured mode"
    )]
    Batch,
    /// Neither binary nor structured mode.
    #[error(
        "not a CloudEvent: no ce-specversion header (binary mode) and Content-Type is not \
         {STRUCTURED} (structured mode)"
    )]
    NotAnEvent,
    /// The spec version is not 1.0 or 0.3.
    #[error("unsupported CloudEvents specversion {0:?}: only \"1.0\" and \"0.3\" are accepted")]
    UnknownSpecVersion(String),
    /// A required attribute is missing or empty.
    #[error("invalid CloudEvent: required attribute `{0}` is missing or empty")]
    MissingAttribute(&'static str),
    /// The structured body or an attribute value does not parse.
    #[error("invalid CloudEvent: {0}")]
    Invalid(String),
}
