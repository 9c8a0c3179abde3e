#!/usr/bin/env bash
# Runs the in-memory engine benchmark (`maestro-bench core`) and the peer engine (dagrs 0.9,
# ../shared/bench/dagrs-bench) side by side, on every shape of ../shared/bench/SHAPES.md, and
# prints one JSON object per line. Absolute times drift on shared machines: compare within a run.
#
#   scripts/bench-core.sh [REPEATS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repeats="${1:-9}"

cargo build --quiet --profile perf -p maestro-bench
cargo build --quiet --release --locked \
  --manifest-path ../shared/bench/dagrs-bench/Cargo.toml --target-dir target/peer

for nodes in 10000 100000; do
  for shape in chain fanout layered; do
    target/perf/maestro-bench core --shape "$shape" --nodes "$nodes" --repeats "$repeats"
    target/peer/release/dagrs-bench "$shape" "$nodes" "$repeats"
  done
done

# Peak memory of a single run (the process's high-water mark, as /usr/bin/time -v reports it).
for shape in chain fanout layered; do
  for runtime in multi current; do
    target/perf/maestro-bench core --shape "$shape" --nodes 100000 --repeats 1 --runtime "$runtime"
  done
done

# Validation and compilation of a 100,000-node definition.
for shape in chain fanout layered; do
  target/perf/maestro-bench validate --shape "$shape" --nodes 100000 --repeats "$repeats"
done
