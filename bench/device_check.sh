#!/usr/bin/env bash
# GPU checks for a machine with a CUDA GPU (H100 / H200); never run by CI or the tests.
#
#   bench/device_check.sh prepare        # HERE, once (needs no GPU): the wheels the GPU image lacks
#                                        # into .whl/, the mini corpus into bench/device_data/
#   bench/device_check.sh run [OUT_DIR]  # THERE (default OUT_DIR: bench/results/cuda)
#
# `run` steps, each with its own time limit, timed and logged; a failed step does not stop
# the next (set -e is off per step); every step's result is in OUT_DIR as soon as it ends:
#   1. env       nvidia-smi, torch / CUDA / capability, the carried wheels installed (/tmp/site)
#   2. tests     tests/test_grouped_mm.py, tests/test_bf16.py (the CUDA grouped-GEMM test runs)
#   3. bench     bench/bench_cuda.py: every conf/ preset on CUDA vs CPU, one fp32 and one bf16
#                training step each, step cost fp32 / bf16 and training throughput vs dense,
#                grouped_mm vs the per-expert loop (expert FFN fwd+bwd, bf16), RTF on the GPU
#   4. recipe    run.sh --mini true --ngpu 1 --gpu_inference true, stages 2-9 (format ...
#                train on the GPU, decode on the GPU, score) on the carried mini corpus
# OUT_DIR gets: device_check.md (the step table), steps.log (every step's output),
# bench_cuda.json / bench_cuda.md, recipe_scores.txt. Budget: limits 60 + 60 + 200 + 160 s
# = 8 min at most, ~5-6 min expected on one H100 (an estimate). With the device tool
# (docs/scale_out.md):
#   run(command="bench/device_check.sh run $OUT", carry=[".whl", "bench/device_data"], timeout_s=540)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mode=${1:-}

if [ "$mode" = prepare ]; then
  set -e
  . tools/activate.sh
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  grep -qx '/bench/device_data/' .git/info/exclude 2>/dev/null || echo '/bench/device_data/' >> .git/info/exclude
  # Distributions our code imports that the GPU image lacks (its package list, as the device
  # tool's KINDS.md gave it on 2026-11-17), at this venv's versions, as py3.12 x86-64 wheels
  # (a pure-Python sdist is built into a wheel here).
  python - > /tmp/device_wheels.txt <<'EOF'
import importlib, importlib.metadata as md, importlib.util, sys
import espnet_plugins.tasks.asr, espnet_plugins.bin.asr_inference, espnet_plugins.inference.speech2text  # noqa
for m in ("jiwer", "editdistance", "soxr", "soundfile", "espnet2.bin.aggregate_stats_dirs", "espnet2.bin.launch"):
    importlib.import_module(m)
# one training step and one decoding forward, for what is imported on first use
import tempfile; from pathlib import Path
spec = importlib.util.spec_from_file_location("bench_cuda", "bench/bench_cuda.py")
bench = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench)
work = Path(tempfile.mkdtemp())
(work / "tokens.txt").write_text("\n".join(bench.TOKENS) + "\n"); (work / "langs").write_text("\n".join(bench.LANGS) + "\n")
model, targs = bench.build(Path("conf/train_mini_smear_blr_moe.yaml"), work)
b = bench.make_batch(2, 1.0, 0, "cpu")
assert bench.step_check(model, targs, b, False)["ok"]
bench.ctc_logp(model.eval(), b)
image = set("""absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops
equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch
grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio iniconfig
interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py
nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime
onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint
packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache
protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions
pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore
threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric
torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect
urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp""".split())
norm = lambda s: s.lower().replace("_", "-")
own = {"espnet-moe-plugins"}
top = md.packages_distributions()
dists = {d for m in list(sys.modules) for d in top.get(m.split(".")[0], [])}
for d in sorted(dists):
    if norm(d) not in image and norm(d) not in own and not norm(d).startswith(("nvidia-", "jaraco", "more-itertools")):
        print(f"{d}=={md.version(d)}")
EOF
  rm -rf .whl && mkdir -p .whl
  while read -r req; do
    python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform any -d .whl "$req" 2>/dev/null \
      || python -m pip wheel -q --no-deps --no-binary=:all: -w .whl "$req" \
      || echo "no wheel for $req (install it there by hand)" >&2
  done < /tmp/device_wheels.txt
  echo "wheels: $(ls .whl | wc -l) files, $(du -sh .whl | cut -f1)"
  if [ ! -s bench/device_data/data_mini/train/wav.scp ]; then
    (cd egs/indic_synth/asr1 && ./run.sh --mini true --stage 1 --stop_stage 1 --datadir "$root/bench/device_data/data_mini")
  fi
  # the device run uses train, dev and test_id only: drop the other sets and their audio
  d=bench/device_data/data_mini
  echo "$root" > bench/device_data/ROOT  # the wav.scp paths start with it; rewritten there
  for s in "$d"/*/; do
    case $(basename "$s") in train|dev|test_id|wav) ;; *) rm -rf "$s" ;; esac
  done
  cut -d' ' -f2- "$d"/{train,dev,test_id}/wav.scp | xargs -n1 basename | sort -u > /tmp/device_wavs.txt
  find "$d/wav" -type f | while read -r f; do grep -qxF "$(basename "$f")" /tmp/device_wavs.txt || rm -f "$f"; done
  echo "mini corpus: $(du -sh bench/device_data | cut -f1); carry .whl and bench/device_data"
  exit 0
fi
[ "$mode" = run ] || { echo "usage: bench/device_check.sh prepare | run [OUT_DIR]" >&2; exit 2; }

out=$(mkdir -p "${2:-bench/results/cuda}" && cd "${2:-bench/results/cuda}" && pwd)
export PYTHONUNBUFFERED=1 PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH}
summary=$out/device_check.md
log=$out/steps.log
: > "$log"
{ echo "# bench/device_check.sh run ($(date -u '+%Y-%m-%d %H:%M UTC'))"; echo
  echo "| step | status | seconds | limit s |"; echo "|---|---|---|---|"; } > "$summary"
failed=0

step() {  # step <name> <limit s> <command...>: timed, logged, never stops the script
  local name=$1 limit=$2; shift 2
  echo "=== step $name (limit ${limit}s): $*" | tee -a "$log"
  local t0=$SECONDS rc=0
  # own session, so that a step over its limit is ended with every process it started
  setsid "$@" >> "$log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    if [ $((SECONDS - t0)) -ge "$limit" ]; then
      kill -TERM -- "-$pid" 2>/dev/null; sleep 5; kill -KILL -- "-$pid" 2>/dev/null; rc=124; break
    fi
    sleep 1
  done
  [ $rc -eq 124 ] && wait "$pid" 2>/dev/null
  [ $rc -eq 124 ] || { wait "$pid"; rc=$?; }
  local status=ok
  [ $rc -eq 0 ] || { status="FAILED rc=$rc"; [ $rc -eq 124 ] && status="TIMEOUT"; failed=$((failed + 1)); }
  echo "| $name | $status | $((SECONDS - t0)) | $limit |" >> "$summary"
  echo "=== step $name: $status after $((SECONDS - t0)) s" | tee -a "$log"
}

env_step() {
  nvidia-smi -L
  if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    pip_in() { python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$@"; }
    pip_in .whl/*.whl || for w in .whl/*.whl; do pip_in "$w" || echo "could not install $w"; done
  fi
  python3 - <<'EOF'
import torch, espnet_plugins.tasks.asr  # noqa: F401  (our stack imports)
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(),
      "capability", torch.cuda.get_device_capability(), "grouped_mm", hasattr(torch.nn.functional, "grouped_mm"))
EOF
}

recipe() {
  local src=$root/bench/device_data/data_mini data=/tmp/dc/data_mini
  [ -s "$src/train/wav.scp" ] || { echo "no carried mini corpus in $src: run 'bench/device_check.sh prepare' here and carry bench/device_data"; return 1; }
  # the data dirs with their paths moved from where prepare ran to this checkout
  local old; old=$(cat "$root/bench/device_data/ROOT")
  rm -rf "$data"; mkdir -p "$data"
  for s in train dev test_id; do
    mkdir -p "$data/$s"
    for f in "$src/$s"/*; do [ -f "$f" ] && sed "s#$old/#$root/#g" "$f" > "$data/$s/$(basename "$f")"; done
  done
  for f in "$src"/*; do [ -f "$f" ] && cp "$f" "$data/"; done
  # stage 4's word n-gram LMs need KenLM's lmplz, which the GPU image lacks, and greedy
  # decoding does not use them: a stub LM list makes stage 4 skip them
  mkdir -p /tmp/dc/exp_mini/ngram_3gram
  echo "# not trained: no KenLM on the GPU machine (bench/device_check.sh)" > /tmp/dc/exp_mini/ngram_3gram/lms.yaml
  cd egs/indic_synth/asr1
  # No tools/venv there: path.sh sources $VENV/bin/activate, here one that puts a `python`
  # running the image's python3 (the one with the GPU torch) first on PATH.
  mkdir -p /tmp/dc_venv/bin
  printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v python3)" > /tmp/dc_venv/bin/python
  chmod +x /tmp/dc_venv/bin/python
  echo 'export PATH=/tmp/dc_venv/bin:$PATH' > /tmp/dc_venv/bin/activate
  VENV=/tmp/dc_venv ./run.sh --mini true --ngpu 1 --gpu_inference true --stage 2 --stop_stage 9 --nj 4 \
    --datadir "$data" --dumpdir /tmp/dc/dump_mini --expdir /tmp/dc/exp_mini --adapt_set none
  local rc=$?
  grep -h "cuda\|device" /tmp/dc/exp_mini/asr_mini/train.log 2>/dev/null | head -3
  for f in /tmp/dc/exp_mini/asr_mini/decode_*/*/scores.json /tmp/dc/exp_mini/asr_mini/decode_*/scores*; do
    [ -f "$f" ] && echo "$f: $(head -c 2000 "$f")"
  done > "$out/recipe_scores.txt" 2>/dev/null
  tail -5 /tmp/dc/exp_mini/asr_mini/train.log 2>/dev/null
  return $rc
}
export root out PYTHONPATH=/tmp/site:$PYTHONPATH
export -f env_step recipe
step env 60 bash -c env_step
step tests 60 python3 -m pytest -x -q -p no:cacheprovider tests/test_grouped_mm.py tests/test_bf16.py -k "cuda or grouped or mini"
step bench 200 python3 bench/bench_cuda.py --out "$out/bench_cuda" --repeats 5 --warmup 2
step recipe 160 bash -c recipe

{ echo; echo "Failed steps: $failed. Logs: steps.log; numbers: bench_cuda.md, recipe_scores.txt."; } >> "$summary"
cat "$summary"
exit $((failed > 0))
