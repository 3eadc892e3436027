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

# The commands live here; the shared helpers in scripts/stack/lib.sh (which also describes the
# functions each service defines), each service in scripts/stack/<service>.sh and the files it
# generates in scripts/stack/<service>-config.sh.

STACK_SCRIPT=$(realpath -- "${BASH_SOURCE[0]}")
SCRIPT_DIR=$(cd -- "$(dirname -- "$STACK_SCRIPT")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd -P)
readonly STACK_SCRIPT SCRIPT_DIR REPO_ROOT

# shellcheck source=stack/lib.sh source-path=SCRIPTDIR
source "$SCRIPT_DIR/stack/lib.sh"
# shellcheck source=stack/kafka.sh source-path=SCRIPTDIR
source "$SCRIPT_DIR/stack/kafka.sh"
# shellcheck source=stack/kafka-config.sh source-path=SCRIPTDIR
source "$SCRIPT_DIR/stack/kafka-config.sh"
# shellcheck source=stack/clickhouse.sh source-path=SCRIPTDIR
source "$SCRIPT_DIR/stack/clickhouse.sh"
# shellcheck source=stack/clickhouse-config.sh source-path=SCRIPTDIR
source "$SCRIPT_DIR/stack/clickhouse-config.sh"

# The instances of the stack, dependents first: `up` starts them from the last to the first,
# `down` stops them from the first to the last, `status` and `logs` list them in this order.
# A profile that runs more nodes (kafka-2, clickhouse-2, zookeeper, ...) lists them here.
stack_instances() { echo kafka clickhouse; }

# The services of the instances, each once.
stack_services() {
    # shellcheck disable=SC2034 # INST_NODE: parse_instance sets it, unused here
    local inst seen=" " INST_SVC INST_NODE
    for inst in $(stack_instances); do
        parse_instance "$inst"
        [[ $seen == *" $INST_SVC "* ]] || { echo "$INST_SVC"; seen+="$INST_SVC "; }
    done
}

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$STACK_SCRIPT"
}

validate_env() {
    local svc inst ports=()
    for svc in $(stack_services); do "${svc}_validate"; done
    for inst in $(stack_instances); do
        # shellcheck disable=SC2207 # the port lists are single words
        ports+=($(instance_call "$inst" ports))
    done
    require_distinct_ports "${ports[@]}"
}

# ---------------------------------------------------------------------------------------- commands

cmd_up() {
    validate_env
    local t_all t0
    t_all=$(now_ms)
    take_lock

    t0=$(now_ms)
    # shellcheck disable=SC2046 # service names are single words
    ensure_installed $(stack_services)
    say "prerequisites ready in $(since "$t0")"

    # What runs already, and what must start (in start order: the last instance first).
    local inst pid order=() to_start=() running=()
    read -r -a order <<<"$(stack_instances)"
    local i
    for ((i = ${#order[@]} - 1; i >= 0; i--)); do
        inst=${order[i]}
        pid=$(find_pid "$inst")
        if [[ -n $pid ]]; then
            running+=("$inst:$pid")
        else
            rm -f "$(pid_file "$inst")"
            to_start+=("$inst")
        fi
    done
    # Ports of everything we are about to start must be free before anything starts.
    local ports=()
    for inst in "${to_start[@]}"; do
        # shellcheck disable=SC2207 # the port lists are single words
        ports+=($(instance_call "$inst" ports))
    done
    ((${#ports[@]} == 0)) || require_free_ports "${ports[@]}"

    local entry failed=0
    for entry in "${running[@]}"; do
        inst=${entry%%:*} pid=${entry#*:}
        if instance_call "$inst" healthy; then
            say "$inst: already running (pid $pid)"
        else
            say "$inst: running (pid $pid) but not answering yet, waiting"
            wait_healthy "$inst" "$pid" "$(instance_call "$inst" start_timeout)" || failed=1
        fi
    done

    if ((${#to_start[@]} > 0)); then
        # Start all, then wait: ClickHouse is up while the broker JVM still boots.
        local -A started_at
        for inst in "${to_start[@]}"; do
            started_at[$inst]=$(now_ms)
            instance_call "$inst" start
        done
        for inst in "${to_start[@]}"; do
            pid=$(<"$(pid_file "$inst")")
            wait_healthy "$inst" "$pid" "$(instance_call "$inst" start_timeout)" "${started_at[$inst]}" || failed=1
            instance_call "$inst" after_start
        done
    fi
    ((failed == 0)) || exit 1
    if ((${#to_start[@]} == 0)); then
        say "already running; nothing to do ($(since "$t_all"))"
    else
        local where=""
        for inst in "${order[@]}"; do where+="${where:+, }$(instance_call "$inst" summary)"; done
        say "up in $(since "$t_all"): $where, state $STATE_DIR"
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
    local inst pid stopped=0 pids=()
    for inst in $(stack_instances); do
        pid=$(find_pid "$inst")
        if [[ -n $pid ]]; then
            say "stopping $inst (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$inst:$pid:$(now_ms)")
        fi
        # A pid file left behind by a crashed server means nothing: drop it.
        [[ -n $pid ]] || rm -f "$(pid_file "$inst")"
    done
    local entry t0
    for entry in "${pids[@]}"; do
        IFS=: read -r inst pid t0 <<<"$entry"
        wait_stopped "$inst" "$pid" "$t0"
        rm -f "$(pid_file "$inst")"
        stopped=1
    done
    ((stopped)) || say "nothing running in $STATE_DIR"
    if ((purge)); then
        purge_state
    fi
}

purge_state() {
    # Refuse to delete anything that does not look like a stack state dir: only instance
    # folders (<service> or <service>-<node>) of the known services and the lock file.
    case $STATE_DIR in
    / | "$HOME" | "$REPO_ROOT" | /root | /home | /tmp) die "refusing to delete $STATE_DIR" ;;
    esac
    local entry name svc ours
    for entry in "$STATE_DIR"/* "$STATE_DIR"/.[!.]*; do
        name=${entry##*/} ours=0
        [[ $name != .lock ]] || ours=1
        for svc in "${STACK_SERVICES[@]}"; do
            [[ $name != "$svc" && ! $name =~ ^$svc-[0-9]+$ ]] || ours=1
        done
        ((ours)) || die "refusing to purge $STATE_DIR: it contains '$name', which stack.sh did not create"
    done
    rm -rf -- "$STATE_DIR"
    say "purged $STATE_DIR"
}

cmd_status() {
    local rc=0 inst
    for inst in $(stack_instances); do
        instance_call "$inst" status || rc=3
    done
    return "$rc"
}

cmd_logs() {
    local follow=0 lines=40 svcs=() instances
    instances=" $(stack_instances) "
    while (($# > 0)); do
        case $1 in
        -f | --follow) follow=1 ;;
        -n | --lines)
            [[ ${2:-} =~ ^[0-9]+$ ]] || die "logs: -n needs a number"
            lines=$2
            shift
            ;;
        *)
            [[ $1 != *" "* && $instances == *" $1 "* ]] ||
                die "logs: unknown argument '$1' (expected $(stack_instances | sed 's/ /, /g'), -f, -n LINES)"
            svcs+=("$1")
            ;;
        esac
        shift
    done
    ((${#svcs[@]} > 0)) || read -r -a svcs <<<"$(stack_instances)"
    local files=() inst f first
    for inst in "${svcs[@]}"; do
        first=1
        for f in $(instance_call "$inst" log_files); do
            if [[ -f $f ]]; then
                files+=("$f")
            elif ((first)); then
                say "$inst: no log yet ($f)"
            fi
            first=0
        done
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
