#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer on 127.0.0.1 and Chromium is installed, for the test suite.
# Uses them when they already run; otherwise installs them with apt-get and starts them.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done; return 1; }

# --- PostgreSQL --------------------------------------------------------------------------------
if ! port_open 5432; then
  echo "PostgreSQL is not running on 127.0.0.1:5432; starting it"
  command -v pg_ctlcluster >/dev/null 2>&1 && ls /etc/postgresql/*/main >/dev/null 2>&1 || apt_install postgresql
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || as_root pg_ctlcluster "$version" main start
  wait_port 5432 || { echo "error: PostgreSQL did not start" >&2; exit 1; }
fi
psql_admin() { as_root runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qtAc "$1"; }
if [ "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname='duda'")" != "1" ]; then
  psql_admin "CREATE ROLE duda LOGIN PASSWORD 'duda' CREATEDB"
fi
if [ "$(psql_admin "SELECT 1 FROM pg_database WHERE datname='duda'")" != "1" ]; then
  psql_admin "CREATE DATABASE duda OWNER duda"
fi

# --- Redis -------------------------------------------------------------------------------------
if ! port_open 6379; then
  echo "Redis is not running on 127.0.0.1:6379; starting it"
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  as_root redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  wait_port 6379 || { echo "error: Redis did not start" >&2; exit 1; }
fi

# --- Chromium for the browser tests ------------------------------------------------------------
if [ ! -x /usr/bin/chromium ]; then
  echo "Installing Debian's Chromium for the browser tests"
  apt_install chromium
fi
