//! The go-live check every new step version passes before it can take
//! traffic — at start, on reload and on an admin upload: it instantiates
//! under the step's limits and handles the step's smoke event.

use cloudevents::Event;

use super::error::RegistryError;
use crate::runtime::StepComponent;
use crate::runtime::guest_event::{from_wit, to_wit};

/// Why a version may not go live.
#[derive(Debug)]
pub enum NotLive {
    /// It cannot be instantiated under the step's limits (memory, a trap
    /// during start-up).
    Instantiate(String),
    /// It failed the step's smoke event, or its output is not an event.
    Smoke(String),
    /// The check itself could not run (no async runtime could be started).
    Blocked(String),
}

impl NotLive {
    /// As a load error of the WasmStep document at `at`.
    pub fn into_registry_error(self, at: &str, version: &str) -> RegistryError {
        match self {
            NotLive::Instantiate(message) | NotLive::Blocked(message) => {
                RegistryError::Instantiate {
                    at: at.to_string(),
                    version: version.to_string(),
                    message,
                }
            }
            NotLive::Smoke(message) => RegistryError::Smoke {
                at: at.to_string(),
                version: version.to_string(),
                message,
            },
        }
    }

    /// As the message an admin upload answers with.
    pub fn describe(&self, version: &str) -> String {
        match self {
            NotLive::Instantiate(e) | NotLive::Blocked(e) => {
                format!("version {version:?} cannot be instantiated: {e}")
            }
            NotLive::Smoke(e) => format!("version {version:?} failed the step's smoke event: {e}"),
        }
    }
}

/// Instantiate `component` once and, when the step has one, run its smoke
/// event: an output must be a valid CloudEvent, a drop is fine.
pub async fn go_live(
    component: &StepComponent,
    smoke_event: Option<&Event>,
) -> Result<(), NotLive> {
    component
        .check_instantiates()
        .await
        .map_err(|f| NotLive::Instantiate(f.to_string()))?;
    let Some(event) = smoke_event else {
        return Ok(());
    };
    match component.handle(to_wit(event)).await {
        Ok(Some(output)) => from_wit(output)
            .map(|_| ())
            .map_err(|e| NotLive::Smoke(format!("its output is not a valid CloudEvent: {e}"))),
        Ok(None) => Ok(()),
        Err(failure) => Err(NotLive::Smoke(failure.to_string())),
    }
}

/// Block on `future` from sync code: on the current runtime's handle when
/// called from a blocking thread of one, else on a small runtime of its own
/// (`stephost validate`).
pub(super) fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, String> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => Ok(handle.block_on(future)),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| rt.block_on(future))
            .map_err(|e| format!("cannot start a runtime for the smoke event: {e}")),
    }
}
