#!/usr/bin/env bash
# Local development stack for the LLM usage ledger, without Docker: a real single-node Apache Kafka
# (KRaft, broker jars from Maven Central, run on the machine's Java 17) and a real ClickHouse server
# (Debian's clickhouse-server package), both on loopback, all state under one folder.
#
#   scripts/stack.sh up [--secure] [--registry] | --cluster   install what is missing, start, wait until healthy
#   scripts/stack.sh status                  exit 0 if all run and answer, 3 otherwise
#   scripts/stack.sh logs [kafka|kafka-N|clickhouse|registry] [-f] [-n LINES]
#   scripts/stack.sh down [--purge]          stop what `up` started; --purge also deletes the state
#   scripts/stack.sh purge                   same as `down --purge`
#
# The secure profile, `up --secure`: the same stack plus a SASL_SSL listener on Kafka (TLS and
# SCRAM-SHA-512) and an HTTPS port on ClickHouse, both with a certificate from a CA made on the fly
# (subjectAltName DNS:localhost, IP:127.0.0.1) and a user `ledger` with a random password. The
# plain listeners and ClickHouse's passwordless user `default` stay, so plain clients keep working.
# $STATE/secure/ holds the CA (ca.pem), the certificate and key, the passwords (kafka-password,
# clickhouse-password) and ledger.toml, a file for ledger's `--config` that reaches the secure
# listeners. The profile belongs to the state dir: `up --secure` on a running plain stack restarts
# both servers with it; a later `up` without --secure keeps it (and says so), with the same
# certificate and passwords; `status` shows it; `down` keeps it; `purge` deletes it with the rest.
# To drop it but keep the data: `down`, `rm -r $STATE/secure`, `up` (the Kafka user stays, unused).
#
# The registry option, `up --registry` (combinable with --secure): also a schema registry, Apicurio
# Registry 2.6 with the Confluent-compatible REST API at http://127.0.0.1:8081/apis/ccompat/v7 (the
# ledger's schema.registry.url), from Maven Central, schemas kept in $STATE/registry/data. With the
# secure profile it also serves HTTPS (same certificate; the secure ledger.toml points there). Like
# the secure profile it belongs to the state dir: later `up`s start it too (scripts/stack/registry.sh).
#
# The cluster profile, `up --cluster` (scripts/stack/cluster.sh): three Kafka nodes (KRaft, each
# broker and controller) on ports 9092, 9102, 9112 (controllers 9093, 9103, 9113) and
# $STATE/cluster/ledger.toml, which makes the ledger's topics with 3 replicas and min ISR 2. It
# needs a state dir of its own: LEDGER_STATE_DIR=/tmp/cluster scripts/stack.sh up --cluster.
#
# Environment (defaults in brackets):
#   LEDGER_STATE_DIR [<repo>/.state]           kafka/ and clickhouse/ data, configs, logs, pid files
#   LEDGER_CACHE_DIR [$HOME/.cache/llm-ledger] Kafka jars go to kafka-<version>/lib below it, the
#                                              registry to apicurio-registry-<version>
#   LEDGER_KAFKA_PORT [9092]  LEDGER_KAFKA_CONTROLLER_PORT [9093]
#   LEDGER_CLICKHOUSE_HTTP_PORT [8123]  LEDGER_CLICKHOUSE_TCP_PORT [9000]
#   LEDGER_CLICKHOUSE_INTERSERVER_PORT [unset = disabled]
#   LEDGER_KAFKA_SECURE_PORT [9094]  LEDGER_CLICKHOUSE_HTTPS_PORT [8443]  the secure profile's
#   LEDGER_REGISTRY_PORT [8081]  LEDGER_REGISTRY_HTTPS_PORT [8444, with --secure]  --registry's
#   LEDGER_REGISTRY_HEAP [-Xms64m -Xmx384m]  LEDGER_REGISTRY_START_TIMEOUT [90]
#   LEDGER_KAFKA_HEAP [-Xms512m -Xmx1g]  LEDGER_KAFKA_AUTO_CREATE_TOPICS [false]
#   LEDGER_CLICKHOUSE_MAX_MEMORY [2000000000]  bytes, per query and for all queries together
#   LEDGER_KAFKA_START_TIMEOUT [90]  LEDGER_CLICKHOUSE_START_TIMEOUT [60]  seconds
#   LEDGER_STOP_TIMEOUT [30]  seconds between SIGTERM and SIGKILL
#   LEDGER_STACK_ONLY [all]  the instances to act on, e.g. `registry` (with --registry, in a state
#                            dir of its own, beside a stack running from another one)
#   LEDGER_CLICKHOUSE_SERVER [/usr/sbin/clickhouse-server]
set -euo pipefail
shopt -s nullglob

# The commands live here; the shared helpers in scripts/stack/lib.sh (which also describes the
# functions each service defines), each service in scripts/stack/<service>.sh and the files it
# generates in scripts/stack/<service>-config.sh; the secure profile's certificates, credentials
# and profile stamps in scripts/stack/secure.sh.

STACK_SCRIPT=$(realpath -- "${BASH_SOURCE[0]}")
SCRIPT_DIR=$(cd -- "$(dirname -- "$STACK_SCRIPT")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd -P)
readonly STACK_SCRIPT SCRIPT_DIR REPO_ROOT

# shellcheck source=stack/lib.sh source-path=SCRIPTDIR
source "$SCRIPT_DIR/stack/lib.sh"
# shellcheck source=stack/secure.sh source-path=SCRIPTDIR
source "$SCRIPT_DIR/stack/secure.sh"
# shellcheck source=stack/cluster.sh source-path=SCRIPTDIR
source "$SCRIPT_DIR/stack/cluster.sh"
# shellcheck source=stack/kafka.sh source-path=SCRIPTDIR
source "$SCRIPT_DIR/stack/kafka.sh"
# shellcheck source=stack/kafka-config.sh source-path=SCRIPTDIR
source "$SCRIPT_DIR/stack/kafka-config.sh"
# shellcheck source=stack/clickhouse.sh source-path=SCRIPTDIR
source "$SCRIPT_DIR/stack/clickhouse.sh"
# shellcheck source=stack/clickhouse-config.sh source-path=SCRIPTDIR
source "$SCRIPT_DIR/stack/clickhouse-config.sh"
# shellcheck source=stack/registry.sh source-path=SCRIPTDIR
source "$SCRIPT_DIR/stack/registry.sh"

# The instances of the stack, dependents first: `up` starts them from the last to the first,
# `down` stops them from the first to the last, `status` and `logs` list them in this order.
# A profile that runs more nodes (kafka-2, clickhouse-2, zookeeper, ...) lists them here.
# LEDGER_STACK_ONLY (instance names) keeps only those, e.g. a registry of its own beside a stack
# that runs from another state dir.
stack_instances() {
    local inst all kept=()
    read -r -a all <<<"$(kafka_instances) clickhouse"
    ((REGISTRY == 0)) || all=(registry "${all[@]}")
    for inst in "${all[@]}"; do
        [[ -n ${LEDGER_STACK_ONLY:-} && " $LEDGER_STACK_ONLY " != *" $inst "* ]] || kept+=("$inst")
    done
    echo "${kept[@]}"
}

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
    local arg want_secure=0 want_registry=0 want_cluster=0
    for arg in "$@"; do
        case $arg in
        --secure) want_secure=1 ;;
        --registry) want_registry=1 ;;
        --cluster) want_cluster=1 ;;
        *) die "up: unknown argument '$arg' (expected --secure, --registry or --cluster)" ;;
        esac
    done
    select_profile "$want_secure"
    select_registry "$want_registry"
    select_cluster "$want_cluster"
    validate_env
    local t_all t0
    t_all=$(now_ms)
    take_lock

    t0=$(now_ms)
    # shellcheck disable=SC2046 # service names are single words
    ensure_installed $(stack_services)
    ((SECURE == 0)) || secure_prepare
    say "prerequisites ready in $(since "$t0")"

    # What runs already, what runs with another profile (restarted), and what must start (in start
    # order: the last instance first).
    local inst pid order=() to_start=() running=() restart=() had wanted
    read -r -a order <<<"$(stack_instances)"
    local i
    for ((i = ${#order[@]} - 1; i >= 0; i--)); do
        inst=${order[i]}
        pid=$(find_pid "$inst")
        had=$(profile_running "$inst") wanted=$(profile_wanted "$inst")
        if [[ -n $pid && $had != "$wanted" ]]; then
            say "$inst: running (pid $pid) $(profile_change "$had" "$wanted"); restarting it"
            restart+=("$inst")
            RESTARTING+=("$pid")
            to_start+=("$inst")
        elif [[ -n $pid ]]; then
            running+=("$inst:$pid")
        else
            rm -f "$(pid_file "$inst")"
            to_start+=("$inst")
        fi
    done
    # Ports of everything we are about to start must be free before anything starts (or stops).
    local ports=()
    for inst in "${to_start[@]}"; do
        # shellcheck disable=SC2207 # the port lists are single words
        ports+=($(instance_call "$inst" ports))
    done
    ((${#ports[@]} == 0)) || require_free_ports "${ports[@]}"
    ((${#restart[@]} == 0)) || stop_instances "${restart[@]}"

    local entry failed=0
    for entry in "${running[@]}"; do
        inst=${entry%%:*} pid=${entry#*:}
        if instance_call "$inst" healthy; then
            say "$inst: already running (pid $pid)"
        else
            say "$inst: running (pid $pid) but not answering yet, waiting"
            wait_healthy "$inst" "$pid" "$(instance_call "$inst" start_timeout)" || { failed=1 && continue; }
        fi
        instance_call "$inst" converge running || failed=1
    done

    if ((${#to_start[@]} > 0)); then
        # Start all, then wait: ClickHouse is up while the broker JVM still boots.
        local -A started_at
        for inst in "${to_start[@]}"; do
            started_at[$inst]=$(now_ms)
            instance_call "$inst" start
            profile_wanted "$inst" >"$(profile_file "$inst")"
        done
        local healthy
        for inst in "${to_start[@]}"; do
            pid=$(<"$(pid_file "$inst")")
            healthy=1
            wait_healthy "$inst" "$pid" "$(instance_call "$inst" start_timeout)" "${started_at[$inst]}" || healthy=0 failed=1
            instance_call "$inst" after_start
            ((healthy == 0)) || instance_call "$inst" converge started || failed=1
        done
    fi
    ((failed == 0)) || exit 1
    if ((${#to_start[@]} == 0)); then
        say "already running; nothing to start ($(since "$t_all"))"
    else
        local where=""
        for inst in "${order[@]}"; do where+="${where:+, }$(instance_call "$inst" summary)"; done
        say "up in $(since "$t_all"): $where, state $STATE_DIR"
    fi
    if ((SECURE)); then
        secure_write_ledger_toml
        say "secure profile: ledger <command> --config $SECURE_LEDGER_TOML (CA $SECURE_CA)"
    fi
    cluster_write_ledger_toml
}

# How the profile of a running instance differs from the wanted one (stamps $1 and $2).
profile_change() {
    case "${1%% *}>${2%% *}" in
    plain\>secure) echo "without the secure profile" ;;
    secure\>plain) echo "with the secure profile, which its state dir no longer has" ;;
    *) echo "with another port, certificate or password of the secure profile" ;;
    esac
}

# Stops instances $@: SIGTERM to each, then waits (SIGKILL after STOP_TIMEOUT). False when none ran.
stop_instances() {
    local inst pid pids=() entry t0
    for inst in "$@"; do
        pid=$(find_pid "$inst")
        if [[ -n $pid ]]; then
            say "stopping $inst (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$inst:$pid:$(now_ms)")
        else
            # A pid file left behind by a crashed server means nothing: drop it.
            rm -f "$(pid_file "$inst")"
        fi
    done
    for entry in "${pids[@]}"; do
        IFS=: read -r inst pid t0 <<<"$entry"
        wait_stopped "$inst" "$pid" "$t0"
        rm -f "$(pid_file "$inst")"
    done
    ((${#pids[@]} > 0))
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
    # shellcheck disable=SC2046 # instance names are single words
    stop_instances $(stack_instances) || say "nothing running in $STATE_DIR"
    if ((purge)); then
        purge_state
    fi
}

purge_state() {
    # Refuse to delete anything that does not look like a stack state dir: only instance
    # folders (<service> or <service>-<node>) of the known services, the secure profile's
    # folder and the lock file.
    case $STATE_DIR in
    / | "$HOME" | "$REPO_ROOT" | /root | /home | /tmp) die "refusing to delete $STATE_DIR" ;;
    esac
    local entry name svc ours
    for entry in "$STATE_DIR"/* "$STATE_DIR"/.[!.]*; do
        name=${entry##*/} ours=0
        [[ $name != .lock && $name != secure && $name != cluster ]] || ours=1
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
    secure_status
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
    up) cmd_up "$@" ;;
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
