#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs, builds, runs unit and root tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node test/run.mjs "$@"
