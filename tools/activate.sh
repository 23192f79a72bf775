# Source me: puts the toolkit's venv on PATH and keeps every library offline.
_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$_root/tools/venv/bin/activate"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export PYTHONPATH="$_root${PYTHONPATH:+:$PYTHONPATH}"
unset _root
