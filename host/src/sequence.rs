//! Runs a Sequence: each step's output is the next step's input, a dropped
//! event stops the chain, and the final event goes to the reply — the event
//! flow of a Knative Sequence on an InMemoryChannel, without the channel hops.
//!
//! Delivery follows Knative's dispatcher (eventing
//! `pkg/kncloudevents/event_dispatcher.go`, `retries.go`): each hop is tried
//! `retry + 1` times with the configured backoff; after the last failure the
//! hop's original input event goes to the dead-letter sink with the
//! `knativeerror*` extensions. Remote steps and sinks are called as the
//! dispatcher calls them: POST, binary mode, `Prefer: reply` to subscribers,
//! `Kn-Namespace`, the pass-through headers and W3C `traceparent`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use cloudevents::Event;
use cloudevents::event::ExtensionValue;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use thiserror::Error;
use url::Url;

use prometheus_client::metrics::counter::Counter;

use crate::event;
use crate::metrics::{Metrics, labels};
use crate::registry::{Delivery, Sequence, StepTarget, StepVersion, WasmStep};
use crate::runtime::StepFailure;

/// Bound of one call to a remote step or sink when the delivery spec sets no
/// `timeout`: Knative Serving's default revision timeout (300 s), the longest a
/// Knative subscriber would be allowed to take by default anyway.
pub const DEFAULT_REMOTE_TIMEOUT: Duration = Duration::from_secs(300);

/// Largest response body read from a remote step or sink. A response event
/// larger than an inbound one is a misbehaving peer; refusing it bounds memory.
pub const MAX_RESPONSE_BYTES: usize = 8 << 20;

/// `knativeerrordata` is cut to this many base64 characters
/// (eventing `KnativeErrorDataExtensionMaxLength`).
pub const ERROR_DATA_MAX: usize = 1024;

/// What travels from the inbound request to every hop.
#[derive(Debug, Clone, Default)]
pub struct Inbound {
    /// Pass-through headers (eventing `pkg/utils/headers.go`: exact
    /// `x-request-id`, `retry-after`; prefixes `knative-`, `x-b3-`) and
    /// `tracestate`.
    pub headers: HeaderMap,
    /// The inbound W3C trace context, continued on every hop.
    pub trace: TraceContext,
    /// `Stephost-Step-Tag: <step>=<tag>` pairs: run that step's tagged version.
    pub tags: Vec<(String, String)>,
    /// This host's base URL as the sender reached it, for the
    /// `knativeerrordest` of a failed Wasm step (`{base}/steps/{name}`).
    pub self_base: String,
}

impl Inbound {
    /// The tag asked for `step`, if any.
    pub fn tag_for(&self, step: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(s, _)| s == step)
            .map(|(_, t)| t.as_str())
    }

    /// The version of `step` this event runs (tag, else the traffic split).
    pub fn choose<'a>(&self, step: &'a WasmStep) -> &'a StepVersion {
        step.pick(self.tag_for(&step.name), (random_u64() % 100) as u32)
    }

    /// Pick what travels on out of an inbound request.
    pub fn from_request(headers: &HeaderMap) -> Self {
        let mut kept = HeaderMap::new();
        for (name, value) in headers {
            let n = name.as_str();
            if n == "x-request-id"
                || n == "retry-after"
                || n.starts_with("knative-")
                || n.starts_with("x-b3-")
                || n == "tracestate"
            {
                kept.append(name.clone(), value.clone());
            }
        }
        let host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let tags = headers
            .get_all("stephost-step-tag")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|pair| {
                let (step, tag) = pair.trim().split_once('=')?;
                Some((step.trim().to_string(), tag.trim().to_string()))
            })
            .collect();
        Self {
            headers: kept,
            tags,
            trace: TraceContext::from_headers(headers),
            self_base: format!("http://{host}"),
        }
    }
}

/// A W3C Trace Context (`traceparent`): the trace id is kept across hops, each
/// outgoing request gets a new parent (span) id.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceContext {
    /// 32 lower-case hex digits.
    pub trace_id: String,
    /// `01` when sampled.
    pub flags: String,
    /// The span id of the inbound request (16 hex digits), when it had one:
    /// the parent of the spans this host exports.
    pub parent_id: Option<String>,
}

impl Default for TraceContext {
    fn default() -> Self {
        Self {
            trace_id: format!("{:016x}{:016x}", random_u64(), random_u64()),
            flags: "01".into(),
            parent_id: None,
        }
    }
}

impl TraceContext {
    /// Continue the inbound `traceparent` (W3C Trace Context §3.2), or start a
    /// new trace when it is absent or malformed.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let parsed = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let parts: Vec<&str> = v.trim().split('-').collect();
                let hex =
                    |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
                (parts.len() >= 4
                    && hex(parts[0], 2)
                    && parts[0] != "ff"
                    && hex(parts[1], 32)
                    && parts[1] != "0".repeat(32)
                    && hex(parts[2], 16)
                    && hex(parts[3], 2))
                .then(|| TraceContext {
                    trace_id: parts[1].to_ascii_lowercase(),
                    flags: parts[3].to_ascii_lowercase(),
                    parent_id: Some(parts[2].to_ascii_lowercase()),
                })
            });
        parsed.unwrap_or_default()
    }

    /// A `traceparent` value for one outgoing request.
    pub fn child_header(&self) -> String {
        format!(
            "00-{}-{:016x}-{}",
            self.trace_id,
            random_u64() | 1,
            self.flags
        )
    }
}

/// Non-cryptographic randomness for trace and span ids, from the standard
/// library's per-process random hash keys (no extra dependency needed).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

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

/// Calls steps and sinks; one per host, sharing one pooled HTTP client.
pub struct Dispatcher {
    /// Keep-alive connection pool for remote steps, replies and sinks.
    client: Client<HttpConnector, Full<Bytes>>,
    /// Step counts, latencies and retries are recorded here.
    metrics: Arc<Metrics>,
    /// Add `stephostversions` (which version ran each Wasm step) to outputs.
    versions_extension: bool,
    /// Exports a span per step call, when OTLP is configured.
    otlp: Option<crate::otlp::Exporter>,
}

impl Default for Dispatcher {
    fn default() -> Self {
        Self::new(Arc::default())
    }
}

impl Dispatcher {
    /// A dispatcher with a fresh connection pool, recording into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self {
            client,
            metrics,
            versions_extension: true,
            otlp: None,
        }
    }

    /// Export a span per step call through `exporter`.
    pub fn with_otlp(mut self, exporter: Option<crate::otlp::Exporter>) -> Self {
        self.otlp = exporter;
        self
    }

    /// Whether outputs carry the `stephostversions` extension (default on).
    pub fn with_versions_extension(mut self, on: bool) -> Self {
        self.versions_extension = on;
        self
    }

    /// Record which versions ran on the event leaving the host.
    pub fn stamp_versions(&self, event: &mut Event, versions: &[(String, String)]) {
        if self.versions_extension && !versions.is_empty() {
            let value = versions
                .iter()
                .map(|(s, v)| format!("{s}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            event.set_extension("stephostversions", ExtensionValue::String(value));
        }
    }

    /// The retry counter of one target.
    fn retries(&self, target: &str) -> Counter {
        self.metrics
            .retries
            .get_or_create_owned(&labels(&[("target", target)]))
    }

    /// Run `event` through every step of `seq`, then deliver to its reply.
    ///
    /// Each hop (a step; the reply) is retried per its delivery; a step is
    /// never re-run because the reply failed. After a hop's last failure its
    /// input goes to the dead-letter sink, if any: then the run counts as
    /// delivered, otherwise it is an error and the sender must retry.
    pub async fn run(
        &self,
        seq: &Sequence,
        mut event: Event,
        inbound: &Inbound,
    ) -> Result<Delivered, ChainError> {
        let mut last_delivery = Delivery::default();
        // The last step's input, kept for the dead-letter sink of the reply hop.
        let mut last_input: Option<Event> = None;
        let mut versions: Vec<(String, String)> = Vec::new();
        for (index, step) in seq.steps.iter().enumerate() {
            // One version per step per event, kept across retries.
            let version = match &step.target {
                StepTarget::Wasm(w) => Some(inbound.choose(w)),
                StepTarget::Remote(_) => None,
            };
            let attempt = || {
                self.call_step(
                    &step.target,
                    version,
                    event.clone(),
                    &seq.namespace,
                    inbound,
                )
            };
            let retries = self.retries(&step.target.label());
            let result = retrying(&step.delivery, &retries, attempt).await;
            if let (Some(v), StepTarget::Wasm(w)) = (version, &step.target) {
                versions.push((w.name.clone(), v.name.clone()));
            }
            match result {
                Ok(Some(next)) => last_input = Some(std::mem::replace(&mut event, next)),
                Ok(None) => {
                    return Ok(Delivered::Dropped {
                        step: index,
                        label: step.target.label(),
                    });
                }
                Err(error) if error.is_shed() => {
                    return Err(ChainError::Step {
                        index,
                        label: step.target.label(),
                        error,
                    });
                }
                Err(error) => {
                    let dest = match &step.target {
                        StepTarget::Wasm(w) => format!("{}/steps/{}", inbound.self_base, w.name),
                        StepTarget::Remote(url) => url.to_string(),
                    };
                    let failure = ChainError::Step {
                        index,
                        label: step.target.label(),
                        error,
                    };
                    return self
                        .dead_letter(&step.delivery, event, &dest, failure, seq, inbound)
                        .await;
                }
            }
            last_delivery = step.delivery.clone();
        }
        self.stamp_versions(&mut event, &versions);
        let Some(url) = &seq.reply else {
            return Ok(Delivered::Returned(Box::new(event)));
        };
        for (name, value) in &seq.reply_overrides {
            event.set_extension(name, ExtensionValue::String(value.clone()));
        }
        let attempt = || self.deliver(url, event.clone(), &seq.namespace, inbound);
        match retrying(&last_delivery, &self.retries(url.as_str()), attempt).await {
            Ok(()) => Ok(Delivered::Replied(url.clone())),
            Err(error) => {
                let failure = ChainError::Reply {
                    url: url.clone(),
                    error,
                };
                // As in Knative, the dead-letter sink gets the original input
                // of the hop whose reply failed: the last step's input (a
                // Sequence has at least one step, so it exists).
                let original = last_input.unwrap_or(event);
                self.dead_letter(
                    &last_delivery,
                    original,
                    url.as_str(),
                    failure,
                    seq,
                    inbound,
                )
                .await
            }
        }
    }

    /// Send a hop's original input to the dead-letter sink, if there is one.
    async fn dead_letter(
        &self,
        delivery: &Delivery,
        mut original: Event,
        dest: &str,
        failure: ChainError,
        seq: &Sequence,
        inbound: &Inbound,
    ) -> Result<Delivered, ChainError> {
        let Some(sink) = &delivery.dead_letter_sink else {
            return Err(failure);
        };
        let hop = failure.hop();
        original.set_extension("knativeerrordest", ExtensionValue::String(dest.to_string()));
        original.set_extension(
            "knativeerrorcode",
            ExtensionValue::Integer(i64::from(hop.status)),
        );
        original.set_extension(
            "knativeerrordata",
            ExtensionValue::String(error_data(&hop.body)),
        );
        let attempt = || self.deliver(sink, original.clone(), &seq.namespace, inbound);
        match retrying(delivery, &self.retries(sink.as_str()), attempt).await {
            Ok(()) => {
                self.metrics
                    .dead_lettered
                    .get_or_create(&labels(&[("sequence", &seq.name)]))
                    .inc();
                tracing::warn!(sequence = %seq.name, error = %failure, sink = %sink, "dead-lettered");
                Ok(Delivered::DeadLettered {
                    sink: sink.clone(),
                    cause: Box::new(failure),
                })
            }
            Err(error) => Err(ChainError::DeadLetter {
                sink: sink.clone(),
                cause: Box::new(failure),
                error,
            }),
        }
    }

    /// Call one step once: `Some(event)` to forward, `None` when it dropped
    /// the event.
    pub async fn call_step(
        &self,
        target: &StepTarget,
        version: Option<&StepVersion>,
        event: Event,
        namespace: &str,
        inbound: &Inbound,
    ) -> Result<Option<Event>, HopError> {
        let started = std::time::Instant::now();
        let wall_start = std::time::SystemTime::now();
        let version = match (version, target) {
            (Some(v), _) => Some(v),
            (None, StepTarget::Wasm(w)) => Some(inbound.choose(w)),
            (None, StepTarget::Remote(_)) => None,
        };
        let span = tracing::info_span!(
            "step",
            step = %target.label(),
            version = version.map_or("", |v| v.name.as_str()),
            trace_id = %inbound.trace.trace_id,
        );
        let result = tracing::Instrument::instrument(
            self.call_step_once(target, version, event, namespace, inbound),
            span,
        )
        .await;
        let step = target.label();
        let version_label = version.map_or("", |v| v.name.as_str());
        let outcome = match &result {
            Ok(Some(_)) => "forwarded",
            Ok(None) => "dropped",
            Err(_) => "failed",
        };
        if let Some(exporter) = &self.otlp {
            exporter.record(crate::otlp::SpanRecord {
                trace_id: inbound.trace.trace_id.clone(),
                span_id: format!("{:016x}", random_u64() | 1),
                parent_id: inbound.trace.parent_id.clone(),
                name: format!("step {step}"),
                start: wall_start,
                end: std::time::SystemTime::now(),
                attributes: vec![
                    ("stephost.step".into(), step.clone()),
                    ("stephost.version".into(), version_label.to_string()),
                    ("stephost.outcome".into(), outcome.to_string()),
                ],
                error: result.is_err(),
            });
        }
        if let Some(v) = version {
            use std::sync::atomic::Ordering::Relaxed;
            v.stats.events.fetch_add(1, Relaxed);
            if result.is_err() {
                v.stats.errors.fetch_add(1, Relaxed);
            }
        }
        self.metrics
            .step_seconds
            .get_or_create(&labels(&[("step", &step), ("version", version_label)]))
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .steps
            .get_or_create(&labels(&[
                ("step", &step),
                ("version", version_label),
                ("outcome", outcome),
            ]))
            .inc();
        result
    }

    async fn call_step_once(
        &self,
        target: &StepTarget,
        version: Option<&StepVersion>,
        event: Event,
        namespace: &str,
        inbound: &Inbound,
    ) -> Result<Option<Event>, HopError> {
        match target {
            StepTarget::Wasm(step) => {
                let version = version.unwrap_or_else(|| inbound.choose(step));
                let _place = step
                    .gate
                    .enter()
                    .await
                    .map_err(|full| HopError::shed(&step.name, full))?;
                let output = version
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
        inbound: &Inbound,
    ) -> Result<Option<Event>, HopError> {
        let (status, headers, body) = self.post(url, event, namespace, inbound, true).await?;
        if !status.is_success() {
            return Err(status_error(url, status, &headers, body));
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
                    kind: HopErrorKind::Fatal,
                    body,
                    retry_after: None,
                }),
        }
    }

    /// Deliver an event to a sink (a reply or a dead-letter sink) once: any
    /// 2xx is success, an event in the response is ignored.
    pub async fn deliver(
        &self,
        url: &Url,
        event: Event,
        namespace: &str,
        inbound: &Inbound,
    ) -> Result<(), HopError> {
        let (status, headers, body) = self.post(url, event, namespace, inbound, false).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(status_error(url, status, &headers, body))
        }
    }

    /// One POST of `event` in binary mode; transport failures are 500s.
    async fn post(
        &self,
        url: &Url,
        event: Event,
        namespace: &str,
        inbound: &Inbound,
        prefer_reply: bool,
    ) -> Result<(StatusCode, HeaderMap, Bytes), HopError> {
        let (ce_headers, body) = event::to_http(event)
            .map_err(|e| HopError::local(500, e.to_string(), HopErrorKind::Fatal))?;
        let mut request = Request::post(url.as_str())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| transport(url, e))?;
        let headers = request.headers_mut();
        headers.extend(inbound.headers.clone());
        headers.extend(ce_headers);
        if prefer_reply {
            headers.insert("prefer", HeaderValue::from_static("reply"));
        }
        if let Ok(ns) = HeaderValue::from_str(namespace) {
            headers.insert(HeaderName::from_static("kn-namespace"), ns);
        }
        if let Ok(tp) = HeaderValue::from_str(&inbound.trace.child_header()) {
            headers.insert(HeaderName::from_static("traceparent"), tp);
        }
        // Waiting on the remote is no work for this host's cores.
        crate::admission::away(async {
            let response =
                tokio::time::timeout(DEFAULT_REMOTE_TIMEOUT, self.client.request(request))
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
        })
        .await
    }
}

/// Run `attempt` up to `retry + 1` times per `delivery`: each attempt bounded
/// by `timeout`, retryable failures retried after the backoff (or an honoured
/// `Retry-After`), others returned at once.
async fn retrying<T, F, Fut>(
    delivery: &Delivery,
    retries: &Counter,
    mut attempt: F,
) -> Result<T, HopError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, HopError>>,
{
    let mut k = 0;
    loop {
        let outcome = match delivery.timeout {
            Some(limit) => tokio::time::timeout(limit, attempt())
                .await
                .unwrap_or_else(|_| Err(timed_out(limit))),
            None => attempt().await,
        };
        let error = match outcome {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if !error.is_retryable() || k >= delivery.retry {
            return Err(error);
        }
        k += 1;
        retries.inc();
        let mut wait = delivery.backoff(k);
        if let (Some(cap), Some(after)) = (delivery.retry_after_max, error.retry_after) {
            wait = wait.max(after.min(cap));
        }
        tracing::debug!(attempt = k, wait_ms = wait.as_millis() as u64, error = %error, "retrying");
        if !wait.is_zero() {
            crate::admission::away(tokio::time::sleep(wait)).await;
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
fn retry_after(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
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

fn status_error(url: &Url, status: StatusCode, headers: &HeaderMap, body: Bytes) -> HopError {
    HopError {
        status: status.as_u16(),
        message: format!("{url} answered {status}"),
        kind: HopErrorKind::retryable_if(is_retryable_status(status.as_u16())),
        retry_after: retry_after(status, headers),
        body,
    }
}

impl HopError {
    /// A failure without a remote response: its message is also the body
    /// reported in `knativeerrordata`.
    fn local(status: u16, message: String, kind: HopErrorKind) -> Self {
        HopError {
            status,
            body: Bytes::from(message.clone().into_bytes()),
            message,
            kind,
            retry_after: None,
        }
    }

    /// The step's concurrency and queue are full: shed the event.
    fn shed(label: &str, full: crate::registry::GateFull) -> Self {
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

/// A transport failure (connect, reset, unreadable body): 500, retried.
fn transport(url: &Url, error: impl std::fmt::Display) -> HopError {
    HopError::local(500, format!("{url}: {error}"), HopErrorKind::Retryable)
}

fn timed_out(limit: Duration) -> HopError {
    HopError::local(
        500,
        format!("attempt timed out after {limit:?} (delivery timeout)"),
        HopErrorKind::Retryable,
    )
}

fn failure_to_hop(failure: StepFailure) -> HopError {
    HopError::local(
        failure.http_status(),
        failure.to_string(),
        HopErrorKind::retryable_if(failure.is_retryable()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::BackoffPolicy;

    #[test]
    fn selective_retry_matches_knative() {
        for s in [404, 408, 409, 429, 500, 501, 503] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [300, 301, 400, 401, 403, 405, 410, 413, 415, 422] {
            assert!(!is_retryable_status(s), "{s}");
        }
    }

    #[test]
    fn backoff_is_linear_or_exponential_from_the_first_retry() {
        let d = Duration::from_millis(100);
        let lin = Delivery {
            backoff: Some((BackoffPolicy::Linear, d)),
            ..Delivery::default()
        };
        let exp = Delivery {
            backoff: Some((BackoffPolicy::Exponential, d)),
            ..Delivery::default()
        };
        assert_eq!(
            [1, 2, 3].map(|k| lin.backoff(k).as_millis()),
            [100, 200, 300]
        );
        assert_eq!(
            [1, 2, 3].map(|k| exp.backoff(k).as_millis()),
            [100, 200, 400]
        );
        assert_eq!(exp.backoff(200), crate::registry::MAX_BACKOFF);
        assert_eq!(Delivery::default().backoff(3), Duration::ZERO);
    }

    #[test]
    fn error_data_is_base64_cut_to_1024_chars_without_overrun() {
        assert_eq!(error_data(b"hi"), "aGk=");
        assert_eq!(error_data(&[7u8; 5000]).len(), 1024);
        assert_eq!(error_data(&[]), "");
    }

    #[test]
    fn traceparent_keeps_the_trace_id_and_rejects_garbage() {
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let t = TraceContext::from_headers(&h);
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        let child = t.child_header();
        assert!(child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(!child.contains("00f067aa0ba902b7"));
        h.insert("traceparent", HeaderValue::from_static("nonsense"));
        assert_eq!(TraceContext::from_headers(&h).trace_id.len(), 32);
    }
}
