//! The sentiment step's text side, shared by the Wasm guest and the native
//! benchmark: the model's own tokenizer (BERT WordPiece, uncased — equal to
//! HF `tokenizers` on `tokenizer.json`) and the decision rule on its logits.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};

include!(concat!(env!("OUT_DIR"), "/vocab.rs"));

#[cfg(feature = "tract")]
mod model;
#[cfg(feature = "tract")]
pub use model::{Model, ModelError};

/// Id of `[CLS]`, the first token of every sequence.
pub const CLS: i64 = 101;
/// Id of `[SEP]`, the last token of every sequence.
pub const SEP: i64 = 102;
/// Id of `[UNK]`, for words the vocabulary cannot spell.
pub const UNK: i64 = 100;
/// The model's position limit (BERT: 512 positions); no sequence is longer.
pub const MAX_POSITIONS: usize = 512;
/// HF's `max_input_chars_per_word`: longer words become one `[UNK]`.
const MAX_CHARS_PER_WORD: usize = 100;

/// Token ids of `text` as the model expects them: `[CLS] … [SEP]`, at most
/// `max_tokens` ids in all (specials included; clamped to 3..=512), the text's
/// tail cut when it is longer — exactly what the model's tokenizer.json does
/// with truncation `max_tokens`.
pub fn encode(text: &str, max_tokens: usize) -> Vec<i64> {
    let max_tokens = max_tokens.clamp(3, MAX_POSITIONS);
    let mut ids = Vec::with_capacity(32);
    ids.push(CLS);
    let normal = normalize(text);
    'words: for word in pre_tokenize(&normal) {
        for id in word_piece(word) {
            if ids.len() == max_tokens - 1 {
                break 'words;
            }
            ids.push(id);
        }
    }
    ids.push(SEP);
    ids
}

/// HF's `BertNormalizer` with clean_text, handle_chinese_chars, strip_accents
/// and lowercase on, in its order.
fn normalize(text: &str) -> String {
    let mut cleaned = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c == '\0' || c == '\u{fffd}' || is_control(c) {
            continue;
        }
        if is_whitespace(c) {
            cleaned.push(' ');
        } else if is_chinese_char(c) {
            cleaned.push(' ');
            cleaned.push(c);
            cleaned.push(' ');
        } else {
            cleaned.push(c);
        }
    }
    let mut out = String::with_capacity(cleaned.len());
    for c in cleaned
        .nfd()
        .filter(|c| c.general_category() != GeneralCategory::NonspacingMark)
    {
        out.extend(c.to_lowercase());
    }
    out
}

/// BERT's `_is_whitespace`: the four ASCII blanks or any space separator.
fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r') || c.general_category() == GeneralCategory::SpaceSeparator
}

/// BERT's `_is_control`: any `C*` category except the ASCII blanks.
fn is_control(c: char) -> bool {
    if matches!(c, '\t' | '\n' | '\r') {
        return false;
    }
    c.general_category_group() == GeneralCategoryGroup::Other
}

/// BERT's `_is_punctuation`: ASCII punctuation or any `P*` category.
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || c.general_category_group() == GeneralCategoryGroup::Punctuation
}

/// The CJK Unified Ideographs blocks BERT splits into single characters.
fn is_chinese_char(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B820..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}

/// HF's `BertPreTokenizer`: split on whitespace (dropped) and around each
/// punctuation character (kept as a word of its own).
fn pre_tokenize(text: &str) -> impl Iterator<Item = &str> {
    let mut words = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() || is_punctuation(c) {
            if let Some(s) = start.take() {
                words.push(&text[s..i]);
            }
            if !c.is_whitespace() {
                words.push(&text[i..i + c.len_utf8()]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        words.push(&text[s..]);
    }
    words.into_iter()
}

/// Greedy longest-match-first WordPiece over one word: pieces after the first
/// carry the `##` prefix; a word that cannot be spelt is one `[UNK]`.
fn word_piece(word: &str) -> Vec<i64> {
    if word.chars().count() > MAX_CHARS_PER_WORD {
        return vec![UNK];
    }
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut key = String::with_capacity(word.len() + 2);
    while start < word.len() {
        let mut end = word.len();
        let mut found = None;
        while end > start {
            key.clear();
            if start > 0 {
                key.push_str("##");
            }
            key.push_str(&word[start..end]);
            if let Some(id) = lookup(&key) {
                found = Some(id);
                break;
            }
            // Step back one whole character.
            end = word[..end]
                .char_indices()
                .next_back()
                .map_or(start, |(i, _)| i);
        }
        match found {
            Some(id) => {
                pieces.push(id);
                start = end;
            }
            None => return vec![UNK],
        }
    }
    pieces
}

fn lookup(token: &str) -> Option<i64> {
    VOCAB
        .binary_search_by(|(t, _)| (*t).cmp(token))
        .ok()
        .map(|i| i64::from(VOCAB[i].1))
}

/// The step's answer for one text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sentiment {
    /// P(positive) = softmax(logits)[1].
    pub score: f32,
    /// The model's raw logits `[negative, positive]`.
    pub logits: [f32; 2],
}

impl Sentiment {
    /// From the model's two logits (index 1 = positive).
    pub fn from_logits(logits: [f32; 2]) -> Self {
        // softmax over two classes, computed stably as a sigmoid of the gap.
        let score = 1.0 / (1.0 + (logits[0] - logits[1]).exp());
        Sentiment { score, logits }
    }

    /// `positive`, `negative`, or `neutral` when P(positive) lies within
    /// `neutral_band / 2` of 0.5 (band 0 never says neutral).
    pub fn label(&self, neutral_band: f32) -> &'static str {
        let half = neutral_band / 2.0;
        if (self.score - 0.5).abs() <= half && half > 0.0 {
            "neutral"
        } else if self.score > 0.5 {
            "positive"
        } else {
            "negative"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of the fixture: the model's own tokenizer (HF `tokenizers`
    /// 0.23.3 on tokenizer.json, truncation 128) on the MR dev sentences and
    /// edge cases (accents, CJK, control and zero-width characters, emoji,
    /// 100+-char words, truncation, Greek/Cyrillic, punctuation).
    #[test]
    fn token_ids_equal_the_models_own_tokenizer() {
        let fixture = include_str!("../../../tests/fixtures/sentiment/token-ids.tsv");
        let mut n = 0;
        for line in fixture.lines() {
            let (ids, text) = line.split_once('\t').expect("ids<TAB>text");
            let text = unescape(text);
            let want: Vec<i64> = ids.split(' ').map(|s| s.parse().unwrap()).collect();
            assert_eq!(encode(&text, 128), want, "text: {text:?}");
            n += 1;
        }
        assert_eq!(n, 1072);
    }

    fn unescape(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        }
        out
    }

    #[test]
    fn truncation_keeps_cls_and_sep_within_the_limit() {
        let ids = encode(&"word ".repeat(1000), 16);
        assert_eq!(ids.len(), 16);
        assert_eq!((ids[0], ids[15]), (CLS, SEP));
        assert_eq!(
            encode("word", 0).len(),
            3,
            "clamped to at least [CLS] x [SEP]"
        );
        assert_eq!(encode(&"word ".repeat(1000), 100_000).len(), MAX_POSITIONS);
    }

    #[test]
    fn the_decision_band_is_centred_on_one_half() {
        let s = Sentiment::from_logits([0.0, 0.0]);
        assert_eq!(s.score, 0.5);
        assert_eq!(s.label(0.1), "neutral");
        assert_eq!(Sentiment::from_logits([-1.0, 1.0]).label(0.1), "positive");
        assert_eq!(Sentiment::from_logits([1.0, -1.0]).label(0.1), "negative");
        let near = Sentiment::from_logits([0.0, 0.15]); // p ≈ 0.537
        assert_eq!(near.label(0.1), "neutral");
        assert_eq!(near.label(0.0), "positive");
    }
}
