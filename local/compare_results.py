#!/usr/bin/env python3
"""One accuracy table of every trained variant, from the ``scores.json`` stage 9 wrote.

    local/compare_results.py --results_md RESULTS.md \\
        --row "dense conformer=exp/asr_dense_conformer" \\
        --row "BLR-MoE (v,o)=exp/asr_blr_moe" \\
        --row "BLR-MoE + correct prior (hard)=exp/asr_blr_moe:ctc_greedy_prior_hard_oracle" \\
        --relative "BLR-MoE (v,o)|LR-MoE|paper: better than LR-MoE, most in mismatched domains"

A row is ``label=EXP_DIR[:DECODE_TAG]`` (default tag ``ctc_greedy``); its figures come from
``EXP_DIR/decode_<tag>/scores.json``. ``label=EXP_A+EXP_B[:TAG]`` pools runs (e.g. seeds):
their error counts are summed, i.e. the rates are the mean over the runs weighted by
reference length (the same test sets, so a plain mean), RTF is the mean; parameters are
EXP_A's and the parameter counts from ``EXP_DIR/config.yaml``
+ ``valid.loss.ave.pth``. Columns: parameters (total / active per frame: one expert per
frame in BLR/LR-MoE expert layers, one merged expert for SMEAR, k for hard top-k, all for
the dense ensemble), CER per language and overall on ``test_id`` and on the pooled
``test_ood_*`` sets (counts summed over every condition the run was decoded on), WER overall, LID accuracy,
``test_cs`` CER, and the greedy-decoding RTF on ``test_id``. Test sets a row was not decoded
on show ``-``. ``--relative A|B|claim`` adds relative CER/WER changes of A against B (negative
= A better) next to the claim a paper makes. The section is replaced on rerun
(``local/score.py``'s markers); hand-written text around it is kept.

Exp dirs are not kept in git; ``--from_results_md RESULTS.md`` rebuilds the same table from
the stage-9 sections of RESULTS.md (error counts from their sclite-style tables, LID from
the rounded percentages, parameters from ``model size`` and the run's config), so anyone
can regenerate it from a clone; rows then name runs as in the headings: ``label=blr_moe``,
``label=blr_moe+blr_moe_seed2``, ``label=blr_moe:ctc_greedy_prior_hard_oracle``.
"""
from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
from pathlib import Path
from typing import Optional

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from score import _marker, environment, update_results_md  # noqa: E402

LANGS = ("hi", "mr", "ta", "te")
TAG = "comparison of every variant"


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


def row_figures(exps: tuple[Path, ...], tag: str) -> dict:
    runs = load_runs(exps, tag)

    def pooled(name_ok) -> Optional[dict]:
        sets = [v for scores in runs for k, v in scores.items() if name_ok(k)]
        return _pool(sets) if sets else None

    fig = {"id": pooled(lambda k: k == "test_id"), "ood": pooled(lambda k: k.startswith("test_ood_")),
           "cs": pooled(lambda k: k == "test_cs")}
    rtfs = [(scores.get("test_id") or {}).get("rtf", {}).get("rtf") for scores in runs]
    rtfs = [r for r in rtfs if r is not None]
    fig["rtf"] = sum(rtfs) / len(rtfs) if rtfs else None
    return fig


def table(rows: list[tuple[str, tuple[Path, ...], str]], params: dict) -> str:
    head = (["model", "params M (total / active)"]
            + [f"ID {lang}" for lang in LANGS] + ["ID CER", "ID WER"]
            + [f"OOD {lang}" for lang in LANGS] + ["OOD CER", "OOD WER"]
            + ["LID ID", "LID OOD", "cs CER", "RTF"])
    lines = ["|" + "|".join(head) + "|", "|" + "|".join("---" for _ in head) + "|"]
    for label, exps, tag in rows:
        f = row_figures(exps, tag)
        total, active = params[exps[0]]
        cells = [label, f"{total:.2f} / {active:.2f}"]
        for key in ("id", "ood"):
            part = f[key] or {}
            cells += [_fmt(_rate(part.get("per_lang", {}).get(lang, {}), "chars")) for lang in LANGS]
            cells += [_fmt(_rate(part, "chars")), _fmt(_rate(part, "words"))]
        cells += [_fmt(_lid(f["id"] or {})), _fmt(_lid(f["ood"] or {})), _fmt(_rate(f["cs"] or {}, "chars")),
                  _fmt(f["rtf"], 4)]
        lines.append("|" + "|".join(cells) + "|")
    return "\n".join(lines) + "\n"


def relative_table(specs: list[str], rows: dict[str, tuple[tuple[Path, ...], str]]) -> str:
    lines = ["|A vs B|ID CER|OOD CER|ID WER|OOD WER|what the paper claims|", "|---|---|---|---|---|---|"]
    for spec in specs:
        a, b, claim = (spec.split("|") + [""])[:3]
        fa, fb = row_figures(*rows[a]), row_figures(*rows[b])
        cells = [f"{a} vs {b}"]
        for unit in ("chars", "words"):
            for key in ("id", "ood"):
                ra, rb = _rate(fa[key] or {}, unit), _rate(fb[key] or {}, unit)
                cells.append("-" if ra is None or rb is None else f"{100 * (ra - rb) / rb:+.1f} %")
        lines.append("|" + "|".join(cells + [claim]) + "|")
    return "\n".join(lines) + "\n"


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--row", action="append", required=True, metavar="LABEL=EXP_DIR[+EXP_DIR...][:DECODE_TAG]")
    p.add_argument("--relative", action="append", default=[], metavar="A|B|CLAIM")
    p.add_argument("--results_md", help="replace the comparison section in this RESULTS.md")
    p.add_argument("--note", default="", help="text placed under the tables")
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
    env = environment(None)
    text = "\n".join([
        _marker(TAG, "begin"),
        f"## {TAG}", "",
        f"- date: `{env['date']}`; hardware: {env['hardware']}; software: {env['software']}",
        "- command: `local/compare_results.py " + " ".join(f"'{x}'" for x in (argv or sys.argv[1:])) + "`",
        "- CER / WER in %, micro-averaged; OOD = every test_ood_* set of the run pooled; "
        "LID = router's utterance language (models without a router: -); RTF = greedy CTC on test_id"
        + ("; read from the stage-9 sections of " + a.from_results_md + " (params total = every tensor "
           "in the checkpoint, BatchNorm statistics included, as their `model size`)" if a.from_results_md else ""),
        "", table(rows, params).rstrip("\n"),
    ])
    if a.relative:
        text += "\n\nRelative change of A against B (negative: A has fewer errors):\n\n" + relative_table(
            a.relative, by_label).rstrip("\n")
    if a.note:
        text += "\n\n" + a.note.strip()
    text += f"\n{_marker(TAG, 'end')}\n"
    if a.results_md:
        update_results_md(a.results_md, TAG, text)
    print(text)
    return text


if __name__ == "__main__":
    main()
