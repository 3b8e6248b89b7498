//! Units as Kubernetes and Knative write them: quantities (`128Mi`, `1Gi`,
//! `500M`) and ISO-8601 durations (`PT5S`), for manifests and flags alike.

use std::time::Duration;

/// Parse an ISO-8601 duration (`PT5S`, `PT0.2S`, `P1D`), as Knative's delivery
/// fields use.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    iso8601::duration(text)
        .map(Duration::from)
        .map_err(|_| format!("{text:?} is not an ISO-8601 duration (e.g. PT0.5S, PT30S, PT1M)"))
}

/// Parse a Kubernetes memory quantity (`128Mi`, `1Gi`, `500M`, `1048576`).
pub fn parse_quantity(value: &yaml_serde::Value) -> Result<u64, String> {
    let text = match value {
        yaml_serde::Value::Number(n) => n.to_string(),
        yaml_serde::Value::String(s) => s.trim().to_string(),
        other => return Err(format!("expected a quantity like 128Mi, got {other:?}")),
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a quantity like 128Mi, 1Gi or 500M"))?;
    let unit: u64 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {suffix:?} (use Ki, Mi, Gi, k, M or G)"
            ));
        }
    };
    number
        .checked_mul(unit)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_and_durations_parse() {
        let q = |s: &str| parse_quantity(&yaml_serde::Value::String(s.into()));
        assert_eq!(q("128Mi"), Ok(128 << 20));
        assert_eq!(q("1Gi"), Ok(1 << 30));
        assert_eq!(q("500M"), Ok(500_000_000));
        assert!(q("12Qi").is_err());
        assert_eq!(parse_duration("PT0.2S"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("PT5S"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("5s").is_err());
    }
}
