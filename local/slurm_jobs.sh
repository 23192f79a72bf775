#!/usr/bin/env bash
# Slurm launcher with run_jobs.sh's calling convention (Kaldi's slurm.pl in bash):
#   slurm_jobs.sh [--config conf/slurm.conf] [--gpu N] [--mem M] [--num_threads N]
#                 [--num_nodes N] [--time T] [--max_jobs N] JOB=1:N <log.JOB> <cmd with JOB>...
#   slurm_jobs.sh [options] <log> <cmd>...
# The resource options become Slurm options through the mapping in --config (ESPnet's
# conf/slurm.conf format: see that file); $SLURM_OPTS adds site options to every job.
# Each job is one blocking job step (`srun ... --ntasks=1 <cmd>`), so stages stay
# sequential and logs stay where run_jobs.sh puts them. A command that is itself `srun`
# (espnet2.bin.launch's multi-node training: one task per node) gets an allocation
# instead: `salloc <options> srun ...`.
# slurm_dry_run=true: print the commands it would submit, one line per job, and exit.
# Named slurm.pl too (local/slurm.pl -> slurm_jobs.sh): espnet2.bin.launch picks its srun
# branch for --num_nodes > 1 by that file name.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
config=conf/slurm.conf
declare -A given=()
prefix=()
while [[ "${1:-}" == --* ]]; do
  [ $# -ge 2 ] || { echo "slurm_jobs.sh: option $1 needs a value" >&2; exit 1; }
  case $1 in
    --config) config=$2 ;;
    --max_jobs) prefix=(--max_jobs "$2") ;;
    --gpu|--mem|--num_threads|--num_nodes|--time|--name) given[${1#--}]=$2 ;;
    *) echo "slurm_jobs.sh: unknown option $1 (--config --gpu --mem --num_threads --num_nodes --time --name --max_jobs)" >&2; exit 1 ;;
  esac
  shift 2
done
[ -f "$config" ] || { echo "slurm_jobs.sh: no $config (the Slurm option mapping; see conf/slurm.conf in the recipe)" >&2; exit 1; }

# Read the mapping: command, defaults, per-value and wildcard options.
command=(srun); declare -A default=() exact=() wildcard=()
while read -r kind spec rest; do
  case $kind in
    ''|'#'*) continue ;;
    command) read -ra command <<< "$spec $rest" ;;
    default) default[${spec%%=*}]=${spec#*=} ;;
    option) name=${spec%%=*}; value=${spec#*=}
      if [ "$value" = '*' ]; then wildcard[$name]=$rest; else exact[$spec]=$rest; fi ;;
    *) echo "slurm_jobs.sh: $config: cannot read line '$kind $spec $rest'" >&2; exit 1 ;;
  esac
done < "$config"
opts=()
for name in $(printf '%s\n' "${!default[@]}" "${!given[@]}" | sort -u); do
  value=${given[$name]:-${default[$name]}}
  if [ -n "${exact[$name=$value]+x}" ]; then mapped=${exact[$name=$value]}
  elif [ -n "${wildcard[$name]+x}" ]; then mapped=${wildcard[$name]//\$0/$value}
  else echo "slurm_jobs.sh: $config maps no option $name=$value" >&2; exit 1; fi
  read -ra words <<< "$mapped"; opts+=("${words[@]}")
done
read -ra site <<< "${SLURM_OPTS:-}"

if [[ "${1:-}" =~ ^JOB=([0-9]+):([0-9]+)$ ]]; then range=$1; first=${BASH_REMATCH[1]}; last=${BASH_REMATCH[2]}; shift
else range=; first=1; last=1; fi
[ $# -ge 2 ] || { echo "usage: slurm_jobs.sh [options] [JOB=1:N] <log> <cmd>..." >&2; exit 1; }
log=$1; shift
if [ "$1" = srun ]; then  # multi-node: an allocation whose srun starts one task per node
  job=(salloc "${opts[@]}" "${site[@]}" "$@")
else
  job=("${command[@]}" "${opts[@]}" "${site[@]}" --ntasks=1 "$@")
fi

if [ "${slurm_dry_run:-false}" = true ]; then
  for ((j = first; j <= last; j++)); do
    words=(); for a in "${job[@]}"; do [ -n "$range" ] && a=${a//JOB/$j}; words+=("$a"); done
    l=$log; [ -n "$range" ] && l=${log//JOB/$j}
    printf '%q ' "${words[@]}"; printf '> %q\n' "$l"
  done
  exit 0
fi
command -v "${job[0]}" >/dev/null || { echo "${job[0]} not found: use cmd_backend=local in cmd.sh" >&2; exit 1; }
if [ -n "$range" ]; then exec "$here/run_jobs.sh" "${prefix[@]}" "$range" "$log" "${job[@]}"; fi
exec "$here/run_jobs.sh" "$log" "${job[@]}"
