//! Guest components built from `guests/` by `build.rs`: the reference guests
//! and the sentiment model embedded in the binary (`builtin:<name>` in a
//! WasmStep's `component` or `models`), the default
//! manifest that uses them, and the paths of every built guest for tests and
//! benchmarks.

use crate::registry::Builtins;

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// The default manifest `stephost serve` runs without `--manifest`: the seed's
/// Sequence (content filter → sentiment) bound to the built-in guests.
pub const DEFAULT_MANIFEST: &str = include_str!("../../../manifests/default-sequence.yaml");

/// The guests compiled into this binary.
pub struct EmbeddedGuests;

impl Builtins for EmbeddedGuests {
    fn get(&self, name: &str) -> Option<&'static [u8]> {
        EMBEDDED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, bytes)| *bytes)
    }

    fn names(&self) -> Vec<&'static str> {
        EMBEDDED.iter().map(|(n, _)| *n).collect()
    }

    fn model(&self, name: &str) -> Option<&'static [u8]> {
        EMBEDDED_MODELS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, bytes)| *bytes)
    }

    fn model_names(&self) -> Vec<&'static str> {
        EMBEDDED_MODELS.iter().map(|(n, _)| *n).collect()
    }
}

/// Where components come from when a configuration is built: the guests
/// compiled in, and OCI registries through `oci` (none: `oci://` refused).
#[derive(Clone, Default)]
pub struct Sources {
    /// The registry client, with its credentials, trust and cache.
    pub oci: Option<std::sync::Arc<crate::oci::Puller>>,
}

impl Builtins for Sources {
    fn get(&self, name: &str) -> Option<&'static [u8]> {
        EmbeddedGuests.get(name)
    }

    fn names(&self) -> Vec<&'static str> {
        EmbeddedGuests.names()
    }

    fn model(&self, name: &str) -> Option<&'static [u8]> {
        EmbeddedGuests.model(name)
    }

    fn model_names(&self) -> Vec<&'static str> {
        EmbeddedGuests.model_names()
    }

    fn oci(&self) -> Option<&crate::oci::Puller> {
        self.oci.as_deref()
    }
}
