#!/usr/bin/env bash
# Sustained end-to-end throughput (issue "Stream processor", benchmark): `ledger process` runs as
# a service while `ledger produce --rate R --duration D` drives paced load into a fresh topic.
# Every 10 s it prints the ledger rows written in the interval, the consumer lag (from the
# processor's /metrics) and the processor's resident memory; at the end the sustained rate
# (rows committed during the produce window / window), the catch-up time after it, the peak RSS
# (sampled every second), the CPU each process used in the window, and the raw baselines on the
# same rows: consume only, and ClickHouse insert only (B1 a bare table, B2 with the rollups), the
# inserts once the run's own ledger is dropped and the server has finished merging.
# Usage: benches/sustained.sh [RATE] [DURATION]   (default 100000 5m). Needs `scripts/stack.sh up`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

RATE=${1:-100000}
DURATION=${2:-5m}
RUN="sustained$(date +%s)"
DB="ledger_${RUN}"
export LEDGER__TOPICS__USAGE="${RUN}.llm.usage.v1"
export LEDGER__TOPICS__DEAD_LETTER="${RUN}.llm.usage.dlq.v1"
export LEDGER__TOPICS__SPEND="${RUN}.llm.spend.v1"
export LEDGER__TOPICS__SIGNALS="${RUN}.llm.budget-signals.v1"
export LEDGER__CLICKHOUSE__DATABASE="$DB"
export LEDGER__PROCESSOR__GROUP_ID="${RUN}-processor"
# The throughput setting: about one insert a second, as ClickHouse advises (the default, 200 ms,
# keeps budget signals within a second at about 20% more ClickHouse CPU per row).
export LEDGER__PROCESSOR__BATCH__MAX_DELAY_MS="${LEDGER__PROCESSOR__BATCH__MAX_DELAY_MS:-1000}"
export RUST_LOG=warn

cargo build --release --quiet -p ledger-cli
L=target/release/ledger
CH="clickhouse-client --port ${LEDGER_CLICKHOUSE_TCP_PORT:-9000}"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

secs() { date +%s.%N; }
rows() { $CH -q "SELECT count() FROM $DB.usage_ledger" 2>/dev/null || echo 0; }
lag() { curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^ledger_consumer_lag\{/ {s+=$2} END {print s+0}'; }
rss_mib() { awk '/VmRSS/ {print int($2/1024)}' "/proc/$1/status" 2>/dev/null || echo 0; }
STATE=${LEDGER_STATE_DIR:-.state}
# CPU seconds (user + system) a process has used so far, from /proc/PID/stat.
cpu_pid() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0; }
cpu_server() { local pid; pid=$(cat "$STATE/$1/$1.pid" 2>/dev/null) && cpu_pid "$pid" || echo 0; }

"$L" migrate >/dev/null
# The processor creates the topics; start it first so the producer never waits for them.
"$L" process --metrics "127.0.0.1:$PORT" 2>/tmp/"$RUN".process.log &
PROC=$!
trap 'kill $PROC 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done

echo "rate $RATE events/s for $DURATION; processor pid $PROC, metrics :$PORT"
t0=$(secs)
"$L" produce --rate "$RATE" --duration "$DURATION" --quiet --seed 11 >/tmp/"$RUN".produce.log 2>&1 &
PRODUCER=$!
producer_cpu=0
cpu0="$(cpu_pid $PROC) $(cpu_server kafka) $(cpu_server clickhouse)"
peak=0
last_rows=0
last_t=$t0
printf "%8s %12s %14s %10s %8s\n" "t (s)" "ledger rows" "rows/s (10 s)" "lag" "RSS MiB"
# Polled every second (so the end of the window is seen within a second), printed every 10 s.
tick=0
while kill -0 "$PRODUCER" 2>/dev/null; do
  sleep 1
  tick=$((tick + 1))
  m=$(rss_mib $PROC); (( m > peak )) && peak=$m
  c=$(cpu_pid $PRODUCER); [[ "$c" != 0 ]] && producer_cpu=$c
  (( tick % 10 == 0 )) || continue
  now=$(secs); r=$(rows); l=$(lag)
  python3 -c "import sys; t0,now,lt,r,lr=map(float,sys.argv[1:6]); print(f'{now-t0:8.0f} {int(r):12,d} {(r-lr)/(now-lt):14,.0f} {sys.argv[6]:>10} {sys.argv[7]:>8}')" \
    "$t0" "$now" "$last_t" "$r" "$last_rows" "$l" "$m"
  last_rows=$r; last_t=$now
done
wait "$PRODUCER"
t_end=$(secs)
cpu1="$(cpu_pid $PROC) $(cpu_server kafka) $(cpu_server clickhouse)"
rows_at_end=$(rows)
window=$(python3 -c "print($t_end - $t0)")
# Catch-up: until every partition's lag is 0 (the processor commits after each durable insert).
while true; do
  m=$(rss_mib $PROC); (( m > peak )) && peak=$m
  l=$(lag); [[ "$l" == "0" ]] && break
  sleep 1
done
t_drained=$(secs)
final_rows=$(rows)
kill -TERM $PROC; wait $PROC || true
trap - EXIT

echo
cat /tmp/"$RUN".produce.log | tail -3
python3 - "$t0" "$t_end" "$t_drained" "$rows_at_end" "$final_rows" "$peak" <<'PY'
import sys
t0, t_end, t_drained, at_end, final, peak = map(float, sys.argv[1:7])
window = t_end - t0
print(f"produce window:                {window:.1f} s")
print(f"ledger rows in the window:     {int(at_end):,} -> sustained {at_end / window:,.0f} events/s")
print(f"catch-up after the window:     {t_drained - t_end:.1f} s (final ledger rows {int(final):,})")
print(f"end to end incl. catch-up:     {final / (t_drained - t0):,.0f} events/s")
print(f"processor peak RSS:            {int(peak)} MiB")
PY
python3 - "$t0" "$t_end" "$rows_at_end" "$producer_cpu" $cpu0 $cpu1 <<'PY'
import sys
t0, t_end, rows, producer, p0, k0, c0, p1, k1, c1 = map(float, sys.argv[1:11])
wall = t_end - t0
print(f"CPU in the produce window ({wall:.1f} s, {wall * 2:.0f} core-s on 2 cores; per ledger row):")
for name, cpu in (("processor", p1 - p0), ("producer", producer), ("kafka broker", k1 - k0), ("clickhouse", c1 - c0)):
    print(f"  {name:<13} {cpu:7.1f} s  ({cpu / wall * 100:5.1f}% of a core, {cpu / max(rows, 1) * 1e6:5.2f} us/row)")
PY

# The raw baselines on the same rows.
N=$final_rows
# The consume baseline reads the first 5,000,000 retained events: a long run outgrows the
# development broker's retention (log.retention.bytes, 1 GiB per partition), which deletes
# the oldest segments once the processor has read them.
NA=$(( N < 5000000 ? N : 5000000 ))
t0=$(secs)
"$L" bench-consume --topic "$LEDGER__TOPICS__USAGE" --expect "$NA" >/dev/null
t1=$(secs)
# The insert baselines use at most 1,000,000 of the rows (about 0.4 GB of RowBinary on disk):
# B2 into a freshly migrated ledger (with its rollup views), as the processor does; B1 into a
# bare copy of the ledger table.
NB=$(( N < 1000000 ? N : 1000000 ))
LEDGER__CLICKHOUSE__DATABASE="${DB}_b" "$L" migrate >/dev/null
$CH -q "SELECT * FROM $DB.usage_ledger LIMIT $NB FORMAT RowBinary" > /tmp/"$RUN".rowbinary
# The run's ledger goes first: its background merges would otherwise take the CPU from the
# baselines (B1 measured 109,000-241,000 rows/s with them), and each insert waits until the
# server merges nothing (at most 2 minutes).
$CH -q "DROP DATABASE $DB"
quiet() {
  for _ in $(seq 120); do
    [[ "$($CH -q 'SELECT count() FROM system.merges')" == 0 ]] && return
    sleep 1
  done
}
quiet
t2=$(secs)
$CH -q "INSERT INTO ${DB}_b.usage_ledger FORMAT RowBinary" < /tmp/"$RUN".rowbinary
t3=$(secs)
# B1, as in pipeline.sh: the same rows into a bare copy of usage_ledger (no rollup views), the
# faster of the two insert baselines and so the stricter one.
$CH -q "CREATE TABLE ${DB}_b.insert_baseline AS ${DB}_b.usage_ledger"
quiet
t4=$(secs)
$CH -q "INSERT INTO ${DB}_b.insert_baseline FORMAT RowBinary" < /tmp/"$RUN".rowbinary
t5=$(secs)
rm -f /tmp/"$RUN".rowbinary
$CH -q "DROP DATABASE ${DB}_b"
python3 - "$NA" "$t0" "$t1" "$t2" "$t3" "$rows_at_end" "$window" "$NB" "$t4" "$t5" "$RATE" <<'PY'
import sys
n, t0, t1, t2, t3, at_end, window, nb, t4, t5, rate = map(float, sys.argv[1:12])
a, b2, b1 = n / (t1 - t0), nb / (t3 - t2), nb / (t5 - t4)
sustained = at_end / window
print(f"baseline A, consume only:                {a:,.0f} events/s ({int(n):,} events)")
print(f"baseline B1, insert into a bare table:   {b1:,.0f} events/s ({int(nb):,} rows)")
print(f"baseline B2, insert incl. rollups:       {b2:,.0f} events/s (the same rows into a ledger with its rollup views)")
# The goal's ratio takes B2: the same rows into the same ledger, rollup views included, is what
# "inserting the rows into ClickHouse alone" does in this system. B1 leaves the rollups out, so
# it is the stricter reference, not the pipeline's work.
print(f"sustained / slower of A and B2:          {sustained / min(a, b2):.2f}   (the goal: at least 0.5)")
print(f"sustained / slower of A and B1:          {sustained / min(a, b1):.2f}   (stricter: without the rollups)")
if sustained >= 0.98 * rate:
    # A run that keeps pace measures the offered rate, not what the pipeline can do.
    print(f"the pipeline kept pace with the {rate:,.0f}/s offered: these ratios are lower bounds of its capacity;")
    print(f"offer more to find it (e.g. benches/sustained.sh {int(rate * 1.5)} 5m)")
PY
"$L" bench-delete-topics --prefix "${RUN}." >/dev/null
