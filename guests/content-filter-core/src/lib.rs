//! Scoring for the `content-filter` step: alt-profanity-check's linear model
//! (exported to a sparse ONNX graph, run with tract) behind a normaliser that
//! undoes common evasions. Shared by the Wasm guest and native benchmarks, so
//! both run the very same code.

mod model;
mod normalize;

pub use model::{Model, ModelError, tokenize};
pub use normalize::normalize;

/// The score of a text: the model's probability on the raw text and on its
/// normalised form, whichever is higher, with both for diagnostics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// P(offensive) of the text as written — alt-profanity-check's own answer.
    pub raw: f32,
    /// P(offensive) after undoing evasions.
    pub normalized: f32,
}

impl Score {
    /// The decision score: `max(raw, normalized)`. Normalising can only add
    /// evidence of abuse, never hide what the original model sees.
    pub fn value(&self) -> f32 {
        self.raw.max(self.normalized)
    }
}

impl Model {
    /// Score `text` raw and normalised.
    pub fn score(&self, text: &str) -> Result<Score, ModelError> {
        // Lower-cased once: the raw score and the comparison both need it.
        let lower = text.to_lowercase();
        let raw = self.probability_of_lowercase(&lower)?;
        let normal = normalize(text, &|w| self.is_profane(w));
        let normalized = if normal == lower {
            raw
        } else {
            self.probability(&normal)?
        };
        Ok(Score { raw, normalized })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: &str = include_str!("../../../tests/fixtures/content-filter/offensive-dev-2000.tsv");
    const REFERENCE: &str =
        include_str!("../../../tests/fixtures/content-filter/reference-scores.txt");

    #[test]
    fn native_scores_equal_alt_profanity_check() {
        let model = Model::load().expect("model loads");
        let mut max_delta = 0f64;
        for (line, want) in DEV.lines().zip(REFERENCE.lines()) {
            let text = line.split_once('\t').expect("label<TAB>text").1;
            let got = f64::from(model.probability(text).expect("scores"));
            let want: f64 = want.parse().expect("float");
            max_delta = max_delta.max((got - want).abs());
        }
        assert!(max_delta <= 1e-5, "max |Δ| {max_delta}");
        let empty = model.probability("").expect("scores");
        assert!((empty - 0.036_375_752).abs() < 1e-6, "empty text {empty}");
    }

    #[test]
    fn tokens_equal_the_regex_the_tokenizer_replaced() {
        let regex = regex::Regex::new(r"[\p{L}\p{N}_]{2,}").expect("regex");
        let by_regex = |text: &str| -> Vec<String> {
            let lower = text.to_lowercase();
            regex
                .find_iter(&lower)
                .map(|m| m.as_str().to_string())
                .collect()
        };
        let edge_cases = [
            "",
            "a",
            "ab",
            "a b c",
            "snake_case __ _x x_ 42 4 2",
            // Combining marks split a word (Python's \w has no M*).
            "cafe\u{301} nai\u{308}ve",
            // Digits and letters of other scripts, CJK, Hangul, emoji.
            "٣٤ ४५ Ⅻ ½ 日本語 한국어 😀😀 ｆｕｌｌ",
            "ΣΊΣΥΦΟΣ İstanbul ǅemal ß",
            "tab\tnew\nline\u{200B}zero-width",
            "ends with a word",
        ];
        let dev = DEV.lines().filter_map(|l| l.split_once('\t')).map(|x| x.1);
        let mut checked = 0;
        for text in edge_cases.into_iter().chain(dev) {
            assert_eq!(tokenize(text), by_regex(text), "text {text:?}");
            checked += 1;
        }
        assert_eq!(checked, edge_cases.len() + 2000);
    }
}
