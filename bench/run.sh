#!/usr/bin/env bash
# Benchmarks roomcast side by side with the Node.js stack it replaces (bench/peers/node), on
# this machine, in one run: the same Redis, the same PostgreSQL, 3 instances of each.
#
#   ./bench/run.sh            every scenario; writes bench/results/<date>.json and BENCHMARKS.md
#   ./bench/run.sh fanout     one scenario (fanout|fanout-cluster|chat|hotroom|oneroom|logins|idle|
#                             storm|http|drain|ceiling) or several (fanout,oneroom); the results
#                             file holds only those, BENCHMARKS.md is rendered from it merged over
#                             the newest full run's results
#   ./bench/run.sh smoke      tiny sizes, seconds; writes into a temp dir only (the test command
#                             runs it so the bench cannot rot); also BENCH_SMOKE=1
#
# Environment: CARGO_TARGET_DIR (build cache), ROOMCAST_BIN (a prebuilt server binary; default
# a fresh `cargo build --release`), BENCH_OUT (where results and plots go; default
# bench/results), BENCH_MARKDOWN (the report; default BENCHMARKS.md);
# BENCH_FANOUT_RUNS / BENCH_CHAT_RUNS (3 each), BENCH_HOT_RUNS / BENCH_ONEROOM_RUNS /
# BENCH_CLUSTER_RUNS (1 each): how often a maximum is searched, peers alternating;
# BENCH_STEP_SECS (3): seconds one offered rate is held. Sizes can be overridden for a short
# trial run: FANOUT_MEMBERS, CHAT_ROOMS, CHAT_MEMBERS, HOT_MEMBERS, ONEROOM_MEMBERS, LOGINS.
#
# Maxima are searched, not stepped: from a start rate the offered messages/s doubles until a
# step fails (p99 > 100 ms or < 99.9 % delivered; a failed step is run a second time before it
# counts), then the bracket is bisected until it is narrower than 10 %. Every throughput step
# reports the servers' CPU time per delivered message (utime + stime from /proc, in the
# kernel's clock ticks); one "probe" step offers the same load to both peers for that figure.
# A full run takes about 30-35 minutes on 2 cores; the script prints an ETA as it goes.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

scenario="${1:-all}"
smoke="${BENCH_SMOKE:-0}"
if [ "$scenario" = smoke ]; then smoke=1; scenario=all; fi
IFS=, read -ra requested <<<"$scenario"
for name in "${requested[@]}"; do
  case "$name" in
    all | fanout | fanout-cluster | chat | hotroom | oneroom | logins | idle | storm | http | drain | ceiling) ;;
    *) echo "unknown scenario: $name (all|fanout|fanout-cluster|chat|hotroom|oneroom|logins|idle|storm|http|drain|ceiling|smoke, or a comma-separated list)" >&2; exit 2 ;;
  esac
done

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
# Ramps: *_START is the first offered rate (messages/s, all rooms together), *_PROBE the equal
# load both peers are offered for CPU per delivery, *_MAX a cap on the search.
if [ "$smoke" = 1 ]; then
  # One probe step and one search step (start = cap) per search: it runs, not how far.
  FANOUT_MEMBERS=20; FANOUT_START=10; FANOUT_PROBE=5; FANOUT_MAX=10
  CHAT_ROOMS=5; CHAT_MEMBERS=4; CHAT_START=20; CHAT_PROBE=10; CHAT_MAX=20
  HOT_MEMBERS=20; HOT_START=8; HOT_PROBE=4; HOT_MAX=8
  ONEROOM_MEMBERS=4; ONEROOM_START=40; ONEROOM_PROBE=20; ONEROOM_MAX=40
  PRECISION=1; STEP_SECS=1; GRACE_SECS=2; IDLE_CONNS=50; STORM_CONNS=60; HTTP_SECS=1; DRAIN_CONNS=30
  USERS=4; LOGINS=6; LOGIN_SETTLE_SECS=0.5; PUBLISH_N=2000; ECHO_SECS=1; ECHO_CONNS=10
else
  FANOUT_MEMBERS="${FANOUT_MEMBERS:-1000}"; FANOUT_START=20; FANOUT_PROBE=45; FANOUT_MAX=2000
  CHAT_ROOMS="${CHAT_ROOMS:-1000}"; CHAT_MEMBERS="${CHAT_MEMBERS:-10}"
  CHAT_START=250; CHAT_PROBE=600; CHAT_MAX=20000
  HOT_MEMBERS="${HOT_MEMBERS:-1000}"; HOT_START=10; HOT_PROBE=40; HOT_MAX=2000
  ONEROOM_MEMBERS="${ONEROOM_MEMBERS:-10}"; ONEROOM_START=250; ONEROOM_PROBE=500; ONEROOM_MAX=40000
  PRECISION=0.1; STEP_SECS="${BENCH_STEP_SECS:-3}"; GRACE_SECS=3; IDLE_CONNS=10000
  STORM_CONNS=6000; HTTP_SECS=10; DRAIN_CONNS=5000; USERS=20; LOGINS="${LOGINS:-1000}"; LOGIN_SETTLE_SECS=3
  PUBLISH_N=300000; ECHO_SECS=5; ECHO_CONNS=200
fi
# Hot room: every sender offers this many messages/s, so the number of senders is what ramps.
HOT_SENDER_RATE=1
HTTP_CONNS=48
FANOUT_RUNS="${BENCH_FANOUT_RUNS:-3}"
CHAT_RUNS="${BENCH_CHAT_RUNS:-3}"
# The other searches run once each, so that a full run stays within about 35 minutes.
CLUSTER_RUNS="${BENCH_CLUSTER_RUNS:-1}"
HOT_RUNS="${BENCH_HOT_RUNS:-1}"
ONEROOM_RUNS="${BENCH_ONEROOM_RUNS:-1}"

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
# Sets TARGETS (comma-separated base URLs) and SERVER_PIDS for 3 fresh instances of a peer label:
# roomcast | roomcast_sqlite (the 3 instances share one fresh SQLite file) | node; backend
# `cluster` runs roomcast on the Redis Cluster instead of the single Redis. roomcast runs as a
# plain binary: no MALLOC_* tuning from the caller's environment reaches it.
start_peer() {
  local label="$1" backend="${2:-single}" ports=() server_pids=() i redis_env peer database_url
  peer="${label%%_*}"
  database_url="postgres://postgres@127.0.0.1:$pg_port/roomcast"
  if [ "$label" = roomcast_sqlite ]; then
    local sqlite_dir
    sqlite_dir="$(mktemp -d "$work/sqlite.XXXXXX")"
    database_url="sqlite://$sqlite_dir/roomcast.db"
  fi
  if [ "$backend" = cluster ]; then
    flush_redis_cluster
    redis_env="REDIS_CLUSTER_NODES=$CLUSTER_NODES"
  else
    redis-cli -p "$redis_port" flushall >/dev/null
    redis_env="REDIS_URL=$REDIS_URL"
  fi
  local unset_malloc=() variable
  while IFS= read -r variable; do unset_malloc+=(-u "$variable"); done < <(env | sed -n 's/^\(MALLOC_[A-Za-z_]*\)=.*/\1/p')
  for i in 1 2 3; do
    local port
    port="$(free_port)"
    ports+=("$port")
    if [ "$peer" = roomcast ]; then
      env -u REDIS_URL "${unset_malloc[@]}" PORT="$port" INSTANCE_ID="rc-$i" "$redis_env" \
        DATABASE_URL="$database_url" \
        SESSION_SECRET="$session_secret" SESSION_ENCRYPTION_KEY="$encryption_key" \
        MESSAGE_RATE_PER_SEC=1000000 MESSAGE_RATE_BURST=1000000 \
        LOGIN_MAX_FAILURES=1000000 LOGIN_MAX_FAILURES_PER_IP=1000000 \
        REGISTER_RATE_PER_MIN=1000000 REGISTER_RATE_BURST=1000000 \
        ROOM_EVENT_RATE_PER_SEC=1000000 ROOM_EVENT_RATE_BURST=1000000 \
        MAX_EVENTS_IN_FLIGHT_PER_SOCKET=1000000 \
        CONNECTION_RATE_PER_IP=1000000 CONNECTION_BURST_PER_IP=1000000 MAX_CONNECTIONS=30000 \
        SHUTDOWN_TIMEOUT_SECS=10 RUST_LOG=warn \
        "$ROOMCAST_BIN" >>"$work/$label-$i.log" 2>&1 &
    else
      env PORT="$port" INSTANCE_ID="node-$i" REDIS_URL="$REDIS_URL" NODE_ENV=production \
        DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/nodepeer" \
        SESSION_SECRET="$session_secret" SESSION_ENCRYPTION_KEY="$encryption_key" \
        MESSAGE_RATE_PER_SEC=1000000 SESSION_COOKIE_NAME=peer.sid \
        node bench/peers/node/server.mjs >>"$work/$label-$i.log" 2>&1 &
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
# $work/results/<scenario>-<label>.json (an {"error": …} object when it fails). Its progress
# lines (each step of a search) are shown as they come; everything else goes to its log.
run_loadgen() { # scenario label mode args…
  local name="$1" label="$2" mode="$3"
  shift 3
  local file="$work/results/$name-$label.json" logf="$work/loadgen-$name-$label.log"
  mkdir -p "$work/results"
  if "$loadgen" "$mode" --targets "$TARGETS" --pids "$SERVER_PIDS" --cookie-name "$COOKIE_NAME" \
    --users "$USERS" "$@" >"$file" 2> >(tee -a "$logf" | while IFS= read -r line; do
      case "$line" in progress:*) log "  $name $label: ${line#progress: }" ;; esac
    done); then
    log "$name: $label: done: $(summary_of "$file")"
  else
    sleep 0.2
    local reason
    reason="$(grep -v '^ramp step\|^progress:' "$logf" | tail -n 3 | tr '\n"' ' ' | cut -c1-400)"
    printf '{"error": "%s"}\n' "$reason" >"$file"
    log "$name: $label FAILED: $reason"
  fi
}

# One line of a scenario's result for the progress log.
summary_of() {
  python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
keys = ("max_sustained_messages_per_sec", "max_sustained_delivered_per_sec", "at_max_p99_ms",
        "at_max_cpu_us_per_delivery", "bracket", "rss_per_connection_kib", "accepted_per_sec",
        "requests_per_sec", "all_reconnected_secs", "lost", "rss_before_mib", "rss_after_mib")
print(", ".join(f"{k}={r[k]}" for k in keys if k in r) or json.dumps(r)[:300])
PY
}

# Loadgen options of a throughput search: members, senders, start/probe/max rates.
search_args() { # rooms members senders_per_room start probe max [extra…]
  local rooms="$1" members="$2" senders="$3" start="$4" probe="$5" max="$6"
  shift 6
  echo "ramp --rooms $rooms --members $members --senders-per-room $senders --start-rate $start" \
    "--probe-rate $probe --max-rate $max --precision $PRECISION --step-secs $STEP_SECS" \
    "--grace-secs $GRACE_SECS $*"
}

scenario_args() { # scenario → loadgen mode and options
  case "$1" in
    fanout | fanout-cluster) search_args 1 "$FANOUT_MEMBERS" 10 "$FANOUT_START" "$FANOUT_PROBE" "$FANOUT_MAX" ;;
    chat) search_args "$CHAT_ROOMS" "$CHAT_MEMBERS" 1 "$CHAT_START" "$CHAT_PROBE" "$CHAT_MAX" ;;
    hotroom) search_args 1 "$HOT_MEMBERS" "$HOT_MEMBERS" "$HOT_START" "$HOT_PROBE" "$HOT_MAX" --sender-rate "$HOT_SENDER_RATE" ;;
    oneroom) search_args 1 "$ONEROOM_MEMBERS" "$ONEROOM_MEMBERS" "$ONEROOM_START" "$ONEROOM_PROBE" "$ONEROOM_MAX" --half true ;;
    logins) echo "logins --logins $LOGINS --concurrency 16 --settle-secs $LOGIN_SETTLE_SECS" ;;
    idle) echo "idle --connections $IDLE_CONNS" ;;
    storm) echo "storm --connections $STORM_CONNS --concurrency 500" ;;
    http) echo "http --connections $HTTP_CONNS --secs $HTTP_SECS" ;;
    drain) echo "drain --connections $DRAIN_CONNS --timeout-secs 60" ;;
  esac
}

# Estimated seconds of one scenario run for one peer, for the ETA: instance start, socket
# setup, and about 12 steps for a search (8-10 rates judged, a failed one runs twice; trial
# runs on the shared 2-core machine took 11-16).
step_estimate=$((STEP_SECS + 2))
unit_estimate() {
  local search=$((12 * step_estimate))
  [ "$smoke" = 1 ] && search=$((4 * step_estimate))
  case "$1" in
    fanout | fanout-cluster | hotroom) echo $((15 + search)) ;;
    chat) echo $((15 + CHAT_ROOMS * CHAT_MEMBERS / 300 + search)) ;;
    oneroom) echo $((8 + search)) ;;
    logins) echo $((10 + LOGINS / 15)) ;;
    idle) echo $((10 + IDLE_CONNS / 300)) ;;
    storm) echo $((10 + STORM_CONNS / 500)) ;;
    http) echo $((10 + HTTP_SECS)) ;;
    drain) echo $((15 + DRAIN_CONNS / 500)) ;;
    ceiling) echo $((5 + ECHO_SECS + PUBLISH_N / 30000)) ;;
  esac
}

# Progress: units (one scenario run of one peer) planned, their estimated seconds, and what is
# done; the ETA scales the remaining estimate by how fast the finished units went.
units_total=0
units_done=0
estimate_total=0
estimate_done=0
plan_unit() { units_total=$((units_total + 1)); estimate_total=$((estimate_total + $(unit_estimate "$1"))); }
begin_unit() { # scenario label
  local elapsed=$((SECONDS - started_secs)) remaining=$((estimate_total - estimate_done)) eta
  if [ "$estimate_done" -gt 0 ] && [ "$elapsed" -gt 0 ]; then
    remaining=$((remaining * elapsed / estimate_done))
  fi
  eta="$(date -u -d "@$(($(date +%s) + remaining))" +%H:%M:%S)"
  log "[$((units_done + 1))/$units_total] $1: $2 · $((elapsed / 60))m$((elapsed % 60))s elapsed, ETA $eta UTC (about $(((remaining + 59) / 60)) min left)"
}
end_unit() { units_done=$((units_done + 1)); estimate_done=$((estimate_done + $(unit_estimate "$1"))); }

started_at="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
started_secs=$SECONDS
run_ceiling=0
if [ "$scenario" = all ]; then
  selected=(fanout fanout-cluster chat hotroom oneroom logins idle storm http drain)
  run_ceiling=1
else
  selected=()
  for name in "${requested[@]}"; do
    if [ "$name" = ceiling ]; then run_ceiling=1; else selected+=("$name"); fi
  done
fi

for name in "${selected[@]}"; do
  if [ "$name" = fanout-cluster ]; then start_redis_cluster; fi
done

# The peers (labels) a scenario runs: the Node peer's Redis adapter has no cluster mode worth
# measuring, so the Redis Cluster scenario is roomcast's alone (side by side with its
# single-Redis fan-out); one room runs roomcast on PostgreSQL and on SQLite.
scenario_peers() {
  case "$1" in
    fanout-cluster) echo roomcast ;;
    oneroom) echo roomcast roomcast_sqlite node ;;
    *) echo roomcast node ;;
  esac
}
scenario_backend() {
  if [ "$1" = fanout-cluster ]; then echo cluster; else echo single; fi
}
scenario_runs() {
  case "$1" in
    fanout) echo "$FANOUT_RUNS" ;;
    chat) echo "$CHAT_RUNS" ;;
    fanout-cluster) echo "$CLUSTER_RUNS" ;;
    hotroom) echo "$HOT_RUNS" ;;
    oneroom) echo "$ONEROOM_RUNS" ;;
    *) echo 1 ;;
  esac
}

if [ "$smoke" = 1 ]; then
  # Smoke: one set of instances per peer for every scenario (drain, which kills one, is last);
  # the Redis Cluster and SQLite runs get their own roomcast instances.
  for name in "${selected[@]}"; do
    for label in $(scenario_peers "$name"); do plan_unit "$name"; done
  done
  for name in "${selected[@]}"; do
    if [ "$name" = fanout-cluster ] || [ "$name" = oneroom ]; then
      label=roomcast_sqlite
      [ "$name" = fanout-cluster ] && label=roomcast
      start_peer "$label" "$(scenario_backend "$name")"
      begin_unit "$name" "$label"
      # shellcheck disable=SC2046
      run_loadgen "$name" "$label" $(scenario_args "$name")
      end_unit "$name"
      stop_peer
    fi
  done
  for peer in roomcast node; do
    start_peer "$peer"
    for name in "${selected[@]}"; do
      [ "$name" = fanout-cluster ] && continue
      begin_unit "$name" "$peer"
      # shellcheck disable=SC2046
      run_loadgen "$name" "$peer" $(scenario_args "$name")
      end_unit "$name"
    done
    stop_peer
  done
else
  # Fresh instances for every scenario and peer, so no scenario inherits another's heap.
  # The searches are repeated with the peers alternating, so that a busy moment of the shared
  # machine does not decide the comparison; the report shows each peer's median and spread.
  for name in "${selected[@]}"; do
    for run in $(seq 1 "$(scenario_runs "$name")"); do
      for label in $(scenario_peers "$name"); do plan_unit "$name"; done
    done
  done
  if [ "$run_ceiling" = 1 ]; then plan_unit ceiling; fi
  log "plan: $units_total runs of a scenario against one peer, estimated $((estimate_total / 60)) min"
  for name in "${selected[@]}"; do
    runs="$(scenario_runs "$name")"
    for run in $(seq 1 "$runs"); do
      for peer in $(scenario_peers "$name"); do
        label="$peer"
        [ "$runs" -gt 1 ] && label="$peer.r$run"
        suffix=""
        [ "$runs" -gt 1 ] && suffix=" (run $run of $runs)"
        begin_unit "$name" "$label$suffix"
        start_peer "$peer" "$(scenario_backend "$name")"
        # shellcheck disable=SC2046
        run_loadgen "$name" "$label" $(scenario_args "$name")
        stop_peer
        end_unit "$name"
      done
    done
  done
fi

# --- the ceiling: Redis PUBLISH and a raw WebSocket echo on loopback ----------------------------
if [ "$run_ceiling" = 1 ]; then
  mkdir -p "$work/results"
  [ "$smoke" = 1 ] || begin_unit ceiling "redis-benchmark PUBLISH and WebSocket echo"
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
  markdown="${BENCH_MARKDOWN:-$root/BENCHMARKS.md}"
  python3 bench/render.py ${base:+--results "$base"} --results "$out/$stamp.json" \
    --markdown "$markdown" --plots "$out"
  log "wrote $out/$stamp.json and $markdown in $((SECONDS - started_secs)) s"
fi
