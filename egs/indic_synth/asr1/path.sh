# Sourced by run.sh: the toolkit's venv, offline flags, and the repo on PYTHONPATH.
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
if [ ! -x "$TOP/tools/venv/bin/python" ]; then
  echo "No virtualenv at $TOP/tools/venv: run $TOP/tools/install.sh first" >&2; return 1
fi
. "$TOP/tools/activate.sh"
export LC_ALL=C.UTF-8 PYTHONIOENCODING=UTF-8
