//! One call of a step or a sink: a Wasm step through its gate and runtime,
//! a remote step, reply or dead-letter sink over HTTP (bounded response,
//! timeout per attempt), each retried per the hop's `delivery`.

use bytes::Bytes;
use cloudevents::Event;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};

use super::forward::Forward;
use super::hop_error::*;
use super::inbound::random_u64;
use super::*;
use crate::error_chain::with_causes;
use crate::event;
use crate::registry::{Address, StepTarget, StepVersion};
use crate::runtime::StepFailure;
use crate::runtime::guest_event::{from_wit, to_wit};

impl Dispatcher {
    /// Call one step once: what it hands on, or `None` when it dropped the
    /// event.
    pub async fn call_step(
        &self,
        target: &StepTarget,
        version: Option<&StepVersion>,
        event: Event,
        namespace: &str,
        inbound: &Inbound,
    ) -> Result<Option<Forward>, HopError> {
        let started = std::time::Instant::now();
        let wall_start = self.otlp.as_ref().map(|_| std::time::SystemTime::now());
        let version = match (version, target) {
            (Some(v), _) => Some(v),
            (None, StepTarget::Wasm(w)) => Some(inbound.version_to_run(w)),
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
        let fresh;
        let series = match version {
            Some(v) => v
                .stats
                .series
                .get_or_init(|| self.metrics.step_series(&step, version_label)),
            None => {
                fresh = self.metrics.step_series(&step, version_label);
                &fresh
            }
        };
        let (outcome, counter) = match &result {
            Ok(Some(_)) => ("forwarded", &series.forwarded),
            Ok(None) => ("dropped", &series.dropped),
            Err(_) => ("failed", &series.failed),
        };
        if let (Some(exporter), Some(wall_start)) = (&self.otlp, wall_start) {
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
        series.seconds.observe(started.elapsed().as_secs_f64());
        counter.inc();
        result
    }

    async fn call_step_once(
        &self,
        target: &StepTarget,
        version: Option<&StepVersion>,
        event: Event,
        namespace: &str,
        inbound: &Inbound,
    ) -> Result<Option<Forward>, HopError> {
        match target {
            StepTarget::Wasm(step) => {
                let version = version.unwrap_or_else(|| inbound.version_to_run(step));
                let _place = step
                    .gate
                    .enter()
                    .await
                    .map_err(|full| HopError::shed(&step.name, full))?;
                let output = version
                    .component
                    .handle(to_wit(&event))
                    .await
                    .map_err(failure_to_hop)?;
                match output {
                    None => Ok(None),
                    Some(wit) => from_wit(wit)
                        .map(|event| {
                            Some(Forward {
                                event,
                                response: None,
                            })
                        })
                        .map_err(|e| failure_to_hop(StepFailure::InvalidOutput(e.to_string()))),
                }
            }
            StepTarget::Remote(url) => self.call_remote(url, event, namespace, inbound).await,
        }
    }

    /// POST to a remote subscriber with `Prefer: reply` and read its reply.
    async fn call_remote(
        &self,
        address: &Address,
        event: Event,
        namespace: &str,
        inbound: &Inbound,
    ) -> Result<Option<Forward>, HopError> {
        let url = &address.url;
        let (status, headers, body) = self.post(address, event, namespace, inbound, true).await?;
        if !status.is_success() {
            return Err(status_error(url, status, &headers, body));
        }
        // Any 2xx carrying an event is a reply; any other 2xx (an unknown
        // specversion included) is not an event and ends the chain (eventing
        // executeRequest, "non event, discard").
        match event::response_mode(&headers) {
            event::Mode::Unknown => Ok(None),
            _ => event::from_http(&headers, body.to_vec(), self.text_encoding)
                .map(|event| {
                    Some(Forward {
                        event,
                        response: Some(headers),
                    })
                })
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
        address: &Address,
        event: Event,
        namespace: &str,
        inbound: &Inbound,
    ) -> Result<(), HopError> {
        let url = &address.url;
        let (status, headers, body) = self.post(address, event, namespace, inbound, false).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(status_error(url, status, &headers, body))
        }
    }

    /// One POST of `event` in binary mode; transport failures are 500s.
    async fn post(
        &self,
        address: &Address,
        event: Event,
        namespace: &str,
        inbound: &Inbound,
        prefer_reply: bool,
    ) -> Result<(StatusCode, HeaderMap, Bytes), HopError> {
        let url = &address.url;
        let client = self
            .transport
            .client(address)
            .map_err(|e| transport(url, e))?;
        let (ce_headers, body) = event::to_http(event, self.text_encoding)
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
        // The whole exchange is bounded, a body that stalls after its head
        // included (a delivery `timeout` bounds the attempt around this too).
        let limit = self.remote_timeout;
        let exchange = async {
            let response = client
                .request(request)
                .await
                .map_err(|e| transport(url, with_causes(&e)))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| transport(url, format!("reading the response body: {e}")))?
                .to_bytes();
            Ok((parts.status, parts.headers, body))
        };
        crate::admission::away(async {
            tokio::time::timeout(limit, exchange)
                .await
                .unwrap_or_else(|_| {
                    Err(transport(
                        url,
                        format!("no complete response within {limit:?} (--remote-timeout)"),
                    ))
                })
        })
        .await
    }
}
