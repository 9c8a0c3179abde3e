//! The layered layout: on random DAGs every node is placed once, edges point right, boxes never
//! overlap, edges run from box to box, crossing reduction never makes things worse and the
//! result is deterministic; hand-made graphs show crossings removed, long edges kept straight
//! and the SDLC shape drawn the way a person would.

use std::time::{Duration, Instant};

use maestro_dag::layout::node_meta;
use maestro_dag::{Layout, LayoutConfig, NodeType, Workflow};
use proptest::prelude::*;

use crate::graph::sdlc_parallel;
use crate::support::{review, workflow};

const EPS: f64 = 1e-6;

/// Lays out `n` nodes named `n0`, `n1`… of the default width with the given edges, checks every
/// invariant that must hold for a DAG, and returns the layout.
fn check(n: usize, edges: &[(usize, usize)], config: &LayoutConfig) -> Layout {
    let ids: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
    let widths: Vec<f64> = (0..n)
        .map(|i| config.node_width(&[&ids[i], &"x".repeat(i % 23)]))
        .collect();
    let layout = Layout::of_graph(&ids, &widths, edges, config);
    assert_invariants(&layout, &ids, edges, config);
    layout
}

/// What every layout of a DAG satisfies.
#[track_caller]
fn assert_invariants(
    layout: &Layout,
    ids: &[String],
    edges: &[(usize, usize)],
    config: &LayoutConfig,
) {
    // Every node once, in input order.
    let placed: Vec<&str> = layout.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(placed, ids.iter().map(String::as_str).collect::<Vec<_>>());
    // Edges point right, one laid edge per distinct edge.
    let mut distinct: Vec<(usize, usize)> = Vec::new();
    for &e in edges {
        if e.0 != e.1 && !distinct.contains(&e) {
            distinct.push(e);
        }
    }
    assert_eq!(layout.edges.len(), distinct.len());
    for (laid, &(a, b)) in layout.edges.iter().zip(&distinct) {
        assert_eq!(
            (laid.from.as_str(), laid.to.as_str()),
            (ids[a].as_str(), ids[b].as_str())
        );
        let (src, dst) = (&layout.nodes[a], &layout.nodes[b]);
        assert!(
            src.layer < dst.layer,
            "{laid:?} goes from layer {} to {}",
            src.layer,
            dst.layer
        );
        // From the right side of the source box to the left side of the target box.
        assert!(laid.points.len() >= 2);
        let (first, last) = (laid.points[0], laid.points[laid.points.len() - 1]);
        assert!(
            (first.0 - (src.x + src.width)).abs() < EPS,
            "{laid:?} {src:?}"
        );
        assert!(
            first.1 > src.y - EPS && first.1 < src.y + src.height + EPS,
            "{laid:?} {src:?}"
        );
        assert!((last.0 - dst.x).abs() < EPS, "{laid:?} {dst:?}");
        assert!(
            last.1 > dst.y - EPS && last.1 < dst.y + dst.height + EPS,
            "{laid:?} {dst:?}"
        );
        // Left to right all the way.
        assert!(
            laid.points.windows(2).all(|p| p[0].0 <= p[1].0 + EPS),
            "{laid:?}"
        );
    }
    // Boxes inside the drawing, of the configured height, never overlapping.
    for n in &layout.nodes {
        assert_eq!(n.height, config.node_height);
        assert!(n.width >= config.min_node_width - EPS);
        assert!(
            n.x >= config.margin - EPS && n.y >= config.margin - EPS,
            "{n:?}"
        );
        assert!(
            n.x + n.width <= layout.width + EPS,
            "{n:?} {}",
            layout.width
        );
        assert!(
            n.y + n.height <= layout.height + EPS,
            "{n:?} {}",
            layout.height
        );
    }
    let mut by_layer: Vec<Vec<&maestro_dag::LaidNode>> = vec![Vec::new(); layout.layers];
    for n in &layout.nodes {
        by_layer[n.layer].push(n);
    }
    for column in &mut by_layer {
        column.sort_by_key(|n| n.order);
        assert!(
            column.iter().enumerate().all(|(i, n)| n.order == i),
            "orders are 0..k"
        );
        for pair in column.windows(2) {
            assert!(
                pair[0].y + pair[0].height + config.node_gap <= pair[1].y + 0.05,
                "{:?} and {:?} are too close",
                pair[0],
                pair[1]
            );
        }
    }
    for (i, a) in layout.nodes.iter().enumerate() {
        for b in &layout.nodes[i + 1..] {
            let apart = a.x + a.width <= b.x + EPS
                || b.x + b.width <= a.x + EPS
                || a.y + a.height <= b.y + EPS
                || b.y + b.height <= a.y + EPS;
            assert!(apart, "{a:?} overlaps {b:?}");
        }
    }
}

fn unreduced() -> LayoutConfig {
    let mut config = LayoutConfig::default();
    config.max_sweeps = 0;
    config
}

/// A random DAG: edges only from lower to higher index.
fn dag(max_nodes: usize) -> impl Strategy<Value = (usize, Vec<(usize, usize)>)> {
    (1..=max_nodes).prop_flat_map(|n| {
        let edge = (0..n, 0..n).prop_map(|(a, b)| (a.min(b), a.max(b)));
        (Just(n), prop::collection::vec(edge, 0..n * 2))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_dags_lay_out_cleanly_and_reduction_never_hurts((n, edges) in dag(30)) {
        let config = LayoutConfig::default();
        let reduced = check(n, &edges, &config);
        let initial = check(n, &edges, &unreduced());
        prop_assert!(
            reduced.crossings <= initial.crossings,
            "{} crossings after reduction, {} before", reduced.crossings, initial.crossings
        );
        // Same input, same output.
        prop_assert_eq!(&reduced, &check(n, &edges, &config));
    }

    #[test]
    fn without_dummies_long_edges_are_direct((n, edges) in dag(20)) {
        let mut config = LayoutConfig::default();
        config.max_dummies = 0;
        let layout = check(n, &edges, &config);
        for (laid, &(a, b)) in layout.edges.iter().zip(&edges) {
            if layout.nodes[b].layer - layout.nodes[a].layer > 1 {
                prop_assert_eq!(laid.points.len(), 2);
            }
        }
    }
}

#[test]
fn a_reversed_bipartite_graph_is_untangled() {
    // a_i → b_(4 − i): every pair of edges crosses in input order.
    let edges: Vec<(usize, usize)> = (0..5).map(|i| (i, 9 - i)).collect();
    assert_eq!(check(10, &edges, &unreduced()).crossings, 10);
    let layout = check(10, &edges, &LayoutConfig::default());
    assert_eq!(layout.crossings, 0);
    // With nothing crossing and one neighbour each, every edge is a straight line.
    for e in &layout.edges {
        assert_eq!(e.points.len(), 2);
        assert!((e.points[0].1 - e.points[1].1).abs() < EPS, "{e:?}");
    }
}

#[test]
fn crossings_of_long_edges_are_removed_too() {
    // Layer 0: n0, n1; layer 1: n2, n3; layer 2: n4, n5. n0 → n3, n1 → n2, n2 → n5, n3 → n4,
    // plus long edges n0 → n4 and n1 → n5 through layer 1.
    let edges = [(0, 3), (1, 2), (2, 5), (3, 4), (0, 4), (1, 5)];
    let before = check(6, &edges, &unreduced());
    assert!(before.crossings > 0);
    assert_eq!(check(6, &edges, &LayoutConfig::default()).crossings, 0);
}

#[test]
fn long_edges_pass_straight_through_the_columns_between() {
    // n0 → n1 → n2 → n3 and n0 → n3: the long edge gets a dummy in each of layers 1 and 2.
    let edges = [(0, 1), (1, 2), (2, 3), (0, 3)];
    let layout = check(4, &edges, &LayoutConfig::default());
    assert_eq!(layout.layers, 4);
    let long = &layout.edges[3];
    // Source, the two sides of column 1, of column 2, target.
    assert_eq!(long.points.len(), 6, "{long:?}");
    assert!(
        (long.points[1].1 - long.points[4].1).abs() < EPS,
        "straight: {long:?}"
    );
    assert_eq!(layout.crossings, 0);
}

#[test]
fn cycles_given_to_of_graph_are_broken_not_fatal() {
    let ids = ["a", "b", "c"];
    let widths = [120.0; 3];
    let edges = [(0, 1), (1, 2), (2, 0), (1, 1)];
    let layout = Layout::of_graph(&ids, &widths, &edges, &LayoutConfig::default());
    assert_eq!(layout.nodes.len(), 3);
    assert_eq!(layout.edges.len(), 3, "the self-loop is left out");
    for e in &layout.edges {
        assert!(e.points.len() >= 2);
    }
}

#[test]
fn the_sdlc_parallel_shape_is_drawn_like_a_person_would() {
    let wf = Workflow::compile(sdlc_parallel(), None).unwrap();
    let config = LayoutConfig::default();
    let layout = Layout::of_workflow(&wf, &config);
    let ids: Vec<String> = wf.node_ids().map(str::to_string).collect();
    let index = |id: &str| ids.iter().position(|i| i == id).unwrap();
    let edges: Vec<(usize, usize)> = wf
        .edges()
        .iter()
        .map(|(a, b)| (index(a), index(b)))
        .collect();
    assert_invariants(&layout, &ids, &edges, &config);
    let node = |id: &str| &layout.nodes[index(id)];
    let layer_of = |id: &str| node(id).layer;
    assert_eq!(layout.layers, 5);
    assert_eq!(layer_of("phase_requirement_analysis"), 0);
    assert_eq!(layer_of("phase_design"), 1);
    assert_eq!(layer_of("phase_backend_development"), 2);
    assert_eq!(
        layer_of("phase_frontend_development"),
        2,
        "parallel nodes share a layer"
    );
    assert_eq!(layer_of("phase_testing"), 3);
    assert_eq!(layer_of("phase_review"), 4);
    assert_eq!(layout.crossings, 0);
    // The spine is one straight line, the parallel pair symmetric about it.
    let centre = |id: &str| node(id).y + node(id).height / 2.0;
    let spine = centre("phase_design");
    for id in [
        "phase_requirement_analysis",
        "phase_testing",
        "phase_review",
    ] {
        assert!((centre(id) - spine).abs() < 0.5, "{id} is off the spine");
    }
    let (back, front) = (
        centre("phase_backend_development"),
        centre("phase_frontend_development"),
    );
    assert!(((back + front) / 2.0 - spine).abs() < 0.5);
    assert!((back - front).abs() >= config.node_height + config.node_gap - 0.05);
    // Boxes fit their labels: "phase · script" and the longest name.
    let design = node("phase_design");
    assert!(
        design.width
            >= config.node_width(&["phase_design", &node_meta(NodeType::Phase, Some("script"))])
                - EPS
    );
}

#[test]
fn labels_are_cut_short_and_boxes_fit_them() {
    let config = LayoutConfig::default();
    let long = "a".repeat(100);
    let fitted = config.fit_label(&long);
    assert_eq!(fitted.chars().count(), config.max_label_chars);
    assert!(fitted.ends_with('…'));
    assert_eq!(config.fit_label("short"), "short");
    let accents = "é".repeat(config.max_label_chars + 1);
    assert_eq!(
        config.fit_label(&accents).chars().count(),
        config.max_label_chars
    );
    assert_eq!(config.fit_label(&accents[2..]), accents[2..]);
    assert_eq!(config.node_width(&["x"]), config.min_node_width);
    assert_eq!(
        config.node_width(&[&long]),
        config.node_width(&[&"b".repeat(200)])
    );
    assert_eq!(node_meta(NodeType::HumanReview, None), "human_review");
    assert_eq!(node_meta(NodeType::Phase, Some("sleep")), "phase · sleep");
    // A human-review node has no executor: its box still fits its type.
    let mut def = workflow("w", vec![review("ok")]);
    def.nodes[0].name = Some("n".into());
    let wf = Workflow::compile(def, None).unwrap();
    let layout = Layout::of_workflow(&wf, &config);
    assert_eq!(
        layout.nodes[0].width,
        config.node_width(&["n", "human_review"])
    );
}

/// A layered random DAG: `layers` columns of `width` nodes, each node with up to three
/// dependencies in the few columns before it (a pseudo-random but fixed pattern).
fn big(layers: usize, width: usize) -> (usize, Vec<(usize, usize)>) {
    let n = layers * width;
    let mut edges = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for v in width..n {
        let layer = v / width;
        for _ in 0..1 + next() % 3 {
            let back = 1 + (next() % 3) as usize;
            let from_layer = layer.saturating_sub(back);
            let u = from_layer * width + (next() % width as u64) as usize;
            edges.push((u, v));
        }
    }
    (n, edges)
}

#[test]
fn a_thousand_nodes_lay_out_fast_and_ten_thousand_finish() {
    let config = LayoutConfig::default();
    let ids = |n: usize| (0..n).map(|i| format!("n{i}")).collect::<Vec<_>>();
    let (n, edges) = big(40, 25);
    let start = Instant::now();
    let layout = Layout::of_graph(&ids(n), &vec![120.0; n], &edges, &config);
    let took = start.elapsed();
    assert_eq!(layout.nodes.len(), 1_000);
    // A generous bound that only a quadratic blowup would break, even in a debug build.
    assert!(took < Duration::from_secs(5), "1,000 nodes took {took:?}");
    let unreduced = Layout::of_graph(&ids(n), &vec![120.0; n], &edges, &unreduced());
    assert!(layout.crossings <= unreduced.crossings);

    // Ten thousand nodes: a layered random DAG, a star (one layer 9,999 wide) and a chain whose
    // first node also feeds every other one (50 million dummies without the budget).
    let star: Vec<(usize, usize)> = (1..10_000).map(|i| (0, i)).collect();
    let fan: Vec<(usize, usize)> = (1..10_000)
        .map(|i| (i - 1, i))
        .chain((2..10_000).map(|i| (0, i)))
        .collect();
    for (n, edges) in [big(100, 100), (10_000, star), (10_000, fan)] {
        let start = Instant::now();
        let layout = Layout::of_graph(&ids(n), &vec![120.0; n], &edges, &config);
        let took = start.elapsed();
        assert_eq!(layout.nodes.len(), 10_000);
        let mut distinct = edges.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(layout.edges.len(), distinct.len());
        for &(a, b) in &edges {
            assert!(layout.nodes[a].layer < layout.nodes[b].layer);
        }
        assert!(took < Duration::from_secs(60), "10,000 nodes took {took:?}");
    }
}
