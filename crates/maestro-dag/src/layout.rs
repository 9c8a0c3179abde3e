//! A layered (Sugiyama-style) drawing of a workflow's DAG, left to right: the coordinates behind
//! the server's SVG picture, the dashboard and `maestro graph --format svg`.
//!
//! The steps, each chosen to stay close to linear time so that 10,000-node graphs still lay out:
//!
//! 1. **Layering.** Every node goes into a column (a *layer*) one past its deepest dependency
//!    (longest path), then nodes that feed more edges than they receive are pulled right, next
//!    to their dependents, to shorten edges. Parallel nodes share a layer, every edge points
//!    right. (Should a graph given to [`Layout::of_graph`] have a cycle, edges are reversed to
//!    break it, and drawn backwards.)
//! 2. **Long edges** are split into chains of dummy vertices, one per layer crossed, so that they
//!    take part in crossing reduction and get their own lane. A budget
//!    ([`LayoutConfig::max_dummies`]) bounds the work: past it, the longest edges are drawn as
//!    direct curves instead.
//! 3. **Crossing reduction.** Layer-by-layer sweeps, alternately left to right and right to
//!    left, sort each layer by the weighted median (then barycenter) of its neighbours in the
//!    fixed layer; crossings are counted after each sweep with the accumulator-tree method of
//!    Barth, Jünger and Mutzel (O(E log V) per pair of layers), and the best ordering seen wins.
//!    Swapping neighbours where that removes crossings (transposition) follows every sweep on
//!    small graphs, and the last one on big graphs.
//! 4. **Coordinates.** Layers are columns as wide as their widest box. Within a column, nodes
//!    keep their order and move towards the median of their neighbours in alternating sweeps;
//!    each move is a weighted isotonic regression (pool-adjacent-violators) under the minimum
//!    spacing constraints, so boxes never overlap and a node with one neighbour lines up with
//!    it. Dummies weigh more than nodes, and a last pass puts the dummies of each long edge on
//!    one line wherever their neighbours leave room, so long edges run straight.
//! 5. **Edges** become polylines from the right side of the source box through the lanes of their
//!    dummies to the left side of the target box; every point is meant to be joined by a curve
//!    with horizontal tangents (the SVG uses cubic Béziers).
//!
//! The result is deterministic: the same input gives the same layout, to the bit.

use std::borrow::Cow;
use std::collections::HashSet;

use serde::Serialize;

use crate::definition::NodeType;
use crate::workflow::Workflow;

/// Sizes and effort of a layout. Every length is in SVG user units (CSS pixels).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LayoutConfig {
    /// Estimated width of one character of a label.
    pub char_width: f64,
    /// Space between a label and the left or right side of its box.
    pub label_padding: f64,
    /// The narrowest box.
    pub min_node_width: f64,
    /// Labels longer than this many characters are cut short with `…` (see
    /// [`LayoutConfig::fit_label`]), which also bounds the widest box.
    pub max_label_chars: usize,
    /// The height of every box.
    pub node_height: f64,
    /// Horizontal space between two columns (layers).
    pub layer_gap: f64,
    /// Vertical space between two boxes of one column.
    pub node_gap: f64,
    /// Vertical space between two long edges passing through one column.
    pub edge_gap: f64,
    /// Space around the drawing.
    pub margin: f64,
    /// Most crossing-reduction sweeps (0 keeps the initial order: nodes in input order).
    pub max_sweeps: usize,
    /// Coordinate-assignment rounds (each one sweep each way).
    pub coordinate_rounds: usize,
    /// Most dummy vertices created for long edges; past it, the longest edges are drawn as
    /// direct curves.
    pub max_dummies: usize,
}

impl Default for LayoutConfig {
    fn default() -> Self {
        Self {
            char_width: 8.0,
            label_padding: 14.0,
            min_node_width: 110.0,
            max_label_chars: 32,
            node_height: 48.0,
            layer_gap: 56.0,
            node_gap: 18.0,
            edge_gap: 8.0,
            margin: 16.0,
            max_sweeps: 24,
            coordinate_rounds: 8,
            max_dummies: 200_000,
        }
    }
}

impl LayoutConfig {
    /// `label` cut to [`LayoutConfig::max_label_chars`] characters, the last one `…`, when longer.
    pub fn fit_label<'a>(&self, label: &'a str) -> Cow<'a, str> {
        let max = self.max_label_chars.max(1);
        match label.char_indices().nth(max) {
            None => Cow::Borrowed(label),
            Some(_) => {
                let cut = label.char_indices().nth(max - 1).map_or(0, |(i, _)| i);
                Cow::Owned(format!("{}…", &label[..cut]))
            }
        }
    }

    /// The width of a box showing `lines` (each fitted with [`LayoutConfig::fit_label`]).
    pub fn node_width(&self, lines: &[&str]) -> f64 {
        let chars = lines
            .iter()
            .map(|l| self.fit_label(l).chars().count())
            .max()
            .unwrap_or(0);
        (chars as f64 * self.char_width + 2.0 * self.label_padding).max(self.min_node_width)
    }
}

/// The second line of a node's box: `TYPE · EXECUTOR`, or `TYPE` for a node without executor.
pub fn node_meta(node_type: NodeType, executor: Option<&str>) -> String {
    match executor {
        Some(e) => format!("{} · {e}", node_type.as_str()),
        None => node_type.as_str().to_string(),
    }
}

/// A laid-out graph: where each box goes and the path of each edge. `(0, 0)` is the top-left
/// corner; `x` grows to the right, `y` downwards.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Layout {
    /// Width of the drawing, margins included.
    pub width: f64,
    /// Height of the drawing, margins included.
    pub height: f64,
    /// Number of layers (columns).
    pub layers: usize,
    /// Edge crossings between adjacent layers in the final order (long edges drawn without
    /// dummies, past [`LayoutConfig::max_dummies`], are not counted).
    pub crossings: u64,
    /// The nodes, in input order.
    pub nodes: Vec<LaidNode>,
    /// The edges, in input order (duplicates and self-loops left out).
    pub edges: Vec<LaidEdge>,
}

/// One placed node: a box whose top-left corner is `(x, y)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LaidNode {
    /// The node id.
    pub id: String,
    /// Its layer (column), from 0 at the left.
    pub layer: usize,
    /// Its rank among the nodes of its layer, from 0 at the top.
    pub order: usize,
    /// Left side of the box.
    pub x: f64,
    /// Top side of the box.
    pub y: f64,
    /// Width of the box.
    pub width: f64,
    /// Height of the box.
    pub height: f64,
}

/// One routed edge: a polyline from the right side of `from`'s box to the left side of `to`'s.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LaidEdge {
    /// The dependency's id.
    pub from: String,
    /// The dependent's id.
    pub to: String,
    /// At least two points `(x, y)`: first on the source box, last on the target box.
    pub points: Vec<(f64, f64)>,
}

impl Layout {
    /// Lays out a compiled workflow. Boxes are wide enough for the node's name and its
    /// [`node_meta`] line; nodes and edges come out in the workflow's order.
    pub fn of_workflow(wf: &Workflow, config: &LayoutConfig) -> Layout {
        let ids: Vec<&str> = wf.nodes.iter().map(|n| &*n.id).collect();
        let widths: Vec<f64> = wf
            .nodes
            .iter()
            .map(|n| {
                let meta = node_meta(n.node_type, n.executor.as_deref());
                config.node_width(&[&n.name, &meta])
            })
            .collect();
        let mut edges = Vec::new();
        for i in 0..wf.len() {
            edges.extend(wf.deps_of(i).iter().map(|&j| (j as usize, i)));
        }
        Self::of_graph(&ids, &widths, &edges, config)
    }

    /// Lays out any directed graph: `ids[i]` is node `i`, `widths[i]` the width of its box, and
    /// each edge `(from, to)` indexes into `ids`.
    ///
    /// # Panics
    ///
    /// When `widths` and `ids` differ in length or an edge names a node that does not exist.
    pub fn of_graph<S: AsRef<str>>(
        ids: &[S],
        widths: &[f64],
        edges: &[(usize, usize)],
        config: &LayoutConfig,
    ) -> Layout {
        assert_eq!(ids.len(), widths.len(), "one width per node");
        let n = ids.len();
        let edges = distinct_edges(n, edges);
        let (topo_pos, topo) = topological(n, &edges);
        // The layering orientation of each edge: reversed when it goes against the order.
        let oriented: Vec<(usize, usize, bool)> = edges
            .iter()
            .map(|&(a, b)| {
                if topo_pos[a] < topo_pos[b] {
                    (a, b, false)
                } else {
                    (b, a, true)
                }
            })
            .collect();
        let layer = assign_layers(n, &oriented, &topo);
        let mut g = Layered::new(n, &layer, widths);
        let chains = g.split_long_edges(&oriented, config.max_dummies);
        g.reduce_crossings(config.max_sweeps);
        let crossings = g.total_crossings();
        g.assign_y(config);
        g.straighten(&chains, config);
        g.finish(ids, &edges, &oriented, &chains, crossings, config)
    }
}

/// Edges without self-loops and duplicates, in first-seen order.
fn distinct_edges(n: usize, edges: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut seen = HashSet::with_capacity(edges.len());
    edges
        .iter()
        .copied()
        .filter(|&(a, b)| {
            assert!(a < n && b < n, "edge ({a}, {b}) names a missing node");
            a != b && seen.insert((a, b))
        })
        .collect()
}

/// A topological order (Kahn's, ready nodes in the order they became ready) and each node's
/// position in it. On a cycle, the unplaced node with the fewest remaining dependencies goes
/// next, so the fewest edges nearby are reversed (a linear scan per cycle broken: compiled
/// workflows have none, and other graphs few).
fn topological(n: usize, edges: &[(usize, usize)]) -> (Vec<usize>, Vec<usize>) {
    let mut outs = vec![Vec::new(); n];
    let mut indeg = vec![0usize; n];
    for &(a, b) in edges {
        outs[a].push(b);
        indeg[b] += 1;
    }
    let mut pos = vec![usize::MAX; n];
    let mut order = Vec::with_capacity(n);
    let mut queue: Vec<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
    let mut head = 0;
    let mut next_unplaced = 0;
    while order.len() < n {
        if head == queue.len() {
            // A cycle: break it at the unplaced node with the fewest remaining dependencies.
            while pos[next_unplaced] != usize::MAX {
                next_unplaced += 1;
            }
            let pick = (next_unplaced..n)
                .filter(|&i| pos[i] == usize::MAX)
                .min_by_key(|&i| (indeg[i], i))
                .expect("an unplaced node remains");
            indeg[pick] = 0;
            queue.push(pick);
        }
        let v = queue[head];
        head += 1;
        if pos[v] != usize::MAX {
            continue;
        }
        pos[v] = order.len();
        order.push(v);
        for &w in &outs[v] {
            if pos[w] == usize::MAX && indeg[w] > 0 {
                indeg[w] -= 1;
                if indeg[w] == 0 {
                    queue.push(w);
                }
            }
        }
    }
    (pos, order)
}

/// Longest-path layering, then nodes with more outgoing than incoming edges move right, as
/// close to their dependents as they can (never past one: every edge keeps pointing right).
fn assign_layers(n: usize, oriented: &[(usize, usize, bool)], topo: &[usize]) -> Vec<usize> {
    let mut preds = vec![Vec::new(); n];
    let mut succs = vec![Vec::new(); n];
    for &(a, b, _) in oriented {
        succs[a].push(b);
        preds[b].push(a);
    }
    let mut layer = vec![0usize; n];
    for &v in topo {
        for &w in &succs[v] {
            layer[w] = layer[w].max(layer[v] + 1);
        }
    }
    for &v in topo.iter().rev() {
        if succs[v].len() > preds[v].len() {
            let bound = succs[v].iter().map(|&w| layer[w]).min().unwrap_or(0);
            if bound > layer[v] + 1 {
                layer[v] = bound - 1;
            }
        }
    }
    layer
}

/// The layered graph: real nodes `0..n_real`, then dummies; edges join adjacent layers only.
struct Layered {
    n_real: usize,
    layer: Vec<usize>,
    preds: Vec<Vec<u32>>,
    succs: Vec<Vec<u32>>,
    /// Each layer's vertices, top to bottom.
    order: Vec<Vec<u32>>,
    /// Each vertex's index in its layer's `order`.
    pos: Vec<u32>,
    /// Box width (0 for dummies).
    width: Vec<f64>,
    /// Vertical centre of each vertex.
    y: Vec<f64>,
}

impl Layered {
    fn new(n: usize, layer: &[usize], widths: &[f64]) -> Self {
        let layers = layer.iter().copied().max().map_or(0, |m| m + 1);
        let mut g = Self {
            n_real: n,
            layer: layer.to_vec(),
            preds: vec![Vec::new(); n],
            succs: vec![Vec::new(); n],
            order: vec![Vec::new(); layers],
            pos: vec![0; n],
            width: widths.to_vec(),
            y: Vec::new(),
        };
        for v in 0..n {
            g.push_to_layer(v);
        }
        g
    }

    fn push_to_layer(&mut self, v: usize) {
        let l = self.layer[v];
        self.pos[v] = self.order[l].len() as u32;
        self.order[l].push(v as u32);
    }

    fn is_dummy(&self, v: usize) -> bool {
        v >= self.n_real
    }

    /// Adds the edges, splitting long ones into dummy chains (shortest spans first, within the
    /// budget). Returns each edge's chain, endpoints included, top layer first; an edge past the
    /// budget gets just its two endpoints.
    fn split_long_edges(
        &mut self,
        oriented: &[(usize, usize, bool)],
        max_dummies: usize,
    ) -> Vec<Vec<u32>> {
        let mut by_span: Vec<usize> = (0..oriented.len()).collect();
        by_span.sort_by_key(|&e| self.layer[oriented[e].1] - self.layer[oriented[e].0]);
        let mut chains = vec![Vec::new(); oriented.len()];
        let mut budget = max_dummies;
        for e in by_span {
            let (a, b, _) = oriented[e];
            let span = self.layer[b] - self.layer[a];
            let mut chain = vec![a as u32];
            if span == 1 || span - 1 <= budget {
                budget -= span - 1;
                for l in self.layer[a] + 1..self.layer[b] {
                    let d = self.layer.len();
                    self.layer.push(l);
                    self.preds.push(Vec::new());
                    self.succs.push(Vec::new());
                    self.pos.push(0);
                    self.width.push(0.0);
                    self.push_to_layer(d);
                    chain.push(d as u32);
                }
                chain.push(b as u32);
                for pair in chain.windows(2) {
                    self.succs[pair[0] as usize].push(pair[1]);
                    self.preds[pair[1] as usize].push(pair[0]);
                }
            } else {
                chain.push(b as u32);
            }
            chains[e] = chain;
        }
        chains
    }

    /// Crossings between layer `l` and `l + 1`, by the accumulator tree.
    fn crossings_at(&self, l: usize, tree: &mut Vec<u64>, scratch: &mut Vec<u32>) -> u64 {
        let lower = self.order[l + 1].len();
        if lower < 2 {
            return 0;
        }
        let mut first = 1usize;
        while first < lower {
            first *= 2;
        }
        tree.clear();
        tree.resize(2 * first - 1, 0);
        let first = first - 1;
        let mut count = 0u64;
        for &u in &self.order[l] {
            scratch.clear();
            scratch.extend(self.succs[u as usize].iter().map(|&w| self.pos[w as usize]));
            scratch.sort_unstable();
            for &p in scratch.iter() {
                let mut index = p as usize + first;
                tree[index] += 1;
                while index > 0 {
                    if index % 2 == 1 {
                        count += tree[index + 1];
                    }
                    index = (index - 1) / 2;
                    tree[index] += 1;
                }
            }
        }
        count
    }

    fn total_crossings(&self) -> u64 {
        let mut tree = Vec::new();
        let mut scratch = Vec::new();
        (0..self.order.len().saturating_sub(1))
            .map(|l| self.crossings_at(l, &mut tree, &mut scratch))
            .sum()
    }

    /// Alternating median sweeps; keeps the ordering with the fewest crossings seen.
    fn reduce_crossings(&mut self, max_sweeps: usize) {
        if self.order.len() < 2 {
            return;
        }
        let mut best = self.total_crossings();
        let mut best_order = self.order.clone();
        let mut stale = 0;
        let mut keyed = Vec::new();
        let mut slots = Vec::new();
        let mut scratch = Vec::new();
        let mut other = Vec::new();
        // Transposition after every sweep finds a few more crossings to remove, at a cost that
        // only small graphs (the usual workflow) should pay; big ones get it once, at the end.
        let small = self.layer.len() <= 600;
        for sweep in 0..max_sweeps {
            if best == 0 {
                break;
            }
            if sweep % 2 == 0 {
                for l in 1..self.order.len() {
                    self.reorder(l, true, &mut keyed, &mut slots, &mut scratch);
                }
            } else {
                for l in (0..self.order.len() - 1).rev() {
                    self.reorder(l, false, &mut keyed, &mut slots, &mut scratch);
                }
            }
            if small {
                self.transpose(&mut scratch, &mut other);
            }
            let now = self.total_crossings();
            if now < best {
                best = now;
                best_order.clone_from(&self.order);
                stale = 0;
            } else {
                stale += 1;
                if stale >= 4 {
                    break;
                }
            }
        }
        self.order = best_order;
        for l in 0..self.order.len() {
            for (i, &v) in self.order[l].iter().enumerate() {
                self.pos[v as usize] = i as u32;
            }
        }
        if !small && max_sweeps > 0 && best > 0 {
            // Each swap removes crossings, so this only ever improves the best ordering.
            self.transpose(&mut scratch, &mut other);
        }
    }

    /// Local improvement after a sweep: swaps neighbours of a layer whenever that removes
    /// crossings with the layers on both sides, a few passes at most.
    fn transpose(&mut self, a: &mut Vec<u32>, b: &mut Vec<u32>) {
        const PASSES: usize = 4;
        for _ in 0..PASSES {
            let mut improved = false;
            for l in 0..self.order.len() {
                for i in 1..self.order[l].len() {
                    let (u, v) = (self.order[l][i - 1] as usize, self.order[l][i] as usize);
                    let (mut keep, mut swap) = (0, 0);
                    for side in [&self.preds, &self.succs] {
                        self.sorted_positions(&side[u], a);
                        self.sorted_positions(&side[v], b);
                        keep += pairs_above(a, b);
                        swap += pairs_above(b, a);
                    }
                    if swap < keep {
                        self.order[l].swap(i - 1, i);
                        self.pos[u] = i as u32;
                        self.pos[v] = (i - 1) as u32;
                        improved = true;
                    }
                }
            }
            if !improved {
                break;
            }
        }
    }

    fn sorted_positions(&self, adj: &[u32], out: &mut Vec<u32>) {
        out.clear();
        out.extend(adj.iter().map(|&w| self.pos[w as usize]));
        out.sort_unstable();
    }

    /// Sorts layer `l` by the median (then barycenter) position of each vertex's neighbours in
    /// the previous layer (`from_preds`) or the next one. Vertices without such neighbours keep
    /// their slots.
    fn reorder(
        &mut self,
        l: usize,
        from_preds: bool,
        keyed: &mut Vec<(f64, f64, u32, u32)>,
        slots: &mut Vec<u32>,
        scratch: &mut Vec<u32>,
    ) {
        keyed.clear();
        slots.clear();
        for (i, &v) in self.order[l].iter().enumerate() {
            let adj = if from_preds {
                &self.preds[v as usize]
            } else {
                &self.succs[v as usize]
            };
            if adj.is_empty() {
                continue;
            }
            scratch.clear();
            scratch.extend(adj.iter().map(|&w| self.pos[w as usize]));
            scratch.sort_unstable();
            let bary = scratch.iter().map(|&p| f64::from(p)).sum::<f64>() / scratch.len() as f64;
            keyed.push((weighted_median(scratch), bary, i as u32, v));
            slots.push(i as u32);
        }
        keyed.sort_by(|a, b| {
            a.0.total_cmp(&b.0)
                .then(a.1.total_cmp(&b.1))
                .then(a.2.cmp(&b.2))
        });
        for (&slot, &(_, _, _, v)) in slots.iter().zip(keyed.iter()) {
            self.order[l][slot as usize] = v;
            self.pos[v as usize] = slot;
        }
    }

    fn thickness(&self, v: usize, config: &LayoutConfig) -> f64 {
        if self.is_dummy(v) {
            0.0
        } else {
            config.node_height
        }
    }

    /// The least distance between the centres of two neighbours in a layer.
    fn separation(&self, a: usize, b: usize, config: &LayoutConfig) -> f64 {
        let gap = if self.is_dummy(a) && self.is_dummy(b) {
            config.edge_gap
        } else {
            config.node_gap
        };
        (self.thickness(a, config) + self.thickness(b, config)) / 2.0 + gap
    }

    /// Vertical coordinates: packed and centred, then alternating median sweeps, each solved as
    /// an isotonic regression so the order and spacing hold.
    fn assign_y(&mut self, config: &LayoutConfig) {
        self.y = vec![0.0; self.layer.len()];
        for l in 0..self.order.len() {
            let mut y = 0.0;
            for i in 0..self.order[l].len() {
                if i > 0 {
                    let (a, b) = (self.order[l][i - 1] as usize, self.order[l][i] as usize);
                    y += self.separation(a, b, config);
                }
                self.y[self.order[l][i] as usize] = y;
            }
            let half = y / 2.0;
            for &v in &self.order[l] {
                self.y[v as usize] -= half;
            }
        }
        let layers = self.order.len();
        let mut scratch = Vec::new();
        let mut targets = Vec::new();
        let mut pav = Pav::default();
        for _ in 0..config.coordinate_rounds {
            for l in 1..layers {
                self.place_layer(l, Side::Preds, config, &mut scratch, &mut targets, &mut pav);
            }
            for l in (0..layers.saturating_sub(1)).rev() {
                self.place_layer(l, Side::Succs, config, &mut scratch, &mut targets, &mut pav);
            }
        }
        if config.coordinate_rounds > 0 {
            // A last, balancing pass: every vertex between all of its neighbours.
            for l in 0..layers {
                self.place_layer(l, Side::Both, config, &mut scratch, &mut targets, &mut pav);
            }
        }
    }

    /// Puts the dummies of each long edge on one horizontal line when their slots allow it
    /// (each dummy only moves between its neighbours in the layer, so nothing comes to overlap).
    fn straighten(&mut self, chains: &[Vec<u32>], config: &LayoutConfig) {
        for chain in chains {
            let inner = &chain[1..chain.len() - 1];
            if inner.len() < 2 {
                continue;
            }
            let (mut lo, mut hi) = (f64::NEG_INFINITY, f64::INFINITY);
            let mut mean = 0.0;
            for &d in inner {
                let d = d as usize;
                let (l, p) = (self.layer[d], self.pos[d] as usize);
                if p > 0 {
                    let above = self.order[l][p - 1] as usize;
                    lo = lo.max(self.y[above] + self.separation(above, d, config));
                }
                if let Some(&below) = self.order[l].get(p + 1) {
                    let below = below as usize;
                    hi = hi.min(self.y[below] - self.separation(d, below, config));
                }
                mean += self.y[d];
            }
            if lo <= hi {
                let y = (mean / inner.len() as f64).clamp(lo, hi);
                for &d in inner {
                    self.y[d as usize] = y;
                }
            }
        }
    }

    fn place_layer(
        &mut self,
        l: usize,
        side: Side,
        config: &LayoutConfig,
        scratch: &mut Vec<f64>,
        targets: &mut Vec<Option<(f64, f64)>>,
        pav: &mut Pav,
    ) {
        let order = &self.order[l];
        if order.is_empty() {
            return;
        }
        // Targets in "packed" coordinates (minus the spacing above), `None` for a vertex without
        // neighbours on this side.
        targets.clear();
        let mut offset = 0.0;
        for (i, &v) in order.iter().enumerate() {
            let v = v as usize;
            if i > 0 {
                offset += self.separation(order[i - 1] as usize, v, config);
            }
            scratch.clear();
            let inside_long_edge = matches!(side, Side::Both)
                && self.is_dummy(v)
                && self.preds[v]
                    .iter()
                    .chain(&self.succs[v])
                    .any(|&w| self.is_dummy(w as usize));
            if inside_long_edge {
                // Follow the rest of the long edge, not its ends: the chain of dummies stays
                // one straight lane.
                scratch.extend(
                    self.preds[v]
                        .iter()
                        .chain(&self.succs[v])
                        .filter(|&&w| self.is_dummy(w as usize))
                        .map(|&w| self.y[w as usize]),
                );
            } else {
                if matches!(side, Side::Preds | Side::Both) {
                    scratch.extend(self.preds[v].iter().map(|&w| self.y[w as usize]));
                }
                if matches!(side, Side::Succs | Side::Both) {
                    scratch.extend(self.succs[v].iter().map(|&w| self.y[w as usize]));
                }
            }
            targets.push(if scratch.is_empty() {
                None
            } else {
                scratch.sort_unstable_by(f64::total_cmp);
                let m = scratch.len();
                let median = if m % 2 == 1 {
                    scratch[m / 2]
                } else {
                    (scratch[m / 2 - 1] + scratch[m / 2]) / 2.0
                };
                // Long edges are the stiffest: they stay straight and nodes move around them.
                let weight = if self.is_dummy(v) { 8.0 } else { m as f64 };
                Some((median - offset, weight))
            });
        }
        // A vertex without neighbours here stays packed against the nearest one that has some
        // (the one above, else the first one below), lightly, so it never drifts off alone.
        let Some(mut above) = targets.iter().find_map(|t| t.map(|t| t.0)) else {
            return;
        };
        pav.clear();
        for t in targets.iter() {
            let (z, weight) = match *t {
                Some(t) => {
                    above = t.0;
                    t
                }
                None => (above, 0.05),
            };
            pav.push(z, weight);
        }
        let mut offset = 0.0;
        let mut i = 0;
        for block in &pav.blocks {
            let z = block.sum / block.weight;
            for _ in 0..block.len {
                let v = order[i] as usize;
                if i > 0 {
                    offset += self.separation(order[i - 1] as usize, v, config);
                }
                self.y[v] = z + offset;
                i += 1;
            }
        }
    }

    /// The output: coordinates rounded to hundredths, shifted so the drawing starts at the margin.
    fn finish<S: AsRef<str>>(
        &self,
        ids: &[S],
        edges: &[(usize, usize)],
        oriented: &[(usize, usize, bool)],
        chains: &[Vec<u32>],
        crossings: u64,
        config: &LayoutConfig,
    ) -> Layout {
        let layers = self.order.len();
        let mut col_width = vec![0.0f64; layers];
        for v in 0..self.n_real {
            col_width[self.layer[v]] = col_width[self.layer[v]].max(self.width[v]);
        }
        let mut col_left = vec![0.0; layers];
        let mut x = config.margin;
        for l in 0..layers {
            col_left[l] = x;
            x += col_width[l] + config.layer_gap;
        }
        let width = if layers == 0 {
            2.0 * config.margin
        } else {
            x - config.layer_gap + config.margin
        };
        let top = (0..self.layer.len())
            .map(|v| self.y[v] - self.thickness(v, config) / 2.0)
            .fold(f64::INFINITY, f64::min);
        let shift = if top.is_finite() {
            config.margin - top
        } else {
            0.0
        };
        let cy = |v: usize| round(self.y[v] + shift);
        let mut height = 2.0 * config.margin;
        let mut rank = vec![0usize; self.n_real];
        for layer in &self.order {
            let mut r = 0;
            for &v in layer {
                if !self.is_dummy(v as usize) {
                    rank[v as usize] = r;
                    r += 1;
                }
            }
        }
        let nodes: Vec<LaidNode> = (0..self.n_real)
            .map(|v| {
                let l = self.layer[v];
                let node = LaidNode {
                    id: ids[v].as_ref().to_string(),
                    layer: l,
                    order: rank[v],
                    x: round(col_left[l] + (col_width[l] - self.width[v]) / 2.0),
                    y: round(self.y[v] + shift - config.node_height / 2.0),
                    width: round(self.width[v]),
                    height: config.node_height,
                };
                height = height.max(node.y + node.height + config.margin);
                node
            })
            .collect();
        let laid_edges = edges
            .iter()
            .zip(oriented)
            .zip(chains)
            .map(|((&(from, to), &(_, _, reversed)), chain)| {
                let (a, b) = (chain[0] as usize, chain[chain.len() - 1] as usize);
                let mut points = vec![(round(nodes[a].x + nodes[a].width), cy(a))];
                for &d in &chain[1..chain.len() - 1] {
                    let (d, l) = (d as usize, self.layer[d as usize]);
                    points.push((round(col_left[l]), cy(d)));
                    if col_width[l] > 0.0 {
                        points.push((round(col_left[l] + col_width[l]), cy(d)));
                    }
                }
                points.push((nodes[b].x, cy(b)));
                if reversed {
                    points.reverse();
                }
                LaidEdge {
                    from: ids[from].as_ref().to_string(),
                    to: ids[to].as_ref().to_string(),
                    points,
                }
            })
            .collect();
        Layout {
            width: width.ceil(),
            height: height.ceil(),
            layers,
            crossings,
            nodes,
            edges: laid_edges,
        }
    }
}

#[derive(Clone, Copy)]
enum Side {
    Preds,
    Succs,
    Both,
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Crossings between the edges of a vertex placed above another, given the sorted positions of
/// their neighbours in one adjacent layer: the pairs where the upper one's neighbour is lower.
fn pairs_above(upper: &[u32], lower: &[u32]) -> u64 {
    let mut count = 0u64;
    let mut j = 0;
    for &p in upper {
        while j < lower.len() && lower[j] < p {
            j += 1;
        }
        count += j as u64;
    }
    count
}

/// The weighted median of sorted positions (Gansner et al.): the middle one, or between the
/// two middle ones, leaning towards the side where the positions are packed more tightly.
fn weighted_median(sorted: &[u32]) -> f64 {
    let m = sorted.len();
    let p = |i: usize| f64::from(sorted[i]);
    if m % 2 == 1 {
        p(m / 2)
    } else if m == 2 {
        (p(0) + p(1)) / 2.0
    } else {
        let left = p(m / 2 - 1) - p(0);
        let right = p(m - 1) - p(m / 2);
        if left + right == 0.0 {
            (p(m / 2 - 1) + p(m / 2)) / 2.0
        } else {
            (p(m / 2 - 1) * right + p(m / 2) * left) / (left + right)
        }
    }
}

/// Weighted isotonic regression by pool-adjacent-violators: the non-decreasing sequence closest
/// (in weighted squared distance) to the pushed targets.
#[derive(Default)]
struct Pav {
    blocks: Vec<Block>,
}

struct Block {
    sum: f64,
    weight: f64,
    len: usize,
}

impl Pav {
    fn clear(&mut self) {
        self.blocks.clear();
    }

    fn push(&mut self, target: f64, weight: f64) {
        let mut block = Block {
            sum: target * weight,
            weight,
            len: 1,
        };
        while let Some(last) = self.blocks.last() {
            if last.sum / last.weight < block.sum / block.weight {
                break;
            }
            block.sum += last.sum;
            block.weight += last.weight;
            block.len += last.len;
            self.blocks.pop();
        }
        self.blocks.push(block);
    }
}
