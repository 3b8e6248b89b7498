//! Turns the model's `vocab.txt` into a sorted static table, so that a fresh
//! guest instance looks tokens up by binary search with no start-up work.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let vocab = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap())
        .join("../sentiment/model/vocab.txt");
    println!("cargo::rerun-if-changed={}", vocab.display());
    let text = std::fs::read_to_string(&vocab)
        .unwrap_or_else(|e| panic!("reading {}: {e}", vocab.display()));
    let mut entries: Vec<(&str, usize)> = text.lines().enumerate().map(|(i, t)| (t, i)).collect();
    entries.sort();
    entries.dedup_by(|a, b| a.0 == b.0);
    let mut out =
        String::from("/// (token, id) sorted by token: the model's WordPiece vocabulary.\n");
    writeln!(
        out,
        "pub(crate) static VOCAB: [(&str, u32); {}] = [",
        entries.len()
    )
    .unwrap();
    for (token, id) in entries {
        writeln!(out, "    ({token:?}, {id}),").unwrap();
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("vocab.rs");
    std::fs::write(dest, out).unwrap();
}
