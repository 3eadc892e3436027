# shellcheck shell=bash
# Apache Kafka for scripts/stack.sh: a KRaft node (broker and controller in one JVM) whose jars
# come from Maven Central (scripts/kafka/pom.xml) and run on the machine's Java 17.
# Sourced after lib.sh; defines the kafka_<verb> functions of the service contract (lib.sh); the
# files a node runs with are written by scripts/stack/kafka-config.sh. Everything that depends on
# the node takes its index; kafka_node sets that node's paths and ports, so a cluster profile
# changes the layout there and the quorum in kafka_properties_roles.

STACK_SERVICES+=(kafka)

readonly KAFKA_VERSION=4.1.1
readonly MAVEN_DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
readonly KAFKA_HOME="$CACHE_DIR/kafka-$KAFKA_VERSION"
readonly KAFKA_LIB="$KAFKA_HOME/lib"
readonly KAFKA_POM="$SCRIPT_DIR/kafka/pom.xml"

readonly KAFKA_PORT=${LEDGER_KAFKA_PORT:-9092}
readonly KAFKA_CONTROLLER_PORT=${LEDGER_KAFKA_CONTROLLER_PORT:-9093}
readonly KAFKA_SECURE_PORT=${LEDGER_KAFKA_SECURE_PORT:-9094}
readonly KAFKA_HEAP=${LEDGER_KAFKA_HEAP:--Xms512m -Xmx1g}
readonly KAFKA_AUTO_CREATE_TOPICS=${LEDGER_KAFKA_AUTO_CREATE_TOPICS:-false}
readonly KAFKA_START_TIMEOUT=${LEDGER_KAFKA_START_TIMEOUT:-90}

# Sets node $1's globals: KN_ID, KN_DIR, KN_PORT, KN_CONTROLLER_PORT, KN_SECURE_PORT (the SASL_SSL
# listener of the secure profile), KN_PROPERTIES, KN_LOG, KN_STDOUT.
# Node N of the cluster profile (scripts/stack/cluster.sh) has its ports CLUSTER_PORT_STEP * (N-1) up.
kafka_node() {
    (($1 == 1 || (CLUSTER && $1 <= CLUSTER_NODES))) || die "kafka node $1: not a node of this stack's profile"
    local offset=$((CLUSTER_PORT_STEP * ($1 - 1)))
    # shellcheck disable=SC2034 # KN_ID is read by kafka-config.sh
    KN_ID=$1
    KN_DIR="$STATE_DIR/$(instance_name kafka "$1")"
    KN_PORT=$((KAFKA_PORT + offset))
    KN_CONTROLLER_PORT=$((KAFKA_CONTROLLER_PORT + offset))
    KN_SECURE_PORT=$((KAFKA_SECURE_PORT + offset))
    KN_PROPERTIES="$KN_DIR/server.properties"
    KN_LOG="$KN_DIR/logs/server.log"
    KN_STDOUT="$KN_DIR/logs/stdout.log"
}

kafka_validate() {
    check_port_var LEDGER_KAFKA_PORT "$KAFKA_PORT"
    check_port_var LEDGER_KAFKA_CONTROLLER_PORT "$KAFKA_CONTROLLER_PORT"
    check_port_var LEDGER_KAFKA_SECURE_PORT "$KAFKA_SECURE_PORT"
    [[ $KAFKA_AUTO_CREATE_TOPICS == true || $KAFKA_AUTO_CREATE_TOPICS == false ]] ||
        die "LEDGER_KAFKA_AUTO_CREATE_TOPICS must be true or false"
}

kafka_ports() {
    kafka_node "$1"
    echo "$(instance_name kafka "$1")=$KN_PORT" "$(instance_name kafka "$1")-controller=$KN_CONTROLLER_PORT"
    ((SECURE == 0)) || echo "$(instance_name kafka "$1")-sasl-ssl=$KN_SECURE_PORT"
}

kafka_port_vars() {
    echo LEDGER_KAFKA_PORT LEDGER_KAFKA_CONTROLLER_PORT
    ((SECURE == 0)) || echo LEDGER_KAFKA_SECURE_PORT
}

kafka_owns_cmdline() {
    kafka_node "$1"
    [[ $2 == *" kafka.Kafka $KN_PROPERTIES "* ]]
}

kafka_start_timeout() { echo "$KAFKA_START_TIMEOUT"; }

kafka_summary() {
    kafka_node "$1"
    local extra=""
    ((SECURE == 0)) || extra=" (SASL_SSL $BIND:$KN_SECURE_PORT)"
    echo "$(instance_name kafka "$1") $BIND:$KN_PORT$extra"
}

kafka_log_files() {
    kafka_node "$1"
    echo "$KN_LOG"
}

kafka_failure_files() {
    kafka_node "$1"
    echo "$KN_LOG" "$KN_STDOUT"
}

kafka_after_start() { :; }

# In the secure profile: the SCRAM credentials when the metadata lacks them (a state dir formatted
# without --secure), then, after those or a start ($2 = started), a check that a client gets in.
kafka_converge() {
    ((SECURE)) && running_secure "$(instance_name kafka "$1")" || return 0
    if ! kafka_scram_current "$1"; then
        kafka_add_scram "$1" || return 1
    elif [[ $2 != started ]]; then
        return 0
    fi
    kafka_check_sasl "$1"
}

# ---------------------------------------------------------------------------------------- install

kafka_packages() {
    command -v java >/dev/null || echo openjdk-17-jre-headless
    kafka_jars_cached || command -v mvn >/dev/null || echo maven
    secure_packages
}

kafka_prepare() { ensure_kafka_jars; }

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

# ---------------------------------------------------------------------------------------- start

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

# Formats node $1's KRaft storage once; the cluster id is kept in its cluster.id file.
kafka_format() {
    kafka_node "$1"
    local meta="$KN_DIR/data/meta.properties" id_file="$KN_DIR/cluster.id" id quorum=(--standalone)
    # A cluster's nodes share node 1's id; their quorum is the static controller.quorum.voters.
    ((CLUSTER == 0)) || id_file="$STATE_DIR/kafka/cluster.id" quorum=()
    mkdir -p "$(dirname "$id_file")"
    if [[ -f $meta ]]; then
        [[ -f $id_file ]] || sed -n 's/^cluster.id=//p' "$meta" >"$id_file"
        return 0
    fi
    [[ -s $id_file ]] || new_cluster_id >"$id_file"
    id=$(<"$id_file")
    local t0 out scram=() password
    t0=$(now_ms)
    if ((SECURE)); then
        # The secure profile's client user goes into the first metadata (its password is on this
        # command line for a second: a loopback development stack).
        password=$(secure_password kafka)
        scram=(--add-scram "SCRAM-SHA-512=[name=$SECURE_USER,password=$password]")
    fi
    if ! out=$(kafka_java -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$KN_DIR/log4j2.yaml" -Dkafka.logs.dir="$KN_DIR/logs" \
        kafka.tools.StorageTool format "${quorum[@]}" -g -t "$id" -c "$KN_PROPERTIES" "${scram[@]}" 2>&1); then
        printf '%s\n' "$out" >&2
        die "formatting the Kafka storage failed"
    fi
    ((SECURE == 0)) || secure_sha256 "$password" >"$KN_DIR/scram-$SECURE_USER.sha256"
    say "$(instance_name kafka "$1"): storage formatted (cluster id $id${scram:+, SCRAM-SHA-512 user $SECURE_USER}) in $(since "$t0")"
}

# True when node $1's metadata holds the SCRAM credentials of the secure profile's user with the
# current password: the file scram-<user>.sha256 remembers the password it was given.
kafka_scram_current() {
    kafka_node "$1"
    local marker="$KN_DIR/scram-$SECURE_USER.sha256"
    [[ -f $marker && $(<"$marker") == "$(secure_sha256 "$(secure_password kafka)")" ]]
}

# Adds (or replaces) the SCRAM-SHA-512 credentials of the secure profile's user through the
# running node $1.
kafka_add_scram() {
    kafka_node "$1"
    local password out rc=0
    password=$(secure_password kafka)
    # --add-config, not --add-config-file: Kafka 4.1.1 reads the file's key as SCRAM_SHA_512 and
    # rejects it. The password is on the command line for two seconds (a loopback development stack).
    out=$(timeout 60 java -XX:TieredStopAtLevel=1 -Xshare:auto -cp "$KAFKA_LIB/*" kafka.admin.ConfigCommand \
        --bootstrap-server "$BIND:$KN_PORT" --command-config "$KN_DIR/admin.properties" --alter \
        --add-config "SCRAM-SHA-512=[password=$password]" --entity-type users --entity-name "$SECURE_USER" 2>&1) || rc=$?
    if ((rc != 0)); then
        printf '%s\n' "${out//"$password"/<password>}" >&2
        warn "$(instance_name kafka "$1"): adding the SCRAM credentials of user $SECURE_USER failed (exit $rc)"
        return 1
    fi
    secure_sha256 "$password" >"$KN_DIR/scram-$SECURE_USER.sha256"
    say "$(instance_name kafka "$1"): SCRAM-SHA-512 credentials of user $SECURE_USER added"
}

# True when a client gets in over node $1's SASL_SSL listener (a new credential takes a moment).
kafka_check_sasl() {
    local try
    for try in 1 2 3; do
        if kafka_topics "$1" secure >/dev/null; then
            kafka_node "$1"
            say "$(instance_name kafka "$1"): SASL_SSL $BIND:$KN_SECURE_PORT lets user $SECURE_USER in (SCRAM-SHA-512, TLS)"
            return 0
        fi
        ((try == 3)) || sleep 1
    done
    warn "$(instance_name kafka "$1"): user $SECURE_USER cannot get in over SASL_SSL $BIND:$KN_SECURE_PORT (see 'stack.sh logs kafka')"
    return 1
}

kafka_start() {
    local inst
    inst=$(instance_name kafka "$1")
    kafka_write_config "$1"
    kafka_format "$1"
    kafka_node "$1"
    local -a heap
    read -r -a heap <<<"$KAFKA_HEAP"
    local pid
    echo "=== $(date -u +%FT%TZ) start" >>"$KN_STDOUT"
    pid=$(spawn "$KN_STDOUT" java "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dkafka.logs.dir="$KN_DIR/logs" -Dlog4j2.configurationFile="$KN_DIR/log4j2.yaml" \
        -cp "$KAFKA_LIB/*" kafka.Kafka "$KN_PROPERTIES")
    echo "$pid" >"$(pid_file "$inst")"
    local extra=""
    ((SECURE == 0)) || extra=", SASL_SSL $BIND:$KN_SECURE_PORT"
    say "$inst: started pid $pid ($BIND:$KN_PORT$extra, controller $BIND:$KN_CONTROLLER_PORT)"
}

# ---------------------------------------------------------------------------------------- health

# A Metadata request (v4: all topics) over a raw socket to node $1; true when the broker answers
# with a broker list. Takes milliseconds where a JVM tool takes two seconds. Kafka opens its
# PLAINTEXT listener only once the broker is unfenced, so an answer means it serves clients.
kafka_metadata_ok() {
    kafka_node "$1"
    local reply
    # shellcheck disable=SC2016 # $0 and $1 are the inner shell's arguments
    reply=$(timeout 3 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        # size 20 | api key 3 (Metadata) | version 4 | correlation id 1 | client id "probe"
        # | topics: null (all) | allow_auto_topic_creation: false
        printf "\x00\x00\x00\x14\x00\x03\x00\x04\x00\x00\x00\x01\x00\x05probe\xff\xff\xff\xff\x00" >&3
        head -c 20 <&3 | od -An -tx1 | tr -d " \n"
    ' "$BIND" "$KN_PORT" 2>/dev/null) || return 1
    # size (any) | correlation id 1 | throttle ms (any) | broker count >= 1 | first node id (any)
    [[ ${#reply} == 40 && ${reply:8:8} == 00000001 && ${reply:24:8} != 00000000 ]]
}

# A metadata request through node $1's admin client; prints the topic list. With $2 = secure, over
# the SASL_SSL listener as the secure profile's user.
kafka_topics() {
    kafka_node "$1"
    local port=$KN_PORT config="$KN_DIR/admin.properties"
    [[ ${2:-} != secure ]] || port=$KN_SECURE_PORT config="$KN_DIR/admin-secure.properties"
    timeout 30 java -XX:TieredStopAtLevel=1 -Xshare:auto -cp "$KAFKA_LIB/*" org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "$BIND:$port" --command-config "$config" --list 2>/dev/null
}

# True when node $1's SASL_SSL listener completes a TLS handshake with a certificate the CA signed
# for $BIND (the SCRAM part needs a JVM client: kafka_check_sasl).
kafka_tls_ok() {
    kafka_node "$1"
    timeout 3 openssl s_client -connect "$BIND:$KN_SECURE_PORT" -CAfile "$SECURE_CA" -verify_return_error \
        -verify_ip "$BIND" </dev/null >/dev/null 2>&1
}

kafka_healthy() {
    kafka_metadata_ok "$1" || return 1
    ! running_secure "$(instance_name kafka "$1")" || kafka_tls_ok "$1"
}

# ---------------------------------------------------------------------------------------- status

kafka_status() {
    local inst pid
    inst=$(instance_name kafka "$1")
    pid=$(find_pid "$inst")
    kafka_node "$1"
    if [[ -z $pid ]]; then
        local extra=""
        ((SECURE == 0)) || extra=" (secure: SASL_SSL $BIND:$KN_SECURE_PORT)"
        printf '%-11s %s\n' "$inst:" stopped "" "address $BIND:$KN_PORT$extra, data $KN_DIR/data"
        return 3
    fi
    local rc=0 topics health profile_lines=()
    if kafka_metadata_ok "$1"; then
        health="running, answering"
        if topics=$(kafka_topics "$1"); then health+=" ($(grep -c . <<<"$topics" || true) topics)"; fi
    else
        health="running, NOT answering"
        rc=3
    fi
    kafka_node "$1"
    if ((SECURE)) && ! running_secure "$inst"; then
        profile_lines=("" "secure: NOT on in the running broker (started without --secure): 'stack.sh up' restarts it with it")
        rc=3
    elif ((SECURE)) && kafka_topics "$1" secure >/dev/null; then
        profile_lines=("" "secure: SASL_SSL $BIND:$KN_SECURE_PORT (SCRAM-SHA-512, user $SECURE_USER) answering")
    elif ((SECURE)); then
        profile_lines=("" "secure: SASL_SSL $BIND:$KN_SECURE_PORT (SCRAM-SHA-512, user $SECURE_USER) NOT answering")
        rc=3
    fi
    printf '%-11s %s\n' "$inst:" "$health" \
        "" "pid $pid, address $BIND:$KN_PORT (controller $BIND:$KN_CONTROLLER_PORT)" \
        "${profile_lines[@]}" \
        "" "version Apache Kafka $KAFKA_VERSION (KRaft, cluster id $(cat "$KN_DIR/cluster.id" 2>/dev/null || echo '?'))" \
        "" "data $KN_DIR/data, log $KN_LOG"
    return "$rc"
}
