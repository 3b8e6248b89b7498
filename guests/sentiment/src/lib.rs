//! `sentiment` — the second step of the reference pipeline: a MiniLM-L6
//! transformer fine-tuned for review polarity (0.8085 on the MR dev split,
//! where Knative's bookstore sample's TextBlob lexicon scores 0.556).
//!
//! The guest tokenises in the sandbox (BERT WordPiece, `sentiment-core`) and
//! runs the model through the standard `wasi:nn` API; the host executes it
//! natively with tract on a graph it optimised once at start. The step holds
//! no state: a fresh instance per event costs microseconds.
//!
//! Event contract (Knative bookstore sample): data `{"reviewText": "..."}` (or
//! text/plain) → type `moderated-comment`, source `config.source`, every input
//! extension kept, extension `sentimentresult: positive|negative|neutral`,
//! data = the input fields plus `sentimentResult` and `sentimentScore`
//! (P(positive)).
//!
//! Config: `model` (granted graph name, default `sentiment`), `source`
//! (default `sentiment-analysis`), `neutralBand` (width of the band around 0.5
//! answered `neutral`, default 0.1), `maxTokens` (truncation, default 128,
//! at most 512), `includeLogits` (`true` adds `sentimentLogits`).

use sentiment_core::{Sentiment, encode};
use serde_json::{Map, Value};
use stephost_guest::nn::errors::{Error as NnError, ErrorCode};
use stephost_guest::nn::graph;
use stephost_guest::nn::tensor::{Tensor, TensorType};
use stephost_guest::{Event, Step, StepError, config, config_or, export_step};

struct SentimentStep;

impl Step for SentimentStep {
    fn handle(mut event: Event) -> Result<Option<Event>, StepError> {
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

/// Run the granted graph `model` on one sequence of token ids: the logits.
fn infer(model: &str, ids: &[i64]) -> Result<[f32; 2], StepError> {
    let graph =
        graph::load_by_name(model).map_err(|e| nn_error(&format!("loading model {model:?}"), e))?;
    let context = graph
        .init_execution_context()
        .map_err(|e| nn_error("starting inference", e))?;
    let dims = [1, ids.len() as u32];
    let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_le_bytes()).collect();
    let mask: Vec<u8> = ids.iter().flat_map(|_| 1i64.to_le_bytes()).collect();
    let inputs = vec![
        (
            "input_ids".to_string(),
            Tensor::new(&dims, TensorType::I64, &bytes),
        ),
        (
            "attention_mask".to_string(),
            Tensor::new(&dims, TensorType::I64, &mask),
        ),
    ];
    let outputs = context
        .compute(inputs)
        .map_err(|e| nn_error("inference", e))?;
    let (_, logits) = outputs
        .into_iter()
        .find(|(name, _)| name == "logits")
        .ok_or_else(|| {
            StepError::fatal(format!("model {model:?} returned no \"logits\" output"))
        })?;
    let data = logits.data();
    if logits.ty() != TensorType::Fp32 || data.len() != 8 {
        return Err(StepError::fatal(format!(
            "model {model:?}: logits must be f32 [1, 2], got {:?} {:?}",
            logits.ty(),
            logits.dimensions()
        )));
    }
    let f = |i: usize| f32::from_le_bytes(data[i * 4..i * 4 + 4].try_into().unwrap_or([0; 4]));
    Ok([f(0), f(1)])
}

/// A wasi-nn error as a step error: a timeout may pass on retry, anything else
/// (not granted, too large, bad input) will not.
fn nn_error(what: &str, e: NnError) -> StepError {
    let code = e.code();
    let message = format!("{what}: {code:?}: {}", e.data());
    match code {
        ErrorCode::Timeout => StepError::retryable(message),
        _ => StepError::fatal(message),
    }
}

export_step!(SentimentStep);
