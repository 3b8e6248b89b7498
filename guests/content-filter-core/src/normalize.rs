//! Undo the usual evasions of a word filter, so the model sees the words the
//! writer meant: Unicode compatibility folding (fullwidth → ASCII), accents,
//! zero-width characters, Cyrillic/Greek homoglyphs, leetspeak, separators
//! inside a word (`s.h.i.t`, `f u c k`), `*` wildcards and letters repeated
//! three or more times.
//!
//! Every rule only rewrites characters *inside* words (next to letters), so
//! numbers, prices and punctuation between ordinary words are left alone and
//! innocent words that contain a bad one (Scunthorpe, assessment) are not cut.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Normalise `text`. `is_profane` resolves a `*` wildcard to the vowel that
/// makes a known profane word (`f*ck` → `fuck`, `sh*t` → `shit`).
pub fn normalize(text: &str, is_profane: &dyn Fn(&str) -> bool) -> String {
    // 1. NFKD folds compatibility forms (fullwidth, ligatures, circled
    //    letters) and splits accents off; the marks and invisible characters
    //    are then dropped; look-alike letters are mapped to Latin.
    let folded: String = text
        .nfkd()
        .filter(|c| !is_combining_mark(*c) && !is_invisible(*c))
        .flat_map(char::to_lowercase)
        .map(homoglyph)
        .collect();
    // 2. Per word-ish chunk: leetspeak, wildcards, repeats.
    let words: Vec<String> = folded
        .split(char::is_whitespace)
        .filter(|w| !w.is_empty())
        .map(|w| fix_word(w, is_profane))
        .collect();
    // 3. Letters spelled out with separators: `f u c k`, `s.h.i.t`.
    join_spelled_out(&words)
}

/// Zero-width and formatting characters used to split words invisibly.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{034F}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}'
    )
}

/// Cyrillic and Greek letters that look like Latin ones (lower case).
fn homoglyph(c: char) -> char {
    match c {
        'а' | 'α' => 'a',
        'в' | 'β' => 'b',
        'с' | 'ϲ' => 'c',
        'ԁ' => 'd',
        'е' | 'ё' | 'ε' => 'e',
        'һ' | 'н' => 'h',
        'і' | 'ї' | 'ι' | 'ı' => 'i',
        'ј' => 'j',
        'к' | 'κ' => 'k',
        'м' => 'm',
        'η' | 'п' => 'n',
        'о' | 'ο' | 'σ' => 'o',
        'р' | 'ρ' => 'p',
        'ԛ' => 'q',
        'г' => 'r',
        'ѕ' => 's',
        'т' | 'τ' => 't',
        'υ' | 'μ' => 'u',
        'ν' => 'v',
        'ш' | 'ω' => 'w',
        'х' | 'χ' => 'x',
        'у' | 'γ' => 'y',
        'ᴢ' => 'z',
        other => other,
    }
}

/// Leetspeak stand-ins, applied only inside a word (next to a letter).
fn leet(c: char) -> Option<char> {
    Some(match c {
        '0' => 'o',
        '1' | '!' | '|' => 'i',
        '3' => 'e',
        '4' | '@' => 'a',
        '5' | '$' => 's',
        '7' | '+' => 't',
        '8' => 'b',
        '9' => 'g',
        _ => return None,
    })
}

/// Leetspeak, wildcards and repeats in one whitespace-free chunk.
fn fix_word(word: &str, is_profane: &dyn Fn(&str) -> bool) -> String {
    let chars: Vec<char> = word.chars().collect();
    let has_letter = chars.iter().any(|c| c.is_alphabetic());
    let mut out = String::with_capacity(word.len());
    for (i, &c) in chars.iter().enumerate() {
        let near_letter = |j: Option<usize>| {
            j.and_then(|j| chars.get(j))
                .is_some_and(|n| n.is_alphabetic() || leet(*n).is_some() || *n == '*')
        };
        let inside = has_letter && (near_letter(i.checked_sub(1)) || near_letter(Some(i + 1)));
        match leet(c) {
            Some(letter) if inside => out.push(letter),
            _ => out.push(c),
        }
    }
    let out = if out.contains('*') && has_letter {
        resolve_wildcards(&out, is_profane)
    } else {
        out
    };
    collapse_repeats(&out)
}

/// `f*ck` → the vowel filling every `*` that makes a known profane word; if
/// none does, the stars are dropped (`f**k` → `fk`, which the model ignores).
fn resolve_wildcards(word: &str, is_profane: &dyn Fn(&str) -> bool) -> String {
    let core: String = word
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '*')
        .collect();
    for vowel in ['u', 'i', 'a', 'o', 'e'] {
        let stars = core.chars().filter(|c| *c == '*').count();
        // `f**k`: try the vowel once, then doubled letters' worth of it.
        for fill in [vowel.to_string(), vowel.to_string().repeat(stars)] {
            let candidate = core.replacen(&"*".repeat(stars), &fill, 1).replace('*', "");
            if is_profane(&candidate) {
                return word.replace(core.as_str(), &candidate);
            }
        }
    }
    word.replace('*', "")
}

/// `shiiiit` → `shit`: a letter repeated three or more times becomes one.
/// (No English word has a letter three times in a row.)
fn collapse_repeats(word: &str) -> String {
    let chars: Vec<char> = word.chars().collect();
    let mut out = String::with_capacity(word.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mut j = i;
        while j < chars.len() && chars[j] == c {
            j += 1;
        }
        let run = j - i;
        let keep = if run >= 3 && c.is_alphabetic() {
            1
        } else {
            run
        };
        out.extend(std::iter::repeat_n(c, keep));
        i = j;
    }
    out
}

/// Join letters spelled out one at a time: three or more single letters in a
/// row, separated by spaces or by one punctuation character each
/// (`f u c k`, `s.h.i.t`, `b-i-t-c-h`), become one word.
fn join_spelled_out(words: &[String]) -> String {
    // First split `s.h.i.t` style chunks into their letters.
    let mut pieces: Vec<String> = Vec::new();
    for w in words {
        let parts: Vec<&str> = w.split(|c: char| !c.is_alphanumeric()).collect();
        let singles = parts.iter().filter(|p| p.chars().count() == 1).count();
        if parts.len() >= 3 && singles >= parts.len().saturating_sub(1) && singles >= 3 {
            pieces.extend(
                parts
                    .iter()
                    .filter(|p| !p.is_empty())
                    .map(|p| p.to_string()),
            );
        } else {
            pieces.push(w.clone());
        }
    }
    let single = |p: &String| p.chars().count() == 1 && p.chars().all(char::is_alphabetic);
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < pieces.len() {
        let mut j = i;
        while j < pieces.len() && single(&pieces[j]) {
            j += 1;
        }
        if j - i >= 3 {
            out.push(pieces[i..j].concat());
            i = j;
        } else {
            out.push(pieces[i].clone());
            i += 1;
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        normalize(s, &|w| ["fuck", "shit", "cunt"].contains(&w))
    }

    #[test]
    fn evasions_are_undone() {
        assert_eq!(norm("sh1t"), "shit");
        assert_eq!(norm("$h!t"), "shit");
        assert_eq!(norm("f*ck you"), "fuck you");
        assert_eq!(norm("sh*t"), "shit");
        assert_eq!(norm("s.h.i.t"), "shit");
        assert_eq!(norm("f u c k off"), "fuck off");
        assert_eq!(norm("shiiiiit"), "shit");
        assert_eq!(norm("ｆｕｃｋ"), "fuck");
        assert_eq!(norm("fսck").len(), "fսck".len(), "unmapped letters stay");
        assert_eq!(norm("fuсk"), "fuck", "Cyrillic с");
        assert_eq!(norm("f\u{200B}uck"), "fuck");
        assert_eq!(norm("fùck"), "fuck");
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        assert_eq!(
            norm("Scunthorpe assessment cockpit Shiitake Penistone"),
            "scunthorpe assessment cockpit shiitake penistone"
        );
        assert_eq!(
            norm("it costs $5 in 2019, 4 of us"),
            "it costs $5 in 2019, 4 of us"
        );
        assert_eq!(norm("I am a good reader"), "i am a good reader");
    }
}
