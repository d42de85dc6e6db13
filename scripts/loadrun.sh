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

# REDIS=1 runs mcp-authz with the Redis tier (a redis-server on loopback):
# cached checks are L1 hits and must cost nothing more.
redis_env=()
if [ -n "${REDIS:-}" ]; then
  redis-server --port 19194 --bind 127.0.0.1 --save "" --appendonly no --loglevel warning >"$bin/redis.log" 2>&1 &
  redis_env=(REDIS_URL=redis://127.0.0.1:19194/0)
  sleep 0.5
fi
env "${redis_env[@]}" "$bin/mcp-authz" dev --grpc-addr 127.0.0.1:19191 --http-addr 127.0.0.1:19192 >"$bin/dev.out" 2>"$bin/dev.err" &
authz_pid=$!
"$bin/loadcheck" allow-server --addr 127.0.0.1:19193 >"$bin/allow.out" &
allow_pid=$!
for _ in $(seq 100); do
  grep -q '^eyJ' "$bin/dev.out" 2>/dev/null && grep -q LISTENING "$bin/allow.out" 2>/dev/null && break
  sleep 0.1
done
token=$(grep -m1 '^eyJ' "$bin/dev.out")

echo "machine: $(nproc) cores, $(go version | cut -d' ' -f3), concurrency $conc, ${secs}s per run, 2 gRPC connections${REDIS:+, Redis tier on}"
for r in $(seq "$rounds"); do
  "$bin/loadcheck" run -addr 127.0.0.1:19193 -c "$conc" -d "${secs}s" -pid "$allow_pid" -token "$token" -decode "$decode" ${BODY:+-body-bytes "$BODY"} -label "allow[$r]"
  "$bin/loadcheck" run -addr 127.0.0.1:19191 -c "$conc" -d "${secs}s" -pid "$authz_pid" -token "$token" -decode "$decode" ${BODY:+-body-bytes "$BODY"} -label "mcp-authz[$r]"
done
