#!/usr/bin/env bash
# Loopback load runs of mcp-authz against the ceiling, a trivial always-allow
# Check server, alternating so that both see the same machine state. Prints
# requests/s, p50, p99 and server CPU per Check. Both servers receive the
# same requests, bearer tokens included.
#
# Usage: [MODE=cached|cold|fleet] [BODY=bytes] [REDIS=1] scripts/loadrun.sh [rounds] [seconds] [concurrency] [status|full]
#
# MODE=cached (default): one valid token, cached after its first Check
#   (mcp-authz dev). BODY sends a JSON-RPC tools/call body of that size with
#   every Check (both servers); REDIS=1 adds the Redis tier.
# MODE=cold: every Check carries a valid RS256 token mcp-authz has never
#   seen (minted before the run by `loadcheck issuer`, whose JWKS mcp-authz
#   is configured against), so every Check validates a signature. Each round
#   also measures golang-jwt's own parse+verify of such tokens in process;
#   the target is mcp-authz − ceiling ≤ 1.3 × golang-jwt, CPU per Check.
#   TOKENS (default 40000) fresh tokens are minted per round (about 0.5 ms
#   of CPU each); mcp-authz's run ends early when it has used them up (the
#   ceiling, which caches nothing, cycles through them). REDIS=1 adds the
#   Redis tier.
# MODE=fleet: three replicas (`mcp-authz serve`) sharing one redis-server,
#   and bursts of BURST (default 1000) fresh tokens, each sent to all three
#   replicas at once (COPIES, default 1, Checks per token per replica, with
#   a deadline of TIMEOUT, default 1s); prints how many validations the
#   fleet made, and the CPU the replicas and redis-server used per token.
#   VALIDATION=jwt (default) counts the verdicts written to Redis per token
#   (Redis keyspace events: one per validation whose verdict reached Redis,
#   so a lower bound when Redis calls fail); VALIDATION=introspection counts
#   the calls the authorization server received, exactly. ORDER=spread sends
#   a token's Checks to the replicas one after another instead (a client
#   whose requests Envoy spreads over the fleet). REDIS=0 runs the replicas
#   without Redis, each on its own, for comparison. rounds = bursts; seconds
#   and concurrency are unused.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
secs=${2:-10}
conc=${3:-50}
decode=${4:-status}   # status: read only the decision; full: unmarshal every response
mode=${MODE:-cached}
case "$mode" in cached|cold|fleet) ;; *) echo "loadrun: MODE must be cached, cold or fleet" >&2; exit 2 ;; esac
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
# be given port 0 and asked which port they took), below Linux's ephemeral
# range (32768 and up), where outgoing connections would take it meanwhile.
free_port() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
  echo "loadrun: no free loopback port found" >&2
  exit 1
}

# start_redis: a redis-server on loopback; sets redis_port.
start_redis() {
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --loglevel warning >"$bin/redis.log" 2>&1 &
  local pid=$!
  redis_pid=$pid
  for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null && return
    kill -0 "$pid" 2>/dev/null || fail "redis-server on port $redis_port" "$bin/redis.log"
    sleep 0.1
  done
  fail "redis-server on port $redis_port" "$bin/redis.log"
}

# start_issuer N: loadcheck's development issuer with N fresh tokens in
# $bin/tokens.txt; sets issuer_url, jwks_url, introspect_url.
start_issuer() {
  echo "minting $1 RS256 tokens..."
  "$bin/loadcheck" issuer -n "$1" -out "$bin/tokens.txt" >"$bin/issuer.out" 2>"$bin/issuer.err" &
  local pid=$!
  until grep -q '^READY' "$bin/issuer.out"; do
    kill -0 "$pid" 2>/dev/null || fail "loadcheck issuer" "$bin/issuer.err"
    sleep 0.2
  done
  issuer_url=$(awk '$1 == "ISSUER" { print $2 }' "$bin/issuer.out")
  jwks_url=$(awk '$1 == "JWKS" { print $2 }' "$bin/issuer.out")
  introspect_url=$(awk '$1 == "INTROSPECT" { print $2 }' "$bin/issuer.out")
  grep '^MINTED' "$bin/issuer.out"
}

# start_serve NAME [VAR=value...]: `mcp-authz serve` on free loopback ports,
# configured by the environment (after the defaults for the issuer
# above), waiting until /readyz says its JWKS is loaded; sets serve_pid and
# serve_addr.
start_serve() {
  local name=$1
  shift
  local grpc_port http_port
  grpc_port=$(free_port)
  http_port=$(free_port)
  env OAUTH_RESOURCE=https://mcp.example.com/mcp OAUTH_AUTHORIZATION_SERVER="$issuer_url" OAUTH_ISSUER="$issuer_url" \
    OAUTH_JWKS_URI="$jwks_url" OAUTH_SCOPES_SUPPORTED=mcp:read,mcp:write OAUTH_REQUIRED_SCOPES=mcp:read \
    MCP_AUTHZ_GRPC_ADDR="127.0.0.1:$grpc_port" MCP_AUTHZ_HTTP_ADDR="127.0.0.1:$http_port" "$@" \
    "$bin/mcp-authz" serve >"$bin/$name.out" 2>"$bin/$name.err" &
  serve_pid=$!
  for _ in $(seq 150); do
    kill -0 "$serve_pid" 2>/dev/null || fail "mcp-authz serve ($name)" "$bin/$name.err"
    if curl -fs "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1; then
      serve_addr=127.0.0.1:$grpc_port
      return
    fi
    sleep 0.1
  done
  fail "mcp-authz serve ($name, not ready within 15s)" "$bin/$name.err"
}

start_allow() {
  "$bin/loadcheck" allow-server --addr 127.0.0.1:0 >"$bin/allow.out" 2>"$bin/allow.err" &
  allow_pid=$!
  for _ in $(seq 150); do
    kill -0 "$allow_pid" 2>/dev/null || fail "loadcheck allow-server" "$bin/allow.err"
    if grep -q '^LISTENING ' "$bin/allow.out"; then
      allow_addr=$(awk '$1 == "LISTENING" { print $2; exit }' "$bin/allow.out")
      return
    fi
    sleep 0.1
  done
  fail "loadcheck allow-server (not listening within 15s)" "$bin/allow.err"
}

# ticks PID: the CPU PID has used (utime + stime), in clock ticks; for
# processes whose name holds no space.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

redis_secret() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

if [ "$mode" = fleet ]; then
  burst=${BURST:-1000}
  copies=${COPIES:-1}
  validation=${VALIDATION:-jwt}
  shared=${REDIS:-1}
  start_redis
  start_issuer $((rounds * burst))
  secret=$(redis_secret)
  extra=()
  if [ "$validation" = introspection ]; then
    extra=(OAUTH_VALIDATION=introspection OAUTH_INTROSPECTION_ENDPOINT="$introspect_url" OAUTH_CLIENT_ID=mcp-authz OAUTH_CLIENT_SECRET=secret)
  fi
  if [ "$shared" != 0 ]; then
    extra+=(REDIS_URL="redis://127.0.0.1:$redis_port/0" MCP_AUTHZ_CACHE_SECRET="$secret")
  fi
  addrs=()
  pids=()
  for i in 1 2 3; do
    start_serve "replica$i" "${extra[@]}"
    addrs+=("$serve_addr")
    pids+=("$serve_pid")
  done
  sharing="sharing one redis-server"
  [ "$shared" = 0 ] && sharing="without Redis, each on its own"
  echo "machine: $(nproc) cores, $(go version | cut -d' ' -f3), 3 replicas $sharing, $validation, $burst fresh tokens per burst, each sent $copies times to every replica, ${ORDER:-together}"
  for r in $(seq "$rounds"); do
    mon=
    if [ "$validation" = jwt ] && [ "$shared" != 0 ]; then
      # Keyspace events, not MONITOR: MONITOR slows Redis down enough to
      # change what it measures.
      redis-cli -p "$redis_port" config set notify-keyspace-events 'E$' >/dev/null
      redis-cli -p "$redis_port" --csv psubscribe '__keyevent@0__:set' >"$bin/sets.log" 2>/dev/null &
      mon=$!
      sleep 0.3
    fi
    before=$(curl -fs "${introspect_url%/introspect}/stats" | sed 's/.*"calls":\([0-9]*\).*/\1/')
    redis_before=$(ticks "$redis_pid")
    "$bin/loadcheck" burst -addrs "$(IFS=,; echo "${addrs[*]}")" -tokens "$bin/tokens.txt" -from $(((r - 1) * burst)) -n "$burst" \
      -copies "$copies" -timeout "${TIMEOUT:-1s}" -order "${ORDER:-together}" -pids "$(IFS=,; echo "${pids[*]}")" -label "burst[$r]"
    redis_after=$(ticks "$redis_pid")
    awk -v b="$redis_before" -v a="$redis_after" -v n="$burst" -v label="burst[$r]" 'BEGIN {
      printf "%-14s CPU of redis-server: %.1fµs per token (%d ticks)\n", label, (a - b) * 10000 / n, a - b }'
    sleep 0.5
    if [ -n "$mon" ]; then
      kill "$mon" 2>/dev/null || true
      wait "$mon" 2>/dev/null || true
    fi
    if [ "$validation" = introspection ]; then
      after=$(curl -fs "${introspect_url%/introspect}/stats" | sed 's/.*"calls":\([0-9]*\).*/\1/')
      echo "burst[$r]       authorization-server calls: $((after - before)) for $burst tokens"
    elif [ -n "$mon" ]; then
      # Verdict writes (not the :lock keys), per key: one per validation
      # whose verdict reached Redis.
      grep -o '"mcp-authz:[^"]*"$' "$bin/sets.log" | sort | uniq -c |
        awk -v n="$burst" -v label="burst[$r]" '{ total += $1; if ($1 > max) max = $1; if ($1 > 1) dup++ }
          END { printf "%-14s verdicts written to Redis: %d for %d tokens (tokens validated more than once: %d, most validations of one token: %d)\n", label, total, n, dup, max }'
    fi
  done
  exit 0
fi

redis_env=()
if [ -n "${REDIS:-}" ]; then
  start_redis
  redis_env=(REDIS_URL="redis://127.0.0.1:$redis_port/0")
fi

if [ "$mode" = cold ]; then
  per_round=${TOKENS:-40000}
  start_issuer $((rounds * per_round))
  [ -n "${REDIS:-}" ] && redis_env+=(MCP_AUTHZ_CACHE_SECRET="$(redis_secret)")
  start_serve authz "${redis_env[@]}"
  authz_pid=$serve_pid
  authz_addr=$serve_addr
  start_allow
  echo "machine: $(nproc) cores, $(go version | cut -d' ' -f3), concurrency $conc, up to ${secs}s per run, 2 gRPC connections, a fresh RS256 token per Check${REDIS:+, Redis tier on}"
  for r in $(seq "$rounds"); do
    from=$(((r - 1) * per_round))
    # The ceiling caches nothing: it may see the same tokens again (-cycle).
    "$bin/loadcheck" run -addr "$allow_addr" -c "$conc" -d "${secs}s" -pid "$allow_pid" -tokens "$bin/tokens.txt" -from "$from" -n "$per_round" -cycle \
      -decode "$decode" ${BODY:+-body-bytes "$BODY"} -label "allow[$r]" | tee "$bin/allow.run"
    "$bin/loadcheck" run -addr "$authz_addr" -c "$conc" -d "${secs}s" -warmup 500ms -pid "$authz_pid" -tokens "$bin/tokens.txt" -from "$from" -n "$per_round" \
      -decode "$decode" ${BODY:+-body-bytes "$BODY"} -label "mcp-authz[$r]" | tee "$bin/authz.run"
    "$bin/loadcheck" golang-jwt -tokens "$bin/tokens.txt" -from "$from" -n 2000 -jwks "$jwks_url" -label "golang-jwt[$r]" | tee "$bin/gjwt.run"
    ceiling=$(sed -n 's/.*cpu_per_check=\([0-9.]*\)µs.*/\1/p' "$bin/allow.run")
    ours=$(sed -n 's/.*cpu_per_check=\([0-9.]*\)µs.*/\1/p' "$bin/authz.run")
    gjwt=$(sed -n 's/.*cpu_per_token=\([0-9.]*\)µs.*/\1/p' "$bin/gjwt.run")
    awk -v c="$ceiling" -v o="$ours" -v g="$gjwt" -v r="$r" 'BEGIN {
      printf "round[%s]       target %.1fµs (ceiling %.1f + 1.3 × golang-jwt %.1f); mcp-authz %.1fµs: (mcp-authz − ceiling) / golang-jwt = %.2f ×\n", r, c + 1.3 * g, c, g, o, (o - c) / g }'
  done
  exit 0
fi

# Port 0 everywhere: each child says which port it took.
env "${redis_env[@]}" "$bin/mcp-authz" dev --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 >"$bin/dev.out" 2>"$bin/dev.err" &
authz_pid=$!
start_allow
ready=
for _ in $(seq 150); do
  kill -0 "$authz_pid" 2>/dev/null || fail "mcp-authz dev" "$bin/dev.err"
  if grep -q '^export TOKEN=' "$bin/dev.out"; then
    ready=1
    break
  fi
  sleep 0.1
done
[ -n "$ready" ] || fail "mcp-authz dev (no token within 15s)" "$bin/dev.err"
token=$(sed -n 's/^export TOKEN=//p' "$bin/dev.out" | head -1)
authz_addr=$(awk '$1 == "ext_authz" { print $3; exit }' "$bin/dev.out")

echo "machine: $(nproc) cores, $(go version | cut -d' ' -f3), concurrency $conc, ${secs}s per run, 2 gRPC connections${REDIS:+, Redis tier on}"
for r in $(seq "$rounds"); do
  "$bin/loadcheck" run -addr "$allow_addr" -c "$conc" -d "${secs}s" -pid "$allow_pid" -token "$token" -decode "$decode" ${BODY:+-body-bytes "$BODY"} -label "allow[$r]"
  "$bin/loadcheck" run -addr "$authz_addr" -c "$conc" -d "${secs}s" -pid "$authz_pid" -token "$token" -decode "$decode" ${BODY:+-body-bytes "$BODY"} -label "mcp-authz[$r]"
done
