//! Validation of a definition: every problem at once, each with a stable code (DESIGN §2).

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::definition::{RetryPolicy, TriggerRule, WorkflowDefinition};

/// Stable machine-readable codes of validation problems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ValidationCode {
    /// The workflow has no nodes.
    EmptyWorkflow,
    /// Two nodes share an id.
    DuplicateNode,
    /// A dependency names no node of the workflow.
    UnknownDependency,
    /// A node depends on itself.
    SelfDependency,
    /// The dependencies form a cycle (`nodes` lists it in order).
    Cycle,
    /// A node names an executor the registry does not have.
    UnknownExecutor,
    /// A workflow or node id breaks `[A-Za-z0-9_-]{1,255}`.
    InvalidId,
    /// A condition does not compile.
    InvalidCondition,
    /// A retry policy or timeout is out of range.
    InvalidRetry,
    /// A trigger rule name is not one of the known rules.
    InvalidTriggerRule,
}

impl ValidationCode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EmptyWorkflow => "empty_workflow",
            Self::DuplicateNode => "duplicate_node",
            Self::UnknownDependency => "unknown_dependency",
            Self::SelfDependency => "self_dependency",
            Self::Cycle => "cycle",
            Self::UnknownExecutor => "unknown_executor",
            Self::InvalidId => "invalid_id",
            Self::InvalidCondition => "invalid_condition",
            Self::InvalidRetry => "invalid_retry",
            Self::InvalidTriggerRule => "invalid_trigger_rule",
        }
    }
}

impl fmt::Display for ValidationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One validation problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationError {
    /// Stable code.
    pub code: ValidationCode,
    /// Human-readable description, lowercase, no final period.
    pub message: String,
    /// The node concerned, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// The nodes concerned, for problems spanning several (a cycle, in order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ValidationError {
    /// The problem as a compiler-style diagnostic for `file`, what the CLIs print:
    /// `FILE[:LINE:COLUMN]: code: message (node `x`; nodes a → b)`, with the notes that apply.
    ///
    /// Given the file's `text`, the position is that of the `id` of the node concerned
    /// (`node_id`, else the first of `nodes`), found by looking for `"id": "NODE"` (JSON) or
    /// `id: NODE` (YAML). Validation works on the parsed definition, so this is a best effort
    /// that points an editor at the right node; without `text`, or when the node is not found,
    /// the diagnostic names the file alone.
    pub fn diagnostic(&self, file: &str, text: Option<&str>) -> String {
        let mut out = file.to_string();
        let node = self
            .node_id
            .as_deref()
            .or(self.nodes.first().map(String::as_str));
        if let Some((line, column)) = text.zip(node).and_then(|(t, n)| locate_node(t, n)) {
            out.push_str(&format!(":{line}:{column}"));
        }
        out.push_str(&format!(": {}: {}", self.code, self.message));
        let mut notes = Vec::new();
        if let Some(node) = &self.node_id {
            notes.push(format!("node `{node}`"));
        }
        if !self.nodes.is_empty() {
            notes.push(format!("nodes {}", self.nodes.join(" → ")));
        }
        if !notes.is_empty() {
            out.push_str(&format!(" ({})", notes.join("; ")));
        }
        out
    }
}

/// The 1-based line and column of the `id` of `node` in a definition's text (JSON or YAML).
fn locate_node(text: &str, node: &str) -> Option<(usize, usize)> {
    let needles = [
        format!("\"id\": \"{node}\""),
        format!("\"id\":\"{node}\""),
        format!("\"node_id\": \"{node}\""),
        format!("\"node_id\":\"{node}\""),
        format!("id: {node}"),
        format!("id: \"{node}\""),
        format!("id: '{node}'"),
    ];
    for (i, line) in text.lines().enumerate() {
        for needle in &needles {
            if let Some(col) = line.find(needle.as_str()) {
                // YAML: `id: a` must not match `id: ab`, nor `node_id: a` match `id: a`.
                let whole = line[col + needle.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'));
                let key_start = !line[..col]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
                if whole && key_start {
                    return Some((i + 1, line[..col].chars().count() + 1));
                }
            }
        }
    }
    None
}

/// Every problem found in a definition (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid workflow: ")?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ValidationErrors {
    /// Whether any problem has this code.
    pub fn has(&self, code: ValidationCode) -> bool {
        self.0.iter().any(|e| e.code == code)
    }
}

/// Answers whether an executor key is registered (implemented by the executor registry).
pub trait ExecutorLookup {
    /// Whether `key` names a registered executor.
    fn has_executor(&self, key: &str) -> bool;
}

impl<F: Fn(&str) -> bool> ExecutorLookup for F {
    fn has_executor(&self, key: &str) -> bool {
        self(key)
    }
}

/// Whether `id` matches `[A-Za-z0-9_-]{1,255}`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn problem(code: ValidationCode, message: String, node: Option<&str>) -> ValidationError {
    ValidationError {
        code,
        message,
        node_id: node.map(str::to_string),
        nodes: Vec::new(),
    }
}

/// Validates a definition. `executors`, when given, is asked about every executor key.
/// Returns every problem found, in a stable order (by node, then by kind).
pub fn validate(
    def: &WorkflowDefinition,
    executors: Option<&dyn ExecutorLookup>,
) -> Result<(), ValidationErrors> {
    use ValidationCode as C;
    let mut errs = Vec::new();
    if !is_valid_id(&def.id) {
        errs.push(problem(
            C::InvalidId,
            format!(
                "workflow id `{}` must match [A-Za-z0-9_-]{{1,255}}",
                truncate(&def.id)
            ),
            None,
        ));
    }
    if def.nodes.is_empty() {
        errs.push(problem(
            C::EmptyWorkflow,
            "the workflow has no nodes".into(),
            None,
        ));
        return Err(ValidationErrors(errs));
    }
    if def.max_concurrency == Some(0) {
        errs.push(problem(
            C::InvalidRetry,
            "max_concurrency must be at least 1".into(),
            None,
        ));
    }

    let mut index: FxHashMap<&str, usize> =
        FxHashMap::with_capacity_and_hasher(def.nodes.len(), Default::default());
    for (i, n) in def.nodes.iter().enumerate() {
        if !is_valid_id(&n.id) {
            errs.push(problem(
                C::InvalidId,
                format!(
                    "node id `{}` must match [A-Za-z0-9_-]{{1,255}}",
                    truncate(&n.id)
                ),
                Some(&n.id),
            ));
        }
        if index.insert(n.id.as_str(), i).is_some() {
            errs.push(problem(
                C::DuplicateNode,
                format!("node id `{}` is used twice", n.id),
                Some(&n.id),
            ));
        }
    }

    for n in &def.nodes {
        for d in &n.depends_on {
            if d == &n.id {
                errs.push(problem(
                    C::SelfDependency,
                    format!("node `{}` depends on itself", n.id),
                    Some(&n.id),
                ));
            } else if !index.contains_key(d.as_str()) {
                errs.push(problem(
                    C::UnknownDependency,
                    format!("node `{}` depends on unknown node `{}`", n.id, truncate(d)),
                    Some(&n.id),
                ));
            }
        }
        if let TriggerRule::Invalid(name) = &n.trigger_rule {
            let known: Vec<&str> = TriggerRule::ALL.iter().map(TriggerRule::as_str).collect();
            errs.push(problem(
                C::InvalidTriggerRule,
                format!(
                    "node `{}` has unknown trigger rule `{}` (expected one of {})",
                    n.id,
                    truncate(name),
                    known.join(", ")
                ),
                Some(&n.id),
            ));
        }
        if let Some(msg) = retry_problem(&n.retry) {
            errs.push(problem(
                C::InvalidRetry,
                format!("node `{}`: {msg}", n.id),
                Some(&n.id),
            ));
        }
        if n.timeout_ms == Some(0) {
            errs.push(problem(
                C::InvalidRetry,
                format!("node `{}`: timeout_ms must be at least 1", n.id),
                Some(&n.id),
            ));
        }
        if let (Some(lookup), Some(key)) = (executors, n.executor_key())
            && !lookup.has_executor(key)
        {
            errs.push(problem(
                C::UnknownExecutor,
                format!("node `{}` uses unknown executor `{}`", n.id, truncate(key)),
                Some(&n.id),
            ));
        }
        if let Some(cond) = &n.condition
            && let Err(e) = crate::condition::Condition::compile(cond)
        {
            errs.push(problem(
                C::InvalidCondition,
                format!("node `{}`: {e}", n.id),
                Some(&n.id),
            ));
        }
    }

    if let Some(cycle) = find_cycle(def, &index) {
        let names: Vec<String> = cycle.iter().map(|&i| def.nodes[i].id.clone()).collect();
        errs.push(ValidationError {
            code: C::Cycle,
            message: format!("the dependencies form a cycle: {}", names.join(" -> ")),
            node_id: None,
            nodes: names,
        });
    }

    if errs.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(errs))
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn retry_problem(r: &RetryPolicy) -> Option<String> {
    if r.max_attempts == 0 || r.max_attempts > RetryPolicy::MAX_ATTEMPTS {
        return Some(format!(
            "retry.max_attempts must be between 1 and {}",
            RetryPolicy::MAX_ATTEMPTS
        ));
    }
    if !r.backoff.is_finite() || r.backoff < 1.0 || r.backoff > 100.0 {
        return Some("retry.backoff must be between 1.0 and 100.0".into());
    }
    if !r.jitter.is_finite() || !(0.0..=1.0).contains(&r.jitter) {
        return Some("retry.jitter must be between 0.0 and 1.0".into());
    }
    if r.max_delay_ms < r.initial_delay_ms {
        return Some("retry.max_delay_ms must not be below retry.initial_delay_ms".into());
    }
    None
}

/// Finds one cycle (ignoring self-dependencies, reported on their own), as node indices in
/// dependency order: each node depends on the one before it, and the first on the last.
fn find_cycle(def: &WorkflowDefinition, index: &FxHashMap<&str, usize>) -> Option<Vec<usize>> {
    let left = kahn_leftover(def, index);
    let start = (0..left.len()).find(|&i| left[i])?;
    // Every node Kahn's algorithm leaves behind has a dependency that was also left behind, so
    // walking from dependency to dependency must come back to a node already seen: the stretch
    // from its first visit is a cycle. Iterative, so a cycle of any length is fine.
    let dep_of = |i: usize| -> usize {
        def.nodes[i]
            .depends_on
            .iter()
            .filter_map(|d| index.get(d.as_str()).copied())
            .filter(|&j| j != i && left[j])
            .min()
            .expect("a node left by Kahn's algorithm has a dependency left too")
    };
    let mut pos: HashMap<usize, usize> = HashMap::from([(start, 0)]);
    let mut path = vec![start];
    let mut cur = start;
    loop {
        let next = dep_of(cur);
        if let Some(&p) = pos.get(&next) {
            // `path` runs against the dependencies; the cycle lists dependencies first.
            let mut cycle: Vec<usize> = path[p..].to_vec();
            cycle.reverse();
            // Start at the node defined first, for a stable report.
            let first = (0..cycle.len()).min_by_key(|&k| cycle[k]).unwrap_or(0);
            cycle.rotate_left(first);
            return Some(cycle);
        }
        pos.insert(next, path.len());
        path.push(next);
        cur = next;
    }
}

/// Kahn's algorithm over compact adjacency arrays: cheap, iterative and allocation-light, so the
/// common (acyclic) case of a 100,000-node workflow costs a few milliseconds. Duplicate and
/// self edges are ignored (reported on their own).
/// Returns, per node, whether it was left behind (it is on or downstream of a cycle).
fn kahn_leftover(def: &WorkflowDefinition, index: &FxHashMap<&str, usize>) -> Vec<bool> {
    let n = def.nodes.len();
    let mut indeg = vec![0u32; n];
    let mut start = vec![0u32; n + 1];
    let edge = |i: usize, d: &String| -> Option<usize> {
        let &j = index.get(d.as_str())?;
        (j != i && index.get(def.nodes[i].id.as_str()) == Some(&i)).then_some(j)
    };
    for (i, node) in def.nodes.iter().enumerate() {
        for d in &node.depends_on {
            if let Some(j) = edge(i, d) {
                start[j + 1] += 1;
                indeg[i] += 1;
            }
        }
    }
    for k in 0..n {
        start[k + 1] += start[k];
    }
    let mut fill = start.clone();
    let mut outs = vec![0u32; start[n] as usize];
    for (i, node) in def.nodes.iter().enumerate() {
        for d in &node.depends_on {
            if let Some(j) = edge(i, d) {
                outs[fill[j] as usize] = i as u32;
                fill[j] += 1;
            }
        }
    }
    let mut queue: Vec<u32> = (0..n as u32).filter(|&i| indeg[i as usize] == 0).collect();
    let mut head = 0;
    while head < queue.len() {
        let i = queue[head] as usize;
        head += 1;
        for &j in &outs[start[i] as usize..start[i + 1] as usize] {
            indeg[j as usize] -= 1;
            if indeg[j as usize] == 0 {
                queue.push(j);
            }
        }
    }
    if queue.len() == n {
        return vec![false; 0];
    }
    let mut left = vec![true; n];
    for &i in &queue {
        left[i as usize] = false;
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(
        code: ValidationCode,
        message: &str,
        node: Option<&str>,
        nodes: &[&str],
    ) -> ValidationError {
        ValidationError {
            code,
            message: message.into(),
            node_id: node.map(str::to_string),
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn diagnostics_point_at_the_node_in_json_and_yaml() {
        let e = error(
            ValidationCode::UnknownDependency,
            "node `a` depends on unknown node `b`",
            Some("a"),
            &[],
        );
        let yaml = "id: wf\nnodes:\n  - id: ab\n  - id: a\n    node_id: x\n    depends_on: [b]\n";
        assert_eq!(
            e.diagnostic("wf.yaml", Some(yaml)),
            "wf.yaml:4:5: unknown_dependency: node `a` depends on unknown node `b` (node `a`)"
        );
        let json = "{\n  \"nodes\": [\n    {\"id\": \"ab\"},\n    {\"id\": \"a\"}\n  ]\n}";
        assert!(
            e.diagnostic("wf.json", Some(json))
                .starts_with("wf.json:4:6: ")
        );
        // Without the text, or a node the text does not have: the file alone.
        assert_eq!(
            e.diagnostic("wf.yaml", None),
            "wf.yaml: unknown_dependency: node `a` depends on unknown node `b` (node `a`)"
        );
        assert!(
            e.diagnostic("wf.yaml", Some("id: wf\n"))
                .starts_with("wf.yaml: ")
        );

        let cycle = error(ValidationCode::Cycle, "a cycle", None, &["x", "y", "x"]);
        assert_eq!(
            cycle.diagnostic("c.yaml", Some("nodes:\n  - id: y\n  - id: x\n")),
            "c.yaml:3:5: cycle: a cycle (nodes x → y → x)"
        );
        let empty = error(
            ValidationCode::EmptyWorkflow,
            "the workflow has no nodes",
            None,
            &[],
        );
        assert_eq!(
            empty.diagnostic("e.json", Some("{}")),
            "e.json: empty_workflow: the workflow has no nodes"
        );
    }
}
