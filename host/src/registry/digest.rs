//! The configuration digest: one hash of everything a replica runs — every
//! Sequence as resolved (hops, delivery, reply) and every step's versions
//! (component digests, settings) and traffic — so an operator can see that
//! all pods of a Service converged on the same desired state.

use std::fmt::Write as _;

use sha2::{Digest as _, Sha256};

use super::build::Registry;

impl Registry {
    /// `sha256:<hex>` of the resolved configuration; equal on two replicas
    /// exactly when they run the same steps, versions, traffic and routes.
    pub fn config_digest(&self) -> String {
        let mut text = String::new();
        for (name, step) in &self.steps {
            let _ = writeln!(text, "step {name}");
            for v in &step.versions {
                let _ = writeln!(
                    text,
                    "  version {} sha256:{} {}",
                    v.name,
                    v.digest,
                    v.component.settings_text()
                );
            }
            for t in &step.traffic {
                let _ = writeln!(
                    text,
                    "  traffic {} {} {:?}",
                    step.versions[t.version].name, t.percent, t.tag
                );
            }
        }
        for (name, seq) in &self.sequences {
            let _ = writeln!(text, "sequence {name} namespace {}", seq.namespace);
            for hop in &seq.steps {
                let _ = writeln!(text, "  hop {} {:?}", hop.target.label(), hop.delivery);
            }
            let _ = writeln!(
                text,
                "  reply {:?} overrides {:?}",
                seq.reply, seq.reply_overrides
            );
        }
        format!("sha256:{:x}", Sha256::digest(text.as_bytes()))
    }
}
