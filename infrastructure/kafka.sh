#!/usr/bin/env bash
# Install (if missing), start and check the local single-node Apache Kafka broker used by tests
# and benchmarks: one KRaft process (broker and controller, no ZooKeeper) on 127.0.0.1.
#
#   bash infrastructure/kafka.sh [start]   # then: set -a; . .state/kafka.env; set +a
#   bash infrastructure/kafka.sh stop      # SIGTERM, a clean shutdown (SIGKILL after 30 s)
#   bash infrastructure/kafka.sh status    # exit 0 if running and answering, 3 if not
#   bash infrastructure/kafka.sh install   # only resolve the jars
#
# Idempotent: `start` on a running, answering broker only reports it (same pid). Concurrent
# runs on the same kafka home are serialised with a flock; so are jar installs into one lib/.
#
# The jars come from Maven Central (infrastructure/kafka/pom.xml, `mvn dependency:copy-
# dependencies`) into $LIB, once per Kafka version. The storage is formatted once, with a
# cluster id kept in $HOME_DIR/cluster.id; existing storage is never reformatted.
# $HOME_DIR/server.properties is generated from infrastructure/kafka/server.properties.in on
# every start; the broker logs to $HOME_DIR/logs/server.log (infrastructure/kafka/log4j2.xml).
#
# Writes $ENV_FILE (gitignored): MARKETLOG_TEST_KAFKA_BOOTSTRAP=127.0.0.1:<port>
#
# Environment (all optional):
#   MARKETLOG_KAFKA_HOME             kafka home: data/, logs/, pid, config
#                                    (root: /var/lib/marketlog/kafka, one per machine; else .state/kafka)
#   MARKETLOG_KAFKA_LIB              the jars                                ($HOME/lib)
#   MARKETLOG_KAFKA_PORT             PLAINTEXT listener                      (19092)
#   MARKETLOG_KAFKA_CONTROLLER_PORT  KRaft controller listener               (19093)
#   MARKETLOG_KAFKA_HEAP             JVM -Xmx                                (512m)
#   MARKETLOG_KAFKA_JVM_OPTS         extra JVM options, space-separated      (none)
#   MARKETLOG_KAFKA_RETENTION_MS     log.retention.ms                        (-1: forever)
#   MARKETLOG_KAFKA_START_TIMEOUT    seconds to wait for the broker to answer (60)
#   MARKETLOG_KAFKA_SESSION_TIMEOUT_MS  broker.session.timeout.ms (9000, Kafka's). After a
#                                    crash (SIGKILL) the restarted broker cannot register
#                                    until its dead incarnation's session has expired, so
#                                    this is the restart delay; private test brokers use less.
#   MARKETLOG_KAFKA_ENV_FILE         env file to write; empty: write none    (.state/kafka.env)
#   MARKETLOG_KAFKA_PYTHON           python with kafka-python, to ask the broker whether it
#                                    answers (.venv/bin/python; without it: its log and port)
# infrastructure/kafka_service.py runs private brokers for tests through this same script.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE_DIR="$ROOT/.state"
# One broker per machine, like the PostgreSQL cluster (postgres.sh): every checkout (and CI's
# clean clone) uses it rather than fighting over its ports. Root: /var/lib/marketlog/kafka;
# otherwise this checkout's .state/kafka.
if [[ $EUID -eq 0 ]]; then DEFAULT_HOME=/var/lib/marketlog/kafka; else DEFAULT_HOME="$STATE_DIR/kafka"; fi
HOME_DIR="${MARKETLOG_KAFKA_HOME:-$DEFAULT_HOME}"
LIB="${MARKETLOG_KAFKA_LIB:-$HOME_DIR/lib}"
PORT="${MARKETLOG_KAFKA_PORT:-19092}"
CONTROLLER_PORT="${MARKETLOG_KAFKA_CONTROLLER_PORT:-19093}"
HEAP="${MARKETLOG_KAFKA_HEAP:-512m}"
RETENTION_MS="${MARKETLOG_KAFKA_RETENTION_MS:--1}"
START_TIMEOUT="${MARKETLOG_KAFKA_START_TIMEOUT:-60}"
SESSION_TIMEOUT_MS="${MARKETLOG_KAFKA_SESSION_TIMEOUT_MS:-9000}"
JVM_OPTS="${MARKETLOG_KAFKA_JVM_OPTS:-}"
ENV_FILE="${MARKETLOG_KAFKA_ENV_FILE-$STATE_DIR/kafka.env}"
PYTHON="${MARKETLOG_KAFKA_PYTHON:-$ROOT/.venv/bin/python}"
POM="$ROOT/infrastructure/kafka/pom.xml"
TEMPLATE="$ROOT/infrastructure/kafka/server.properties.in"
LOG4J_CONF="$ROOT/infrastructure/kafka/log4j2.xml"
HOST=127.0.0.1
STOP_TIMEOUT=30

log() { echo "kafka.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

CMD="${1:-start}"
case "$CMD" in
    start|stop|status|install) ;;
    *) die "usage: $0 [start|stop|status|install] (got '$CMD')" ;;
esac
for v in PORT CONTROLLER_PORT START_TIMEOUT SESSION_TIMEOUT_MS; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "MARKETLOG_KAFKA_$v must be a number, got '${!v}'"
done
[[ "$RETENTION_MS" =~ ^-?[0-9]+$ ]] || die "MARKETLOG_KAFKA_RETENTION_MS must be a number"
[[ "$HEAP" =~ ^[0-9]+[kKmMgG]?$ ]] || die "MARKETLOG_KAFKA_HEAP must look like 512m, got '$HEAP'"
[[ "$PORT" != "$CONTROLLER_PORT" ]] || die "the listener and controller ports must differ"
(( SESSION_TIMEOUT_MS >= 1000 )) || die "MARKETLOG_KAFKA_SESSION_TIMEOUT_MS must be at least 1000"
# Kafka's defaults are 2000 of 9000: at least 4 heartbeats per session, at most one per 2 s.
HEARTBEAT_MS=$(( SESSION_TIMEOUT_MS / 4 < 2000 ? SESSION_TIMEOUT_MS / 4 : 2000 ))

KAFKA_VERSION=$(sed -n 's#.*<kafka.version>\([^<]*\)</kafka.version>.*#\1#p' "$POM" | head -n 1)
[[ -n "$KAFKA_VERSION" ]] || die "no <kafka.version> in $POM"
KAFKA_JAR="kafka_2.13-$KAFKA_VERSION.jar"

DATA="$HOME_DIR/data"
LOGS="$HOME_DIR/logs"
PID_FILE="$HOME_DIR/kafka.pid"
CONF="$HOME_DIR/server.properties"
CLUSTER_ID_FILE="$HOME_DIR/cluster.id"
BOOTSTRAP="$HOST:$PORT"

actions=()

# --- prerequisites: Java 17+ (and Maven to install the jars), from Debian when root --------
apt_install() {
    [[ "$(id -u)" == 0 ]] || die "$1 is missing; install it (apt-get install $2) or run as root"
    log "$1 not found; installing the Debian package $2"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 "$2" >&2
    actions+=("installed $2")
}
need_java() {
    command -v java >/dev/null 2>&1 || apt_install java default-jre-headless
    local major
    major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)
    [[ "${major:-0}" -ge 17 ]] || die "Kafka $KAFKA_VERSION needs Java 17 or later; 'java' is version ${major:-unknown}"
}

# --- 1. jars -------------------------------------------------------------------------------
jars_installed() { [[ -f "$LIB/$KAFKA_JAR" && -f "$LIB/.complete" ]]; }
install_jars() {
    jars_installed && return 0
    mkdir -p "$(dirname "$LIB")"
    # Its own lock: several kafka homes (private test brokers) share one lib/.
    exec 8>"$LIB.lock"
    flock -w 600 8 || die "timed out waiting for another install into $LIB"
    if ! jars_installed; then
        command -v mvn >/dev/null 2>&1 || apt_install mvn maven
        log "resolving Kafka $KAFKA_VERSION jars from Maven Central into $LIB"
        local tmp="$LIB.tmp.$$"
        rm -rf "$tmp"
        # Its output only on failure (even -q -B prints colour resets).
        if ! mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
                -DoutputDirectory="$tmp" >"$tmp.log" 2>&1 8>&-; then
            cat "$tmp.log" >&2
            rm -rf "$tmp" "$tmp.log"
            die "mvn could not resolve the jars of $POM"
        fi
        rm -f "$tmp.log"
        [[ -f "$tmp/$KAFKA_JAR" ]] || { rm -rf "$tmp"; die "mvn did not provide $KAFKA_JAR"; }
        echo "$KAFKA_VERSION" >"$tmp/.complete"
        rm -rf "$LIB"
        mv "$tmp" "$LIB"
        actions+=("installed Kafka $KAFKA_VERSION jars")
    fi
    exec 8>&-
}

# --- process bookkeeping -------------------------------------------------------------------
broker_pid() {  # the pid of this home's broker if it is alive, else nothing
    [[ -f "$PID_FILE" ]] || return 0
    local pid
    pid=$(tr -dc '0-9' <"$PID_FILE")
    [[ -n "$pid" ]] && alive "$pid" || return 0
    # Guard against a recycled pid: it must be a broker run with this home's config.
    local cmdline
    cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 0
    [[ "$cmdline" == *"kafka.Kafka $CONF "* ]] && echo "$pid"
    return 0
}
alive() {  # <pid>: the process exists and is not a zombie (a reaped-late child of init)
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ "${stat%% *}" != Z ]]
}
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

answering() {  # <pid>: the broker answers a metadata request (not just a TCP connect)
    local rc=3
    if [[ -x "$PYTHON" ]]; then
        rc=0
        "$PYTHON" - "$BOOTSTRAP" "${2:-0}" "$1" <<'PY' || rc=$?
import logging, socket, sys, time
logging.getLogger("kafka").addHandler(logging.NullHandler())
logging.getLogger("kafka").propagate = False
try:
    from kafka import KafkaAdminClient
except ImportError:
    sys.exit(3)
bootstrap, deadline, pid = sys.argv[1], time.monotonic() + float(sys.argv[2]), int(sys.argv[3])
host, _, port = bootstrap.rpartition(":")
while True:
    try:
        # Cheap until the listener is up; then a real request (it is served only once the
        # broker is unfenced). Short backoffs: the client's own grow to 30 s.
        socket.create_connection((host, int(port)), timeout=1).close()
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="kafka.sh",
                                 request_timeout_ms=5000, bootstrap_timeout_ms=2000,
                                 reconnect_backoff_max_ms=200)
        try:
            admin.list_topics()
            sys.exit(0)
        finally:
            admin.close()
    except Exception:
        pass
    try:
        with open(f"/proc/{pid}/stat") as stat:
            exited = stat.read().rpartition(") ")[2].startswith("Z")
    except OSError:
        exited = True
    if exited or time.monotonic() >= deadline:
        sys.exit(1)
    time.sleep(0.1)
PY
    fi
    if (( rc != 3 )); then
        return "$rc"
    else
        # No kafka-python: the broker logged that it started (since $LOG_MARK) and listens.
        local deadline=$((SECONDS + ${2:-0}))
        while :; do
            if port_open "$PORT" && grep -q "Kafka Server started" \
                    < <(tail -c "+$((${LOG_MARK:-0} + 1))" "$LOGS/server.log" 2>/dev/null); then
                return 0
            fi
            (( SECONDS < deadline )) && alive "$1" || return 1
            sleep 0.5
        done
    fi
}

show_log_tail() {
    log "last lines of $LOGS/server.log:"
    tail -n 40 "$LOGS/server.log" >&2 2>/dev/null || true
    if [[ -s "$LOGS/kafka.out" ]]; then
        log "last lines of $LOGS/kafka.out:"
        tail -n 20 "$LOGS/kafka.out" >&2 || true
    fi
}

write_env() {
    [[ -n "$ENV_FILE" ]] || return 0
    local new_env="MARKETLOG_TEST_KAFKA_BOOTSTRAP=$BOOTSTRAP"
    mkdir -p "$(dirname "$ENV_FILE")"
    if [[ ! -f "$ENV_FILE" ]] || [[ "$(cat "$ENV_FILE")" != "$new_env" ]]; then
        printf '%s\n' "$new_env" >"$ENV_FILE.tmp" && mv -f "$ENV_FILE.tmp" "$ENV_FILE"
    fi
}

# The broker's (and the storage tool's) JVM: classpath, heap, and logging to $LOGS/server.log.
read -r -a EXTRA_JVM_OPTS <<<"$JVM_OPTS"
JAVA_ARGS=("-Xmx$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
           "${EXTRA_JVM_OPTS[@]}"
           "-Dlog4j2.configurationFile=$LOG4J_CONF" "-Dkafka.logs.dir=$LOGS" -cp "$LIB/*")

new_cluster_id() {  # a Kafka Uuid: 16 random bytes, URL-safe base64 without padding
    local id
    while :; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
        [[ "$id" != -* && "$id" != AAAAAAAAAAAAAAAAAAAAA* ]] && { echo "$id"; return; }
    done
}

# --- subcommands ---------------------------------------------------------------------------
if [[ "$CMD" == install ]]; then
    need_java
    install_jars
    if (( ${#actions[@]} == 0 )); then
        echo "kafka: Kafka $KAFKA_VERSION jars already installed in $LIB"
    else
        echo "kafka: installed Kafka $KAFKA_VERSION jars in $LIB"
    fi
    exit 0
fi

mkdir -p "$HOME_DIR"
exec 9>"$HOME_DIR/kafka.lock"
flock -w 300 9 || die "timed out waiting for another kafka.sh run on $HOME_DIR"

if [[ "$CMD" == status ]]; then
    pid=$(broker_pid)
    if [[ -z "$pid" ]]; then
        echo "kafka: not running ($HOME_DIR)"
        exit 3
    fi
    if answering "$pid" 5 9>&-; then
        echo "kafka: Kafka $KAFKA_VERSION running (pid $pid) on $BOOTSTRAP, answering ($HOME_DIR)"
        exit 0
    fi
    echo "kafka: Kafka $KAFKA_VERSION process running (pid $pid) but not answering on $BOOTSTRAP"
    exit 3
fi

if [[ "$CMD" == stop ]]; then
    pid=$(broker_pid)
    if [[ -z "$pid" ]]; then
        rm -f "$PID_FILE"
        echo "kafka: not running ($HOME_DIR)"
        exit 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    start_s=$SECONDS
    while alive "$pid" && (( SECONDS - start_s < STOP_TIMEOUT )); do sleep 0.2; done
    if alive "$pid"; then
        log "pid $pid still running ${STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while alive "$pid"; do sleep 0.1; done
        rm -f "$PID_FILE"
        echo "kafka: killed Kafka $KAFKA_VERSION (pid $pid) after ${STOP_TIMEOUT}s without a clean shutdown"
        exit 1
    fi
    rm -f "$PID_FILE"
    echo "kafka: stopped Kafka $KAFKA_VERSION (pid $pid) in $((SECONDS - start_s))s ($HOME_DIR)"
    exit 0
fi

# --- start ---------------------------------------------------------------------------------
need_java
pid=$(broker_pid)
if [[ -n "$pid" ]]; then
    # Already running: make sure it answers (it may still be starting) and report.
    if ! answering "$pid" "$START_TIMEOUT" 9>&-; then
        show_log_tail
        die "Kafka (pid $pid) is running but does not answer on $BOOTSTRAP; stop it with: $0 stop"
    fi
    write_env
    echo "kafka: Kafka $KAFKA_VERSION already running (pid $pid) on $BOOTSTRAP ($HOME_DIR${ENV_FILE:+; $ENV_FILE})"
    exit 0
fi
rm -f "$PID_FILE"

install_jars
mkdir -p "$DATA" "$LOGS"

# Someone else on our ports (another checkout's broker?) would make ours fail obscurely.
for p in "$PORT" "$CONTROLLER_PORT"; do
    port_open "$p" && die "port $HOST:$p is already in use by another process (another checkout's broker? set MARKETLOG_KAFKA_PORT / MARKETLOG_KAFKA_CONTROLLER_PORT)"
done

sed -e "s#@PORT@#$PORT#g" -e "s#@CONTROLLER_PORT@#$CONTROLLER_PORT#g" \
    -e "s#@DATA_DIR@#$DATA#g" -e "s#@RETENTION_MS@#$RETENTION_MS#g" \
    -e "s#@SESSION_TIMEOUT_MS@#$SESSION_TIMEOUT_MS#g" -e "s#@HEARTBEAT_MS@#$HEARTBEAT_MS#g" \
    "$TEMPLATE" >"$CONF.tmp"
grep -q '@[A-Z_]*@' "$CONF.tmp" && die "unfilled placeholder in $TEMPLATE"
mv -f "$CONF.tmp" "$CONF"

# Format once: meta.properties in the data dir marks formatted storage, never reformatted.
if [[ ! -f "$DATA/meta.properties" ]]; then
    [[ -s "$CLUSTER_ID_FILE" ]] || new_cluster_id >"$CLUSTER_ID_FILE"
    cluster_id=$(tr -d ' \n' <"$CLUSTER_ID_FILE")
    if ! java "${JAVA_ARGS[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$CONF" \
            >"$LOGS/format.out" 2>&1 9>&-; then
        cat "$LOGS/format.out" >&2
        die "formatting $DATA failed"
    fi
    actions+=("formatted storage (cluster $cluster_id)")
fi

LOG_MARK=$(stat -c %s "$LOGS/server.log" 2>/dev/null || echo 0)
started_at=$(date +%s.%N)
# Detached: its own session, no controlling terminal, not holding our lock (fd 9).
cd "$HOME_DIR"
setsid nohup java "${JAVA_ARGS[@]}" kafka.Kafka "$CONF" </dev/null >"$LOGS/kafka.out" 2>&1 9>&- &
pid=$!
echo "$pid" >"$PID_FILE"

if ! answering "$pid" "$START_TIMEOUT" 9>&-; then
    show_log_tail
    if alive "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        while alive "$pid"; do sleep 0.1; done
        rm -f "$PID_FILE"
        die "Kafka (pid $pid) did not answer on $BOOTSTRAP within ${START_TIMEOUT}s; killed it"
    fi
    rm -f "$PID_FILE"
    die "Kafka exited during startup (see $LOGS/server.log)"
fi
elapsed=$(awk -v a="$started_at" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
actions+=("started Kafka $KAFKA_VERSION (pid $pid) in ${elapsed}s")
write_env

summary=$(IFS=,; echo "${actions[*]}" | sed 's/,/, /g')
echo "kafka: $summary; KRaft broker+controller on $BOOTSTRAP (controller $CONTROLLER_PORT, $HOME_DIR${ENV_FILE:+; $ENV_FILE})"
