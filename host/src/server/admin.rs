//! The admin API under `/admin`: inspect steps, upload a new version of a
//! step's component, change its traffic split, roll back — all live, each
//! change an atomic swap of the configuration snapshot through
//! [`crate::registry::LiveConfig`].
//!
//! Off unless `STEPHOST_ADMIN_TOKEN` is set; every call then needs
//! `Authorization: Bearer <token>`, compared in constant time (401 otherwise).
//! Uploads are size-limited and compiled (and checked against the step world)
//! before anything changes; nothing touches the filesystem except wasmtime's
//! compile cache. A later change of the manifest files replaces admin changes:
//! the files stay the source of truth.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, api_error as fail, read_body, ready};
use super::state::AppState;
use crate::manifest::{TrafficSpec, check_traffic, check_version_name};
use crate::registry::{
    Change, Registry, StepVersion, Traffic, TrafficChange, WasmStep, component_digest, go_live,
};

/// The `/admin` routes (mounted only when a token is configured).
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/steps", get(list))
        .route("/admin/steps/{step}/versions/{version}", put(upload))
        .route("/admin/steps/{step}/traffic", put(set_traffic))
        .route("/admin/steps/{step}/rollback", post(rollback))
}

/// Equal in time independent of where the inputs differ (the length of the
/// presented token is not secret-dependent beyond its own length). Written
/// here rather than taking a crate for eight lines.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= std::hint::black_box(x ^ y);
    }
    diff == 0
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.admin_token else {
        return Err(fail(StatusCode::NOT_FOUND, "no such endpoint"));
    };
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(presented.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(fail(
            StatusCode::UNAUTHORIZED,
            "admin API: missing or wrong Authorization: Bearer token",
        ))
    }
}

fn step_of(registry: &Registry, name: &str) -> Result<Arc<WasmStep>, ApiError> {
    registry
        .steps
        .get(name)
        .cloned()
        .ok_or_else(|| fail(StatusCode::NOT_FOUND, format!("no WasmStep named {name:?}")))
}

fn describe(step: &WasmStep) -> serde_json::Value {
    use std::sync::atomic::Ordering::Relaxed;
    let traffic = |t: &[Traffic]| -> Vec<serde_json::Value> {
        t.iter()
            .map(|t| {
                json!({
                    "version": step.versions[t.version].name,
                    "percent": t.percent,
                    "tag": t.tag,
                })
            })
            .collect()
    };
    json!({
        "name": step.name,
        "versions": step.versions.iter().map(|v| json!({
            "name": v.name,
            "source": v.source,
            "digest": format!("sha256:{}", v.digest),
            "events": v.stats.events.load(Relaxed),
            "errors": v.stats.errors.load(Relaxed),
        })).collect::<Vec<_>>(),
        "traffic": traffic(&step.traffic),
        "previousTraffic": traffic(&step.previous_traffic),
    })
}

/// `GET /admin/steps`: every step's versions (digest, counts), traffic.
async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let registry = ready(state.live.current())?;
    let steps: Vec<_> = registry.steps.values().map(|s| describe(s)).collect();
    Ok(axum::Json(json!({ "steps": steps })).into_response())
}

/// Make `registry` with `step` replaced live; answers the step as it is now.
fn publish(change: &Change<'_>, registry: &Registry, step: WasmStep) -> serde_json::Value {
    let described = describe(&step);
    change.replace_step(registry, step);
    described
}

/// `PUT /admin/steps/{step}/versions/{version}`: body = component bytes.
/// Compiled with the step's settings off the async threads; a new name is
/// added with no traffic, an existing name is replaced in place (its traffic
/// share goes to the new build at once).
async fn upload(
    State(state): State<Arc<AppState>>,
    Path((step_name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    check_version_name(&version)
        .map_err(|e| fail(StatusCode::BAD_REQUEST, format!("version name {e}")))?;
    let bytes: Bytes = read_body(
        &state,
        body,
        state.max_component_bytes,
        "--max-component-bytes",
    )
    .await?;
    let runtime = state.runtime.clone();
    let change = state.live.change().await;
    let registry = ready(change.current())?;
    let step = step_of(&registry, &step_name)?;
    let template = step.versions[0].component.clone();
    let origin = format!("admin upload {step_name}/{version}");
    let compile_bytes = bytes.clone();
    let compiled = tokio::task::spawn_blocking(move || {
        runtime.compile_new_version(&template, &origin, &compile_bytes)
    })
    .await
    .map_err(|e| {
        fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("compile task: {e}"),
        )
    })?
    .map_err(|e| fail(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    go_live(&compiled, step.smoke_event.as_deref())
        .await
        .map_err(|e| fail(StatusCode::UNPROCESSABLE_ENTITY, e.describe(&version)))?;
    let digest = component_digest(&bytes);
    tracing::info!(step = %step_name, %version, %digest, "admin: version uploaded");
    let new_version = StepVersion {
        name: version.clone(),
        component: compiled,
        source: "admin upload (this pod only)".into(),
        digest,
        stats: Arc::default(),
    };
    let mut updated = (*step).clone();
    match updated.versions.iter().position(|v| v.name == version) {
        Some(i) => updated.versions[i] = new_version,
        None => updated.versions.push(new_version),
    }
    Ok(axum::Json(publish(&change, &registry, updated)).into_response())
}

/// Body of `PUT /admin/steps/{step}/traffic`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrafficBody {
    /// The new split, as in a manifest's `spec.traffic`.
    traffic: Vec<TrafficSpec>,
}

/// `PUT /admin/steps/{step}/traffic`: `{"traffic": [{"version": "v1",
/// "percent": 90}, {"version": "v2", "percent": 10, "tag": "canary"}]}`,
/// checked like the manifest's; the old split is kept for `rollback`.
async fn set_traffic(
    State(state): State<Arc<AppState>>,
    Path(step_name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let body: TrafficBody = serde_json::from_slice(&body)
        .map_err(|e| fail(StatusCode::BAD_REQUEST, format!("traffic JSON: {e}")))?;
    let change = state.live.change().await;
    let registry = ready(change.current())?;
    let step = step_of(&registry, &step_name)?;
    let names: BTreeSet<&str> = step.versions.iter().map(|v| v.name.as_str()).collect();
    check_traffic(&body.traffic, &names)
        .map_err(|(field, message)| fail(StatusCode::BAD_REQUEST, format!("{field}: {message}")))?;
    let version_names: Vec<&str> = step.versions.iter().map(|v| v.name.as_str()).collect();
    let traffic = Traffic::from_specs(&body.traffic, &version_names);
    let updated = WasmStep {
        traffic,
        previous_traffic: step.traffic.clone(),
        changed: Some(Arc::new(TrafficChange {
            at: std::time::Instant::now(),
            baseline: step.counts(),
        })),
        ..(*step).clone()
    };
    tracing::info!(step = %step_name, "admin: traffic changed");
    Ok(axum::Json(publish(&change, &registry, updated)).into_response())
}

/// `POST /admin/steps/{step}/rollback`: back to the split before the last
/// traffic change (which becomes the one to roll back to).
async fn rollback(
    State(state): State<Arc<AppState>>,
    Path(step_name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let change = state.live.change().await;
    let registry = ready(change.current())?;
    let step = step_of(&registry, &step_name)?;
    if step.previous_traffic.is_empty() {
        return Err(fail(
            StatusCode::CONFLICT,
            format!("step {step_name:?} has no previous traffic split to roll back to"),
        ));
    }
    tracing::warn!(step = %step_name, "admin: rolled back");
    Ok(axum::Json(publish(&change, &registry, step.rolled_back())).into_response())
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
