//! The WIT `cloud-event` record a step sees ⇄ the SDK's `Event`. An output
//! record is held to the same rules as an event arriving over HTTP
//! ([`crate::event::validate`]), so whatever a step returns the next hop accepts.

use cloudevents::event::{EventBuilder, EventBuilderV03, EventBuilderV10, ExtensionValue};
use cloudevents::{AttributesReader, Data, Event};

use super::bindings::WitEvent;
use crate::event::{EventError, valid_extension_name, validate};

/// The WIT record a step receives for `event`.
pub fn to_wit(event: &Event) -> WitEvent {
    let data = event.data().map(|data| match data {
        Data::Binary(bytes) => bytes.clone(),
        Data::String(text) => text.clone().into_bytes(),
        Data::Json(value) => serde_json::to_vec(value).unwrap_or_default(),
    });
    WitEvent {
        id: event.id().to_string(),
        source: event.source().to_string(),
        specversion: event.specversion().to_string(),
        type_: event.ty().to_string(),
        subject: event.subject().map(str::to_string),
        time: event.time().map(|t| t.to_rfc3339()),
        datacontenttype: event.datacontenttype().map(str::to_string),
        dataschema: event.dataschema().map(|u| u.to_string()),
        extensions: event
            .iter_extensions()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
        data,
    }
}

/// The SDK event for a step's output record; an error names the bad attribute.
pub fn from_wit(wit: WitEvent) -> Result<Event, EventError> {
    let event = match wit.specversion.as_str() {
        "1.0" => build(EventBuilderV10::new(), wit)?,
        "0.3" => build(EventBuilderV03::new(), wit)?,
        other => return Err(EventError::UnknownSpecVersion(other.to_string())),
    };
    validate(&event)?;
    Ok(event)
}

/// Fill a version-specific builder from a WIT record.
fn build<B>(builder: B, wit: WitEvent) -> Result<Event, EventError>
where
    B: EventBuilder + WitBuilder,
{
    let mut b = builder
        .with_id(wit.id)
        .with_source(wit.source)
        .with_ty(wit.type_);
    if let Some(subject) = wit.subject {
        b = b.with_subject(subject);
    }
    if let Some(time) = wit.time {
        b = b.with_time(time);
    }
    for (name, value) in wit.extensions {
        if !valid_extension_name(&name) {
            return Err(EventError::Invalid(format!(
                "extension name {name:?} is not [a-z0-9]{{1,20}} (CloudEvents 1.0 §3.1.1)"
            )));
        }
        b = b.with_extension(&name, value);
    }
    let mut event = b.build().map_err(|e| EventError::Invalid(e.to_string()))?;
    if let Some(schema) = wit.dataschema {
        let url = url::Url::parse(&schema)
            .map_err(|e| EventError::Invalid(format!("dataschema {schema:?}: {e}")))?;
        cloudevents::AttributesWriter::set_dataschema(&mut event, Some(url));
    }
    if let Some(ct) = wit.datacontenttype {
        cloudevents::AttributesWriter::set_datacontenttype(&mut event, Some(ct));
    }
    if let Some(data) = wit.data {
        event.set_data_unchecked(Data::Binary(data));
    }
    Ok(event)
}

/// The version-independent subset of the SDK's two builders.
trait WitBuilder: Sized {
    fn with_id(self, id: String) -> Self;
    fn with_source(self, source: String) -> Self;
    fn with_ty(self, ty: String) -> Self;
    fn with_subject(self, subject: String) -> Self;
    fn with_time(self, time: String) -> Self;
    fn with_extension(self, name: &str, value: String) -> Self;
}

macro_rules! wit_builder {
    ($builder:ty) => {
        impl WitBuilder for $builder {
            fn with_id(self, id: String) -> Self {
                self.id(id)
            }
            fn with_source(self, source: String) -> Self {
                self.source(source)
            }
            fn with_ty(self, ty: String) -> Self {
                self.ty(ty)
            }
            fn with_subject(self, subject: String) -> Self {
                self.subject(subject)
            }
            fn with_time(self, time: String) -> Self {
                self.time(time)
            }
            fn with_extension(self, name: &str, value: String) -> Self {
                self.extension(name, ExtensionValue::String(value))
            }
        }
    };
}
wit_builder!(EventBuilderV10);
wit_builder!(EventBuilderV03);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{TextEncoding, from_http, spec_version, test_headers as binary, to_http};

    #[test]
    fn binary_event_round_trips_through_wit() {
        let headers = binary(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
            ("ce-badwordfilter", "good"),
            ("content-type", "text/plain"),
        ]);
        let event = from_http(&headers, b"hello".to_vec(), TextEncoding::Raw).expect("parses");
        let wit = to_wit(&event);
        assert_eq!(wit.data.as_deref(), Some(&b"hello"[..]));
        assert_eq!(
            wit.extensions,
            vec![("badwordfilter".into(), "good".into())]
        );
        let back = from_wit(wit).expect("valid");
        let (headers, body) = to_http(back, TextEncoding::Raw).expect("encodes");
        assert_eq!(body, b"hello");
        assert_eq!(headers["ce-badwordfilter"], "good");
        assert_eq!(headers["content-type"], "text/plain");
    }

    #[test]
    fn version_03_is_never_upgraded() {
        let headers = binary(&[
            ("ce-specversion", "0.3"),
            ("ce-id", "1"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
        ]);
        let event = from_http(&headers, Vec::new(), TextEncoding::Raw).expect("parses");
        let back = from_wit(to_wit(&event)).expect("valid");
        assert_eq!(spec_version(&back), "0.3");
        assert_eq!(
            to_http(back, TextEncoding::Raw).expect("encodes").0["ce-specversion"],
            "0.3"
        );
    }

    #[test]
    fn bad_extension_names_from_a_step_are_refused() {
        let mut wit = to_wit(
            &from_http(
                &binary(&[
                    ("ce-specversion", "1.0"),
                    ("ce-id", "1"),
                    ("ce-source", "/s"),
                    ("ce-type", "t"),
                ]),
                Vec::new(),
                TextEncoding::Raw,
            )
            .expect("parses"),
        );
        wit.extensions.push(("Bad-Name".into(), "x".into()));
        assert!(from_wit(wit).is_err());
    }
}
