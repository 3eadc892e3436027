# shellcheck shell=bash
# The shared library of scripts/stack.sh: messages, time, instances, processes and pid files,
# ports, package installs, the state-dir lock and the health wait. Sourced by scripts/stack.sh
# (which sets the shell options), never run on its own.
#
# Services and instances. Each service lives in scripts/stack/<service>.sh and defines functions
# named <service>_<verb>; the commands in scripts/stack.sh only call those. An instance is one
# node of a service: "kafka" is node 1 of kafka, "kafka-2" its node 2. An instance keeps its
# state in $STATE_DIR/<instance>/ and its pid in $STATE_DIR/<instance>/<instance>.pid.
#
# The contract (N is the node index, 1 for the single-node stack):
#   <svc>_validate              check the service's environment variables (die on a bad one)
#   <svc>_packages              print the Debian packages still missing for it (one a line)
#   <svc>_prepare               after the packages: fetch or check what else it needs
#   <svc>_ports N               print label=port words (every port the node listens on)
#   <svc>_port_vars             print the variable names that choose its ports (for messages)
#   <svc>_owns_cmdline N CMD    true when the command line CMD is this state dir's node N
#   <svc>_start N               write the node's configuration, spawn it, write its pid file
#   <svc>_start_timeout         seconds a start may take before `up` gives up
#   <svc>_healthy N             true when node N answers
#   <svc>_after_start N         after the health wait (whatever its result): report, tidy up
#   <svc>_converge N WHEN       once node N answers (WHEN: started, or running from before): bring
#                               what lives inside it in line with the profile; false on failure
#   <svc>_log_files N           print the logs `stack.sh logs` shows
#   <svc>_failure_files N       print the files whose tails explain a failed start
#   <svc>_status N              print the node's status block; return 0 when it answers, 3 if not
#   <svc>_summary N             print how to reach the node, for `up`'s last line
# A profile (--secure, scripts/stack/secure.sh; a later --cluster) changes which instances run
# (stack_instances in scripts/stack.sh) and what a service's config writers put in its files.

readonly BIND=127.0.0.1
readonly STOP_TIMEOUT=${LEDGER_STOP_TIMEOUT:-30}

STATE_DIR=$(realpath -m -- "${LEDGER_STATE_DIR:-$REPO_ROOT/.state}")
CACHE_DIR=$(realpath -m -- "${LEDGER_CACHE_DIR:-$HOME/.cache/llm-ledger}")
# shellcheck disable=SC2034 # CACHE_DIR: used by the service files
readonly STATE_DIR CACHE_DIR

# Every service whose file is loaded; each scripts/stack/<service>.sh adds itself.
STACK_SERVICES=()

# ---------------------------------------------------------------------------------------- messages

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

check_port_var() {
    local name=$1 value=$2
    if [[ ! $value =~ ^[0-9]+$ ]] || ((value < 1 || value > 65535)); then
        die "$name must be a TCP port, got '$value'"
    fi
}

# ---------------------------------------------------------------------------------------- instances

# The instance name of node $2 of service $1: kafka 1 -> kafka, kafka 2 -> kafka-2.
instance_name() {
    if (($2 == 1)); then echo "$1"; else echo "$1-$2"; fi
}

# Splits instance $1 into the globals INST_SVC and INST_NODE (no subshell: used in loops).
parse_instance() {
    if [[ $1 =~ ^(.+)-([0-9]+)$ ]]; then
        INST_SVC=${BASH_REMATCH[1]} INST_NODE=${BASH_REMATCH[2]}
    else
        INST_SVC=$1 INST_NODE=1
    fi
}

# Calls <service>_$2 of instance $1 with its node index and the remaining arguments.
instance_call() {
    local INST_SVC INST_NODE verb=$2
    parse_instance "$1"
    shift 2
    "${INST_SVC}_$verb" "$INST_NODE" "$@"
}

# ---------------------------------------------------------------------------------------- processes

# True when $1 is a live process (not a zombie).
pid_alive() {
    local pid=$1 stat
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    # `read`, not $(<file): a failed $(<file) ends the script under set -e, whatever the context.
    read -r stat 2>/dev/null <"/proc/$pid/stat" || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# The command line of pid $1 as its arguments each followed by one space (no subshell).
CMDLINE=
read_cmdline() {
    local -a args=()
    CMDLINE=
    mapfile -d '' args 2>/dev/null <"/proc/$1/cmdline" || return 0
    ((${#args[@]} == 0)) || printf -v CMDLINE '%s ' "${args[@]}"
}

# True when pid $2 is the server of instance $1 in this state dir (judged by its command line).
is_our_process() {
    local INST_SVC INST_NODE
    pid_alive "$2" || return 1
    parse_instance "$1"
    read_cmdline "$2"
    "${INST_SVC}_owns_cmdline" "$INST_NODE" "$CMDLINE"
}

pid_file() { echo "$STATE_DIR/$1/$1.pid"; }

# Prints the pid of this state dir's running instance $1, or nothing. Falls back to a scan of
# /proc (and repairs the pid file) when the pid file is missing or stale but our server is running.
find_pid() {
    local inst=$1 file pid
    file=$(pid_file "$inst")
    if [[ -f $file ]]; then
        pid=$(<"$file")
        if is_our_process "$inst" "$pid"; then
            echo "$pid"
            return 0
        fi
    fi
    local entry
    for entry in /proc/[0-9]*; do
        pid=${entry#/proc/}
        if is_our_process "$inst" "$pid"; then
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

# Waits for pid $2 (instance $1, already sent SIGTERM at now_ms $3) to exit; SIGKILL after STOP_TIMEOUT.
wait_stopped() {
    local inst=$1 pid=$2 t0=$3 deadline
    deadline=$((t0 + STOP_TIMEOUT * 1000))
    while pid_alive "$pid" && (($(now_ms) < deadline)); do sleep 0.2; done
    if pid_alive "$pid"; then
        warn "$inst (pid $pid) still running after ${STOP_TIMEOUT}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while pid_alive "$pid"; do sleep 0.1; done
    fi
    say "$inst stopped (pid $pid) in $(since "$t0")"
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

# True when every listener on port $1 belongs to one of the pids in RESTARTING (servers of this
# stack that `up` stops before it starts them again with another profile).
port_held_by_restarting() {
    ((${#RESTARTING[@]} > 0)) && command -v ss >/dev/null || return 1
    local owners pid
    owners=$(ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | sort -u) || return 1
    for pid in ${owners//pid=/}; do
        [[ " ${RESTARTING[*]} " == *" $pid "* ]] || return 1
    done
}
RESTARTING=()

# Fails (after listing every taken port) unless all the given label=port ports are free (or held
# by a server in RESTARTING).
require_free_ports() {
    local port busy=0
    for port in "$@"; do
        if port_listening "${port#*=}" && ! port_held_by_restarting "${port#*=}"; then
            printf '%s\n' "stack: error: port ${port#*=} (${port%%=*}) is already in use by something that is not this stack's server:" >&2
            port_owner "${port#*=}" >&2
            busy=1
        fi
    done
    if ((busy)); then
        local svc var vars=""
        for svc in "${STACK_SERVICES[@]}"; do
            for var in $("${svc}_port_vars"); do vars+="${vars:+, }$var"; done
        done
        echo "stack: stop that process or choose other ports ($vars)" >&2
        exit 1
    fi
}

# Fails when two of the given label=port words name the same port.
require_distinct_ports() {
    local dups
    dups=$(printf '%s\n' "${@#*=}" | sort | uniq -d)
    [[ -z $dups ]] || die "the same port is configured twice: $(echo "$dups" | tr '\n' ' ')"
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

# Installs what the stack itself and services $@ lack (one apt-get run), then prepares each.
ensure_installed() {
    local pkgs=() svc
    command -v curl >/dev/null || pkgs+=(curl ca-certificates)
    command -v ss >/dev/null || pkgs+=(iproute2)
    command -v setsid >/dev/null && command -v flock >/dev/null || pkgs+=(util-linux)
    for svc in "$@"; do
        # shellcheck disable=SC2207 # package names are single words
        pkgs+=($("${svc}_packages"))
    done
    if ((${#pkgs[@]} > 0)); then
        mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | awk '!seen[$0]++')
        apt_install "${pkgs[@]}"
    fi
    for svc in "$@"; do
        "${svc}_prepare"
    done
}

# ---------------------------------------------------------------------------------------- lock

take_lock() {
    mkdir -p "$STATE_DIR"
    exec 9>"$STATE_DIR/.lock"
    flock -w 300 9 || die "another stack.sh is working on $STATE_DIR"
}

# ---------------------------------------------------------------------------------------- health

show_failure_logs() {
    local f
    for f in $(instance_call "$1" failure_files); do
        [[ -s $f ]] || continue
        printf '%s\n' "----- last 40 lines of $f" >&2
        tail -n 40 "$f" >&2
    done
}

# Waits until instance $1 (pid $2, started at now_ms $4) is healthy; fails with its log tail after
# $3 seconds or if it dies.
wait_healthy() {
    local inst=$1 pid=$2 timeout_s=$3 t0=${4:-$(now_ms)} deadline
    deadline=$((t0 + timeout_s * 1000))
    while :; do
        if ! pid_alive "$pid"; then
            echo "stack: error: $inst (pid $pid) exited during startup" >&2
            show_failure_logs "$inst"
            rm -f "$(pid_file "$inst")"
            return 1
        fi
        if instance_call "$inst" healthy; then break; fi
        if (($(now_ms) >= deadline)); then
            echo "stack: error: $inst (pid $pid) did not become healthy within ${timeout_s}s (still running; see 'stack.sh logs $inst', stop with 'stack.sh down')" >&2
            show_failure_logs "$inst"
            return 1
        fi
        sleep 0.5
    done
    say "$inst: healthy $(since "$t0") after start"
}
