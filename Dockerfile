# syntax=docker/dockerfile:1
# Herald: the one `herald` binary on a distroless base.
#   docker build -t herald --build-arg HERALD_COMMIT="$(git rev-parse --short HEAD)" .
#   docker run --rm herald --help
# The subcommand (ingest, router, sender, standalone, validate DIR) is the
# container's command; every flag can also be set by its HERALD_* variable.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# .git is not copied: the commit herald_build_info names comes from here.
ARG HERALD_COMMIT=unknown
ENV HERALD_COMMIT=${HERALD_COMMIT}
# The caches keep the registry and build artifacts between builds (BuildKit);
# the binary is copied out of the cached target folder in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p herald \
    && cp target/release/herald /herald

# glibc and CA certificates, no shell; runs as nonroot (uid 65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /herald /herald
# Numeric, so that Kubernetes can check runAsNonRoot.
USER 65532:65532
# 9090 Flux events (HTTP), 9091 gRPC, 8080 admin (/healthz, /readyz, /metrics).
EXPOSE 9090 9091 8080
ENTRYPOINT ["/herald"]
