#!/usr/bin/env bash
# The whole test suite: installs what is missing, runs the static checks (scripts/lint.sh: fmt,
# clippy and rustdoc with warnings denied, the repository's shape), starts the real Kafka +
# ClickHouse on loopback with the secure listeners and the schema registry (scripts/stack.sh),
# then runs every tier: unit, property, integration and end-to-end tests (`cargo test
# --workspace`). The stack is left running for re-runs; `scripts/stack.sh down` stops it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-deps.sh
scripts/lint.sh
scripts/stack.sh up --secure --registry
cargo build --quiet --workspace --all-targets
cargo test --workspace --no-fail-fast "$@"
