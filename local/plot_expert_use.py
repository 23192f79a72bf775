#!/usr/bin/env python3
"""Expert use per language, in domain vs mismatched, for language-routed models over seeds.

For each model (``--row LABEL=DECODE_DIR[+DECODE_DIR...]``, one decode dir per seed, as
stage 8 wrote them with a ``route_frac`` file per test set) and each reference language:
the mean share of frames the router sent to each language expert, on ``--id`` and on the
``--ood`` sets pooled (utterances of every OOD set together), averaged over the seeds.
Code-switched utterances are left out (one reference language per row). Writes
``<out>.png`` (one row of two heat maps per model: ID | OOD) and ``<out>.md`` (the
own-language share, i.e. the diagonal, per language: ID, OOD, mean ± sd over seeds).

    local/plot_expert_use.py --data_root dump/raw --lang_list data/lang_list.txt \\
        --row "BLR-MoE=exp/asr_blr_moe_s1/decode_ctc_greedy+exp/asr_blr_moe_s2/decode_ctc_greedy" \\
        --ood test_ood_noise test_ood_reverb --out exp/expert_use
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from espnet_plugins.data.kaldi import read_map  # noqa: E402


def expert_share(data_root: Path, decode_dir: Path, sets: list[str], langs: list[str]) -> np.ndarray:
    """[reference language, expert] mean route_frac over the single-language utterances of
    ``sets`` (pooled); NaN rows for a language with no utterance."""
    sums, counts = np.zeros((len(langs), len(langs))), np.zeros(len(langs))
    for s in sets:
        ref = read_map(data_root / s / "utt2lang")
        path = decode_dir / s / "route_frac"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: decode {s} with a language-routed model (stage 8)")
        for utt, vec in read_map(path).items():
            lang = ref[utt].split()
            if len(lang) != 1 or lang[0] not in langs:
                continue
            i = langs.index(lang[0])
            sums[i] += np.array([float(x) for x in vec.split()])[: len(langs)]
            counts[i] += 1
    with np.errstate(invalid="ignore"):
        return sums / counts[:, None]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--row", action="append", required=True, metavar="LABEL=DECODE_DIR[+DECODE_DIR...]")
    p.add_argument("--data_root", type=Path, required=True)
    p.add_argument("--lang_list", type=Path, required=True, help="expert order, one language per line")
    p.add_argument("--id", default="test_id")
    p.add_argument("--ood", nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True, help="output path stem (.png/.md)")
    a = p.parse_args(argv)
    langs = a.lang_list.read_text(encoding="utf-8").split()
    models = {}
    for spec in a.row:
        label, eq, dirs = spec.partition("=")
        if not eq:
            p.error(f"--row {spec!r}: expected LABEL=DECODE_DIR[+DECODE_DIR...]")
        runs = [Path(d) for d in dirs.split("+")]
        models[label] = {"ID": [expert_share(a.data_root, d, [a.id], langs) for d in runs],
                         "OOD": [expert_share(a.data_root, d, a.ood, langs) for d in runs]}

    lines = [f"Own-language expert share (mean over seeds of the share of frames the router sent to the "
             f"utterance's own language expert); ID = {a.id}, OOD = {' + '.join(a.ood)} pooled.", "",
             "| model | seeds | " + " | ".join(f"{lang} ID | {lang} OOD" for lang in langs) + " |",
             "|---|---|" + "---|---|" * len(langs)]
    for label, m in models.items():
        cells = []
        for i in range(len(langs)):
            for part in ("ID", "OOD"):
                v = [float(run[i, i]) for run in m[part]]
                cells.append(f"{statistics.mean(v):.2f}" + (f" ± {statistics.stdev(v):.2f}" if len(v) > 1 else ""))
        lines.append(f"| {label} | {len(m['ID'])} | " + " | ".join(cells) + " |")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(models), 2, figsize=(7.5, 2.6 * len(models)), squeeze=False)
    for r, (label, m) in enumerate(models.items()):
        for c, part in enumerate(("ID", "OOD")):
            data = np.mean(m[part], axis=0)
            ax = axes[r, c]
            ax.imshow(data, vmin=0, vmax=1, cmap="viridis", aspect="auto")
            ax.set_xticks(range(len(langs)), [f"{x} expert" for x in langs], fontsize=7)
            ax.set_yticks(range(len(langs)), langs, fontsize=8)
            for (i, j), v in np.ndenumerate(data):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="w" if v < 0.6 else "k", fontsize=7)
            ax.set_title(f"{label}: {part} ({len(m[part])} seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(a.out.with_suffix(".png"), dpi=100)
    plt.close(fig)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
