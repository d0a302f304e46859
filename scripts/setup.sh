#!/usr/bin/env bash
# Makes a fresh clone runnable: npm dependencies (from the lockfile), the
# TypeScript build, etcd (Debian's etcd-server) when it is not on PATH, and
# Prometheus and nats-server (optional: for the dashboard and alert tests, and for
# the benchmarks' NATS rows and their smoke test). Idempotent and quick
# when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm dependencies" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi

echo "setup: building" >&2
npx tsc -p tsconfig.json

if ! command -v etcd >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing etcd (Debian's etcd-server)" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
    # The package enables a system-wide etcd on 2379; Tern starts its own, so keep that one off.
    (systemctl disable --now etcd >/dev/null 2>&1 || service etcd stop >/dev/null 2>&1 || true)
  else
    echo "setup: etcd is not on PATH. Install it (Debian/Ubuntu: sudo apt-get install etcd-server)," >&2
    echo "       or put an etcd 3.4+ binary on PATH, then run this again." >&2
    exit 1
  fi
fi

# Prometheus (Debian's prometheus, which brings promtool) for the dashboard and alert-rule
# tests (test/integration/prometheus.test.ts); optional: without it those tests are skipped.
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing prometheus (Debian's prometheus, with promtool)" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    # The package enables a system-wide Prometheus on 9090; the tests start their own, so keep that one off.
    (systemctl disable --now prometheus >/dev/null 2>&1 || service prometheus stop >/dev/null 2>&1 || true)
  else
    echo "setup: prometheus/promtool are not on PATH: the Prometheus tests will be skipped." >&2
    echo "       To run them: sudo apt-get install prometheus (Debian/Ubuntu), or put both binaries on PATH." >&2
  fi
fi

# nats-server (Debian's nats-server) for the NATS rows of bench:compare and bench:many-logs and
# their smoke tests; optional: without it test/integration/bench-many-logs.test.ts is skipped.
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing nats-server (Debian's nats-server)" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
    # The package enables a system-wide nats-server on 4222; the benchmarks start their own nodes.
    (systemctl disable --now nats-server >/dev/null 2>&1 || service nats-server stop >/dev/null 2>&1 || true)
  else
    echo "setup: nats-server is not on PATH: the many-logs benchmark test will be skipped." >&2
    echo "       To run it: sudo apt-get install nats-server (Debian/Ubuntu), or put the binary on PATH." >&2
  fi
fi
