# Source me: puts the toolkit's venv ($VENV, default tools/venv) on PATH and keeps every
# library offline unless the environment already says otherwise.
_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_venv=${VENV:-$_root/tools/venv}
if [ ! -f "$_venv/bin/activate" ]; then
  echo "No virtualenv at $_venv: run $_root/tools/install.sh first (VENV=$_venv to install there)" >&2
  unset _root _venv; return 1
fi
. "$_venv/bin/activate"
# Offline by default; a value the user already set wins (HF_HUB_OFFLINE=0 to use the hub).
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TRANSFORMERS_OFFLINE=${TRANSFORMERS_OFFLINE:-1} \
  HF_DATASETS_OFFLINE=${HF_DATASETS_OFFLINE:-1}
export PYTHONPATH="$_root${PYTHONPATH:+:$PYTHONPATH}"
unset _root _venv
