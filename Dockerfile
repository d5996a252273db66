# syntax=docker/dockerfile:1
#
# Static (musl) build of otel-injector on a distroless, non-root base.
#   docker build -t ghcr.io/otel-injector/otel-injector:0.1.0 .
# Produces a linux/amd64 image (the target triple is fixed below).

FROM rust:1.95-bookworm AS builder
ARG TARGET=x86_64-unknown-linux-musl
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add "${TARGET}"
# ring compiles C and assembly: use the musl toolchain for it.
ENV CC_x86_64_unknown_linux_musl=musl-gcc
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked --target "${TARGET}" --bin otel-injector \
    && cp "target/${TARGET}/release/otel-injector" /otel-injector

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=builder /otel-injector /otel-injector
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/otel-injector"]
CMD ["serve"]
