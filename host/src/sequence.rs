//! Runs a Sequence: each step's output is the next step's input, a dropped
//! event stops the chain, and the final event goes to the reply — the event
//! flow of a Knative Sequence on an InMemoryChannel, without the channel hops.
//!
//! Remote steps and the reply are called exactly as Knative's dispatcher calls
//! them (eventing `pkg/kncloudevents/event_dispatcher.go`): POST, binary mode,
//! `Prefer: reply` to subscribers, `Kn-Namespace`, the pass-through headers.

use std::time::Duration;

use bytes::Bytes;
use cloudevents::Event;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use thiserror::Error;
use url::Url;

use crate::event;
use crate::registry::{Sequence, StepTarget};
use crate::runtime::StepFailure;

/// Bound of one call to a remote step or reply when the delivery spec sets no
/// `timeout`: Knative Serving's default revision timeout (300 s), the longest a
/// Knative subscriber would be allowed to take by default anyway.
pub const DEFAULT_REMOTE_TIMEOUT: Duration = Duration::from_secs(300);

/// Largest response body read from a remote step or reply. A response event
/// larger than an inbound one is a misbehaving peer; refusing it bounds memory.
pub const MAX_RESPONSE_BYTES: usize = 8 << 20;

/// Headers of the inbound request that travel with the event to every hop
/// (eventing `pkg/utils/headers.go`: exact `x-request-id`, `retry-after`;
/// prefixes `knative-`, `x-b3-`), plus W3C trace context.
#[derive(Debug, Clone, Default)]
pub struct PassThrough {
    /// The headers to copy onto each outgoing request.
    pub headers: HeaderMap,
}

impl PassThrough {
    /// Pick the pass-through headers out of an inbound request.
    pub fn from_inbound(headers: &HeaderMap) -> Self {
        let mut kept = HeaderMap::new();
        for (name, value) in headers {
            let n = name.as_str();
            if n == "x-request-id"
                || n == "retry-after"
                || n.starts_with("knative-")
                || n.starts_with("x-b3-")
                || n == "traceparent"
                || n == "tracestate"
            {
                kept.append(name.clone(), value.clone());
            }
        }
        Self { headers: kept }
    }
}

/// A failed call to one hop (a step or the reply).
#[derive(Debug, Error, Clone, PartialEq)]
#[error("{message}")]
pub struct HopError {
    /// The HTTP status this failure is (a remote status, or the status a
    /// Knative subscriber would answer for a Wasm failure; 500 for transport).
    pub status: u16,
    /// What went wrong, without wasm backtraces.
    pub message: String,
    /// Whether Knative's delivery rules retry it.
    pub retryable: bool,
    /// The response body, for `knativeerrordata`.
    pub body: Bytes,
}

/// How a Sequence run ended successfully.
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
}

/// How a Sequence run failed.
#[derive(Debug, Error)]
pub enum ChainError {
    /// A step failed.
    #[error("step {index} ({label}) failed: {error}")]
    Step {
        /// Index of the failing step.
        index: usize,
        /// Its name or URL.
        label: String,
        /// The failure.
        error: HopError,
    },
    /// The reply did not accept the final event.
    #[error("the reply {url} did not accept the event: {error}")]
    Reply {
        /// The reply URL.
        url: Url,
        /// The failure.
        error: HopError,
    },
}

impl ChainError {
    /// The hop failure inside.
    pub fn hop(&self) -> &HopError {
        match self {
            ChainError::Step { error, .. } | ChainError::Reply { error, .. } => error,
        }
    }
}

/// Calls steps and replies; one per host, sharing one pooled HTTP client.
pub struct Dispatcher {
    /// Keep-alive connection pool for remote steps, replies and sinks.
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Dispatcher {
    fn default() -> Self {
        Self::new()
    }
}

impl Dispatcher {
    /// A dispatcher with a fresh connection pool.
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self { client }
    }

    /// Run `event` through every step of `seq`, then deliver to its reply.
    pub async fn run(
        &self,
        seq: &Sequence,
        mut event: Event,
        inbound: &PassThrough,
    ) -> Result<Delivered, ChainError> {
        for (index, step) in seq.steps.iter().enumerate() {
            let output = self
                .call_step(&step.target, event, &seq.namespace, inbound)
                .await
                .map_err(|error| ChainError::Step {
                    index,
                    label: step.target.label(),
                    error,
                })?;
            match output {
                Some(next) => event = next,
                None => {
                    return Ok(Delivered::Dropped {
                        step: index,
                        label: step.target.label(),
                    });
                }
            }
        }
        match &seq.reply {
            None => Ok(Delivered::Returned(Box::new(event))),
            Some(url) => {
                self.deliver(url, event, &seq.namespace, inbound)
                    .await
                    .map_err(|error| ChainError::Reply {
                        url: url.clone(),
                        error,
                    })?;
                Ok(Delivered::Replied(url.clone()))
            }
        }
    }

    /// Call one step: `Some(event)` to forward, `None` when it dropped the event.
    pub async fn call_step(
        &self,
        target: &StepTarget,
        event: Event,
        namespace: &str,
        inbound: &PassThrough,
    ) -> Result<Option<Event>, HopError> {
        match target {
            StepTarget::Wasm(step) => {
                let output = step
                    .component
                    .handle(event::to_wit(&event))
                    .await
                    .map_err(failure_to_hop)?;
                match output {
                    None => Ok(None),
                    Some(wit) => event::from_wit(wit)
                        .map(Some)
                        .map_err(|e| failure_to_hop(StepFailure::InvalidOutput(e.to_string()))),
                }
            }
            StepTarget::Remote(url) => self.call_remote(url, event, namespace, inbound).await,
        }
    }

    /// POST to a remote subscriber with `Prefer: reply` and read its reply.
    async fn call_remote(
        &self,
        url: &Url,
        event: Event,
        namespace: &str,
        inbound: &PassThrough,
    ) -> Result<Option<Event>, HopError> {
        let mut extra = inbound.headers.clone();
        extra.insert("prefer", HeaderValue::from_static("reply"));
        let (status, headers, body) = self.post(url, event, namespace, extra).await?;
        if !status.is_success() {
            return Err(status_error(url, status, body));
        }
        // Any 2xx carrying an event is a reply; any other 2xx is not an event
        // and ends the chain (eventing executeRequest, "non event, discard").
        match event::mode(&headers) {
            event::Mode::Unknown => Ok(None),
            _ => event::from_http(&headers, body.to_vec())
                .map(Some)
                .map_err(|e| HopError {
                    status: 400,
                    message: format!("{url} replied with an invalid event: {e}"),
                    retryable: false,
                    body,
                }),
        }
    }

    /// Deliver an event to a sink (the reply or a dead-letter sink): any 2xx
    /// is success, a reply event in the response is ignored.
    pub async fn deliver(
        &self,
        url: &Url,
        event: Event,
        namespace: &str,
        inbound: &PassThrough,
    ) -> Result<(), HopError> {
        let (status, _, body) = self
            .post(url, event, namespace, inbound.headers.clone())
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(status_error(url, status, body))
        }
    }

    /// One POST of `event` in binary mode; transport failures are 500s.
    async fn post(
        &self,
        url: &Url,
        event: Event,
        namespace: &str,
        extra: HeaderMap,
    ) -> Result<(StatusCode, HeaderMap, Bytes), HopError> {
        let (ce_headers, body) = event::to_http(event).map_err(|e| HopError {
            status: 500,
            message: e.to_string(),
            retryable: false,
            body: Bytes::new(),
        })?;
        let mut request = Request::post(url.as_str())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| transport(url, e))?;
        let headers = request.headers_mut();
        headers.extend(extra);
        headers.extend(ce_headers);
        if let Ok(ns) = HeaderValue::from_str(namespace) {
            headers.insert(HeaderName::from_static("kn-namespace"), ns);
        }
        let response = tokio::time::timeout(DEFAULT_REMOTE_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| {
                transport(
                    url,
                    format!("no response within {DEFAULT_REMOTE_TIMEOUT:?}"),
                )
            })?
            .map_err(|e| transport(url, e))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| transport(url, format!("reading the response body: {e}")))?
            .to_bytes();
        Ok((parts.status, parts.headers, body))
    }
}

/// Knative's `SelectiveRetry` (eventing pkg/kncloudevents/retries.go): retry
/// 5xx, 404, 408, 409, 429; never 1xx-3xx or other 4xx.
pub fn is_retryable_status(status: u16) -> bool {
    status >= 500 || matches!(status, 404 | 408 | 409 | 429)
}

fn status_error(url: &Url, status: StatusCode, body: Bytes) -> HopError {
    HopError {
        status: status.as_u16(),
        message: format!("{url} answered {status}"),
        retryable: is_retryable_status(status.as_u16()),
        body,
    }
}

fn transport(url: &Url, error: impl std::fmt::Display) -> HopError {
    let message = format!("{url}: {error}");
    HopError {
        status: 500,
        body: Bytes::from(message.clone().into_bytes()),
        message,
        retryable: true,
    }
}

fn failure_to_hop(failure: StepFailure) -> HopError {
    let message = failure.to_string();
    HopError {
        status: failure.http_status(),
        retryable: failure.is_retryable(),
        body: Bytes::from(message.clone().into_bytes()),
        message,
    }
}
