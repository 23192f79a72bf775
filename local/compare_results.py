#!/usr/bin/env python3
"""The accuracy table: every model, mean ± sd over its seeds, from the ``scores.json`` stage 9 wrote.

    local/compare_results.py --results_md RESULTS.md --data_root dump/raw --ood_exclude test_ood_tel \\
        --row "dense conformer=exp/asr_dense_s1+exp/asr_dense_s2+exp/asr_dense_s3" \\
        --row "LR-MoE=exp/asr_lr_moe_s1+exp/asr_lr_moe_s2+exp/asr_lr_moe_s3" \\
        --row "BLR-MoE=exp/asr_blr_moe_s1+exp/asr_blr_moe_s2+exp/asr_blr_moe_s3" \\
        --row "BLR-MoE + correct prior (hard)=exp/asr_blr_moe_s1:ctc_greedy_prior_hard_oracle" \\
        --relative "BLR-MoE|LR-MoE|all=-16.09,ood=-19.09,id=-3.98|BLR-MoE paper, Table 2"

A row is ``label=EXP_DIR[+EXP_DIR...][:DECODE_TAG]`` (default tag ``ctc_greedy``), one exp
dir per training seed; its figures come from ``EXP_DIR/decode_<tag>/scores.json``. Each cell
is the mean ± sd (sample sd) over the row's runs of that run's rate. Columns: seeds,
parameters (total / active per frame: one expert per frame in BLR/LR-MoE expert layers, one
merged expert for SMEAR, k for hard top-k, all for the dense ensemble; from the first run's
``config.yaml`` + ``valid.loss.ave.pth``), CER and WER on ``test_id``, CER on each
``test_ood_*`` set (one column per mismatched condition) and on all of them pooled
(``--ood_exclude`` leaves sets out of the pool), ``test_cs`` CER, LID accuracy on test_id and
pooled OOD, and the greedy-decoding RTF on ``test_id``. Test sets a row was not decoded on
show ``-``.

``--relative A|B|SCOPE[=PCT],...|TEXT`` compares row A with row B on each scope (``id``,
``ood``, ``all`` = id + ood, or a test set's name): the relative CER change (negative = A
better) with, given ``--data_root``, a bootstrap over seeds and utterances
(``local/significance.py``: 95 % interval, one-sided p) and a verdict on the claimed PCT.
The section is replaced on rerun (``local/score.py``'s markers); hand-written text around
it is kept.

Exp dirs are not kept in git; ``--from_results_md RESULTS.md`` rebuilds the same table from
the stage-9 sections of RESULTS.md (error counts from their sclite-style tables, LID from
the rounded percentages, parameters from ``model size`` and the run's config), so anyone
can regenerate it from a clone (relative changes then without a bootstrap, which needs
the hypotheses); rows then name runs as in the headings: ``label=blr_moe``,
``label=blr_moe+blr_moe_seed2``, ``label=blr_moe:ctc_greedy_prior_hard_oracle``.
"""
from __future__ import annotations

import argparse
import inspect
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Optional

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from score import _marker, environment, update_results_md  # noqa: E402

LANGS = ("hi", "mr", "ta", "te")
TAG = "Accuracy table"


def _pool(sets: list[dict]) -> dict:
    """Sum the error counts of several test sets (and of their languages)."""
    def add(acc, part):
        for unit in ("words", "chars"):
            for k, v in part[unit].items():
                acc[unit][k] = acc[unit].get(k, 0) + v
        if part.get("lid"):
            acc["lid"]["correct"] += part["lid"]["correct"]
            acc["lid"]["total"] += part["lid"]["total"]

    out = {"words": {}, "chars": {}, "lid": {"correct": 0, "total": 0}, "per_lang": {}}
    for s in sets:
        add(out, s)
        for lang, part in s.get("per_lang", {}).items():
            add(out["per_lang"].setdefault(lang, {"words": {}, "chars": {}, "lid": {"correct": 0, "total": 0}}), part)
    return out


def _rate(counts: dict, unit: str) -> Optional[float]:
    c = counts.get(unit, {})
    return 100.0 * c["err"] / c["ref"] if c.get("ref") else None


def _lid(counts: dict) -> Optional[float]:
    lid = counts.get("lid") or {}
    return 100.0 * lid["correct"] / lid["total"] if lid.get("total") else None


def _fmt(x: Optional[float], digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def inactive_params(modules) -> float:
    """Parameters a frame does not use: the unselected experts of language-routed layers
    (one of E per frame), and what a SMEAR/top-k projector does not merge or select."""
    from espnet_plugins.asr.moe.expert_linear import ExpertLinear
    from espnet_plugins.asr.preencoder.smear_projector import SmearProjector

    inactive = 0.0
    for module in modules:
        for m in module.modules():
            if isinstance(m, ExpertLinear):
                inactive += sum(p.numel() for p in m.parameters()) * (m.num_experts - 1) / m.num_experts
            elif isinstance(m, SmearProjector):
                inactive += m.num_params_total - m.num_params_active
    return inactive


def param_counts(exp: Path) -> tuple[float, float]:
    """(total, active per frame) parameters in millions, from the trained model."""
    from espnet_plugins.tasks.asr import MoEASRTask

    model, _ = MoEASRTask.build_model_from_file(exp / "config.yaml", exp / "valid.loss.ave.pth", "cpu")
    total = sum(p.numel() for p in model.parameters())
    return total / 1e6, (total - inactive_params([model])) / 1e6


# --- reading the figures back from RESULTS.md (exp dirs are not kept in git) ----------
def results_md_sections(path: Path) -> dict[str, str]:
    """``{"<run> / <decode tag>": section text}`` of every stage-9 section in RESULTS.md."""
    # score.py's markers up to the tag: "<!-- local/score.py section begin: "
    begin, end = (_marker("", which).removesuffix(" -->") for which in ("begin", "end"))
    sections, name, lines = {}, None, []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(begin):
            name, lines = line[len(begin):].removesuffix(" -->"), []
        elif line.startswith(end) and name is not None:
            sections[name] = "\n".join(lines)
            name = None
        elif name is not None:
            lines.append(line)
    return sections


def _md_rows(text: str, first_cell: str) -> list[dict[str, str]]:
    """Rows of the markdown table whose header starts with ``|first_cell|``; repeated
    column names (the sclite table's Sub/Del/Ins) get a ``_2`` suffix."""
    rows, header = [], None
    for line in text.splitlines():
        if line.startswith(f"|{first_cell}|"):
            header = []
            for cell in line.strip("|").split("|"):
                header.append(cell if cell not in header else f"{cell}_2")
        elif header is not None and line.startswith("|") and not line.startswith("|---"):
            rows.append(dict(zip(header, line.strip("|").split("|"))))
        elif header is not None and not line.startswith("|"):
            header = None
    return rows


def scores_from_section(text: str) -> dict:
    """The part of ``scores.json`` this script reads, rebuilt from a stage-9 section:
    error counts from its sclite-style table, LID and RTF from its summary table."""
    test_sets: dict = {}
    for row in _md_rows(text, "dataset"):
        name, _, lang = row["dataset"].partition("/")
        counts = {
            "words": {"err": int(row["Sub"]) + int(row["Del"]) + int(row["Ins"]), "ref": int(row["Wrd"])},
            "chars": {"err": int(row["Sub_2"]) + int(row["Del_2"]) + int(row["Ins_2"]), "ref": int(row["Chr"])},
        }
        entry = test_sets.setdefault(name, {"per_lang": {}})
        if lang:
            entry["per_lang"][lang] = counts
        else:
            entry.update(counts)
    for row in _md_rows(text, "test set"):
        entry = test_sets.get(row["test set"])
        if entry is None:
            continue
        if row.get("LID acc", "-") not in ("-", ""):  # correct count back from the rounded %
            total = int(row["#utt"])
            entry["lid"] = {"correct": round(float(row["LID acc"]) * total / 100), "total": total}
        if row.get("RTF", "-") not in ("-", ""):
            entry["rtf"] = {"rtf": float(row["RTF"])}
    return test_sets


def param_counts_from_section(text: str, langs: list[str]) -> tuple[float, float]:
    """(total, active per frame) in millions: the total is the section's ``model size``;
    the inactive expert weights are counted on the modules its config builds (they do
    not depend on the vocabulary or on weights)."""
    from espnet_plugins.tasks.asr import MoEASRTask

    total = int(re.search(r"model size: `[^(]*\(([\d,]+)\)`", text).group(1).replace(",", ""))
    config = Path(re.search(r"- config: `([^`]*)`", text).group(1))
    if not config.is_file():  # written on another checkout: the same file in this one
        config = Path(__file__).resolve().parents[1] / "conf" / config.name
    conf = yaml.safe_load(config.read_text())
    choices = {c.name: c for c in MoEASRTask.class_choices_list}
    modules = []
    input_size = (conf.get("frontend_conf") or {}).get("n_mels", 80)
    if conf.get("preencoder"):
        pre = choices["preencoder"].get_class(conf["preencoder"])(**(conf.get("preencoder_conf") or {}))
        modules.append(pre)
        input_size = pre.output_size()
    enc_conf = dict(conf.get("encoder_conf") or {})
    enc_class = choices["encoder"].get_class(conf["encoder"])
    if "langs" in inspect.signature(enc_class.__init__).parameters:
        enc_conf.setdefault("langs", langs)
    modules.append(enc_class(input_size=input_size, **enc_conf))
    return total / 1e6, (total - inactive_params(modules)) / 1e6


_SOURCE: dict = {}  # "results_md": {section name: text} when reading RESULTS.md


def load_runs(exps: tuple[Path, ...], tag: str) -> list[dict]:
    if "results_md" in _SOURCE:
        return [scores_from_section(_SOURCE["results_md"][f"{exp} / {tag}"]) for exp in exps]
    return [json.loads((exp / f"decode_{tag}" / "scores.json").read_text())["test_sets"] for exp in exps]


def _mean_sd(values: list) -> str:
    """``mean ± sd`` over runs (sample sd), the value alone for one run, ``-`` for none."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def ood_sets(runs: list[dict], exclude: tuple[str, ...] = ()) -> list[str]:
    """The ``test_ood_*`` sets of the runs, in the order scores.json lists them."""
    names: list[str] = []
    for scores in runs:
        names += [k for k in scores if k.startswith("test_ood_") and k not in names and k not in exclude]
    return names


def run_figures(scores: dict, ood_pool: list[str]) -> dict:
    """One run's rates (%): CER/WER per test set, ``ood`` = ``ood_pool`` pooled, LID, RTF."""
    fig: dict = {"cer": {}, "wer": {}, "id_lang": {}}
    for name, part in scores.items():
        fig["cer"][name], fig["wer"][name] = _rate(part, "chars"), _rate(part, "words")
    pool = [scores[k] for k in ood_pool if k in scores]
    ood = _pool(pool) if pool else {}
    fig["cer"]["ood"], fig["wer"]["ood"] = _rate(ood, "chars"), _rate(ood, "words")
    test_id = scores.get("test_id") or {}
    fig["id_lang"] = {lang: _rate(part, "chars") for lang, part in test_id.get("per_lang", {}).items()}
    fig["lid_id"], fig["lid_ood"] = _lid(test_id), _lid(ood)
    fig["rtf"] = test_id.get("rtf", {}).get("rtf")
    return fig


def row_figures(exps: tuple[Path, ...], tag: str, ood_exclude: tuple[str, ...] = ()) -> dict:
    """Per-run figures of a row (one run per seed) and the OOD sets they cover."""
    runs = load_runs(exps, tag)
    pool = ood_sets(runs, ood_exclude)
    return {"runs": [run_figures(scores, pool) for scores in runs], "ood_sets": ood_sets(runs)}


def rows_figures(rows: list[tuple[str, tuple[Path, ...], str]], ood_exclude: tuple[str, ...] = ()) -> dict:
    """{label: :func:`row_figures`} for every row: read once, shared by the tables and the plot."""
    return {label: row_figures(exps, tag, ood_exclude) for label, exps, tag in rows}


def _conditions(figs: dict) -> list[str]:
    """The mismatched conditions (test_ood_* sets) any row was decoded on, in first-seen order."""
    conditions: list[str] = []
    for f in figs.values():
        conditions += [k for k in f["ood_sets"] if k not in conditions]
    return conditions


def rtf_alone(path: Path) -> dict[Path, float]:
    """``bench/bench_rtf.py``'s json -> {resolved exp dir: RTF measured alone}; relative exp
    dirs are the repository root's (where bench_rtf.py is run)."""
    data = json.loads(Path(path).read_text())
    root = Path(__file__).resolve().parents[1]
    return {(root / exp).resolve(): data["rtf"][label] for label, exp in data["exps"].items()}


def table(rows: list[tuple[str, tuple[Path, ...], str]], params: dict,
          ood_exclude: tuple[str, ...] = (), alone: Optional[dict] = None, figs: Optional[dict] = None) -> str:
    """The comparison: one row per model, each cell the mean ± sd over the row's runs.
    ``alone`` ({exp dir: RTF}, :func:`rtf_alone`) adds an RTF column measured alone for the
    rows whose default decoding (``ctc_greedy``) of one of their runs it has. ``figs``:
    :func:`rows_figures` of the same rows, if already read."""
    figs = figs or rows_figures(rows, ood_exclude)
    conditions = _conditions(figs)
    head = (["model", "seeds", "params M (total / active)", "test_id CER", "test_id WER"]
            + [k.removeprefix("test_ood_") for k in conditions] + ["OOD pooled", "cs", "LID ID", "LID OOD", "RTF"]
            + (["RTF alone"] if alone is not None else []))
    lines = ["|" + "|".join(head) + "|", "|" + "|".join("---" for _ in head) + "|"]
    for label, exps, tag in rows:
        runs = figs[label]["runs"]
        total, active = params[exps[0]]
        cells = [label, str(len(runs)), f"{total:.2f} / {active:.2f}",
                 _mean_sd([r["cer"].get("test_id") for r in runs]), _mean_sd([r["wer"].get("test_id") for r in runs])]
        cells += [_mean_sd([r["cer"].get(k) for r in runs]) for k in conditions]
        cells += [_mean_sd([r["cer"]["ood"] for r in runs]), _mean_sd([r["cer"].get("test_cs") for r in runs]),
                  _mean_sd([r["lid_id"] for r in runs]), _mean_sd([r["lid_ood"] for r in runs])]
        rtfs = [r["rtf"] for r in runs if r["rtf"] is not None]
        cells.append(_fmt(statistics.mean(rtfs), 4) if rtfs else "-")
        if alone is not None:
            hit = [alone[e.resolve()] for e in exps if e.resolve() in alone] if tag == "ctc_greedy" else []
            cells.append(_fmt(hit[0], 4) if hit else "-")
        lines.append("|" + "|".join(cells) + "|")
    return "\n".join(lines) + "\n"


def seed_plot(rows: list[tuple[str, tuple[Path, ...], str]], path: Path,
              ood_exclude: tuple[str, ...] = (), figs: Optional[dict] = None) -> None:
    """CER of every seed of every row (a dot per seed, a bar at the mean): test_id and OOD pooled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = {label: f["runs"] for label, f in (figs or rows_figures(rows, ood_exclude)).items()}
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.35 * len(rows) + 1.2), sharey=True)
    seeds = set()
    for ax, key, title in ((axes[0], "test_id", "test_id CER %"), (axes[1], "ood", "OOD pooled CER %")):
        for y, (label, exps, _) in enumerate(rows):
            vals = [r["cer"].get(key) for r in figs[label]]
            for exp, v in zip(exps, vals):
                if v is not None:
                    m = re.search(r"_s(\d+)(?:_|$)", exp.name)
                    seed = int(m.group(1)) if m else 0  # 0: a dir not named by its seed
                    seeds.add(seed)
                    ax.plot(v, y, "o", ms=4, color=f"C{seed % 10}", alpha=0.8)
            vals = [v for v in vals if v is not None]
            if vals:
                ax.plot([statistics.mean(vals)] * 2, [y - 0.3, y + 0.3], "k-", lw=1.5)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(rows)), [label for label, _, _ in rows], fontsize=7)
    axes[0].invert_yaxis()
    for seed in sorted(seeds):
        axes[1].plot([], [], "o", color=f"C{seed % 10}", label=f"seed {seed}" if seed else "run")
    axes[1].plot([], [], "k-", label="mean")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def language_table(rows: list[tuple[str, tuple[Path, ...], str]], figs: Optional[dict] = None) -> str:
    """test_id CER per language, mean ± sd over the row's runs."""
    lines = ["|model|" + "|".join(LANGS) + "|", "|---|" + "|".join("---" for _ in LANGS) + "|"]
    figs = figs or rows_figures(rows)
    for label, _, _ in rows:
        runs = figs[label]["runs"]
        lines.append(f"|{label}|" + "|".join(_mean_sd([r["id_lang"].get(lang) for r in runs]) for lang in LANGS) + "|")
    return "\n".join(lines) + "\n"


def wer_table(rows: list[tuple[str, tuple[Path, ...], str]], ood_exclude: tuple[str, ...] = (),
              figs: Optional[dict] = None) -> str:
    """WER per test set, mean ± sd over the row's runs: test_id, each mismatched condition,
    OOD pooled and code-switched (the columns of :func:`table`, in words)."""
    figs = figs or rows_figures(rows, ood_exclude)
    conditions = _conditions(figs)
    head = ["model", "seeds", "test_id"] + [k.removeprefix("test_ood_") for k in conditions] + ["OOD pooled", "cs"]
    lines = ["|" + "|".join(head) + "|", "|" + "|".join("---" for _ in head) + "|"]
    for label, _, _ in rows:
        runs = figs[label]["runs"]
        cells = [label, str(len(runs))] + [_mean_sd([r["wer"].get(k) for r in runs])
                                           for k in ["test_id", *conditions, "ood", "test_cs"]]
        lines.append("|" + "|".join(cells) + "|")
    return "\n".join(lines) + "\n"


def scope_sets(scope: str, available: list[str], ood_exclude: tuple[str, ...]) -> list[str]:
    """Test sets a claim's scope covers: ``id`` (test_id), ``ood`` (every test_ood_* set but
    the excluded), ``all`` (both), or one test set's name."""
    ood = [k for k in available if k.startswith("test_ood_") and k not in ood_exclude]
    sets = {"id": ["test_id"], "ood": ood, "all": ["test_id"] + ood}.get(scope, [scope])
    missing = [k for k in sets if k not in available]
    if missing or not sets:
        raise ValueError(f"scope {scope!r}: test sets {missing or sets} were not decoded by both systems")
    return sets


def parse_claim(spec: str) -> tuple[str, str, dict, str]:
    """``A|B|SCOPE=PCT,SCOPE[=PCT]...|TEXT`` -> (A, B, {scope: claimed % or None}, text).
    PCT is a value (``-16.09``) or a range ``LOW..HIGH`` (``-7.3..-3.2``: a paper's gains over
    several conditions), kept as a (low, high) tuple."""
    parts = spec.split("|")
    if len(parts) < 3:
        raise ValueError(f"--relative {spec!r}: expected A|B|SCOPE[=PCT],...[|TEXT], e.g. "
                         "'BLR-MoE|LR-MoE|all=-16.09,ood=-19.09,id=-3.98|BLR-MoE paper'")
    scopes: dict = {}
    for item in parts[2].split(","):
        scope, eq, pct = item.strip().partition("=")
        if not eq:
            scopes[scope] = None
        elif ".." in pct:
            low, _, high = pct.partition("..")
            scopes[scope] = tuple(sorted((float(low), float(high))))
        else:
            scopes[scope] = float(pct)
    return parts[0], parts[1], scopes, "|".join(parts[3:])


def relative_table(specs: list[str], rows: dict[str, tuple[tuple[Path, ...], str]], data_root: Optional[Path],
                   ood_exclude: tuple[str, ...] = (), resamples: int = 1000) -> str:
    """Relative CER change of A against B per scope; with ``data_root`` (exp dirs, not
    RESULTS.md) a bootstrap over seeds and utterances gives its 95 % interval, p-value and
    the verdict on the claimed change (``local/significance.py``); without, the point value."""
    import numpy as np
    from significance import relative_change, utterance_errors, verdict

    cache: dict = {}

    def errors(exps: tuple[Path, ...], tag: str, name: str):
        """Per-utterance errors of a row on one set, scored once however many claims use it."""
        if (exps, tag, name) not in cache:
            cache[exps, tag, name] = utterance_errors(data_root / name, [e / f"decode_{tag}" / name for e in exps])
        return cache[exps, tag, name]

    lines = ["|A vs B|test sets|CER A|CER B|A vs B (95 % interval)|p(A not better)|claimed|verdict|source|",
             "|---|---|---|---|---|---|---|---|---|"]
    for spec in specs:
        a, b, scopes, text = parse_claim(spec)
        (exps_a, tag_a), (exps_b, tag_b) = rows[a], rows[b]
        runs_a, runs_b = load_runs(exps_a, tag_a), load_runs(exps_b, tag_b)
        available = [k for k in runs_a[0] if all(k in r for r in runs_a + runs_b)]
        for scope, claimed in scopes.items():
            sets = scope_sets(scope, available, ood_exclude)
            claimed_cell = ("-" if claimed is None else f"{claimed[0]:+.2f}..{claimed[1]:+.2f} %"
                            if isinstance(claimed, tuple) else f"{claimed:+.2f} %")
            if data_root is None:
                cer = [100 * sum(r[k]["chars"]["err"] for r in runs for k in sets)
                       / sum(r[k]["chars"]["ref"] for r in runs for k in sets) for runs in (runs_a, runs_b)]
                rel = f"{100 * (cer[0] - cer[1]) / cer[1]:+.1f} %"
                cells = [f"{cer[0]:.2f}", f"{cer[1]:.2f}", rel, "-", claimed_cell, "- (no bootstrap from RESULTS.md)"]
            else:
                errs_a, errs_b, refs = [], [], []
                for k in sets:
                    ea, ref = errors(exps_a, tag_a, k)
                    eb, _ = errors(exps_b, tag_b, k)
                    errs_a.append(ea), errs_b.append(eb), refs.append(ref)
                res = relative_change(np.concatenate(errs_a, 1), np.concatenate(errs_b, 1),
                                      np.concatenate(refs), resamples)
                cells = [f"{res['cer_a']:.2f}", f"{res['cer_b']:.2f}",
                         f"{res['relative_pct']:+.1f} % ({res['ci95'][0]:+.1f}, {res['ci95'][1]:+.1f})",
                         f"{res['p_a_not_better']:.3f}", claimed_cell, verdict(res, claimed)]
            lines.append("|" + "|".join([f"{a} vs {b}", scope] + cells + [text]) + "|")
    return "\n".join(lines) + "\n"


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--row", action="append", required=True, metavar="LABEL=EXP_DIR[+EXP_DIR...][:DECODE_TAG]")
    p.add_argument("--relative", action="append", default=[], metavar="A|B|SCOPE[=PCT],...[|TEXT]",
                   help="relative CER change of row A against row B on each scope (id, ood, all or a test "
                        "set), next to the change a paper claims (PCT, in %%) and its source (TEXT)")
    p.add_argument("--data_root", type=Path, default=None,
                   help="references of the test sets (e.g. dump/raw): --relative then bootstraps over seeds "
                        "and utterances (local/significance.py) and gives each claim a verdict")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap draws per --relative scope")
    p.add_argument("--ood_exclude", default="", help="comma-separated test_ood_* sets left out of the pooled "
                   "OOD column and the 'ood'/'all' scopes (e.g. a condition every model fails: test_ood_tel)")
    p.add_argument("--per_lang", action="store_true", help="add a table of test_id CER per language")
    p.add_argument("--results_md", help="replace the comparison section in this RESULTS.md")
    p.add_argument("--note", default="", help="text placed under the tables")
    p.add_argument("--rtf_alone", type=Path, default=None, metavar="JSON",
                   help="bench/bench_rtf.py's json: an 'RTF alone' column for the rows whose runs it measured")
    p.add_argument("--seed_plot", type=Path, default=None, metavar="PNG",
                   help="also draw every seed's test_id and OOD pooled CER per row (a dot per seed)")
    p.add_argument("--wer_md", type=Path, default=None, metavar="MD",
                   help="also write the table's WER on every test set (mean ± sd over seeds) to this file")
    p.add_argument("--from_results_md", metavar="RESULTS.md",
                   help="read the figures from the stage-9 sections of this file instead of exp dirs "
                        "(which git does not keep); a row then names runs, not dirs: LABEL=RUN[+RUN][:TAG] "
                        "with RUN as in the section heading '## RUN / TAG' (e.g. blr_moe_seed2)")
    p.add_argument("--langs", default="hi,mr,ta,te", help="languages of the corpus (experts of a "
                   "language-routed encoder, for the active-parameter count with --from_results_md)")
    a = p.parse_args(argv)
    _SOURCE.clear()
    if a.from_results_md:
        _SOURCE["results_md"] = results_md_sections(Path(a.from_results_md))
    rows: list[tuple[str, tuple[Path, ...], str]] = []
    for spec in a.row:
        label, eq, rest = spec.partition("=")
        if not eq:
            p.error(f"--row {spec!r}: expected LABEL=EXP_DIR[+EXP_DIR...][:DECODE_TAG]")
        exp_spec, _, tag = rest.partition(":")
        exps = tuple(Path(x) for x in exp_spec.split("+"))
        tag = tag or "ctc_greedy"
        for exp in exps:
            if "results_md" in _SOURCE:
                if f"{exp} / {tag}" not in _SOURCE["results_md"]:
                    p.error(f"--row {spec!r}: {a.from_results_md} has no section '## {exp} / {tag}'")
            elif not (exp / f"decode_{tag}" / "scores.json").is_file():
                p.error(f"--row {spec!r}: {exp}/decode_{tag}/scores.json does not exist; run stage 9")
        rows.append((label, exps, tag))
    by_label = {label: (exp, tag) for label, exp, tag in rows}
    for spec in a.relative:
        try:
            parse_claim(spec)
        except ValueError as e:
            p.error(str(e))
        for name in spec.split("|")[:2]:
            if name not in by_label:
                p.error(f"--relative {spec!r}: {name!r} is not a --row label")
    params: dict = {}
    for _, exps, tag in rows:
        if exps[0] not in params and "results_md" in _SOURCE:
            section = _SOURCE["results_md"][f"{exps[0]} / {tag}"]
            params[exps[0]] = param_counts_from_section(section, a.langs.split(","))
        elif exps[0] not in params:
            params[exps[0]] = param_counts(exps[0])
    ood_exclude = tuple(x for x in a.ood_exclude.split(",") if x)
    env = environment(None)
    figs = rows_figures(rows, ood_exclude)
    text = "\n".join([
        _marker(TAG, "begin"),
        f"## {TAG}", "",
        f"- date: `{env['date']}`; hardware: {env['hardware']}; software: {env['software']}",
        "- command: `local/compare_results.py " + " ".join(f"'{x}'" for x in (argv or sys.argv[1:])) + "`",
        "- CER / WER in %; each cell the mean ± sd over the row's seeds (one run: its value); "
        "a condition column = that test_ood_* set; OOD pooled = every test_ood_* set"
        + (f" but {', '.join(ood_exclude)}" if ood_exclude else "") + " pooled per seed; "
        "LID = router's utterance language (models without a router: -); RTF = greedy CTC on test_id, "
        "as stage 8 timed it (with whatever else ran on the machine then), mean over seeds"
        + (f"; RTF alone = {a.rtf_alone} (bench/bench_rtf.py: one model at a time, the run it names)"
           if a.rtf_alone else "")
        + ("; read from the stage-9 sections of " + a.from_results_md + " (params total = every tensor "
           "in the checkpoint, BatchNorm statistics included, as their `model size`)" if a.from_results_md else ""),
        "", table(rows, params, ood_exclude, rtf_alone(a.rtf_alone) if a.rtf_alone else None, figs).rstrip("\n"),
    ])
    if a.per_lang:
        text += "\n\ntest_id CER per language:\n\n" + language_table(rows, figs).rstrip("\n")
    if a.relative:
        data_root = None if "results_md" in _SOURCE else a.data_root
        text += ("\n\nRelative CER change of A against B (negative: A has fewer errors; each system's CER "
                 "is the mean over its seeds):\n\n" + relative_table(
                     a.relative, by_label, data_root, ood_exclude, a.resamples).rstrip("\n"))
    if a.note:
        text += "\n\n" + a.note.strip()
    text += f"\n{_marker(TAG, 'end')}\n"
    if a.seed_plot:
        seed_plot(rows, a.seed_plot, ood_exclude, figs)
    if a.wer_md:
        a.wer_md.parent.mkdir(parents=True, exist_ok=True)
        a.wer_md.write_text(
            "# WER of the accuracy table's rows\n\nWER in %, mean ± sd over the row's seeds; columns as in "
            "the CER table (OOD pooled" + (f" leaves out {', '.join(ood_exclude)}" if ood_exclude else "")
            + "). Written by `local/compare_results.py --wer_md` (`bench/accuracy_table.sh`), "
            f"{env['date']}; {env['hardware']}; {env['software']}.\n\n" + wer_table(rows, ood_exclude, figs))
    if a.results_md:
        update_results_md(a.results_md, TAG, text)
    print(text)
    return text


if __name__ == "__main__":
    main()
