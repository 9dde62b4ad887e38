# pipectl container image. Build: docker build -t pipectl .
# Stage 1 builds the release binary with the Rust image; stage 2 runs it from a slim Debian
# with only the binary, CA certificates and the example pipelines, as an unprivileged user.
# Run: docker run --rm -v "$PWD:/work" pipectl run configs/quickstart.json
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake g++ make pkg-config \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked -p pipectl \
    && install -m 0755 target/release/pipectl /usr/local/bin/pipectl

FROM debian:bookworm-slim
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /work --create-home pipectl
COPY --from=build /usr/local/bin/pipectl /usr/local/bin/pipectl
COPY --chown=pipectl configs /opt/pipectl/configs
USER 10001
WORKDIR /work
ENTRYPOINT ["pipectl"]
CMD ["--help"]
