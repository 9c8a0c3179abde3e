//! The `sleep` executor: waits `config.duration_ms` milliseconds and outputs
//! `{"slept_ms": N}`. It watches the attempt's cancellation token, so cancelling the run (or the
//! node's timeout) ends it at once.

use std::time::Duration;

use async_trait::async_trait;
use maestro_dag::{NodeContext, NodeError, NodeExecutor};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::config::Config;

/// Sleeps for `{duration_ms}` (required, a non-negative integer), then outputs
/// `{"slept_ms": duration_ms}`. When the attempt is cancelled first it fails (retryably) with
/// how long it slept.
#[derive(Debug, Clone, Copy, Default)]
pub struct SleepExecutor;

impl SleepExecutor {
    /// Its registry key.
    pub const KEY: &'static str = "sleep";
}

#[async_trait]
impl NodeExecutor for SleepExecutor {
    async fn execute(&self, ctx: NodeContext) -> Result<Value, NodeError> {
        let duration_ms = Config::new(Self::KEY, &ctx.node_config)?.required_u64("duration_ms")?;
        let started = Instant::now();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(duration_ms)) => {
                Ok(json!({ "slept_ms": duration_ms }))
            }
            _ = ctx.cancellation.cancelled() => Err(NodeError::new(format!(
                "sleep cancelled after {} of {duration_ms} ms",
                started.elapsed().as_millis()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(config: Value) -> Result<Value, NodeError> {
        SleepExecutor
            .execute(NodeContext::for_node("nap", config))
            .await
    }

    #[tokio::test(start_paused = true)]
    async fn sleeps_for_the_configured_duration() {
        let started = Instant::now();
        let out = run(json!({"duration_ms": 250})).await.unwrap();
        assert_eq!(out, json!({"slept_ms": 250}));
        assert_eq!(started.elapsed(), Duration::from_millis(250));
    }

    #[tokio::test(start_paused = true)]
    async fn returns_early_when_cancelled() {
        let ctx = NodeContext::for_node("nap", json!({"duration_ms": 60_000}));
        let token = ctx.cancellation.clone();
        let started = Instant::now();
        let attempt = tokio::spawn(SleepExecutor.execute(ctx));
        tokio::time::sleep(Duration::from_millis(100)).await;
        token.cancel();
        let err = attempt.await.unwrap().unwrap_err();
        assert!(err.message.starts_with("sleep cancelled after "), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn bad_config_fails_permanently_naming_the_field() {
        for (config, message) in [
            (
                json!({}),
                "sleep: `config.duration_ms` is required (a non-negative integer)",
            ),
            (
                json!({"duration_ms": "10"}),
                "sleep: `config.duration_ms` must be a non-negative integer, got a string",
            ),
            (
                json!({"duration_ms": -5}),
                "sleep: `config.duration_ms` must be a non-negative integer, got a negative integer",
            ),
            (
                json!("10"),
                "sleep: `config` must be an object, got a string",
            ),
        ] {
            let err = run(config.clone()).await.unwrap_err();
            assert_eq!(err, NodeError::permanent(message), "config {config}");
        }
    }
}
