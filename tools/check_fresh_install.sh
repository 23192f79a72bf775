#!/usr/bin/env bash
# Fresh-machine check: build a minimal Debian with debootstrap into a folder, copy this
# checkout in, and run the README's commands there as a new user would:
#   tools/install.sh && egs/indic_synth/asr1/run.sh --mini true   (default)
#   tools/test.sh                                                  (--tests)
# It shows what install.sh has to bring itself (nothing of this machine's is visible in
# the chroot: no pyenv, compiler, headers, npm or cached wheels). Not part of the test
# suite: it needs root, the Debian mirror and PyPI, and several GB of disk.
#
# Usage: tools/check_fresh_install.sh [--suite trixie] [--root /var/tmp/fresh_debian] [--tests] [--keep]
# The mirror is read from this machine's apt sources (override with MIRROR=...).
set -euo pipefail
root_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
suite=trixie          # Debian 13: python3 is 3.13
chroot_dir=/var/tmp/fresh_debian
run_tests=false
keep=false
while [ $# -gt 0 ]; do
  case $1 in
    --suite) suite=$2; shift 2 ;;
    --root) chroot_dir=$2; shift 2 ;;
    --tests) run_tests=true; shift ;;
    --keep) keep=true; shift ;;
    *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
log() { echo "[fresh $(date +%T)] $*" >&2; }
[ "$(id -u)" -eq 0 ] || { echo "needs root (debootstrap, chroot)" >&2; exit 1; }
command -v debootstrap >/dev/null || { log "apt-get install debootstrap"; apt-get update -qq; apt-get install -y -qq debootstrap >/dev/null; }
if [ -z "${MIRROR:-}" ]; then
  MIRROR=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -1)
  [ -n "$MIRROR" ] || MIRROR=$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | head -1)
fi
[ -n "$MIRROR" ] || { echo "no Debian mirror found in /etc/apt; set MIRROR=" >&2; exit 1; }

t0=$(date +%s)
if [ ! -x "$chroot_dir/usr/bin/apt-get" ]; then
  log "debootstrap --variant=minbase $suite into $chroot_dir"
  rm -rf "$chroot_dir"; mkdir -p "$chroot_dir"
  debootstrap --variant=minbase "$suite" "$chroot_dir" "$MIRROR" > "$chroot_dir.debootstrap.log" 2>&1 \
    || { tail -20 "$chroot_dir.debootstrap.log"; exit 1; }
fi
t_boot=$(( $(date +%s) - t0 ))
cp /etc/resolv.conf "$chroot_dir/etc/resolv.conf"
# Behind a TLS-inspecting proxy the host trusts extra CAs; a machine on that network has
# them too. They take effect when install.sh installs ca-certificates (its postinst).
mkdir -p "$chroot_dir/usr/local/share/ca-certificates"
cp /usr/local/share/ca-certificates/*.crt "$chroot_dir/usr/local/share/ca-certificates/" 2>/dev/null || true
[ -x "$chroot_dir/usr/sbin/update-ca-certificates" ] && chroot "$chroot_dir" update-ca-certificates >/dev/null 2>&1
tls_env=""
for v in NODE_EXTRA_CA_CERTS PIP_CERT REQUESTS_CA_BUNDLE SSL_CERT_FILE SSL_CERT_DIR; do
  [ -n "${!v:-}" ] && tls_env+=" $v=${!v}"
done
# A new user has git and a shell; the checkout comes as a clone (no venv, no node_modules).
mkdir -p "$chroot_dir/root"
rm -rf "$chroot_dir/root/repo"
git clone -q "$root_repo" "$chroot_dir/root/repo"
# uncommitted work is part of what is checked
(cd "$root_repo" && git diff HEAD) | (cd "$chroot_dir/root/repo" && git apply --allow-empty 2>/dev/null || true)
before=$(chroot "$chroot_dir" dpkg-query -W -f='${Package}\n' | sort)
for fs in proc sys dev; do mountpoint -q "$chroot_dir/$fs" || mount --bind "/$fs" "$chroot_dir/$fs"; done
cleanup() { for fs in dev sys proc; do umount -l "$chroot_dir/$fs" 2>/dev/null || true; done
            $keep || { log "removing $chroot_dir (--keep keeps it)"; rm -rf "$chroot_dir"; }; }
trap cleanup EXIT
in_chroot() { chroot "$chroot_dir" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 $tls_env bash -c "$1"; }

log "python in the fresh system: $(in_chroot 'command -v python3 && python3 -V || echo none')"
# install.sh gets root and apt; everything else (python3 included) it must install itself.
t1=$(date +%s)
log "tools/install.sh"
in_chroot 'cd /root/repo && tools/install.sh' 2>&1 | grep -v "^WARNING: Location" | tee "$chroot_dir.install.log" | tail -5
t_install=$(( $(date +%s) - t1 ))
after=$(chroot "$chroot_dir" dpkg-query -W -f='${Package}\n' | sort)
t2=$(date +%s)
if $run_tests; then
  log "tools/test.sh"
  in_chroot 'cd /root/repo && tools/test.sh -q -x' 2>&1 | tail -15
else
  log "egs/indic_synth/asr1/run.sh --mini true"
  in_chroot 'cd /root/repo && egs/indic_synth/asr1/run.sh --mini true' > "$chroot_dir.run.log" 2>&1 \
    || { tail -30 "$chroot_dir.run.log"; exit 1; }
  grep -E "test_id|done" "$chroot_dir.run.log" | tail -3
  in_chroot 'cd /root/repo/egs/indic_synth/asr1 && cat exp_mini/RESULTS.md | grep -m3 "test_id"' || true
fi
t_run=$(( $(date +%s) - t2 ))
venv_size=$(du -sh "$chroot_dir/root/repo/tools/venv" | cut -f1)
log "summary: debootstrap ${t_boot}s, install.sh ${t_install}s (venv $venv_size), $($run_tests && echo tests || echo mini recipe) ${t_run}s"
log "Debian packages install.sh added: $(comm -13 <(echo "$before") <(echo "$after") | wc -l):"
comm -13 <(echo "$before") <(echo "$after") | tr '\n' ' ' | fold -w 120 >&2; echo >&2
