#!/usr/bin/env python3
"""Convergence benchmark: does a training config leave CTC's blank plateau, on every seed?

Trains a config (a base yaml, optionally with a variant's top-level keys replaced) on N
seeds through the recipe (``run.sh --stage 6 --stop_stage 9``: train, decode, score),
as parallel 1-thread jobs, and writes per seed:

* ``plateau_exit_iter`` / ``plateau_exit_update``: the training iteration (batch;
  update = iteration / accum_grad) at the end of the first logged interval that starts
  ``--exit_hold`` (default 3) consecutive intervals whose mean greedy-CTC emission ratio
  lies in [``--exit_ratio``, 1 / ``--exit_ratio``] (default [0.5, 2]), after the first
  interval below ``--plateau_ratio`` (0.1; a randomly initialised model emits noise
  before CTC first collapses to blank, so the first intervals do not count). The hold
  and the upper bound keep a one-interval burst of noise emission on the plateau (seen:
  a ratio of 4.8 between two intervals at 0.00) from counting as an exit. The emission ratio
  (``ctc_emission`` in the training log: tokens greedy CTC emits per reference token)
  is ~0 on the plateau, where CTC outputs blank (or one repeated token) everywhere, and
  ~1 once it transcribes. It is used instead of the training-batch CER because it needs
  no edit distance and reacts to the one thing the plateau is, emitting nothing; dropout
  and SpecAugment move it little, while they move batch CER a lot. ESPnet logs the mean
  over each interval of ``log_interval`` batches (about 1/20 epoch), so the exit is known
  to that resolution.
* valid CER (``cer_ctc``) per epoch, test_id CER/WER and every other test set's CER,
  wall time of the run (summed over resumed invocations).

Read from ESPnet's TensorBoard summaries when present (they survive a resumed training),
else from train.log. Runs are resumable: rerunning the same command skips scored runs and resumes trainings
(ESPnet ``--resume``). Results go to ``<out>/<name>.json`` and ``.md`` (the command that
made them is in both). A benchmark, not a test: one run is a full recipe training.

    python bench/bench_convergence.py --name default --seeds 1 2 3 --jobs 3
    python bench/bench_convergence.py --name interctc_e1 --base bench/conf/convergence/previous_default.yaml \
        --variant bench/conf/convergence/interctc_e1.yaml --train_only

An exit probe (``--train_only --stop_after_exit``, e.g. with the variant
``bench/conf/convergence/epoch1.yaml``) stops each training as soon as its log establishes
the exit, so a preset's exit on 3 seeds costs a fraction of an epoch each:

    python bench/bench_convergence.py --name exit_blr_moe --base conf/train_blr_moe.yaml \
        --variant bench/conf/convergence/epoch1.yaml --seeds 1 2 3 --train_only --stop_after_exit

A projector on a frozen encoder trains on each seed's own base model (its stage 5 first):

    ./run.sh --stage 5 --stop_stage 5 --train_config conf/train_frozen_smear.yaml --base_exp exp/asr_conv_tristage_e9_s1
    python bench/bench_convergence.py --name acc_frozen_smear --base conf/train_frozen_smear.yaml \
        --base_exp 'exp/asr_conv_tristage_e9_s{seed}' --seeds 1 2 3
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import yaml

TOP = Path(__file__).resolve().parents[1]
RECIPE = TOP / "egs" / "indic_synth" / "asr1"

_INTERVAL = re.compile(r"(\d+)epoch:train:(\d+)-(\d+)batch: (.*)$")
_EPOCH = re.compile(r"(\d+)epoch results: (.*)$")
_KV = re.compile(r"(\w+)=([-+0-9.eE]+|nan|inf)")


def merged_config(base: Path, variant: Optional[Path]) -> dict:
    cfg = yaml.safe_load(base.read_text(encoding="utf-8")) or {}
    if variant is not None:
        cfg.update(yaml.safe_load(variant.read_text(encoding="utf-8")) or {})
    return cfg


def parse_train_log(log: Path, exit_ratio: float, accum_grad: int, plateau_ratio: float = 0.1,
                    exit_hold: int = 3) -> dict:
    """Plateau exit and per-epoch valid CER from an ESPnet train.log."""
    curve: List[dict] = []  # one entry per logged interval
    batches_per_epoch: Dict[int, int] = {}
    valid_cer: Dict[int, float] = {}
    intervals = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _INTERVAL.search(line)
        if m:
            epoch, end = int(m.group(1)), int(m.group(3))
            batches_per_epoch[epoch] = max(end, batches_per_epoch.get(epoch, 0))
            kv = dict(_KV.findall(m.group(4)))
            intervals.append((epoch, end, float(kv["ctc_emission"]) if "ctc_emission" in kv else None))
            continue
        m = _EPOCH.search(line)
        if m:
            valid = m.group(2).split("[valid]")[-1]
            kv = dict(_KV.findall(valid))
            if "cer_ctc" in kv:
                valid_cer[int(m.group(1))] = 100.0 * float(kv["cer_ctc"])
    offset, offsets = 0, {}
    for epoch in sorted(batches_per_epoch):
        offsets[epoch] = offset
        offset += batches_per_epoch[epoch]
    points = [(offsets[epoch] + end, ratio) for epoch, end, ratio in intervals]
    return summarise(points, {e: valid_cer[e] / 100.0 for e in valid_cer}, exit_ratio, accum_grad,
                     plateau_ratio, offset, exit_hold)


def parse_tensorboard(exp: Path, exit_ratio: float, accum_grad: int, plateau_ratio: float = 0.1,
                      exit_hold: int = 3) -> Optional[dict]:
    """The same from ESPnet's TensorBoard summaries (train/ctc_emission per logged
    interval, valid/cer_ctc per epoch): they survive a resumed training's new log."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return None
    def scalars(phase: str, tag: str) -> Dict[int, float]:
        out: Dict[int, float] = {}
        for f in sorted((exp / "tensorboard" / phase).glob("events.*")):
            ea = EventAccumulator(str(f), size_guidance={"scalars": 0})
            ea.Reload()
            if tag in ea.Tags().get("scalars", []):
                out.update({e.step: e.value for e in ea.Scalars(tag)})  # a rerun's step wins
        return out
    emission = scalars("train", "ctc_emission")
    if not emission:
        return None
    valid = scalars("valid", "cer_ctc")
    return summarise(sorted(emission.items()), valid, exit_ratio, accum_grad, plateau_ratio, max(emission), exit_hold)


def summarise(points, valid_cer: Dict[int, float], exit_ratio: float, accum_grad: int,
              plateau_ratio: float, iters: int, exit_hold: int = 3) -> dict:
    """points: (iteration, emission ratio or None) in order; valid_cer: epoch -> rate."""
    curve = [{"iter": it, "ctc_emission": None if r is None else round(r, 4)} for it, r in points]
    logged = [(it, r) for it, r in points if r is not None]
    first = next((i for i, (_, r) in enumerate(logged) if r < plateau_ratio), None)
    exit_iter = None
    if first is not None:
        ok = [exit_ratio <= r <= 1.0 / exit_ratio for _, r in logged]
        for i in range(first, len(logged) - exit_hold + 1):
            if all(ok[i:i + exit_hold]):
                exit_iter = logged[i][0]
                break
    return {
        "plateau_exit_iter": exit_iter,
        "plateau_exit_update": None if exit_iter is None else exit_iter // accum_grad,
        "iters": iters,
        "valid_cer_per_epoch": [round(100.0 * valid_cer[e], 2) for e in sorted(valid_cer)],
        "emission_curve": curve,
    }


def exit_in_log(log: Path, args, accum_grad: int) -> Optional[int]:
    """The plateau exit iteration once the training log establishes it (else None)."""
    if not log.exists():
        return None
    return parse_train_log(log, args.exit_ratio, accum_grad, args.plateau_ratio, args.exit_hold)["plateau_exit_iter"]


def run_one(name: str, config: Path, seed: int, args) -> dict:
    tag = f"conv_{name}_s{seed}"
    exp = RECIPE / args.expdir / f"asr_{tag}"
    exp.mkdir(parents=True, exist_ok=True)
    scores = exp / "decode_ctc_greedy" / "scores.json"
    state_path = exp / "bench_state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {"wall_s": 0.0}
    stop = "6" if args.train_only else "9"
    done = (exp / "valid.loss.ave.pth") if args.train_only else scores
    cmd = ["./run.sh", "--stage", "6", "--stop_stage", stop, "--train_config", str(config),
           "--seed", str(seed), "--tag", tag, "--nj", "1", "--expdir", args.expdir,
           "--results_md", str(exp / "RESULTS.md")]
    if args.test_sets:
        cmd += ["--test_sets", " ".join(args.test_sets)]
    if args.base_exp:  # frozen-encoder configs: each seed on the same seed's base model
        cmd += ["--base_exp", args.base_exp.format(seed=seed)]
    cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    accum = int(cfg.get("accum_grad", 1))
    if not done.exists() and "stopped_after_exit" not in state and not args.report_only:
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        t0 = time.time()
        with open(exp / "bench_run.log", "a", encoding="utf-8") as log:
            log.write(f"# {shlex.join(cmd)}\n")
            log.flush()
            # own process group: --stop_after_exit stops run.sh and the training it started
            proc = subprocess.Popen(cmd, cwd=RECIPE, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            deadline = t0 + args.timeout_s
            while True:
                try:  # returns as soon as run.sh ends; with --stop_after_exit, look at the log every 5 s
                    proc.wait(timeout=5 if args.stop_after_exit else max(deadline - time.time(), 0.1))
                    break
                except subprocess.TimeoutExpired:
                    pass
                exit_iter = exit_in_log(exp / "train.log", args, accum) if args.stop_after_exit else None
                if exit_iter is not None or time.time() > deadline:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait()
                    if exit_iter is not None:
                        state["stopped_after_exit"] = exit_iter
                        log.write(f"# stopped: plateau exit at iteration {exit_iter} (--stop_after_exit)\n")
                    break
        state["wall_s"] += time.time() - t0
        state_path.write_text(json.dumps(state))
        if proc.returncode != 0 and "stopped_after_exit" not in state:
            return {"seed": seed, "error": f"run.sh exited {proc.returncode}; see {exp / 'bench_run.log'}"}
    out = {"seed": seed, "exp": str(exp.relative_to(TOP)), "wall_s": round(state["wall_s"], 1)}
    out.update(parse_tensorboard(exp, args.exit_ratio, accum, args.plateau_ratio, args.exit_hold)
               or parse_train_log(exp / "train.log", args.exit_ratio, accum, args.plateau_ratio, args.exit_hold))
    if "stopped_after_exit" in state and not done.exists():
        out["stopped"] = "stopped after the plateau exit, --stop_after_exit"
    elif not done.exists():
        out["stopped"] = f"stopped with {len(out['valid_cer_per_epoch'])} of {cfg.get('max_epoch')} epochs done"
    sc = json.loads(scores.read_text(encoding="utf-8")) if scores.exists() else {"test_sets": {}}
    out["test_cer"] = {k: round(v["cer_pct"], 2) for k, v in sc["test_sets"].items()}
    out["test_wer"] = {k: round(v["wer_pct"], 2) for k, v in sc["test_sets"].items()}
    return out


def fmt(x, nd=1):
    return "–" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def write_report(name: str, rows: List[dict], meta: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=1, ensure_ascii=False) + "\n")
    ok = [r for r in rows if "error" not in r]
    sets = sorted({s for r in ok for s in r["test_cer"]}, key=lambda s: (s != "test_id", s))
    lines = [f"# Convergence: {name}", "", f"Command: `{meta['command']}`", "",
             f"Config: `{meta['base']}`" + (f" + `{meta['variant']}`" if meta["variant"] else "")
             + f"; {meta['host']} (this invocation); {meta['date']}; exit = end of the first logged interval that starts {meta.get('exit_hold', 3)} in a row with greedy-CTC emission ratio in [{meta['exit_ratio']}, {1 / meta['exit_ratio']:g}].", "",
             "| seed | exit (update) | valid CER % per epoch | " + "".join(f"{s} CER | " for s in sets)
             + "test_id WER | wall min |",
             "|---|---|---|" + "---|" * len(sets) + "---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['seed']} | {r['error']} |")
            continue
        lines.append(f"| {r['seed']} | {fmt(r['plateau_exit_update'])} | "
                     + " / ".join(fmt(c) for c in r["valid_cer_per_epoch"])
                     + (f" ({r['stopped']})" if r.get("stopped") else "") + " | "
                     + "".join(f"{fmt(r['test_cer'].get(s))} | " for s in sets)
                     + f"{fmt(r['test_wer'].get('test_id'))} | {r['wall_s'] / 60:.1f} |")
    if len(ok) > 1 and sets:
        cell = []
        for s in sets:
            v = [r["test_cer"][s] for r in ok if s in r["test_cer"]]
            cell.append(f"{statistics.mean(v):.1f} ± {statistics.stdev(v):.1f}" if len(v) > 1 else "–")
        lines.append("| mean ± sd | | | " + "".join(f"{c} | " for c in cell) + "| |")
    notes = out / f"{name}.notes.md"   # hand-written context (load, resumes), kept across rewrites
    if notes.exists():
        lines += ["", notes.read_text(encoding="utf-8").strip()]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True, help="variant name (exp tag conv_<name>_s<seed>, report file name)")
    p.add_argument("--base", default="conf/train_dense_conformer.yaml", help="base training config (repo-relative)")
    p.add_argument("--variant", default=None, help="yaml whose top-level keys replace the base's")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--jobs", type=int, default=3, help="parallel trainings (1 thread each)")
    p.add_argument("--exit_ratio", type=float, default=0.5)
    p.add_argument("--plateau_ratio", type=float, default=0.1)
    p.add_argument("--exit_hold", type=int, default=3, help="consecutive logged intervals in range")
    p.add_argument("--expdir", default="exp")
    p.add_argument("--test_sets", nargs="*", default=None, help="default: every test set of the corpus")
    p.add_argument("--base_exp", default=None,
                   help="frozen-encoder configs: run.sh's --base_exp, '{seed}' replaced by the seed "
                        "(e.g. exp/asr_conv_tristage_e9_s{seed}); its stage 5 must have run")
    p.add_argument("--train_only", action="store_true",
                   help="stage 6 only (plateau exit and valid CER; no decoding)")
    p.add_argument("--stop_after_exit", action="store_true",
                   help="stop each training as soon as its log establishes the plateau exit "
                        "(an exit probe: no validation, no decoding; the report marks the rows)")
    p.add_argument("--report_only", action="store_true",
                   help="run nothing: report what the runs' logs hold (e.g. runs stopped early)")
    p.add_argument("--timeout_s", type=float, default=3 * 3600)
    p.add_argument("--out", default=str(TOP / "bench" / "results" / "convergence"))
    args = p.parse_args(argv)
    base = (TOP / args.base).resolve()
    variant = (TOP / args.variant).resolve() if args.variant else None
    config = RECIPE / args.expdir / "conv_configs" / f"{args.name}.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    if not (args.report_only and config.exists()):  # a report keeps the config the runs used
        config.write_text(yaml.safe_dump(merged_config(base, variant), sort_keys=False, allow_unicode=True))
    argv_shown = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--report_only"]
    meta = {"command": "python bench/bench_convergence.py " + shlex.join(argv_shown),
            "base": args.base, "variant": args.variant, "exit_ratio": args.exit_ratio, "exit_hold": args.exit_hold,
            "host": f"{platform.machine()}, {os.cpu_count()} cores, 1 thread per training, {args.jobs} at once",
            "date": time.strftime("%Y-%m-%d")}
    with cf.ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda s: run_one(args.name, config, s, args), args.seeds))
    write_report(args.name, rows, meta, Path(args.out))
    print((Path(args.out) / f"{args.name}.md").read_text())
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
