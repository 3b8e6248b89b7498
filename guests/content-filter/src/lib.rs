//! `content-filter` — PLACEHOLDER. The real guest (alt-profanity-check's model
//! behind an evasion-proof normaliser) is issue #3; until it lands this guest
//! implements the same event contract with a short word list, so the default
//! Sequence runs end to end.
//!
//! Event contract (Knative bookstore sample): data `{"reviewText": "..."}` (or
//! text/plain) → extension `badwordfilter: good|bad`, data adds
//! `badWordResult`. Config `mode`: `label` (default) or `drop` (bad events are
//! dropped and the chain stops).

use serde_json::{Map, Value};
use stephost_guest::{Event, Step, StepError, config_or, export_step};

/// A few unambiguous words; the real model replaces this list.
const BAD_WORDS: &[&str] = &["fuck", "shit", "bitch", "asshole", "bastard", "cunt"];

struct ContentFilter;

impl Step for ContentFilter {
    fn handle(mut event: Event) -> Result<Option<Event>, StepError> {
        let (mut fields, text) = review(&event)?;
        let lower = text.to_lowercase();
        let bad = lower
            .split(|c: char| !c.is_alphanumeric())
            .any(|word| BAD_WORDS.contains(&word));
        let verdict = if bad { "bad" } else { "good" };
        if bad && config_or("mode", "label") == "drop" {
            return Ok(None);
        }
        event.set_extension("badwordfilter", verdict);
        fields.insert("reviewText".into(), Value::String(text));
        fields.insert("badWordResult".into(), Value::String(verdict.into()));
        event.set_data_json(&Value::Object(fields))?;
        Ok(Some(event))
    }
}

/// The review text and the other JSON fields of the input.
fn review(event: &Event) -> Result<(Map<String, Value>, String), StepError> {
    if !event.data_is_json() {
        return Ok((Map::new(), event.data_text()?.to_string()));
    }
    let mut fields: Map<String, Value> = event.data_json()?;
    match fields.remove("reviewText") {
        Some(Value::String(text)) => Ok((fields, text)),
        _ => Err(StepError::fatal(
            "data must be JSON with a string field \"reviewText\" (or text/plain)",
        )),
    }
}

export_step!(ContentFilter);
