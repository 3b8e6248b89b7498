//! Sequences resolved for the dispatcher: every step a compiled WasmStep or
//! a URL (Knative's Destination rules: `ref` to a Service or Broker, `uri`,
//! or both), the reply and dead-letter sinks URLs, and each hop's delivery
//! settings typed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::error::RegistryError;
use super::step::WasmStep;
use crate::manifest::{BackoffPolicy, DeliverySpec, Destination, Location, SequenceDoc};
use crate::tls::CaCerts;

/// A resolved Destination: where to post, and for `https` which CA
/// certificates to trust beyond the host's own (the Destination's `CACerts`,
/// which Knative adds to the addressable's trust the same way).
#[derive(Debug, Clone, PartialEq)]
pub struct Address {
    /// The URL events are posted to.
    pub url: Url,
    /// Extra CAs for this address only.
    pub ca_certs: Option<Arc<CaCerts>>,
}

impl Address {
    /// A plain address: the URL, trusted with the host's roots only.
    pub fn new(url: Url) -> Self {
        Self {
            url,
            ca_certs: None,
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.url.fmt(f)
    }
}

/// How refs that are not WasmSteps become URLs, as Knative resolves them.
#[derive(Debug, Clone)]
pub struct Resolver {
    /// Cluster DNS suffix (`svc.{cluster_domain}`), normally `cluster.local`.
    pub cluster_domain: String,
    /// Broker ingress base URL; a Broker `ns/name` resolves to `{base}/{ns}/{name}`.
    /// Default `http://broker-ingress.knative-eventing.svc.{cluster_domain}`.
    pub broker_ingress: Option<Url>,
    /// Namespace for refs and Sequences that name none.
    pub namespace: String,
    /// `K_SINK` (SinkBinding): the reply of a Sequence that has none, with
    /// `K_CA_CERTS` as its CACerts.
    pub k_sink: Option<Address>,
    /// `K_CE_OVERRIDES` extensions (SinkBinding `ceOverrides`), set on every
    /// event sent to `K_SINK`.
    pub k_ce_overrides: Vec<(String, String)>,
}

impl Default for Resolver {
    fn default() -> Self {
        Self {
            cluster_domain: "cluster.local".into(),
            broker_ingress: None,
            namespace: "default".into(),
            k_sink: None,
            k_ce_overrides: Vec::new(),
        }
    }
}

/// A step as a Sequence calls it.
#[derive(Clone)]
pub enum StepTarget {
    /// A Wasm component run in-process.
    Wasm(Arc<WasmStep>),
    /// An HTTP(S) subscriber, called as Knative's dispatcher would.
    Remote(Address),
}

impl StepTarget {
    /// A name for logs and errors: the WasmStep name or the URL.
    pub fn label(&self) -> String {
        match self {
            StepTarget::Wasm(step) => step.name.clone(),
            StepTarget::Remote(url) => url.to_string(),
        }
    }
}

/// One step of a resolved Sequence.
#[derive(Clone)]
pub struct Hop {
    /// What to call.
    pub target: StepTarget,
    /// The step's own delivery, else the channel template's, else one attempt.
    pub delivery: Delivery,
}

/// A resolved Knative DeliverySpec: what happens when a hop fails.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delivery {
    /// Retries after the first attempt (`retry`); 0 = one attempt.
    pub retry: u32,
    /// Policy and base delay; only when both `backoffPolicy` and
    /// `backoffDelay` are set (else retries are immediate, as in Knative).
    pub backoff: Option<(BackoffPolicy, Duration)>,
    /// Bound of each attempt (`timeout`).
    pub timeout: Option<Duration>,
    /// Cap of an honoured `Retry-After` on 429/503 (`retryAfterMax`); `None`
    /// = Retry-After is ignored, as in Knative when the field is unset.
    pub retry_after_max: Option<Duration>,
    /// Where the original event goes after the last failed attempt.
    pub dead_letter_sink: Option<Address>,
}

impl Delivery {
    /// The wait before retry `k` (1-based), without Retry-After.
    ///
    /// Linear waits `delay·k`, exponential `delay·2^(k−1)`: 0.1 s gives
    /// 0.1, 0.2, 0.3 s (linear) and 0.1, 0.2, 0.4 s (exponential); every
    /// wait is capped at [`MAX_BACKOFF`]. Knative's
    /// code makes the first linear retry immediate (go-retryablehttp counts
    /// from 0), which its docs do not describe; we follow the docs.
    pub fn backoff(&self, k: u32) -> Duration {
        let wait = match self.backoff {
            None => Duration::ZERO,
            Some((BackoffPolicy::Linear, delay)) => delay.saturating_mul(k),
            Some((BackoffPolicy::Exponential, delay)) => {
                let factor = 1u32.checked_shl(k.saturating_sub(1)).unwrap_or(u32::MAX);
                delay.saturating_mul(factor)
            }
        };
        wait.min(MAX_BACKOFF)
    }
}

/// Ceiling of one backoff wait. Exponential backoff with a large `retry`
/// reaches days (knative/eventing#9278 proposes a `backoffMax` for this); a
/// wait longer than an hour would only hold the sender's request open.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// A Sequence ready to run.
#[derive(Clone)]
pub struct Sequence {
    /// `metadata.name`.
    pub name: String,
    /// Namespace, sent as `Kn-Namespace` to remote steps.
    pub namespace: String,
    /// The steps in order.
    pub steps: Vec<Hop>,
    /// Where the final event goes (`spec.reply`, else `K_SINK`); `None` = the
    /// final event is returned to the sender.
    pub reply: Option<Address>,
    /// Extensions set on the final event before the reply gets it: the
    /// `K_CE_OVERRIDES` when the reply is `K_SINK`, else none.
    pub reply_overrides: Vec<(String, String)>,
}

pub(super) fn resolve_sequence(
    doc: &SequenceDoc,
    steps: &BTreeMap<String, Arc<WasmStep>>,
    resolver: &Resolver,
) -> Result<Sequence, RegistryError> {
    let at = doc.at.as_ref().map(Location::to_string).unwrap_or_default();
    let namespace = doc
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| resolver.namespace.clone());
    // `channelTemplate.spec.delivery`: the delivery of every step without
    // its own, and the dead-letter sink of those whose own names none.
    let channel_delivery = resolve_delivery(
        doc.spec
            .channel_template
            .as_ref()
            .and_then(|t| t.spec.as_ref())
            .and_then(|s| s.delivery.as_ref()),
        &namespace,
        resolver,
        &at,
        "spec.channelTemplate.spec.delivery",
        steps,
    )?;
    let mut resolved = Vec::new();
    for (i, step) in doc.spec.steps.iter().enumerate() {
        let bound = match (&step.reference, &step.uri) {
            // A ref with no uri that names a WasmStep runs in-process.
            (Some(r), None) => steps.get(&r.name).cloned(),
            _ => None,
        };
        let target = match bound {
            Some(wasm) => StepTarget::Wasm(wasm),
            None => StepTarget::Remote(resolve(
                &step.destination(),
                &namespace,
                resolver,
                &at,
                &format!("spec.steps[{i}]"),
                steps,
            )?),
        };
        let delivery = match &step.delivery {
            // Knative merges a step's own delivery with the channel's: the
            // step's retry settings, the channel's dead-letter sink when the
            // step names none (subscription reconciler `resolveDeadLetterSink`).
            Some(own) => {
                let field = format!("spec.steps[{i}].delivery");
                let mut delivery =
                    resolve_delivery(Some(own), &namespace, resolver, &at, &field, steps)?;
                if delivery.dead_letter_sink.is_none() {
                    delivery.dead_letter_sink = channel_delivery.dead_letter_sink.clone();
                }
                delivery
            }
            None => channel_delivery.clone(),
        };
        resolved.push(Hop { target, delivery });
    }
    let (reply, reply_overrides) = match &doc.spec.reply {
        Some(dest) => (
            Some(resolve(
                dest,
                &namespace,
                resolver,
                &at,
                "spec.reply",
                steps,
            )?),
            Vec::new(),
        ),
        None => (resolver.k_sink.clone(), resolver.k_ce_overrides.clone()),
    };
    Ok(Sequence {
        name: doc.metadata.name.clone(),
        namespace,
        steps: resolved,
        reply,
        reply_overrides,
    })
}

/// Turn a validated DeliverySpec into durations and a dead-letter URL.
fn resolve_delivery(
    spec: Option<&DeliverySpec>,
    namespace: &str,
    resolver: &Resolver,
    at: &str,
    field: &str,
    steps: &BTreeMap<String, Arc<WasmStep>>,
) -> Result<Delivery, RegistryError> {
    let Some(spec) = spec else {
        return Ok(Delivery::default());
    };
    let settings = &spec.settings;
    let dead_letter_sink = match &spec.dead_letter_sink {
        Some(dest) => Some(resolve(
            dest,
            namespace,
            resolver,
            at,
            &format!("{field}.deadLetterSink"),
            steps,
        )?),
        None => None,
    };
    Ok(Delivery {
        retry: u32::try_from(spec.retry.unwrap_or(0).max(0)).unwrap_or(u32::MAX),
        backoff: settings.backoff_policy.zip(settings.backoff_delay),
        timeout: settings.timeout,
        retry_after_max: settings.retry_after_max,
        dead_letter_sink,
    })
}

/// Resolve a Destination to an address as Knative's addressable resolver
/// does (knative/pkg resolver/addressable_resolver.go): a `uri` alone must be
/// absolute; a `ref` resolves to its address — `https` when the Destination
/// carries `CACerts`, as Knative resolves a Service ref — and a `uri` with it
/// is a reference relative to that address (RFC 3986 §5.2).
pub fn resolve(
    dest: &Destination,
    namespace: &str,
    resolver: &Resolver,
    at: &str,
    field: &str,
    steps: &BTreeMap<String, Arc<WasmStep>>,
) -> Result<Address, RegistryError> {
    let fail = |field: String, message: String| RegistryError::Unresolvable {
        at: at.to_string(),
        field,
        message,
    };
    let ca_certs = match &dest.ca_certs {
        Some(pem) => {
            Some(Arc::new(CaCerts::parse(pem).map_err(|e| {
                fail(format!("{field}.CACerts"), e.to_string())
            })?))
        }
        None => None,
    };
    let scheme = if ca_certs.is_some() { "https" } else { "http" };
    let url = resolve_url(dest, namespace, resolver, scheme, steps)
        .map_err(|message| fail(field.to_string(), message))?;
    Ok(Address { url, ca_certs })
}

/// The URL part of [`resolve`]; `scheme` is that of a ref's address.
fn resolve_url(
    dest: &Destination,
    namespace: &str,
    resolver: &Resolver,
    scheme: &str,
    steps: &BTreeMap<String, Arc<WasmStep>>,
) -> Result<Url, String> {
    let Some(r) = &dest.reference else {
        let uri = dest.uri.as_deref().unwrap_or_default();
        return Url::parse(uri).map_err(|e| format!("uri {uri:?}: {e}"));
    };
    if let Some(address) = &r.address {
        return Err(format!(
            "ref.address {address:?} selects one of {:?}'s `status.addresses`, which only the \
             cluster knows; stephost cannot resolve it: give that address as `uri` instead",
            r.name
        ));
    }
    let ns = r.namespace.as_deref().unwrap_or(namespace);
    let group = r
        .api_version
        .as_deref()
        .or(r.group.as_deref())
        .unwrap_or("")
        .split('/')
        .next()
        .unwrap_or("");
    let base = match (r.kind.as_str(), group) {
        ("Service", "serving.knative.dev" | "v1" | "") => {
            format!(
                "{scheme}://{}.{ns}.svc.{}/",
                r.name, resolver.cluster_domain
            )
        }
        ("Broker", "eventing.knative.dev" | "") => {
            let ingress = match &resolver.broker_ingress {
                Some(url) => url.as_str().trim_end_matches('/').to_string(),
                None => format!(
                    "{scheme}://broker-ingress.knative-eventing.svc.{}",
                    resolver.cluster_domain
                ),
            };
            format!("{ingress}/{ns}/{}", r.name)
        }
        (kind, _) => {
            let known: Vec<&str> = steps.keys().map(String::as_str).collect();
            return Err(format!(
                "cannot resolve a ref to {} {kind} {:?}: no WasmStep has that name (WasmSteps: \
                 [{}]) and stephost resolves only Service and Broker refs; bind it with a \
                 WasmStep or give an absolute uri",
                r.api_version.as_deref().unwrap_or(""),
                r.name,
                known.join(", ")
            ));
        }
    };
    let base = Url::parse(&base).map_err(|e| format!("ref {:?}: {e}", r.name))?;
    match &dest.uri {
        None => Ok(base),
        Some(uri) => base
            .join(uri)
            .map_err(|e| format!("uri {uri:?} relative to {base}: {e}")),
    }
}

#[cfg(test)]
mod tests;
