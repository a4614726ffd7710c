#!/usr/bin/env bash
# Install what `make bench` needs beyond scripts/system-deps.sh: Debian's wrk load
# generator. Does nothing when it is already there.
set -euo pipefail

command -v wrk >/dev/null && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing package: wrk (run as root, or: sudo apt-get install wrk)" >&2
  exit 1
fi
echo "installing wrk"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends wrk >/dev/null
