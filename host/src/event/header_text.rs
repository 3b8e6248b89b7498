//! Attribute text in binary-mode headers, one of two ways ([`TextEncoding`]):
//! raw UTF-8 as Knative's dispatcher and the CloudEvents SDKs write and read
//! it, or percent-encoded as the CloudEvents HTTP binding (§3.1.3.2) says.

use cloudevents::event::ExtensionValue;
use cloudevents::{AttributesReader, Event};
use http::{HeaderMap, HeaderValue};

use super::error::EventError;

/// How free-text attributes (`id`, `type`, `subject`, string extensions)
/// travel in binary-mode headers (`--attribute-encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextEncoding {
    /// As Knative's dispatcher (sdk-go) and the JavaScript and Python SDKs
    /// write and read them: UTF-8 bytes as they are, nothing decoded on the
    /// way in, so a Trigger filter matches the value the sender set. A value
    /// HTTP cannot carry as it is (control characters, leading or trailing
    /// spaces) is written percent-encoded instead.
    #[default]
    Raw,
    /// CloudEvents HTTP binding §3.1.3.2: space, `"`, `%` and every byte
    /// outside printable ASCII percent-encoded on the way out, `%XX` decoded
    /// on the way in.
    Percent,
}

/// The headers whose values are free text: percent-coded in percent mode,
/// raw in raw mode. URI and time attributes are ASCII by their syntax.
fn is_text_header(name: &str) -> bool {
    name.starts_with("ce-")
        && !matches!(
            name,
            "ce-specversion" | "ce-source" | "ce-time" | "ce-dataschema" | "ce-schemaurl"
        )
}

/// Binary-mode headers rewritten so that the SDK can read them and
/// [`decode_text_attributes`] turn them back into their text: raw UTF-8
/// values (what Knative's dispatcher, sdk-go, writes for non-ASCII
/// attributes) percent-encoded, and in raw mode also every text value with a
/// `%`, so that it reads back literally; `None` when nothing needs it.
/// Values that are not UTF-8 stay as they are and are refused by the parser.
pub(super) fn raw_text_percent_encoded(
    headers: &HeaderMap,
    encoding: TextEncoding,
) -> Option<HeaderMap> {
    let raw = |name: &http::HeaderName, value: &HeaderValue| {
        let utf8 = std::str::from_utf8(value.as_bytes()).is_ok();
        name.as_str().starts_with("ce-")
            && utf8
            && (value.to_str().is_err()
                || (encoding == TextEncoding::Raw
                    && is_text_header(name.as_str())
                    && value.as_bytes().contains(&b'%')))
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

/// Percent-encode the free-text attributes (`id`, `type`, `subject`, string
/// extensions) in place, for binary mode. URI and time attributes are ASCII
/// by their syntax (checked in `validate`) and are left as they are.
pub(super) fn encode_text_attributes(event: &mut Event) {
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
pub(super) fn percent_encode(bytes: &[u8]) -> String {
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
pub(super) fn percent_decode(text: &str) -> Result<String, std::string::FromUtf8Error> {
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

/// In raw mode, the `ce-*` text headers of `headers` (percent-encoded by
/// [`encode_text_attributes`] for the SDK) turned back into their UTF-8
/// bytes, except values HTTP cannot carry as they are.
pub(super) fn raw_text_headers(headers: &mut HeaderMap) {
    for (name, value) in headers.iter_mut() {
        if !is_text_header(name.as_str()) || !value.as_bytes().contains(&b'%') {
            continue;
        }
        let Ok(text) = value.to_str() else { continue };
        let Ok(decoded) = percent_decode(text) else {
            continue;
        };
        let bytes = decoded.as_bytes();
        let carried = !bytes.iter().any(|&b| b < 0x20 || b == 0x7f)
            && !decoded.starts_with([' ', '\t'])
            && !decoded.ends_with([' ', '\t']);
        if carried && let Ok(raw) = HeaderValue::from_bytes(bytes) {
            *value = raw;
        }
    }
}

/// Decode percent-encoded text attributes of a binary-mode event in place.
pub(super) fn decode_text_attributes(event: &mut Event) -> Result<(), EventError> {
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
