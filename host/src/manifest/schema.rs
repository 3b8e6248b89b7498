//! Knative documents checked against Knative's own CRD schemas, as a
//! cluster's API server would check them on `kubectl apply` (strict field
//! validation), so `stephost validate` catches what the cluster would refuse.
//!
//! The CRDs are vendored verbatim in `knative/crds/` (Apache-2.0). Each
//! version's `openAPIV3Schema` becomes a JSON Schema: objects that list
//! `properties` and do not preserve unknown fields get
//! `additionalProperties: false` (Kubernetes' structural-schema pruning,
//! which strict validation turns into errors), and the root gets the
//! `apiVersion`/`kind`/`metadata` every object has.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use serde_json::{Value, json};
use thiserror::Error;

use super::{
    Document, Location, Manifest, ManifestError, WASMSTEP_API, documents, embedded_manifests,
    read_file,
};

/// The vendored CRDs, compiled in so `validate` works from any directory.
const CRDS: &[(&str, &str)] = &[
    (
        "eventing-broker.yaml",
        include_str!("../../../knative/crds/eventing-broker.yaml"),
    ),
    (
        "eventing-channel.yaml",
        include_str!("../../../knative/crds/eventing-channel.yaml"),
    ),
    (
        "eventing-inmemorychannel.yaml",
        include_str!("../../../knative/crds/eventing-inmemorychannel.yaml"),
    ),
    (
        "eventing-parallel.yaml",
        include_str!("../../../knative/crds/eventing-parallel.yaml"),
    ),
    (
        "eventing-sequence.yaml",
        include_str!("../../../knative/crds/eventing-sequence.yaml"),
    ),
    (
        "eventing-sinkbindings.yaml",
        include_str!("../../../knative/crds/eventing-sinkbindings.yaml"),
    ),
    (
        "eventing-subscription.yaml",
        include_str!("../../../knative/crds/eventing-subscription.yaml"),
    ),
    (
        "eventing-trigger.yaml",
        include_str!("../../../knative/crds/eventing-trigger.yaml"),
    ),
    (
        "serving-configuration.yaml",
        include_str!("../../../knative/crds/serving-configuration.yaml"),
    ),
    (
        "serving-revision.yaml",
        include_str!("../../../knative/crds/serving-revision.yaml"),
    ),
    (
        "serving-route.yaml",
        include_str!("../../../knative/crds/serving-route.yaml"),
    ),
    (
        "serving-service.yaml",
        include_str!("../../../knative/crds/serving-service.yaml"),
    ),
];

/// A vendored CRD that cannot be turned into a validator (a packaging bug).
#[derive(Debug, Error)]
#[error("knative/crds/{file}: {message}")]
pub struct SchemaError {
    /// The CRD file that would not load.
    file: String,
    /// Why.
    message: String,
}

/// One way a document breaks its schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// Field path in the document (`spec.steps[0].ref.kind`), or `(document)`.
    pub path: String,
    /// What is wrong, in the validator's words.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Compiled validators by (apiVersion, kind).
pub struct KnativeSchemas {
    /// One compiled schema per (apiVersion, kind), built once.
    validators: HashMap<(String, String), jsonschema::Validator>,
}

impl KnativeSchemas {
    /// Compile every vendored CRD (plus core `v1 ConfigMap`). Milliseconds.
    pub fn load() -> Result<Self, SchemaError> {
        let mut validators = HashMap::new();
        for (file, text) in CRDS {
            let err = |message: String| SchemaError {
                file: file.to_string(),
                message,
            };
            let crd: Value = yaml_serde::from_str(text).map_err(|e| err(e.to_string()))?;
            let group = crd["spec"]["group"]
                .as_str()
                .ok_or_else(|| err("no spec.group".into()))?;
            let kind = crd["spec"]["names"]["kind"]
                .as_str()
                .ok_or_else(|| err("no spec.names.kind".into()))?;
            let versions = crd["spec"]["versions"]
                .as_array()
                .ok_or_else(|| err("no spec.versions".into()))?;
            for version in versions {
                let name = version["name"]
                    .as_str()
                    .ok_or_else(|| err("a version has no name".into()))?;
                let schema = version["schema"]["openAPIV3Schema"].clone();
                if schema.is_null() {
                    return Err(err(format!("version {name} has no openAPIV3Schema")));
                }
                let schema = root(structural(schema));
                let validator =
                    jsonschema::validator_for(&schema).map_err(|e| err(e.to_string()))?;
                validators.insert((format!("{group}/{name}"), kind.to_string()), validator);
            }
        }
        let config_map = root(json!({
            "type": "object",
            "properties": {
                "data": {"type": "object", "additionalProperties": {"type": "string"}},
                "binaryData": {"type": "object", "additionalProperties": {"type": "string"}},
                "immutable": {"type": "boolean"}
            }
        }));
        let validator = jsonschema::validator_for(&config_map).map_err(|e| SchemaError {
            file: "(core v1 ConfigMap)".into(),
            message: e.to_string(),
        })?;
        validators.insert(("v1".into(), "ConfigMap".into()), validator);
        Ok(Self { validators })
    }

    /// The kinds with a schema, sorted, for messages.
    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self
            .validators
            .keys()
            .map(|(api, kind)| format!("{api} {kind}"))
            .collect();
        kinds.sort();
        kinds
    }

    /// Whether there is a schema for this apiVersion and kind.
    pub fn knows(&self, api_version: &str, kind: &str) -> bool {
        self.validators
            .contains_key(&(api_version.to_string(), kind.to_string()))
    }

    /// Every violation of the document's schema (empty = valid); `None` when
    /// no schema is known for its apiVersion and kind.
    pub fn validate(&self, doc: &yaml_serde::Value) -> Option<Vec<Violation>> {
        let api = doc.get("apiVersion")?.as_str()?;
        let kind = doc.get("kind")?.as_str()?;
        let validator = self.validators.get(&(api.to_string(), kind.to_string()))?;
        let instance = match serde_json::to_value(doc) {
            Ok(v) => v,
            Err(e) => {
                return Some(vec![Violation {
                    path: "(document)".into(),
                    message: format!("not representable as JSON (Kubernetes requires it): {e}"),
                }]);
            }
        };
        let mut violations: Vec<Violation> = validator
            .iter_errors(&instance)
            .map(|e| Violation {
                path: dotted(&e.instance_path().to_string()),
                message: e.to_string(),
            })
            .collect();
        violations.sort_by(|a, b| a.path.cmp(&b.path));
        violations.dedup();
        Some(violations)
    }
}

/// What `stephost validate` found in a set of files.
#[derive(Default)]
pub struct Checked {
    /// The stephost documents (Sequences and WasmSteps), from the files and
    /// from manifests embedded in ConfigMaps, ready to compile.
    pub manifest: Manifest,
    /// How many documents were checked against a Knative/Kubernetes schema.
    pub schema_checked: usize,
    /// Every schema violation, with the document it is in.
    pub violations: Vec<(Location, Violation)>,
}

/// Read `paths`, check every Knative document (and ConfigMap) against its
/// schema, collect every violation, and parse the stephost documents — also
/// those inside a ConfigMap's `data` (how `manifests/configmap.yaml` ships the
/// Sequence to a cluster). Documents of a kind stephost neither runs nor has
/// a schema for are refused. Violations are collected, not fatal: the caller
/// reports all of them.
pub fn check_files(paths: &[PathBuf], schemas: &KnativeSchemas) -> Result<Checked, ManifestError> {
    let mut checked = Checked::default();
    let mut texts = Vec::new();
    for path in paths {
        let origin = path.display().to_string();
        let (text, base) = read_file(path)?;
        // Schemas first: they report every violation, where stephost's own
        // parser stops at the first problem.
        check_text(&text, &origin, schemas, &mut checked, false)?;
        texts.push((text, origin, base));
    }
    if checked.violations.is_empty() {
        for (text, origin, base) in texts {
            checked
                .manifest
                .merge(Manifest::parse_lenient(&text, &origin, &base)?)?;
        }
    }
    Ok(checked)
}

fn check_text(
    text: &str,
    origin: &str,
    schemas: &KnativeSchemas,
    checked: &mut Checked,
    nested: bool,
) -> Result<(), ManifestError> {
    for Document { at, value: doc } in documents(text, origin)? {
        let api = doc.get("apiVersion").and_then(|v| v.as_str()).unwrap_or("");
        let kind = doc.get("kind").and_then(|v| v.as_str()).unwrap_or("");
        if let Some(violations) = schemas.validate(&doc) {
            checked.schema_checked += 1;
            checked
                .violations
                .extend(violations.into_iter().map(|v| (at.clone(), v)));
        } else if api != WASMSTEP_API {
            return Err(ManifestError::field(
                &at,
                "kind",
                format!(
                    "unsupported {api} {kind}: stephost validate reads {WASMSTEP_API} WasmStep, \
                     v1 ConfigMap and the Knative kinds {}",
                    schemas.kinds().join(", ")
                ),
            ));
        }
        if kind == "ConfigMap" && api == "v1" && !nested {
            // Its stephost documents were parsed with the file; check the
            // Sequences among them against their schema too.
            for (key, text) in embedded_manifests(&doc) {
                check_text(text, &format!("{at} data.{key}"), schemas, checked, true)?;
            }
        }
    }
    Ok(())
}

/// Kubernetes' structural-schema rule as JSON Schema: an object schema with
/// `properties` admits no other fields unless it says
/// `x-kubernetes-preserve-unknown-fields: true` or has `additionalProperties`.
fn structural(mut schema: Value) -> Value {
    if let Value::Object(map) = &mut schema {
        for key in ["properties", "patternProperties", "definitions"] {
            if let Some(Value::Object(children)) = map.get_mut(key) {
                for child in children.values_mut() {
                    *child = structural(child.take());
                }
            }
        }
        for key in ["items", "additionalProperties", "not"] {
            if let Some(child) = map.get_mut(key)
                && child.is_object()
            {
                *child = structural(child.take());
            }
        }
        for key in ["allOf", "anyOf", "oneOf"] {
            if let Some(Value::Array(children)) = map.get_mut(key) {
                for child in children.iter_mut() {
                    *child = structural(child.take());
                }
            }
        }
        let preserves = map
            .get("x-kubernetes-preserve-unknown-fields")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if map.contains_key("properties") && !preserves && !map.contains_key("additionalProperties")
        {
            map.insert("additionalProperties".into(), Value::Bool(false));
        }
        // OpenAPI's `nullable` has no JSON Schema meaning; Kubernetes allows null then.
        if map.remove("nullable") == Some(Value::Bool(true))
            && let Some(Value::String(t)) = map.get("type").cloned()
        {
            map.insert("type".into(), json!([t, "null"]));
        }
    }
    schema
}

/// What every Kubernetes object has at its root, around the CRD's schema.
fn root(mut schema: Value) -> Value {
    let meta = json!({
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "generateName": {"type": "string"},
            "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            "finalizers": {"type": "array", "items": {"type": "string"}},
            "ownerReferences": {"type": "array", "items": {"type": "object"}},
            "uid": {"type": "string"},
            "resourceVersion": {"type": "string"},
            "generation": {"type": "integer"},
            "creationTimestamp": {},
            "deletionTimestamp": {},
            "deletionGracePeriodSeconds": {"type": "integer"},
            "managedFields": {"type": "array"},
            "selfLink": {"type": "string"}
        },
        "additionalProperties": false
    });
    if let Value::Object(map) = &mut schema {
        let props = map
            .entry("properties")
            .or_insert_with(|| json!({}))
            .as_object_mut();
        if let Some(props) = props {
            props.insert("apiVersion".into(), json!({"type": "string"}));
            props.insert("kind".into(), json!({"type": "string"}));
            props.insert("metadata".into(), meta);
        }
        map.insert("required".into(), json!(["apiVersion", "kind", "metadata"]));
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
    schema
}

/// `/spec/steps/0/ref` → `spec.steps[0].ref`.
fn dotted(pointer: &str) -> String {
    if pointer.is_empty() {
        return "(document)".into();
    }
    let mut out = String::new();
    for part in pointer.trim_start_matches('/').split('/') {
        let part = part.replace("~1", "/").replace("~0", "~");
        if part.parse::<usize>().is_ok() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&part);
        }
    }
    out
}

#[cfg(test)]
mod tests;
