//! The benchmark shapes of `../shared/bench/SHAPES.md`, edge for edge.

/// A benchmark graph shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `n{i-1} -> n{i}`.
    Chain,
    /// `n0 -> n{i}` and `n{i} -> n{N-1}` for i in 1..N-1.
    Fanout,
    /// Layers of 10; node i >= 10 depends on two nodes of the previous layer.
    Layered,
}

impl Shape {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Chain => "chain",
            Self::Fanout => "fanout",
            Self::Layered => "layered",
        }
    }
}

/// Edges `(from, to)`: `to` depends on `from`. Duplicates collapse.
pub(crate) fn edges(shape: Shape, n: usize) -> Vec<(usize, usize)> {
    let mut e = match shape {
        Shape::Chain => (1..n).map(|i| (i - 1, i)).collect(),
        Shape::Fanout if n >= 2 => {
            let mut e: Vec<_> = (1..n - 1).map(|i| (0, i)).collect();
            e.extend((1..n - 1).map(|i| (i, n - 1)));
            e
        }
        Shape::Fanout => Vec::new(),
        Shape::Layered => {
            const W: usize = 10;
            let mut e = Vec::with_capacity(2 * n);
            for i in W..n {
                let s = (i / W - 1) * W;
                e.push((s + (7 * i) % W, i));
                e.push((s + (3 * i + 1) % W, i));
            }
            e
        }
    };
    e.sort_unstable();
    e.dedup();
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_match_the_spec() {
        assert_eq!(edges(Shape::Chain, 4), vec![(0, 1), (1, 2), (2, 3)]);
        assert_eq!(
            edges(Shape::Fanout, 4),
            vec![(0, 1), (0, 2), (1, 3), (2, 3)]
        );
        let layered = edges(Shape::Layered, 30);
        // Node 10: s = 0, deps n{(70)%10}=n0 and n{(31)%10}=n1.
        assert!(layered.contains(&(0, 10)) && layered.contains(&(1, 10)));
        // Node 25: s = 10, deps n{10 + 175%10}=n15 and n{10 + 76%10}=n16.
        assert!(layered.contains(&(15, 25)) && layered.contains(&(16, 25)));
        assert!(layered.iter().all(|&(a, b)| a / 10 + 1 == b / 10));
    }
}
