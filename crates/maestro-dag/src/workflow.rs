//! A validated, compiled workflow: nodes indexed densely, dependencies in compact adjacency
//! arrays, conditions compiled. This is what the engine runs and what graph queries use.

use std::collections::{HashMap, HashSet};

use rustc_hash::FxHashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::condition::Condition;
use std::num::NonZeroU64;

use crate::definition::{FailurePolicy, NodeType, RetryPolicy, TriggerRule, WorkflowDefinition};
use crate::validate::{ExecutorLookup, ValidationErrors, validate};

/// One compiled node.
#[derive(Debug)]
pub(crate) struct CNode {
    pub(crate) id: Arc<str>,
    pub(crate) name: Arc<str>,
    pub(crate) node_type: NodeType,
    pub(crate) executor: Option<Arc<str>>,
    pub(crate) config: Arc<Value>,
    pub(crate) condition: Option<Box<Condition>>,
    /// Index into [`TriggerRule::ALL`] (validated workflows hold no invalid rule).
    pub(crate) rule: u8,
    /// The retry policy when not the default one.
    retry: Option<Box<RetryPolicy>>,
    pub(crate) timeout_ms: Option<NonZeroU64>,
}

impl CNode {
    pub(crate) fn rule(&self) -> &'static TriggerRule {
        // A `static`, not the `const`: indexing a const array builds (and drops) a copy.
        static RULES: [TriggerRule; 8] = TriggerRule::ALL;
        &RULES[self.rule as usize]
    }

    pub(crate) fn retry(&self) -> &RetryPolicy {
        static DEFAULT: std::sync::OnceLock<RetryPolicy> = std::sync::OnceLock::new();
        self.retry
            .as_deref()
            .unwrap_or_else(|| DEFAULT.get_or_init(RetryPolicy::default))
    }
}

/// A validated workflow, ready to run. Cheap to share (`Arc<Workflow>`) between runs.
///
/// It keeps what running needs, not the definition itself (keep that, e.g. in the store's
/// [`DefinitionRecord`](crate::DefinitionRecord), if you need it back): a workflow of 100,000
/// nodes weighs about 150 bytes a node once compiled.
#[derive(Debug)]
pub struct Workflow {
    name: Arc<str>,
    max_concurrency: Option<u32>,
    failure_policy: FailurePolicy,
    version: u32,
    content_hash: String,
    pub(crate) workflow_id: Arc<str>,
    pub(crate) nodes: Vec<CNode>,
    index: FxHashMap<Arc<str>, u32>,
    dep_start: Vec<u32>,
    deps: Vec<u32>,
    out_start: Vec<u32>,
    outs: Vec<u32>,
}

impl Workflow {
    /// Validates and compiles a definition (version 1). `executors`, when given, must know every
    /// executor key the nodes use.
    pub fn compile(
        definition: WorkflowDefinition,
        executors: Option<&dyn ExecutorLookup>,
    ) -> Result<Self, ValidationErrors> {
        Self::compile_ref(&definition, executors)
    }

    /// [`Workflow::compile`] for a shared definition.
    pub fn compile_arc(
        definition: Arc<WorkflowDefinition>,
        executors: Option<&dyn ExecutorLookup>,
    ) -> Result<Self, ValidationErrors> {
        Self::compile_ref(&definition, executors)
    }

    /// [`Workflow::compile`] for a borrowed definition.
    pub fn compile_ref(
        definition: &WorkflowDefinition,
        executors: Option<&dyn ExecutorLookup>,
    ) -> Result<Self, ValidationErrors> {
        validate(definition, executors)?;
        let n = definition.nodes.len();
        let mut index: FxHashMap<Arc<str>, u32> =
            FxHashMap::with_capacity_and_hasher(n, Default::default());
        let mut nodes = Vec::with_capacity(n);
        // Executor keys are interned: nodes sharing a key share one `Arc`.
        let mut keys: HashMap<&str, Arc<str>> = HashMap::new();
        // Most nodes have an empty config: they share one.
        let empty_config = Arc::new(Value::Object(serde_json::Map::new()));
        for (i, d) in definition.nodes.iter().enumerate() {
            let id: Arc<str> = Arc::from(d.id.as_str());
            index.insert(id.clone(), i as u32);
            nodes.push(CNode {
                name: d.name.as_deref().map_or_else(|| id.clone(), Arc::from),
                id,
                node_type: d.node_type,
                executor: d
                    .executor_key()
                    .map(|k| keys.entry(k).or_insert_with(|| Arc::from(k)).clone()),
                config: if d.config.as_object().is_some_and(serde_json::Map::is_empty) {
                    empty_config.clone()
                } else {
                    Arc::new(d.config.clone())
                },
                condition: d.condition.as_deref().map(|c| {
                    Box::new(Condition::compile(c).expect("validated conditions compile"))
                }),
                rule: TriggerRule::ALL
                    .iter()
                    .position(|r| *r == d.trigger_rule)
                    .unwrap_or(0) as u8,
                retry: (d.retry != RetryPolicy::default()).then(|| Box::new(d.retry.clone())),
                timeout_ms: d.timeout_ms.and_then(NonZeroU64::new),
            });
        }
        // Dependencies, deduplicated, in declaration order.
        let mut dep_start = Vec::with_capacity(n + 1);
        let mut deps = Vec::new();
        let mut out_count = vec![0u32; n];
        // `stamp[j] == i + 1` marks `j` as already a dependency of node `i`.
        let mut stamp = vec![0u32; n];
        for (i, d) in definition.nodes.iter().enumerate() {
            dep_start.push(deps.len() as u32);
            for dep in &d.depends_on {
                let j = index[dep.as_str()];
                if stamp[j as usize] != i as u32 + 1 {
                    stamp[j as usize] = i as u32 + 1;
                    deps.push(j);
                    out_count[j as usize] += 1;
                }
            }
        }
        dep_start.push(deps.len() as u32);
        let mut out_start = Vec::with_capacity(n + 1);
        let mut acc = 0u32;
        for c in &out_count {
            out_start.push(acc);
            acc += c;
        }
        out_start.push(acc);
        let mut fill = out_start.clone();
        let mut outs = vec![0u32; acc as usize];
        for i in 0..n {
            for &j in &deps[dep_start[i] as usize..dep_start[i + 1] as usize] {
                outs[fill[j as usize] as usize] = i as u32;
                fill[j as usize] += 1;
            }
        }
        let content_hash = definition.content_hash();
        Ok(Self {
            workflow_id: Arc::from(definition.id.as_str()),
            name: Arc::from(definition.display_name()),
            max_concurrency: definition.max_concurrency,
            failure_policy: definition.failure_policy,
            version: 1,
            content_hash,
            nodes,
            index,
            dep_start,
            deps,
            out_start,
            outs,
        })
    }

    /// Sets the stored version this workflow corresponds to.
    pub fn with_version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// The workflow's display name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Nodes of one run executing at once (`None`: unlimited).
    pub fn max_concurrency(&self) -> Option<u32> {
        self.max_concurrency
    }

    /// What a node failure does to the rest of a run.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.failure_policy
    }

    /// The trigger rule of a node.
    pub fn trigger_rule(&self, id: &str) -> Option<&TriggerRule> {
        self.index_of(id).map(|i| self.nodes[i].rule())
    }

    /// The retry policy of a node.
    pub fn retry_policy(&self, id: &str) -> Option<&RetryPolicy> {
        self.index_of(id).map(|i| self.nodes[i].retry())
    }

    /// The workflow's id.
    pub fn id(&self) -> &str {
        &self.workflow_id
    }

    /// The stored version (1 unless set).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// `sha256:…` of the definition's canonical form.
    pub fn content_hash(&self) -> &str {
        &self.content_hash
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes (never true for a compiled workflow).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node ids in definition order.
    pub fn node_ids(&self) -> impl ExactSizeIterator<Item = &str> {
        self.nodes.iter().map(|n| &*n.id)
    }

    /// The dense index of a node.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.index.get(id).map(|&i| i as usize)
    }

    pub(crate) fn deps_of(&self, i: usize) -> &[u32] {
        &self.deps[self.dep_start[i] as usize..self.dep_start[i + 1] as usize]
    }

    pub(crate) fn outs_of(&self, i: usize) -> &[u32] {
        &self.outs[self.out_start[i] as usize..self.out_start[i + 1] as usize]
    }

    /// The ids of the nodes `id` depends on (its direct dependencies).
    pub fn dependencies(&self, id: &str) -> Vec<&str> {
        self.index_of(id)
            .map_or_else(Vec::new, |i| self.names(self.deps_of(i)))
    }

    /// The ids of the nodes that depend directly on `id`.
    pub fn dependents(&self, id: &str) -> Vec<&str> {
        self.index_of(id)
            .map_or_else(Vec::new, |i| self.names(self.outs_of(i)))
    }

    fn names(&self, ix: &[u32]) -> Vec<&str> {
        ix.iter().map(|&j| &*self.nodes[j as usize].id).collect()
    }

    /// Every node reachable downstream of `id` (not including it).
    pub fn descendants(&self, id: &str) -> Vec<&str> {
        let Some(start) = self.index_of(id) else {
            return Vec::new();
        };
        let mut seen = vec![false; self.len()];
        let mut stack = vec![start];
        let mut out = Vec::new();
        while let Some(i) = stack.pop() {
            for &j in self.outs_of(i) {
                if !seen[j as usize] {
                    seen[j as usize] = true;
                    out.push(&*self.nodes[j as usize].id);
                    stack.push(j as usize);
                }
            }
        }
        out
    }

    /// Topological levels ("generations"): each node sits one level below its deepest
    /// dependency. Within a level, nodes keep definition order.
    pub fn levels(&self) -> Vec<Vec<&str>> {
        let depth = self.depths();
        let max = depth.iter().copied().max().unwrap_or(0) as usize;
        let mut levels = vec![Vec::new(); if self.is_empty() { 0 } else { max + 1 }];
        for (i, d) in depth.iter().enumerate() {
            levels[*d as usize].push(&*self.nodes[i].id);
        }
        levels
    }

    /// Node ids in a topological order (dependencies first; ties in definition order by level).
    pub fn topological_order(&self) -> Vec<&str> {
        self.levels().into_iter().flatten().collect()
    }

    fn depths(&self) -> Vec<u32> {
        let n = self.len();
        let mut indeg: Vec<u32> = (0..n).map(|i| self.deps_of(i).len() as u32).collect();
        let mut depth = vec![0u32; n];
        let mut queue: Vec<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
        let mut head = 0;
        while head < queue.len() {
            let i = queue[head];
            head += 1;
            for &j in self.outs_of(i) {
                let j = j as usize;
                depth[j] = depth[j].max(depth[i] + 1);
                indeg[j] -= 1;
                if indeg[j] == 0 {
                    queue.push(j);
                }
            }
        }
        depth
    }

    /// The nodes not in `completed` whose dependencies are all in `completed`.
    pub fn ready_nodes(&self, completed: &HashSet<&str>) -> Vec<&str> {
        (0..self.len())
            .filter(|&i| !completed.contains(&*self.nodes[i].id))
            .filter(|&i| {
                self.deps_of(i)
                    .iter()
                    .all(|&j| completed.contains(&*self.nodes[j as usize].id))
            })
            .map(|i| &*self.nodes[i].id)
            .collect()
    }

    /// Nodes without dependencies.
    pub fn roots(&self) -> Vec<&str> {
        (0..self.len())
            .filter(|&i| self.deps_of(i).is_empty())
            .map(|i| &*self.nodes[i].id)
            .collect()
    }

    /// Nodes nothing depends on.
    pub fn leaves(&self) -> Vec<&str> {
        (0..self.len())
            .filter(|&i| self.outs_of(i).is_empty())
            .map(|i| &*self.nodes[i].id)
            .collect()
    }

    /// The graph as a petgraph `DiGraph` (node weights are node ids, edges run from a dependency
    /// to its dependent, node indices follow definition order), for any algorithm petgraph
    /// offers: dominators, paths, isomorphism, DOT export.
    pub fn to_petgraph(&self) -> petgraph::graph::DiGraph<&str, ()> {
        let mut g = petgraph::graph::DiGraph::with_capacity(self.len(), self.deps.len());
        let ix: Vec<_> = self.nodes.iter().map(|n| g.add_node(&*n.id)).collect();
        for i in 0..self.len() {
            for &j in self.deps_of(i) {
                g.add_edge(ix[j as usize], ix[i], ());
            }
        }
        g
    }

    /// Every edge as `(dependency, dependent)`, in definition order of the dependent.
    pub fn edges(&self) -> Vec<(&str, &str)> {
        let mut out = Vec::with_capacity(self.deps.len());
        for i in 0..self.len() {
            for &j in self.deps_of(i) {
                out.push((&*self.nodes[j as usize].id, &*self.nodes[i].id));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::NodeDefinition;

    #[test]
    fn the_petgraph_view_has_every_node_and_edge() {
        let def = WorkflowDefinition::new(
            "w",
            vec![
                NodeDefinition::new("a", "noop"),
                NodeDefinition::new("b", "noop").after(["a"]),
                NodeDefinition::new("c", "noop").after(["a", "b"]),
            ],
        );
        let wf = Workflow::compile(def, None).unwrap();
        let g = wf.to_petgraph();
        assert_eq!(g.node_count(), 3);
        assert_eq!(g.edge_count(), 3);
        let order: Vec<&str> = petgraph::algo::toposort(&g, None)
            .unwrap()
            .into_iter()
            .map(|n| g[n])
            .collect();
        assert_eq!(order, ["a", "b", "c"]);
    }
}
