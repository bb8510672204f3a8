# Sourced by the benchmark scripts (scripts/bench-nodes, scripts/bench-relay):
# a throwaway redis-server and switchboard nodes on 127.0.0.1, each on a
# free port, all stopped when the script exits.
#
# The nodes run with the per-address and per-deployment limits lifted: the
# load comes from one machine, as no real audience does. Sockets per process
# are raised to the hard limit, so the load tool and the node can hold as
# many as the machine allows.
#
# After `start_nodes N`: urls (--url arguments), node_pids, boot (the
# bootstrap token the load tool signs in with), redis_pid when on Redis.
#
# SWITCHBOARD_BIN names the nodes' binary (target/release/switchboard by
# default), LOADTEST_BIN the load tool's (the same by default): to measure
# an older build's nodes with this build's tool, name them apart.

BIN=${SWITCHBOARD_BIN:-target/release/switchboard}
TOOL=${LOADTEST_BIN:-$BIN}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
[[ -x $BIN ]] || cargo build --release --locked
ulimit -n "$(ulimit -Hn)"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_ready() {
  for _ in $(seq 1 300); do
    curl -fsS "$1/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$1 did not become ready" >&2
  exit 1
}

# A throwaway Redis without persistence; the nodes started after it use it.
start_redis() {
  local port
  port=$(free_port)
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >"$OUT/redis.log" 2>&1 &
  redis_pid=$!
  pids+=("$redis_pid")
  export REDIS_URL=redis://127.0.0.1:$port
  for _ in $(seq 1 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "redis-server did not start (see $OUT/redis.log)" >&2
  exit 1
}

boot=sbb_bench_$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
export SWITCHBOARD_LIMIT_AGENT_MESSAGES=1000000/s SWITCHBOARD_LIMIT_ORG_AGENT_MESSAGES=1000000/s \
  SWITCHBOARD_LIMIT_SESSIONS_PER_ADDRESS=1000000/s SWITCHBOARD_LIMIT_CONVERSATIONS_PER_ADDRESS=1000000/s \
  SWITCHBOARD_LIMIT_SESSIONS_PER_DEPLOYMENT=1000000/s SWITCHBOARD_LIMIT_CONVERSATIONS_PER_DEPLOYMENT=1000000/s \
  SWITCHBOARD_LIMIT_QUEUED_PER_ADDRESS=10000 SWITCHBOARD_MAX_CONNECTIONS_PER_ADDRESS=0

# start_nodes N: N nodes sharing Redis (with start_redis first), prefix,
# master key, bootstrap token and public URL (README, "a visitor and an
# agent on two nodes"); without Redis, one node on the embedded engine in
# a fresh data directory.
start_nodes() {
  local count=$1 key first port n
  key=$(head -c 32 /dev/urandom | base64)
  urls=()
  node_pids=()
  first=$(free_port)
  for n in $(seq 1 "$count"); do
    port=$([[ $n == 1 ]] && echo "$first" || free_port)
    SWITCHBOARD_LISTEN=127.0.0.1:$port SWITCHBOARD_PUBLIC_URL=http://127.0.0.1:$first \
      SWITCHBOARD_MASTER_KEY=$key SWITCHBOARD_BOOTSTRAP_TOKEN=$boot SWITCHBOARD_REDIS_PREFIX=bench: \
      SWITCHBOARD_DATA_DIR="$OUT/data" RUST_LOG=warn "$BIN" serve >"$OUT/node$n.log" 2>&1 &
    pids+=($!)
    node_pids+=($!)
    urls+=(--url "http://127.0.0.1:$port")
    wait_ready "http://127.0.0.1:$port"
  done
}
