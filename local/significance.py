#!/usr/bin/env python3
"""Is system A's CER lower than system B's? A bootstrap over seeds and utterances.

    local/significance.py --data_dir dump/raw/test_id \\
        --a exp/asr_blr_moe/decode_ctc_greedy/test_id exp/asr_blr_moe_seed2/decode_ctc_greedy/test_id ... \\
        --b exp/asr_lr_moe/decode_ctc_greedy/test_id exp/asr_lr_moe_seed2/decode_ctc_greedy/test_id ...

Each ``--a`` / ``--b`` decode dir is one training seed of that system, decoded on the same
data dir. CER is scored as ``local/score.py`` scores it (ESPnet char tokens, spaces kept).
The relative change is ``(CER_A - CER_B) / CER_B`` in %, negative when A is better, with
each system's CER pooled over its seeds (the mean over seeds, every seed decoding the same
utterances). Its spread: ``--resamples`` draws, each of which resamples the seeds of A and
of B independently (they are different trainings) and the utterances once for both (they
are the same utterances: a paired bootstrap); reported are the 95 % interval and the share
of draws in which A is not better than B (a one-sided p-value for "A is better").
Both sources of variance count: with one seed per system only the utterances vary, and the
interval is too narrow for a claim about methods, which the output says.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from espnet_plugins.data.kaldi import read_map  # noqa: E402
from espnet_plugins.text.normalize import normalize_text  # noqa: E402
from score import char_tokens, per_utterance_counts, read_decode_file  # noqa: E402


def utterance_errors(data_dir: Path, decode_dirs: list[Path], unit: str = "char") -> tuple[np.ndarray, np.ndarray]:
    """(errors [seeds, utterances], reference tokens [utterances]), utterances in id order;
    a missing hypothesis counts as empty (every reference token deleted). ``unit``: ``char``
    (CER, as local/score.py) or ``word`` (WER: normalised text split on whitespace)."""
    if unit not in ("char", "word"):
        raise ValueError(f"unit must be 'char' or 'word', got {unit!r}")
    tokens = char_tokens if unit == "char" else str.split
    ref = read_map(data_dir / "text")
    ids = sorted(ref)
    refs = [tokens(normalize_text(ref[u])) for u in ids]
    errors = []
    for d in decode_dirs:
        hyp = read_decode_file(d / "text", ref, data_dir / "text")
        hyps = [tokens(normalize_text(hyp.get(u, ""))) for u in ids]
        errors.append([c.errors for c in per_utterance_counts(refs, hyps)])
    return np.asarray(errors, dtype=np.float64), np.asarray([len(r) for r in refs], dtype=np.float64)


def relative_change(err_a: np.ndarray, err_b: np.ndarray, ref: np.ndarray, resamples: int = 2000,
                    seed: int = 0) -> dict:
    """Relative CER change of A against B (%) with its bootstrap interval; see the module doc."""
    if err_a.shape[1] != ref.size or err_b.shape[1] != ref.size:
        raise ValueError("A, B and the reference must cover the same utterances")
    cer_a = err_a.sum() / (err_a.shape[0] * ref.sum())
    cer_b = err_b.sum() / (err_b.shape[0] * ref.sum())
    rng = np.random.default_rng(seed)
    n_utt, draws = ref.size, np.empty(resamples)
    for i in range(resamples):
        utts = rng.integers(0, n_utt, n_utt)
        sa = rng.integers(0, err_a.shape[0], err_a.shape[0])
        sb = rng.integers(0, err_b.shape[0], err_b.shape[0])
        chars = ref[utts].sum()
        a = err_a[np.ix_(sa, utts)].sum() / (sa.size * chars)
        b = err_b[np.ix_(sb, utts)].sum() / (sb.size * chars)
        draws[i] = 100.0 * (a - b) / b if b > 0 else np.nan
    draws = draws[np.isfinite(draws)]
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"cer_a": 100.0 * cer_a, "cer_b": 100.0 * cer_b,
            "relative_pct": 100.0 * (cer_a - cer_b) / cer_b if cer_b > 0 else None,
            "ci95": [float(low), float(high)], "p_a_not_better": float(np.mean(draws >= 0)),
            "seeds": [int(err_a.shape[0]), int(err_b.shape[0])], "utterances": int(n_utt),
            "resamples": int(draws.size)}


def verdict(result: dict, claimed_pct: float | tuple[float, float] | None = None) -> str:
    """In words: is A better (interval below 0), worse (above 0), or not distinguishable;
    and, for a claimed relative change (a value, or a (low, high) range a paper reports over
    several conditions), whether the claim lies inside the interval (a range: overlaps it)."""
    low, high = result["ci95"]
    if high < 0:
        text = "A better"
    elif low > 0:
        text = "A worse (opposite)"
    else:
        text = "no significant difference"
    if isinstance(claimed_pct, tuple):
        c_low, c_high = sorted(claimed_pct)
        overlaps = c_low <= high and low <= c_high
        text += (f"; the claimed {c_low:+.1f}..{c_high:+.1f} % range "
                 f"{'overlaps' if overlaps else 'lies outside'} the 95 % interval")
    elif claimed_pct is not None:
        inside = low <= claimed_pct <= high
        text += f"; the claimed {claimed_pct:+.1f} % is {'inside' if inside else 'outside'} the 95 % interval"
    if min(result["seeds"]) < 2:
        text += "; one seed: utterance variance only, no claim about methods"
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", type=Path, required=True, help="reference data dir (text)")
    p.add_argument("--a", type=Path, nargs="+", required=True, help="system A: one decode dir per seed")
    p.add_argument("--b", type=Path, nargs="+", required=True, help="system B: one decode dir per seed")
    p.add_argument("--claimed", type=float, default=None, help="a paper's relative change of A vs B, in %%")
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    p.add_argument("--unit", choices=("char", "word"), default="char",
                   help="error unit: char (CER, default) or word (WER); keys keep the cer_ names")
    args = p.parse_args(argv)
    err_a, ref = utterance_errors(args.data_dir, args.a, args.unit)
    err_b, _ = utterance_errors(args.data_dir, args.b, args.unit)
    result = relative_change(err_a, err_b, ref, args.resamples, args.seed)
    result["verdict"] = verdict(result, args.claimed)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    rel = result["relative_pct"]
    name = "CER" if args.unit == "char" else "WER"
    result["unit"] = args.unit
    print(f"{name} A {result['cer_a']:.2f} % ({result['seeds'][0]} seeds), B {result['cer_b']:.2f} % "
          f"({result['seeds'][1]} seeds); A vs B {rel:+.1f} % [{result['ci95'][0]:+.1f}, {result['ci95'][1]:+.1f}], "
          f"p(A not better) {result['p_a_not_better']:.3f}: {result['verdict']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
