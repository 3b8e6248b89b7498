//! `dropper`: drops every event, like a filter that matches nothing. Tests use
//! it to prove a drop stops the Sequence and acknowledges the sender.

use stephost_guest::{Event, Step, StepError, export_step};

struct Dropper;

impl Step for Dropper {
    fn handle(_event: Event) -> Result<Option<Event>, StepError> {
        Ok(None)
    }
}

export_step!(Dropper);
