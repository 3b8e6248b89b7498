//! `appender`: clones the input event and appends its `suffix` setting to the
//! text data — the behaviour of Knative's own appender test image
//! (`cmd/appender`), used by the Sequence conformance tests.
//!
//! Config: `suffix` (appended; default empty), `type` (optional new event type).

use stephost_guest::{Event, Step, StepError, config, config_or, export_step};

struct Appender;

impl Step for Appender {
    fn handle(mut event: Event) -> Result<Option<Event>, StepError> {
        let text = format!("{}{}", event.data_text()?, config_or("suffix", ""));
        let content_type = event.datacontenttype.clone();
        event.set_data_text(text);
        // Keep the sender's content type (text/plain in the conformance tests).
        if content_type.is_some() {
            event.datacontenttype = content_type;
        }
        if let Some(ty) = config("type") {
            event.type_ = ty;
        }
        Ok(Some(event))
    }
}

export_step!(Appender);

/// Its logic, tested natively (`cargo test -p appender`) through the SDK's
/// `testing` helpers: no host, no wasm build.
#[cfg(test)]
mod tests {
    use super::Appender;
    use stephost_guest::Step;
    use stephost_guest::testing::{text_event, with_config};

    #[test]
    fn appends_its_suffix_and_sets_the_type() {
        let pairs = [("suffix", "-x"), ("type", "appended")];
        let out = with_config(&pairs, || Appender::handle(text_event("1", "in")))
            .expect("handled")
            .expect("forwarded");
        assert_eq!(out.data_text().expect("text"), "in-x");
        assert_eq!(out.type_, "appended");
        assert_eq!(out.datacontenttype.as_deref(), Some("text/plain"));
    }

    #[test]
    fn without_config_it_clones_the_event() {
        let out = Appender::handle(text_event("2", "in"))
            .expect("handled")
            .expect("forwarded");
        assert_eq!(out.data_text().expect("text"), "in");
        assert_eq!(out.type_, "dev.stephost.test");
    }
}
