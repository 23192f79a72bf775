#!/usr/bin/env python3
"""Cost of top-1 expert routing vs a dense layer of one expert's size (fwd + bwd).

Measures, side by side and interleaved (so that load from other processes hits every
variant alike), the median wall time of:

* ``ffn``: ESPnet ``PositionwiseFeedForward`` vs :class:`MoEFeedForward` (E experts,
  random top-1 routing) with the dispatch plan built beforehand (the encoder builds
  it once per forward and reuses it in every expert layer), and with the plan build
  timed too (the cost if a single layer had to build its own);
* ``attention``: ESPnet ``RelPositionMultiHeadedAttention`` vs the V/O expert version;
* ``block``: a dense Conformer block vs a BLR-MoE block (V/O attention experts and
  both macaron FFNs as experts), plan prebuilt.

Each is run with 1 thread and with all threads. Writes ``<out>.json`` and ``<out>.md``.

    python bench/bench_moe.py --out bench/results/bench_moe
"""
import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from espnet2.legacy.nets.pytorch_backend.conformer.swish import Swish
from espnet2.legacy.nets.pytorch_backend.transformer.attention import (
    RelPositionMultiHeadedAttention,
)
from espnet2.legacy.nets.pytorch_backend.transformer.embedding import RelPositionalEncoding
from espnet2.legacy.nets.pytorch_backend.transformer.positionwise_feed_forward import (
    PositionwiseFeedForward,
)

from espnet_plugins.asr.moe.dispatch import DispatchPlan
from espnet_plugins.asr.moe.encoder_block import EncoderBlock
from espnet_plugins.asr.moe.masked_convolution import MaskedConvolutionModule
from espnet_plugins.asr.moe.moe_attention import MoERelPositionMultiHeadedAttention
from espnet_plugins.asr.moe.moe_feed_forward import MoEFeedForward


def fwd_bwd(module_call, x, upstream):
    """One forward + backward: (wall seconds, process CPU seconds)."""
    x.grad = None
    wall, cpu = time.perf_counter(), time.process_time()
    module_call(x).backward(upstream)
    return time.perf_counter() - wall, time.process_time() - cpu


def build_cases(args):
    """{group: {variant: (params_module, call(x) -> out)}} plus the shared input."""
    torch.manual_seed(0)
    d, ff, e, heads = args.d, args.ff, args.experts, args.heads
    act = Swish()
    expert_index = torch.randint(0, e, (args.batch, args.time))
    plan = DispatchPlan.build(expert_index, e)
    x = torch.randn(args.batch, args.time, d, requires_grad=True)
    with torch.no_grad():
        _, pos_emb = RelPositionalEncoding(d, 0.0)(x)
    valid = torch.ones(args.batch, args.time, dtype=torch.bool)
    mask = valid.unsqueeze(1)

    dense_ffn = PositionwiseFeedForward(d, ff, args.dropout, act)
    moe_ffn = MoEFeedForward(e, d, ff, args.dropout, act)
    dense_att = RelPositionMultiHeadedAttention(heads, d, 0.0)
    moe_att = MoERelPositionMultiHeadedAttention(heads, d, 0.0, e, ("v", "o"))

    def block(moe):
        def ffn():
            if moe:
                return MoEFeedForward(e, d, ff, args.dropout, act)
            return PositionwiseFeedForward(d, ff, args.dropout, act)

        attention = (
            MoERelPositionMultiHeadedAttention(heads, d, 0.0, e, ("v", "o"))
            if moe
            else RelPositionMultiHeadedAttention(heads, d, 0.0)
        )
        conv = MaskedConvolutionModule(d, args.kernel, act)
        return EncoderBlock(d, attention, ffn(), ffn(), conv, args.dropout)

    dense_block, moe_block = block(False), block(True)
    cases = {
        "ffn": {
            "dense": lambda x: dense_ffn(x),
            "moe": lambda x: moe_ffn(x, plan),
            "moe+plan": lambda x: moe_ffn(x, DispatchPlan.build(expert_index, e)),
        },
        "attention": {
            "dense": lambda x: dense_att(x, x, x, pos_emb, mask),
            "moe": lambda x: moe_att(x, pos_emb, mask, plan),
        },
        "block": {
            "dense": lambda x: dense_block(x, pos_emb, valid),
            "moe": lambda x: moe_block(x, pos_emb, valid, plan),
        },
    }
    modules = [dense_ffn, moe_ffn, dense_att, moe_att, dense_block, moe_block]
    return cases, modules, x


def measure(args, threads):
    """Median times and paired ratios of every variant against its group's dense one.

    Variants of a group run back to back, in alternating order from one repeat to the
    next, and the ratio is the median over repeats of (variant / dense) from the same
    repeat: on a shared machine this cancels most of the drift in background load.
    """
    torch.set_num_threads(threads)
    cases, modules, x = build_cases(args)
    for m in modules:
        m.train()
    upstream = torch.randn_like(x)
    samples = {g: {v: [] for v in variants} for g, variants in cases.items()}
    for rep in range(args.warmup + args.repeats):
        for group, variants in cases.items():
            order = list(variants) if rep % 2 == 0 else list(variants)[::-1]
            for variant in order:
                for m in modules:
                    m.zero_grad(set_to_none=True)
                t = fwd_bwd(variants[variant], x, upstream)
                if rep >= args.warmup:
                    samples[group][variant].append(t)
    result = {}
    for group, variants in samples.items():
        dense = variants["dense"]
        result[group] = {
            variant: {
                f"{clock}_median_ms": 1e3 * statistics.median(t[i] for t in ts)
                for i, clock in enumerate(("wall", "cpu"))
            }
            for variant, ts in variants.items()
        }
        for variant, ts in variants.items():
            if variant == "dense":
                continue
            for i, clock in enumerate(("wall", "cpu")):
                result[group][variant][f"{clock}_ratio_vs_dense"] = statistics.median(
                    t[i] / d[i] for t, d in zip(ts, dense)
                )
    return result


def markdown(report):
    a = report["args"]
    lines = [
        f"# Top-1 MoE vs dense, fwd+bwd (median of {a['repeats']} after "
        f"{a['warmup']} warm-up)",
        "",
        f"E={a['experts']}, d={a['d']}, ff={a['ff']}, heads={a['heads']}, "
        f"B={a['batch']}, T={a['time']}, random top-1 routing, dropout "
        f"{a['dropout']}; torch {report['torch']}, {report['machine']}.",
        "",
        "| threads | case | dense wall ms | MoE wall ms | MoE / dense (wall) "
        "| MoE / dense (CPU time) |",
        "|---|---|---|---|---|---|",
    ]
    for threads, result in report["results"].items():
        for group, variants in result.items():
            dense = variants["dense"]
            for variant, r in variants.items():
                if variant == "dense":
                    continue
                lines.append(
                    f"| {threads} | {group} ({variant}) | "
                    f"{dense['wall_median_ms']:.1f} | {r['wall_median_ms']:.1f} | "
                    f"{r['wall_ratio_vs_dense']:.3f}x | "
                    f"{r['cpu_ratio_vs_dense']:.3f}x |"
                )
    lines += [
        "",
        "Ratios are medians of per-repeat paired ratios. `moe` reuses a prebuilt "
        "dispatch plan (as the encoder does across layers); `moe+plan` also builds it "
        "(sort + one host sync). CPU time is process time summed over threads.",
    ]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output path stem (.json/.md)")
    parser.add_argument("--experts", type=int, default=4)
    parser.add_argument("--d", type=int, default=256)
    parser.add_argument("--ff", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kernel", type=int, default=15)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--time", type=int, default=250)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1, torch.get_num_threads()],
        help="thread counts to measure (default: 1 and all)",
    )
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error("--repeats must be >= 5 for a meaningful median")

    report = {
        "args": vars(args),
        "torch": torch.__version__,
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads available",
        "results": {},
    }
    for threads in dict.fromkeys(args.threads):
        report["results"][str(threads)] = measure(args, threads)
    out = Path(args.out)
    out = out.with_suffix("") if out.suffix in (".json", ".md") else out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
