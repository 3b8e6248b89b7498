//! The event endpoints: `POST /` and `POST /sequences/{name}` run a
//! Sequence, `POST /steps/{name}` runs one Wasm step as a Knative subscriber
//! would answer. Each event passes the admission door, is read within its
//! limits, runs on one configuration snapshot, and is answered only once it
//! reached the reply, was returned, or was dropped on purpose.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cloudevents::{AttributesReader, Event};

use super::error::{ApiError, api_error, error, read_body, ready, too_large};
use super::state::AppState;
use crate::admission::Overloaded;
use crate::event;
use crate::metrics::{Metrics, labels};
use crate::registry::{Registry, Sequence, StepTarget};
use crate::sequence::{ChainError, Delivered, HopError, Inbound};

pub(super) async fn ingress_default(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    ingress(&state, None, headers, body).await
}

pub(super) async fn ingress_named(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    ingress(&state, Some(name), headers, body).await
}

/// Find the Sequence (`None` = the only one) and run the event through it.
async fn ingress(
    state: &AppState,
    name: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let registry = ready(state.live.current())?;
    let seq = match &name {
        Some(name) => registry.sequences.get(name).cloned().ok_or_else(|| {
            api_error(StatusCode::NOT_FOUND, format!("no Sequence named {name:?}"))
        })?,
        None => registry.default_sequence().cloned().ok_or_else(|| {
            let names: Vec<&String> = registry.sequences.keys().collect();
            api_error(
                StatusCode::NOT_FOUND,
                format!(
                    "POST / needs exactly one Sequence, this host has {}: POST \
                     /sequences/{{name}} with one of {names:?}",
                    names.len()
                ),
            )
        })?,
    };
    if headers.contains_key("stephost-step-tag") {
        check_tags(&registry, &Inbound::from_request(&headers))?;
    }
    Ok(run_sequence(state, &seq, headers, body).await)
}

pub(super) async fn step_endpoint(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let registry = ready(state.live.current())?;
    let Some(step) = registry.steps.get(&name).cloned() else {
        return Err(api_error(
            StatusCode::NOT_FOUND,
            format!("no WasmStep named {name:?}"),
        ));
    };
    // An in-flight place first (the body may then be read); the running
    // place comes with `run`.
    let admitted = match state.admission.enter() {
        Ok(admitted) => admitted,
        Err(refusal) => return Ok(refused(refusal)),
    };
    let event = read_event(&state, &headers, body).await?;
    let inbound = Inbound::from_request(&headers);
    check_tags(&registry, &inbound)?;
    let ran = admitted
        .run(async {
            let version = inbound.version_to_run(&step);
            let stamp = vec![(step.name.clone(), version.name.clone())];
            let target = StepTarget::Wasm(step.clone());
            let called = state
                .dispatcher
                .call_step(&target, Some(version), event, "", &inbound)
                .await;
            match called {
                Ok(Some(forward)) => {
                    let mut output = forward.event;
                    state.dispatcher.stamp_versions(&mut output, &stamp);
                    event_response(&state, StatusCode::OK, output)
                }
                Ok(None) => StatusCode::ACCEPTED.into_response(),
                Err(hop) => hop_response(&hop, format!("step {name:?}: {}", hop.message)),
            }
        })
        .await;
    Ok(ran.unwrap_or_else(refused))
}

/// A `Stephost-Step-Tag` must name a step and one of its tags: a request for
/// a version that does not exist is refused, not silently split.
fn check_tags(registry: &Registry, inbound: &Inbound) -> Result<(), ApiError> {
    for (step, tag) in &inbound.tags {
        let Some(s) = registry.steps.get(step) else {
            return Err(api_error(
                StatusCode::BAD_REQUEST,
                format!("Stephost-Step-Tag: no WasmStep named {step:?}"),
            ));
        };
        if !s.has_tag(tag) {
            return Err(api_error(
                StatusCode::BAD_REQUEST,
                format!(
                    "Stephost-Step-Tag: step {step:?} has no version tagged {tag:?} (tags: {})",
                    s.tags().join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// A refusal by the admission door: 429 with `Retry-After`, so Knative's
/// dispatcher (which retries 429) backs off instead of the host queueing
/// without bound.
fn refused(refusal: Overloaded) -> Response {
    overloaded(format!("{refusal}; retry later"))
}

/// 429 with `Retry-After: 1`: Knative's dispatcher retries 429 with backoff.
fn overloaded(message: String) -> Response {
    let mut response = error(StatusCode::TOO_MANY_REQUESTS, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

async fn run_sequence(
    state: &AppState,
    seq: &Sequence,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let count = |outcome: &str| {
        state
            .metrics
            .events
            .get_or_create(&labels(&[("sequence", &seq.name), ("outcome", outcome)]))
            .inc();
    };
    let admitted = match state.admission.enter() {
        Ok(admitted) => admitted,
        Err(refusal) => {
            count("overloaded");
            return refused(refusal);
        }
    };
    let event = match read_event(state, &headers, body).await {
        Ok(event) => event,
        Err(e) => {
            count("rejected");
            return e.into_response();
        }
    };
    let ran = if state.bare_answer {
        admitted
            .run(async {
                count("returned");
                event_response(state, StatusCode::OK, event)
            })
            .await
    } else {
        admitted
            .run(dispatch(state, seq, event, &headers, &count))
            .await
    };
    ran.unwrap_or_else(|refusal| {
        count("overloaded");
        refused(refusal)
    })
}

/// The running part of [`run_sequence`]: dispatch, answer.
async fn dispatch(
    state: &AppState,
    seq: &Sequence,
    event: Event,
    headers: &HeaderMap,
    count: impl Fn(&str),
) -> Response {
    state.metrics.in_flight.inc();
    let _in_flight = InFlight(&state.metrics);
    let id = event.id().to_string();
    let inbound = Inbound::from_request(headers);
    match state.dispatcher.run(seq, event, &inbound).await {
        Ok(Delivered::Replied(url)) => {
            count("replied");
            tracing::debug!(sequence = %seq.name, event_id = %id, reply = %url, "delivered");
            StatusCode::ACCEPTED.into_response()
        }
        Ok(Delivered::Dropped { step, label }) => {
            count("dropped");
            tracing::debug!(sequence = %seq.name, event_id = %id, step, %label, "dropped by step");
            StatusCode::ACCEPTED.into_response()
        }
        Ok(Delivered::Returned(output)) => {
            count("returned");
            event_response(state, StatusCode::OK, *output)
        }
        Ok(Delivered::DeadLettered { sink, cause }) => {
            count("dead_lettered");
            tracing::warn!(sequence = %seq.name, event_id = %id, sink = %sink, error = %cause, "event dead-lettered");
            StatusCode::ACCEPTED.into_response()
        }
        Err(chain) if chain.hop().is_shed() => {
            count("overloaded");
            tracing::debug!(sequence = %seq.name, event_id = %id, error = %chain, "shed");
            chain_response(seq, &chain)
        }
        Err(chain) => {
            count("failed");
            tracing::warn!(sequence = %seq.name, event_id = %id, error = %chain, "sequence failed");
            chain_response(seq, &chain)
        }
    }
}

/// Decrements the in-flight gauge when a run ends, however it ends.
struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// A failed chain that no dead-letter sink took: 500, so the sender retries
/// (Knative's channel ingress answers 500 to any dispatch failure). Nothing
/// was acknowledged, so nothing is lost.
fn chain_response(seq: &Sequence, chain: &ChainError) -> Response {
    if chain.hop().is_shed() {
        return overloaded(format!("sequence {:?}: {chain}", seq.name));
    }
    let hint = if chain.hop().is_retryable() {
        ""
    } else {
        " (retrying cannot help this event; configure a deadLetterSink to keep it)"
    };
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("sequence {:?}: {chain}{hint}", seq.name),
    )
}

fn hop_response(hop: &HopError, message: String) -> Response {
    if hop.is_shed() {
        return overloaded(message);
    }
    let status = if hop.is_retryable() {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    error(status, message)
}

/// Read the body (bounded) and parse one CloudEvent; 4xx on bad input.
async fn read_event(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Event, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > state.max_event_bytes) {
        return Err(too_large(state.max_event_bytes));
    }
    let bytes = read_body(state, body, state.max_event_bytes, "--max-event-bytes").await?;
    event::from_http(headers, bytes.to_vec(), state.dispatcher.text_encoding())
        .map_err(|e| api_error(StatusCode::BAD_REQUEST, e.to_string()))
}

/// An event as a binary-mode HTTP response.
fn event_response(state: &AppState, status: StatusCode, event: Event) -> Response {
    match event::to_http(event, state.dispatcher.text_encoding()) {
        Ok((headers, body)) => {
            let mut response = (status, body).into_response();
            response.headers_mut().extend(headers);
            response
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
