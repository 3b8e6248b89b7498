//! The model: sklearn's tokenizer reproduced exactly, vocabulary lookup, and
//! the sparse ONNX graph run by tract.

use std::sync::OnceLock;

use regex_syntax::hir::{Class, HirKind};
use rustc_hash::{FxHashMap, FxHashSet};
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
    /// term → column. FxHash, not SipHash: the keys are the model's own
    /// vocabulary (no attacker chooses them), and hashing every token twice
    /// per event is a measurable share of a wasm guest's time.
    vocab: FxHashMap<&'static str, i64>,
    /// Words the cuss list rates "likely profane", for `*` wildcards.
    profane: FxHashSet<&'static str>,
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
        // Built now, so a pre-initialised snapshot holds the table.
        word_ranges();
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
        self.probability_of_lowercase(&text.to_lowercase())
    }

    /// [`Model::probability`] of a text already lower-cased with
    /// `str::to_lowercase` (as sklearn's `lowercase=True` does first), for
    /// callers that need the lower-cased text themselves.
    pub(crate) fn probability_of_lowercase(&self, lower: &str) -> Result<f32, ModelError> {
        // Column ids of the known tokens, then counted by sorting: fewer
        // allocations than a map per call (they dominate in a wasm guest).
        let mut ids: Vec<i64> = Vec::with_capacity(lower.len() / 4 + 1);
        for_each_token(lower, |token| {
            if let Some(&id) = self.vocab.get(token) {
                ids.push(id);
            }
        });
        ids.sort_unstable();
        // Run-length count of the sorted ids: (distinct id, occurrences).
        let mut unique: Vec<i64> = Vec::with_capacity(ids.len() + 1);
        let mut cts: Vec<f32> = Vec::with_capacity(ids.len() + 1);
        for id in ids {
            match (unique.last(), cts.last_mut()) {
                (Some(&last), Some(count)) if last == id => *count += 1.0,
                _ => {
                    unique.push(id);
                    cts.push(1.0);
                }
            }
        }
        let mut ids = unique;
        if ids.is_empty() {
            // tract 0.23.9 panics on T = 0: (id 0, count 0) adds nothing.
            ids.push(0);
            cts.push(0.0);
        }
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
    let mut tokens = Vec::new();
    for_each_token(&text.to_lowercase(), |t| tokens.push(t.to_string()));
    tokens
}

/// Call `each` with every maximal run of two or more word characters
/// (`[\p{L}\p{N}_]`) of `lower`, already lower-cased. One pass over the
/// characters with a table lookup for non-ASCII ones: what the regex
/// `[\p{L}\p{N}_]{2,}` matches, without a regex engine. (The regex crate
/// picks its engine by feature: natively other crates turn on its lazy DFA,
/// in the wasm guest it fell back to the PikeVM, a third of the guest's time.)
fn for_each_token<'a>(lower: &'a str, mut each: impl FnMut(&'a str)) {
    let mut start: Option<usize> = None;
    let mut chars = 0usize;
    for (at, c) in lower.char_indices() {
        if is_word_char(c) {
            if start.is_none() {
                start = Some(at);
                chars = 0;
            }
            chars += 1;
        } else if let Some(from) = start.take()
            && chars >= 2
        {
            each(&lower[from..at]);
        }
    }
    if let Some(from) = start
        && chars >= 2
    {
        each(&lower[from..]);
    }
}

/// Python's `\w` in `str` patterns: Unicode letters (`L*`), numbers (`N*`)
/// and `_`.
fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '_';
    }
    let ranges = word_ranges();
    // The last range starting at or before `c` holds it, if any does.
    let after = ranges.partition_point(|&(start, _)| start <= c);
    after > 0 && c <= ranges[after - 1].1
}

/// The ranges of `[\p{L}\p{N}_]`, sorted, from regex-syntax's Unicode
/// tables: the very class the regex crate compiled from this pattern, so
/// the tokens are the ones the reference scores were checked against.
fn word_ranges() -> &'static [(char, char)] {
    static RANGES: OnceLock<Vec<(char, char)>> = OnceLock::new();
    RANGES.get_or_init(|| {
        let hir = regex_syntax::Parser::new()
            .parse(r"[\p{L}\p{N}_]")
            .expect("a static, valid class");
        match hir.kind() {
            HirKind::Class(Class::Unicode(class)) => class
                .ranges()
                .iter()
                .map(|r| (r.start(), r.end()))
                .collect(),
            other => unreachable!("a Unicode class parses to a class, not {other:?}"),
        }
    })
}
