#!/usr/bin/env bash
# Installs the system packages the build and the tests need and this machine lacks (Debian, as
# root or with sudo): a C toolchain for the bundled librdkafka, OpenSSL's headers and pkg-config
# for its TLS and SASL/SCRAM support (and openssl to make the secure profile's certificates),
# Python 3 for the independent pricing oracle (and its venv module, for the OpenTelemetry SDK
# the OTLP test installs from PyPI: tests/venv.sh otel), and docker-compose to validate
# docker-compose.yml (no Docker engine needed).
# ClickHouse, Java and the Kafka jars are installed by scripts/stack.sh up.
set -euo pipefail

command -v cargo >/dev/null 2>&1 || {
  echo "error: cargo is missing: install Rust from https://rustup.rs, then run this again" >&2
  exit 1
}

need=()
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v make >/dev/null 2>&1 || need+=(make)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
command -v curl >/dev/null 2>&1 || need+=(curl ca-certificates)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)

if [ ${#need[@]} -gt 0 ]; then
  SUDO=()
  [ "$(id -u)" -eq 0 ] || SUDO=(sudo)
  echo "installing Debian packages: ${need[*]}"
  "${SUDO[@]}" apt-get update -q >/dev/null
  # --no-install-recommends: docker-compose would otherwise pull in the Docker engine.
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
