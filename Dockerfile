# syntax=docker/dockerfile:1
#
# otel-injector on a distroless, non-root base, for users who build with Docker:
#   docker build -t ghcr.io/otel-injector/otel-injector:0.1.0 .
#
# The binary is the x86_64-unknown-linux-gnu release build (`cargo build
# --release`: fat LTO, see Cargo.toml), dynamically linked against glibc 2.36
# (Debian 12, the builder below). gcr.io/distroless/cc-debian12 carries
# exactly the libraries it loads (libc, libm, libgcc_s, the loader) and the
# `nonroot` user, uid 65532. That is the same linkage as the image CI builds
# without Docker (tests/images/webhook: the test build of the same target,
# with the shared libraries `ldd` names copied beside it). This Dockerfile
# itself is not built in CI: the test machines have no Docker engine.
# Produces a linux/amd64 image when built on amd64.

FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked --bin otel-injector \
    && cp target/release/otel-injector /otel-injector

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /otel-injector /otel-injector
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/otel-injector"]
CMD ["serve"]
