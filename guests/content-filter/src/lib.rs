//! `content-filter`: the first step of the bookstore pipeline. Scores a review
//! with alt-profanity-check's model (run by tract inside this sandbox) on the
//! text as written and on its normalised form (evasions undone), and labels or
//! drops offensive reviews.
//!
//! Event contract (Knative bookstore sample's bad-word filter, plus ours): data
//! a JSON object with `reviewText` (any content type; absent = `""`), or
//! text/* → type `new-review-comment`, source `book-review-broker` (config
//! `type`, `source`), other attributes and extensions kept, extension
//! `badwordfilter: good|bad`, data = the input members in their order plus
//! `badWordResult` and `offensiveScore`. Config: `mode` = `label` (default, every event
//! forwarded) or `drop` (bad events dropped: the chain stops); `threshold`
//! (default 0.5, bad when score > threshold, as sklearn's `predict`);
//! `normalize` (default `true`; `false` scores only the raw text, exactly
//! alt-profanity-check's answer).
//!
//! The model is parsed and optimised once, in `preinitialize`: the host runs
//! it when it loads the component and snapshots the memory (wasmtime-wizer),
//! so every fresh instance starts with the model ready. (Without that — an
//! older host — it is loaded on an instance's first event instead.)

use std::sync::OnceLock;

use content_filter_core::Model;
use serde_json::Value;
use stephost_guest::{Event, Step, StepError, config_or, export_step};

struct ContentFilter;

/// Texts scored during pre-initialisation: ordinary words, evasions
/// (leetspeak, separators, repeats, fullwidth, homoglyphs, accents).
const WARM_UP: [&str; 3] = [
    "I bought this for my daughter and the plot was great, the characters were flat.",
    "what a sh1t b00k, f u c k this s.h.i.t, shiiiit, ｆｕｃｋ, ѕhit, café naïve",
    "Scunthorpe assessment cockpit Shiitake Penistone 42 $5 @home",
];

/// The loaded model, once per instance.
fn model() -> Result<&'static Model, StepError> {
    static MODEL: OnceLock<Result<Model, String>> = OnceLock::new();
    MODEL
        .get_or_init(|| Model::load().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| StepError::retryable(e.clone()))
}

impl Step for ContentFilter {
    fn preinitialize() {
        // A load error is kept in the OnceLock and reported by every event.
        if let Ok(model) = model() {
            // Score a few texts once so lazily built state (tract's
            // scratch buffers, the allocator's free lists) is in the
            // snapshot too, not rebuilt by every fresh instance.
            for text in WARM_UP {
                let _ = model.score(text);
            }
        }
    }

    fn handle(mut event: Event) -> Result<Option<Event>, StepError> {
        let threshold: f32 = config_or("threshold", "0.5")
            .parse()
            .map_err(|_| StepError::fatal("config threshold must be a number between 0 and 1"))?;
        let drop_bad = match config_or("mode", "label").as_str() {
            "label" => false,
            "drop" => true,
            other => {
                return Err(StepError::fatal(format!(
                    "config mode must be \"label\" or \"drop\", got {other:?}"
                )));
            }
        };
        let (mut fields, text) = event.data_object_and_text("reviewText")?;
        let normalize = match config_or("normalize", "true").as_str() {
            "true" => true,
            "false" => false,
            other => {
                return Err(StepError::fatal(format!(
                    "config normalize must be true or false, got {other:?}"
                )));
            }
        };
        let model = model()?;
        let score = if normalize {
            model.score(&text).map(|s| s.value())
        } else {
            model.probability(&text)
        }
        .map_err(|e| StepError::retryable(e.to_string()))?;
        let bad = score > threshold;
        if bad && drop_bad {
            return Ok(None);
        }
        let verdict = if bad { "bad" } else { "good" };
        // As the bookstore sample's bad-word filter answers.
        event.type_ = config_or("type", "new-review-comment");
        event.source = config_or("source", "book-review-broker");
        event.set_extension("badwordfilter", verdict);
        fields.insert("reviewText".into(), Value::String(text));
        fields.insert("badWordResult".into(), Value::String(verdict.into()));
        fields.insert("offensiveScore".into(), serde_json::json!(f64::from(score)));
        event.set_data_json(&Value::Object(fields))?;
        Ok(Some(event))
    }
}

export_step!(ContentFilter);
