//! Whom an `https` hop trusts, as Knative's dispatcher does: the system
//! roots, the trust bundles Knative mounts into pods
//! (`/knative-custom-certs/<configmap>/*.pem`), and a Destination's own
//! `CACerts`. No I/O beyond reading those files; the HTTP client that uses
//! them lives with the dispatcher.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Where Knative mounts the trust-bundle ConfigMaps (those labelled
/// `networking.knative.dev/trust-bundle: "true"`) into the pods it manages
/// (eventing `pkg/eventingtls` `TrustBundleMountPath`).
pub const KNATIVE_TRUST_BUNDLE_DIR: &str = "/knative-custom-certs";

/// Largest trust-bundle file read: a bundle of every public root CA is
/// ≈ 220 KB, so 4 MiB leaves room and still bounds a mistaken mount.
const MAX_BUNDLE_FILE: u64 = 4 << 20;

/// Why certificates could not be trusted.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A `CACerts` value holds no PEM `CERTIFICATE` block.
    #[error("holds no PEM CERTIFICATE block (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate,
    /// A PEM block is malformed.
    #[error("is not valid PEM: {0}")]
    Pem(String),
    /// A certificate cannot serve as a trust anchor (not X.509 DER).
    #[error("certificate {index} is not a usable CA certificate: {message}")]
    BadCertificate {
        /// 1-based position of the certificate in the PEM text.
        index: usize,
        /// What webpki said.
        message: String,
    },
    /// The TLS client configuration could not be built.
    #[error("TLS client configuration: {0}")]
    Config(String),
    /// A trust-bundle file could not be read or parsed.
    #[error("trust bundle {path}: {message}")]
    Bundle {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// A Destination's `CACerts`: PEM text checked to hold CA certificates.
///
/// Kept with its text so that equal values share one HTTP client, as
/// Knative's dispatcher keeps one client per distinct CA set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CaCerts {
    /// The PEM text as written in the manifest.
    pem: String,
    /// The certificates it holds, in order.
    certs: Vec<CertificateDer<'static>>,
}

impl CaCerts {
    /// Parse `pem`: one or more `CERTIFICATE` blocks, each a certificate
    /// webpki accepts as a trust anchor (other block kinds are skipped, as
    /// Go's `AppendCertsFromPEM` does).
    pub fn parse(pem: &str) -> Result<Self, TlsError> {
        let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem(e.to_string()))?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        for (i, cert) in certs.iter().enumerate() {
            RootCertStore::empty()
                .add(cert.clone())
                .map_err(|e| TlsError::BadCertificate {
                    index: i + 1,
                    message: e.to_string(),
                })?;
        }
        Ok(Self {
            pem: pem.to_string(),
            certs,
        })
    }

    /// The certificates, to add to a root store.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }
}

/// The trust every https hop starts from: system roots plus trust bundles.
#[derive(Debug, Clone)]
pub struct BaseTrust {
    /// The roots; each hop's `CACerts` are added to a copy.
    pub roots: Arc<RootCertStore>,
    /// The same roots as certificates (what a registry client is given).
    pub certificates: Arc<Vec<CertificateDer<'static>>>,
    /// How many roots came from the system store.
    pub system: usize,
    /// How many came from trust-bundle files.
    pub bundled: usize,
}

impl BaseTrust {
    /// The system roots (as OpenSSL-based tools find them: `SSL_CERT_FILE`,
    /// `SSL_CERT_DIR`, else the platform's store) plus every `*.pem`/`*.crt`
    /// file found under `bundles` (a directory searched two levels deep, as
    /// Knative mounts one directory per ConfigMap, or a file). A bundle
    /// path that does not exist adds nothing: most pods have none.
    pub fn load(bundles: &[PathBuf]) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        // Unreadable system stores are not fatal: a scratch image has none,
        // and its hops may trust bundles or CACerts only.
        let native = rustls_native_certs::load_native_certs();
        let (system, _) = roots.add_parsable_certificates(native.certs.iter().cloned());
        let system_only = Self {
            roots: Arc::new(roots),
            certificates: Arc::new(native.certs),
            system,
            bundled: 0,
        };
        system_only.with_files(bundles)
    }

    /// These roots plus the certificates of `paths` (files, or directories
    /// as in [`BaseTrust::load`]): a registry's extra CAs on top of the
    /// hops' trust, without reading the system store again.
    pub fn with_files(&self, paths: &[PathBuf]) -> Result<Self, TlsError> {
        let mut roots = (*self.roots).clone();
        let mut certificates = (*self.certificates).clone();
        let mut bundled = self.bundled;
        for path in paths {
            for file in bundle_files(path)? {
                let certs = read_bundle(&file)?;
                let (added, _) = roots.add_parsable_certificates(certs.iter().cloned());
                certificates.extend(certs);
                bundled += added;
            }
        }
        Ok(Self {
            roots: Arc::new(roots),
            certificates: Arc::new(certificates),
            system: self.system,
            bundled,
        })
    }

    /// These roots plus `extra` (a Destination's `CACerts`).
    pub fn with(&self, extra: &CaCerts) -> RootCertStore {
        let mut roots = (*self.roots).clone();
        roots.add_parsable_certificates(extra.certs.iter().cloned());
        roots
    }
}

/// The PEM files of one trust-bundle path, sorted for a stable order.
fn bundle_files(path: &Path) -> Result<Vec<PathBuf>, TlsError> {
    let fail = |message: String| TlsError::Bundle {
        path: path.to_path_buf(),
        message,
    };
    if !path.exists() {
        return Ok(Vec::new());
    }
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut dirs = vec![(path.to_path_buf(), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| fail(e.to_string()))?;
        for entry in entries {
            let entry = entry.map_err(|e| fail(e.to_string()))?;
            let p = entry.path();
            let name = entry.file_name();
            // ConfigMap volumes hold `..data` symlinks and `..<timestamp>`
            // directories beside the keys: read the keys only.
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            if p.is_dir() && depth < 1 {
                dirs.push((p, depth + 1));
            } else if p.is_file()
                && p.extension()
                    .is_some_and(|e| e == "pem" || e == "crt" || e == "cer")
            {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The certificates of one bundle file.
fn read_bundle(file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |message: String| TlsError::Bundle {
        path: file.to_path_buf(),
        message,
    };
    let len = std::fs::metadata(file)
        .map_err(|e| fail(e.to_string()))?
        .len();
    if len > MAX_BUNDLE_FILE {
        return Err(fail(format!(
            "{len} bytes, more than the {MAX_BUNDLE_FILE} a trust bundle may have"
        )));
    }
    let bytes = std::fs::read(file).map_err(|e| fail(e.to_string()))?;
    CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not valid PEM: {e}")))
}
