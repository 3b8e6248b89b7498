//! Optional trace export: when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, every step call becomes an
//! OTLP span in the event's W3C trace, posted in batches as OTLP/HTTP JSON.
//!
//! Hand-written rather than the `opentelemetry-otlp` crate: that pulls in a
//! gRPC or HTTP client stack and protobuf code that would add minutes to
//! every 2-core build, while OTLP/HTTP with JSON encoding is a stable,
//! documented wire format that needs ~100 lines on the HTTP client the host
//! already has. Export never slows events down: spans go through a bounded
//! queue and are dropped (and counted in the log) when it is full or the
//! collector is down.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokio::sync::mpsc;

/// One finished span.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    /// 32 hex digits: the event's trace.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// The inbound request's span (16 hex digits), if it sent one.
    pub parent_id: Option<String>,
    /// `step <name>`.
    pub name: String,
    /// Wall-clock start and end.
    pub start: SystemTime,
    /// See `start`.
    pub end: SystemTime,
    /// Attributes (string values).
    pub attributes: Vec<(String, String)>,
    /// Whether the call failed.
    pub error: bool,
}

/// Queues spans for the background exporter.
#[derive(Clone)]
pub struct Exporter {
    /// Finished spans for the sender task; bounded, so a slow collector costs spans, never events.
    queue: mpsc::Sender<SpanRecord>,
}

/// Spans waiting to be sent, at most: beyond, new spans are dropped.
const QUEUE: usize = 4096;
/// Spans per request, at most.
const BATCH: usize = 512;

impl Exporter {
    /// An exporter for the endpoint in the environment, started on the
    /// current tokio runtime; `None` when no endpoint is set.
    pub fn from_env() -> Option<Self> {
        let url = match std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Ok(u) if !u.is_empty() => u,
            _ => {
                let base = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok()?;
                if base.is_empty() {
                    return None;
                }
                format!("{}/v1/traces", base.trim_end_matches('/'))
            }
        };
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run(url.clone(), receiver));
        tracing::info!(endpoint = %url, "exporting step spans as OTLP/HTTP JSON");
        Some(Self { queue })
    }

    /// Queue a finished span; dropped if the queue is full.
    pub fn record(&self, span: SpanRecord) {
        if self.queue.try_send(span).is_err() {
            tracing::debug!("OTLP queue full: span dropped");
        }
    }
}

fn nanos(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
        .to_string()
}

/// The OTLP/HTTP JSON body for a batch of spans.
pub fn encode(spans: &[SpanRecord]) -> serde_json::Value {
    let spans: Vec<_> = spans
        .iter()
        .map(|s| {
            json!({
                "traceId": s.trace_id,
                "spanId": s.span_id,
                "parentSpanId": s.parent_id.clone().unwrap_or_default(),
                "name": s.name,
                "kind": 1,
                "startTimeUnixNano": nanos(s.start),
                "endTimeUnixNano": nanos(s.end),
                "attributes": s.attributes.iter().map(|(k, v)| json!({
                    "key": k, "value": {"stringValue": v}
                })).collect::<Vec<_>>(),
                "status": {"code": if s.error { 2 } else { 1 }},
            })
        })
        .collect();
    json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue":
                    std::env::var("OTEL_SERVICE_NAME").or_else(|_| std::env::var("K_SERVICE"))
                        .unwrap_or_else(|_| "stephost".into())}},
            ]},
            "scopeSpans": [{
                "scope": {"name": "stephost", "version": env!("CARGO_PKG_VERSION")},
                "spans": spans,
            }],
        }]
    })
}

async fn run(url: String, mut receiver: mpsc::Receiver<SpanRecord>) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        // Wait for the first span, then gather for up to a second.
        match receiver.recv().await {
            Some(span) => batch.push(span),
            None => return,
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(span)) => batch.push(span),
                Ok(None) | Err(_) => break,
            }
        }
        let body = encode(&batch).to_string();
        let count = batch.len();
        batch.clear();
        let request = http::Request::post(&url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)));
        let Ok(request) = request else {
            tracing::warn!(endpoint = %url, "OTLP endpoint is not a valid URL: spans dropped");
            continue;
        };
        match tokio::time::timeout(Duration::from_secs(10), client.request(request)).await {
            Ok(Ok(response)) if response.status().is_success() => {}
            Ok(Ok(response)) => {
                tracing::debug!(status = %response.status(), count, "OTLP collector refused spans")
            }
            Ok(Err(e)) => tracing::debug!(error = %e, count, "OTLP export failed"),
            Err(_) => tracing::debug!(count, "OTLP export timed out"),
        }
    }
}
