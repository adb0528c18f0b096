#!/usr/bin/env bash
# The test command: starts Redis and PostgreSQL on loopback for the shared-store and service tests
# (installing them from Debian when missing, and Chromium for the page's browser tests unless
# MEMREC_SKIP_BROWSER=1), then runs pytest. Extra arguments go to pytest.
#   OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data bash tests/run.sh [-k store]
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MEMREC_DATA_DIR="${MEMREC_DATA_DIR:-../shared/data}"
export DEBIAN_FRONTEND=noninteractive
apt_install() { apt-get install -y -qq "$@" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$@" >/dev/null; }; }
command -v redis-server >/dev/null || apt_install redis-server
ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || apt_install postgresql
[ "${MEMREC_SKIP_BROWSER:-}" = 1 ] || { command -v chromium >/dev/null && command -v chromedriver >/dev/null; } || apt_install chromium chromium-driver
redis-cli -p 6379 ping >/dev/null 2>&1 || redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly yes --appendfsync always --dir "$(mktemp -d)" --daemonize yes
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
if ! "$PGBIN/pg_isready" -q -h 127.0.0.1 -p 5432; then
  PGDATA=$(mktemp -d); chown postgres "$PGDATA"
  runuser -u postgres -- "$PGBIN/initdb" -A trust -U postgres -D "$PGDATA" >/dev/null
  runuser -u postgres -- "$PGBIN/pg_ctl" -s -D "$PGDATA" -l "$PGDATA/log" -o "-h 127.0.0.1 -p 5432 -k $PGDATA" -w start
fi
export MEMREC_TEST_REDIS_URL="${MEMREC_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}"
export MEMREC_TEST_POSTGRES_URL="${MEMREC_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
python -m pytest -q "$@"
