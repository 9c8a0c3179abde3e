//! The `fail` executor: fails on purpose, to exercise retries, trigger rules and failure
//! policies. It decides by the attempt number, so it behaves the same after a restart.

use async_trait::async_trait;
use maestro_dag::{NodeContext, NodeError, NodeExecutor};
use serde_json::{Map, Value};

use crate::config::Config;

/// Fails the first `config.times` attempts (every attempt when `times` is absent) with
/// `config.message` (retryable), then succeeds with `{}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FailExecutor;

impl FailExecutor {
    /// Its registry key.
    pub const KEY: &'static str = "fail";
}

#[async_trait]
impl NodeExecutor for FailExecutor {
    async fn execute(&self, ctx: NodeContext) -> Result<Value, NodeError> {
        let config = Config::new(Self::KEY, &ctx.node_config)?;
        let message = config.str("message")?;
        let times = config.u64("times")?;
        let fails = times.is_none_or(|t| u64::from(ctx.attempt) <= t);
        if !fails {
            return Ok(Value::Object(Map::new()));
        }
        Err(NodeError::new(match message {
            Some(m) => m.to_string(),
            None => format!("failed on purpose (attempt {})", ctx.attempt),
        }))
    }

    fn runs_inline(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    async fn attempt(config: Value, attempt: u32) -> Result<Value, NodeError> {
        let mut ctx = NodeContext::for_node("flaky", config);
        ctx.attempt = attempt;
        FailExecutor.execute(ctx).await
    }

    #[tokio::test]
    async fn fails_the_first_times_attempts_then_succeeds() {
        let config = json!({"message": "boom", "times": 2});
        assert_eq!(
            attempt(config.clone(), 1).await,
            Err(NodeError::new("boom"))
        );
        assert_eq!(
            attempt(config.clone(), 2).await,
            Err(NodeError::new("boom"))
        );
        assert_eq!(attempt(config.clone(), 3).await, Ok(json!({})));
        assert_eq!(attempt(config, 4).await, Ok(json!({})));
    }

    #[tokio::test]
    async fn without_times_every_attempt_fails() {
        for n in [1, 2, 50] {
            let err = attempt(json!({"message": "always"}), n).await.unwrap_err();
            assert_eq!(err, NodeError::new("always"));
            assert!(err.retryable);
        }
        let err = attempt(json!({}), 3).await.unwrap_err();
        assert_eq!(err.message, "failed on purpose (attempt 3)");
    }

    #[tokio::test]
    async fn zero_times_never_fails() {
        assert_eq!(attempt(json!({"times": 0}), 1).await, Ok(json!({})));
    }

    #[tokio::test]
    async fn bad_config_fails_permanently_naming_the_field() {
        for (config, message) in [
            (
                json!({"times": "2"}),
                "fail: `config.times` must be a non-negative integer, got a string",
            ),
            (
                json!({"message": 42}),
                "fail: `config.message` must be a string, got an integer",
            ),
            (json!([]), "fail: `config` must be an object, got an array"),
        ] {
            let err = attempt(config.clone(), 1).await.unwrap_err();
            assert_eq!(err, NodeError::permanent(message), "config {config}");
        }
    }
}
