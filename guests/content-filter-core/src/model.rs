//! The model: sklearn's tokenizer reproduced exactly, vocabulary lookup, and
//! the sparse ONNX graph run by tract.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;
use tract_onnx::prelude::*;

/// The sparse graph: inputs `term_ids` i64 [T], `term_counts` f32 [T].
const GRAPH: &[u8] = include_bytes!("../../content-filter/model/profanity_linear_sparse.onnx");
/// Term of model column i on line i.
const VOCAB: &str = include_str!("../../content-filter/model/vocab.txt");
/// cuss (MIT): `word<TAB>rating`; rating 2 = likely profane.
const CUSS: &str = include_str!("../../content-filter/wordlist/cuss-en.tsv");

/// Why scoring failed (a broken model file; never the input text).
#[derive(Debug)]
pub struct ModelError(pub String);

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type Plan = std::sync::Arc<TypedRunnableModel>;

/// The loaded model: vocabulary index and tract's optimised plan.
pub struct Model {
    /// term → column.
    vocab: HashMap<&'static str, i64>,
    /// Words the cuss list rates "likely profane", for `*` wildcards.
    profane: std::collections::HashSet<&'static str>,
    /// tract's optimised, runnable graph.
    plan: Plan,
}

impl Model {
    /// Parse and optimise the embedded graph (milliseconds: do it once).
    pub fn load() -> Result<Self, ModelError> {
        let err = |e: TractError| ModelError(format!("content-filter model: {e:#}"));
        let plan = tract_onnx::onnx()
            .model_for_read(&mut &GRAPH[..])
            .map_err(err)?
            .into_optimized()
            .map_err(err)?
            .into_runnable()
            .map_err(err)?;
        let vocab = VOCAB
            .lines()
            .enumerate()
            .map(|(i, term)| (term, i as i64))
            .collect();
        let profane = CUSS
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .filter(|(_, rating)| rating.trim() == "2")
            .map(|(word, _)| word)
            .collect();
        Ok(Self {
            vocab,
            profane,
            plan,
        })
    }

    /// Whether the cuss list rates `word` likely profane.
    pub fn is_profane(&self, word: &str) -> bool {
        self.profane.contains(word)
    }

    /// P(offensive) of `text` as alt-profanity-check computes it.
    pub fn probability(&self, text: &str) -> Result<f32, ModelError> {
        let mut counts: HashMap<i64, f32> = HashMap::new();
        for token in tokenize(text) {
            if let Some(&id) = self.vocab.get(token.as_str()) {
                *counts.entry(id).or_default() += 1.0;
            }
        }
        let mut pairs: Vec<(i64, f32)> = counts.into_iter().collect();
        pairs.sort_unstable_by_key(|(id, _)| *id);
        if pairs.is_empty() {
            // tract 0.23.9 panics on T = 0: (id 0, count 0) adds nothing.
            pairs.push((0, 0.0));
        }
        let ids: Vec<i64> = pairs.iter().map(|(id, _)| *id).collect();
        let cts: Vec<f32> = pairs.iter().map(|(_, c)| *c).collect();
        let n = ids.len();
        let err = |e: TractError| ModelError(format!("content-filter inference: {e:#}"));
        let ids = Tensor::from_shape(&[n], &ids).map_err(err)?;
        let cts = Tensor::from_shape(&[n], &cts).map_err(err)?;
        let out = self
            .plan
            .run(tvec!(ids.into_tvalue(), cts.into_tvalue()))
            .map_err(err)?;
        let view = out[0].to_plain_array_view::<f32>().map_err(err)?;
        view.iter()
            .next()
            .copied()
            .ok_or_else(|| ModelError("content-filter model returned no value".into()))
    }
}

/// sklearn's `CountVectorizer(lowercase=True, token_pattern=r"(?u)\b\w\w+\b")`
/// with Python's `\w`: lower-case, then maximal runs of `[\p{L}\p{N}_]{2,}`.
/// (The regex crate's `\w` also matches combining marks, which Python's does not.)
pub fn tokenize(text: &str) -> Vec<String> {
    static TOKEN: OnceLock<Regex> = OnceLock::new();
    let re = TOKEN.get_or_init(|| Regex::new(r"[\p{L}\p{N}_]{2,}").expect("static regex"));
    let lower = text.to_lowercase();
    re.find_iter(&lower)
        .map(|m| m.as_str().to_string())
        .collect()
}
