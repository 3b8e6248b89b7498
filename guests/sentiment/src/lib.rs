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

mod step;

use stephost_guest::nn::errors::{Error as NnError, ErrorCode};
use stephost_guest::nn::graph;
use stephost_guest::nn::tensor::{Tensor, TensorType};
use stephost_guest::{Event, Step, StepError, export_step};

struct SentimentStep;

impl Step for SentimentStep {
    fn handle(event: Event) -> Result<Option<Event>, StepError> {
        step::handle(event, infer)
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
