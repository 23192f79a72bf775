# How jobs are launched. All commands take: [--max_jobs N] JOB=1:N <log.JOB> <cmd>...
#   local (default): local/run_jobs.sh   (like Kaldi's run.pl)
#   Slurm:           local/slurm_jobs.sh (set SLURM_OPTS, e.g. "-p gpu --gres=gpu:1")
# Multi-GPU training does not go through these: run.sh passes --ngpu N to ESPnet,
# whose own launcher starts the DDP processes.
cmd_backend=${cmd_backend:-local}
case $cmd_backend in
  local) export train_cmd=local/run_jobs.sh decode_cmd=local/run_jobs.sh ;;
  slurm) export train_cmd=local/slurm_jobs.sh decode_cmd=local/slurm_jobs.sh ;;
  *) echo "cmd.sh: unknown cmd_backend=$cmd_backend (local|slurm)" >&2; return 1 ;;
esac
