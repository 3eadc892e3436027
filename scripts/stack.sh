#!/usr/bin/env bash
# Local development stack for the LLM usage ledger, without Docker: a real single-node Apache Kafka
# (KRaft, broker jars from Maven Central, run on the machine's Java 17) and a real ClickHouse server
# (Debian's clickhouse-server package), both on loopback, all state under one folder.
#
#   scripts/stack.sh up                      install what is missing, start, wait until healthy
#   scripts/stack.sh status                  exit 0 if both run and answer, 3 otherwise
#   scripts/stack.sh logs [kafka|clickhouse] [-f] [-n LINES]
#   scripts/stack.sh down [--purge]          stop what `up` started; --purge also deletes the state
#   scripts/stack.sh purge                   same as `down --purge`
#
# Environment (defaults in brackets):
#   LEDGER_STATE_DIR [<repo>/.state]           kafka/ and clickhouse/ data, configs, logs, pid files
#   LEDGER_CACHE_DIR [$HOME/.cache/llm-ledger] Kafka jars go to kafka-<version>/lib below it
#   LEDGER_KAFKA_PORT [9092]  LEDGER_KAFKA_CONTROLLER_PORT [9093]
#   LEDGER_CLICKHOUSE_HTTP_PORT [8123]  LEDGER_CLICKHOUSE_TCP_PORT [9000]
#   LEDGER_CLICKHOUSE_INTERSERVER_PORT [unset = disabled]
#   LEDGER_KAFKA_HEAP [-Xms512m -Xmx1g]  LEDGER_KAFKA_AUTO_CREATE_TOPICS [false]
#   LEDGER_CLICKHOUSE_MAX_MEMORY [2000000000]  bytes, per query and for all queries together
#   LEDGER_KAFKA_START_TIMEOUT [90]  LEDGER_CLICKHOUSE_START_TIMEOUT [60]  seconds
#   LEDGER_STOP_TIMEOUT [30]  seconds between SIGTERM and SIGKILL
#   LEDGER_CLICKHOUSE_SERVER [/usr/sbin/clickhouse-server]
set -euo pipefail
shopt -s nullglob

readonly KAFKA_VERSION=4.1.1
readonly MAVEN_DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
readonly BIND=127.0.0.1

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd -P)
readonly SCRIPT_DIR REPO_ROOT

STATE_DIR=$(realpath -m -- "${LEDGER_STATE_DIR:-$REPO_ROOT/.state}")
CACHE_DIR=$(realpath -m -- "${LEDGER_CACHE_DIR:-$HOME/.cache/llm-ledger}")
readonly STATE_DIR CACHE_DIR
readonly KAFKA_HOME="$CACHE_DIR/kafka-$KAFKA_VERSION"
readonly KAFKA_LIB="$KAFKA_HOME/lib"
readonly KAFKA_POM="$SCRIPT_DIR/kafka/pom.xml"

readonly KAFKA_PORT=${LEDGER_KAFKA_PORT:-9092}
readonly KAFKA_CONTROLLER_PORT=${LEDGER_KAFKA_CONTROLLER_PORT:-9093}
readonly CH_HTTP_PORT=${LEDGER_CLICKHOUSE_HTTP_PORT:-8123}
readonly CH_TCP_PORT=${LEDGER_CLICKHOUSE_TCP_PORT:-9000}
readonly CH_INTERSERVER_PORT=${LEDGER_CLICKHOUSE_INTERSERVER_PORT:-}
readonly KAFKA_HEAP=${LEDGER_KAFKA_HEAP:--Xms512m -Xmx1g}
readonly KAFKA_AUTO_CREATE_TOPICS=${LEDGER_KAFKA_AUTO_CREATE_TOPICS:-false}
readonly CH_MAX_MEMORY=${LEDGER_CLICKHOUSE_MAX_MEMORY:-2000000000}
readonly KAFKA_START_TIMEOUT=${LEDGER_KAFKA_START_TIMEOUT:-90}
readonly CH_START_TIMEOUT=${LEDGER_CLICKHOUSE_START_TIMEOUT:-60}
readonly STOP_TIMEOUT=${LEDGER_STOP_TIMEOUT:-30}
readonly CH_SERVER=${LEDGER_CLICKHOUSE_SERVER:-/usr/sbin/clickhouse-server}

readonly KAFKA_DIR="$STATE_DIR/kafka"
readonly KAFKA_PROPERTIES="$KAFKA_DIR/server.properties"
readonly KAFKA_LOG="$KAFKA_DIR/logs/server.log"
readonly KAFKA_STDOUT="$KAFKA_DIR/logs/stdout.log"
readonly CH_DIR="$STATE_DIR/clickhouse"
readonly CH_CONFIG="$CH_DIR/config.xml"
readonly CH_LOG="$CH_DIR/logs/server.log"
readonly CH_ERRLOG="$CH_DIR/logs/error.log"
readonly CH_STDOUT="$CH_DIR/logs/stdout.log"

# ---------------------------------------------------------------------------------------- helpers

say() { printf '%s\n' "stack: $*"; }
warn() { printf '%s\n' "stack: warning: $*" >&2; }
die() {
    printf '%s\n' "stack: error: $*" >&2
    exit 1
}

now_ms() {
    local t=${EPOCHREALTIME//[!0-9]/}
    echo $((10#$t / 1000))
}

# Milliseconds since $1 (a now_ms value) as seconds with one decimal.
since() {
    local ms=$(($(now_ms) - $1))
    printf '%d.%ds' $((ms / 1000)) $((ms % 1000 / 100))
}

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

check_port_var() {
    local name=$1 value=$2
    if [[ ! $value =~ ^[0-9]+$ ]] || ((value < 1 || value > 65535)); then
        die "$name must be a TCP port, got '$value'"
    fi
}

validate_env() {
    check_port_var LEDGER_KAFKA_PORT "$KAFKA_PORT"
    check_port_var LEDGER_KAFKA_CONTROLLER_PORT "$KAFKA_CONTROLLER_PORT"
    check_port_var LEDGER_CLICKHOUSE_HTTP_PORT "$CH_HTTP_PORT"
    check_port_var LEDGER_CLICKHOUSE_TCP_PORT "$CH_TCP_PORT"
    [[ -z $CH_INTERSERVER_PORT ]] || check_port_var LEDGER_CLICKHOUSE_INTERSERVER_PORT "$CH_INTERSERVER_PORT"
    local ports=("$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$CH_HTTP_PORT" "$CH_TCP_PORT")
    [[ -z $CH_INTERSERVER_PORT ]] || ports+=("$CH_INTERSERVER_PORT")
    local dups
    dups=$(printf '%s\n' "${ports[@]}" | sort | uniq -d)
    [[ -z $dups ]] || die "the same port is configured twice: $(echo "$dups" | tr '\n' ' ')"
    [[ $KAFKA_AUTO_CREATE_TOPICS == true || $KAFKA_AUTO_CREATE_TOPICS == false ]] ||
        die "LEDGER_KAFKA_AUTO_CREATE_TOPICS must be true or false"
    [[ $CH_MAX_MEMORY =~ ^[0-9]+$ ]] || die "LEDGER_CLICKHOUSE_MAX_MEMORY must be a number of bytes"
}

# ---------------------------------------------------------------------------------------- processes

# True when $1 is a live process (not a zombie).
pid_alive() {
    local pid=$1 stat
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

cmdline_of() {
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true
}

# True when pid $2 is the $1 server of this state dir (judged by its command line).
is_our_process() {
    local svc=$1 pid=$2 cmd
    pid_alive "$pid" || return 1
    cmd=$(cmdline_of "$pid")
    case $svc in
    kafka) [[ $cmd == *" kafka.Kafka $KAFKA_PROPERTIES "* ]] ;;
    clickhouse) [[ $cmd == *"--config-file=$CH_CONFIG "* ]] ;;
    *) return 1 ;;
    esac
}

pid_file() { echo "$STATE_DIR/$1/$1.pid"; }

# Prints the pid of this state dir's running $1 server, or nothing. Falls back to a scan of /proc
# (and repairs the pid file) when the pid file is missing or stale but our server is running.
find_pid() {
    local svc=$1 file pid
    file=$(pid_file "$svc")
    if [[ -f $file ]]; then
        pid=$(<"$file")
        if is_our_process "$svc" "$pid"; then
            echo "$pid"
            return 0
        fi
    fi
    local entry
    for entry in /proc/[0-9]*; do
        pid=${entry#/proc/}
        if is_our_process "$svc" "$pid"; then
            [[ ! -d ${file%/*} ]] || echo "$pid" >"$file"
            echo "$pid"
            return 0
        fi
    done
    return 0
}

# Starts "$@" detached (own session, no inherited descriptors), output appended to $1's log.
# Prints the pid.
spawn() {
    local out=$1
    shift
    setsid "$@" </dev/null >>"$out" 2>&1 9>&- &
    echo $!
}

# Waits for pid $2 (service $1, already sent SIGTERM at now_ms $3) to exit; SIGKILL after STOP_TIMEOUT.
wait_stopped() {
    local svc=$1 pid=$2 t0=$3 deadline
    deadline=$((t0 + STOP_TIMEOUT * 1000))
    while pid_alive "$pid" && (($(now_ms) < deadline)); do sleep 0.2; done
    if pid_alive "$pid"; then
        warn "$svc (pid $pid) still running after ${STOP_TIMEOUT}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while pid_alive "$pid"; do sleep 0.1; done
    fi
    say "$svc stopped (pid $pid) in $(since "$t0")"
}

# ---------------------------------------------------------------------------------------- ports

# True when a TCP connect to the loopback port $1 succeeds.
tcp_open() {
    # shellcheck disable=SC2016 # $0 and $1 are the inner shell's arguments
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$BIND" "$1" 2>/dev/null
}

port_listening() {
    local port=$1
    if command -v ss >/dev/null; then
        [[ -n $(ss -Hltn "sport = :$port" 2>/dev/null) ]]
    else
        tcp_open "$port"
    fi
}

port_owner() {
    if command -v ss >/dev/null; then
        ss -Hltnp "sport = :$1" 2>/dev/null | sed 's/^/    /'
    else
        echo "    (install iproute2 for ss to see the owner)"
    fi
}

# Fails (after listing every taken port) unless all the given ports are free.
require_free_ports() {
    local port busy=0
    for port in "$@"; do
        if port_listening "${port#*=}"; then
            printf '%s\n' "stack: error: port ${port#*=} (${port%%=*}) is already in use by something that is not this stack's server:" >&2
            port_owner "${port#*=}" >&2
            busy=1
        fi
    done
    if ((busy)); then
        echo "stack: stop that process or choose other ports (LEDGER_KAFKA_PORT, LEDGER_KAFKA_CONTROLLER_PORT, LEDGER_CLICKHOUSE_HTTP_PORT, LEDGER_CLICKHOUSE_TCP_PORT)" >&2
        exit 1
    fi
}

kafka_ports() { echo "kafka=$KAFKA_PORT" "kafka-controller=$KAFKA_CONTROLLER_PORT"; }
clickhouse_ports() {
    echo "clickhouse-http=$CH_HTTP_PORT" "clickhouse-tcp=$CH_TCP_PORT"
    [[ -z $CH_INTERSERVER_PORT ]] || echo "clickhouse-interserver=$CH_INTERSERVER_PORT"
}

# ---------------------------------------------------------------------------------------- installs

SUDO=()
as_root_prefix() {
    if ((EUID != 0)); then
        command -v sudo >/dev/null || die "installing packages needs root (or sudo)"
        SUDO=(sudo)
    fi
}

APT_UPDATED=0
apt_install() {
    as_root_prefix
    local pkg need_update=0
    for pkg in "$@"; do
        apt-cache policy "$pkg" 2>/dev/null | grep -q 'Candidate: [^(]' || need_update=1
    done
    if ((need_update && !APT_UPDATED)); then
        say "apt-get update"
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        APT_UPDATED=1
    fi
    # Debian's clickhouse-server postinst runs `invoke-rc.d clickhouse-server start`, which would
    # start a second server on the default ports: forbid service starts while installing.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
        "${SUDO[@]}" chmod 755 "$policy"
        added_policy=1
    fi
    say "apt-get install $*"
    local rc=0
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" >/dev/null || rc=$?
    ((added_policy == 0)) || "${SUDO[@]}" rm -f "$policy"
    ((rc == 0)) || die "apt-get install $* failed (exit $rc)"
}

ensure_installed() {
    local pkgs=()
    [[ -x $CH_SERVER ]] || pkgs+=(clickhouse-server clickhouse-client)
    command -v java >/dev/null || pkgs+=(openjdk-17-jre-headless)
    kafka_jars_cached || command -v mvn >/dev/null || pkgs+=(maven)
    command -v curl >/dev/null || pkgs+=(curl ca-certificates)
    command -v ss >/dev/null || pkgs+=(iproute2)
    command -v setsid >/dev/null && command -v flock >/dev/null || pkgs+=(util-linux)
    ((${#pkgs[@]} == 0)) || apt_install "${pkgs[@]}"
    [[ -x $CH_SERVER ]] || die "$CH_SERVER is still missing after installing clickhouse-server"
}

# True when the jars in the cache were resolved from the current pom.xml.
kafka_jars_cached() {
    local pom_sum
    pom_sum=$(sha256sum "$KAFKA_POM" | cut -d' ' -f1)
    [[ -f $KAFKA_HOME/pom.sha256 && $(<"$KAFKA_HOME/pom.sha256") == "$pom_sum" && -d $KAFKA_LIB ]]
}

ensure_kafka_jars() {
    kafka_jars_cached && return 0
    local pom_sum
    pom_sum=$(sha256sum "$KAFKA_POM" | cut -d' ' -f1)
    say "fetching Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIB"
    mkdir -p "$KAFKA_HOME"
    local tmp="$KAFKA_HOME/lib.tmp.$$"
    rm -rf "$tmp"
    local t0
    t0=$(now_ms)
    if ! mvn -B -q -Dstyle.color=never -f "$KAFKA_POM" "$MAVEN_DEPENDENCY_PLUGIN:copy-dependencies" \
        -DoutputDirectory="$tmp" -DincludeScope=runtime >"$KAFKA_HOME/mvn.log" 2>&1; then
        rm -rf "$tmp"
        tail -n 40 "$KAFKA_HOME/mvn.log" >&2
        die "mvn could not resolve the Kafka jars (is Maven Central reachable?); full output in $KAFKA_HOME/mvn.log"
    fi
    [[ -f $tmp/kafka_2.13-$KAFKA_VERSION.jar ]] || die "mvn did not produce kafka_2.13-$KAFKA_VERSION.jar"
    rm -rf "$KAFKA_LIB"
    mv "$tmp" "$KAFKA_LIB"
    echo "$pom_sum" >"$KAFKA_HOME/pom.sha256"
    say "Kafka jars ready ($(find "$KAFKA_LIB" -name '*.jar' | wc -l) jars) in $(since "$t0")"
}

# ---------------------------------------------------------------------------------------- kafka

kafka_java() {
    java -cp "$KAFKA_LIB/*" "$@"
}

new_cluster_id() {
    local id
    while :; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
        [[ $id == -* ]] || break
    done
    echo "$id"
}

write_kafka_config() {
    mkdir -p "$KAFKA_DIR/data" "$KAFKA_DIR/logs"
    cat >"$KAFKA_PROPERTIES" <<EOF
# Generated by scripts/stack.sh on every start; edit the script, not this file.
# Single-node KRaft: one process is both broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$BIND:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$BIND:$KAFKA_PORT,CONTROLLER://$BIND:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$BIND:$KAFKA_PORT,CONTROLLER://$BIND:$KAFKA_CONTROLLER_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DIR/data

# One node: the internal topics default to replication 3 / min ISR 2, which never works here.
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
# After a kill -9 the restarted broker cannot register until its old session expires (default 9 s).
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=5000

# Topics are created explicitly (ledger process / migrations); a typo must fail, not create a topic.
auto.create.topics.enable=$KAFKA_AUTO_CREATE_TOPICS
delete.topic.enable=true

# Retention: a week, or 1 GiB per partition, whichever comes first. Compacted topics
# (llm.spend.v1, llm.budget-signals.v1) need the log cleaner; a small dedupe buffer suits a 1 GiB heap.
log.retention.hours=168
log.retention.bytes=1073741824
log.segment.bytes=134217728
log.retention.check.interval.ms=60000
log.cleaner.enable=true
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=33554432
num.network.threads=2
num.io.threads=4
EOF
    cat >"$KAFKA_DIR/log4j2.yaml" <<'EOF'
# Generated by scripts/stack.sh. Kafka's log4j 2 configuration (none ships inside the jars).
Configuration:
  status: warn
  Appenders:
    RollingFile:
      name: FILE
      fileName: "${sys:kafka.logs.dir}/server.log"
      filePattern: "${sys:kafka.logs.dir}/server.log.%i"
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
      Policies:
        SizeBasedTriggeringPolicy:
          size: "100 MB"
      DefaultRolloverStrategy:
        max: 5
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        ref: FILE
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: org.apache.kafka.clients
        level: WARN
EOF
    cat >"$KAFKA_DIR/admin.properties" <<'EOF'
# Client settings for stack.sh's health check (bounded waits instead of the 60 s defaults).
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
}

# Formats the KRaft storage once; the cluster id is kept in kafka/cluster.id.
format_kafka() {
    local meta="$KAFKA_DIR/data/meta.properties" id_file="$KAFKA_DIR/cluster.id" id
    if [[ -f $meta ]]; then
        [[ -f $id_file ]] || sed -n 's/^cluster.id=//p' "$meta" >"$id_file"
        return 0
    fi
    [[ -s $id_file ]] || new_cluster_id >"$id_file"
    id=$(<"$id_file")
    local t0 out
    t0=$(now_ms)
    if ! out=$(kafka_java -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.yaml" -Dkafka.logs.dir="$KAFKA_DIR/logs" \
        kafka.tools.StorageTool format --standalone -g -t "$id" -c "$KAFKA_PROPERTIES" 2>&1); then
        printf '%s\n' "$out" >&2
        die "formatting the Kafka storage failed"
    fi
    say "kafka: storage formatted (cluster id $id) in $(since "$t0")"
}

start_kafka() {
    write_kafka_config
    format_kafka
    local -a heap
    read -r -a heap <<<"$KAFKA_HEAP"
    local pid
    echo "=== $(date -u +%FT%TZ) start" >>"$KAFKA_STDOUT"
    pid=$(spawn "$KAFKA_STDOUT" java "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dkafka.logs.dir="$KAFKA_DIR/logs" -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.yaml" \
        -cp "$KAFKA_LIB/*" kafka.Kafka "$KAFKA_PROPERTIES")
    echo "$pid" >"$(pid_file kafka)"
    say "kafka: started pid $pid ($BIND:$KAFKA_PORT, controller $BIND:$KAFKA_CONTROLLER_PORT)"
}

# A Metadata request (v4: all topics) over a raw socket; true when the broker answers with a
# broker list. Takes milliseconds where a JVM tool takes two seconds. Kafka opens its PLAINTEXT
# listener only once the broker is unfenced, so an answer means it serves clients.
kafka_metadata_ok() {
    local reply
    # shellcheck disable=SC2016 # $0 and $1 are the inner shell's arguments
    reply=$(timeout 3 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        # size 20 | api key 3 (Metadata) | version 4 | correlation id 1 | client id "probe"
        # | topics: null (all) | allow_auto_topic_creation: false
        printf "\x00\x00\x00\x14\x00\x03\x00\x04\x00\x00\x00\x01\x00\x05probe\xff\xff\xff\xff\x00" >&3
        head -c 20 <&3 | od -An -tx1 | tr -d " \n"
    ' "$BIND" "$KAFKA_PORT" 2>/dev/null) || return 1
    # size (any) | correlation id 1 | throttle ms (any) | broker count >= 1 | first node id (any)
    [[ ${#reply} == 40 && ${reply:8:8} == 00000001 && ${reply:24:8} != 00000000 ]]
}

# A metadata request through the admin client; prints the topic list.
kafka_topics() {
    timeout 30 java -XX:TieredStopAtLevel=1 -Xshare:auto -cp "$KAFKA_LIB/*" org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "$BIND:$KAFKA_PORT" --command-config "$KAFKA_DIR/admin.properties" --list 2>/dev/null
}

kafka_healthy() {
    kafka_metadata_ok
}

# ---------------------------------------------------------------------------------------- clickhouse

write_clickhouse_config() {
    mkdir -p "$CH_DIR"/{data,tmp,logs,user_files,format_schemas}
    local interserver=""
    [[ -z $CH_INTERSERVER_PORT ]] || interserver="<interserver_http_port>$CH_INTERSERVER_PORT</interserver_http_port>
    <interserver_http_host>$BIND</interserver_http_host>"
    # Root element <yandex>: ClickHouse 18.16 requires it, current releases still accept it.
    cat >"$CH_CONFIG" <<EOF
<?xml version="1.0"?>
<!-- Generated by scripts/stack.sh on every start; edit the script, not this file. -->
<yandex>
    <logger>
        <level>information</level>
        <log>$CH_LOG</log>
        <errorlog>$CH_ERRLOG</errorlog>
        <size>100M</size>
        <count>3</count>
    </logger>
    <listen_host>$BIND</listen_host>
    <http_port>$CH_HTTP_PORT</http_port>
    <tcp_port>$CH_TCP_PORT</tcp_port>
    $interserver
    <path>$CH_DIR/data/</path>
    <tmp_path>$CH_DIR/tmp/</tmp_path>
    <user_files_path>$CH_DIR/user_files/</user_files_path>
    <format_schema_path>$CH_DIR/format_schemas/</format_schema_path>
    <users_config>$CH_DIR/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <!-- Memory: 18.16 has no server-wide cap (max_server_memory_usage is ignored there and honoured
         by current releases); users.xml caps queries, and the caches are kept small. -->
    <max_server_memory_usage>$((CH_MAX_MEMORY + CH_MAX_MEMORY / 2))</max_server_memory_usage>
    <mark_cache_size>268435456</mark_cache_size>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <!-- Development: allow DROP of tables and partitions of any size. -->
    <max_table_size_to_drop>0</max_table_size_to_drop>
    <max_partition_size_to_drop>0</max_partition_size_to_drop>
    <query_log>
        <database>system</database>
        <table>query_log</table>
        <partition_by>toYYYYMM(event_date)</partition_by>
        <flush_interval_milliseconds>7500</flush_interval_milliseconds>
    </query_log>
</yandex>
EOF
    cat >"$CH_DIR/users.xml" <<EOF
<?xml version="1.0"?>
<!-- Generated by scripts/stack.sh. One passwordless user, reachable from loopback only. -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>$CH_MAX_MEMORY</max_memory_usage>
            <max_memory_usage_for_all_queries>$CH_MAX_MEMORY</max_memory_usage_for_all_queries>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
            <log_queries>1</log_queries>
            <log_query_threads>0</log_query_threads>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>::1</ip>
                <ip>127.0.0.1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
}

CH_ERRLOG_LINES=0
start_clickhouse() {
    write_clickhouse_config
    CH_ERRLOG_LINES=0
    [[ ! -f $CH_ERRLOG ]] || CH_ERRLOG_LINES=$(wc -l <"$CH_ERRLOG")
    local pid
    echo "=== $(date -u +%FT%TZ) start" >>"$CH_STDOUT"
    # Run from the state dir: the server writes config-preprocessed files next to its config.
    pid=$(cd "$CH_DIR" && spawn "$CH_STDOUT" "$CH_SERVER" "--config-file=$CH_CONFIG")
    echo "$pid" >"$(pid_file clickhouse)"
    say "clickhouse: started pid $pid (http $BIND:$CH_HTTP_PORT, native $BIND:$CH_TCP_PORT)"
}

ch_query() {
    curl -fsS --max-time "${2:-5}" "http://$BIND:$CH_HTTP_PORT/" --data-binary "$1" 2>/dev/null
}

clickhouse_healthy() {
    [[ $(ch_query 'SELECT 1' 2) == 1 ]]
}

# Errors the server logged since this start (unknown settings and the like).
report_clickhouse_log_errors() {
    [[ -f $CH_ERRLOG ]] || return 0
    local new
    new=$(tail -n "+$((CH_ERRLOG_LINES + 1))" "$CH_ERRLOG" | grep -E '<(Error|Warning)>|Unknown|unknown' | head -n 10 || true)
    [[ -z $new ]] || warn "clickhouse logged errors during startup ($CH_ERRLOG):"$'\n'"$new"
}

# ---------------------------------------------------------------------------------------- health wait

log_of() {
    case $1 in
    kafka) echo "$KAFKA_LOG" ;;
    clickhouse) echo "$CH_LOG" ;;
    esac
}

show_failure_logs() {
    local svc=$1 f
    local files=("$(log_of "$svc")")
    case $svc in
    kafka) files+=("$KAFKA_STDOUT") ;;
    clickhouse) files+=("$CH_ERRLOG" "$CH_STDOUT") ;;
    esac
    for f in "${files[@]}"; do
        [[ -s $f ]] || continue
        printf '%s\n' "----- last 40 lines of $f" >&2
        tail -n 40 "$f" >&2
    done
}

# Waits until service $1 (pid $2, started at now_ms $4) is healthy; fails with its log tail after
# $3 seconds or if it dies.
wait_healthy() {
    local svc=$1 pid=$2 timeout_s=$3 t0=${4:-$(now_ms)} deadline
    deadline=$((t0 + timeout_s * 1000))
    while :; do
        if ! pid_alive "$pid"; then
            echo "stack: error: $svc (pid $pid) exited during startup" >&2
            show_failure_logs "$svc"
            rm -f "$(pid_file "$svc")"
            return 1
        fi
        case $svc in
        kafka) if kafka_metadata_ok; then break; fi ;;
        clickhouse) if clickhouse_healthy; then break; fi ;;
        esac
        if (($(now_ms) >= deadline)); then
            echo "stack: error: $svc (pid $pid) did not become healthy within ${timeout_s}s (still running; see 'stack.sh logs $svc', stop with 'stack.sh down')" >&2
            show_failure_logs "$svc"
            return 1
        fi
        sleep 0.5
    done
    say "$svc: healthy $(since "$t0") after start"
}

# ---------------------------------------------------------------------------------------- commands

take_lock() {
    mkdir -p "$STATE_DIR"
    exec 9>"$STATE_DIR/.lock"
    flock -w 300 9 || die "another stack.sh is working on $STATE_DIR"
}

cmd_up() {
    validate_env
    local t_all t0
    t_all=$(now_ms)
    take_lock

    t0=$(now_ms)
    ensure_installed
    ensure_kafka_jars
    say "prerequisites ready in $(since "$t0")"

    # What runs already, and what must start.
    local svc pid to_start=() running=()
    for svc in clickhouse kafka; do
        pid=$(find_pid "$svc")
        if [[ -n $pid ]]; then
            running+=("$svc:$pid")
        else
            rm -f "$(pid_file "$svc")"
            to_start+=("$svc")
        fi
    done
    # Ports of everything we are about to start must be free before anything starts.
    local ports=()
    for svc in "${to_start[@]}"; do
        # shellcheck disable=SC2207 # the port lists are single words
        ports+=($("${svc}_ports"))
    done
    ((${#ports[@]} == 0)) || require_free_ports "${ports[@]}"

    local entry failed=0
    for entry in "${running[@]}"; do
        svc=${entry%%:*} pid=${entry#*:}
        if "${svc}_healthy"; then
            say "$svc: already running (pid $pid)"
        else
            say "$svc: running (pid $pid) but not answering yet, waiting"
            local limit=$CH_START_TIMEOUT
            [[ $svc == clickhouse ]] || limit=$KAFKA_START_TIMEOUT
            wait_healthy "$svc" "$pid" "$limit" || failed=1
        fi
    done

    if ((${#to_start[@]} > 0)); then
        # Start both, then wait: ClickHouse is up while the broker JVM still boots.
        local -A started_at
        for svc in "${to_start[@]}"; do
            started_at[$svc]=$(now_ms)
            "start_$svc"
        done
        for svc in "${to_start[@]}"; do
            pid=$(<"$(pid_file "$svc")")
            if [[ $svc == kafka ]]; then
                wait_healthy kafka "$pid" "$KAFKA_START_TIMEOUT" "${started_at[kafka]}" || failed=1
            else
                wait_healthy clickhouse "$pid" "$CH_START_TIMEOUT" "${started_at[clickhouse]}" || failed=1
                report_clickhouse_log_errors
            fi
        done
    fi
    ((failed == 0)) || exit 1
    if ((${#to_start[@]} == 0)); then
        say "already running; nothing to do ($(since "$t_all"))"
    else
        say "up in $(since "$t_all"): kafka $BIND:$KAFKA_PORT, clickhouse http://$BIND:$CH_HTTP_PORT (native $CH_TCP_PORT), state $STATE_DIR"
    fi
}

cmd_down() {
    local purge=0 arg
    for arg in "$@"; do
        case $arg in
        --purge) purge=1 ;;
        *) die "down: unknown argument '$arg' (expected --purge)" ;;
        esac
    done
    if [[ ! -d $STATE_DIR ]]; then
        say "nothing to stop (no state dir $STATE_DIR)"
        return 0
    fi
    take_lock
    local svc pid stopped=0 pids=()
    for svc in kafka clickhouse; do
        pid=$(find_pid "$svc")
        if [[ -n $pid ]]; then
            say "stopping $svc (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$svc:$pid:$(now_ms)")
        fi
        # A pid file left behind by a crashed server means nothing: drop it.
        [[ -n $pid ]] || rm -f "$(pid_file "$svc")"
    done
    local entry
    local t0
    for entry in "${pids[@]}"; do
        IFS=: read -r svc pid t0 <<<"$entry"
        wait_stopped "$svc" "$pid" "$t0"
        rm -f "$(pid_file "$svc")"
        stopped=1
    done
    ((stopped)) || say "nothing running in $STATE_DIR"
    if ((purge)); then
        purge_state
    fi
}

purge_state() {
    # Refuse to delete anything that does not look like a stack state dir.
    case $STATE_DIR in
    / | "$HOME" | "$REPO_ROOT" | /root | /home | /tmp) die "refusing to delete $STATE_DIR" ;;
    esac
    local entry name
    for entry in "$STATE_DIR"/* "$STATE_DIR"/.[!.]*; do
        name=${entry##*/}
        case $name in
        kafka | clickhouse | .lock) ;;
        *) die "refusing to purge $STATE_DIR: it contains '$name', which stack.sh did not create" ;;
        esac
    done
    rm -rf -- "$STATE_DIR"
    say "purged $STATE_DIR"
}

cmd_status() {
    local rc=0 pid version
    pid=$(find_pid kafka)
    if [[ -n $pid ]]; then
        local topics health
        if kafka_metadata_ok; then
            health="running, answering"
            if topics=$(kafka_topics); then health+=" ($(grep -c . <<<"$topics" || true) topics)"; fi
        else
            health="running, NOT answering"
            rc=3
        fi
        printf '%-11s %s\n' kafka: "$health" \
            "" "pid $pid, address $BIND:$KAFKA_PORT (controller $BIND:$KAFKA_CONTROLLER_PORT)" \
            "" "version Apache Kafka $KAFKA_VERSION (KRaft, cluster id $(cat "$KAFKA_DIR/cluster.id" 2>/dev/null || echo '?'))" \
            "" "data $KAFKA_DIR/data, log $KAFKA_LOG"
    else
        printf '%-11s %s\n' kafka: stopped "" "address $BIND:$KAFKA_PORT, data $KAFKA_DIR/data"
        rc=3
    fi
    pid=$(find_pid clickhouse)
    if [[ -n $pid ]]; then
        local health
        if version=$(ch_query 'SELECT version()' 3); then
            health="running, answering"
        else
            health="running, NOT answering"
            version="?"
            rc=3
        fi
        printf '%-11s %s\n' clickhouse: "$health" \
            "" "pid $pid, address http://$BIND:$CH_HTTP_PORT (native $BIND:$CH_TCP_PORT)" \
            "" "version ClickHouse $version" \
            "" "data $CH_DIR/data, log $CH_LOG"
    else
        version=$(dpkg-query -W -f '${Version}' clickhouse-server 2>/dev/null || echo "not installed")
        printf '%-11s %s\n' clickhouse: stopped "" "address http://$BIND:$CH_HTTP_PORT, data $CH_DIR/data, package $version"
        rc=3
    fi
    return "$rc"
}

cmd_logs() {
    local follow=0 lines=40 svcs=()
    while (($# > 0)); do
        case $1 in
        kafka | clickhouse) svcs+=("$1") ;;
        -f | --follow) follow=1 ;;
        -n | --lines)
            [[ ${2:-} =~ ^[0-9]+$ ]] || die "logs: -n needs a number"
            lines=$2
            shift
            ;;
        *) die "logs: unknown argument '$1' (expected kafka, clickhouse, -f, -n LINES)" ;;
        esac
        shift
    done
    ((${#svcs[@]} > 0)) || svcs=(kafka clickhouse)
    local files=() svc f
    for svc in "${svcs[@]}"; do
        f=$(log_of "$svc")
        if [[ -f $f ]]; then files+=("$f"); else say "$svc: no log yet ($f)"; fi
        [[ $svc != clickhouse || ! -s $CH_ERRLOG ]] || files+=("$CH_ERRLOG")
    done
    ((${#files[@]} > 0)) || return 0
    if ((follow)); then
        exec tail -n "$lines" -F "${files[@]}"
    fi
    tail -n "$lines" "${files[@]}"
}

main() {
    local cmd=${1:-}
    (($# == 0)) || shift
    case $cmd in
    up) (($# == 0)) || die "up takes no arguments"; cmd_up ;;
    down) cmd_down "$@" ;;
    purge) cmd_down --purge ;;
    status) cmd_status ;;
    logs) cmd_logs "$@" ;;
    -h | --help | help) usage ;;
    "") usage >&2; exit 2 ;;
    *) echo "stack: unknown command '$cmd'" >&2; usage >&2; exit 2 ;;
    esac
}

main "$@"
