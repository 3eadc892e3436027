# shellcheck shell=bash
# The schema registry of scripts/stack.sh (`up --registry`): Apicurio Registry 2.6, whose
# Confluent-compatible REST API (at /apis/ccompat/v7) the ledger's producers and processor use
# in the Confluent framing. From Maven Central (the app's tar.gz, unpacked into the cache), run on
# the machine's Java 17 (Apicurio 3.x needs Java 21). Schemas are kept in an H2 database file
# under $STATE_DIR/registry/data, so ids survive restarts (the app's default is in memory).
# With the secure profile it also serves HTTPS with the profile's certificate.
# Sourced after lib.sh and secure.sh; defines the registry_<verb> functions of the service
# contract (lib.sh). The option belongs to the state dir, like the secure profile: once `up
# --registry` has made $STATE_DIR/registry, every later `up` starts the registry too; to drop it:
# `down`, `rm -r $STATE_DIR/registry` (its schemas with it), `up`.

STACK_SERVICES+=(registry)

readonly REGISTRY_VERSION=2.6.13.Final
readonly REGISTRY_ARTIFACT="io.apicurio:apicurio-registry-app:$REGISTRY_VERSION:tar.gz:all"
readonly REGISTRY_HOME="$CACHE_DIR/apicurio-registry-$REGISTRY_VERSION"
readonly REGISTRY_JAR="$REGISTRY_HOME/apicurio-registry-app-$REGISTRY_VERSION-runner.jar"
readonly REGISTRY_API=/apis/ccompat/v7
readonly REGISTRY_PORT=${LEDGER_REGISTRY_PORT:-8081}
readonly REGISTRY_HTTPS_PORT=${LEDGER_REGISTRY_HTTPS_PORT:-8444}
readonly REGISTRY_HEAP=${LEDGER_REGISTRY_HEAP:--Xms64m -Xmx384m}
readonly REGISTRY_START_TIMEOUT=${LEDGER_REGISTRY_START_TIMEOUT:-90}

# 1 when the stack runs (or is to run) the registry: the state dir has one.
REGISTRY=0
[[ ! -d $STATE_DIR/registry ]] || REGISTRY=1

# Chooses whether `up` runs the registry: with --registry ($1 = 1) or when the state dir has it.
select_registry() {
    if (($1)); then
        REGISTRY=1
    elif ((REGISTRY)); then
        say "registry: kept, this state dir was set up by 'up --registry' (to drop it: stack.sh down; rm -r $STATE_DIR/registry; stack.sh up)"
    fi
}

# Sets node $1's globals: RN_DIR, RN_DB (the H2 database, without its .mv.db suffix), RN_LOG.
registry_node() {
    (($1 == 1)) || die "registry node $1: the stack has a single registry"
    RN_DIR="$STATE_DIR/registry"
    RN_DB="$RN_DIR/data/registry"
    RN_LOG="$RN_DIR/logs/registry.log"
}

registry_validate() {
    check_port_var LEDGER_REGISTRY_PORT "$REGISTRY_PORT"
    check_port_var LEDGER_REGISTRY_HTTPS_PORT "$REGISTRY_HTTPS_PORT"
    [[ $REGISTRY_START_TIMEOUT =~ ^[0-9]+$ ]] || die "LEDGER_REGISTRY_START_TIMEOUT must be a number of seconds"
}

registry_ports() {
    echo "registry=$REGISTRY_PORT"
    ((SECURE == 0)) || echo "registry-https=$REGISTRY_HTTPS_PORT"
}

registry_port_vars() {
    echo LEDGER_REGISTRY_PORT
    ((SECURE == 0)) || echo LEDGER_REGISTRY_HTTPS_PORT
}

# The registry of this state dir: the only java process given this state dir's database.
registry_owns_cmdline() {
    registry_node "$1"
    [[ $2 == *" -DREGISTRY_DATASOURCE_URL=jdbc:h2:file:$RN_DB "* ]]
}

registry_start_timeout() { echo "$REGISTRY_START_TIMEOUT"; }

# The base URLs of the Confluent API (the ledger's schema.registry.url).
registry_url() { echo "http://$BIND:$REGISTRY_PORT$REGISTRY_API"; }
registry_https_url() { echo "https://$BIND:$REGISTRY_HTTPS_PORT$REGISTRY_API"; }

registry_summary() {
    local extra=""
    ((SECURE == 0)) || extra=" (and $(registry_https_url))"
    echo "registry $(registry_url)$extra"
}

registry_log_files() {
    registry_node "$1"
    echo "$RN_LOG"
}

registry_failure_files() { registry_log_files "$1"; }

registry_after_start() { :; }

registry_converge() { :; }

# ---------------------------------------------------------------------------------------- install

registry_packages() {
    command -v java >/dev/null || echo openjdk-17-jre-headless
    [[ -f $REGISTRY_JAR ]] || command -v mvn >/dev/null || echo maven
    secure_packages
}

registry_prepare() {
    [[ -f $REGISTRY_JAR ]] && return 0
    say "fetching Apicurio Registry $REGISTRY_VERSION from Maven Central into $REGISTRY_HOME"
    local tmp="$REGISTRY_HOME.tmp.$$" t0
    t0=$(now_ms)
    rm -rf "$tmp"
    mkdir -p "$tmp/unpacked"
    if ! mvn -B -q -Dstyle.color=never "$MAVEN_DEPENDENCY_PLUGIN:copy" -Dartifact="$REGISTRY_ARTIFACT" \
        -DoutputDirectory="$tmp" >"$tmp/mvn.log" 2>&1; then
        tail -n 40 "$tmp/mvn.log" >&2
        rm -rf "$tmp"
        die "mvn could not fetch $REGISTRY_ARTIFACT (is Maven Central reachable?)"
    fi
    tar -xzf "$tmp"/apicurio-registry-app-*.tar.gz -C "$tmp/unpacked" || die "unpacking the registry failed"
    [[ -f $tmp/unpacked/${REGISTRY_JAR##*/} ]] || die "the registry's tar.gz holds no ${REGISTRY_JAR##*/}"
    rm -rf "$REGISTRY_HOME"
    mv "$tmp/unpacked" "$REGISTRY_HOME"
    rm -rf "$tmp"
    say "registry ready in $(since "$t0")"
}

# ---------------------------------------------------------------------------------------- start

registry_start() {
    registry_node "$1"
    mkdir -p "$RN_DIR/data" "$RN_DIR/logs"
    local -a heap tls=()
    read -r -a heap <<<"$REGISTRY_HEAP"
    if ((SECURE)); then
        tls=(-Dquarkus.http.ssl-port="$REGISTRY_HTTPS_PORT" -Dquarkus.http.ssl.certificate.files="$SECURE_CERT"
            -Dquarkus.http.ssl.certificate.key-files="$SECURE_KEY")
    fi
    echo "=== $(date -u +%FT%TZ) start" >>"$RN_LOG"
    local pid
    # The datasource URL is a property the app's defaults read (REGISTRY_DATASOURCE_URL), not
    # quarkus.datasource.jdbc.url, which its %prod profile would override.
    pid=$(spawn "$RN_LOG" java "${heap[@]}" -XX:+ExitOnOutOfMemoryError -XX:TieredStopAtLevel=1 \
        -DREGISTRY_DATASOURCE_URL="jdbc:h2:file:$RN_DB" -Dquarkus.http.host="$BIND" \
        -Dquarkus.http.port="$REGISTRY_PORT" "${tls[@]}" -jar "$REGISTRY_JAR")
    echo "$pid" >"$(pid_file registry)"
    say "registry: started pid $pid ($(registry_url)$( ((SECURE == 0)) || echo ", $(registry_https_url)"))"
}

# ---------------------------------------------------------------------------------------- health

# Prints the body of GET $1 (a path) from the registry's plain port, or with $2 = secure from its
# HTTPS port, verified against the profile's CA; fails when it does not answer 2xx.
registry_get() {
    local url="http://$BIND:$REGISTRY_PORT$1" ca=()
    [[ ${2:-} != secure ]] || url="https://$BIND:$REGISTRY_HTTPS_PORT$1" ca=(--cacert "$SECURE_CA")
    curl -fsS -m 3 "${ca[@]}" "$url" 2>/dev/null
}

registry_healthy() {
    registry_get /health/ready >/dev/null || return 1
    ! running_secure registry || registry_get "$REGISTRY_API/subjects" secure >/dev/null
}

# ---------------------------------------------------------------------------------------- status

registry_status() {
    local pid health rc=0 subjects profile_lines=()
    pid=$(find_pid registry)
    registry_node "$1"
    if [[ -z $pid ]]; then
        printf '%-11s %s\n' "registry:" stopped "" "address $(registry_url), data $RN_DIR/data"
        return 3
    fi
    if subjects=$(registry_get "$REGISTRY_API/subjects"); then
        health="running, answering ($(grep -o '"[^"]*"' <<<"$subjects" | grep -c . || true) subjects)"
    else
        health="running, NOT answering"
        rc=3
    fi
    if ((SECURE)) && ! running_secure registry; then
        profile_lines=("" "secure: NOT on in the running registry (started without --secure): 'stack.sh up' restarts it with it")
        rc=3
    elif ((SECURE)) && registry_get "$REGISTRY_API/subjects" secure >/dev/null; then
        profile_lines=("" "secure: $(registry_https_url) answering")
    elif ((SECURE)); then
        profile_lines=("" "secure: $(registry_https_url) NOT answering")
        rc=3
    fi
    printf '%-11s %s\n' "registry:" "$health" \
        "" "pid $pid, Confluent API $(registry_url)" \
        "${profile_lines[@]}" \
        "" "version Apicurio Registry $REGISTRY_VERSION" \
        "" "data $RN_DIR/data, log $RN_LOG"
    return "$rc"
}
