#!/usr/bin/env bash
# Loopback load run: mcp-authz (cached valid JWT, via `mcp-authz dev`) against
# the ceiling, a trivial always-allow Check server, alternating so that both
# see the same machine state. Prints requests/s, p50, p99 and server CPU per
# Check. Both servers receive the same request, bearer token included.
# Usage: [BODY=bytes] [REDIS=1] scripts/loadrun.sh [rounds] [seconds] [concurrency] [status|full]
# BODY sends a JSON-RPC tools/call body of that size with every Check (both servers).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
secs=${2:-10}
conc=${3:-50}
decode=${4:-status}   # status: read only the decision; full: unmarshal every response
bin=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$bin"' EXIT

go build -o "$bin/mcp-authz" ./cmd/mcp-authz
go build -o "$bin/loadcheck" ./tools/loadcheck

# fail NAME LOG: a child did not come up; say why, with its own words.
fail() {
  echo "loadrun: $1 did not start:" >&2
  sed 's/^/  /' "$2" >&2
  exit 1
}

# free_port: a loopback port nothing listens on (for children that cannot
# be given port 0 and asked which port they took).
free_port() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
  echo "loadrun: no free loopback port found" >&2
  exit 1
}

# REDIS=1 runs mcp-authz with the Redis tier (a redis-server on loopback):
# cached checks are L1 hits and must cost nothing more.
redis_env=()
if [ -n "${REDIS:-}" ]; then
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --loglevel warning >"$bin/redis.log" 2>&1 &
  redis_pid=$!
  for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null && break
    kill -0 "$redis_pid" 2>/dev/null || fail "redis-server on port $redis_port" "$bin/redis.log"
    sleep 0.1
  done
  redis_env=(REDIS_URL="redis://127.0.0.1:$redis_port/0")
fi
# Port 0 everywhere: each child says which port it took.
env "${redis_env[@]}" "$bin/mcp-authz" dev --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 >"$bin/dev.out" 2>"$bin/dev.err" &
authz_pid=$!
"$bin/loadcheck" allow-server --addr 127.0.0.1:0 >"$bin/allow.out" 2>"$bin/allow.err" &
allow_pid=$!
ready=
for _ in $(seq 150); do
  kill -0 "$authz_pid" 2>/dev/null || fail "mcp-authz dev" "$bin/dev.err"
  kill -0 "$allow_pid" 2>/dev/null || fail "loadcheck allow-server" "$bin/allow.err"
  if grep -q '^export TOKEN=' "$bin/dev.out" && grep -q '^LISTENING ' "$bin/allow.out"; then
    ready=1
    break
  fi
  sleep 0.1
done
[ -n "$ready" ] || { grep -q '^export TOKEN=' "$bin/dev.out" || fail "mcp-authz dev (no token within 15s)" "$bin/dev.err"; fail "loadcheck allow-server (not listening within 15s)" "$bin/allow.err"; }
token=$(sed -n 's/^export TOKEN=//p' "$bin/dev.out" | head -1)
authz_addr=$(awk '$1 == "ext_authz" { print $3; exit }' "$bin/dev.out")
allow_addr=$(awk '$1 == "LISTENING" { print $2; exit }' "$bin/allow.out")

echo "machine: $(nproc) cores, $(go version | cut -d' ' -f3), concurrency $conc, ${secs}s per run, 2 gRPC connections${REDIS:+, Redis tier on}"
for r in $(seq "$rounds"); do
  "$bin/loadcheck" run -addr "$allow_addr" -c "$conc" -d "${secs}s" -pid "$allow_pid" -token "$token" -decode "$decode" ${BODY:+-body-bytes "$BODY"} -label "allow[$r]"
  "$bin/loadcheck" run -addr "$authz_addr" -c "$conc" -d "${secs}s" -pid "$authz_pid" -token "$token" -decode "$decode" ${BODY:+-body-bytes "$BODY"} -label "mcp-authz[$r]"
done
