# shellcheck shell=bash
# ClickHouse for scripts/stack.sh: Debian's clickhouse-server (18.16 on Debian 12) run as one
# server per node with its own generated config.xml and users.xml.
# Sourced after lib.sh; defines the clickhouse_<verb> functions of the service contract (lib.sh);
# the files a node runs with are written by scripts/stack/clickhouse-config.sh. Everything that
# depends on the node takes its index; clickhouse_node sets that node's paths and ports.

STACK_SERVICES+=(clickhouse)

readonly CH_HTTP_PORT=${LEDGER_CLICKHOUSE_HTTP_PORT:-8123}
readonly CH_TCP_PORT=${LEDGER_CLICKHOUSE_TCP_PORT:-9000}
readonly CH_HTTPS_PORT=${LEDGER_CLICKHOUSE_HTTPS_PORT:-8443}
readonly CH_INTERSERVER_PORT=${LEDGER_CLICKHOUSE_INTERSERVER_PORT:-}
readonly CH_MAX_MEMORY=${LEDGER_CLICKHOUSE_MAX_MEMORY:-2000000000}
readonly CH_START_TIMEOUT=${LEDGER_CLICKHOUSE_START_TIMEOUT:-60}
readonly CH_SERVER=${LEDGER_CLICKHOUSE_SERVER:-/usr/sbin/clickhouse-server}

# Sets node $1's globals: CN_DIR, CN_HTTP_PORT, CN_TCP_PORT, CN_HTTPS_PORT (the secure profile's),
# CN_INTERSERVER_PORT (may be empty), CN_CONFIG, CN_LOG, CN_ERRLOG, CN_STDOUT.
clickhouse_node() {
    (($1 == 1)) || die "clickhouse node $1: the stack has a single ClickHouse server (a cluster profile would add more)"
    CN_DIR="$STATE_DIR/clickhouse"
    CN_HTTP_PORT=$CH_HTTP_PORT
    CN_TCP_PORT=$CH_TCP_PORT
    CN_HTTPS_PORT=$CH_HTTPS_PORT
    CN_INTERSERVER_PORT=$CH_INTERSERVER_PORT
    CN_CONFIG="$CN_DIR/config.xml"
    CN_LOG="$CN_DIR/logs/server.log"
    CN_ERRLOG="$CN_DIR/logs/error.log"
    CN_STDOUT="$CN_DIR/logs/stdout.log"
}

clickhouse_validate() {
    check_port_var LEDGER_CLICKHOUSE_HTTP_PORT "$CH_HTTP_PORT"
    check_port_var LEDGER_CLICKHOUSE_TCP_PORT "$CH_TCP_PORT"
    check_port_var LEDGER_CLICKHOUSE_HTTPS_PORT "$CH_HTTPS_PORT"
    [[ -z $CH_INTERSERVER_PORT ]] || check_port_var LEDGER_CLICKHOUSE_INTERSERVER_PORT "$CH_INTERSERVER_PORT"
    [[ $CH_MAX_MEMORY =~ ^[0-9]+$ ]] || die "LEDGER_CLICKHOUSE_MAX_MEMORY must be a number of bytes"
}

clickhouse_ports() {
    local inst
    inst=$(instance_name clickhouse "$1")
    clickhouse_node "$1"
    echo "$inst-http=$CN_HTTP_PORT" "$inst-tcp=$CN_TCP_PORT"
    ((SECURE == 0)) || echo "$inst-https=$CN_HTTPS_PORT"
    [[ -z $CN_INTERSERVER_PORT ]] || echo "$inst-interserver=$CN_INTERSERVER_PORT"
}

clickhouse_port_vars() {
    echo LEDGER_CLICKHOUSE_HTTP_PORT LEDGER_CLICKHOUSE_TCP_PORT
    ((SECURE == 0)) || echo LEDGER_CLICKHOUSE_HTTPS_PORT
    [[ -z $CH_INTERSERVER_PORT ]] || echo LEDGER_CLICKHOUSE_INTERSERVER_PORT
}

clickhouse_owns_cmdline() {
    clickhouse_node "$1"
    [[ $2 == *"--config-file=$CN_CONFIG "* ]]
}

clickhouse_start_timeout() { echo "$CH_START_TIMEOUT"; }

clickhouse_summary() {
    clickhouse_node "$1"
    local extra=""
    ((SECURE == 0)) || extra=", https://$BIND:$CN_HTTPS_PORT"
    echo "$(instance_name clickhouse "$1") http://$BIND:$CN_HTTP_PORT (native $CN_TCP_PORT$extra)"
}

clickhouse_log_files() {
    clickhouse_node "$1"
    echo "$CN_LOG"
    [[ ! -s $CN_ERRLOG ]] || echo "$CN_ERRLOG"
}

clickhouse_failure_files() {
    clickhouse_node "$1"
    echo "$CN_LOG" "$CN_ERRLOG" "$CN_STDOUT"
}

# ---------------------------------------------------------------------------------------- install

clickhouse_packages() {
    [[ -x $CH_SERVER ]] || echo clickhouse-server clickhouse-client
    secure_packages
}

clickhouse_prepare() {
    [[ -x $CH_SERVER ]] || die "$CH_SERVER is still missing after installing clickhouse-server"
}

# ---------------------------------------------------------------------------------------- start

# Lines of each node's error log before its current start (to report only the new errors).
declare -A CH_ERRLOG_LINES=()

clickhouse_start() {
    local inst pid
    inst=$(instance_name clickhouse "$1")
    clickhouse_write_config "$1"
    clickhouse_node "$1"
    CH_ERRLOG_LINES[$1]=0
    [[ ! -f $CN_ERRLOG ]] || CH_ERRLOG_LINES[$1]=$(wc -l <"$CN_ERRLOG")
    echo "=== $(date -u +%FT%TZ) start" >>"$CN_STDOUT"
    # Run from the state dir: the server writes config-preprocessed files next to its config.
    pid=$(cd "$CN_DIR" && spawn "$CN_STDOUT" "$CH_SERVER" "--config-file=$CN_CONFIG")
    echo "$pid" >"$(pid_file "$inst")"
    local extra=""
    ((SECURE == 0)) || extra=", https $BIND:$CN_HTTPS_PORT"
    say "$inst: started pid $pid (http $BIND:$CN_HTTP_PORT, native $BIND:$CN_TCP_PORT$extra)"
}

# Errors the server logged since this start (unknown settings and the like).
clickhouse_after_start() {
    clickhouse_node "$1"
    [[ -f $CN_ERRLOG ]] || return 0
    local new
    new=$(tail -n "+$((${CH_ERRLOG_LINES[$1]:-0} + 1))" "$CN_ERRLOG" | grep -E '<(Error|Warning)>|Unknown|unknown' | head -n 10 || true)
    [[ -z $new ]] || warn "$(instance_name clickhouse "$1") logged errors during startup ($CN_ERRLOG):"$'\n'"$new"
}

# Nothing lives inside a running server that the profile must bring in line (users.xml has the users).
clickhouse_converge() { :; }

# ---------------------------------------------------------------------------------------- health

# Runs the SQL $2 on node $1 over HTTP (timeout $3 seconds, default 5) and prints the result.
ch_query() {
    clickhouse_node "$1"
    curl -fsS --max-time "${3:-5}" "http://$BIND:$CN_HTTP_PORT/" --data-binary "$2" 2>/dev/null
}

# The same over node $1's HTTPS port as the secure profile's user (the password goes to curl on
# stdin, not on its command line), the certificate checked against the profile's CA.
ch_https_query() {
    clickhouse_node "$1"
    printf 'user = "%s:%s"\n' "$SECURE_USER" "$(secure_password clickhouse)" |
        curl -fsS --max-time "${3:-5}" --cacert "$SECURE_CA" -K - "https://$BIND:$CN_HTTPS_PORT/" --data-binary "$2" 2>/dev/null
}

clickhouse_healthy() {
    [[ $(ch_query "$1" 'SELECT 1' 2) == 1 ]] || return 1
    ! running_secure "$(instance_name clickhouse "$1")" || [[ $(ch_https_query "$1" 'SELECT 1' 2) == 1 ]]
}

# ---------------------------------------------------------------------------------------- status

clickhouse_status() {
    local inst pid version health rc=0
    inst=$(instance_name clickhouse "$1")
    pid=$(find_pid "$inst")
    clickhouse_node "$1"
    if [[ -z $pid ]]; then
        version=$(dpkg-query -W -f '${Version}' clickhouse-server 2>/dev/null || echo "not installed")
        local extra=""
        ((SECURE == 0)) || extra=" (secure: https://$BIND:$CN_HTTPS_PORT)"
        printf '%-11s %s\n' "$inst:" stopped "" "address http://$BIND:$CN_HTTP_PORT$extra, data $CN_DIR/data, package $version"
        return 3
    fi
    if version=$(ch_query "$1" 'SELECT version()' 3); then
        health="running, answering"
    else
        health="running, NOT answering"
        version="?"
        rc=3
    fi
    local profile_lines=()
    if ((SECURE)) && ! running_secure "$inst"; then
        profile_lines=("" "secure: NOT on in the running server (started without --secure): 'stack.sh up' restarts it with it")
        rc=3
    elif ((SECURE)) && [[ $(ch_https_query "$1" 'SELECT 1' 3) == 1 ]]; then
        profile_lines=("" "secure: https://$BIND:$CN_HTTPS_PORT (user $SECURE_USER) answering")
    elif ((SECURE)); then
        profile_lines=("" "secure: https://$BIND:$CN_HTTPS_PORT (user $SECURE_USER) NOT answering")
        rc=3
    fi
    printf '%-11s %s\n' "$inst:" "$health" \
        "" "pid $pid, address http://$BIND:$CN_HTTP_PORT (native $BIND:$CN_TCP_PORT)" \
        "${profile_lines[@]}" \
        "" "version ClickHouse $version" \
        "" "data $CN_DIR/data, log $CN_LOG"
    return "$rc"
}
