# The `ledger` program in a small runtime image (used by docker-compose.yml for migrate, processor
# and enforcer). Build: docker build -t llm-ledger .   Run: docker run --rm llm-ledger --help

# ---- build ------------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
# librdkafka (built from source by rdkafka-sys) needs cmake, a C/C++ toolchain, OpenSSL, SASL, zlib
# and zstd headers; pkg-config finds them.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      cmake pkg-config build-essential python3 libssl-dev libsasl2-dev zlib1g-dev libzstd-dev libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ledger-cli --bin ledger \
 && install -m 0755 target/release/ledger /usr/local/bin/ledger \
 && strip /usr/local/bin/ledger

# ---- runtime ----------------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates curl libssl3 libsasl2-2 zlib1g libzstd1 libcurl4 tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin ledger
COPY --from=builder /usr/local/bin/ledger /usr/local/bin/ledger
# Fail the build, not the container, if a shared library is missing.
RUN ! ldd /usr/local/bin/ledger | grep 'not found' && ledger --version
WORKDIR /app
# Relative paths in the default configuration (catalog/sources/litellm-1.110.2-..., schemas/) resolve here.
COPY catalog/ /app/catalog/
COPY schemas/ /app/schemas/
USER ledger
ENV RUST_LOG=info
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/ledger"]
CMD ["--help"]
