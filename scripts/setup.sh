#!/usr/bin/env bash
# Prepare this machine to run netviz (and, with --test, its test suite):
# Debian packages first, then a virtual environment in .venv with netviz installed in it.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

want_tests=0
[ "${1:-}" = "--test" ] && want_tests=1

# Graphviz renders SVG/PNG; python3-venv gives Debian's python3 its venv module.
packages=(graphviz python3-venv)
if [ "$want_tests" = 1 ]; then
  # The test lab: real sshd machines in namespaces, real programs holding sockets, a real browser;
  # conntrack (conntrack-tools) reads the connection tracking table as a second, independent client.
  packages+=(openssh-server openssh-client iproute2 socat procps lsof util-linux sudo openssl iputils-ping strace nftables iptables conntrack
             chromium)
fi

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "netviz setup: missing Debian packages: ${missing[*]} (run as root, or install them first)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if [ "$want_tests" = 1 ]; then
  .venv/bin/python -m pip install -q -e '.[test]'
else
  .venv/bin/python -m pip install -q .
fi
