#!/usr/bin/env bash
# Install (if missing), start and provision the local PostgreSQL used by tests and benchmarks.
#
#   bash infrastructure/postgres.sh            # then: set -a; . .state/postgres.env; set +a
#
# Idempotent: safe to run any number of times, from any number of checkouts; concurrent runs
# are serialised with a machine-wide flock.
#
# Roles (ARCHITECTURE rule 11, least privilege), all machine-wide like the cluster itself:
#   marketlog         admin and owner of the event store's tables (CREATEDB: tests create
#                     throwaway databases)
#   marketlog_engine  what the engine connects as: INSERT and SELECT on the event tables
#   marketlog_reader  read-only tools (verify, audits): SELECT only
# (the per-database grants are made by the owner: `marketlog db init`, or the tests' fixtures)
#
# Credentials: ONE machine-wide file, $CRED_FILE (root only, mode 600), holds each role's
# password. It is created once and reused by every checkout; an existing password is never
# replaced by a new one (issue 5, item 10: a second checkout used to re-set the shared role's
# password and break the first). On the first run after the switch to this file, the
# password already in this checkout's .state/postgres.env is adopted when it still logs in.
# Each checkout's .state/postgres.env (gitignored, mode 600) is written from the file:
#   MARKETLOG_TEST_PG_URL          admin/owner role, maintenance database
#   MARKETLOG_TEST_PG_ENGINE_URL   engine role
#   MARKETLOG_TEST_PG_READER_URL   reader role
# Port: MARKETLOG_PG_PORT (default 5432). Needs root (apt-get, runuser).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE_DIR="$ROOT/.state"
ENV_FILE="$STATE_DIR/postgres.env"
CRED_DIR="${MARKETLOG_PG_CREDENTIALS_DIR:-/var/lib/marketlog}"
CRED_FILE="$CRED_DIR/postgres.credentials"
PORT="${MARKETLOG_PG_PORT:-5432}"
CLUSTER=main
ROLE=marketlog
ENGINE_ROLE=marketlog_engine
READER_ROLE=marketlog_reader
HOST=127.0.0.1

log() { echo "postgres.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ "$PORT" =~ ^[0-9]+$ ]] || die "MARKETLOG_PG_PORT must be a number, got '$PORT'"
[[ "$(id -u)" == 0 ]] || die "must run as root (installs packages, runs SQL as the postgres user)"

mkdir -p "$STATE_DIR"
(umask 077 && mkdir -p "$CRED_DIR")
chmod 700 "$CRED_DIR"
# Machine-wide: the cluster and its roles are shared by every checkout.
exec 9>"$CRED_DIR/postgres.lock"
flock -w 900 9 || die "timed out waiting for another postgres.sh run (lock $CRED_DIR/postgres.lock)"

actions=()

# Anything that may leave a daemon behind must not inherit the lock's fd 9, or the postmaster
# would hold the lock for its whole life and every later run would wait for it.
pgctl() { pg_ctlcluster "$@" 9>&-; }

# --- 1. install -----------------------------------------------------------------------------
server_installed() {
    command -v pg_ctlcluster >/dev/null 2>&1 && compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}
if ! server_installed; then
    log "PostgreSQL not installed; installing the Debian package"
    export DEBIAN_FRONTEND=noninteractive
    # The package's postinst creates the main cluster with the current locale: make it UTF-8.
    export LANG=C.UTF-8 LC_ALL=C.UTF-8
    apt-get update -q >&2
    apt-get install -y -q -o DPkg::Lock::Timeout=600 postgresql >&2 9>&-
    server_installed || die "apt-get install postgresql did not provide a server"
    actions+=("installed")
fi

VER=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/postgres' \
      | awk -F/ '{print $5}' | sort -n | tail -n 1)
[[ -n "$VER" ]] || die "no server binary under /usr/lib/postgresql"

# --- 2. cluster -----------------------------------------------------------------------------
cluster_field() {  # <column> of `pg_lsclusters` for VER/main, empty if there is no such cluster
    pg_lsclusters -h | awk -v v="$VER" -v c="$CLUSTER" -v f="$1" '$1==v && $2==c {print $f}'
}
if [[ -z "$(cluster_field 2)" ]]; then
    log "creating cluster $VER/$CLUSTER on port $PORT"
    pg_createcluster --port "$PORT" --locale C.UTF-8 "$VER" "$CLUSTER" >&2 9>&-
    actions+=("created cluster $VER/$CLUSTER")
fi

if [[ "$(cluster_field 3)" != "$PORT" ]]; then
    log "cluster $VER/$CLUSTER is on port $(cluster_field 3); moving it to $PORT"
    pg_conftool "$VER" "$CLUSTER" set port "$PORT"
    if [[ "$(cluster_field 4)" == online ]]; then
        pgctl "$VER" "$CLUSTER" restart >&2
    fi
    actions+=("moved to port $PORT")
fi

started_here=false
if [[ "$(cluster_field 4)" != online ]]; then
    # A few tries: right after a server was killed its socket lock file can outlive it for a
    # moment ("lock file ... already exists"); the next try finds it stale and starts.
    for attempt in 1 2 3 4 5 6; do
        rc=0
        out=$(pgctl "$VER" "$CLUSTER" start 2>&1) || rc=$?
        if (( rc == 0 || rc == 2 )) || grep -q "already running" <<<"$out"; then
            break
        fi
        log "start attempt $attempt failed (exit $rc); retrying"
        sleep 2
    done
    if (( rc == 0 )); then
        started_here=true
        actions+=("started $VER/$CLUSTER")
    elif (( rc == 2 )) || grep -q "already running" <<<"$out"; then
        :   # raced with someone else starting it
    else
        echo "$out" >&2
        tail -n 30 "/var/log/postgresql/postgresql-$VER-$CLUSTER.log" >&2 2>/dev/null || true
        die "pg_ctlcluster $VER $CLUSTER start failed (exit $rc)"
    fi
fi

wait_ready() {
    for _ in $(seq 1 120); do
        pg_isready -q -h "$HOST" -p "$PORT" && return 0
        sleep 0.5
    done
    tail -n 30 "/var/log/postgresql/postgresql-$VER-$CLUSTER.log" >&2 2>/dev/null || true
    die "server not accepting connections on $HOST:$PORT after 60s"
}
wait_ready

psql_admin() {  # run SQL from stdin as the postgres superuser over the Unix socket
    runuser -u postgres -- psql -X -q -A -t -v ON_ERROR_STOP=1 -p "$PORT" -d postgres "$@"
}

# --- 3. settings for tests/benchmarks on a small box --------------------------------------
# Durability stays as shipped: fsync, synchronous_commit and full_page_writes are NOT touched.
# Only sizes and timers that cut checkpoint churn and per-query planning overhead.
psql_admin >/dev/null <<'SQL'
ALTER SYSTEM SET shared_buffers = '256MB';
ALTER SYSTEM SET max_wal_size = '2GB';
ALTER SYSTEM SET checkpoint_timeout = '15min';
ALTER SYSTEM SET jit = off;
SELECT pg_reload_conf();
SQL
if [[ "$(psql_admin -c "SELECT count(*) FROM pg_settings WHERE pending_restart")" != 0 ]]; then
    if $started_here; then
        # Nobody can be using a server this run has just started: apply restart-only settings.
        pgctl "$VER" "$CLUSTER" restart >&2
        wait_ready
    else
        log "some settings (shared_buffers) take effect at the next restart of $VER/$CLUSTER"
    fi
fi

# --- 4. roles and their machine-wide passwords -----------------------------------------------
cred_get() {  # <role>: its password from the machine-wide file, empty if none
    [[ -f "$CRED_FILE" ]] || return 0
    sed -n "s#^$1=\\([0-9a-f]\\{32\\}\\)\$#\\1#p" "$CRED_FILE" | tail -n 1
}
can_login() {  # <role> <password>: password login over TCP (scram-sha-256 in Debian's pg_hba)
    PGPASSWORD="$2" PGCONNECT_TIMEOUT=10 psql -X -q -A -t -h "$HOST" -p "$PORT" -U "$1" \
        -d postgres -c "SELECT 1" >/dev/null 2>&1
}
role_exists() {
    [[ "$(psql_admin -c "SELECT count(*) FROM pg_roles WHERE rolname = '$1'")" == 1 ]]
}

declare -A password=()
for role in "$ROLE" "$ENGINE_ROLE" "$READER_ROLE"; do
    pw=$(cred_get "$role")
    if [[ -z "$pw" && "$role" == "$ROLE" && -f "$ENV_FILE" ]]; then
        # Migration from per-checkout passwords: adopt this checkout's if it still works.
        old=$(sed -n 's#^MARKETLOG_TEST_PG_URL=postgresql://[^:]*:\([0-9a-f]\{32\}\)@.*#\1#p' "$ENV_FILE")
        if [[ -n "$old" ]] && can_login "$role" "$old"; then
            pw=$old
            actions+=("adopted $role's existing password")
        fi
    fi
    if [[ -z "$pw" ]]; then
        pw=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
        actions+=("generated $role's password")
    fi
    [[ "$pw" =~ ^[0-9a-f]{32}$ ]] || die "unexpected password format for $role in $CRED_FILE"
    password[$role]=$pw
done

# The file first, so a password is never applied to a role without being kept.
new_creds=$(for role in "$ROLE" "$ENGINE_ROLE" "$READER_ROLE"; do
    printf '%s=%s\n' "$role" "${password[$role]}"; done)
if [[ ! -f "$CRED_FILE" ]] || [[ "$(cat "$CRED_FILE")" != "$new_creds" ]]; then
    (umask 077 && printf '%s\n' "$new_creds" >"$CRED_FILE.tmp" && mv -f "$CRED_FILE.tmp" "$CRED_FILE")
fi

for role in "$ROLE" "$ENGINE_ROLE" "$READER_ROLE"; do
    pw=${password[$role]}
    attrs="LOGIN NOSUPERUSER NOCREATEROLE"
    [[ "$role" == "$ROLE" ]] && attrs="$attrs CREATEDB" || attrs="$attrs NOCREATEDB"
    if ! role_exists "$role"; then
        # Sent on stdin, never on a command line (ps) or in the repo.
        psql_admin >/dev/null <<SQL
CREATE ROLE $role $attrs PASSWORD '$pw';
SQL
        actions+=("created role $role")
    else
        psql_admin >/dev/null <<SQL
ALTER ROLE $role WITH $attrs;
SQL
        if ! can_login "$role" "$pw"; then
            # The machine-wide file is the truth (e.g. a re-created cluster): re-apply it.
            # Every checkout's .state is written from the same file, so none is broken.
            psql_admin >/dev/null <<SQL
ALTER ROLE $role WITH PASSWORD '$pw';
SQL
            actions+=("re-applied $role's machine-wide password")
        fi
    fi
done
# The admin may end the engine's and reader's sessions when it drops a throwaway database.
psql_admin >/dev/null <<SQL
SET client_min_messages = warning;
GRANT $ENGINE_ROLE TO $ROLE;
GRANT $READER_ROLE TO $ROLE;
SQL

url_of() { echo "postgresql://$1:${password[$1]}@$HOST:$PORT/postgres"; }
new_env="MARKETLOG_TEST_PG_URL=$(url_of "$ROLE")
MARKETLOG_TEST_PG_ENGINE_URL=$(url_of "$ENGINE_ROLE")
MARKETLOG_TEST_PG_READER_URL=$(url_of "$READER_ROLE")"
if [[ ! -f "$ENV_FILE" ]] || [[ "$(cat "$ENV_FILE")" != "$new_env" ]]; then
    (umask 077 && printf '%s\n' "$new_env" >"$ENV_FILE.tmp" && mv -f "$ENV_FILE.tmp" "$ENV_FILE")
fi

# --- 5. verify password auth over TCP ----------------------------------------------------------
for role in "$ROLE" "$ENGINE_ROLE" "$READER_ROLE"; do
    can_login "$role" "${password[$role]}" \
        || die "password login as $role over TCP $HOST:$PORT failed; check /etc/postgresql/$VER/$CLUSTER/pg_hba.conf"
done

if (( ${#actions[@]} == 0 )); then
    echo "postgres: PostgreSQL $VER/$CLUSTER already running on $HOST:$PORT; roles $ROLE, $ENGINE_ROLE, $READER_ROLE ready ($ENV_FILE)"
else
    summary=$(IFS=,; echo "${actions[*]}" | sed 's/,/, /g')
    echo "postgres: $summary; PostgreSQL $VER/$CLUSTER running on $HOST:$PORT; roles $ROLE, $ENGINE_ROLE, $READER_ROLE ready ($ENV_FILE)"
fi
