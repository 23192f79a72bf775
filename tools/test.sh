#!/usr/bin/env bash
# The test command (README, .ci/run): installs everything (apt + venv, idempotent), then
# runs the test suite. Extra arguments go to pytest, e.g. tools/test.sh -k smear
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/tools/install.sh"
. "$root/tools/activate.sh"
cd "$root"
exec python -m pytest "$@"
