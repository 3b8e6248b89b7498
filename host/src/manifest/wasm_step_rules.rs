//! The rules a WasmStep must meet, checked once at load: its versions and
//! traffic split, component and model files, rollback policy, smoke event
//! and limits. What they check is carried on as typed values.

use std::time::Duration;

use super::error::{Location, ManifestError};
use super::units::{parse_duration, parse_quantity};
use super::wasm_step::{
    ComponentSource, LimitsSpec, RollbackSpec, StepSettings, TrafficSpec, WasmStepDoc,
};
use crate::step_limits::StepLimits;

/// Check a WasmStep against every rule and return what the rules derived,
/// typed, so nothing parses the same text again later.
pub(super) fn validate_wasm_step(
    doc: &WasmStepDoc,
    at: &Location,
) -> Result<StepSettings, ManifestError> {
    if doc.metadata.name.is_empty() {
        return Err(ManifestError::field(at, "metadata.name", "missing"));
    }
    check_versions(doc, at)?;
    check_files(doc, at)?;
    let rollback_window = match &doc.spec.rollback {
        Some(r) => Some(check_rollback(r, at)?),
        None => None,
    };
    let smoke_event = match &doc.spec.smoke_event {
        Some(value) => Some(smoke_event(value).map_err(|e| {
            ManifestError::field(
                at,
                "spec.smokeEvent",
                format!("not a valid CloudEvent: {e}"),
            )
        })?),
        None => None,
    };
    let limits = step_limits(doc.spec.limits.as_ref(), at)?;
    Ok(StepSettings {
        limits,
        smoke_event,
        rollback_window,
    })
}

/// A version name: what the manifest's `spec.versions[].name` and the admin
/// API's upload path both accept (it appears in URLs, metrics and logs).
pub fn check_version_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(format!(
            "{name:?} must be non-empty letters, digits, '-', '_' or '.'"
        ));
    }
    Ok(())
}

/// `component` xor `versions`; unique, well-formed version names; a traffic
/// split only over named versions.
fn check_versions(doc: &WasmStepDoc, at: &Location) -> Result<(), ManifestError> {
    match (&doc.spec.component, doc.spec.versions.is_empty()) {
        (Some(c), true) if c.is_empty() => {
            return Err(ManifestError::field(
                at,
                "spec.component",
                "must not be empty",
            ));
        }
        (Some(_), true) => {}
        (Some(_), false) => {
            return Err(ManifestError::field(
                at,
                "spec",
                "set either component (one version) or versions, not both",
            ));
        }
        (None, true) => {
            return Err(ManifestError::field(
                at,
                "spec.component",
                "missing (or give spec.versions)",
            ));
        }
        (None, false) => {}
    }
    if doc.spec.component.is_some() && !doc.spec.traffic.is_empty() {
        return Err(ManifestError::field(
            at,
            "spec.traffic",
            "needs spec.versions (a single component takes all traffic)",
        ));
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, v) in doc.spec.versions.iter().enumerate() {
        let field = format!("spec.versions[{i}]");
        check_version_name(&v.name)
            .map_err(|e| ManifestError::field(at, format!("{field}.name"), e))?;
        if !names.insert(v.name.as_str()) {
            return Err(ManifestError::field(
                at,
                format!("{field}.name"),
                format!("version {:?} is listed twice", v.name),
            ));
        }
        if v.component.is_empty() {
            return Err(ManifestError::field(
                at,
                format!("{field}.component"),
                "must not be empty",
            ));
        }
    }
    if !doc.spec.traffic.is_empty() {
        check_traffic(&doc.spec.traffic, &names)
            .map_err(|(field, message)| ManifestError::field(at, field, message))?;
    }
    Ok(())
}

/// Every component and model file exists; model grants are well-formed.
fn check_files(doc: &WasmStepDoc, at: &Location) -> Result<(), ManifestError> {
    for (i, (_, source)) in doc.versions().iter().enumerate() {
        let field = if doc.spec.component.is_some() {
            "spec.component".to_string()
        } else {
            format!("spec.versions[{i}].component")
        };
        if let ComponentSource::Oci(text) = source
            && let Err(e) = crate::oci::parse_reference(text)
        {
            return Err(ManifestError::field(at, field, e.to_string()));
        }
        if let ComponentSource::File(path) = source
            && !path.is_file()
        {
            return Err(ManifestError::field(
                at,
                field,
                format!("component file {} does not exist", path.display()),
            ));
        }
    }
    for (name, model) in doc.models() {
        let field = format!("spec.models.{name}");
        if name.is_empty() {
            return Err(ManifestError::field(
                at,
                "spec.models",
                "a model name must not be empty",
            ));
        }
        if model.max_input_elements == Some(0) {
            return Err(ManifestError::field(
                at,
                format!("{field}.maxInputElements"),
                "must be at least 1",
            ));
        }
        if let ComponentSource::File(path) = &model.source
            && !path.is_file()
        {
            return Err(ManifestError::field(
                at,
                field,
                format!("model file {} does not exist", path.display()),
            ));
        }
    }
    Ok(())
}

/// `spec.rollback`: a rate within 0..1, a positive window (returned), at
/// least one event.
fn check_rollback(r: &RollbackSpec, at: &Location) -> Result<Duration, ManifestError> {
    if !(0.0..=1.0).contains(&r.max_error_rate) {
        return Err(ManifestError::field(
            at,
            "spec.rollback.maxErrorRate",
            format!("{} is not within 0..1", r.max_error_rate),
        ));
    }
    let window = parse_duration(&r.window)
        .map_err(|e| ManifestError::field(at, "spec.rollback.window", e))?;
    if window.is_zero() {
        return Err(ManifestError::field(
            at,
            "spec.rollback.window",
            "must be greater than zero",
        ));
    }
    if r.min_events == 0 {
        return Err(ManifestError::field(
            at,
            "spec.rollback.minEvents",
            "must be at least 1",
        ));
    }
    Ok(window)
}

/// `spec.limits` checked and turned into the runtime's [`StepLimits`],
/// defaults filled in for what is not set.
fn step_limits(spec: Option<&LimitsSpec>, at: &Location) -> Result<StepLimits, ManifestError> {
    let mut limits = StepLimits::default();
    let Some(spec) = spec else {
        return Ok(limits);
    };
    if let Some(memory) = &spec.memory {
        let bytes = parse_quantity(memory)
            .map_err(|e| ManifestError::field(at, "spec.limits.memory", e))?;
        if bytes < MIN_STEP_MEMORY {
            return Err(ManifestError::field(
                at,
                "spec.limits.memory",
                format!("{bytes} bytes is below the 1Mi minimum a Rust guest needs to start"),
            ));
        }
        limits.memory = bytes;
    }
    if let Some(timeout) = &spec.timeout {
        let t = parse_duration(timeout)
            .map_err(|e| ManifestError::field(at, "spec.limits.timeout", e))?;
        if t.is_zero() {
            return Err(ManifestError::field(
                at,
                "spec.limits.timeout",
                "must be greater than zero",
            ));
        }
        limits.timeout = t;
    }
    if let Some(max_output) = &spec.max_output {
        let bytes = parse_quantity(max_output)
            .map_err(|e| ManifestError::field(at, "spec.limits.maxOutput", e))?;
        if bytes == 0 {
            return Err(ManifestError::field(
                at,
                "spec.limits.maxOutput",
                "must be greater than zero",
            ));
        }
        limits.max_output = usize::try_from(bytes).unwrap_or(usize::MAX);
    }
    match spec.concurrency {
        Some(0) => {
            return Err(ManifestError::field(
                at,
                "spec.limits.concurrency",
                "must be at least 1",
            ));
        }
        Some(c) => limits.concurrency = c as usize,
        None => {}
    }
    if let Some(q) = spec.max_queue {
        limits.max_queue = q as usize;
    }
    Ok(limits)
}

/// A YAML map of structured-mode CloudEvent fields as an event, checked as
/// an inbound event would be.
fn smoke_event(value: &yaml_serde::Value) -> Result<cloudevents::Event, String> {
    let json = serde_json::to_vec(value).map_err(|e| e.to_string())?;
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/cloudevents+json"),
    );
    crate::event::from_http(&headers, json, crate::event::TextEncoding::default())
        .map_err(|e| e.to_string())
}

/// Check a traffic split against a step's version names: known versions,
/// percentages 0–100 summing to 100, unique non-empty tags. The error is
/// (field path, message). Shared by manifests and the admin API.
pub fn check_traffic(
    traffic: &[TrafficSpec],
    names: &std::collections::BTreeSet<&str>,
) -> Result<(), (String, String)> {
    if traffic.is_empty() {
        return Err(("spec.traffic".into(), "must not be empty".into()));
    }
    let mut total = 0u32;
    let mut tags = std::collections::BTreeSet::new();
    for (i, t) in traffic.iter().enumerate() {
        let field = format!("spec.traffic[{i}]");
        if !names.contains(t.version.as_str()) {
            return Err((
                format!("{field}.version"),
                format!(
                    "no version {:?} in spec.versions (known: {})",
                    t.version,
                    names.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        if t.percent > 100 {
            return Err((
                format!("{field}.percent"),
                format!("{} is over 100", t.percent),
            ));
        }
        total += t.percent;
        if let Some(tag) = &t.tag
            && (tag.is_empty() || !tags.insert(tag.as_str()))
        {
            return Err((
                format!("{field}.tag"),
                format!("tag {tag:?} is empty or used twice"),
            ));
        }
    }
    if total != 100 {
        return Err((
            "spec.traffic".into(),
            format!("percentages sum to {total}, not 100"),
        ));
    }
    Ok(())
}

/// Below this a wasm32 Rust guest cannot even hold its stack (1 MiB by default).
const MIN_STEP_MEMORY: u64 = 1 << 20;
