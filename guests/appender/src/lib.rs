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
