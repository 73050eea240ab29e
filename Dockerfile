# syntax=docker/dockerfile:1
#
# The sidecar's container image: built in a Rust image, shipped in a distroless one (glibc and
# CA certificates, no shell, no package manager), run as an unprivileged user.
#
#   docker build -t stackdriver-prometheus-sidecar \
#     --build-arg SIDECAR_REVISION="$(git rev-parse HEAD)" \
#     --build-arg SIDECAR_BRANCH="$(git rev-parse --abbrev-ref HEAD)" .
#
# The binary is at /bin/stackdriver-prometheus-sidecar, as in the original image, and listens on
# port 9091 (/metrics, /statusz, /-/healthy, /-/ready).

FROM rust:1.95-bookworm AS build
# Shown by prometheus_build_info and /statusz; "unknown" when not given.
ARG SIDECAR_REVISION=unknown
ARG SIDECAR_BRANCH=unknown
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
# No debug info in the image's binary (the release profile keeps some for local profiling).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    SIDECAR_REVISION="${SIDECAR_REVISION}" SIDECAR_BRANCH="${SIDECAR_BRANCH}" \
    CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked -p stackdriver-prometheus-sidecar \
 && install -m 0755 target/release/stackdriver-prometheus-sidecar /stackdriver-prometheus-sidecar

# The build image is Debian 12, so is this one: the binary's glibc matches.
FROM gcr.io/distroless/cc-debian12
COPY --from=build /stackdriver-prometheus-sidecar /bin/stackdriver-prometheus-sidecar
# nobody:nogroup, the user the official Prometheus image runs as, so the sidecar can read the
# WAL Prometheus writes on a shared volume and save its progress file next to it.
USER 65534:65534
EXPOSE 9091
ENTRYPOINT ["/bin/stackdriver-prometheus-sidecar"]
