#!/usr/bin/env python3
"""Per-epoch (or per-logged-interval) statistics of trainings, from ESPnet's ``train.log``.

    local/training_curves.py --log "SMEAR=exp/asr_smear_conformer/train.log" \\
        --log "hard top-1=exp/asr_projector_hard_topk/train.log" \\
        --key gate_entropy --key cer_ctc --out exp/curves/gate_entropy

Reads the ``Nepoch results: [train] k=v, ... [valid] k=v, ...`` lines ESPnet writes at
the end of every epoch and writes ``<out>.md`` (one table per key: rows = epochs,
columns = run x train/valid) and ``<out>.png`` (one panel per key). ``--per_update``
reads the ``Nepoch:train:A-Bbatch: k=v`` interval lines instead (train only; x = updates
since the start, epochs laid end to end). A run given as ``LABEL=LOG+LOG+LOG`` (one log
per seed) is drawn as the mean with a ±1 sd band and tabulated as mean ± sd over the logs
that have the point. Typical keys:
``gate_entropy`` (SMEAR / hard top-k gate, nats; ln M = uniform, 0 = collapsed onto one
expert), ``gate_mean_e0``..., ``lid_acc``, ``loss_lid``, ``route_frac_<lang>``,
``cer_ctc`` (valid only), ``loss_ctc``. A key a log does not have is left out of its row.
"""
import argparse
import math
import re
import statistics
from pathlib import Path

EPOCH_LINE = re.compile(r"(\d+)epoch results: (.*)$")
INTERVAL_LINE = re.compile(r"(\d+)epoch:train:(\d+)-(\d+)batch: (.*)$")


def _stats(body: str) -> dict:
    stats = {}
    for item in body.split(","):
        key, eq, value = item.strip().partition("=")
        if not eq:
            continue
        try:
            stats[key] = float(value)
        except ValueError:
            continue  # e.g. "time=3 minutes and 49.82 seconds"
    return stats


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
            phases[phase.strip()] = _stats(body)
        epochs[int(m.group(1))] = phases
    return dict(sorted(epochs.items()))


def parse_intervals(path: Path) -> dict:
    """{update: {"train": {key: value}}} from the logged training intervals; update = the
    interval's last batch, counted from the start of training (each epoch's batches follow
    the previous epoch's last logged one). A resumed log's last entry of an interval wins."""
    per_epoch: dict = {}
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        m = INTERVAL_LINE.search(line)
        if m:
            per_epoch.setdefault(int(m.group(1)), {})[int(m.group(3))] = _stats(m.group(4))
    out, offset = {}, 0
    for epoch in sorted(per_epoch):
        for batch, stats in sorted(per_epoch[epoch].items()):
            out[offset + batch] = {"train": stats}
        offset += max(per_epoch[epoch])
    return out


def _seeds(log) -> list:
    """A run is one parsed log or a list of them (seeds)."""
    return log if isinstance(log, list) else [log]


def _point(logs: list, x, phase: str, key: str):
    """(mean, sd, n) over the logs that have the point; None if none has it."""
    vals = [lg[x][phase][key] for lg in logs if key in lg.get(x, {}).get(phase, {})]
    vals = [v for v in vals if not math.isnan(v)]
    if not vals:
        return None
    return statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals)


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.3f}"


def _cell(logs: list, x, phase: str, key: str) -> str:
    pt = _point(logs, x, phase, key)
    if pt is None:
        return "-"
    return _fmt(pt[0]) if pt[2] == 1 else f"{_fmt(pt[0])} ± {_fmt(pt[1])}"


def markdown(runs: dict, keys: list, x_name: str = "epoch") -> str:
    runs = {label: _seeds(log) for label, log in runs.items()}
    out = []
    for key in keys:
        cols = [(label, phase) for label, logs in runs.items() for phase in ("train", "valid")
                if any(key in lg[e].get(phase, {}) for lg in logs for e in lg)]
        if not cols:
            continue
        xs = sorted({e for logs in runs.values() for lg in logs for e in lg})
        seeds = {label: f", {len(logs)} seeds" if len(logs) > 1 else "" for label, logs in runs.items()}
        out += [f"### {key}", "", f"| {x_name} | " + " | ".join(f"{lbl} ({ph}{seeds[lbl]})" for lbl, ph in cols) + " |",
                "|---|" + "---|" * len(cols)]
        for e in xs:
            out.append(f"| {e} | " + " | ".join(_cell(runs[lbl], e, ph, key) for lbl, ph in cols) + " |")
        out.append("")
    return "\n".join(out)


def plot(runs: dict, keys: list, path: Path, x_name: str = "epoch") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {label: _seeds(log) for label, log in runs.items()}
    keys = [k for k in keys if any(k in p for logs in runs.values() for lg in logs
                                   for ph in lg.values() for p in ph.values())]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), squeeze=False)
    marker = "o" if x_name == "epoch" else None
    for ax, key in zip(axes[0], keys):
        for label, logs in runs.items():
            xs = sorted({e for lg in logs for e in lg})
            for phase, style in (("train", "-"), ("valid", "--")):
                pts = [(e, pt) for e in xs if (pt := _point(logs, e, phase, key)) is not None]
                if not pts:
                    continue
                x = [e for e, _ in pts]
                mean = [pt[0] for _, pt in pts]
                name = f"{label} ({phase}" + (f", mean ± sd of {len(logs)})" if len(logs) > 1 else ")")
                line, = ax.plot(x, mean, style, marker=marker, ms=3, label=name)
                if len(logs) > 1:
                    ax.fill_between(x, [m - pt[1] for m, (_, pt) in zip(mean, pts)],
                                    [m + pt[1] for m, (_, pt) in zip(mean, pts)], color=line.get_color(), alpha=0.2)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel(x_name)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log", action="append", required=True, metavar="LABEL=TRAIN_LOG[+TRAIN_LOG...]",
                   help="a run; several logs joined by + (seeds) give mean ± sd")
    p.add_argument("--key", action="append", required=True)
    p.add_argument("--out", required=True, type=Path, help="output stem: <out>.md and <out>.png")
    p.add_argument("--per_update", action="store_true",
                   help="x = updates, from the logged training intervals (train statistics only)")
    a = p.parse_args()
    runs = {}
    parse, x_name = (parse_intervals, "update") if a.per_update else (parse_log, "epoch")
    for spec in a.log:
        label, eq, paths = spec.partition("=")
        logs = []
        for path in paths.split("+") if eq else []:
            if not Path(path).is_file():
                p.error(f"--log {spec!r}: {path} is not a file; expected LABEL=TRAIN_LOG[+TRAIN_LOG...]")
            logs.append(parse(Path(path)))
            if not logs[-1]:
                p.error(f"{path}: no {'training interval' if a.per_update else 'Nepoch results'} lines "
                        "(has an interval or epoch finished?)")
        if not logs:
            p.error(f"--log {spec!r}: expected LABEL=TRAIN_LOG[+TRAIN_LOG...]")
        runs[label] = logs if len(logs) > 1 else logs[0]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    text = markdown(runs, a.key, x_name)
    a.out.with_suffix(".md").write_text(text + "\n", encoding="utf-8")
    plot(runs, a.key, a.out.with_suffix(".png"), x_name)
    print(text)


if __name__ == "__main__":
    main()
