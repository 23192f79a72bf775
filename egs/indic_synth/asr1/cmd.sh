# How jobs are launched (Kaldi / ESPnet convention). Every command takes
#   [--gpu N] [--mem M] [--num_threads N] [--num_nodes N] [--max_jobs N] JOB=1:N <log.JOB> <cmd>...
# train_cmd / decode_cmd: CPU jobs (synthesis, stats, CPU decoding, CPU training);
# cuda_cmd: GPU jobs (training with --ngpu N > 0, decoding with --gpu_inference true);
# run.sh adds --gpu <N>, which conf/slurm.conf maps to a GPU partition and --gres=gpu:N.
#   local (default): local/run_jobs.sh on this machine (like Kaldi's run.pl; it ignores the
#                    resource options)
#   slurm:           local/slurm.pl (= local/slurm_jobs.sh), blocking srun job steps with the
#                    options of conf/slurm.conf ($SLURM_OPTS adds site options);
#                    slurm_dry_run=true prints the commands instead of submitting them.
# Multi-GPU / multi-node training is not launched by these: run.sh --ngpu N passes
# ESPnet's own launcher options (one process per GPU), and --num_nodes N > 1 goes
# through espnet2.bin.launch, which submits one task per node through cuda_cmd (see
# docs/scale_out.md).
cmd_backend=${cmd_backend:-local}
case $cmd_backend in
  local) export train_cmd=local/run_jobs.sh decode_cmd=local/run_jobs.sh cuda_cmd=local/run_jobs.sh ;;
  slurm) export train_cmd="local/slurm.pl --config conf/slurm.conf"
         export decode_cmd="local/slurm.pl --config conf/slurm.conf"
         export cuda_cmd="local/slurm.pl --config conf/slurm.conf" ;;
  *) echo "cmd.sh: unknown cmd_backend=$cmd_backend (local|slurm)" >&2; return 1 ;;
esac
