//! Unit tests of the delivery rules: selective retry, backoff, error data, trace context.

use http::{HeaderMap, HeaderValue};

use super::*;
use crate::manifest::BackoffPolicy;

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
    // Every wait is capped, linear ones too (issue #21, item 6): an hour's
    // delay times the third retry would otherwise be three hours.
    let hourly = Delivery {
        backoff: Some((BackoffPolicy::Linear, Duration::from_secs(3600))),
        ..Delivery::default()
    };
    assert_eq!(hourly.backoff(3), crate::registry::MAX_BACKOFF);
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
