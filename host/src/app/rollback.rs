//! Automatic rollback: once a second, every step with a `rollback` policy
//! whose new traffic split fails too often is returned to its previous split
//! (logged, counted in `stephost_auto_rollbacks_total{step}`).

use std::sync::Arc;

use crate::server::AppState;

/// Watch every step with a `rollback` policy once a second; when a version
/// that just gained traffic fails too often, restore the previous split
/// (logged, counted in `stephost_auto_rollbacks_total{step}`).
pub async fn rollback_watchdog(state: Arc<AppState>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let Some(registry) = state.live.current() else {
            continue;
        };
        let due: Vec<String> = registry
            .steps
            .values()
            .filter(|s| s.rollback_due().is_some())
            .map(|s| s.name.clone())
            .collect();
        for name in due {
            let change = state.live.change().await;
            // Re-check on the live snapshot under the lock.
            let Some(registry) = change.current() else {
                continue;
            };
            let Some(step) = registry.steps.get(&name).cloned() else {
                continue;
            };
            let Some((version, rate)) = step.rollback_due() else {
                continue;
            };
            tracing::warn!(
                step = %name,
                %version,
                error_rate = rate,
                "automatic rollback: a version that gained traffic fails too often"
            );
            change.replace_step(&registry, step.rolled_back());
            state
                .metrics
                .auto_rollbacks
                .get_or_create(&crate::metrics::labels(&[("step", &name)]))
                .inc();
        }
    }
}
