//! Unit tests of the CloudEvents HTTP binding: percent-encoding, required
//! attributes, batch and plain bodies refused.

use super::header_text::{percent_decode, percent_encode};
use super::*;
use crate::event::test_headers as binary;

#[test]
fn percent_encoding_round_trips_text_and_leaves_stray_percents() {
    for text in [
        "plain",
        "with space",
        "100%",
        "a\"b",
        "café ☕",
        "50%2",
        "\u{11}",
        "",
    ] {
        let encoded = percent_encode(text.as_bytes());
        assert!(
            encoded.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "{encoded}"
        );
        assert_eq!(percent_decode(&encoded).expect("utf-8"), text);
    }
    // What a sender that does not encode sends is kept where it is not an escape.
    assert_eq!(percent_decode("100%").expect("utf-8"), "100%");
    assert_eq!(percent_decode("%zz%4").expect("utf-8"), "%zz%4");
    assert!(percent_decode("%ff").is_err());
}

#[test]
fn missing_required_attributes_are_named() {
    let headers = binary(&[("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-type", "t")]);
    let err = from_http(&headers, Vec::new()).expect_err("no source");
    assert!(err.to_string().contains("source"), "{err}");
}

#[test]
fn batch_and_plain_bodies_are_refused() {
    let batch = binary(&[("content-type", "application/cloudevents-batch+json")]);
    assert_eq!(from_http(&batch, b"[]".to_vec()), Err(EventError::Batch));
    let plain = binary(&[("content-type", "application/json")]);
    assert_eq!(
        from_http(&plain, b"{}".to_vec()),
        Err(EventError::NotAnEvent)
    );
}
