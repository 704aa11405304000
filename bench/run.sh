#!/usr/bin/env bash
# Benchmarks roomcast side by side with the Node.js stack it replaces (bench/peers/node), on
# this machine, in one run: the same Redis, the same PostgreSQL, 3 instances of each.
#
#   ./bench/run.sh            every scenario; writes bench/results/<date>.json and BENCHMARKS.md
#   ./bench/run.sh fanout     one scenario (fanout|fanout-cluster|chat|idle|storm|http|drain|
#                             ceiling); the results file holds only that scenario, BENCHMARKS.md
#                             is rendered from it merged over the newest full run's results
#   ./bench/run.sh smoke      tiny sizes, seconds; writes into a temp dir only (the test command
#                             runs it so the bench cannot rot); also BENCH_SMOKE=1
#
# Environment: CARGO_TARGET_DIR (build cache), ROOMCAST_BIN (a prebuilt server binary; default
# a fresh `cargo build --release`), BENCH_OUT (where results go; default bench/results).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

scenario="${1:-all}"
smoke="${BENCH_SMOKE:-0}"
if [ "$scenario" = smoke ]; then smoke=1; scenario=all; fi
case "$scenario" in
  all | fanout | fanout-cluster | chat | idle | storm | http | drain | ceiling) ;;
  *) echo "unknown scenario: $scenario (all|fanout|fanout-cluster|chat|idle|storm|http|drain|ceiling|smoke)" >&2; exit 2 ;;
esac

for tool in curl python3 redis-server redis-cli redis-benchmark node npm; do
  command -v "$tool" >/dev/null 2>&1 || { echo "bench: $tool is required" >&2; exit 2; }
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/roomcast/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# 10,000+ sockets per process on both sides.
ulimit -Hn 200000 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 30000 ]; then
  log "warning: open-file limit is $(ulimit -n); the 10,000-socket scenarios may fail"
fi

# --- sizes -----------------------------------------------------------------------------------
if [ "$smoke" = 1 ]; then
  FANOUT_MEMBERS=20; FANOUT_RATES=5,10; CHAT_ROOMS=5; CHAT_MEMBERS=4; CHAT_RATES=10,20
  STEP_SECS=1; GRACE_SECS=2; IDLE_CONNS=50; STORM_CONNS=60; HTTP_SECS=1; DRAIN_CONNS=30
  USERS=4; PUBLISH_N=2000; ECHO_SECS=1; ECHO_CONNS=10
else
  FANOUT_MEMBERS=1000; FANOUT_RATES=5,8,12,18,27,40,60,90,135,200,300,450,680; CHAT_ROOMS=1000; CHAT_MEMBERS=10
  CHAT_RATES=100,150,225,340,500,750,1100,1700,2500,3800; STEP_SECS=5; GRACE_SECS=3; IDLE_CONNS=10000
  STORM_CONNS=6000; HTTP_SECS=10; DRAIN_CONNS=5000; USERS=20; PUBLISH_N=300000; ECHO_SECS=5
  ECHO_CONNS=200
fi
HTTP_CONNS=48
FANOUT_RUNS="${BENCH_FANOUT_RUNS:-3}"
# The Redis Cluster ramp runs once: a second and third run would take the full run past 15 min.
CLUSTER_RUNS="${BENCH_CLUSTER_RUNS:-1}"
CHAT_RUNS="${BENCH_CHAT_RUNS:-3}"

# --- scratch space and cleanup -----------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/roomcast-bench.XXXXXX")"
chmod 755 "$work"
pids=()
pg_data=""
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  if [ -n "$pg_data" ]; then as_pg pg_ctl -D "$pg_data" -m immediate stop >/dev/null 2>&1 || true; fi
  if [ "$status" -ne 0 ]; then log "failed; logs kept in $work"; else rm -rf "$work"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$smoke" = 1 ]; then
  out="${BENCH_OUT:-$work/out}"
else
  out="${BENCH_OUT:-$root/bench/results}"
fi
mkdir -p "$out"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A free port for a Redis Cluster node: at most 55535, with its cluster bus port (+10000) free too.
free_cluster_port() {
  python3 -c '
import random, socket
while True:
    port = random.randint(20000, 55535)
    try:
        for p in (port, port + 10000):
            s = socket.socket()
            s.bind(("127.0.0.1", p))
            s.close()
    except OSError:
        continue
    print(port)
    break'
}

wait_http() { # url [seconds]
  local deadline=$((SECONDS + ${2:-30}))
  until curl -fs -o /dev/null "$1"; do
    if [ "$SECONDS" -ge "$deadline" ]; then log "no answer from $1"; return 1; fi
    sleep 0.1
  done
}

# --- builds ---------------------------------------------------------------------------------------
if [ -z "${ROOMCAST_BIN:-}" ]; then
  log "cargo build --release (roomcast)"
  cargo build --release --quiet --bin roomcast
  ROOMCAST_BIN="$CARGO_TARGET_DIR/release/roomcast"
fi
log "cargo build --release (load generator)"
(cd bench/loadgen && cargo build --release --quiet --target-dir "$CARGO_TARGET_DIR/bench-loadgen")
loadgen="$CARGO_TARGET_DIR/bench-loadgen/release/roomcast-loadgen"
if [ ! -d bench/peers/node/node_modules ] || [ bench/peers/node/package-lock.json -nt bench/peers/node/node_modules ]; then
  log "npm ci (node peer)"
  (cd bench/peers/node && npm ci --no-audit --no-fund --loglevel=error)
fi

# --- Redis and PostgreSQL (shared by both peers) ----------------------------------------------
redis_port="$(free_port)"
mkdir -p "$work/redis"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$work/redis" --logfile "$work/redis/redis.log" &
pids+=($!)
until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.1; done
export REDIS_URL="redis://127.0.0.1:$redis_port"

# A Redis Cluster of 6 nodes (3 masters, 1 replica each), started only for the fanout-cluster
# scenario; persistence off like the single Redis. Sets CLUSTER_NODES (host:port,…).
cluster_ports=()
CLUSTER_NODES=""
start_redis_cluster() {
  local i port deadline
  for i in 1 2 3 4 5 6; do
    port="$(free_cluster_port)"
    cluster_ports+=("$port")
    mkdir -p "$work/redis-cluster/$i"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
      --dir "$work/redis-cluster/$i" --logfile "$work/redis-cluster/$i/redis.log" &
    pids+=($!)
  done
  deadline=$((SECONDS + 30))
  for port in "${cluster_ports[@]}"; do
    until redis-cli -p "$port" ping >/dev/null 2>&1; do
      if [ "$SECONDS" -ge "$deadline" ]; then log "redis cluster: node on port $port did not start"; return 1; fi
      sleep 0.1
    done
  done
  CLUSTER_NODES="$(printf '127.0.0.1:%s,' "${cluster_ports[@]}")"
  CLUSTER_NODES="${CLUSTER_NODES%,}"
  log "redis cluster: creating on ${cluster_ports[*]}"
  # shellcheck disable=SC2046
  redis-cli --cluster create $(printf '127.0.0.1:%s ' "${cluster_ports[@]}") \
    --cluster-replicas 1 --cluster-yes >"$work/redis-cluster/create.log" 2>&1
  deadline=$((SECONDS + 60))
  for port in "${cluster_ports[@]}"; do
    until redis-cli -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; do
      if [ "$SECONDS" -ge "$deadline" ]; then log "redis cluster: not ok within 60 s"; return 1; fi
      sleep 0.2
    done
  done
}

# Empties every master of the cluster (replicas follow).
flush_redis_cluster() {
  local port
  for port in "${cluster_ports[@]}"; do
    if redis-cli -p "$port" role 2>/dev/null | head -n 1 | grep -q master; then
      redis-cli -p "$port" flushall >/dev/null
    fi
  done
}

pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
if [ "$(id -u)" -eq 0 ]; then
  as_pg() { local tool="$1"; shift; runuser -u postgres -- "$pg_bin/$tool" "$@"; }
else
  as_pg() { local tool="$1"; shift; "$pg_bin/$tool" "$@"; }
fi
pg_port="$(free_port)"
pg_data="$work/pg/data"
mkdir -p "$work/pg"
[ "$(id -u)" -eq 0 ] && chown postgres "$work/pg"
as_pg initdb -D "$pg_data" -U postgres --auth=trust -E UTF8 --no-locale >"$work/pg/initdb.log" 2>&1
cat >>"$pg_data/postgresql.conf" <<EOF
port = $pg_port
unix_socket_directories = '$work/pg'
listen_addresses = '127.0.0.1'
max_connections = 200
fsync = off
full_page_writes = off
EOF
as_pg pg_ctl -D "$pg_data" -l "$work/pg/pg.log" -w -t 60 start >/dev/null
for db in roomcast nodepeer; do
  as_pg psql -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -c "CREATE DATABASE $db" >/dev/null
done

session_secret="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
encryption_key="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"

# --- instances ----------------------------------------------------------------------------------
# Sets TARGETS (comma-separated base URLs) and SERVER_PIDS for 3 fresh instances of $1;
# `start_peer roomcast cluster` runs roomcast on the Redis Cluster instead of the single Redis.
start_peer() {
  local peer="$1" backend="${2:-single}" ports=() server_pids=() i redis_env
  if [ "$backend" = cluster ]; then
    flush_redis_cluster
    redis_env="REDIS_CLUSTER_NODES=$CLUSTER_NODES"
  else
    redis-cli -p "$redis_port" flushall >/dev/null
    redis_env="REDIS_URL=$REDIS_URL"
  fi
  for i in 1 2 3; do
    local port
    port="$(free_port)"
    ports+=("$port")
    if [ "$peer" = roomcast ]; then
      env -u REDIS_URL PORT="$port" INSTANCE_ID="rc-$i" "$redis_env" \
        DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/roomcast" \
        SESSION_SECRET="$session_secret" SESSION_ENCRYPTION_KEY="$encryption_key" \
        MESSAGE_RATE_PER_SEC=1000000 MESSAGE_RATE_BURST=1000000 \
        CONNECTION_RATE_PER_IP=1000000 CONNECTION_BURST_PER_IP=1000000 MAX_CONNECTIONS=30000 \
        SHUTDOWN_TIMEOUT_SECS=10 RUST_LOG=warn \
        "$ROOMCAST_BIN" >>"$work/$peer-$i.log" 2>&1 &
    else
      env PORT="$port" INSTANCE_ID="node-$i" REDIS_URL="$REDIS_URL" NODE_ENV=production \
        DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/nodepeer" \
        SESSION_SECRET="$session_secret" SESSION_ENCRYPTION_KEY="$encryption_key" \
        MESSAGE_RATE_PER_SEC=1000000 SESSION_COOKIE_NAME=peer.sid \
        node bench/peers/node/server.mjs >>"$work/$peer-$i.log" 2>&1 &
    fi
    server_pids+=($!)
    pids+=($!)
    # The first instance applies migrations / creates tables; the others start after it.
    if [ "$i" = 1 ]; then wait_http "http://127.0.0.1:$port/health/ready" 60; fi
  done
  for port in "${ports[@]}"; do wait_http "http://127.0.0.1:$port/health/ready" 60; done
  TARGETS="$(printf 'http://127.0.0.1:%s,' "${ports[@]}")"
  TARGETS="${TARGETS%,}"
  SERVER_PIDS="$(IFS=,; echo "${server_pids[*]}")"
  COOKIE_NAME=roomcast.sid
  [ "$peer" = node ] && COOKIE_NAME=peer.sid
  return 0
}

# Between scenarios nothing is measured: instances are killed, not drained.
stop_peer() {
  local pid
  for pid in ${SERVER_PIDS//,/ }; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in ${SERVER_PIDS//,/ }; do wait "$pid" 2>/dev/null || true; done
}

# Runs the load generator for one scenario against one peer; its JSON goes to
# $work/results/<scenario>-<peer>.json (an {"error": …} object when it fails).
run_loadgen() { # scenario peer mode args…
  local name="$1" peer="$2" mode="$3"
  shift 3
  local file="$work/results/$name-$peer.json"
  mkdir -p "$work/results"
  log "$name: $peer"
  if "$loadgen" "$mode" --targets "$TARGETS" --pids "$SERVER_PIDS" --cookie-name "$COOKIE_NAME" \
    --users "$USERS" "$@" >"$file" 2>>"$work/loadgen-$name-$peer.log"; then
    log "$name: $peer: $(head -c 400 "$file")"
  else
    local reason
    reason="$(tail -n 3 "$work/loadgen-$name-$peer.log" | tr '\n"' ' ' | cut -c1-400)"
    printf '{"error": "%s"}\n' "$reason" >"$file"
    log "$name: $peer FAILED: $reason"
  fi
}

scenario_args() { # scenario → loadgen mode and options
  case "$1" in
    fanout | fanout-cluster) echo "ramp --rooms 1 --members $FANOUT_MEMBERS --senders-per-room 10 --rates $FANOUT_RATES --step-secs $STEP_SECS --grace-secs $GRACE_SECS" ;;
    chat) echo "ramp --rooms $CHAT_ROOMS --members $CHAT_MEMBERS --senders-per-room 1 --rates $CHAT_RATES --step-secs $STEP_SECS --grace-secs $GRACE_SECS" ;;
    idle) echo "idle --connections $IDLE_CONNS" ;;
    storm) echo "storm --connections $STORM_CONNS --concurrency 500" ;;
    http) echo "http --connections $HTTP_CONNS --secs $HTTP_SECS" ;;
    drain) echo "drain --connections $DRAIN_CONNS --timeout-secs 60" ;;
  esac
}

started_at="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
started_secs=$SECONDS
if [ "$scenario" = all ]; then
  selected=(fanout fanout-cluster chat idle storm http drain)
elif [ "$scenario" = ceiling ]; then
  selected=()
else
  selected=("$scenario")
fi

for name in "${selected[@]}"; do
  if [ "$name" = fanout-cluster ]; then start_redis_cluster; fi
done

# The peers a scenario runs: the Node peer's Redis adapter has no cluster mode worth measuring,
# so the Redis Cluster scenario is roomcast's alone (side by side with its single-Redis fan-out).
scenario_peers() {
  if [ "$1" = fanout-cluster ]; then echo roomcast; else echo roomcast node; fi
}
scenario_backend() {
  if [ "$1" = fanout-cluster ]; then echo cluster; else echo single; fi
}

if [ "$smoke" = 1 ]; then
  # Smoke: one set of instances per peer for every scenario (drain, which kills one, is last);
  # the Redis Cluster scenario gets its own roomcast instances.
  for name in "${selected[@]}"; do
    if [ "$name" = fanout-cluster ]; then
      start_peer roomcast cluster
      # shellcheck disable=SC2046
      run_loadgen "$name" roomcast $(scenario_args "$name")
      stop_peer
    fi
  done
  for peer in roomcast node; do
    start_peer "$peer"
    for name in "${selected[@]}"; do
      [ "$name" = fanout-cluster ] && continue
      # shellcheck disable=SC2046
      run_loadgen "$name" "$peer" $(scenario_args "$name")
    done
    stop_peer
  done
else
  # Fresh instances for every scenario and peer, so no scenario inherits another's heap.
  # The ramps are repeated with the peers alternating, so that a busy moment of the shared
  # machine does not decide the comparison; the report takes each peer's median run.
  for name in "${selected[@]}"; do
    runs=1
    [ "$name" = fanout ] && runs="$FANOUT_RUNS"
    [ "$name" = chat ] && runs="$CHAT_RUNS"
    [ "$name" = fanout-cluster ] && runs="$CLUSTER_RUNS"
    for run in $(seq 1 "$runs"); do
      for peer in $(scenario_peers "$name"); do
        start_peer "$peer" "$(scenario_backend "$name")"
        label="$peer"
        [ "$runs" -gt 1 ] && label="$peer.r$run"
        # shellcheck disable=SC2046
        run_loadgen "$name" "$label" $(scenario_args "$name")
        stop_peer
      done
    done
  done
fi

# --- the ceiling: Redis PUBLISH and a raw WebSocket echo on loopback ----------------------------
if [ "$scenario" = all ] || [ "$scenario" = ceiling ]; then
  mkdir -p "$work/results"
  log "ceiling: redis-benchmark PUBLISH"
  publish_csv="$(redis-benchmark -p "$redis_port" -q -n "$PUBLISH_N" -c 50 --csv PUBLISH bench hello | tail -n 1)"
  printf '{"command": "redis-benchmark -q -n %s -c 50 --csv PUBLISH bench hello", "csv": "%s"}\n' \
    "$PUBLISH_N" "$(printf '%s' "$publish_csv" | tr -d '"')" >"$work/results/ceiling-publish.json"
  log "ceiling: WebSocket echo"
  echo_port="$(free_port)"
  TOKIO_WORKER_THREADS=2 "$loadgen" echo-server --port "$echo_port" 2>"$work/echo-server.log" &
  echo_pid=$!
  pids+=("$echo_pid")
  until grep -q listening "$work/echo-server.log" 2>/dev/null; do sleep 0.1; done
  "$loadgen" echo --targets "http://127.0.0.1:$echo_port" --pids "$echo_pid" \
    --connections "$ECHO_CONNS" --secs "$ECHO_SECS" >"$work/results/ceiling-echo.json"
  kill -KILL "$echo_pid" 2>/dev/null || true
  wait "$echo_pid" 2>/dev/null || true
fi

# --- results and report ---------------------------------------------------------------------------
stamp="$(date -u +%Y-%m-%d-%H%M)"
python3 bench/collect.py \
  --results "$work/results" --out "$out/$stamp.json" --started "$started_at" \
  --elapsed "$((SECONDS - started_secs))" --smoke "$smoke" --scenario "$scenario" \
  --roomcast-bin "$ROOMCAST_BIN" --pg-bin "$pg_bin"
if [ "$smoke" = 1 ]; then
  python3 bench/render.py --results "$out/$stamp.json" --markdown "$work/BENCHMARKS.md" --plots "$work"
  # The smoke run asserts no figure, only that every scenario ran for both peers.
  failed="$(grep -l '^{"error"' "$work"/results/*.json || true)"
  if [ -n "$failed" ]; then
    log "smoke run: scenarios failed: $(basename -a $failed | tr '\n' ' ')"
    exit 1
  fi
  log "smoke run finished in $((SECONDS - started_secs)) s (nothing written into the tree)"
else
  # A single scenario is laid over the newest full run, so BENCHMARKS.md keeps every scenario.
  base=""
  if [ "$scenario" != all ]; then
    for candidate in "$out"/*.json; do
      [ "$candidate" = "$out/$stamp.json" ] && continue
      if grep -q '"scenario": "all"' "$candidate" && grep -q '"smoke": false' "$candidate"; then
        base="$candidate"
      fi
    done
  fi
  python3 bench/render.py ${base:+--results "$base"} --results "$out/$stamp.json" \
    --markdown "$root/BENCHMARKS.md" --plots "$root/bench/results"
  log "wrote $out/$stamp.json and BENCHMARKS.md in $((SECONDS - started_secs)) s"
fi
