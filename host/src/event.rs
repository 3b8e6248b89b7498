//! CloudEvents in and out: HTTP (binary and structured mode) ⇄ the SDK's
//! `Event` ⇄ the WIT `cloud-event` record a step sees.
//!
//! Parsing follows the CloudEvents HTTP protocol binding 1.0 as the Knative
//! data plane applies it (sdk-go `ReadEncoding`): `application/cloudevents+json`
//! is structured mode, `application/cloudevents-batch+json` is batch mode
//! (refused, as channel and broker ingresses do), anything else is binary mode
//! and needs a `ce-specversion` header. Events are always written in binary
//! mode, as Knative's dispatcher does.

use cloudevents::event::{ExtensionValue, SpecVersion};
use cloudevents::{AttributesReader, Event};
use http::{HeaderMap, HeaderValue, header};
use thiserror::Error;

/// Most extensions an event may carry, in and out. Binary mode sends each as
/// an HTTP header: hyper-based receivers refuse more than 100 headers and the
/// standard `ce-*` and transport headers need room too.
pub const MAX_EXTENSIONS: usize = 64;

/// Media type of structured-mode events (CloudEvents JSON format §3).
const STRUCTURED: &str = "application/cloudevents+json";
/// Media type of batch-mode events (CloudEvents HTTP binding §3.3).
const BATCH: &str = "application/cloudevents-batch+json";

/// Why an HTTP request or response is not one valid CloudEvent.
#[derive(Debug, Error, PartialEq)]
pub enum EventError {
    /// Batch mode is not supported by Knative channels or brokers either.
    #[error(
        "batched CloudEvents ({BATCH}) are not supported: send one event per request, \
         in binary or structured mode"
    )]
    Batch,
    /// Neither binary nor structured mode.
    #[error(
        "not a CloudEvent: no ce-specversion header (binary mode) and Content-Type is not \
         {STRUCTURED} (structured mode)"
    )]
    NotAnEvent,
    /// The spec version is not 1.0 or 0.3.
    #[error("unsupported CloudEvents specversion {0:?}: only \"1.0\" and \"0.3\" are accepted")]
    UnknownSpecVersion(String),
    /// A required attribute is missing or empty.
    #[error("invalid CloudEvent: required attribute `{0}` is missing or empty")]
    MissingAttribute(&'static str),
    /// The structured body or an attribute value does not parse.
    #[error("invalid CloudEvent: {0}")]
    Invalid(String),
}

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

/// Parse one CloudEvent from an HTTP message (request or response).
pub fn from_http(headers: &HeaderMap, body: Vec<u8>) -> Result<Event, EventError> {
    let encoded = raw_text_percent_encoded(headers);
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
    let mut event = cloudevents::binding::http::to_event(headers, body)
        .map_err(|e| EventError::Invalid(e.to_string()))?;
    if mode(headers) == Mode::Binary {
        decode_text_attributes(&mut event)?;
    }
    validate(&event)?;
    Ok(event)
}

/// Binary-mode headers with raw UTF-8 values (what Knative's dispatcher,
/// sdk-go, writes for non-ASCII attributes) rewritten percent-encoded, as
/// the CloudEvents HTTP binding writes them, so they read back as the same
/// text (a literal `%` in a raw value included); `None` when every `ce-*`
/// value is already visible ASCII. Values that are not UTF-8 stay as they
/// are and are refused by the parser.
fn raw_text_percent_encoded(headers: &HeaderMap) -> Option<HeaderMap> {
    let raw = |name: &http::HeaderName, value: &HeaderValue| {
        name.as_str().starts_with("ce-")
            && value.to_str().is_err()
            && std::str::from_utf8(value.as_bytes()).is_ok()
    };
    if !headers.iter().any(|(n, v)| raw(n, v)) {
        return None;
    }
    let mut encoded = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let value = if raw(name, value) {
            HeaderValue::from_str(&percent_encode(value.as_bytes()))
                .unwrap_or_else(|_| value.clone())
        } else {
            value.clone()
        };
        encoded.append(name.clone(), value);
    }
    Some(encoded)
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

/// Write an event in binary content mode: headers and body.
pub fn to_http(mut event: Event) -> Result<(HeaderMap, Vec<u8>), EventError> {
    use cloudevents::message::BinaryDeserializer;
    // Encoded in the event, before the SDK turns values into headers: it
    // cannot make a header of a control character at all.
    encode_text_attributes(&mut event);
    let serializer = cloudevents::binding::http::Serializer::new(BinaryWriter::default());
    let (headers, body) = event
        .deserialize_binary(serializer)
        .map_err(|e| EventError::Invalid(format!("cannot encode the event in binary mode: {e}")))?;
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

/// Percent-encode the free-text attributes (`id`, `type`, `subject`, string
/// extensions) in place, for binary mode. URI and time attributes are ASCII
/// by their syntax (checked in `validate`) and are left as they are.
fn encode_text_attributes(event: &mut Event) {
    use cloudevents::event::AttributesWriter as _;
    let id = percent_encode(event.id().as_bytes());
    event.set_id(id);
    let ty = percent_encode(event.ty().as_bytes());
    event.set_type(ty);
    if let Some(subject) = event.subject() {
        let subject = percent_encode(subject.as_bytes());
        event.set_subject(Some(subject));
    }
    let extensions: Vec<(String, String)> = event
        .iter_extensions()
        .filter_map(|(name, value)| match value {
            ExtensionValue::String(text) => {
                Some((name.to_string(), percent_encode(text.as_bytes())))
            }
            _ => None,
        })
        .collect();
    for (name, text) in extensions {
        event.set_extension(&name, ExtensionValue::String(text));
    }
}

/// CloudEvents HTTP binding §3.1.3.2: space, `"`, `%` and every byte outside
/// printable ASCII are percent-encoded in header values, so UTF-8 text
/// survives binary mode (fuzz/regressions, test
/// `fuzz_corpus::every_seed_and_past_crash_passes_its_harness`).
fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b == b' ' || b == b'"' || b == b'%' || !(0x21..=0x7e).contains(&b) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// The receiving side of [`percent_encode`]: `%XX` sequences decoded, any
/// other `%` kept as is; the result must be UTF-8.
fn percent_decode(text: &str) -> Result<String, std::string::FromUtf8Error> {
    if !text.contains('%') {
        return Ok(text.to_string());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
}

/// Decode percent-encoded text attributes of a binary-mode event in place.
fn decode_text_attributes(event: &mut Event) -> Result<(), EventError> {
    use cloudevents::event::AttributesWriter as _;
    let bad = |name: &str| {
        EventError::Invalid(format!(
            "attribute `{name}`: its percent-encoded value is not UTF-8"
        ))
    };
    let id = percent_decode(event.id()).map_err(|_| bad("id"))?;
    event.set_id(id);
    let ty = percent_decode(event.ty()).map_err(|_| bad("type"))?;
    event.set_type(ty);
    if let Some(subject) = event.subject() {
        let subject = percent_decode(subject).map_err(|_| bad("subject"))?;
        event.set_subject(Some(subject));
    }
    let extensions: Vec<(String, String)> = event
        .iter_extensions()
        .filter_map(|(name, value)| match value {
            ExtensionValue::String(text) if text.contains('%') => {
                Some((name.to_string(), text.clone()))
            }
            _ => None,
        })
        .collect();
    for (name, text) in extensions {
        let decoded = percent_decode(&text).map_err(|_| bad(&name))?;
        event.set_extension(&name, ExtensionValue::String(decoded));
    }
    Ok(())
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
