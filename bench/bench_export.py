#!/usr/bin/env python3
"""ONNX export (issue 19): ONNX Runtime vs PyTorch decoding RTF at 1 thread, file sizes.

Models: the dense conformer (``conf/train_dense_conformer.yaml``) and BLR-MoE
(``conf/train_blr_moe.yaml``) at the presets' real sizes, randomly initialised (the
cost of a forward does not depend on the weights; BLR-MoE's experts are perturbed
apart and routing runs as usual), global MVN statistics from their own frontend on
the benchmark audio. Each is exported with ``export_onnx``; BLR-MoE also pruned to
``--allowed_langs`` (hard prior: the other experts removed from the file).

Decoding: ``--utts`` speech-like utterances of ``--seconds`` s, one at a time (batch
1), greedy CTC, 1 thread for both runtimes. PyTorch = :class:`Speech2Text` (encode
+ CTC log-softmax + arg-max; the pruned model's PyTorch counterpart is the full
model with the same hard prior); ONNX Runtime = :class:`OnnxSpeech2Text` (graph +
numpy greedy decoding). All variants are timed interleaved, utterance by utterance,
for ``--rounds`` rounds after one warm-up round, so that load from other processes
hits them alike; RTF = decode seconds / audio seconds per round, reported as the
median over rounds, and ORT/PyTorch ratios are medians of per-round paired ratios.
Hypotheses of the two runtimes are compared on every utterance.

    python bench/bench_export.py --out bench/results/export
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import espnet_plugins  # noqa: E402,F401
import numpy as np  # noqa: E402
import torch  # noqa: E402

LANGS = ["hi", "mr", "ta", "te"]
TOKENS = ["<blank>", "<unk>", "<space>"] + [chr(0x900 + i) for i in range(80)] + ["<sos/eos>"]
SR = 16000
MODELS = {"dense": "conf/train_dense_conformer.yaml", "blr_moe": "conf/train_blr_moe.yaml"}


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """Voiced speech-like audio: harmonics of a moving f0 under moving formants."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = rng.uniform(100, 200) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    formants = [rng.uniform(300, 900), rng.uniform(900, 2500), rng.uniform(2400, 3500)]
    voiced = np.zeros_like(t)
    for h in range(1, 40):
        freq = h * f0
        gain = sum(np.exp(-(((freq - f) / 150.0) ** 2)) for f in formants)
        voiced += np.where(freq < 7500, gain, 0.0) * np.sin(h * phase) / h**0.5
    syllables = np.clip(np.sin(2 * np.pi * rng.uniform(2, 4) * t), 0, None) ** 0.7
    wave = 0.3 * syllables * voiced / np.abs(voiced).max() + 0.003 * rng.standard_normal(len(t))
    return wave.astype(np.float32)


def build_exp(name: str, config: str, workdir: Path, waves) -> Path:
    """A random-weight experiment dir (config.yaml + model.pth) like ESPnet's trainer writes."""
    from espnet2.asr.frontend.default import DefaultFrontend
    from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

    from espnet_plugins.asr.moe.expert_linear import ExpertLinear
    from espnet_plugins.tasks.asr import MoEASRTask

    exp = workdir / name
    exp.mkdir(parents=True)
    (exp / "tokens.txt").write_text("\n".join(TOKENS) + "\n", encoding="utf-8")
    (exp / "lang_list").write_text("\n".join(LANGS) + "\n", encoding="utf-8")
    frontend = DefaultFrontend(fs=SR, n_fft=512, win_length=400, hop_length=160, n_mels=80)
    with torch.no_grad():
        frames = torch.cat([frontend(torch.from_numpy(w)[None], torch.tensor([len(w)]))[0][0] for w in waves]).double()
    np.savez(exp / "feats_stats.npz", count=np.array(float(len(frames))),
             sum=frames.sum(0).numpy(), sum_square=frames.pow(2).sum(0).numpy())
    args = MoEASRTask.get_parser().parse_args([
        "--config", str(ROOT / config), "--token_list", str(exp / "tokens.txt"),
        "--lang_list", str(exp / "lang_list"), "--token_type", "char",
        "--normalize_conf", f"stats_file={exp / 'feats_stats.npz'}"])
    torch.manual_seed(0)
    model = MoEASRTask.build_model(args)
    with torch.no_grad():
        for module in model.encoder.modules():
            if isinstance(module, ExpertLinear):
                for p in module.parameters():
                    p.add_(0.5 * p.std() * torch.randn_like(p))
    with open(exp / "config.yaml", "w", encoding="utf-8") as f:
        yaml_no_alias_safe_dump(vars(args), f, indent=4, sort_keys=False)
    torch.save(model.state_dict(), exp / "model.pth")
    return exp


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output path stem (.json/.md)")
    p.add_argument("--utts", type=int, default=3)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--allowed_langs", default="hi,mr")
    p.add_argument("--workdir", default=None, help="keep the experiment dirs and .onnx files here")
    args = p.parse_args()
    torch.set_num_threads(1)
    from espnet_plugins.export.onnx_export import export_onnx
    from espnet_plugins.inference.onnx_decode import OnnxSpeech2Text
    from espnet_plugins.inference.speech2text import Speech2Text

    allowed = args.allowed_langs.split(",")
    waves = [speechlike(args.seconds, seed) for seed in range(args.utts)]
    audio = sum(len(w) for w in waves) / SR
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_export_"))
    load_before = os.getloadavg()
    variants, sizes, reports = {}, {}, {}
    for name, config in MODELS.items():
        exp = build_exp(name, config, workdir, waves)
        cfg, pth = str(exp / "config.yaml"), str(exp / "model.pth")
        exports = [(name, None)] + ([(f"{name}_pruned_{''.join(allowed)}", allowed)] if name != "dense" else [])
        for label, langs in exports:
            path = exp / "onnx" / f"{label}.onnx"
            t0 = time.perf_counter()
            reports[label] = export_onnx(cfg, pth, str(path), allowed_langs=langs)
            reports[label]["export_seconds"] = time.perf_counter() - t0
            sizes[label] = path.stat().st_size
            variants[label] = {
                "pytorch": Speech2Text(cfg, pth, allowed_langs=langs, prior_mode="hard"),
                "onnxruntime": OnnxSpeech2Text(str(path), num_threads=1),
            }
    times = {label: {rt: [] for rt in v} for label, v in variants.items()}
    mismatches = {label: 0 for label in variants}
    for r in range(args.rounds + 1):  # round 0: warm-up
        elapsed = {label: {rt: 0.0 for rt in v} for label, v in variants.items()}
        for wave in waves:
            for label, v in variants.items():
                texts = {}
                for rt, decoder in v.items():
                    t0 = time.perf_counter()
                    if rt == "pytorch":
                        texts[rt] = decoder(wave).text
                    else:
                        texts[rt] = decoder(wave)["text"]
                    elapsed[label][rt] += time.perf_counter() - t0
                mismatches[label] += r > 0 and texts["pytorch"] != texts["onnxruntime"]
        if r > 0:
            for label in variants:
                for rt in variants[label]:
                    times[label][rt].append(elapsed[label][rt])
    rows = {}
    for label in variants:
        rtf = {rt: statistics.median(t) / audio for rt, t in times[label].items()}
        ratio = statistics.median(o / t for o, t in zip(times[label]["onnxruntime"], times[label]["pytorch"]))
        rows[label] = {"rtf_pytorch": rtf["pytorch"], "rtf_onnxruntime": rtf["onnxruntime"],
                       "ort_over_pytorch": ratio, "onnx_bytes": sizes[label],
                       "parameters": reports[label]["parameters"],
                       "check_max_abs_diff": reports[label]["check"]["max_abs_diff"],
                       "hypothesis_mismatches": int(mismatches[label]),
                       "export_seconds": reports[label]["export_seconds"]}
    report = {
        "command": "python bench/bench_export.py " + " ".join(sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu_name()} ({platform.machine()}), {os.cpu_count()} cores, no GPU; 1 thread per runtime",
        "load_average_1min": [load_before[0], os.getloadavg()[0]],
        "torch": torch.__version__, "onnxruntime": __import__("onnxruntime").__version__,
        "audio_seconds_per_round": audio, "utterances": args.utts, "rounds": args.rounds,
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(render(report))
    print(render(report))


def render(report) -> str:
    lines = [
        "# ONNX export: ONNX Runtime vs PyTorch (issue 19)", "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}; machine: {report['machine']}; torch {report['torch']}, "
        f"onnxruntime {report['onnxruntime']}.", "",
        "**Contended CPU**: three trainings ran in the background on this 2-core machine "
        f"(1-minute load average {report['load_average_1min'][0]:.1f} before, "
        f"{report['load_average_1min'][1]:.1f} after the run), so absolute RTFs are inflated "
        "and noisy; the variants were timed interleaved utterance by utterance, so the "
        "ORT/PyTorch ratios are the more meaningful figures. Rerun on an idle machine with "
        "the command above.", "",
        f"{report['utterances']} speech-like utterances, {report['audio_seconds_per_round']:.1f} s of "
        f"audio per round, batch 1, greedy CTC, median of {report['rounds']} rounds after a "
        "warm-up. Randomly initialised models at the presets' real sizes "
        "(`conf/train_dense_conformer.yaml`, `conf/train_blr_moe.yaml`); the pruned row's PyTorch "
        "column is the full model with the same hard prior.", "",
        "| model | RTF PyTorch | RTF ONNX Runtime | ORT / PyTorch | .onnx size | parameters | "
        "max abs log-prob diff (export check) | hypothesis mismatches |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, r in report["rows"].items():
        lines.append(
            f"| {label} | {r['rtf_pytorch']:.4f} | {r['rtf_onnxruntime']:.4f} | "
            f"{r['ort_over_pytorch']:.2f}x | {r['onnx_bytes'] / 2**20:.2f} MiB | "
            f"{r['parameters'] / 1e6:.2f} M | {r['check_max_abs_diff']:.1e} | "
            f"{r['hypothesis_mismatches']} / {report['utterances'] * report['rounds']} |")
    rows = report["rows"]
    for label, r in rows.items():
        full = rows.get(label.split("_pruned_")[0])
        if "_pruned_" in label and full:
            lines += ["", f"Pruning ({label}): {full['onnx_bytes'] / 2**20:.2f} -> {r['onnx_bytes'] / 2**20:.2f} MiB "
                      f"({100 * (1 - r['onnx_bytes'] / full['onnx_bytes']):.0f} % smaller), "
                      f"{full['parameters'] / 1e6:.2f} -> {r['parameters'] / 1e6:.2f} M parameters."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
