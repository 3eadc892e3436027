#!/usr/bin/env bash
# End-to-end throughput of the ledger on this machine, with the two raw baselines measured on
# the same rows in the same run (issue "Stream processor", benchmark):
#   1. produce N synthetic events into a fresh topic (Kafka, acks=all);
#   2. baseline A: consume that topic alone (librdkafka via `ledger bench-consume`);
#   3. the pipeline: `ledger process --until-drained` from the first poll to the last committed
#      ledger row (decode, validate, dedupe, price, insert, spend updates), with its peak RSS;
#   4. baseline B: insert the same ledger rows alone (clickhouse-client, RowBinary, one insert):
#      B1 into a bare copy of usage_ledger, B2 into a freshly migrated ledger whose materialized
#      views maintain the minute/hour/day rollups as they do for the pipeline.
# Usage: benches/pipeline.sh [EVENTS] [--secure]   (default 1,000,000). Needs `scripts/stack.sh up`.
#   --secure: then runs the pipeline again, on fresh topics and a fresh database, over the secure
#   profile's listeners (Kafka SASL_SSL with SCRAM-SHA-512, ClickHouse HTTPS with a password;
#   `scripts/stack.sh up --secure`), and prints its rate as a share of the plaintext one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

N=${1:-1000000}
SECURE=${2:-}
RUN="bench$(date +%s)"
DB="ledger_${RUN}"
export LEDGER__TOPICS__USAGE="${RUN}.llm.usage.v1"
export LEDGER__TOPICS__DEAD_LETTER="${RUN}.llm.usage.dlq.v1"
export LEDGER__TOPICS__SPEND="${RUN}.llm.spend.v1"
export LEDGER__TOPICS__SIGNALS="${RUN}.llm.budget-signals.v1"
export LEDGER__CLICKHOUSE__DATABASE="$DB"
export LEDGER__PROCESSOR__GROUP_ID="${RUN}-processor"
export RUST_LOG=warn

cargo build --release --quiet -p ledger-cli
L=target/release/ledger
CH="clickhouse-client --port ${LEDGER_CLICKHOUSE_TCP_PORT:-9000}"

secs() { date +%s.%N; }
STATE=${LEDGER_STATE_DIR:-.state}
# CPU seconds (user + system) a server has used so far, from /proc/PID/stat.
cpu_of() {
    local pid
    pid=$(cat "$STATE/$1/$1.pid" 2>/dev/null) || { echo 0; return; }
    awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$pid/stat" 2>/dev/null || echo 0
}
rate() { python3 -c "import sys; n,t=float(sys.argv[1]),float(sys.argv[2]); print(f'{n/t:,.0f} events/s ({t:.2f} s)')" "$1" "$2"; }

"$L" migrate >/dev/null

t0=$(secs)
"$L" produce --synthetic "$N" --quiet --seed 7 2>/dev/null
t1=$(secs)
produce_s=$(python3 -c "print($t1-$t0)")

t0=$(secs)
"$L" bench-consume --topic "$LEDGER__TOPICS__USAGE" --expect "$N" >/dev/null
t1=$(secs)
consume_s=$(python3 -c "print($t1-$t0)")

kafka0=$(cpu_of kafka); ch0=$(cpu_of clickhouse)
t0=$(secs)
/usr/bin/time -f "%M %U %S" -o /tmp/"$RUN".rss "$L" process --until-drained 2>/dev/null
t1=$(secs)
kafka1=$(cpu_of kafka); ch1=$(cpu_of clickhouse)
process_s=$(python3 -c "print($t1-$t0)")
read -r rss_kib proc_user proc_sys < <(tail -1 /tmp/"$RUN".rss)

rows=$($CH -q "SELECT count() FROM $DB.usage_ledger")
$CH -q "SELECT * FROM $DB.usage_ledger FORMAT RowBinary" > /tmp/"$RUN".rowbinary
# B1: the rows into a bare copy of the table (no rollups).
$CH -q "CREATE TABLE $DB.insert_baseline AS $DB.usage_ledger"
b1ch0=$(cpu_of clickhouse)
t0=$(secs)
$CH -q "INSERT INTO $DB.insert_baseline FORMAT RowBinary" < /tmp/"$RUN".rowbinary
t1=$(secs)
b1ch1=$(cpu_of clickhouse)
insert_s=$(python3 -c "print($t1-$t0)")
# B2: the rows into a freshly migrated ledger, whose materialized views maintain the three
# rollups on every insert, as they do for the pipeline.
LEDGER__CLICKHOUSE__DATABASE="${DB}_b2" "$L" migrate >/dev/null
b2ch0=$(cpu_of clickhouse)
t0=$(secs)
$CH -q "INSERT INTO ${DB}_b2.usage_ledger FORMAT RowBinary" < /tmp/"$RUN".rowbinary
t1=$(secs)
b2ch1=$(cpu_of clickhouse)
insert_mv_s=$(python3 -c "print($t1-$t0)")
rm -f /tmp/"$RUN".rowbinary /tmp/"$RUN".rss

echo
echo "events: $N produced, $rows ledger rows"
echo "produce (acks=all):                    $(rate "$N" "$produce_s")"
echo "baseline A, consume only:              $(rate "$N" "$consume_s")"
echo "baseline B1, insert into a bare table: $(rate "$rows" "$insert_s")"
echo "baseline B2, insert incl. rollups:     $(rate "$rows" "$insert_mv_s")"
echo "pipeline, produce->ledger:             $(rate "$N" "$process_s")  peak RSS $((rss_kib / 1024)) MiB"
python3 - "$N" "$consume_s" "$rows" "$insert_s" "$insert_mv_s" "$process_s" <<'PY'
import sys
n, c, rows, i, imv, p = map(float, sys.argv[1:7])
pipeline = n / p
print(f"pipeline / slower of A and B1:         {pipeline / min(n / c, rows / i):.2f}")
print(f"pipeline / slower of A and B2:         {pipeline / min(n / c, rows / imv):.2f}")
PY
python3 - "$process_s" "$proc_user" "$proc_sys" "$kafka0" "$kafka1" "$ch0" "$ch1" "$N" <<'PY'
import sys
wall, pu, ps, k0, k1, c0, c1, n = map(float, sys.argv[1:9])
cores = 2
print(f"CPU during the pipeline ({wall:.2f} s wall, {wall * cores:.1f} core-s on {cores} cores):")
for name, cpu in (("processor", pu + ps), ("kafka broker", k1 - k0), ("clickhouse", c1 - c0)):
    print(f"  {name:<13} {cpu:7.2f} s  ({cpu / wall * 100:5.1f}% of a core, {cpu / n * 1e6:5.2f} us/event)")
PY
python3 - "$b1ch0" "$b1ch1" "$b2ch0" "$b2ch1" "$rows" <<'PY'
import sys
b10, b11, b20, b21, rows = map(float, sys.argv[1:6])
print("ClickHouse CPU in the insert baselines (one insert of all rows; merges may continue after it):")
print(f"  B1 {b11 - b10:7.2f} s  ({(b11 - b10) / rows * 1e6:5.2f} us/row)")
print(f"  B2 {b21 - b20:7.2f} s  ({(b21 - b20) / rows * 1e6:5.2f} us/row)")
PY
$CH -q "DROP DATABASE $DB"
$CH -q "DROP DATABASE ${DB}_b2"
"$L" bench-delete-topics --prefix "${RUN}." >/dev/null

[ "$SECURE" = "--secure" ] || exit 0
SECURE_CONFIG="$STATE/secure/ledger.toml"
[ -f "$SECURE_CONFIG" ] || { echo "no $SECURE_CONFIG: start the stack with scripts/stack.sh up --secure" >&2; exit 1; }
RUN="${RUN}s"
export LEDGER__TOPICS__USAGE="${RUN}.llm.usage.v1" LEDGER__TOPICS__DEAD_LETTER="${RUN}.llm.usage.dlq.v1"
export LEDGER__TOPICS__SPEND="${RUN}.llm.spend.v1" LEDGER__TOPICS__SIGNALS="${RUN}.llm.budget-signals.v1"
export LEDGER__CLICKHOUSE__DATABASE="ledger_${RUN}" LEDGER__PROCESSOR__GROUP_ID="${RUN}-processor"
"$L" migrate --config "$SECURE_CONFIG" >/dev/null
"$L" produce --config "$SECURE_CONFIG" --synthetic "$N" --quiet --seed 7 2>/dev/null
t0=$(secs)
"$L" process --config "$SECURE_CONFIG" --until-drained 2>/dev/null
t1=$(secs)
secure_s=$(python3 -c "print($t1-$t0)")
echo "pipeline over SASL_SSL + HTTPS:        $(rate "$N" "$secure_s")"
python3 -c "print(f'secure / plaintext pipeline:           {float($process_s) / float($secure_s):.2f}')"
$CH -q "DROP DATABASE ledger_${RUN}"
"$L" bench-delete-topics --prefix "${RUN}." >/dev/null
