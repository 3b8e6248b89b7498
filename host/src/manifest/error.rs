//! Where a manifest problem is (file, document, kind and name) and what it
//! is ([`ManifestError`]), and the `metadata` every document carries.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use thiserror::Error;

/// Where in which manifest a problem is.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    /// The file (or `<embedded default>`).
    pub origin: String,
    /// 1-based index of the YAML document in the file.
    pub document: usize,
    /// The document's `kind` and `metadata.name`, when known.
    pub what: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.origin, self.document)?;
        if !self.what.is_empty() {
            write!(f, " ({})", self.what)?;
        }
        Ok(())
    }
}

/// A manifest that cannot be used, with where and why.
#[derive(Debug, Error, PartialEq)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read manifest {path}: {message}")]
    Read {
        /// The path given.
        path: String,
        /// The I/O error.
        message: String,
    },
    /// The text is not YAML.
    #[error("{origin}: not valid YAML: {message}")]
    Yaml {
        /// The file.
        origin: String,
        /// The parser's reason, with line and column.
        message: String,
    },
    /// A field is wrong.
    #[error("{at}: {field}: {message}")]
    Field {
        /// The document.
        at: Location,
        /// Dotted path of the field (`spec.steps[1].ref`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The manifests as a whole do not fit together.
    #[error("{0}")]
    Invalid(String),
}

impl ManifestError {
    pub(crate) fn field(
        at: &Location,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ManifestError::Field {
            at: at.clone(),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// `metadata` of any document: only what stephost uses is typed; the rest of
/// Kubernetes' ObjectMeta (labels, uid, …) is accepted and ignored.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct ObjectMeta {
    /// The object's name: how steps and sequences are addressed.
    #[serde(default)]
    pub name: String,
    /// Namespace: used to resolve refs as Knative does (`Kn-Namespace`, URLs).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Anything else Kubernetes allows in metadata.
    #[serde(flatten)]
    pub other: BTreeMap<String, yaml_serde::Value>,
}
