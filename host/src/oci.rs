//! Components from OCI registries: `oci://REGISTRY/REPO:TAG` or
//! `oci://REGISTRY/REPO@sha256:…`, the CNCF Wasm OCI artifact layout (one
//! `application/wasm` layer) read with `oci-client`; every blob checked
//! against its digest and size, and kept in an on-disk cache keyed by
//! digest so a restart, a rollback or a second replica does not pull again.
//!
//! - `auth.rs`: credentials from a Docker config (imagePullSecret);
//! - `cache.rs`: the on-disk cache by digest, and digest checks;
//! - `push.rs`: `stephost push`, the artifact written.

mod auth;
mod cache;
mod push;

pub use auth::DockerAuth;
pub use push::{WASM_CONFIG_MEDIA_TYPE, push};

use cache::{blob_path, check_digest, manifest_path, read_cached, store, valid_digest};

use std::path::PathBuf;
use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::manifest::OciImageManifest;
use oci_client::{Client, Reference};

use crate::error_chain::with_causes;
use crate::tls::BaseTrust;

/// The scheme of a component reference in a manifest.
pub const SCHEME: &str = "oci://";

/// The layer media type of a Wasm component artifact.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";

/// Largest manifest read: a Wasm artifact's is a few hundred bytes.
const MAX_MANIFEST_BYTES: usize = 1 << 20;

/// Why a component could not be pulled or pushed.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The reference does not parse.
    #[error(
        "{reference:?} is not an OCI reference (oci://REGISTRY/REPOSITORY:TAG or @sha256:…): {message}"
    )]
    Reference {
        /// As written.
        reference: String,
        /// Why.
        message: String,
    },
    /// The registry could not be reached or refused the request.
    #[error("{reference}: {message}")]
    Registry {
        /// The reference.
        reference: String,
        /// The client's error, with its causes.
        message: String,
    },
    /// What the registry sent is not a component artifact, or not what its
    /// digest names.
    #[error("{reference}: {message}")]
    Artifact {
        /// The reference.
        reference: String,
        /// What is wrong.
        message: String,
    },
    /// The credentials file could not be read.
    #[error("registry credentials {path}: {message}")]
    Auth {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The cache could not be written or read.
    #[error("component cache {path}: {source}")]
    Cache {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Parse `oci://REGISTRY/REPO[:TAG|@DIGEST]`.
pub fn parse_reference(text: &str) -> Result<Reference, OciError> {
    let fail = |message: String| OciError::Reference {
        reference: text.to_string(),
        message,
    };
    let rest = text
        .strip_prefix(SCHEME)
        .ok_or_else(|| fail(format!("it does not start with {SCHEME}")))?;
    if !rest
        .split('/')
        .next()
        .is_some_and(|r| r.contains(['.', ':']) || r == "localhost")
    {
        return Err(fail(
            "name the registry host (`oci://ghcr.io/…`, `oci://registry.local:5000/…`)".into(),
        ));
    }
    rest.parse::<Reference>().map_err(|e| fail(e.to_string()))
}

/// How the host reaches registries (`--registry-*` flags).
#[derive(Debug, Clone, Default)]
pub struct OciSettings {
    /// Trusted roots: the system's, the trust bundles and `--registry-ca`.
    pub trust: Option<BaseTrust>,
    /// `host[:port]` reached over plain HTTP (`--insecure-registry`).
    pub insecure: Vec<String>,
    /// Credentials.
    pub auth: DockerAuth,
    /// `<cache-dir>/oci`.
    pub cache_dir: PathBuf,
    /// Largest component layer accepted.
    pub max_bytes: usize,
}

/// A component pulled (or found in the cache).
#[derive(Debug, Clone)]
pub struct Pulled {
    /// `oci://REGISTRY/REPO@sha256:…`: the manifest digest that runs.
    pub pinned: String,
    /// The component's bytes (the layer, digest-checked).
    pub bytes: Vec<u8>,
}

/// Pulls components; one per host (or per `validate`/`push`).
pub struct Puller {
    client: Client,
    settings: OciSettings,
}

impl Puller {
    /// A client per `settings` (TLS with its roots; insecure hosts over HTTP).
    pub fn new(settings: OciSettings) -> Self {
        // The registry client (reqwest) uses rustls without a provider of its
        // own: ring, the one the hops use. Installing twice is a no-op.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certs = settings
            .trust
            .as_ref()
            .map(|t| {
                t.certificates
                    .iter()
                    .map(|c| Certificate {
                        encoding: CertificateEncoding::Der,
                        data: c.to_vec(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let config = ClientConfig {
            protocol: if settings.insecure.is_empty() {
                ClientProtocol::Https
            } else {
                ClientProtocol::HttpsExcept(settings.insecure.clone())
            },
            tls_certs_only: certs,
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(60)),
            user_agent: concat!("stephost/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        Self {
            client: Client::new(config),
            settings,
        }
    }

    /// The component `text` names: from the cache when its digest is pinned
    /// and cached, else from the registry (a tag resolved to its digest),
    /// checked and cached.
    pub async fn pull(&self, text: &str) -> Result<Pulled, OciError> {
        let reference = parse_reference(text)?;
        if let Some(digest) = reference.digest()
            && !valid_digest(digest)
        {
            return Err(OciError::Reference {
                reference: text.to_string(),
                message: format!("digest {digest:?} is not sha256:<64 hex digits>"),
            });
        }
        if let Some(digest) = reference.digest()
            && let Some(bytes) = self.cached_component(digest)?
        {
            return Ok(Pulled {
                pinned: pinned(&reference, digest),
                bytes,
            });
        }
        let registry_error = |e: oci_client::errors::OciDistributionError| OciError::Registry {
            reference: text.to_string(),
            message: with_causes(&e),
        };
        let artifact = |message: String| OciError::Artifact {
            reference: text.to_string(),
            message,
        };
        let auth = self.settings.auth.for_registry(reference.registry());
        let (raw, digest) = self
            .client
            .pull_manifest_raw(
                &reference,
                &auth,
                &[
                    oci_client::manifest::OCI_IMAGE_MEDIA_TYPE,
                    oci_client::manifest::IMAGE_MANIFEST_MEDIA_TYPE,
                ],
            )
            .await
            .map_err(registry_error)?;
        if raw.len() > MAX_MANIFEST_BYTES {
            return Err(artifact(format!("a manifest of {} bytes", raw.len())));
        }
        let digest = match reference.digest() {
            Some(pinned) => pinned.to_string(),
            None if valid_digest(&digest) => digest,
            None => return Err(artifact(format!("the registry named digest {digest:?}"))),
        };
        check_digest(&raw, &digest).map_err(|m| artifact(format!("manifest: {m}")))?;
        let layer = wasm_layer(&raw).map_err(&artifact)?;
        let size = usize::try_from(layer.size).unwrap_or(usize::MAX);
        if size > self.settings.max_bytes {
            return Err(artifact(format!(
                "its component is {size} bytes, more than --max-component-bytes ({})",
                self.settings.max_bytes
            )));
        }
        let bytes = match self.cached_blob(&layer.digest)? {
            Some(bytes) => bytes,
            None => {
                let mut bytes = Vec::with_capacity(size);
                self.client
                    .pull_blob(&reference, &layer, &mut bytes)
                    .await
                    .map_err(registry_error)?;
                if bytes.len() != size {
                    return Err(artifact(format!(
                        "layer {} is {} bytes, its descriptor says {size}",
                        layer.digest,
                        bytes.len()
                    )));
                }
                check_digest(&bytes, &layer.digest).map_err(|m| artifact(format!("layer: {m}")))?;
                store(&blob_path(&self.settings.cache_dir, &layer.digest), &bytes)?;
                bytes
            }
        };
        store(&manifest_path(&self.settings.cache_dir, &digest), &raw)?;
        Ok(Pulled {
            pinned: pinned(&reference, &digest),
            bytes,
        })
    }

    /// The component of a cached manifest `digest`, both re-checked.
    fn cached_component(&self, digest: &str) -> Result<Option<Vec<u8>>, OciError> {
        let Some(raw) = read_cached(&manifest_path(&self.settings.cache_dir, digest), digest)?
        else {
            return Ok(None);
        };
        let Ok(layer) = wasm_layer(&raw) else {
            return Ok(None);
        };
        self.cached_blob(&layer.digest)
    }

    /// A cached blob, when present and still what its digest names.
    fn cached_blob(&self, digest: &str) -> Result<Option<Vec<u8>>, OciError> {
        read_cached(&blob_path(&self.settings.cache_dir, digest), digest)
    }

    /// The client, for `push`.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The settings, for `push`.
    pub(crate) fn settings(&self) -> &OciSettings {
        &self.settings
    }
}

/// The one `application/wasm` layer of an image manifest.
fn wasm_layer(raw: &[u8]) -> Result<oci_client::manifest::OciDescriptor, String> {
    let manifest: OciImageManifest = serde_json::from_slice(raw)
        .map_err(|e| format!("not an OCI image manifest (an index or another kind?): {e}"))?;
    let mut wasm = manifest
        .layers
        .iter()
        .filter(|l| l.media_type == WASM_LAYER_MEDIA_TYPE);
    match (wasm.next(), wasm.next()) {
        (Some(layer), None) if !valid_digest(&layer.digest) => Err(format!(
            "layer digest {:?} is not sha256:<64 hex digits>",
            layer.digest
        )),
        (Some(layer), None) => Ok(layer.clone()),
        (None, _) => Err(format!(
            "not a Wasm component artifact: no {WASM_LAYER_MEDIA_TYPE} layer (layers: {})",
            manifest
                .layers
                .iter()
                .map(|l| l.media_type.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        (Some(_), Some(_)) => Err(format!(
            "more than one {WASM_LAYER_MEDIA_TYPE} layer: which component runs is ambiguous"
        )),
    }
}

fn pinned(reference: &Reference, digest: &str) -> String {
    format!(
        "{SCHEME}{}/{}@{digest}",
        reference.registry(),
        reference.repository()
    )
}
