#!/usr/bin/env bash
# HTTP ingest throughput: a release `ledger ingest` on its own topics, loaded with batches of
# 1,000 events over several connections by crates/ledger-ingest/examples/ingest_bench.rs.
# Goal (issue 6): >= 50,000 events/s. Needs the stack (scripts/stack.sh up).
#
#   benches/ingest.sh [SECONDS] [CONNECTIONS] [BATCH]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-20}"
CONNECTIONS="${2:-8}"
BATCH="${3:-1000}"
PORT="${INGEST_BENCH_PORT:-18090}"
PREFIX="bench.ingest.$(date +%s)."

cargo build -q --release -p ledger-cli -p ledger-ingest --example ingest_bench
KEYS="$(mktemp -u --suffix=.toml)"
KEY="$(target/release/ledger ingest keys add --tenant acme --name bench --api-keys "$KEYS")"

export LEDGER__TOPICS__USAGE="${PREFIX}llm.usage.v1" LEDGER__TOPICS__DEAD_LETTER="${PREFIX}llm.usage.dlq.v1"
export LEDGER__TOPICS__SPEND="${PREFIX}llm.spend.v1" LEDGER__TOPICS__SIGNALS="${PREFIX}llm.budget-signals.v1"
RUST_LOG=warn target/release/ledger ingest --listen "127.0.0.1:${PORT}" --api-keys "$KEYS" &
INGEST_PID=$!
trap 'kill "$INGEST_PID" 2>/dev/null; wait "$INGEST_PID" 2>/dev/null; rm -f "$KEYS" "$KEYS.lock"
      target/release/ledger bench-delete-topics --prefix "$PREFIX" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:${PORT}/healthz" >/dev/null && break
  sleep 0.2
done
target/release/examples/ingest_bench --url "http://127.0.0.1:${PORT}/v1/usage" --key "$KEY" --tenant acme \
  --connections "$CONNECTIONS" --batch "$BATCH" --seconds "$SECONDS_TO_RUN"
