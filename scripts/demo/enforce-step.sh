#!/usr/bin/env bash
# The budget step of scripts/demo.sh, on its own so the test suite runs it too
# (tests/tests/demo_steps.rs): start `ledger enforce`, let it read the spend topic to its end and
# publish the signals whose state changed, stop it with SIGTERM, and print how many it published.
# Zero is a normal answer: run again with no new spend, the enforcer has nothing to publish.
#
#   scripts/demo/enforce-step.sh LEDGER_BIN BUDGETS_FILE [more `ledger enforce` arguments]
#
# Settings come from those arguments (e.g. --config FILE) and the LEDGER__* environment, as for
# any `ledger` command. LEDGER_DEMO_ENFORCE_TIMEOUT [60]: seconds the catch-up may take.
# Prints "the enforcer published N signal(s) this run"; exits 0 when the enforcer caught up and
# stopped cleanly, 1 (with the enforcer's log) when not, 2 on wrong arguments.
set -euo pipefail

if (($# < 2)); then
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
    exit 2
fi
ledger=$1 budgets=$2
shift 2
timeout_s=${LEDGER_DEMO_ENFORCE_TIMEOUT:-60}
if [[ ! $timeout_s =~ ^[0-9]+$ ]]; then
    echo "enforce-step: error: LEDGER_DEMO_ENFORCE_TIMEOUT must be a number of seconds, got '$timeout_s'" >&2
    exit 2
fi

log=$(mktemp "${TMPDIR:-/tmp}/enforce-step.XXXXXX")
enforcer=
# Stops an enforcer still running (the step failed or was interrupted): SIGTERM, then SIGKILL
# after 10 s (one still connecting to Kafka does not stop on SIGTERM).
cleanup() {
    if [[ -n $enforcer ]]; then
        kill -TERM "$enforcer" 2>/dev/null || true
        local i
        for ((i = 0; i < 100; i++)); do
            kill -0 "$enforcer" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$enforcer" 2>/dev/null || true
        wait "$enforcer" 2>/dev/null || true
    fi
    rm -f "$log"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
    echo "enforce-step: error: $*" >&2
    echo "----- the enforcer's log" >&2
    cat "$log" >&2
    exit 1
}

# The catch-up and the count are read from the enforcer's info lines: keep them whatever RUST_LOG
# says (the test harness sets RUST_LOG=warn).
filter=info
[[ -z ${RUST_LOG:-} ]] || filter="$RUST_LOG,ledger_enforcer::runner=info"
RUST_LOG=$filter "$ledger" enforce --budgets "$budgets" "$@" >>"$log" 2>&1 &
enforcer=$!

deadline=$((SECONDS + timeout_s))
until grep -q "following it" "$log"; do
    if ! kill -0 "$enforcer" 2>/dev/null; then
        rc=0
        wait "$enforcer" || rc=$?
        enforcer=
        fail "ledger enforce exited (status $rc) before it had read the spend topic"
    fi
    ((SECONDS < deadline)) || fail "ledger enforce had not read the spend topic after ${timeout_s}s"
    sleep 0.1
done
# Caught up, it evaluates every budget once and publishes what changed; it finishes that
# publication (Kafka acknowledged each signal) before it looks at SIGTERM.
sleep 1
kill -TERM "$enforcer" 2>/dev/null || true
rc=0
wait "$enforcer" || rc=$?
enforcer=
((rc == 0)) || fail "ledger enforce exited with status $rc on SIGTERM"

# Not `grep -c`: it exits 1 when it counts 0, which set -e and pipefail turned into a failed demo
# on every run that published nothing new (the third run in a row, typically).
published=$(awk '/published a budget signal/ { n++ } END { print n + 0 }' "$log")
echo "the enforcer published $published signal(s) this run"
