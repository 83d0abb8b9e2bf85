# Shared settings of the local stack, sourced by up/down/test. One place for
# ports and paths; every value can be overridden from the environment.
AGENTBANK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export AGENTBANK_ROOT
export AGENTBANK_RUN_DIR="${AGENTBANK_RUN_DIR:-$AGENTBANK_ROOT/.run}"
export AGENTBANK_BROKER_PORT="${AGENTBANK_BROKER_PORT:-9092}"
# The broker's data dir (its pid file is "$AGENTBANK_BROKER_DIR.pid").
# AGENTBANK_BROKER_FRESH=1 wipes it whenever `up` starts the broker.
export AGENTBANK_BROKER_DIR="${AGENTBANK_BROKER_DIR:-$AGENTBANK_RUN_DIR/broker}"
export AGENTBANK_PG_PORT="${AGENTBANK_PG_PORT:-5432}"
# The local broker: Nisshi (née Tansu; the same CLI, SQLite storage), built
# by `up` with cargo install and run by deploy/local/broker. Overridable to
# compare brokers with the same CLI (AGENTBANK_BROKER_BIN=tansu
# AGENTBANK_BROKER_VERSION=0.6.0, installed beforehand).
export AGENTBANK_BROKER_BIN="${AGENTBANK_BROKER_BIN:-nisshi}"
export AGENTBANK_BROKER_VERSION="${AGENTBANK_BROKER_VERSION:-0.8.1}"
export AGENTBANK_ANVIL_PORT="${AGENTBANK_ANVIL_PORT:-8545}"
# The local chain's tools (npm: Anvil, solc-js), installed by `up`.
export AGENTBANK_CHAIN_DIR="$AGENTBANK_ROOT/deploy/local/chain"
export AGENTBANK_ANVIL_BIN="$AGENTBANK_CHAIN_DIR/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
export KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:$AGENTBANK_BROKER_PORT}"
# An externally managed Postgres is used as is when DATABASE_URL is set before
# the first script runs. Decided once: scripts call each other, and the default
# exported here must not look user-given to the next one.
if [ -z "${AGENTBANK_ENV_DECIDED:-}" ]; then
  if [ -n "${DATABASE_URL:-}" ]; then
    export AGENTBANK_EXTERNAL_PG=1
  else
    export DATABASE_URL="postgres://postgres@127.0.0.1:$AGENTBANK_PG_PORT/agentbank"
  fi
  export AGENTBANK_ENV_DECIDED=1
fi
export CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
# checkov and kubernetes-validate, in a venv `up` makes (tests/deploy_files.rs).
export AGENTBANK_DEPLOY_TOOLS="${AGENTBANK_DEPLOY_TOOLS:-$AGENTBANK_RUN_DIR/deploy-tools/bin}"
export PATH="$CARGO_BIN:$PATH"

# Where Postgres keeps its data: under the run dir, unless (as root) the
# unprivileged postgres user cannot reach it there; `up` records the choice.
pg_dir() {
  if [ -f "$AGENTBANK_RUN_DIR/pg.path" ]; then cat "$AGENTBANK_RUN_DIR/pg.path"; else echo "$AGENTBANK_RUN_DIR/pg"; fi
}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# pg binaries: Debian's versioned dir or anything on PATH.
pg_bin() {
  for d in /usr/lib/postgresql/15/bin /usr/local/bin /usr/bin; do
    if [ -x "$d/$1" ]; then echo "$d/$1"; return 0; fi
  done
  command -v "$1"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
