#!/usr/bin/env python3
"""Per-epoch statistics of one or more trainings, from ESPnet's ``train.log``.

    local/training_curves.py --log "SMEAR=exp/asr_smear_conformer/train.log" \\
        --log "hard top-1=exp/asr_projector_hard_topk/train.log" \\
        --key gate_entropy --key cer_ctc --out exp/curves/gate_entropy

Reads the ``Nepoch results: [train] k=v, ... [valid] k=v, ...`` lines ESPnet writes at
the end of every epoch and writes ``<out>.md`` (one table per key: rows = epochs,
columns = run x train/valid) and ``<out>.png`` (one panel per key). Typical keys:
``gate_entropy`` (SMEAR / hard top-k gate, nats; ln M = uniform, 0 = collapsed onto one
expert), ``gate_mean_e0``..., ``lid_acc``, ``loss_lid``, ``route_frac_<lang>``,
``cer_ctc`` (valid only), ``loss_ctc``. A key a log does not have is left out of its row.
"""
import argparse
import math
import re
from pathlib import Path

EPOCH_LINE = re.compile(r"(\d+)epoch results: (.*)$")


def parse_log(path: Path) -> dict:
    """{epoch: {"train": {key: value}, "valid": {...}}}; a resumed log's last entry wins."""
    epochs: dict = {}
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        m = EPOCH_LINE.search(line)
        if not m:
            continue
        phases: dict = {}
        for part in m.group(2).split("[")[1:]:
            phase, _, body = part.partition("]")
            stats = {}
            for item in body.split(","):
                key, eq, value = item.strip().partition("=")
                if not eq:
                    continue
                try:
                    stats[key] = float(value)
                except ValueError:
                    continue  # e.g. "time=3 minutes and 49.82 seconds"
            phases[phase.strip()] = stats
        epochs[int(m.group(1))] = phases
    return dict(sorted(epochs.items()))


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.3f}"


def markdown(runs: dict, keys: list) -> str:
    out = []
    for key in keys:
        cols = [(label, phase) for label, log in runs.items() for phase in ("train", "valid")
                if any(key in log[e].get(phase, {}) for e in log)]
        if not cols:
            continue
        epochs = sorted({e for log in runs.values() for e in log})
        out += [f"### {key}", "", "| epoch | " + " | ".join(f"{lbl} ({ph})" for lbl, ph in cols) + " |",
                "|---|" + "---|" * len(cols)]
        for e in epochs:
            out.append(f"| {e} | " + " | ".join(_fmt(runs[lbl].get(e, {}).get(ph, {}).get(key)) for lbl, ph in cols) + " |")
        out.append("")
    return "\n".join(out)


def plot(runs: dict, keys: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in keys if any(k in p for log in runs.values() for ph in log.values() for p in ph.values())]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for label, log in runs.items():
            for phase, style in (("train", "-"), ("valid", "--")):
                pts = [(e, s[phase][key]) for e, s in log.items() if key in s.get(phase, {})]
                if pts:
                    ax.plot(*zip(*pts), style, marker="o", ms=3, label=f"{label} ({phase})")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log", action="append", required=True, metavar="LABEL=TRAIN_LOG")
    p.add_argument("--key", action="append", required=True)
    p.add_argument("--out", required=True, type=Path, help="output stem: <out>.md and <out>.png")
    a = p.parse_args()
    runs = {}
    for spec in a.log:
        label, eq, path = spec.partition("=")
        if not eq or not Path(path).is_file():
            p.error(f"--log {spec!r}: expected LABEL=PATH of an existing train.log")
        runs[label] = parse_log(Path(path))
        if not runs[label]:
            p.error(f"{path}: no 'Nepoch results' lines (has an epoch finished?)")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    text = markdown(runs, a.key)
    a.out.with_suffix(".md").write_text(text + "\n", encoding="utf-8")
    plot(runs, a.key, a.out.with_suffix(".png"))
    print(text)


if __name__ == "__main__":
    main()
