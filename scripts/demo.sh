#!/usr/bin/env bash
# The main job, end to end: install and start Kafka + ClickHouse (if needed), build `ledger`,
# migrate, produce synthetic usage, price it into the ledger until drained, print the report,
# enforce the demo budgets (config/budgets.demo.toml) and show their state, run the month's
# chargeback and reconcile the ledger with its rollups and Kafka offsets.
# Safe to run again: it reuses the running stack and adds another batch of events.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

EVENTS="${LEDGER_DEMO_EVENTS:-20000}"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "starting the local stack (Kafka + ClickHouse)"
scripts/install-deps.sh
scripts/stack.sh up

step "building ledger (release)"
cargo build --release --quiet -p ledger-cli
LEDGER=target/release/ledger

step "migrating ClickHouse"
"$LEDGER" migrate

step "producing $EVENTS synthetic usage events (2% resent duplicates, 0.5% invalid)"
"$LEDGER" produce --synthetic "$EVENTS" --duplicates 2 --invalid 0.5 --seed "$(date +%s)"

step "pricing them into the ledger (until drained)"
"$LEDGER" process --until-drained

step "spend by tenant and model"
"$LEDGER" report spend

step "enforcing the demo budgets (config/budgets.demo.toml)"
scripts/demo/enforce-step.sh "$LEDGER" config/budgets.demo.toml
"$LEDGER" budgets status --budgets config/budgets.demo.toml

step "chargeback for $(date -u +%Y-%m) by team"
"$LEDGER" report chargeback --month "$(date -u +%Y-%m)" --by team

step "reconciling the ledger with its rollups and Kafka offsets"
"$LEDGER" reconcile
