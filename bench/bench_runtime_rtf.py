#!/usr/bin/env python3
"""Decoding RTF of one model in three runtimes: PyTorch, ONNX Runtime and sherpa-onnx.

The experiment dir ``--exp`` needs run.sh stage 12's exports (``onnx/model.onnx`` and
``sherpa_onnx/``). Each runtime decodes the same utterances (the first ``--utts`` of
``--data``) one at a time with greedy CTC and 1 thread (torch intra-op threads, ONNX
Runtime / sherpa-onnx ``num_threads``), after one warm-up utterance, in one run.
RTF = decode seconds / audio seconds (audio already in memory; sherpa-onnx's time
includes its stream creation and its mean/variance normalisation). Also written: each
runtime's CER on the set and how many hypotheses equal PyTorch's.

    python bench/bench_runtime_rtf.py --exp egs/indic_synth/asr1/exp/asr_dense_conformer \\
        --data egs/indic_synth/asr1/dump/raw/test_id --out bench/results/runtime_rtf
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", required=True, type=Path)
    p.add_argument("--model_file", default="valid.loss.ave.pth")
    p.add_argument("--data", required=True, type=Path, help="data dir with wav.scp and text")
    p.add_argument("--utts", type=int, default=240)
    p.add_argument("--label", default=None, help="model name in the table (default: the exp dir's)")
    p.add_argument("--out", required=True, help="output prefix: <out>.md and <out>.json")
    args = p.parse_args(argv)

    import jiwer
    import soundfile as sf
    import torch

    import espnet_plugins  # noqa: F401
    from espnet_plugins.inference.onnx_decode import OnnxSpeech2Text
    from espnet_plugins.inference.sherpa_decode import SherpaSpeech2Text
    from espnet_plugins.inference.speech2text import Speech2Text

    torch.set_num_threads(1)
    keys, audio = [], []
    for line in (args.data / "wav.scp").read_text(encoding="utf-8").splitlines()[: args.utts]:
        key, path = line.split(maxsplit=1)
        keys.append(key)
        audio.append(sf.read(path, dtype="float32")[0])
    refs = dict((line.split(maxsplit=1) + [""])[:2] for line in (args.data / "text").read_text(encoding="utf-8").splitlines())
    seconds = sum(len(a) for a in audio) / 16000
    pytorch = Speech2Text(str(args.exp / "config.yaml"), str(args.exp / args.model_file))
    runtimes = {
        "PyTorch (Speech2Text)": lambda a: pytorch(a).text,
        "ONNX Runtime (onnx_decode)": (lambda m: lambda a: m(a)["text"])(OnnxSpeech2Text(str(args.exp / "onnx" / "model.onnx"), num_threads=1)),
        "sherpa-onnx (OfflineRecognizer)": SherpaSpeech2Text(str(args.exp / "sherpa_onnx"), num_threads=1),
    }
    rows = {}
    for label, decode in runtimes.items():
        decode(audio[0])  # warm-up
        hyps = []
        t0 = time.perf_counter()
        for a in audio:
            hyps.append(decode(a).strip())
        elapsed = time.perf_counter() - t0
        rows[label] = {"rtf": elapsed / seconds, "hyps": hyps}
    base = rows["PyTorch (Speech2Text)"]["hyps"]

    def cer(hyps):
        r = [refs[k].replace(" ", "_") or "_" for k in keys]
        return 100 * jiwer.cer(r, [h.replace(" ", "_") for h in hyps])

    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python bench/bench_runtime_rtf.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "model": args.label or args.exp.name, "exp": str(args.exp), "utterances": len(audio),
        "audio_seconds": round(seconds, 2), "threads": 1,
        "hardware": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
        "runtimes": {label: {"rtf": round(r["rtf"], 4), "cer": round(cer(r["hyps"]), 2),
                             "same_hypothesis_as_pytorch": sum(h == b for h, b in zip(r["hyps"], base))}
                     for label, r in rows.items()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    pt = result["runtimes"]["PyTorch (Speech2Text)"]["rtf"]
    lines = [
        f"# Decoding RTF: PyTorch vs ONNX Runtime vs sherpa-onnx ({result['model']})", "",
        f"- command: `{result['command']}`",
        f"- date: {result['date']}; {result['utterances']} utterances, {result['audio_seconds']} s of audio; "
        f"greedy CTC, one utterance at a time, 1 thread, one run after one warm-up utterance",
        f"- hardware: {result['hardware']}", "",
        "|runtime|RTF|vs PyTorch|CER %|hypotheses = PyTorch's|", "|---|---|---|---|---|",
    ]
    for label, r in result["runtimes"].items():
        lines.append(f"|{label}|{r['rtf']:.4f}|{r['rtf'] / pt:.2f}x|{r['cer']:.2f}|"
                     f"{r['same_hypothesis_as_pytorch']}/{result['utterances']}|")
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
