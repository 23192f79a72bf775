#!/usr/bin/env python3
"""Whole-model cost: training throughput and peak memory of BLR-MoE vs the stock ESPnet
conformer, and decoding RTF of a trained model (issue 6).

Training: both models are built from their recipe configs (``conf/train_dense_conformer.yaml``,
``conf/train_blr_moe.yaml``: same 6 x 144 conformer, BLR-MoE's last 2 blocks with V/O +
FFN experts and a TDNN router), fed the same random batch (``--batch`` utterances of
``--seconds`` s of noise with random character targets and languages), and timed per
optimizer step (forward + backward + Adam) interleaved, median of ``--repeats`` after
``--warmup``; throughput = seconds of audio per wall second, ratio = BLR-MoE / dense
(median of per-repeat paired ratios). Peak memory: each model trains ``--memory_steps``
steps in its own subprocess; reported is the growth of the process's peak RSS over the
RSS after building the model (CPU), or ``torch.cuda.max_memory_allocated`` on CUDA.

Decoding: ``--rtf_exp`` (default: the default recipe's model) decodes the first
``--rtf_utts`` utterances of ``--rtf_data`` one at a time with greedy CTC, with 1 thread
and with all threads; RTF = decode seconds / audio seconds (target <= 0.03).

    python bench/bench_model.py --out bench/results/bench_model
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import espnet_plugins  # noqa: E402,F401
import torch  # noqa: E402

LANGS = ["hi", "mr", "ta", "te"]
# name -> (recipe config, encoder_conf overrides). The two middle rows split BLR-MoE's extra
# cost: our padding-invariant blocks without experts (a 580-parameter linear router
# still runs for the LID loss), then experts with a linear router, then the TDNN router.
CONFIGS = {
    "dense": ("conf/train_dense_conformer.yaml", []),
    "ours_no_experts": ("conf/train_blr_moe.yaml", ["num_shared_blocks=6", "num_moe_blocks=0",
                                                     "router_type=linear"]),
    "blr_linear_router": ("conf/train_blr_moe.yaml", ["router_type=linear"]),
    "blr_moe": ("conf/train_blr_moe.yaml", []),
}
DESCRIPTION = {
    "dense": "stock ESPnet ConformerEncoder",
    "ours_no_experts": "our blocks, 6 shared, no experts, linear router",
    "blr_linear_router": "BLR-MoE v,o + FFN experts, linear router",
    "blr_moe": "BLR-MoE v,o + FFN experts, TDNN router (preset)",
}


def build(name: str, workdir: Path, device: str):
    from espnet_plugins.tasks.asr import MoEASRTask

    tokens = workdir / "tokens.txt"
    if not tokens.exists():
        tokens.write_text("\n".join(["<blank>", "<unk>"] + [chr(0x905 + i) for i in range(60)] + ["<sos/eos>"]) + "\n")
        (workdir / "langs").write_text("\n".join(LANGS) + "\n")
    args = MoEASRTask.get_parser().parse_args([
        "--config", str(ROOT / CONFIGS[name][0]), "--token_list", str(tokens), "--lang_list", str(workdir / "langs"),
        "--normalize", "none", "--frontend_conf", "fs=16k"]
        + [a for kv in CONFIGS[name][1] for a in ("--encoder_conf", kv)])
    torch.manual_seed(0)
    model = MoEASRTask.build_model(args).to(device).train()
    return model, torch.optim.Adam(model.parameters(), lr=1e-4)


def batch(args, vocab: int, device: str):
    g = torch.Generator().manual_seed(1)
    samples = int(args.seconds * 16000)
    speech = 0.1 * torch.randn(args.batch, samples, generator=g)
    lengths = torch.full((args.batch,), samples)
    chars = int(args.seconds * 10)
    text = torch.randint(2, vocab - 1, (args.batch, chars), generator=g)
    return dict(speech=speech.to(device), speech_lengths=lengths.to(device), text=text.to(device),
                text_lengths=torch.full((args.batch,), chars).to(device),
                lang=torch.randint(0, len(LANGS), (args.batch, 1), generator=g).to(device),
                lang_lengths=torch.ones(args.batch, dtype=torch.long).to(device))


def step(model, opt, b, device) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    loss = model(**b)[0]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def throughput(args, workdir: Path) -> dict:
    models = {n: build(n, workdir, args.device) for n in CONFIGS}
    b = batch(args, models["dense"][0].vocab_size, args.device)
    times = {n: [] for n in models}
    for rep in range(args.warmup + args.repeats):
        for n in (list(models) if rep % 2 == 0 else list(models)[::-1]):
            t = step(*models[n], b, args.device)
            if rep >= args.warmup:
                times[n].append(t)
    audio = args.batch * args.seconds
    out = {}
    for n, ts in times.items():
        model = models[n][0]
        out[n] = {"step_median_s": statistics.median(ts), "audio_s_per_s": audio / statistics.median(ts),
                  "params_M": sum(p.numel() for p in model.parameters()) / 1e6}
    for n in models:
        out[n]["throughput_ratio_vs_dense"] = statistics.median(
            d / m for d, m in zip(times["dense"], times[n]))
        out[n]["ratio_of_medians"] = statistics.median(times["dense"]) / statistics.median(times[n])
    return out


def profile(args, workdir: Path) -> dict:
    """Where BLR-MoE's extra step time goes: per-op self CPU time of both models
    (torch.profiler over ``--profile_steps`` steps each), sorted by BLR-MoE minus dense."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    models = {n: build(n, workdir, args.device) for n in ("dense", "blr_moe")}
    b = batch(args, models["dense"][0].vocab_size, args.device)
    per_op = {}
    for n, (model, opt) in models.items():
        for _ in range(args.warmup):
            step(model, opt, b, args.device)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.profile_steps):
                step(model, opt, b, args.device)
        per_op[n] = {e.key: e.self_cpu_time_total / 1e3 / args.profile_steps for e in prof.key_averages()}
    ops = set(per_op["dense"]) | set(per_op["blr_moe"])
    rows = sorted(((op, per_op["dense"].get(op, 0.0), per_op["blr_moe"].get(op, 0.0)) for op in ops),
                  key=lambda r: r[2] - r[1], reverse=True)
    total = {n: sum(v.values()) for n, v in per_op.items()}
    return {"ms_per_step_total": total, "top_extra_ops": [
        {"op": op, "dense_ms": d, "blr_moe_ms": m} for op, d, m in rows[: args.profile_top]]}


def peak_memory(args, name: str, workdir: Path) -> float:
    """MiB of peak memory growth while training (separate process per model)."""
    cmd = [sys.executable, __file__, "--_memory_child", name, "--device", args.device, "--batch", str(args.batch),
           "--seconds", str(args.seconds), "--memory_steps", str(args.memory_steps), "--out", str(workdir / "x")]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(res.stdout.strip().splitlines()[-1])


def memory_child(args) -> None:
    workdir = Path(args.out).parent
    model, opt = build(args._memory_child, workdir, args.device)
    b = batch(args, model.vocab_size, args.device)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        # Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS,
        # so the peak below is the training steps' own, not the model build's.
        Path("/proc/self/clear_refs").write_text("5")
        base = _status_kib("VmRSS") * 1024
    for _ in range(args.memory_steps):
        step(model, opt, b, args.device)
    if args.device == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _status_kib("VmHWM") * 1024
    print((peak - base) / 2**20)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def rtf(args) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_rtf import build, load_audio, measure

    exp = Path(args.rtf_exp).resolve()
    audio, seconds = load_audio(Path(args.rtf_data).resolve(), args.rtf_utts)
    s2t = {"model": build(exp, "valid.loss.ave.pth", args.device)}
    out = {}
    for threads in dict.fromkeys([1, args.all_threads]):
        torch.set_num_threads(threads)
        out[str(threads)] = measure(s2t, audio, seconds, rounds=1)["model"]
    return {"rtf_by_threads": out, "utterances": len(audio), "audio_seconds": seconds, "model": str(exp)}


def profile_lines(r: dict) -> list:
    if not r.get("profile"):
        return []
    a = r["args"]
    pr = r["profile"]
    extra = pr["ms_per_step_total"]["blr_moe"] - pr["ms_per_step_total"]["dense"]
    lines = ["", f"Profile ({a['profile_steps']} steps each, torch.profiler self CPU time per step): "
              f"dense {pr['ms_per_step_total']['dense']:.0f} ms, BLR-MoE "
              f"{pr['ms_per_step_total']['blr_moe']:.0f} ms; ops adding the most time:", "",
              "| op | dense ms | BLR-MoE ms | extra ms | share of the extra |", "|---|---|---|---|---|"]
    for row in pr["top_extra_ops"]:
        d = row["blr_moe_ms"] - row["dense_ms"]
        lines.append(f"| `{row['op']}` | {row['dense_ms']:.1f} | {row['blr_moe_ms']:.1f} | {d:+.1f} | "
                     f"{d / extra:.0%} |" if extra > 0 else f"| `{row['op']}` | {row['dense_ms']:.1f} | "
                     f"{row['blr_moe_ms']:.1f} | {d:+.1f} | - |")
    return lines


def markdown(r: dict) -> str:
    a, t = r["args"], r.get("train")
    lines = [f"# Whole-model cost ({r['machine']}, torch {r['torch']}, device {a['device']})", ""]
    if t is None:
        return "\n".join(lines + profile_lines(r)) + "\n"
    lines += [
        f"Training step (forward + backward + Adam) on {a['batch']} x {a['seconds']} s, median of "
        f"{a['repeats']} after {a['warmup']} warm-up, interleaved; {r['train_threads']} threads.", "",
        "| model | what | params M | step s | audio s / s | throughput vs dense | peak memory growth MiB |",
        "|---|---|---|---|---|---|---|"]
    for n in CONFIGS:
        lines.append(f"| {n} | {DESCRIPTION[n]} | {t[n]['params_M']:.2f} | {t[n]['step_median_s']:.3f} | "
                     f"{t[n]['audio_s_per_s']:.1f} | {t[n]['throughput_ratio_vs_dense']:.3f}x | "
                     f"{r['memory_MiB'][n]:.0f} |")
    ratio = t["blr_moe"]["throughput_ratio_vs_dense"]
    lines += ["", f"BLR-MoE / dense training throughput: **{ratio:.3f}x** (median of per-repeat paired "
              f"ratios; ratio of the medians {t['blr_moe']['ratio_of_medians']:.3f}x; target >= 0.9x: "
              f"{'met' if min(ratio, t['blr_moe']['ratio_of_medians']) >= 0.9 else 'missed'}).", ""]
    if r.get("rtf"):
        lines += [f"Greedy-CTC decoding of {r['rtf']['utterances']} utterances ({r['rtf']['audio_seconds']:.0f} s) "
                  f"of {a['rtf_data']}, model {r['rtf']['model']}, batch 1:", "", "| threads | RTF |", "|---|---|"]
        for threads, v in r["rtf"]["rtf_by_threads"].items():
            lines.append(f"| {threads} | {v:.4f} ({'met' if v <= 0.03 else 'missed'} <= 0.03) |")
    lines += profile_lines(r)
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output path stem (.json/.md)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--memory_steps", type=int, default=3)
    p.add_argument("--all_threads", type=int, default=torch.get_num_threads())
    p.add_argument("--rtf_exp", default=str(ROOT / "egs/indic_synth/asr1/exp/asr_dense_conformer"))
    p.add_argument("--rtf_data", default=str(ROOT / "egs/indic_synth/asr1/dump/raw/test_id"))
    p.add_argument("--rtf_utts", type=int, default=60)
    p.add_argument("--profile_steps", type=int, default=3,
                   help="steps per model under torch.profiler (0: no profile)")
    p.add_argument("--profile_top", type=int, default=12, help="ops listed in the profile table")
    p.add_argument("--skip_throughput", action="store_true", help="only the profile (and RTF)")
    p.add_argument("--_memory_child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._memory_child:
        return memory_child(args)
    if args.repeats < 5:
        p.error("--repeats must be >= 5 for a meaningful median")
    out = Path(args.out).resolve()
    out = out.with_suffix("") if out.suffix in (".json", ".md") else out
    out.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench_model_"))
    report = {"args": vars(args), "torch": torch.__version__, "train_threads": torch.get_num_threads(),
              "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"}
    if not args.skip_throughput:
        report["train"] = throughput(args, workdir)
        report["memory_MiB"] = {n: peak_memory(args, n, workdir) for n in CONFIGS}
    if args.profile_steps > 0:
        report["profile"] = profile(args, workdir)
    if Path(args.rtf_exp, "valid.loss.ave.pth").exists() and not args.skip_throughput:
        report["rtf"] = rtf(args)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
