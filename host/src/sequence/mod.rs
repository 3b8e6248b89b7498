//! The dispatcher: runs an event through a Sequence exactly as Knative's
//! Sequence and delivery specs say — each step in turn (a Wasm step in this
//! process, a remote step over HTTP), retries and backoff per `delivery`,
//! the reply hop, the dead-letter sink with Knative's error extensions.
//!
//! - `inbound.rs`: what an inbound request hands every hop (pass-through
//!   headers, trace context, version tags);
//! - `calls.rs`: one call of a step or a sink; `forward.rs` what a step
//!   hands on; `retry.rs` the retries of one hop per its `delivery`;
//! - `hop_error.rs`: how a hop fails and what that means for delivery.

mod calls;
mod forward;
mod hop_error;
mod inbound;
mod retry;
mod transport;

pub use forward::Forward;
pub use hop_error::{
    ChainError, Delivered, ERROR_DATA_MAX, HopError, HopErrorKind, error_data, is_retryable_status,
};
pub use inbound::{Inbound, TraceContext};
pub use transport::{HttpClient, Transport};

#[cfg(test)]
mod tests;

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use cloudevents::Event;
use cloudevents::event::ExtensionValue;
use prometheus_client::metrics::counter::Counter;

use crate::event::TextEncoding;
use crate::metrics::{Metrics, labels};
use crate::registry::{Delivery, Sequence, StepTarget};
use retry::retrying;

/// Default bound of one whole call (response body included) to a remote step
/// or sink when the delivery spec sets no `timeout` (`--remote-timeout`):
/// Knative Serving's default revision timeout (300 s), the longest a Knative
/// subscriber would be allowed to take by default anyway.
pub const DEFAULT_REMOTE_TIMEOUT: Duration = Duration::from_secs(300);

/// Largest response body read from a remote step or sink. A response event
/// larger than an inbound one is a misbehaving peer; refusing it bounds memory.
pub const MAX_RESPONSE_BYTES: usize = 8 << 20;

/// Calls steps and sinks; one per host, sharing its pooled HTTP clients.
pub struct Dispatcher {
    /// Keep-alive connection pools for remote steps, replies and sinks.
    transport: Transport,
    /// Step counts, latencies and retries are recorded here.
    metrics: Arc<Metrics>,
    /// Add `stephostversions` (which version ran each Wasm step) to outputs.
    versions_extension: bool,
    /// Exports a span per step call, when OTLP is configured.
    otlp: Option<crate::otlp::Exporter>,
    /// Bound of one whole remote call when its delivery sets no `timeout`.
    remote_timeout: Duration,
    /// How binary-mode text attributes are written and read, on every hop
    /// and in the answers to senders.
    text_encoding: TextEncoding,
}

impl Dispatcher {
    /// A dispatcher calling remote hops through `transport`, recording
    /// into `metrics`.
    pub fn new(metrics: Arc<Metrics>, transport: Transport) -> Self {
        Self {
            transport,
            metrics,
            versions_extension: true,
            otlp: None,
            remote_timeout: DEFAULT_REMOTE_TIMEOUT,
            text_encoding: TextEncoding::default(),
        }
    }

    /// Export a span per step call through `exporter`.
    pub fn with_otlp(mut self, exporter: Option<crate::otlp::Exporter>) -> Self {
        self.otlp = exporter;
        self
    }

    /// Bound every remote call whose delivery sets no `timeout` — the whole
    /// exchange, a response body that stalls included.
    pub fn with_remote_timeout(mut self, limit: Duration) -> Self {
        self.remote_timeout = limit;
        self
    }

    /// Write and read binary-mode text attributes per `encoding`.
    pub fn with_text_encoding(mut self, encoding: TextEncoding) -> Self {
        self.text_encoding = encoding;
        self
    }

    /// How binary-mode text attributes are written and read.
    pub fn text_encoding(&self) -> TextEncoding {
        self.text_encoding
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
        // The last step's input, kept for the dead-letter sink of the reply hop.
        let mut last_input: Option<Event> = None;
        let mut versions: Vec<(String, String)> = Vec::new();
        // After a remote step, its response's pass-through headers travel on.
        let mut answered: Option<Inbound> = None;
        for index in 0..seq.steps.len() {
            let hop_inbound = answered.as_ref().unwrap_or(inbound);
            match self
                .run_step(seq, index, &event, hop_inbound, &mut versions)
                .await
            {
                ControlFlow::Continue(next) => {
                    if let Some(response) = &next.response {
                        answered = Some(hop_inbound.after_response(response));
                    }
                    last_input = Some(std::mem::replace(&mut event, next.event));
                }
                ControlFlow::Break(ended) => return ended,
            }
        }
        self.stamp_versions(&mut event, &versions);
        let hop_inbound = answered.as_ref().unwrap_or(inbound);
        self.reply(seq, event, last_input, hop_inbound).await
    }

    /// Step `index` of `seq` on `event`, retried per its delivery: its output
    /// to go on with, or how the run ended (dropped on purpose, shed, or
    /// dead-lettered). Records the version that ran in `versions`.
    async fn run_step(
        &self,
        seq: &Sequence,
        index: usize,
        event: &Event,
        inbound: &Inbound,
        versions: &mut Vec<(String, String)>,
    ) -> ControlFlow<Result<Delivered, ChainError>, Forward> {
        let step = &seq.steps[index];
        // One version per step per event, kept across retries.
        let version = match &step.target {
            StepTarget::Wasm(w) => Some(inbound.version_to_run(w)),
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
        let error = match result {
            Ok(Some(next)) => return ControlFlow::Continue(next),
            Ok(None) => {
                return ControlFlow::Break(Ok(Delivered::Dropped {
                    step: index,
                    label: step.target.label(),
                }));
            }
            Err(error) => error,
        };
        let shed = error.is_shed();
        let failure = ChainError::Step {
            index,
            label: step.target.label(),
            error,
        };
        if shed {
            return ControlFlow::Break(Err(failure));
        }
        let dest = match &step.target {
            StepTarget::Wasm(w) => format!("{}/steps/{}", inbound.self_base, w.name),
            StepTarget::Remote(url) => url.to_string(),
        };
        ControlFlow::Break(
            self.dead_letter(&step.delivery, event.clone(), &dest, failure, seq, inbound)
                .await,
        )
    }

    /// The reply hop: `event` to the Sequence's `reply` under the last step's
    /// delivery, or back to the sender when there is none.
    async fn reply(
        &self,
        seq: &Sequence,
        mut event: Event,
        last_input: Option<Event>,
        inbound: &Inbound,
    ) -> Result<Delivered, ChainError> {
        let Some(url) = &seq.reply else {
            return Ok(Delivered::Returned(Box::new(event)));
        };
        for (name, value) in &seq.reply_overrides {
            event.set_extension(name, ExtensionValue::String(value.clone()));
        }
        // The reply hop runs under the last step's delivery (a Sequence has
        // at least one step).
        let delivery = seq
            .steps
            .last()
            .map(|s| s.delivery.clone())
            .unwrap_or_default();
        let attempt = || self.deliver(url, event.clone(), &seq.namespace, inbound);
        match retrying(&delivery, &self.retries(url.url.as_str()), attempt).await {
            Ok(()) => Ok(Delivered::Replied(url.url.clone())),
            Err(error) => {
                let failure = ChainError::Reply {
                    url: url.url.clone(),
                    error,
                };
                // As in Knative, the dead-letter sink gets the original input
                // of the hop whose reply failed: the last step's input.
                let original = last_input.unwrap_or(event);
                self.dead_letter(&delivery, original, url.url.as_str(), failure, seq, inbound)
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
        match retrying(delivery, &self.retries(sink.url.as_str()), attempt).await {
            Ok(()) => {
                self.metrics
                    .dead_lettered
                    .get_or_create(&labels(&[("sequence", &seq.name)]))
                    .inc();
                tracing::warn!(sequence = %seq.name, error = %failure, sink = %sink, "dead-lettered");
                Ok(Delivered::DeadLettered {
                    sink: sink.url.clone(),
                    cause: Box::new(failure),
                })
            }
            Err(error) => Err(ChainError::DeadLetter {
                sink: sink.url.clone(),
                cause: Box::new(failure),
                error,
            }),
        }
    }
}
