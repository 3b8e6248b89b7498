//! `sentiment` — PLACEHOLDER. The real guest (a MiniLM transformer run by the
//! host's tract backend behind wasi-nn) is issue #7; until it lands this guest
//! implements the same event contract with a tiny word lexicon, so the default
//! Sequence runs end to end.
//!
//! Event contract (Knative bookstore sample): data `{"reviewText": "..."}` →
//! type `moderated-comment`, extension `sentimentresult:
//! positive|negative|neutral`, data adds `sentimentResult` and `sentimentScore`.

use serde_json::{Map, Value};
use stephost_guest::{Event, Step, StepError, config_or, export_step};

const POSITIVE: &[&str] = &[
    "good",
    "great",
    "love",
    "loved",
    "excellent",
    "wonderful",
    "best",
    "enjoyed",
    "amazing",
];
const NEGATIVE: &[&str] = &[
    "bad", "awful", "hate", "hated", "terrible", "worst", "boring", "poor", "horrible",
];

struct Sentiment;

impl Step for Sentiment {
    fn handle(mut event: Event) -> Result<Option<Event>, StepError> {
        let mut fields: Map<String, Value> = if event.data_is_json() {
            event.data_json()?
        } else {
            let mut m = Map::new();
            m.insert(
                "reviewText".into(),
                Value::String(event.data_text()?.into()),
            );
            m
        };
        let Some(Value::String(text)) = fields.get("reviewText") else {
            return Err(StepError::fatal(
                "data must be JSON with a string field \"reviewText\" (or text/plain)",
            ));
        };
        let lower = text.to_lowercase();
        let words: Vec<&str> = lower.split(|c: char| !c.is_alphanumeric()).collect();
        let pos = words.iter().filter(|w| POSITIVE.contains(w)).count() as f64;
        let neg = words.iter().filter(|w| NEGATIVE.contains(w)).count() as f64;
        let score = (pos + 1.0) / (pos + neg + 2.0);
        let result = if score > 0.55 {
            "positive"
        } else if score < 0.45 {
            "negative"
        } else {
            "neutral"
        };
        event.type_ = "moderated-comment".into();
        event.source = config_or("source", "sentiment-analysis");
        event.set_extension("sentimentresult", result);
        fields.insert("sentimentResult".into(), Value::String(result.into()));
        fields.insert("sentimentScore".into(), serde_json::json!(score));
        event.set_data_json(&Value::Object(fields))?;
        Ok(Some(event))
    }
}

export_step!(Sentiment);
