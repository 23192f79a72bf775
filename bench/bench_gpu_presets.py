#!/usr/bin/env python3
"""Estimated GPU cost of the GPU presets (conf/train_*_gpu.yaml) from one measured CPU step each.

For each preset: build the model (4 languages; the SMEAR preset on a randomly initialised
encoder of MMS-300m's size: only its config is needed), run one training step (forward,
backward, Adam) on a batch of ``--batch`` utterances of ``--seconds`` s of noise at
``--threads`` CPU thread(s), and record

* the measured CPU time of the step (after a warm-up step);
* the FLOPs of the step (torch.utils.flop_counter: matmuls, convolutions, attention);
* the bytes of the activations autograd saves for the backward (a lower bound of the
  training memory per second of audio; fp32 here, ~half under AMP).

Scaled per second of audio, these give hours per epoch per 100 h of audio on this CPU
(measured rate) and on one H100 at an ASSUMED sustained fraction of its 989 TFLOP/s bf16
peak (model FLOPs utilisation: an assumption, not a measurement; 1 % for small conformers whose
steps are bound by kernel launches and data loading, 10 % for matmul-bound large encoders).
These are estimates until a GPU measures them; data loading and validation are not counted.

    python bench/bench_gpu_presets.py --presets train_dense_conformer_gpu train_lr_moe_gpu train_blr_moe_gpu \
        --json bench/results/gpu_presets.json
    python bench/bench_gpu_presets.py --presets train_smear_hf_gpu --batch 1 --seconds 4 \
        --json bench/results/gpu_presets_smear_hf.json
    python bench/bench_gpu_presets.py --from_json bench/results/gpu_presets*.json
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRESETS = ["train_dense_conformer_gpu", "train_lr_moe_gpu", "train_blr_moe_gpu", "train_smear_hf_gpu"]
LANGS = ["hi", "mr", "ta", "te"]
H100_BF16 = 989e12
MFU = (0.01, 0.10)
AUDIO_100H = 100 * 3600.0


def mms_300m_config(path: Path) -> Path:
    """MMS-300m's architecture (wav2vec 2.0 large, stable layer norm) without weights."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor

    Wav2Vec2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                   feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
                   feat_extract_activation="gelu").save_pretrained(path)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=True).save_pretrained(path)
    return path


def build(preset: str, tmp: Path):
    from espnet_plugins.tasks.asr import MoEASRTask
    from espnet_plugins.train.auto_schedule import resolve_auto_schedule

    tokens = tmp / "tokens.txt"
    tokens.write_text("\n".join(["<blank>", "<unk>"] + [chr(0x900 + i) for i in range(80)] + ["<sos/eos>"]) + "\n",
                      encoding="utf-8")
    (tmp / "lang_list").write_text("\n".join(LANGS) + "\n")
    argv = ["--config", str(ROOT / "conf" / f"{preset}.yaml"), "--token_list", str(tokens), "--lang_list",
            str(tmp / "lang_list"), "--normalize", "none" if "hf" not in preset else "utterance_mvn",
            "--frontend_conf", "fs=16k"]
    if "hf" in preset:
        argv += ["--frontend_conf", f"model={mms_300m_config(tmp / 'mms')}", "--frontend_conf",
                 "load_pretrained=false"]
    args = MoEASRTask.get_parser().parse_args(argv)
    resolve_auto_schedule(args, batches=1000)
    torch.manual_seed(0)
    model = MoEASRTask.build_model(args).train()
    optim = MoEASRTask.build_optimizers(args, model)[0]
    return model, optim, args


def batch(n: int, seconds: float, vocab: int):
    g = torch.Generator().manual_seed(0)
    samples = int(seconds * 16000)
    chars = int(seconds * 12)  # ~12 characters per second of speech
    return dict(speech=0.1 * torch.randn(n, samples, generator=g), speech_lengths=torch.full((n,), samples),
                text=torch.randint(2, vocab - 1, (n, chars), generator=g), text_lengths=torch.full((n,), chars),
                lang=torch.randint(0, len(LANGS), (n, 1), generator=g), lang_lengths=torch.ones(n, dtype=torch.long))


def step(model, optim, b) -> None:
    loss, _, _ = model(**b)
    optim.zero_grad(set_to_none=True)
    loss.backward()
    optim.step()


def measure(preset: str, n: int, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as d:
        model, optim, args = build(preset, Path(d))
    vocab = len(args.token_list)
    b = batch(n, seconds, vocab)
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    step(model, optim, b)  # warm-up (allocations, lazy inits)
    t0 = time.perf_counter()
    step(model, optim, b)
    cpu_s = time.perf_counter() - t0
    saved = [0]

    def pack(t):
        saved[0] += t.numel() * t.element_size()
        return t

    counter = FlopCounterMode(display=False)
    with counter, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step(model, optim, b)
    audio = n * seconds
    return dict(preset=preset, params=params, trainable=trainable, batch=n, seconds=seconds, cpu_step_s=cpu_s,
                flops=counter.get_total_flops(), saved_bytes=saved[0], audio_s=audio,
                batch_bins=args.batch_bins, use_amp=args.use_amp)


def table(rows: list, threads: int) -> str:
    lines = [
        "| preset | params (M) | trainable (M) | CPU step (s) | GFLOP / audio s | this CPU: h / epoch / 100 h | "
        "H100 @ 1 % MFU: h / epoch / 100 h | H100 @ 10 % MFU | activations (MB / audio s, fp32) | "
        "batch audio s (preset) | est. batch audio s in 60 GB (AMP) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        per_s = r["flops"] / r["audio_s"]
        cpu_h = r["cpu_step_s"] / r["audio_s"] * AUDIO_100H / 3600
        gpu = [per_s * AUDIO_100H / (m * H100_BF16) / 3600 for m in MFU]
        act = r["saved_bytes"] / r["audio_s"]
        fit = 60e9 / (act / 2)
        lines.append(f"| {r['preset']} | {r['params'] / 1e6:.1f} | {r['trainable'] / 1e6:.1f} | {r['cpu_step_s']:.1f} | "
                     f"{per_s / 1e9:.1f} | {cpu_h:.0f} | {gpu[0]:.2f} | {gpu[1]:.3f} | {act / 1e6:.0f} | "
                     f"{r['batch_bins'] / 16000:.0f} | {fit:.0f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=PRESETS)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "gpu_presets.json")
    p.add_argument("--out", type=Path, default=None, help="also print the markdown table into this file")
    p.add_argument("--from_json", type=Path, nargs="+", default=None,
                   help="no measuring: the table of these earlier --json outputs (e.g. presets run at other sizes)")
    a = p.parse_args()
    if a.from_json:
        md = table([r for f in a.from_json for r in json.loads(f.read_text())["rows"]], a.threads)
        print(md)
        if a.out is not None:
            a.out.write_text(md + "\n")
        return
    torch.set_num_threads(a.threads)
    rows = []
    for preset in a.presets:
        r = measure(preset, a.batch, a.seconds)
        rows.append(r)
        print(json.dumps(r), flush=True)
    meta = dict(command="python bench/bench_gpu_presets.py " + " ".join(sys.argv[1:]), threads=a.threads,
                machine=f"{os.cpu_count()} CPU cores, {platform.machine()}, load {os.getloadavg()[0]:.1f}",
                torch=torch.__version__, date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), seed=0)
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(dict(meta=meta, rows=rows), indent=1) + "\n")
    md = table(rows, a.threads)
    print(md)
    if a.out is not None:
        a.out.write_text(md + "\n")


if __name__ == "__main__":
    main()
