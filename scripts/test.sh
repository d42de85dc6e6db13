#!/usr/bin/env bash
# The test command (README): installs what the tests need and is missing —
# redis-server, nginx, caddy, Node.js and npm from Debian, the pinned oidc-provider from
# npm — then runs every test with the race detector. Extra arguments go to
# `go test`, e.g. scripts/test.sh -run TestIntrospection.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
{ command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; } || missing+=(nginx)
command -v caddy >/dev/null 2>&1 || missing+=(caddy)
{ command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; } || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "installing ${missing[*]} from Debian" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -d e2e/oidc/node_modules/oidc-provider ]; then
  echo "installing e2e/oidc (oidc-provider, pinned by package-lock.json)" >&2
  (cd e2e/oidc && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ ! -d e2e/mcpsdk/node_modules/@modelcontextprotocol/sdk ]; then
  echo "installing e2e/mcpsdk (MCP TypeScript SDK, oidc-provider; pinned by package-lock.json)" >&2
  (cd e2e/mcpsdk && npm ci --no-audit --no-fund --loglevel=error)
fi

# The tests start their own redis-server, nginx, caddy and oidc-provider on free loopback ports.
exec go test -race -count=1 "$@" ./...
