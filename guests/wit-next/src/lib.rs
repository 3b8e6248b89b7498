//! `wit-next`: a passthrough step built against `stephost:step@0.2.0`, the
//! SDK's WIT with only its version changed (`wit/step.wit`; the test
//! `guests::wit_next` keeps the two identical otherwise). The host implements
//! `@0.1.0` and must refuse this component with both versions named.
// The export the bindings generate is unsafe glue (the SDK hides it for
// real steps; this guest uses wit-bindgen directly to pick its own WIT).
#![allow(unsafe_code)]

#[allow(missing_docs, unsafe_code)]
mod bindings {
    wit_bindgen::generate!({ path: "wit", world: "step" });
}

use bindings::exports::stephost::step::handler::{CloudEvent, Guest, StepError};

struct Next;

impl Guest for Next {
    fn handle(event: CloudEvent) -> Result<Option<CloudEvent>, StepError> {
        Ok(Some(event))
    }
}

bindings::export!(Next with_types_in bindings);
