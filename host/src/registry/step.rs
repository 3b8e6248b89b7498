//! One WasmStep as it runs: its compiled versions, the traffic split that
//! picks one per event, the previous split kept for rollback, and the
//! counts the rollback watchdog reads.

use std::sync::Arc;
use std::time::Duration;

use super::gate::StepGate;
use crate::manifest::TrafficSpec;
use crate::runtime::StepComponent;

/// A compiled WasmStep.
#[derive(Clone)]
pub struct WasmStep {
    /// The step name (the WasmStep's `metadata.name`).
    pub name: String,
    /// Its versions, each compiled with the step's limits, config and models.
    pub versions: Vec<StepVersion>,
    /// How events are split across versions (percentages sum to 100).
    pub traffic: Vec<Traffic>,
    /// The split before the last admin change, for `rollback` (empty: none).
    pub previous_traffic: Vec<Traffic>,
    /// The event each new version must handle before going live.
    pub smoke_event: Option<Arc<cloudevents::Event>>,
    /// When to undo an admin traffic change automatically.
    pub rollback: Option<RollbackPolicy>,
    /// The last admin traffic change: when, and each version's (events,
    /// errors) counts then, so the watchdog sees only what came after.
    pub changed: Option<Arc<TrafficChange>>,
    /// Bounds the step's calls at once and its waiting queue (all versions
    /// together; kept across admin changes of the same configuration).
    pub gate: Arc<StepGate>,
}

/// `spec.rollback`, parsed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RollbackPolicy {
    /// Failed share above which to roll back.
    pub max_error_rate: f64,
    /// How long after a change its versions are watched.
    pub window: Duration,
    /// Calls needed before the rate counts.
    pub min_events: u64,
}

/// A traffic change, for the rollback watchdog.
#[derive(Debug)]
pub struct TrafficChange {
    /// When it went live.
    pub at: std::time::Instant,
    /// Per version (by index): (events, errors) at that moment.
    pub baseline: Vec<(u64, u64)>,
}

impl WasmStep {
    /// Per-version (events, errors) counts now.
    pub fn counts(&self) -> Vec<(u64, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        self.versions
            .iter()
            .map(|v| (v.stats.events.load(Relaxed), v.stats.errors.load(Relaxed)))
            .collect()
    }

    /// Whether the last traffic change should be undone now: a version that
    /// gained traffic in it failed more than the policy allows, within the
    /// window. Returns the offending version's name and its rate.
    pub fn rollback_due(&self) -> Option<(String, f64)> {
        let policy = self.rollback?;
        let change = self.changed.as_ref()?;
        if change.at.elapsed() > policy.window || self.previous_traffic.is_empty() {
            return None;
        }
        let share = |traffic: &[Traffic], v: usize| -> u32 {
            traffic
                .iter()
                .filter(|t| t.version == v)
                .map(|t| t.percent)
                .sum()
        };
        let now = self.counts();
        for (i, version) in self.versions.iter().enumerate() {
            if share(&self.traffic, i) <= share(&self.previous_traffic, i) {
                continue;
            }
            let (e0, f0) = change.baseline.get(i).copied().unwrap_or((0, 0));
            let (events, errors) = (now[i].0.saturating_sub(e0), now[i].1.saturating_sub(f0));
            if events >= policy.min_events {
                let rate = errors as f64 / events as f64;
                if rate > policy.max_error_rate {
                    return Some((version.name.clone(), rate));
                }
            }
        }
        None
    }
}

impl WasmStep {
    /// The version a new event runs: the tagged one when `tag` names one,
    /// otherwise one drawn by the traffic split with `roll` in 0..100.
    pub fn version_to_run(&self, tag: Option<&str>, roll: u32) -> &StepVersion {
        if let Some(tag) = tag
            && let Some(t) = self.traffic.iter().find(|t| t.tag.as_deref() == Some(tag))
        {
            return &self.versions[t.version];
        }
        let mut acc = 0;
        for t in &self.traffic {
            acc += t.percent;
            if roll < acc {
                return &self.versions[t.version];
            }
        }
        // Percentages sum to 100 (validated), so this is only reached by a
        // roll out of range: the last entry with traffic, else the last version.
        let last = self
            .traffic
            .iter()
            .rev()
            .find(|t| t.percent > 0)
            .map_or(self.versions.len() - 1, |t| t.version);
        &self.versions[last]
    }

    /// This step with its previous traffic split restored (and the current
    /// one kept as the previous, so a rollback can itself be undone).
    pub fn rolled_back(&self) -> WasmStep {
        WasmStep {
            traffic: self.previous_traffic.clone(),
            previous_traffic: self.traffic.clone(),
            changed: None,
            ..self.clone()
        }
    }

    /// Whether `tag` addresses one of this step's versions.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.traffic.iter().any(|t| t.tag.as_deref() == Some(tag))
    }

    /// The step's tags, for error messages.
    pub fn tags(&self) -> Vec<&str> {
        self.traffic
            .iter()
            .filter_map(|t| t.tag.as_deref())
            .collect()
    }
}

/// One compiled version of a step.
#[derive(Clone)]
pub struct StepVersion {
    /// The version's name (`default` for a `spec.component` shorthand).
    pub name: String,
    /// The compiled component with its limits and config.
    pub component: StepComponent,
    /// Where it came from: a file, `builtin:<name>`, the digest reference
    /// an `oci://` tag resolved to, or `admin upload`.
    pub source: String,
    /// SHA-256 of the component's bytes (hex), to tell builds apart.
    pub digest: String,
    /// Events this version handled and how many failed (all attempts).
    pub stats: Arc<VersionStats>,
}

/// Per-version counters, kept across configuration swaps of the same version.
#[derive(Debug, Default)]
pub struct VersionStats {
    /// Step calls.
    pub events: std::sync::atomic::AtomicU64,
    /// Step calls that failed.
    pub errors: std::sync::atomic::AtomicU64,
    /// This version's metric series, looked up at its first call.
    pub series: std::sync::OnceLock<crate::metrics::StepSeries>,
}

/// Hex SHA-256 of component bytes.
pub fn component_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One traffic entry of a step.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    /// Index into [`WasmStep::versions`].
    pub version: usize,
    /// Share of events, 0–100.
    pub percent: u32,
    /// Addresses this version directly (`Stephost-Step-Tag: <step>=<tag>`).
    pub tag: Option<String>,
}

impl Traffic {
    /// A split as the manifest or the admin API writes it, by version name,
    /// as indexes into `versions` (names checked before: `check_traffic`).
    /// No split at all sends every event to the last version listed.
    pub fn from_specs(specs: &[TrafficSpec], versions: &[&str]) -> Vec<Traffic> {
        if specs.is_empty() {
            return vec![Traffic {
                version: versions.len().saturating_sub(1),
                percent: 100,
                tag: None,
            }];
        }
        specs
            .iter()
            .filter_map(|t| {
                Some(Traffic {
                    version: versions.iter().position(|v| *v == t.version)?,
                    percent: t.percent,
                    tag: t.tag.clone(),
                })
            })
            .collect()
    }
}
