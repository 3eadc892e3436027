# shellcheck shell=bash
# The secure profile of scripts/stack.sh (`up --secure`): its certificates, credentials and the
# ledger config that reaches the secure listeners, all under $STATE_DIR/secure/, and the profile
# stamp each instance is started with. Sourced after lib.sh; the Kafka and ClickHouse config
# writers (kafka-config.sh, clickhouse-config.sh) call the secure_* functions for their sections.
#
# $STATE_DIR/secure/ (the folder is 700; keys and passwords 600):
#   ca.pem, ca.key            a CA made on the fly for this state dir (10 years)
#   broker.pem, broker.key    the servers' certificate (Kafka and ClickHouse; DNS:localhost and
#                             IP:127.0.0.1, 825 days, renewed by `up` 30 days before it expires)
#                             and its PKCS#8 key
#   kafka-keystore.pem        broker.key followed by broker.pem (Kafka's PEM key store)
#   kafka-password            the SCRAM-SHA-512 password of the Kafka user `ledger`
#   clickhouse-password       the password of the ClickHouse user `ledger`
#   ledger.toml               a `ledger --config` file that reaches the secure listeners
#
# The profile belongs to the state dir: once `up --secure` has made $STATE_DIR/secure, every later
# `up` keeps the stack secure. Each instance records the profile it was started with in
# $STATE_DIR/<instance>/profile; `up` restarts a running instance whose record differs.

readonly SECURE_DIR="$STATE_DIR/secure"
readonly SECURE_CA="$SECURE_DIR/ca.pem"
readonly SECURE_CA_KEY="$SECURE_DIR/ca.key"
readonly SECURE_CERT="$SECURE_DIR/broker.pem"
readonly SECURE_KEY="$SECURE_DIR/broker.key"
readonly SECURE_KEYSTORE="$SECURE_DIR/kafka-keystore.pem"
readonly SECURE_KAFKA_PASSWORD_FILE="$SECURE_DIR/kafka-password"
readonly SECURE_CH_PASSWORD_FILE="$SECURE_DIR/clickhouse-password"
readonly SECURE_LEDGER_TOML="$SECURE_DIR/ledger.toml"
# The user of the secure listeners, in Kafka (SCRAM) and in ClickHouse.
readonly SECURE_USER=ledger
readonly SECURE_SAN="DNS:localhost,IP:$BIND"

# 1 when the stack runs (or is to run) with the secure profile: the state dir has one.
SECURE=0
[[ ! -d $SECURE_DIR ]] || SECURE=1

# Chooses the profile of `up`: secure with --secure ($1 = 1) or when the state dir has it already.
select_profile() {
    if (($1)); then
        SECURE=1
    elif ((SECURE)); then
        say "secure profile: kept, this state dir was set up by 'up --secure' (to drop it: stack.sh down; rm -r $SECURE_DIR; stack.sh up)"
    fi
}

secure_packages() {
    ((SECURE == 0)) || command -v openssl >/dev/null || echo openssl
}

# ---------------------------------------------------------------------------------------- stamps

profile_file() { echo "$STATE_DIR/$1/profile"; }

# The profile instance $1 is to run with: "plain", or "secure" and a digest of what its secure
# listener uses (port, certificate, password), so a new certificate or port restarts it.
profile_wanted() {
    # shellcheck disable=SC2034 # INST_NODE: parse_instance sets it, unused here
    local INST_SVC INST_NODE port password
    ((SECURE)) || { echo plain; return 0; }
    parse_instance "$1"
    case $INST_SVC in
    kafka) port=$KAFKA_SECURE_PORT password=$SECURE_KAFKA_PASSWORD_FILE ;;
    clickhouse) port=$CH_HTTPS_PORT password=$SECURE_CH_PASSWORD_FILE ;;
    registry) port=$REGISTRY_HTTPS_PORT password=/dev/null ;;
    *) die "no secure profile for $INST_SVC" ;;
    esac
    echo "secure $({ echo "$port"; cat "$SECURE_CERT" "$password"; } | sha256sum | cut -c1-16)"
}

# The profile running instance $1 was started with ("plain" when it has no record: older stacks).
profile_running() {
    local file
    file=$(profile_file "$1")
    if [[ -s $file ]]; then cat "$file"; else echo plain; fi
}

# True when running instance $1 was started with the secure profile.
running_secure() { [[ $(profile_running "$1") == secure* ]]; }

# ---------------------------------------------------------------------------------------- material

# Makes what is missing in $SECURE_DIR: the CA, the servers' certificate (also when it is not
# signed by the CA or expires within 30 days) and the passwords.
secure_prepare() {
    mkdir -p "$SECURE_DIR"
    chmod 700 "$SECURE_DIR"
    if [[ ! -s $SECURE_CA || ! -s $SECURE_CA_KEY ]]; then
        secure_make_ca
        rm -f "$SECURE_CERT"
    fi
    if [[ ! -s $SECURE_CERT || ! -s $SECURE_KEY || ! -s $SECURE_KEYSTORE ]] ||
        ! openssl verify -CAfile "$SECURE_CA" "$SECURE_CERT" >/dev/null 2>&1 ||
        ! openssl x509 -checkend $((30 * 86400)) -noout -in "$SECURE_CERT" >/dev/null; then
        secure_make_cert
    fi
    local file
    for file in "$SECURE_KAFKA_PASSWORD_FILE" "$SECURE_CH_PASSWORD_FILE"; do
        [[ -s $file ]] && continue
        # Hex: no character needs quoting in Kafka's SCRAM syntax, a JAAS line or a URL.
        (umask 077 && printf '%s' "$(openssl rand -hex 20)" >"$file")
        say "secure: new password in $file"
    done
}

# The openssl config of the CA and the servers' certificate (extensions, names).
secure_openssl_cnf() {
    cat <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
O = llm-usage-ledger
CN = llm-usage-ledger local CA $(openssl rand -hex 4)
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
subjectAltName = $SECURE_SAN
[v3_server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
subjectAltName = $SECURE_SAN
EOF
}

# Runs openssl "$@", printing its output only when it fails.
secure_openssl() {
    local out
    out=$(openssl "$@" 2>&1) || { printf '%s\n' "$out" >&2; die "openssl $1 failed"; }
}

secure_make_ca() {
    local cnf="$SECURE_DIR/openssl.cnf"
    secure_openssl_cnf >"$cnf"
    (umask 077 && secure_openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days 3650 -config "$cnf" \
        -extensions v3_ca -set_serial "0x$(openssl rand -hex 16)" -keyout "$SECURE_CA_KEY" -out "$SECURE_CA")
    chmod 644 "$SECURE_CA"
    rm -f "$cnf"
    say "secure: new CA $SECURE_CA ($(openssl x509 -noout -subject -in "$SECURE_CA" | sed 's/^subject=//'))"
}

secure_make_cert() {
    local cnf="$SECURE_DIR/openssl.cnf" tmp="$SECURE_DIR/new"
    secure_openssl_cnf >"$cnf"
    rm -rf "$tmp"
    (
        umask 077
        mkdir "$tmp"
        secure_openssl req -new -newkey rsa:2048 -nodes -config "$cnf" -subj /O=llm-usage-ledger/CN=localhost \
            -keyout "$tmp/key" -out "$tmp/csr"
        secure_openssl pkcs8 -topk8 -nocrypt -in "$tmp/key" -out "$tmp/broker.key"
        secure_openssl x509 -req -sha256 -days 825 -in "$tmp/csr" -CA "$SECURE_CA" -CAkey "$SECURE_CA_KEY" \
            -set_serial "0x$(openssl rand -hex 16)" -extfile "$cnf" -extensions v3_server -out "$tmp/broker.pem"
        cat "$tmp/broker.key" "$tmp/broker.pem" >"$tmp/kafka-keystore.pem"
    )
    chmod 644 "$tmp/broker.pem"
    mv -f "$tmp/broker.key" "$SECURE_KEY"
    mv -f "$tmp/kafka-keystore.pem" "$SECURE_KEYSTORE"
    mv -f "$tmp/broker.pem" "$SECURE_CERT"
    rm -rf "$tmp" "$cnf"
    say "secure: new server certificate $SECURE_CERT ($SECURE_SAN, until $(openssl x509 -noout -enddate -in "$SECURE_CERT" | sed 's/^notAfter=//'))"
}

secure_password() {
    case $1 in
    kafka) cat "$SECURE_KAFKA_PASSWORD_FILE" ;;
    clickhouse) cat "$SECURE_CH_PASSWORD_FILE" ;;
    *) die "secure_password: unknown service '$1'" ;;
    esac
}

secure_sha256() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

# The ledger config of the secure listeners (paths absolute; the passwords stay in their files),
# written by each `up` that leaves the secure listeners running, with their current ports.
secure_write_ledger_toml() {
    cat >"$SECURE_LEDGER_TOML.tmp" <<EOF
[kafka]
brokers = "$BIND:$KAFKA_SECURE_PORT"
sasl_password_file = "$SECURE_KAFKA_PASSWORD_FILE"
[kafka.options]
security_protocol = "SASL_SSL"
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "$SECURE_USER"
ssl_ca_location = "$SECURE_CA"
[clickhouse]
url = "https://$BIND:$CH_HTTPS_PORT"
user = "$SECURE_USER"
password_file = "$SECURE_CH_PASSWORD_FILE"
ca_file = "$SECURE_CA"
EOF
    if ((REGISTRY)); then
        printf '%s\n' "[schema.registry]" "url = \"$(registry_https_url)\"" "ca_file = \"$SECURE_CA\"" >>"$SECURE_LEDGER_TOML.tmp"
    fi
    chmod 644 "$SECURE_LEDGER_TOML.tmp"
    mv -f "$SECURE_LEDGER_TOML.tmp" "$SECURE_LEDGER_TOML"
}

# The status line of the profile (after the instances' blocks).
secure_status() {
    ((SECURE)) || return 0
    printf '%-11s %s\n' "secure:" "profile on, ledger config $SECURE_LEDGER_TOML" \
        "" "CA $SECURE_CA, passwords in $SECURE_DIR/{kafka,clickhouse}-password"
}
