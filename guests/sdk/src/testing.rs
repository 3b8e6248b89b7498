//! Unit tests of a step's logic on the host target, without a stephost host:
//! `cargo test` calls `Step::handle` directly on events built here, with the
//! manifest `config` the test gives ([`with_config`]).
//!
//! ```
//! use stephost_guest::testing::{text_event, with_config};
//! use stephost_guest::{Event, Step, StepError, config_or};
//!
//! struct Shout;
//! impl Step for Shout {
//!     fn handle(mut event: Event) -> Result<Option<Event>, StepError> {
//!         let text = event.data_text()?.to_uppercase() + &config_or("suffix", "");
//!         event.set_data_text(text);
//!         Ok(Some(event))
//!     }
//! }
//!
//! let out = with_config(&[("suffix", "!")], || Shout::handle(text_event("1", "hi")));
//! assert_eq!(out.unwrap().unwrap().data_text().unwrap(), "HI!");
//! ```

use std::cell::RefCell;

use crate::Event;

thread_local! {
    /// The `spec.config` of the step under test on this thread.
    static CONFIG: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
}

/// Run `f` with `pairs` as the step's `spec.config` (what [`crate::config`]
/// returns on this thread meanwhile); the config is empty again afterwards.
pub fn with_config<R>(pairs: &[(&str, &str)], f: impl FnOnce() -> R) -> R {
    CONFIG.with(|c| {
        *c.borrow_mut() = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    });
    let result = f();
    CONFIG.with(|c| c.borrow_mut().clear());
    result
}

/// The value the test set for `key`.
pub(crate) fn config(key: &str) -> Option<String> {
    CONFIG.with(|c| {
        c.borrow()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    })
}

/// A CloudEvents 1.0 event with `text` as `text/plain` data.
pub fn text_event(id: &str, text: &str) -> Event {
    let mut event = bare(id);
    event.set_data_text(text);
    event
}

/// A CloudEvents 1.0 event with `value` as `application/json` data.
pub fn json_event(id: &str, value: &serde_json::Value) -> Event {
    let mut event = bare(id);
    event.data = Some(value.to_string().into_bytes());
    event.datacontenttype = Some("application/json".into());
    event
}

fn bare(id: &str) -> Event {
    Event {
        id: id.into(),
        source: "/stephost/tests".into(),
        specversion: "1.0".into(),
        type_: "dev.stephost.test".into(),
        subject: None,
        time: None,
        datacontenttype: None,
        dataschema: None,
        extensions: Vec::new(),
        data: None,
    }
}
