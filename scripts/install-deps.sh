#!/usr/bin/env bash
# Installs the system packages the project needs and this machine lacks (Debian/Ubuntu, as root
# or with sudo): ClickHouse server and client, docker-compose (to validate docker-compose.yml),
# and the build tools librdkafka needs. Rust (cargo), Java 17 and Maven are expected already.
set -euo pipefail

need=()
[ -x /usr/sbin/clickhouse-server ] || need+=(clickhouse-server clickhouse-client)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v make >/dev/null 2>&1 || need+=(make)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v python3 >/dev/null 2>&1 || need+=(python3)

missing_tools=()
command -v cargo >/dev/null 2>&1 || missing_tools+=("cargo (install Rust from https://rustup.rs)")
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
if [ ${#missing_tools[@]} -gt 0 ]; then
  echo "error: missing: ${missing_tools[*]}" >&2
  exit 1
fi

if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing Debian packages: ${need[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi
