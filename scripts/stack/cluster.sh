# shellcheck shell=bash
# The cluster profile of scripts/stack.sh (`up --cluster`): a three-node Apache Kafka cluster in
# KRaft mode on loopback, each node both controller and broker with its own ports and directories
# (static quorum: controller.quorum.voters lists the three), internal topics replicated 3 times
# with min ISR 2, and the ledger's topics made with `[topics] replication_factor = 3` and
# `min_insync_replicas = 2` through $STATE_DIR/cluster/ledger.toml. Sourced after lib.sh.
#
# Node N (1, 2, 3) listens on LEDGER_KAFKA_PORT + 10*(N-1) and its controller on
# LEDGER_KAFKA_CONTROLLER_PORT + 10*(N-1): 9092/9093, 9102/9103, 9112/9113 by default. Its state
# is in $STATE_DIR/kafka, $STATE_DIR/kafka-2, $STATE_DIR/kafka-3; all share node 1's cluster id.
#
# The profile belongs to the state dir: a single-node dir cannot become a cluster (its metadata
# quorum has one voter), so `up --cluster` wants a dir of its own (LEDGER_STATE_DIR) or a purge.
# The stamp $STATE_DIR/cluster/nodes keeps a cluster dir a cluster on every later `up`.

readonly CLUSTER_DIR="$STATE_DIR/cluster"
readonly CLUSTER_NODES=3
readonly CLUSTER_PORT_STEP=10
readonly CLUSTER_LEDGER_TOML="$CLUSTER_DIR/ledger.toml"

# 1 when the state dir runs (or is to run) the cluster profile.
CLUSTER=0
[[ ! -f $CLUSTER_DIR/nodes ]] || CLUSTER=1

# Chooses the cluster profile with --cluster ($1 = 1); refuses a single-node state dir.
select_cluster() {
    if (($1)) && ((CLUSTER == 0)); then
        [[ ! -f $STATE_DIR/kafka/data/meta.properties ]] ||
            die "$STATE_DIR holds a single-node Kafka; a cluster needs its own state dir (LEDGER_STATE_DIR=... stack.sh up --cluster) or 'stack.sh purge' first"
        mkdir -p "$CLUSTER_DIR"
        echo "$CLUSTER_NODES" >"$CLUSTER_DIR/nodes"
        CLUSTER=1
    elif ((CLUSTER)) && (($1 == 0)); then
        say "cluster profile: kept, this state dir was set up by 'up --cluster'"
    fi
    ((CLUSTER == 0 || SECURE == 0)) || die "the cluster profile does not combine with --secure yet; use a state dir for each"
}

# The Kafka instances of the profile, on one line: kafka, or kafka kafka-2 kafka-3.
kafka_instances() {
    local n list=kafka
    if ((CLUSTER)); then
        for ((n = 2; n <= CLUSTER_NODES; n++)); do list+=" kafka-$n"; done
    fi
    echo "$list"
}

# The controller quorum of the cluster: id@host:port of every node.
cluster_voters() {
    local n voters=""
    for ((n = 1; n <= CLUSTER_NODES; n++)); do
        voters+="${voters:+,}$n@$BIND:$((KAFKA_CONTROLLER_PORT + CLUSTER_PORT_STEP * (n - 1)))"
    done
    echo "$voters"
}

# The bootstrap list of the cluster's client listeners.
cluster_brokers() {
    local n brokers=""
    for ((n = 1; n <= CLUSTER_NODES; n++)); do
        brokers+="${brokers:+,}$BIND:$((KAFKA_PORT + CLUSTER_PORT_STEP * (n - 1)))"
    done
    echo "$brokers"
}

# A `ledger --config` file for the cluster: all brokers, replicated topics.
cluster_write_ledger_toml() {
    ((CLUSTER)) || return 0
    cat >"$CLUSTER_LEDGER_TOML" <<EOF
# Written by scripts/stack.sh up --cluster: the ledger against the local three-node Kafka cluster.
[kafka]
brokers = "$(cluster_brokers)"

[topics]
replication_factor = 3
min_insync_replicas = 2

[clickhouse]
url = "http://$BIND:$CH_HTTP_PORT"
EOF
    say "cluster profile: ledger <command> --config $CLUSTER_LEDGER_TOML (brokers $(cluster_brokers))"
}
