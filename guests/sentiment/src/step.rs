//! The sentiment step's event contract, shared by the reference guest
//! (inference on the host via wasi:nn) and the in-guest variant
//! (`guests/sentiment-tract`, tract inside the sandbox) through `#[path]`,
//! so both answer exactly alike and differ only in where the model runs.

use sentiment_core::{Sentiment, encode};
use serde_json::{Map, Value};
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
            "data must be a JSON object with a string field \"reviewText\" (or text/plain)",
        ));
    };
    let ids = encode(text, max_tokens as usize);
    let logits = infer(&config_or("model", "sentiment"), &ids)?;
    let sentiment = Sentiment::from_logits(logits);
    let result = sentiment.label(band as f32);

    event.type_ = "moderated-comment".into();
    event.source = config_or("source", "sentiment-analysis");
    event.set_extension("sentimentresult", result);
    fields.insert("sentimentResult".into(), Value::String(result.into()));
    fields.insert("sentimentScore".into(), serde_json::json!(sentiment.score));
    if config("includeLogits").as_deref() == Some("true") {
        fields.insert("sentimentLogits".into(), serde_json::json!(logits));
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
