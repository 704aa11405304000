#!/usr/bin/env bash
# Does a burst of logins grow the process? Starts roomcast as a plain release binary in
# embedded mode (SQLite, no environment tricks), registers one user, then logs in LOGINS times
# (PARALLEL at once) and prints the resident set size before and after, the peak, and the
# login throughput, as one JSON line per run.
#
#   ./bench/login_rss.sh                      a fresh `cargo build --release`, 3 runs
#   ./bench/login_rss.sh BIN [BIN…]           the given server binaries, runs interleaved
#   ./bench/login_rss.sh --allocators         builds glibc malloc, mimalloc and jemalloc
#                                             variants (cargo features alloc-mimalloc,
#                                             alloc-jemalloc) and compares them
#
# Environment: LOGINS (1000), PARALLEL (8), RUNS (3), CARGO_TARGET_DIR (build cache).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
LOGINS="${LOGINS:-1000}"
PARALLEL="${PARALLEL:-8}"
RUNS="${RUNS:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/roomcast/target}"
log() { printf '[login_rss %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

for tool in curl python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "login_rss: $tool is required" >&2; exit 2; }
done

work="$(mktemp -d "${TMPDIR:-/tmp}/roomcast-login-rss.XXXXXX")"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill -KILL "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

build() { # [features] → path of the built binary
  local features="${1:-}" name="${1:-glibc}"
  log "cargo build --release ${features:+--features $features}"
  cargo build --release --quiet --bin roomcast ${features:+--features "$features"}
  cp "$CARGO_TARGET_DIR/release/roomcast" "$work/roomcast-$name"
  echo "$work/roomcast-$name"
}

bins=()
if [ "${1:-}" = --allocators ]; then
  bins+=("$(build)" "$(build alloc-mimalloc)" "$(build alloc-jemalloc)")
elif [ "$#" -gt 0 ]; then
  bins=("$@")
else
  bins+=("$(build)")
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
wait_http() { # url seconds
  local deadline=$((SECONDS + $2))
  until curl -fs -o /dev/null "$1"; do
    if [ "$SECONDS" -ge "$deadline" ]; then log "no answer from $1"; return 1; fi
    sleep 0.1
  done
}

password="correct horse battery staple"
measure() { # binary run → one JSON line
  local bin="$1" run="$2" port data base
  port="$(free_port)"
  data="$work/data-$run"
  mkdir -p "$data"
  base="http://127.0.0.1:$port"
  # Only what embedded mode needs, and no allocator settings (MALLOC_*) from the caller.
  # The login throttle counts every attempt of one username (SPEC); it is not what is measured.
  env -i PATH="$PATH" PORT="$port" DATABASE_URL="sqlite://$data/roomcast.db" RUST_LOG=warn \
    LOGIN_MAX_FAILURES=1000000 LOGIN_MAX_FAILURES_PER_IP=1000000 \
    "$bin" >>"$work/server.log" 2>&1 &
  server_pid=$!
  wait_http "$base/health/ready" 60
  local body
  body="$(printf '{"username":"rss_probe","password":"%s"}' "$password")"
  curl -fs -o /dev/null -H 'content-type: application/json' -d "$body" "$base/api/auth/register"
  sleep 1
  local before started ok took after peak
  before="$(rss_kib "$server_pid")"
  started="$(date +%s.%N)"
  ok="$(seq "$LOGINS" | xargs -P "$PARALLEL" -I{} curl -s -o /dev/null -w '%{http_code}\n' \
    -H 'content-type: application/json' -d "$body" "$base/api/auth/login" | grep -c '^200$' || true)"
  took="$(python3 -c "import time; print(round(time.time() - $started, 2))")"
  sleep 2
  after="$(rss_kib "$server_pid")"
  peak="$(hwm_kib "$server_pid")"
  kill -TERM "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
  python3 -c "import json,sys; b,a,p,ok,n,t=map(float,sys.argv[2:]); print(json.dumps({
    'binary': sys.argv[1], 'logins': int(n), 'ok': int(ok), 'parallel': $PARALLEL,
    'rss_before_mib': round(b/1024,1), 'rss_after_mib': round(a/1024,1),
    'growth_mib': round((a-b)/1024,1), 'peak_mib': round(p/1024,1),
    'secs': t, 'logins_per_sec': round(ok/t,1)}))" \
    "$(basename "$bin")" "$before" "$after" "$peak" "$ok" "$LOGINS" "$took"
}

for run in $(seq "$RUNS"); do
  for bin in "${bins[@]}"; do
    measure "$bin" "$run-$(basename "$bin")"
  done
done
