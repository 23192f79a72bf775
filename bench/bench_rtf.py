#!/usr/bin/env python3
"""Decoding real-time factor of several trained models, measured side by side.

Each model (``--exp LABEL=EXP_DIR``, its ``valid.loss.ave.pth``) decodes the same first
``--utts`` utterances of ``--data`` one at a time with greedy CTC and ``--threads`` torch
threads. The models take turns for ``--rounds`` rounds (so a load change on the machine
hits them alike); RTF = decode seconds / audio seconds, the median over rounds, and the
ratio to the first model. Run it with nothing else on the machine: the accuracy table's
RTF column from stage 9 is measured while other trainings share the cores.

    python bench/bench_rtf.py --out bench/results/rtf \\
        --exp dense=egs/indic_synth/asr1/exp/asr_conv_tristage_e9_s1 \\
        --exp BLR-MoE=egs/indic_synth/asr1/exp/asr_conv_acc_blr_moe_s1
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_audio(data: Path, utts: int) -> tuple[list, float]:
    import soundfile as sf

    wavs = [line.split(maxsplit=1)[1].strip() for line in open(data / "wav.scp", encoding="utf-8")][:utts]
    audio = [sf.read(w, dtype="float32")[0] for w in wavs]
    return audio, sum(len(a) for a in audio) / 16000


def build(exp: Path, model_file: str, device: str = "cpu"):
    from espnet_plugins.inference.speech2text import Speech2Text

    cwd = os.getcwd()
    os.chdir(exp.parent.parent)  # paths inside a recipe's config.yaml are relative to the recipe
    try:
        return Speech2Text(str(exp / "config.yaml"), str(exp / model_file), device=device)
    finally:
        os.chdir(cwd)


def measure(models: dict, audio: list, seconds: float, rounds: int) -> dict:
    times: dict = {label: [] for label in models}
    for label, s2t in models.items():
        s2t(audio[0])  # warm-up
    for _ in range(rounds):
        for label, s2t in models.items():
            t = time.perf_counter()
            for a in audio:
                s2t(a)
            times[label].append((time.perf_counter() - t) / seconds)
    return {label: statistics.median(v) for label, v in times.items()}


def markdown(r: dict) -> str:
    first = next(iter(r["rtf"].values()))
    lines = [f"# Decoding RTF side by side\n", f"- command: `{r['command']}`",
             f"- host: {r['host']}; torch {r['torch']}; {r['threads']} thread(s); "
             f"{r['utterances']} utterances of {r['data']} ({r['audio_seconds']:.1f} s), one at a time, "
             f"greedy CTC; median of {r['rounds']} interleaved rounds", "",
             "| model | exp | RTF | vs first |", "|---|---|---|---|"]
    for label, v in r["rtf"].items():
        lines.append(f"| {label} | {r['exps'][label]} | {v:.4f} | {v / first:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exp", action="append", required=True, metavar="LABEL=EXP_DIR")
    p.add_argument("--data", type=Path, default=ROOT / "egs/indic_synth/asr1/dump/raw/test_id")
    p.add_argument("--utts", type=int, default=60)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--model_file", default="valid.loss.ave.pth")
    p.add_argument("--out", type=Path, required=True, help="output path stem (.json/.md)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    exps = {}
    for spec in a.exp:
        label, eq, path = spec.partition("=")
        exp = Path(path).resolve()
        if not eq or not (exp / a.model_file).is_file():
            p.error(f"--exp {spec!r}: expected LABEL=EXP_DIR with EXP_DIR/{a.model_file}")
        exps[label] = exp
    audio, seconds = load_audio(a.data.resolve(), a.utts)
    models = {label: build(exp, a.model_file) for label, exp in exps.items()}
    r = {"command": "python bench/bench_rtf.py " + " ".join(argv if argv is not None else sys.argv[1:]),
         "host": f"{platform.machine()}, {os.cpu_count()} cores", "torch": torch.__version__,
         "threads": a.threads, "utterances": len(audio), "audio_seconds": seconds, "rounds": a.rounds,
         "data": os.path.relpath(a.data.resolve(), ROOT), "exps": {k: os.path.relpath(v, ROOT) for k, v in exps.items()},
         "rtf": measure(models, audio, seconds, a.rounds)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps(r, indent=1) + "\n", encoding="utf-8")
    a.out.with_suffix(".md").write_text(markdown(r), encoding="utf-8")
    print(markdown(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
