//! The Knative documents stephost runs unchanged: `Sequence` with its steps,
//! Destinations, channel template and `delivery`, field for field as
//! Knative's CRDs name them, and the rules each must meet.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::error::{Location, ManifestError, ObjectMeta};
use super::units::parse_duration;
use crate::tls::CaCerts;

/// A Knative Sequence, as `flows.knative.dev/v1` defines it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SequenceDoc {
    /// Must be `flows.knative.dev/v1`.
    pub api_version: String,
    /// Must be `Sequence`.
    pub kind: String,
    /// Name and namespace.
    pub metadata: ObjectMeta,
    /// The steps, channel template and reply.
    pub spec: SequenceSpec,
    /// Written by Knative's controller; accepted and ignored.
    #[serde(default)]
    pub status: Option<yaml_serde::Value>,
    /// Where it was read from, for error messages.
    #[serde(skip)]
    pub at: Option<Location>,
}

/// `spec` of a Sequence (eventing `SequenceSpec`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SequenceSpec {
    /// The steps, called in order.
    #[serde(default)]
    pub steps: Vec<SequenceStep>,
    /// Which channel Knative would create; its `spec.delivery` is the default
    /// delivery of every step without its own.
    #[serde(default)]
    pub channel_template: Option<ChannelTemplate>,
    /// Where the last step's output goes.
    #[serde(default)]
    pub reply: Option<Destination>,
}

/// One step: a Destination plus its delivery options.
///
/// The Destination fields are repeated here rather than `#[serde(flatten)]`ed
/// because serde cannot combine `flatten` with `deny_unknown_fields`, and
/// rejecting unknown fields is worth the four repeated lines.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SequenceStep {
    /// A reference to an addressable object (here: usually a WasmStep name).
    #[serde(default, rename = "ref")]
    pub reference: Option<KReference>,
    /// An absolute URL, or a path relative to `ref`'s address.
    #[serde(default)]
    pub uri: Option<String>,
    /// PEM CA certificates for TLS to this step.
    #[serde(default, rename = "CACerts")]
    pub ca_certs: Option<String>,
    /// OIDC audience of the step.
    #[serde(default)]
    pub audience: Option<String>,
    /// Retries, backoff, timeout, dead-letter sink of this step.
    #[serde(default)]
    pub delivery: Option<DeliverySpec>,
}

impl SequenceStep {
    /// The step's Destination part.
    pub fn destination(&self) -> Destination {
        Destination {
            reference: self.reference.clone(),
            uri: self.uri.clone(),
            ca_certs: self.ca_certs.clone(),
            audience: self.audience.clone(),
        }
    }
}

/// A Knative duck `Destination`.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// A reference to an addressable object.
    #[serde(default, rename = "ref")]
    pub reference: Option<KReference>,
    /// An absolute URL, or a path relative to `ref`'s address.
    #[serde(default)]
    pub uri: Option<String>,
    /// PEM CA certificates.
    #[serde(default, rename = "CACerts")]
    pub ca_certs: Option<String>,
    /// OIDC audience.
    #[serde(default)]
    pub audience: Option<String>,
}

/// A Knative `KReference`.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KReference {
    /// `Service`, `Broker`, …
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// Defaults to the referring object's namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// `serving.knative.dev/v1`, `eventing.knative.dev/v1`, …
    #[serde(default)]
    pub api_version: Option<String>,
    /// API group (Knative's experimental alternative to apiVersion).
    #[serde(default)]
    pub group: Option<String>,
    /// Selects a named entry of the target's `status.addresses`.
    #[serde(default)]
    pub address: Option<String>,
}

/// `spec.channelTemplate`: the channel kind and its spec (kept verbatim by
/// Knative; stephost reads only `spec.delivery`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChannelTemplate {
    /// e.g. `messaging.knative.dev/v1`.
    pub api_version: String,
    /// e.g. `InMemoryChannel`.
    pub kind: String,
    /// The channel's spec; unknown fields are preserved, as in the CRD.
    #[serde(default)]
    pub spec: Option<ChannelSpec>,
}

/// The parts of a channel spec that matter to a fused Sequence.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct ChannelSpec {
    /// Default delivery for steps without their own.
    #[serde(default)]
    pub delivery: Option<DeliverySpec>,
    /// Other channel settings (the CRD preserves unknown fields).
    #[serde(flatten)]
    pub other: BTreeMap<String, yaml_serde::Value>,
}

/// A Knative `DeliverySpec` (eventing duck v1).
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeliverySpec {
    /// Where events go after the last failed attempt.
    #[serde(default)]
    pub dead_letter_sink: Option<Destination>,
    /// Retries after the first attempt.
    #[serde(default)]
    pub retry: Option<i64>,
    /// `linear` or `exponential`.
    #[serde(default)]
    pub backoff_policy: Option<String>,
    /// ISO-8601 base delay.
    #[serde(default)]
    pub backoff_delay: Option<String>,
    /// ISO-8601 bound of each attempt.
    #[serde(default)]
    pub timeout: Option<String>,
    /// ISO-8601 cap on an honoured `Retry-After`.
    #[serde(default)]
    pub retry_after_max: Option<String>,
    /// `json` or `binary`; validated, no effect on a Sequence (as in Knative).
    #[serde(default)]
    pub format: Option<String>,
    /// What the rules derived from the fields above at load (see
    /// [`DeliverySettings`]).
    #[serde(skip)]
    pub settings: DeliverySettings,
}

/// What a `delivery`'s rules derived from it once it passed them, typed, so
/// nothing parses its durations again.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliverySettings {
    /// `backoffPolicy`.
    pub backoff_policy: Option<BackoffPolicy>,
    /// `backoffDelay`.
    pub backoff_delay: Option<Duration>,
    /// `timeout` (greater than zero).
    pub timeout: Option<Duration>,
    /// `retryAfterMax`.
    pub retry_after_max: Option<Duration>,
}

/// How `backoffDelay` grows between retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackoffPolicy {
    /// `delay · k` before retry k.
    Linear,
    /// `delay · 2^(k−1)` before retry k.
    Exponential,
}

pub(super) fn validate_sequence(doc: &mut SequenceDoc, at: &Location) -> Result<(), ManifestError> {
    if doc.metadata.name.is_empty() {
        return Err(ManifestError::field(at, "metadata.name", "missing"));
    }
    if doc.spec.steps.is_empty() {
        return Err(ManifestError::field(
            at,
            "spec.steps",
            "missing: a Sequence needs at least one step",
        ));
    }
    for (i, step) in doc.spec.steps.iter_mut().enumerate() {
        let field = format!("spec.steps[{i}]");
        validate_destination(&step.destination(), at, &field)?;
        if let Some(delivery) = &mut step.delivery {
            delivery.settings = validate_delivery(delivery, at, &format!("{field}.delivery"))?;
        }
    }
    if let Some(template) = &mut doc.spec.channel_template {
        if template.kind.is_empty() || template.api_version.is_empty() {
            return Err(ManifestError::field(
                at,
                "spec.channelTemplate",
                "kind and apiVersion must not be empty",
            ));
        }
        if let Some(delivery) = template.spec.as_mut().and_then(|s| s.delivery.as_mut()) {
            delivery.settings =
                validate_delivery(delivery, at, "spec.channelTemplate.spec.delivery")?;
        }
    }
    if let Some(reply) = &doc.spec.reply {
        validate_destination(reply, at, "spec.reply")?;
    }
    Ok(())
}

/// Knative's `ValidateDestination` (knative/pkg apis/duck/v1/destination.go).
fn validate_destination(d: &Destination, at: &Location, field: &str) -> Result<(), ManifestError> {
    if let Some(pem) = &d.ca_certs
        && let Err(e) = CaCerts::parse(pem)
    {
        return Err(ManifestError::field(
            at,
            format!("{field}.CACerts"),
            e.to_string(),
        ));
    }
    if let Some(audience) = &d.audience {
        return Err(ManifestError::field(
            at,
            format!("{field}.audience"),
            format!(
                "{audience:?}: OIDC audiences are not supported — stephost sends no OIDC \
                 tokens, so a destination that requires one would refuse every event; remove \
                 the field and authorise stephost's calls another way (docs/knative.md, TLS \
                 and authentication)"
            ),
        ));
    }
    match (&d.reference, &d.uri) {
        (None, None) => Err(ManifestError::field(
            at,
            field,
            "expected at least one of ref, uri; got none",
        )),
        (Some(r), uri) => {
            if r.kind.is_empty() {
                return Err(ManifestError::field(
                    at,
                    format!("{field}.ref.kind"),
                    "missing",
                ));
            }
            if r.name.is_empty() {
                return Err(ManifestError::field(
                    at,
                    format!("{field}.ref.name"),
                    "missing",
                ));
            }
            if let Some(uri) = uri
                && url::Url::parse(uri).is_ok()
            {
                return Err(ManifestError::field(
                    at,
                    format!("{field}.uri"),
                    "absolute URI is not allowed when ref is present (give a path relative to \
                     the ref's address)",
                ));
            }
            Ok(())
        }
        (None, Some(uri)) => match url::Url::parse(uri) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
            Ok(u) => Err(ManifestError::field(
                at,
                format!("{field}.uri"),
                format!(
                    "{uri:?} must be an http(s) URL with a host, not scheme {:?}",
                    u.scheme()
                ),
            )),
            Err(e) => Err(ManifestError::field(
                at,
                format!("{field}.uri"),
                format!("{uri:?} is not an absolute URL ({e}); a relative uri needs a ref"),
            )),
        },
    }
}

/// Knative's DeliverySpec validation (eventing apis/duck/v1/delivery_types.go).
fn validate_delivery(
    d: &DeliverySpec,
    at: &Location,
    field: &str,
) -> Result<DeliverySettings, ManifestError> {
    if let Some(retry) = d.retry
        && retry < 0
    {
        return Err(ManifestError::field(
            at,
            format!("{field}.retry"),
            format!("must be >= 0, got {retry}"),
        ));
    }
    let backoff_policy = match d.backoff_policy.as_deref() {
        None => None,
        Some("linear") => Some(BackoffPolicy::Linear),
        Some("exponential") => Some(BackoffPolicy::Exponential),
        Some(policy) => {
            return Err(ManifestError::field(
                at,
                format!("{field}.backoffPolicy"),
                format!("must be \"linear\" or \"exponential\", got {policy:?}"),
            ));
        }
    };
    let duration =
        |name: &str, value: &Option<String>| -> Result<Option<Duration>, ManifestError> {
            value
                .as_deref()
                .map(|text| {
                    parse_duration(text)
                        .map_err(|e| ManifestError::field(at, format!("{field}.{name}"), e))
                })
                .transpose()
        };
    let backoff_delay = duration("backoffDelay", &d.backoff_delay)?;
    let timeout = duration("timeout", &d.timeout)?;
    if timeout.is_some_and(|t| t.is_zero()) {
        return Err(ManifestError::field(
            at,
            format!("{field}.timeout"),
            "must be greater than zero",
        ));
    }
    let retry_after_max = duration("retryAfterMax", &d.retry_after_max)?;
    if let Some(format) = &d.format
        && format != "json"
        && format != "binary"
    {
        return Err(ManifestError::field(
            at,
            format!("{field}.format"),
            format!("must be \"json\" or \"binary\", got {format:?}"),
        ));
    }
    if let Some(sink) = &d.dead_letter_sink {
        validate_destination(sink, at, &format!("{field}.deadLetterSink"))?;
    }
    Ok(DeliverySettings {
        backoff_policy,
        backoff_delay,
        timeout,
        retry_after_max,
    })
}
