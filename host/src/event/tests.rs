//! Unit tests of the CloudEvents HTTP binding: percent-encoding, required
//! attributes, batch and plain bodies refused.

use super::header_text::{percent_decode, percent_encode};
use super::*;
use crate::event::test_headers as binary;
use cloudevents::event::AttributesWriter as _;

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
    let err = from_http(&headers, Vec::new(), TextEncoding::Raw).expect_err("no source");
    assert!(err.to_string().contains("source"), "{err}");
}

#[test]
fn batch_and_plain_bodies_are_refused() {
    let batch = binary(&[("content-type", "application/cloudevents-batch+json")]);
    assert_eq!(
        from_http(&batch, b"[]".to_vec(), TextEncoding::Raw),
        Err(EventError::Batch)
    );
    let plain = binary(&[("content-type", "application/json")]);
    assert_eq!(
        from_http(&plain, b"{}".to_vec(), TextEncoding::Raw),
        Err(EventError::NotAnEvent)
    );
}

#[test]
fn raw_and_percent_text_attributes_round_trip_each_their_way() {
    let headers = binary(&[
        ("ce-specversion", "1.0"),
        ("ce-id", "a%41"),
        ("ce-source", "/s%20t"),
        ("ce-type", "t"),
        ("ce-note", "100% sure"),
    ]);
    // Raw (Knative, the SDKs): nothing decoded on the way in.
    let raw = from_http(&headers, Vec::new(), TextEncoding::Raw).expect("parses");
    assert_eq!(raw.id(), "a%41");
    assert_eq!(raw.source(), "/s%20t");
    // Percent (CloudEvents HTTP binding): `%XX` decoded.
    let percent = from_http(&headers, Vec::new(), TextEncoding::Percent).expect("parses");
    assert_eq!(percent.id(), "aA");
    assert_eq!(percent.source(), "/s%20t", "a URI keeps its own escapes");

    let mut event = raw.clone();
    event.set_subject(Some("café ☕ 50%"));
    event.set_extension("ctl", "a\u{1}b");
    event.set_extension("pad", " padded");
    let (out, _) = to_http(event.clone(), TextEncoding::Raw).expect("encodes");
    assert_eq!(out["ce-subject"].as_bytes(), "café ☕ 50%".as_bytes());
    assert_eq!(out["ce-id"], "a%41");
    // What HTTP cannot carry as it is stays percent-encoded.
    assert_eq!(out["ce-ctl"], "a%01b");
    assert_eq!(out["ce-pad"], "%20padded");
    assert_eq!(
        from_http(&out, Vec::new(), TextEncoding::Raw)
            .expect("reads back")
            .subject(),
        Some("café ☕ 50%")
    );
    let (out, _) = to_http(event, TextEncoding::Percent).expect("encodes");
    assert_eq!(out["ce-subject"], "caf%C3%A9%20%E2%98%95%2050%25");
    assert_eq!(out["ce-id"], "a%2541");
}
