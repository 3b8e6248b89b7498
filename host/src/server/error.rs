//! JSON error answers (`{"error": "...", "status": N}`) and the bounded
//! reading of a request body that every handler shares.

use std::sync::Arc;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};

use super::state::AppState;
use crate::registry::Registry;

/// A request that cannot be served: rendered as a JSON error body.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What is wrong, for the caller.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "status": self.status.as_u16() });
        (self.status, axum::Json(body)).into_response()
    }
}

/// A JSON error response.
pub(crate) fn error(status: StatusCode, message: String) -> Response {
    ApiError { status, message }.into_response()
}

/// An [`ApiError`] with this status and message.
pub(crate) fn api_error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
    }
}

/// The live configuration, or 503 while components are still compiling.
pub(crate) fn ready(current: Option<Arc<Registry>>) -> Result<Arc<Registry>, ApiError> {
    current.ok_or_else(|| {
        api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: components are still compiling",
        )
    })
}

/// Read a request body of at most `limit` bytes within the read timeout:
/// 413 beyond the limit, 408 when the client stops sending (a slowloris
/// body, or a `Content-Length` larger than what is sent), 400 when the
/// body cannot be read (a reset, a malformed chunk).
pub(crate) async fn read_body(
    state: &AppState,
    body: Body,
    limit: usize,
    flag: &str,
) -> Result<bytes::Bytes, ApiError> {
    let read = tokio::time::timeout(state.read_timeout, Limited::new(body, limit).collect());
    match read.await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body is larger than the limit of {limit} bytes ({flag})"),
        )),
        Ok(Err(e)) => Err(api_error(
            StatusCode::BAD_REQUEST,
            format!("cannot read the request body: {e}"),
        )),
        Err(_) => Err(api_error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {:?} (--read-timeout)",
                state.read_timeout
            ),
        )),
    }
}

/// 413 for a body declared or found larger than `--max-event-bytes`.
pub(crate) fn too_large(limit: usize) -> ApiError {
    api_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("event body is larger than the limit of {limit} bytes (--max-event-bytes)"),
    )
}
