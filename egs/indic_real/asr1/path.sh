# Sourced by run.sh: the toolkit's venv ($VENV, default tools/venv), offline flags, and the
# repo on PYTHONPATH.
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
. "$TOP/tools/activate.sh" || return 1
export LC_ALL=C.UTF-8 PYTHONIOENCODING=UTF-8
