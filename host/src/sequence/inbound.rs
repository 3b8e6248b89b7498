//! What travels from the inbound request to every hop: Knative's
//! pass-through headers, the W3C trace context (a new span per outgoing
//! request), `Stephost-Step-Tag` version tags, and this host's own URL.

use http::HeaderMap;

use crate::registry::{StepVersion, WasmStep};

/// What travels from the inbound request to every hop.
#[derive(Debug, Clone, Default)]
pub struct Inbound {
    /// Pass-through headers (eventing `pkg/utils/headers.go`: exact
    /// `x-request-id`, `retry-after`; prefixes `knative-`, `x-b3-`), and the
    /// trace context's `tracestate` and `baggage`.
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
    pub fn version_to_run<'a>(&self, step: &'a WasmStep) -> &'a StepVersion {
        step.version_to_run(self.tag_for(&step.name), (random_u64() % 100) as u32)
    }

    /// What travels on after a remote step answered with an event: the
    /// pass-through headers of its *response* (as Knative forwards a
    /// subscriber's reply to the next channel or the reply), with this
    /// event's `tracestate` and `baggage` (trace context the host carries).
    pub fn after_response(&self, response: &HeaderMap) -> Inbound {
        let mut headers = HeaderMap::new();
        for (name, value) in response {
            if passes_through(name.as_str()) {
                headers.append(name.clone(), value.clone());
            }
        }
        for name in ["tracestate", "baggage"] {
            for value in self.headers.get_all(name) {
                headers.append(name, value.clone());
            }
        }
        Inbound {
            headers,
            ..self.clone()
        }
    }

    /// Pick what travels on out of an inbound request.
    pub fn from_request(headers: &HeaderMap) -> Self {
        let mut kept = HeaderMap::new();
        for (name, value) in headers {
            let n = name.as_str();
            if passes_through(n) || n == "tracestate" || n == "baggage" {
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
pub(super) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// Knative's pass-through headers (eventing `pkg/utils/headers.go`): exact
/// `x-request-id`, `retry-after`; prefixes `knative-`, `x-b3-`.
fn passes_through(name: &str) -> bool {
    name == "x-request-id"
        || name == "retry-after"
        || name.starts_with("knative-")
        || name.starts_with("x-b3-")
}
