#!/usr/bin/env python3
"""Speed of the SMEAR-MoE projector against its baselines, forward + backward.

All cases run interleaved in one process (each repeat times every case once, so load
from other processes hits all cases alike) and report the median of ``--repeats``
timings after ``--warmup`` untimed steps, both wall-clock and the thread's CPU time
(with one thread all work, backward included, runs in the calling thread, so CPU time
does not count time lost to other processes on a shared machine):

- the full projector (downsampler + gate + experts) for every variant, relative to
  ``monolithic`` (target for ``smear`` with M=4: <= 1.05x);
- the experts alone (merged SMEAR MLP vs one plain MLP), which isolates the merge;
- SMEAR with M = 2, 4, 8, 16;
- time per utterance at batch 1 vs batch ``--batch``;
- a longer input (``--long-frames``): the merge costs O(B·M·P), independent of T;
- a torch.profiler breakdown of ``smear`` vs ``monolithic`` (top operators).

Writes ``bench_smear.json`` and ``bench_smear.md`` to ``--out``.

    nice python bench/bench_smear.py --out exp/bench_smear
"""
import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch

from espnet_plugins.asr.preencoder.smear_projector import SmearProjector


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=250)
    parser.add_argument("--long-frames", type=int, default=1000)
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--hidden-size", type=int, default=1024)
    parser.add_argument("--output-size", type=int, default=256)
    parser.add_argument("--experts", type=int, nargs="+", default=[2, 4, 8, 16])
    return parser


class Case:
    """One timed workload: ``step()`` runs forward + backward once."""

    def __init__(self, name: str, step: Callable[[], None]):
        self.name = name
        self.step = step
        self.wall: List[float] = []
        self.cpu: List[float] = []

    def median(self, clock: str = "wall") -> float:
        return statistics.median(self.wall if clock == "wall" else self.cpu)


def projector_step(
    proj: SmearProjector, xs: List[torch.Tensor], lengths: List[torch.Tensor]
):
    """Forward + backward of ``proj`` on each batch in ``xs``, like a training step."""

    def step() -> None:
        for x, n in zip(xs, lengths):
            proj.zero_grad(set_to_none=True)
            y, _, aux = proj.forward_with_aux(x, n)
            loss = y.sum()
            if "load_balance" in aux:
                loss = loss + aux["load_balance"]
            loss.backward()

    return step


def experts_step(proj: SmearProjector, x: torch.Tensor, merged: bool):
    """Forward + backward of the expert MLPs alone (no downsampler, fixed gate)."""
    gate = torch.softmax(torch.randn(x.size(0), proj.num_experts), dim=-1)
    gate.requires_grad_(True)

    def step() -> None:
        proj.zero_grad(set_to_none=True)
        experts = proj.experts
        y = experts.forward_merged(x, gate) if merged else experts.forward_expert(x, 0)
        y.sum().backward()

    return step


def build_cases(args) -> Dict[str, Case]:
    dims = dict(
        input_size=args.input_size,
        output_size=args.output_size,
        hidden_size=args.hidden_size,
    )
    batch, frames = args.batch, args.frames

    def data(b: int, t: int):
        return torch.randn(b, t, args.input_size), torch.full((b,), t)

    def proj(variant: str, experts: int = 4) -> SmearProjector:
        return SmearProjector(variant=variant, num_experts=experts, **dims)

    x, n = data(batch, frames)
    singles = [data(1, frames) for _ in range(batch)]
    x_long, n_long = data(batch, args.long_frames)
    mono, smear = proj("monolithic"), proj("smear")
    cases = [
        Case("monolithic", projector_step(mono, [x], [n])),
        Case("smear M=4", projector_step(smear, [x], [n])),
        Case("hard_topk M=4 k=1", projector_step(proj("hard_topk"), [x], [n])),
        Case("dense_ensemble M=4", projector_step(proj("dense_ensemble"), [x], [n])),
        Case("experts only: one MLP", experts_step(mono, x, merged=False)),
        Case("experts only: smear M=4", experts_step(smear, x, merged=True)),
        Case("monolithic batch 1", projector_step(mono, *zip(*singles))),
        Case("smear M=4 batch 1", projector_step(smear, *zip(*singles))),
        Case("monolithic long", projector_step(mono, [x_long], [n_long])),
        Case("smear M=4 long", projector_step(smear, [x_long], [n_long])),
    ]
    for m in args.experts:
        if m != 4:
            step = projector_step(proj("smear", m), [x], [n])
            cases.append(Case(f"smear M={m}", step))
    return {case.name: case for case in cases}


def run(cases: Dict[str, Case], repeats: int, warmup: int) -> None:
    for case in cases.values():
        for _ in range(warmup):
            case.step()
    for _ in range(repeats):
        for case in cases.values():
            wall, cpu = time.perf_counter(), time.thread_time()
            case.step()
            case.cpu.append(time.thread_time() - cpu)
            case.wall.append(time.perf_counter() - wall)


def profile(cases: Dict[str, Case], names: List[str], rows: int = 12) -> Dict[str, str]:
    """Self-CPU time per operator and input shape over 3 steps of each named case."""
    tables = {}
    for name in names:
        cpu = torch.profiler.ProfilerActivity.CPU
        with torch.profiler.profile(activities=[cpu], record_shapes=True) as prof:
            for _ in range(3):
                cases[name].step()
        tables[name] = prof.key_averages(group_by_input_shape=True).table(
            sort_by="self_cpu_time_total",
            row_limit=rows,
            max_name_column_width=24,
            max_shapes_column_width=60,
        )
    return tables


def report(args, cases: Dict[str, Case], tables: Dict[str, str]) -> Dict:
    long_t = args.long_frames
    # (row label, case, baseline case)
    layout = [(f"projector {v}", v, "monolithic") for v in (
        "monolithic", "smear M=4", "hard_topk M=4 k=1", "dense_ensemble M=4"
    )]
    layout += [
        (f"projector smear M={m}", f"smear M={m}", "monolithic")
        for m in args.experts
        if m != 4
    ]
    layout += [
        ("experts only: one MLP", "experts only: one MLP", "experts only: one MLP"),
        ("experts only: smear M=4", "experts only: smear M=4", "experts only: one MLP"),
        (f"projector monolithic T={long_t}", "monolithic long", "monolithic long"),
        (f"projector smear M=4 T={long_t}", "smear M=4 long", "monolithic long"),
    ]
    rows = []
    for label, name, base in layout:
        row = {"case": label}
        for clock in ("wall", "cpu"):
            row[f"{clock}_ms"] = cases[name].median(clock) * 1e3
            base_ms = cases[base].median(clock) * 1e3
            row[f"{clock}_ratio"] = row[f"{clock}_ms"] / base_ms
        rows.append(row)
    per_utt = {}
    for variant in ("monolithic", "smear M=4"):
        b1 = cases[f"{variant} batch 1"].median("cpu") / args.batch * 1e3
        bn = cases[variant].median("cpu") / args.batch * 1e3
        per_utt[variant] = {"batch_1_ms": b1, "batch_n_ms": bn, "ratio": bn / b1}

    shape = (
        f"B={args.batch}, T={args.frames}, {args.input_size} -> {args.hidden_size} -> "
        f"{args.output_size}, downsample_rate 1, {args.threads} thread(s), "
        f"median of {args.repeats} after {args.warmup} warm-up, forward + backward"
    )
    lines = [
        "# SMEAR-MoE projector speed",
        "",
        f"{shape}; torch {torch.__version__}, {platform.machine()}.",
        "",
        "| case | wall ms | vs baseline | CPU ms | vs baseline |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['case']} | {r['wall_ms']:.1f} | {r['wall_ratio']:.3f}x "
        f"| {r['cpu_ms']:.1f} | {r['cpu_ratio']:.3f}x |"
        for r in rows
    ]
    lines += [
        "",
        "Baseline: `monolithic` for projector rows, one plain MLP for expert rows,",
        f"`monolithic` at the same T for T={long_t}. Target: smear M=4 <= 1.05x.",
        "",
        f"| CPU ms per utterance | batch 1 | batch {args.batch} | ratio |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {name} | {v['batch_1_ms']:.2f} | {v['batch_n_ms']:.2f} | {v['ratio']:.3f} |"
        for name, v in per_utt.items()
    ]
    lines += ["", "## Where the time goes (torch.profiler, 3 steps)", ""]
    for name, table in tables.items():
        lines += [f"### {name}", "", "```", table.rstrip(), "```", ""]
    return {
        "config": {k: str(v) for k, v in vars(args).items()},
        "torch": torch.__version__,
        "rows": rows,
        "per_utterance_cpu_ms": per_utt,
        "samples_s": {n: {"wall": c.wall, "cpu": c.cpu} for n, c in cases.items()},
        "markdown": "\n".join(lines) + "\n",
    }


def main() -> None:
    args = get_parser().parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cases = build_cases(args)
    run(cases, args.repeats, args.warmup)
    tables = profile(cases, ["monolithic", "smear M=4"])
    result = report(args, cases, tables)
    args.out.mkdir(parents=True, exist_ok=True)
    markdown = result.pop("markdown")
    (args.out / "bench_smear.md").write_text(markdown, encoding="utf-8")
    with open(args.out / "bench_smear.json", "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print(markdown)


if __name__ == "__main__":
    main()
