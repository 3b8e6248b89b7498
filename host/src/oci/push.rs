//! `stephost push`: a component written as a CNCF Wasm OCI artifact (what
//! `wkg oci push` and `wash push` write): an `application/vnd.wasm.config.v0+json`
//! config naming the component's imports and exports, one
//! `application/wasm` layer holding the component's bytes.
//!
//! Hand-written rather than with `oci-wasm`: that crate pins an older
//! `oci-client` whose rustls feature builds aws-lc (a C library) on every
//! clean build; the config is a small JSON document.

use oci_client::client::{Config, ImageLayer};

use super::{OciError, Puller, SCHEME, WASM_LAYER_MEDIA_TYPE, parse_reference, pinned};
use crate::error_chain::with_causes;

/// The config media type of a Wasm component artifact.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";

/// Push `bytes` (a component whose world the caller has checked, with its
/// `imports` and `exports` names) to `target` (`oci://REGISTRY/REPO:TAG`);
/// returns the digest reference to write in a manifest.
pub async fn push(
    puller: &Puller,
    bytes: Vec<u8>,
    target: &str,
    imports: Vec<String>,
    exports: Vec<String>,
) -> Result<String, OciError> {
    let reference = parse_reference(target)?;
    if reference.digest().is_some() {
        return Err(OciError::Reference {
            reference: target.to_string(),
            message: "push to a tag (`:v1`); the digest is the registry's answer".into(),
        });
    }
    let layer_digest = format!("sha256:{}", sha256_hex(&bytes));
    let config = serde_json::json!({
        "created": rfc3339_now(),
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [layer_digest],
        "component": {"exports": exports, "imports": imports},
    });
    let config = Config::new(
        serde_json::to_vec(&config).unwrap_or_default(),
        WASM_CONFIG_MEDIA_TYPE.to_string(),
        None,
    );
    let layers = [ImageLayer::new(
        bytes,
        WASM_LAYER_MEDIA_TYPE.to_string(),
        None,
    )];
    let auth = puller.settings().auth.for_registry(reference.registry());
    let failed = |e: oci_client::errors::OciDistributionError| OciError::Registry {
        reference: format!("{SCHEME}{}", reference.whole()),
        message: with_causes(&e),
    };
    puller
        .client()
        .push(&reference, &layers, config, &auth, None)
        .await
        .map_err(failed)?;
    let digest = puller
        .client()
        .fetch_manifest_digest(&reference, &auth)
        .await
        .map_err(failed)?;
    Ok(pinned(&reference, &digest))
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// Now as RFC 3339 UTC (`2026-12-05T03:04:05Z`), for the config's `created`.
fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
