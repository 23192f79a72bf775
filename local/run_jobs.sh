#!/usr/bin/env bash
# Kaldi run.pl-style local launcher:  run_jobs.sh [--max_jobs N] JOB=1:N <log.JOB> <cmd with JOB>...
# Runs the N jobs on this machine (at most --max_jobs at once), each logging to its own
# file; fails, naming the failed logs, if any job fails. cmd.sh may replace it by a
# cluster launcher with the same calling convention (see local/slurm_jobs.sh).
set -euo pipefail
# nproc honours OMP_NUM_THREADS, which run.sh sets to 1 for each job's own threads: count
# the cores without it, or every JOB=1:N array would run one job at a time.
max_jobs=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
# Resource options of the cluster launchers (--gpu N, --mem M, ...; cmd.sh's cuda_cmd) are
# accepted and ignored here, as Kaldi's run.pl does: this machine has what it has.
while [[ "${1:-}" == --* ]]; do
  case $1 in
    --max_jobs) max_jobs=$2 ;;
    --num_nodes) [ "$2" -le 1 ] || { echo "run_jobs.sh runs on this machine only: --num_nodes $2 needs a cluster (cmd_backend=slurm in cmd.sh)" >&2; exit 1; } ;;
    --gpu|--mem|--num_threads|--time|--name|--config) ;;
    *) echo "run_jobs.sh: unknown option $1" >&2; exit 1 ;;
  esac
  shift 2
done
if [[ ! "${1:-}" =~ ^JOB=([0-9]+):([0-9]+)$ ]]; then
  # Single job: run_jobs.sh <log> <cmd>...
  log=$1; shift; mkdir -p "$(dirname "$log")"
  # appended: a resumed training (ESPnet --resume) keeps the log of its earlier runs
  { echo "# $*"; echo "# started $(date)"; } >> "$log"
  if "$@" >> "$log" 2>&1; then echo "# ended $(date) rc=0" >> "$log"; exit 0; fi
  echo "# ended $(date) rc=1" >> "$log"; echo "failed: see $log" >&2; exit 1
fi
first=${BASH_REMATCH[1]}; last=${BASH_REMATCH[2]}; shift
logpat=$1; shift
mkdir -p "$(dirname "$logpat")"
pids=(); failed=()
for ((j = first; j <= last; j++)); do
  while [ "$(jobs -rp | wc -l)" -ge "$max_jobs" ]; do wait -n || true; done
  log=${logpat//JOB/$j}
  args=(); for a in "$@"; do args+=("${a//JOB/$j}"); done
  ( { echo "# ${args[*]}"; echo "# started $(date)"; } > "$log"
    "${args[@]}" >> "$log" 2>&1; rc=$?; echo "# ended $(date) rc=$rc" >> "$log"; exit $rc ) &
  pids+=($!)
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || failed+=("${logpat//JOB/$((first + i))}")
done
if [ ${#failed[@]} -gt 0 ]; then echo "failed jobs, see: ${failed[*]}" >&2; exit 1; fi
