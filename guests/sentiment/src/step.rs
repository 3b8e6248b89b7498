//! The sentiment step's event contract, shared by the reference guest
//! (inference on the host via wasi:nn) and the in-guest variant
//! (`guests/sentiment-tract`, tract inside the sandbox) through `#[path]`,
//! so both answer exactly alike and differ only in where the model runs.

use sentiment_core::{Sentiment, encode};
use serde_json::Value;
use stephost_guest::{Event, StepError, config, config_or};

/// Handle one event; `infer(model_name, token_ids)` returns the two logits.
pub fn handle(
    mut event: Event,
    infer: impl Fn(&str, &[i64]) -> Result<[f32; 2], StepError>,
) -> Result<Option<Event>, StepError> {
    let band = number_config("neutralBand", 0.1)?;
    if !(0.0..=1.0).contains(&band) {
        return Err(StepError::fatal(format!(
            "config neutralBand must be within 0..1, got {band}"
        )));
    }
    let max_tokens = number_config("maxTokens", 128.0)?;
    if !(3.0..=512.0).contains(&max_tokens) || max_tokens.fract() != 0.0 {
        return Err(StepError::fatal(format!(
            "config maxTokens must be a whole number within 3..512, got {max_tokens}"
        )));
    }
    let (mut fields, text) = event.data_object_and_text("reviewText")?;
    // As the bookstore sample's sentiment function: the filter's verdict
    // travels on in the extension and in the data, empty when there was none.
    let verdict = match (
        event.extension("badwordfilter"),
        fields.get("badWordResult"),
    ) {
        (Some(ext), _) => ext.to_string(),
        (None, Some(Value::String(data))) => data.clone(),
        (None, _) => String::new(),
    };
    // No text, no sentiment: `neutral` without running the model (as the
    // sample's TextBlob answers an empty review).
    let sentiment = if text.trim().is_empty() {
        None
    } else {
        let ids = encode(&text, max_tokens as usize);
        let logits = infer(&config_or("model", "sentiment"), &ids)?;
        Some((Sentiment::from_logits(logits), logits))
    };
    let result = match &sentiment {
        Some((s, _)) => s.label(band as f32),
        None => "neutral",
    };

    event.type_ = "moderated-comment".into();
    event.source = config_or("source", "sentiment-analysis");
    event.set_extension("sentimentresult", result);
    event.set_extension("badwordfilter", verdict.as_str());
    fields.insert("reviewText".into(), Value::String(text));
    if !fields.contains_key("badWordResult") {
        fields.insert("badWordResult".into(), Value::String(verdict));
    }
    fields.insert("sentimentResult".into(), Value::String(result.into()));
    if let Some((sentiment, logits)) = sentiment {
        fields.insert(
            "sentimentScore".into(),
            serde_json::json!(f64::from(sentiment.score)),
        );
        if config("includeLogits").as_deref() == Some("true") {
            let logits = logits.map(f64::from);
            fields.insert("sentimentLogits".into(), serde_json::json!(logits));
        }
    }
    event.set_data_json(&Value::Object(fields))?;
    Ok(Some(event))
}

/// A numeric config value, or `default` when unset.
fn number_config(key: &str, default: f64) -> Result<f64, StepError> {
    match config(key) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| StepError::fatal(format!("config {key} must be a number, got {v:?}"))),
    }
}
