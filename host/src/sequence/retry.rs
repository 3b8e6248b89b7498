//! Retrying one hop per its `delivery`: each attempt bounded by its timeout,
//! retryable failures retried after the backoff or an honoured `Retry-After`.

use std::future::Future;

use prometheus_client::metrics::counter::Counter;

use super::hop_error::{HopError, timed_out};
use crate::registry::Delivery;

/// Run `attempt` up to `retry + 1` times per `delivery`: each attempt bounded
/// by `timeout`, retryable failures retried after the backoff (or an honoured
/// `Retry-After`), others returned at once.
pub(super) async fn retrying<T, F, Fut>(
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
