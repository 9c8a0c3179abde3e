# syntax=docker/dockerfile:1
# maestro-server: a release build on Debian 12, run from a distroless non-root image.
#
#   docker build -t maestro-server:0.1.0 .
#   docker run --rm -p 8003:8003 -e DATABASE_URL=sqlite:///tmp/maestro.db maestro-server:0.1.0
#
# Stages: `chef` (cargo-chef, from crates.io) → `planner` (the dependency recipe) → `builder`
# (dependencies built in their own layer, cached until Cargo.toml/Cargo.lock change; then the
# workspace) → `runtime`. The toolchain must be at least the workspace's rust-version (1.88).

ARG RUST_VERSION=1.95
ARG CARGO_CHEF_VERSION=0.1.78

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
ARG CARGO_CHEF_VERSION
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# Dependencies only (libsqlite3-sys bundled and mimalloc build their C with the image's gcc).
RUN cargo chef cook --release --recipe-path recipe.json -p maestro-server --bin maestro-server
COPY . .
RUN cargo build --release --locked -p maestro-server --bin maestro-server \
    && install -D -m 0755 target/release/maestro-server /out/maestro-server \
    # Smoke test: the binary starts and knows its version.
    && /out/maestro-server --version

# glibc, libgcc and CA certificates, no shell; runs as uid/gid 65532 (`nonroot`).
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=builder /out/maestro-server /maestro-server
USER 65532:65532
# A relative SQLite path (the default `sqlite://maestro.db`) lands in /tmp, which is writable
# even under a read-only root filesystem when an emptyDir is mounted there (k8s/base).
WORKDIR /tmp
ENV MAESTRO_BIND=0.0.0.0:8003 \
    MAESTRO_LOG_FORMAT=json \
    RUST_LOG=info
EXPOSE 8003
ENTRYPOINT ["/maestro-server"]
CMD ["serve"]
