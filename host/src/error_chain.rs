//! An error's message with its causes (`a: b: c`): HTTP and registry
//! clients put the useful part — which certificate, which status — in the
//! causes, not in their own top-level message ("client error (Connect)").

/// `error` and each of its causes, joined by `: `; a cause whose text the
/// message already holds is not repeated.
pub fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = e.source();
    }
    text
}
