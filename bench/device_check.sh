#!/usr/bin/env bash
# CUDA checks for a machine with a GPU (never run by CI or the tests):
#   1. bench/bench_cuda.py: every conf/ preset on CUDA vs CPU, fp32 and bf16 steps, step cost;
#   2. the recipe end to end with --ngpu 1 --gpu_inference true (stages 2-9: format, filter,
#      tokens, stats, train, decode, score) for the mini dense and mini SMEAR + BLR-MoE
#      presets, on a small Kaldi-style data dir (train, dev, test_id; 16 kHz 16-bit wav needs no sox).
#
#   bench/device_check.sh <out_dir> <datadir relative to egs/indic_synth/asr1>
set -euo pipefail
out=$(mkdir -p "$1" && cd "$1" && pwd); datadir=$2
root=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONUNBUFFERED=1
nvidia-smi -L
rc=0
python "$root/bench/bench_cuda.py" --out "$out/bench_cuda" > "$out/bench_cuda.log" 2>&1 || rc=1
tail -40 "$out/bench_cuda.log"
cd "$root/egs/indic_synth/asr1"
for cfg in train_mini.yaml train_mini_smear_blr_moe.yaml; do
  name=$(basename "$cfg" .yaml)
  if ./run.sh --stage 2 --stop_stage 9 --ngpu 1 --gpu_inference true --train_config "$cfg" \
      --datadir "$datadir" --dumpdir "/tmp/device_check/dump" --expdir "/tmp/device_check/exp" \
      --test_sets test_id --adapt_set none > "$out/run_$name.log" 2>&1; then
    echo "run.sh --ngpu 1 $cfg: ok"
  else
    echo "run.sh --ngpu 1 $cfg: FAILED"; rc=1
    for l in $(ls -t /tmp/device_check/exp/*/logdir/*.log /tmp/device_check/exp/*/*.log 2>/dev/null | head -2); do
      echo "== $l"; tail -12 "$l"
    done
  fi
  tail -5 "$out/run_$name.log"
  grep -h "device\|cuda" "/tmp/device_check/exp/asr_${name#train_}/train.log" 2>/dev/null | head -3 || true
done
for f in /tmp/device_check/exp/asr_*/decode_*/scores.json; do echo "$f: $(cat "$f")"; done 2>/dev/null || true
exit $rc
