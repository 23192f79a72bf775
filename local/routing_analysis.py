#!/usr/bin/env python3
"""Stage 10: how the MoE modules route, per reference language, from decoding outputs.

Reads each test set's decode dir (``lang``, ``route_frac``, ``smear_gate`` written by
``espnet_plugins.bin.asr_inference``) and its data dir (``utt2lang``), and writes to
``--out``:

- ``routing.md``: per test set, the LID confusion matrix (reference language x router
  language, utterance counts) and the mean share of frames each language expert got
  per reference language (BLR-MoE), and the mean SMEAR gate per reference language;
- ``expert_usage_<test set>.png`` / ``smear_gate_<test set>.png``: the same as heat maps;
- ``routing.json``: all numbers.
Code-switched utterances (several languages in ``utt2lang``) are grouped as ``hi+te``.
"""
import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from espnet_plugins.data.kaldi import read_map  # noqa: E402


def _ref_groups(data_dir: Path) -> dict:
    return {u: "+".join(sorted(v.split())) for u, v in read_map(data_dir / "utt2lang").items()}


def _vectors(path: Path) -> dict:
    if not path.exists():
        return {}
    return {u: np.array([float(x) for x in v.split()]) for u, v in read_map(path).items()}


def analyse(data_dir: Path, decode_dir: Path, langs: list) -> dict:
    ref = _ref_groups(data_dir)
    result: dict = {"num_utts": len(ref)}
    hyp_lang = read_map(decode_dir / "lang") if (decode_dir / "lang").exists() else {}
    if hyp_lang:
        confusion: dict = defaultdict(lambda: defaultdict(int))
        for utt, group in ref.items():
            confusion[group][hyp_lang.get(utt, "<none>")] += 1
        result["lid_confusion"] = {g: dict(row) for g, row in sorted(confusion.items())}
    for name in ("route_frac", "smear_gate"):
        vectors = _vectors(decode_dir / name)
        if not vectors:
            continue
        by_group = defaultdict(list)
        for utt, vec in vectors.items():
            by_group[ref[utt]].append(vec)
        result[name] = {g: np.mean(v, axis=0).round(4).tolist() for g, v in sorted(by_group.items())}
    return result


def _markdown(name: str, res: dict, langs: list) -> str:
    out = [f"## {name} ({res['num_utts']} utterances)", ""]
    if "lid_confusion" in res:
        cols = sorted({c for row in res["lid_confusion"].values() for c in row}, key=lambda c: (c not in langs, c))
        out += ["LID confusion (rows: reference, columns: router; utterances)", "",
                "| ref | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        out += [f"| {g} | " + " | ".join(str(row.get(c, 0)) for c in cols) + " |" for g, row in res["lid_confusion"].items()]
        out.append("")
    for key, title, col in (("route_frac", "Share of frames per language expert", lambda i: langs[i] if i < len(langs) else str(i)),
                            ("smear_gate", "Mean SMEAR gate ḡ per expert", lambda i: f"e{i}")):
        if key in res:
            width = len(next(iter(res[key].values())))
            out += [title, "", "| ref | " + " | ".join(col(i) for i in range(width)) + " |", "|---|" + "---|" * width]
            out += [f"| {g} | " + " | ".join(f"{v:.2f}" for v in row) + " |" for g, row in res[key].items()]
            out.append("")
    return "\n".join(out)


def _heatmap(matrix: dict, path: Path, title: str, col_names: list) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(matrix)
    data = np.array([matrix[r] for r in rows])
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * data.shape[1], 1.0 + 0.45 * len(rows)))
    im = ax.imshow(data, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(data.shape[1]), col_names)
    ax.set_yticks(range(len(rows)), rows)
    for (i, j), v in np.ndenumerate(data):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="w" if v < 0.6 else "k", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--decode_dir", required=True, type=Path, help="exp/<model>/decode_<tag>")
    p.add_argument("--data_root", required=True, type=Path, help="dir holding the test sets' data dirs")
    p.add_argument("--test_sets", nargs="+", required=True)
    p.add_argument("--lang_list", type=Path, help="expert order (default: sorted languages seen)")
    p.add_argument("--out", required=True, type=Path)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    results, sections = {}, ["# Routing analysis", "", f"Decode dir: `{a.decode_dir}`", ""]
    for s in a.test_sets:
        data_dir = a.data_root / s
        langs = (a.lang_list.read_text().split() if a.lang_list else
                 sorted({x for v in read_map(data_dir / "utt2lang").values() for x in v.split()}))
        res = results[s] = analyse(data_dir, a.decode_dir / s, langs)
        sections.append(_markdown(s, res, langs))
        if "route_frac" in res:
            _heatmap(res["route_frac"], a.out / f"expert_usage_{s}.png", f"{s}: share of frames per expert", langs)
        if "smear_gate" in res:
            width = len(next(iter(res["smear_gate"].values())))
            _heatmap(res["smear_gate"], a.out / f"smear_gate_{s}.png", f"{s}: mean SMEAR gate", [f"e{i}" for i in range(width)])
    (a.out / "routing.md").write_text("\n".join(sections) + "\n", encoding="utf-8")
    (a.out / "routing.json").write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    print((a.out / "routing.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
