//! The component cache on disk, keyed by digest (`blobs/sha256/<hex>`,
//! `manifests/sha256/<hex>`), and the digest checks every read and pull
//! passes: an entry is used only while it is still what its digest names.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::OciError;

/// A `sha256:` digest of 64 lower-case hex digits: the only kind checked,
/// and safe to name a cache file by.
pub(super) fn valid_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// `sha256:<hex>` of `bytes` equals `digest`.
pub(super) fn check_digest(bytes: &[u8], digest: &str) -> Result<(), String> {
    let Some(hex) = digest
        .strip_prefix("sha256:")
        .filter(|_| valid_digest(digest))
    else {
        return Err(format!(
            "digest {digest:?} is not sha256 (the only kind checked)"
        ));
    };
    let actual = format!("{:x}", Sha256::digest(bytes));
    if actual == hex {
        Ok(())
    } else {
        Err(format!(
            "content does not match its digest: expected sha256:{hex}, got sha256:{actual}"
        ))
    }
}

pub(super) fn read_cached(path: &Path, digest: &str) -> Result<Option<Vec<u8>>, OciError> {
    match std::fs::read(path) {
        Ok(bytes) if check_digest(&bytes, digest).is_ok() => Ok(Some(bytes)),
        // A damaged entry is pulled again.
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(OciError::Cache {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// `<cache>/blobs/sha256/<hex>`; digests are `algorithm:hex` with safe
/// characters only (checked by the reference parser or `check_digest`).
pub(super) fn blob_path(cache: &Path, digest: &str) -> PathBuf {
    cache.join("blobs").join(digest.replace(':', "/"))
}

pub(super) fn manifest_path(cache: &Path, digest: &str) -> PathBuf {
    cache.join("manifests").join(digest.replace(':', "/"))
}

/// Write `bytes` to `path` atomically (a reader never sees half a file).
pub(super) fn store(path: &Path, bytes: &[u8]) -> Result<(), OciError> {
    let fail = |source| OciError::Cache {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}
