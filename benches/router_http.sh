#!/usr/bin/env bash
# Decide latency of the HTTP sidecar (issue 25): a release `ledger router serve` and `ledger
# enforce` on their own topics, one tenant under a quota-lease budget, loaded open-loop with
# POST /v1/decide by crates/ledger-ingest/examples/decide_bench.rs. Goal: p99 at 5,000/s.
# Needs the stack (scripts/stack.sh up).
#
#   benches/router_http.sh [RATE] [SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
RATE="${1:-5000}"
SECONDS_TO_RUN="${2:-30}"
CONNECTIONS="${3:-16}"
PORT="${ROUTER_BENCH_PORT:-18091}"
PREFIX="bench.router.$(date +%s)."

cargo build -q --release -p ledger-cli
cargo build -q --release -p ledger-ingest --example decide_bench
T="${CARGO_TARGET_DIR:-target}/release"
WORK="$(mktemp -d)"
KEY="$("$T"/ledger ingest keys add --tenant acme --name bench --api-keys "$WORK/keys.toml")"
# Large enough that the run never exhausts it: every decision is admitted under a lease.
cat > "$WORK/budgets.toml" <<'TOML'
[[budget]]
name = "acme-hard-cap"
scope = { tenant_id = "acme" }
period = "day"
limit_usd = "1000000.00"
enforcement = "lease"
[[budget.threshold]]
at_percent = "100"
action = "block"
TOML

export LEDGER__TOPICS__USAGE="${PREFIX}llm.usage.v1" LEDGER__TOPICS__DEAD_LETTER="${PREFIX}llm.usage.dlq.v1"
export LEDGER__TOPICS__SPEND="${PREFIX}llm.spend.v1" LEDGER__TOPICS__SIGNALS="${PREFIX}llm.budget-signals.v1"
export LEDGER__TOPICS__LEASE_REQUESTS="${PREFIX}llm.lease-requests.v1" LEDGER__TOPICS__LEASE_GRANTS="${PREFIX}llm.lease-grants.v1"
export LEDGER__ENFORCER__GROUP_ID="${PREFIX}enforcer"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$WORK"
      "$T"/ledger bench-delete-topics --prefix "$PREFIX" >/dev/null 2>&1 || true' EXIT
RUST_LOG=info "$T"/ledger enforce --budgets "$WORK/budgets.toml" >"$WORK/enforce.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
  grep -q "following it" "$WORK/enforce.log" 2>/dev/null && break
  sleep 0.2
done
RUST_LOG=warn "$T"/ledger router serve --listen "127.0.0.1:${PORT}" --api-keys "$WORK/keys.toml" &
PIDS+=($!)
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:${PORT}/healthz" >/dev/null && break
  sleep 0.2
done
# Until the first lease is granted, decisions are throttles.
for _ in $(seq 100); do
  curl -sf -H "Authorization: Bearer $KEY" -d '{"model":"gpt-4o","input_tokens":1200,"max_tokens":500}' \
    "http://127.0.0.1:${PORT}/v1/decide" | grep -q '"allow"' && break
  sleep 0.2
done
"$T"/examples/decide_bench --url "http://127.0.0.1:${PORT}/v1/decide" --key "$KEY" \
  --rate "$RATE" --connections "$CONNECTIONS" --seconds "$SECONDS_TO_RUN"
curl -sf "http://127.0.0.1:${PORT}/metrics" | grep -E '^ledger_router_(decisions_total|decide_seconds_(bucket|count)|lease_(reservations|refused_empty|requests|grants|timeouts)_total)' || true
