//! `nn-probe` — a test guest that uses the host's `wasi:nn` the ways a
//! careless or hostile step would, so tests can check each is refused with a
//! wasi-nn error (or, where the WIT has no error case, stopped) and that the
//! host keeps serving. The `action` extension (or config) picks what to do:
//!
//! - `load-bytes`: `load` the event's data as an ONNX graph (refused unless
//!   the manifest sets `allowModelLoad: true`);
//! - `load-name`: `load-by-name` the name in the event's data;
//! - `wrong-type`: run the granted `sentiment` model with f32 inputs;
//! - `hoard`: create 1 MiB tensors without end, keeping them all.
//!
//! Success answers with the event, data replaced by what happened; a wasi-nn
//! error is a fatal step error `CODE: message`.

use stephost_guest::nn::errors::Error as NnError;
use stephost_guest::nn::graph::{self, ExecutionTarget, GraphEncoding};
use stephost_guest::nn::tensor::{Tensor, TensorType};
use stephost_guest::{Event, Step, StepError, config, export_step};

struct Probe;

fn fail(e: NnError) -> StepError {
    StepError::fatal(format!("{:?}: {}", e.code(), e.data()))
}

impl Step for Probe {
    fn handle(mut event: Event) -> Result<Option<Event>, StepError> {
        let action = event
            .extension("action")
            .map(str::to_string)
            .or_else(|| config("action"))
            .ok_or_else(|| StepError::fatal("set the action extension"))?;
        let data = event.data.clone().unwrap_or_default();
        let answer = match action.as_str() {
            "load-bytes" => {
                let g = graph::load(&[data], GraphEncoding::Onnx, ExecutionTarget::Cpu)
                    .map_err(fail)?;
                g.init_execution_context().map_err(fail)?;
                "loaded".to_string()
            }
            "load-name" => {
                let name = String::from_utf8_lossy(&data).into_owned();
                graph::load_by_name(&name).map_err(fail)?;
                format!("loaded {name}")
            }
            "wrong-type" => {
                let g = graph::load_by_name("sentiment").map_err(fail)?;
                let ctx = g.init_execution_context().map_err(fail)?;
                let ids = Tensor::new(&[1, 3], TensorType::Fp32, &[0; 12]);
                let mask = Tensor::new(&[1, 3], TensorType::Fp32, &[0; 12]);
                ctx.compute(vec![
                    ("input_ids".into(), ids),
                    ("attention_mask".into(), mask),
                ])
                .map_err(fail)?;
                "computed".to_string()
            }
            "hoard" => {
                let chunk = vec![0u8; 1 << 20];
                let mut kept = Vec::new();
                for _ in 0..100_000 {
                    kept.push(Tensor::new(&[1 << 20], TensorType::U8, &chunk));
                }
                format!("kept {} tensors", kept.len())
            }
            other => return Err(StepError::fatal(format!("unknown action {other:?}"))),
        };
        event.set_data_text(answer);
        Ok(Some(event))
    }
}

export_step!(Probe);
