//! CloudEvents in and out: HTTP (binary and structured mode) ⇄ the SDK's
//! `Event` ⇄ the WIT `cloud-event` record a step sees.
//!
//! Parsing follows the CloudEvents HTTP protocol binding 1.0 as the Knative
//! data plane applies it (sdk-go `ReadEncoding`): `application/cloudevents+json`
//! is structured mode, `application/cloudevents-batch+json` is batch mode
//! (refused, as channel and broker ingresses do), anything else is binary mode
//! and needs a `ce-specversion` header. Events are always written in binary
//! mode, as Knative's dispatcher does.

use cloudevents::event::{Data, SpecVersion};
use cloudevents::{AttributesReader, Event};
use http::{HeaderMap, HeaderValue, header};

mod error;
mod header_text;

pub use error::EventError;
use error::{BATCH, STRUCTURED};
pub use header_text::TextEncoding;
use header_text::{
    decode_text_attributes, encode_text_attributes, raw_text_headers, raw_text_percent_encoded,
};

/// Most extensions an event may carry, in and out. Binary mode sends each as
/// an HTTP header: hyper-based receivers refuse more than 100 headers and the
/// standard `ce-*` and transport headers need room too.
pub const MAX_EXTENSIONS: usize = 64;
/// Which CloudEvents HTTP content mode a message uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Attributes in `ce-*` headers, data in the body.
    Binary,
    /// The whole event as a JSON document.
    Structured,
    /// A JSON array of events.
    Batch,
    /// Not a CloudEvent at all.
    Unknown,
}

/// Detect the content mode of a message the way sdk-go's `ReadEncoding` does.
pub fn mode(headers: &HeaderMap) -> Mode {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match media.as_deref() {
        Some(STRUCTURED) => Mode::Structured,
        Some(BATCH) => Mode::Batch,
        _ if headers.contains_key("ce-specversion") => Mode::Binary,
        _ => Mode::Unknown,
    }
}

/// The content mode of a subscriber's *response*, as Knative's dispatcher
/// (sdk-go `ReadEncoding`) reads it: binary only when `ce-specversion` holds
/// a version it knows (1.0, 0.3); a response with any other is no event, so
/// the chain stops there (eventing `executeRequest`, "non event, discard").
pub fn response_mode(headers: &HeaderMap) -> Mode {
    match mode(headers) {
        Mode::Binary
            if !matches!(
                headers.get("ce-specversion").and_then(|v| v.to_str().ok()),
                Some("1.0" | "0.3")
            ) =>
        {
            Mode::Unknown
        }
        other => other,
    }
}

/// Parse one CloudEvent from an HTTP message (request or response), its
/// binary-mode text attributes read per `encoding`.
pub fn from_http(
    headers: &HeaderMap,
    body: Vec<u8>,
    encoding: TextEncoding,
) -> Result<Event, EventError> {
    let encoded = raw_text_percent_encoded(headers, encoding);
    let headers = encoded.as_ref().unwrap_or(headers);
    match mode(headers) {
        Mode::Batch => return Err(EventError::Batch),
        Mode::Unknown => return Err(EventError::NotAnEvent),
        Mode::Binary => {
            let version = headers
                .get("ce-specversion")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if version != "1.0" && version != "0.3" {
                return Err(EventError::UnknownSpecVersion(version.to_string()));
            }
            // One value per attribute: the SDK would silently keep one of
            // several, not necessarily the one the checks below saw (guarded
            // by fuzz/regressions, replayed in test
            // `fuzz_corpus::every_seed_and_past_crash_passes_its_harness`).
            for name in headers.keys() {
                if name.as_str().starts_with("ce-") && headers.get_all(name).iter().nth(1).is_some()
                {
                    return Err(EventError::Invalid(format!(
                        "header {name} appears more than once: an attribute has one value"
                    )));
                }
            }
            // The SDK's own message does not say which attribute is wrong.
            if let Some(schema) = headers.get("ce-dataschema").filter(|_| version == "1.0") {
                let text = schema.to_str().unwrap_or("");
                if let Err(e) = url::Url::parse(text) {
                    return Err(EventError::Invalid(format!(
                        "attribute `dataschema` is not an absolute URI: {e}"
                    )));
                }
            }
        }
        Mode::Structured => {}
    }
    let structured = mode(headers) == Mode::Structured;
    let raw = if structured {
        raw_json_data(&body)
    } else {
        None
    };
    let mut event = cloudevents::binding::http::to_event(headers, body)
        .map_err(|e| EventError::Invalid(e.to_string()))?;
    if !structured {
        decode_text_attributes(&mut event)?;
    }
    // The SDK re-reads JSON `data` as a value (keys sorted, big numbers as
    // floats, escapes rewritten): keep the bytes the sender wrote instead,
    // so steps and the next hops see them unchanged.
    if let Some(raw) = raw
        && matches!(event.data(), Some(Data::Json(_)))
    {
        event.set_data_unchecked(Data::Binary(raw));
    }
    validate(&event)?;
    Ok(event)
}

/// The `data` member of a structured-mode event exactly as written, when it
/// can be read (else the SDK's reading stands, and reports any error).
fn raw_json_data(body: &[u8]) -> Option<Vec<u8>> {
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow, default)]
        data: Option<&'a serde_json::value::RawValue>,
    }
    let envelope: Envelope = serde_json::from_slice(body).ok()?;
    Some(envelope.data?.get().as_bytes().to_vec())
}

/// Required attributes must be present and non-empty (CloudEvents 1.0 §3.1;
/// sdk-go `Validate`), which the Rust SDK does not check for every mode.
pub fn validate(event: &Event) -> Result<(), EventError> {
    if event.id().is_empty() {
        return Err(EventError::MissingAttribute("id"));
    }
    if event.source().is_empty() {
        return Err(EventError::MissingAttribute("source"));
    }
    if event.ty().is_empty() {
        return Err(EventError::MissingAttribute("type"));
    }
    // A URI-reference is ASCII (RFC 3986); the SDK accepts more, which
    // binary mode cannot carry (fuzz/regressions, test
    // `fuzz_corpus::every_seed_and_past_crash_passes_its_harness`).
    if !event.source().bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(EventError::Invalid(
            "attribute `source` is not a URI-reference: it has spaces or characters outside \
             printable ASCII (percent-encode them)"
                .into(),
        ));
    }
    // A media type is ASCII (RFC 6838), and binary mode sends it as the
    // Content-Type header, where a non-ASCII one cannot be read back
    // (fuzz/regressions, test `fuzz_corpus::every_seed_and_past_crash_passes_its_harness`).
    if let Some(media) = event.datacontenttype()
        && !media.bytes().all(|b| (0x20..=0x7e).contains(&b))
    {
        return Err(EventError::Invalid(
            "attribute `datacontenttype` is not a media type: it has characters outside \
             printable ASCII"
                .into(),
        ));
    }
    // The url crate's parse is not always idempotent (IDNA): a dataschema
    // must read back as written, or the next hop refuses what the host
    // wrote (fuzz/regressions, test `fuzz_corpus::every_seed_and_past_crash_passes_its_harness`).
    if let Some(schema) = event.dataschema()
        && let Err(e) = url::Url::parse(schema.as_str())
    {
        return Err(EventError::Invalid(format!(
            "attribute `dataschema` is not a stable absolute URI: {e}"
        )));
    }
    // The same rules a step's output is held to (`from_wit`, the runtime's
    // output check): an event the host accepts must be one it can hand on.
    let extensions = event.iter_extensions().count();
    if extensions > MAX_EXTENSIONS {
        return Err(EventError::Invalid(format!(
            "{extensions} extensions, at most {} are allowed",
            MAX_EXTENSIONS
        )));
    }
    for (name, _) in event.iter_extensions() {
        if !valid_extension_name(name) {
            return Err(EventError::Invalid(format!(
                "extension name {name:?} is not [a-z0-9]{{1,20}} (CloudEvents 1.0 §3.1.1)"
            )));
        }
    }
    if event.subject() == Some("") {
        return Err(EventError::Invalid(
            "attribute `subject` is present but empty".into(),
        ));
    }
    Ok(())
}

/// Write an event in binary content mode: headers and body, its text
/// attributes per `encoding`.
pub fn to_http(
    mut event: Event,
    encoding: TextEncoding,
) -> Result<(HeaderMap, Vec<u8>), EventError> {
    use cloudevents::message::BinaryDeserializer;
    // Encoded in the event, before the SDK turns values into headers: it
    // cannot make a header of a control character at all.
    encode_text_attributes(&mut event);
    let serializer = cloudevents::binding::http::Serializer::new(BinaryWriter::default());
    let (mut headers, body) = event
        .deserialize_binary(serializer)
        .map_err(|e| EventError::Invalid(format!("cannot encode the event in binary mode: {e}")))?;
    if encoding == TextEncoding::Raw {
        raw_text_headers(&mut headers);
    }
    Ok((headers, body))
}

/// Collects what the SDK's binary serializer writes.
#[derive(Default)]
struct BinaryWriter {
    /// `ce-*` headers and `content-type`.
    headers: HeaderMap,
}

impl cloudevents::binding::http::Builder<(HeaderMap, Vec<u8>)> for BinaryWriter {
    fn header(&mut self, key: &str, value: HeaderValue) {
        let Ok(name) = http::HeaderName::try_from(key) else {
            return;
        };
        self.headers.insert(name, value);
    }

    fn body(&mut self, bytes: Vec<u8>) -> cloudevents::message::Result<(HeaderMap, Vec<u8>)> {
        Ok((std::mem::take(&mut self.headers), bytes))
    }

    fn finish(&mut self) -> cloudevents::message::Result<(HeaderMap, Vec<u8>)> {
        self.body(Vec::new())
    }
}

/// Extension attribute names: lower-case letters and digits (CloudEvents 1.0
/// §3.1.1 says "SHOULD NOT exceed 20 characters"; we accept up to 250 so
/// Knative's own `knativeerrordest`-style names and vendor names pass).
pub(crate) fn valid_extension_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 250
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The spec version as the CloudEvents attribute spells it.
pub fn spec_version(event: &Event) -> &'static str {
    match event.specversion() {
        SpecVersion::V03 => "0.3",
        SpecVersion::V10 => "1.0",
    }
}

/// Headers from (name, value) pairs, for the unit tests of this module and
/// of the runtime's WIT conversion.
#[cfg(test)]
pub(crate) fn test_headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (k, v) in pairs {
        headers.insert(
            http::HeaderName::try_from(*k).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    headers
}

#[cfg(test)]
mod tests;
