#!/usr/bin/env python3
"""Which kinds of characters a model gets wrong: CER split into error classes, per language.

Usage::

    local/error_classes.py data/test_id exp/asr_x/decode_ctc_greedy/test_id [--md out.md]

Aligns reference and hypothesis exactly as ``local/score.py`` does (normalised text,
code points, spaces as ``<space>``, jiwer's Levenshtein alignment), then files each edit
(substitution, deletion, insertion) under the first class that its reference or
hypothesis character belongs to:

* ``word boundary``: ``<space>``; a space that the speech does not mark (espeak runs
  words together) can only be guessed from the spelling;
* ``virama``: Devanagari virama, Tamil pulli, Telugu virama; whether a consonant
  cluster is written with an explicit virama or a conjunct, and Hindi's schwa deletion,
  are spelling conventions the audio rarely decides;
* ``nasal sign``: anusvara, candrabindu (and Tamil aytham): written nasalisation
  against a written nasal consonant (e.g. शांति / शान्ति) sounds the same;
* ``nukta``: Devanagari nukta (क़ / क);
* ``other``: everything else (vowel signs, consonants).

Prints (and with ``--md`` writes) a table: per language, reference characters, CER, and
each class's share of the CER in points, so the classes add up to the CER.
"""
from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jiwer  # noqa: E402

from espnet_plugins.data.kaldi import read_map  # noqa: E402
from espnet_plugins.text.normalize import normalize_text  # noqa: E402
from score import SPACE_TOKEN, char_tokens, lang_group, read_decode_file  # noqa: E402

CLASSES = {
    "word boundary": {SPACE_TOKEN},
    "virama": {"\u094d", "\u0bcd", "\u0c4d"},
    "nasal sign": {"\u0901", "\u0902", "\u0b82", "\u0b83", "\u0c01", "\u0c02"},
    "nukta": {"\u093c"},
}
ORDER = list(CLASSES) + ["other"]


def error_class(*tokens: str) -> str:
    """The class of an edit whose reference/hypothesis tokens are ``tokens``."""
    for name, members in CLASSES.items():
        if any(t in members for t in tokens):
            return name
    return "other"


def classify(refs: list[list[str]], hyps: list[list[str]]) -> list[collections.Counter]:
    """Per pair, edit counts by class (one count per token edited)."""
    if not refs:
        return []
    out = jiwer.process_words([" ".join(r) for r in refs], [" ".join(h) for h in hyps])
    result = []
    for ref, hyp, chunks in zip(refs, hyps, out.alignments):
        c = collections.Counter()
        for ch in chunks:
            r = ref[ch.ref_start_idx:ch.ref_end_idx]
            h = hyp[ch.hyp_start_idx:ch.hyp_end_idx]
            if ch.type == "substitute":
                c.update(error_class(a, b) for a, b in zip(r, h))
            elif ch.type in ("delete", "insert"):
                c.update(error_class(t) for t in r + h)  # one side is empty
        result.append(c)
    return result


def breakdown(data_dir: Path, decode_dir: Path) -> dict[str, dict]:
    """``{language group or 'overall': {'ref': n, 'errors': {class: n}}}``."""
    ref = read_map(data_dir / "text")
    langs = read_map(data_dir / "utt2lang")
    hyp = read_decode_file(decode_dir / "text", ref, data_dir / "text")
    ids = sorted(ref)
    refs = [char_tokens(normalize_text(ref[u])) for u in ids]
    hyps = [char_tokens(normalize_text(hyp.get(u, ""))) for u in ids]
    table: dict[str, dict] = {}
    for u, r, c in zip(ids, refs, classify(refs, hyps)):
        for key in (lang_group(langs[u]), "overall"):
            row = table.setdefault(key, {"ref": 0, "errors": collections.Counter()})
            row["ref"] += len(r)
            row["errors"].update(c)
    return table


def to_markdown(table: dict[str, dict]) -> str:
    lines = ["| language | ref chars | CER % | " + " | ".join(ORDER) + " |",
             "|---|---|---|" + "---|" * len(ORDER)]
    for key in sorted(table, key=lambda k: (k == "overall", "+" in k, k)):
        row = table[key]
        n = max(row["ref"], 1)
        cer = 100.0 * sum(row["errors"].values()) / n
        shares = " | ".join(f"{100.0 * row['errors'][k] / n:.2f}" for k in ORDER)
        lines.append(f"| {key} | {row['ref']} | {cer:.2f} | {shares} |")
    return "\n".join(lines) + "\n\nClass columns: CER points (class edits / reference chars); they add up to CER.\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data_dir", type=Path, help="reference data dir (text, utt2lang)")
    p.add_argument("decode_dir", type=Path, help="decode dir with text")
    p.add_argument("--md", type=Path, default=None, help="also write the table here")
    args = p.parse_args(argv)
    md = to_markdown(breakdown(args.data_dir, args.decode_dir))
    print(md, end="")
    if args.md:
        args.md.write_text(md, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
