//! The `noop` executor: does nothing and outputs `{}`. The default executor of grouping and
//! conditional nodes, and the cheapest node there is (used by the benchmarks).

use async_trait::async_trait;
use maestro_dag::{NodeContext, NodeError, NodeExecutor};
use serde_json::{Map, Value};

/// Outputs `{}` and ignores its `config`. Runs inline on the run's task: it never blocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopExecutor;

impl NoopExecutor {
    /// Its registry key.
    pub const KEY: &'static str = "noop";
}

#[async_trait]
impl NodeExecutor for NoopExecutor {
    async fn execute(&self, _ctx: NodeContext) -> Result<Value, NodeError> {
        Ok(Value::Object(Map::new()))
    }

    fn runs_inline(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn outputs_an_empty_object_whatever_the_config() {
        for config in [json!({}), json!({"anything": [1, 2]}), json!(null)] {
            let out = NoopExecutor
                .execute(NodeContext::for_node("n", config))
                .await
                .unwrap();
            assert_eq!(out, json!({}));
        }
        assert!(NoopExecutor.runs_inline());
    }
}
