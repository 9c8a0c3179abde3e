#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS_PER_TARGET seconds each (default 30), one
# after the other, starting from the committed seeds; exits non-zero on the first crash, hang
# or out-of-memory, leaving the input in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]
#
# Toolchain: cargo-fuzz passes nightly-only flags to rustc (`-Zsanitizer=address`), and this
# project builds with the stable toolchain only. RUSTC_BOOTSTRAP=1 lets stable rustc accept
# them; the stable rust-std component already ships the AddressSanitizer runtime, so the
# targets are built with ASan (which matters for the `unsafe` in the dependencies, e.g. the
# YAML parser) plus coverage instrumentation and debug assertions. The flag is set for the
# fuzz build only, which has its own workspace and target directory (fuzz/target); the main
# workspace never sees it. MAESTRO_FUZZ_SANITIZER=none builds without ASan (no -Z flag at all,
# about twice as fast, still catches panics, hangs and failed assertions).
#
# The committed seeds in fuzz/seeds/<target>/ are passed to libFuzzer as a second, read-only
# corpus directory: what the fuzzer finds goes to fuzz/corpus/<target>/ (git-ignored, kept
# between local runs so they build on each other), never into the seeds.
#
# Other settings (environment): MAESTRO_FUZZ_TARGETS="definition http" picks targets;
# MAESTRO_FUZZ_PANICS=abort turns panics that Maestro itself contains (the CEL parser's, a
# handler's 500) into crashes too (see fuzz/fuzz_targets/common.rs).
set -euo pipefail

seconds="${1:-30}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: $0 [SECONDS_PER_TARGET]" >&2
    exit 64
fi

cd "$(dirname "$0")/../fuzz"

CARGO_FUZZ_VERSION=0.13.1
if [ "$(cargo fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

sanitizer="${MAESTRO_FUZZ_SANITIZER:-address}"
targets="${MAESTRO_FUZZ_TARGETS:-definition condition http}"
export RUSTC_BOOTSTRAP=1

echo "fuzz: building (sanitizer: $sanitizer)"
cargo fuzz build --sanitizer "$sanitizer"

for target in $targets; do
    mkdir -p "corpus/$target"
    echo "fuzz: $target for ${seconds}s"
    # -timeout: one input taking longer is a hang. -rss_limit_mb: ASan's quarantine keeps up
    # to 256 MiB of freed memory, so the default 2 GiB limit is tight for the slower targets.
    if ! cargo fuzz run --sanitizer "$sanitizer" "$target" "corpus/$target" "seeds/$target" -- \
        -dict="dict/$target.dict" \
        -max_total_time="$seconds" \
        -timeout=10 \
        -rss_limit_mb=4096 \
        -print_final_stats=1; then
        echo "fuzz: $target FAILED; the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
echo "fuzz: no crash in $targets (${seconds}s each)"
