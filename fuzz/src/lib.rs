//! What each fuzz target checks, as plain functions: the libFuzzer targets in
//! `fuzz_targets/` call them, and the host's test suite runs them over the
//! seed corpus and every past crash (`tests/all/fuzz_corpus.rs`), so the
//! harnesses cannot rot and fixed crashes stay fixed.

use std::path::Path;
use std::sync::OnceLock;

use serde::Deserialize as _;
use stephost::manifest::Manifest;
use stephost::manifest::schema::KnativeSchemas;

/// Binary mode: `name: value` header lines up to a blank line, then the body.
pub fn cloudevent_binary(data: &[u8]) {
    let split = data
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or(data.len());
    let (head, body) = data.split_at(split);
    let body = body.get(2..).unwrap_or_default().to_vec();
    let mut headers = http::HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&line[..colon]),
            http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    round_trip(&headers, body);
}

/// Structured mode: the bytes as an `application/cloudevents+json` body.
pub fn cloudevent_structured(data: &[u8]) {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/cloudevents+json"),
    );
    round_trip(&headers, data.to_vec());
}

/// An event the parser accepted must reach a step (WIT) and be written back
/// out, and what the host writes it must read again, with either attribute
/// encoding (`--attribute-encoding`).
fn round_trip(headers: &http::HeaderMap, body: Vec<u8>) {
    use stephost::event::TextEncoding;
    for encoding in [TextEncoding::Raw, TextEncoding::Percent] {
        let Ok(event) = stephost::event::from_http(headers, body.clone(), encoding) else {
            continue;
        };
        let wit = stephost::runtime::guest_event::to_wit(&event);
        let back = stephost::runtime::guest_event::from_wit(wit)
            .unwrap_or_else(|e| panic!("an accepted event does not come back from WIT: {e}"));
        let (out_headers, out_body) = stephost::event::to_http(back, encoding)
            .unwrap_or_else(|e| panic!("an accepted event cannot be written: {e}"));
        if let Err(e) = stephost::event::from_http(&out_headers, out_body, encoding) {
            panic!("the host cannot read the event it wrote ({encoding:?}): {e}");
        }
    }
}

/// A manifest text: parsed strictly and leniently, every accessor `serve`
/// uses on an accepted WasmStep, and each YAML document against the
/// vendored Knative schemas.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = Path::new("/nonexistent");
    for parsed in [
        Manifest::parse(text, "fuzz.yaml", base),
        Manifest::parse_lenient(text, "fuzz.yaml", base),
    ] {
        let Ok(manifest) = parsed else { continue };
        for step in &manifest.wasm_steps {
            let _ = step.limits();
            let versions = step.versions();
            let names: Vec<&str> = versions.iter().map(|(n, _)| n.as_str()).collect();
            let _ = stephost::registry::Traffic::from_specs(&step.spec.traffic, &names);
            let _ = step.models();
            let _ = step.smoke_event();
            let _ = step.config_pairs();
        }
    }
    static SCHEMAS: OnceLock<KnativeSchemas> = OnceLock::new();
    let schemas = SCHEMAS.get_or_init(|| KnativeSchemas::load().expect("vendored CRDs load"));
    // Stop at the first error: the YAML document iterator repeats it forever.
    for doc in yaml_serde::Deserializer::from_str(text) {
        let Ok(value) = yaml_serde::Value::deserialize(doc) else {
            break;
        };
        let _ = schemas.validate(&value);
    }
}

/// The content filter's normaliser and tokenizer on any text: no panic, and
/// no combining mark or zero-width character survives normalisation.
pub fn normaliser(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let profane = |w: &str| matches!(w, "shit" | "fuck" | "cunt");
    let normal = content_filter_core::normalize(text, &profane);
    for c in normal.chars() {
        assert!(
            !matches!(c, '\u{0300}'..='\u{036F}' | '\u{200B}'..='\u{200F}' | '\u{FEFF}'),
            "{c:?} survived normalisation: {normal:?}"
        );
    }
    let _ = content_filter_core::tokenize(&normal);
    let _ = content_filter_core::tokenize(text);
}
