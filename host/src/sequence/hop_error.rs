//! How a hop fails ([`HopError`], its [`HopErrorKind`]) and what that means
//! for delivery: which failures are retried (Knative's retryable statuses),
//! the `Retry-After` honoured, the error data a dead-letter sink receives,
//! and how a whole chain ends ([`Delivered`], [`ChainError`]).

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use cloudevents::Event;
use http::{HeaderMap, StatusCode};
use thiserror::Error;
use url::Url;

use crate::runtime::StepFailure;

/// `knativeerrordata` is cut to this many base64 characters
/// (eventing `KnativeErrorDataExtensionMaxLength`).
pub const ERROR_DATA_MAX: usize = 1024;

/// A failed call to one hop (a step or a sink).
#[derive(Debug, Error, Clone, PartialEq)]
#[error("{message}")]
pub struct HopError {
    /// The HTTP status this failure is (a remote status, or the status a
    /// Knative subscriber would answer for a Wasm failure; 500 for transport).
    pub status: u16,
    /// What went wrong, without wasm backtraces.
    pub message: String,
    /// What the delivery rules do with it: retry, give up, or push back.
    pub kind: HopErrorKind,
    /// The response body (or the error text), for `knativeerrordata`.
    pub body: Bytes,
    /// A remote's `Retry-After`, already parsed.
    pub retry_after: Option<Duration>,
}

/// How a failed hop is handled: one of three, so a state that is neither
/// retryable nor shed cannot be mistaken for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HopErrorKind {
    /// Knative's delivery rules retry it (5xx, 404, 408, 409, 429, transport
    /// errors, traps, timeouts); after the last attempt it is dead-lettered.
    Retryable,
    /// Retrying cannot help (other 4xx, an invalid event, `fatal`): straight
    /// to the dead-letter sink.
    Fatal,
    /// The host itself refused the call for overload (the step's places and
    /// queue were full): not retried here, not dead-lettered; the sender is
    /// answered 429 + `Retry-After` and retries, as Knative's senders do.
    Shed,
}

impl HopErrorKind {
    /// `Retryable` when retrying may help, else `Fatal`.
    fn retryable_if(retryable: bool) -> Self {
        match retryable {
            true => HopErrorKind::Retryable,
            false => HopErrorKind::Fatal,
        }
    }
}

impl HopError {
    /// Whether Knative's delivery rules retry it.
    pub fn is_retryable(&self) -> bool {
        self.kind == HopErrorKind::Retryable
    }

    /// Whether the host shed it for overload (answered 429, never retried
    /// or dead-lettered here).
    pub fn is_shed(&self) -> bool {
        self.kind == HopErrorKind::Shed
    }
}

impl HopError {
    /// A failure without a remote response: its message is also the body
    /// reported in `knativeerrordata`.
    pub(super) fn local(status: u16, message: String, kind: HopErrorKind) -> Self {
        HopError {
            status,
            body: Bytes::from(message.clone().into_bytes()),
            message,
            kind,
            retry_after: None,
        }
    }

    /// The step's concurrency and queue are full: shed the event.
    pub(super) fn shed(label: &str, full: crate::registry::GateFull) -> Self {
        HopError {
            retry_after: Some(Duration::from_secs(1)),
            ..HopError::local(
                429,
                format!(
                    "step {label:?} is overloaded: {} calls running and {} waiting \
                     (limits.concurrency, limits.maxQueue); retry later",
                    full.concurrency, full.max_queue
                ),
                HopErrorKind::Shed,
            )
        }
    }
}

/// How a Sequence run ended successfully: the event is delivered or dropped
/// on purpose, and the sender may be acknowledged.
#[derive(Debug)]
pub enum Delivered {
    /// The final event was accepted by the reply.
    Replied(Url),
    /// A step dropped the event by design; the chain stopped there.
    Dropped {
        /// Index of the step that dropped it.
        step: usize,
        /// Its name or URL.
        label: String,
    },
    /// No reply is configured: the final event goes back to the sender.
    Returned(Box<Event>),
    /// A hop failed for good and its input went to the dead-letter sink.
    DeadLettered {
        /// Where the event went.
        sink: Url,
        /// The failure that sent it there.
        cause: Box<ChainError>,
    },
}

/// How a Sequence run failed: the sender must not be acknowledged.
#[derive(Debug, Error)]
pub enum ChainError {
    /// A step failed.
    #[error("step {index} ({label}) failed: {error}")]
    Step {
        /// Index of the failing step.
        index: usize,
        /// Its name or URL.
        label: String,
        /// The last attempt's failure.
        error: HopError,
    },
    /// The reply did not accept the event.
    #[error("the reply {url} did not accept the event: {error}")]
    Reply {
        /// The reply URL.
        url: Url,
        /// The last attempt's failure.
        error: HopError,
    },
    /// The hop failed and so did its dead-letter sink.
    #[error("{cause}; and the dead-letter sink {sink} failed too: {error}")]
    DeadLetter {
        /// The sink.
        sink: Url,
        /// The hop failure.
        cause: Box<ChainError>,
        /// The sink's failure.
        error: HopError,
    },
}

impl ChainError {
    /// The failure of the hop itself (not of its dead-letter sink).
    pub fn hop(&self) -> &HopError {
        match self {
            ChainError::Step { error, .. } | ChainError::Reply { error, .. } => error,
            ChainError::DeadLetter { cause, .. } => cause.hop(),
        }
    }
}

/// `knativeerrordata`: base64 (standard alphabet) of the body, cut to 1024
/// characters. Encoding first and cutting the text avoids the buffer overrun
/// Knative's dispatcher has on bodies over 768 bytes (eventing-natss#434).
pub fn error_data(body: &[u8]) -> String {
    let mut encoded = base64::engine::general_purpose::STANDARD.encode(body);
    encoded.truncate(ERROR_DATA_MAX);
    encoded
}

/// Knative's `SelectiveRetry` (eventing pkg/kncloudevents/retries.go): retry
/// 5xx, 404, 408, 409, 429; never 1xx-3xx or other 4xx.
pub fn is_retryable_status(status: u16) -> bool {
    status >= 500 || matches!(status, 404 | 408 | 409 | 429)
}

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 §10.2.3); only
/// 429 and 503 carry a meaningful one.
pub(super) fn retry_after(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

pub(super) fn status_error(
    url: &Url,
    status: StatusCode,
    headers: &HeaderMap,
    body: Bytes,
) -> HopError {
    HopError {
        status: status.as_u16(),
        message: format!("{url} answered {status}"),
        kind: HopErrorKind::retryable_if(is_retryable_status(status.as_u16())),
        retry_after: retry_after(status, headers),
        body,
    }
}

/// A transport failure (connect, reset, unreadable body): 500, retried.
pub(super) fn transport(url: &Url, error: impl std::fmt::Display) -> HopError {
    HopError::local(500, format!("{url}: {error}"), HopErrorKind::Retryable)
}

pub(super) fn timed_out(limit: Duration) -> HopError {
    HopError::local(
        500,
        format!("attempt timed out after {limit:?} (delivery timeout)"),
        HopErrorKind::Retryable,
    )
}

pub(super) fn failure_to_hop(failure: StepFailure) -> HopError {
    HopError::local(
        failure.http_status(),
        failure.to_string(),
        HopErrorKind::retryable_if(failure.is_retryable()),
    )
}
