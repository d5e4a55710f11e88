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
daemon_packages=()
if [ "$want_tests" = 1 ]; then
  # The test lab: real sshd machines in namespaces, real programs holding sockets, a real browser;
  # conntrack (conntrack-tools) reads the connection tracking table as a second, independent client;
  # pdftotext (poppler-utils) reads the PDF maps back.
  packages+=(openssh-server openssh-client iproute2 socat procps lsof util-linux sudo openssl iputils-ping strace nftables iptables conntrack
             poppler-utils
             chromium)
  # Real daemons the lab starts inside its machines (tests/lab/services.py), without recommends
  # (gunicorn's would bring setproctitle, which renames its processes).
  daemon_packages+=(nginx redis-server gunicorn python3-redis postgresql curl)
  # npm installs mermaid-cli, the Mermaid format's consumer in the tests (below); Node.js from
  # elsewhere (NodeSource) brings its own npm.
  command -v npm >/dev/null || packages+=(nodejs npm)
fi

missing=()
missing_daemons=()
for package in "${packages[@]}" "${daemon_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" && continue
  if [[ " ${daemon_packages[*]} " == *" $package "* ]]; then missing_daemons+=("$package"); else missing+=("$package"); fi
done
if [ "$((${#missing[@]} + ${#missing_daemons[@]}))" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "netviz setup: missing Debian packages: ${missing[*]} ${missing_daemons[*]} (run as root, or install them first)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Debian's maintainer scripts start a service as they install it (invoke-rc.d, deb-systemd-invoke):
  # nginx would take port 80 of this machine, redis 6379, PostgreSQL 5432. A policy-rc.d that
  # refuses every start prevents that while we install; a machine that has one (Docker images)
  # keeps its own.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# netviz setup: no service starts while packages install\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -qq
  if [ "${#missing[@]}" -gt 0 ]; then
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if [ "${#missing_daemons[@]}" -gt 0 ]; then
    apt-get install -y -qq --no-install-recommends "${missing_daemons[@]}" >/dev/null
  fi
  if [ "$own_policy" = 1 ]; then
    rm -f "$policy"
    trap - EXIT
  fi
fi

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if [ "$want_tests" = 1 ]; then
  # setuptools notes every editable install ("Editable installation. Please be careful with
  # folders ... same name as your package"): true of any checkout, and ten lines of noise here.
  PYTHONWARNINGS="ignore:Editable installation" .venv/bin/python -m pip install -q -e '.[test]'
  echo "netviz setup: done; next, run the tests (as root): scripts/test.sh"
else
  .venv/bin/python -m pip install -q .
  echo "netviz setup: done; next, map this machine (as root, to see every process): .venv/bin/netviz run --output map.svg"
fi

if [ "$want_tests" = 1 ] && [ ! -x .venv/mermaid/node_modules/.bin/mmdc ]; then
  # mermaid-cli draws the Mermaid format in the tests, in Debian's Chromium (no browser download);
  # it lives inside .venv with its npm cache, so a fresh clone gets it and nothing else changes.
  mkdir -p .venv/mermaid
  PUPPETEER_SKIP_DOWNLOAD=1 npm install --silent --no-audit --no-fund --cache .venv/npm-cache \
    --prefix .venv/mermaid "@mermaid-js/mermaid-cli@^11.17.0" >/dev/null
fi
