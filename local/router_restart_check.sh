#!/usr/bin/env bash
# Is a language router stuck at chance broken, or was its optimizer state the problem?
# Continues training EXP's checkpoint with ESPnet's own trainer for a few updates,
# starting from its weights (--init_param) with a FRESH optimizer state and a constant
# learning rate, and logs loss_lid / lid_acc every 25 updates and dev LID at the end.
# Run from a recipe dir:
#   local/router_restart_check.sh exp/asr_blr_moe_warmup 6epoch.pth /tmp/restart [extra asr_train options]
# e.g. add "--optim_conf weight_decay=0" to test weight decay. ~2 min on one CPU thread.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 EXP CHECKPOINT OUTDIR [asr_train options]" >&2; exit 1
fi
exp=$1; ckpt=$2; out=$3; shift 3
[ -f "$exp/config.yaml" ] || { echo "$exp/config.yaml not found: EXP must be a trained exp dir" >&2; exit 1; }
[ -f "$exp/$ckpt" ] || { echo "$exp/$ckpt not found (keep_nbest_models may have deleted it)" >&2; exit 1; }
# the training's own command line (first line of train.log), minus its output dir / resume
cmd=$(head -n 1 "$exp/train.log" | sed 's/^# //; s/--resume [a-z]*//; s/--output_dir [^ ]*//')
case "$cmd" in *asr_train*) ;; *) echo "$exp/train.log does not start with the asr_train command" >&2; exit 1;; esac
$cmd --output_dir "$out" \
  --init_param "$exp/$ckpt" --resume false --max_epoch 1 --num_iters_per_epoch 150 --log_interval 25 \
  --scheduler none --optim_conf lr=0.001 "$@" > "$out.log" 2>&1 \
  || { echo "training failed, see $out.log" >&2; exit 1; }
grep "1epoch:train:" "$out.log" | grep -o "train:[0-9-]*batch\|loss_lid=[0-9.]*\|lid_acc=[0-9.]*" \
  | paste -d' ' - - -
grep "epoch results" "$out.log" | grep -o "\[valid\].*" | grep -o "loss_lid=[0-9.]*\|lid_acc=[0-9.]*" \
  | paste -sd' ' | sed 's/^/dev after 150 updates: /'
