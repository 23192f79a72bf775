#!/usr/bin/env bash
# Cluster launcher with run_jobs.sh's calling convention, for Slurm:
#   slurm_jobs.sh [--max_jobs N] JOB=1:N <log.JOB> <cmd with JOB>...
# Submits one srun job step per JOB (blocking, like Kaldi's slurm.pl) so stages stay
# sequential. Extra srun options come from $SLURM_OPTS (e.g. "-p gpu --gres=gpu:1").
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command -v srun >/dev/null || { echo "srun not found: use local/run_jobs.sh in cmd.sh" >&2; exit 1; }
prefix=(); if [ "${1:-}" = "--max_jobs" ]; then prefix=("$1" "$2"); shift 2; fi
if [[ "${1:-}" =~ ^JOB= ]]; then range=$1; log=$2; shift 2
  exec "$here/run_jobs.sh" "${prefix[@]}" "$range" "$log" srun ${SLURM_OPTS:-} --ntasks=1 "$@"
fi
log=$1; shift
exec "$here/run_jobs.sh" "$log" srun ${SLURM_OPTS:-} --ntasks=1 "$@"
