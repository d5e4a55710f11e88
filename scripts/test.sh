#!/usr/bin/env bash
# Run the whole netviz test suite, installing what it needs first (Debian packages and Python
# packages). The lab tests build real machines out of network namespaces, so run it as root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
exec .venv/bin/python -m pytest "$@"
