//! `sentiment-tract` — the sentiment step with the model **inside** the
//! sandbox: tract compiled to wasm32-wasip2 (with `+simd128`, as every guest
//! is built) and the 45 MB model embedded. Same event contract and tokenizer
//! as the reference guest (its `step.rs` is compiled in here), so the two
//! differ only in where inference runs. Kept to measure that difference
//! (`bench/`); not the default: parsing and optimising the model costs each
//! new instance seconds, so it needs `reuseInstances: true` and
//! `limits.memory` of about 512Mi.

#[path = "../../sentiment/src/step.rs"]
mod step;

/// sentiment-core's in-process model code (its `tract` feature, compiled in
/// here rather than enabled, so the reference guest stays free of tract).
#[path = "../../sentiment-core/src/model.rs"]
mod model;

use std::sync::OnceLock;

use model::Model;
use sentiment_core::Sentiment;
use stephost_guest::{Event, Step, StepError, export_step};

/// The model, compiled into the component.
const MODEL: &[u8] = include_bytes!("../../sentiment/model/model.onnx");

struct SentimentTract;

impl Step for SentimentTract {
    fn handle(event: Event) -> Result<Option<Event>, StepError> {
        step::handle(event, infer)
    }
}

/// Run the embedded model (loaded once per instance); the model name is
/// ignored: there is only the one inside.
fn infer(_model: &str, ids: &[i64]) -> Result<[f32; 2], StepError> {
    static LOADED: OnceLock<Result<Model, String>> = OnceLock::new();
    let model = LOADED
        .get_or_init(|| Model::load(MODEL).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| StepError::fatal(e.clone()))?;
    let answer = model
        .run(ids)
        .map_err(|e| StepError::fatal(e.to_string()))?;
    Ok(answer.logits)
}

export_step!(SentimentTract);
