#!/usr/bin/env bash
# Install the Debian packages the tests and benchmarks run for real: PostgreSQL,
# Redis, nginx and chromium (the web file browser's tests drive it through Playwright),
# and with --bench also the wrk load generator. Does nothing when their binaries are
# already there.
set -euo pipefail

missing=()
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if ! command -v initdb >/dev/null && [ -z "$pg_bin" ]; then missing+=(postgresql); fi
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx libnginx-mod-http-dav-ext)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ "${1:-}" = "--bench" ]; then command -v wrk >/dev/null || missing+=(wrk); fi

if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
