#!/usr/bin/env python3
"""Score decoded test sets: WER/CER per language, per test set and overall, LID accuracy, RTF.

Usage (one ``--test`` per test set)::

    local/score.py \\
        --test test_id=data/test_id:exp/asr_x/decode_test_id \\
        --test test_cs=data/test_cs:exp/asr_x/decode_test_cs \\
        --out_json exp/asr_x/scores.json \\
        --results_md RESULTS.md --tag asr_x --config conf/train.yaml \\
        --model_file exp/asr_x/valid.loss.ave.pth --seed 1

Inputs.  ``<ref_data_dir>`` holds Kaldi ``text`` and ``utt2lang`` (several languages on one
line mark a code-switched utterance, e.g. ``utt1 hi te``).  ``<decode_dir>`` holds ``text``
(``uttid hypothesis``; a line with only the id is an empty hypothesis), optionally ``lang``
(``uttid predicted_lang``, the router's LID) and ``rtf.json`` (``audio_seconds``,
``decode_seconds``; optional ``num_threads``).

Conventions (also written into RESULTS.md):

* Reference and hypothesis both go through ``espnet_plugins.text.normalize_text``, the
  normaliser used to prepare the training text.
* WER counts whitespace-separated words.  CER follows ESPnet's sclite scoring (asr.sh,
  ``--token_type char``): every Unicode code point is a token and each space between words
  is kept as a ``<space>`` token, so word-boundary errors count as character errors.
* Error rate = (substitutions + deletions + insertions) / reference tokens.  Per-language,
  per-test-set and overall figures are micro-averages: counts are summed before dividing,
  so long utterances weigh more.
* Utterances with several distinct languages in ``utt2lang`` are grouped under the sorted
  languages joined by ``+`` (``hi te`` and ``te hi`` -> ``hi+te``).
* LID accuracy: a prediction is correct when it is one of the reference languages (for
  code-switched utterances any of the languages present counts).  Reference utterances
  without a prediction count as wrong.
* A reference utterance without a hypothesis line is scored as all deletions (and warned
  about); a hypothesis for an utterance that is not in the reference is an error.
* RTF = decode_seconds / audio_seconds; the overall RTF sums both over test sets.
* ``--data_dir NAME=DIR`` names the data dir a test set's reference was made from
  (run.sh: ``data/<set>``). When the reference lacks some of its utterances (a filtered
  or stale copy), the set is not scored whole: the log, ``scores.json``
  (``unscored_utts``) and the RESULTS.md section say how many were left out.
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import importlib.metadata
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

# Work from any cwd, with or without the repository root on PYTHONPATH.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jiwer  # noqa: E402

from espnet_plugins.data.kaldi import DataDirError, read_map  # noqa: E402
from espnet_plugins.text.normalize import normalize_text  # noqa: E402
from espnet_plugins.utils.io import atomic_write_text  # noqa: E402

SPACE_TOKEN = "<space>"
CONVENTIONS = (
    "text normalised by `espnet_plugins.text.normalize_text` on both sides; "
    "CER over Unicode code points with spaces kept as `<space>` tokens (ESPnet sclite "
    "convention); rates are micro-averaged over reference tokens; code-switched "
    "utterances are grouped as `<lang>+<lang>`; LID counts as correct when the "
    "predicted language is one of the reference languages; a missing hypothesis is "
    "scored as all deletions"
)


class ScoringError(ValueError):
    """Bad scoring input; the message names the file (and line) and how to fix it."""


@dataclass
class Counts:
    """Edit-distance counts against ``ref`` reference tokens."""

    ref: int = 0
    sub: int = 0
    dele: int = 0
    ins: int = 0

    @property
    def errors(self) -> int:
        return self.sub + self.dele + self.ins

    def rate_pct(self) -> Optional[float]:
        """Error rate in percent; ``None`` when there are no reference tokens (undefined)."""
        return 100.0 * self.errors / self.ref if self.ref else None

    def add(self, other: "Counts") -> None:
        self.ref += other.ref
        self.sub += other.sub
        self.dele += other.dele
        self.ins += other.ins

    def to_json(self) -> dict:
        return {"ref": self.ref, "sub": self.sub, "del": self.dele, "ins": self.ins, "err": self.errors}


@dataclass
class Stats:
    """Scores of one group of utterances (a language, a test set, or everything)."""

    num_utts: int = 0
    missing_hyp: int = 0
    words: Counts = field(default_factory=Counts)
    chars: Counts = field(default_factory=Counts)
    # LID fields stay 0 when the decode dir has no ``lang`` file.
    lid_total: int = 0
    lid_correct: int = 0
    lid_missing: int = 0

    def add(self, other: "Stats") -> None:
        self.num_utts += other.num_utts
        self.missing_hyp += other.missing_hyp
        self.words.add(other.words)
        self.chars.add(other.chars)
        self.lid_total += other.lid_total
        self.lid_correct += other.lid_correct
        self.lid_missing += other.lid_missing

    def lid_acc_pct(self) -> Optional[float]:
        return 100.0 * self.lid_correct / self.lid_total if self.lid_total else None

    def to_json(self) -> dict:
        out = {
            "num_utts": self.num_utts,
            "missing_hyp": self.missing_hyp,
            "wer_pct": self.words.rate_pct(),
            "cer_pct": self.chars.rate_pct(),
            "words": self.words.to_json(),
            "chars": self.chars.to_json(),
        }
        if self.lid_total:
            out["lid"] = {
                "acc_pct": self.lid_acc_pct(),
                "correct": self.lid_correct,
                "total": self.lid_total,
                "missing": self.lid_missing,
            }
        return out


@dataclass
class Rtf:
    audio_seconds: float = 0.0
    decode_seconds: float = 0.0
    num_threads: Optional[int] = None

    @property
    def rtf(self) -> float:
        return self.decode_seconds / self.audio_seconds

    def to_json(self) -> dict:
        out = {"rtf": self.rtf, "audio_seconds": self.audio_seconds, "decode_seconds": self.decode_seconds}
        if self.num_threads is not None:
            out["num_threads"] = self.num_threads
        return out


@dataclass
class Result:
    """Scores of one test set, or (name ``overall``) of all of them together."""

    name: str
    total: Stats = field(default_factory=Stats)
    per_lang: dict[str, Stats] = field(default_factory=dict)
    rtf: Optional[Rtf] = None
    ref_dir: Optional[str] = None
    decode_dir: Optional[str] = None
    # --data_dir: the data dir the reference came from, its size, and its utterances
    # that the reference (so the score) lacks
    data_dir: Optional[str] = None
    data_dir_utts: Optional[int] = None
    unscored: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        out = {}
        if self.ref_dir is not None:
            out.update(ref_dir=self.ref_dir, decode_dir=self.decode_dir)
        if self.data_dir is not None:
            out.update(data_dir=self.data_dir, data_dir_utts=self.data_dir_utts, unscored_utts=len(self.unscored))
        out.update(self.total.to_json())
        out["per_lang"] = {lang: s.to_json() for lang, s in sorted(self.per_lang.items(), key=_lang_order)}
        out["rtf"] = self.rtf.to_json() if self.rtf else None
        return out


def lang_group(value: str) -> str:
    """Group name of a ``utt2lang`` value: ``"hi"`` -> ``hi``, ``"te hi te"`` -> ``hi+te``."""
    return "+".join(sorted(set(value.split())))


def _lang_order(item) -> tuple:
    """Single languages first, then code-switched groups, each alphabetically."""
    name = item[0] if isinstance(item, tuple) else item
    return ("+" in name, name)


def char_tokens(text: str) -> list[str]:
    """ESPnet ``char`` tokenisation of normalised text: code points, spaces as ``<space>``."""
    return [SPACE_TOKEN if ch == " " else ch for ch in text]


def per_utterance_counts(refs: Sequence[Sequence[str]], hyps: Sequence[Sequence[str]]) -> list[Counts]:
    """Align each token sequence pair with jiwer and return per-pair counts.

    One batched jiwer call aligns all pairs; the counts of each pair are read off its
    alignment chunks.  Tokens never contain whitespace (words are split on it, ``<space>``
    replaces it in character tokens), so joining with spaces round-trips exactly.
    """
    if not refs:
        return []
    out = jiwer.process_words([" ".join(r) for r in refs], [" ".join(h) for h in hyps])
    counts = []
    for ref, chunks in zip(refs, out.alignments):
        c = Counts(ref=len(ref))
        for chunk in chunks:
            n_ref = chunk.ref_end_idx - chunk.ref_start_idx
            if chunk.type == "substitute":
                c.sub += n_ref
            elif chunk.type == "delete":
                c.dele += n_ref
            elif chunk.type == "insert":
                c.ins += chunk.hyp_end_idx - chunk.hyp_start_idx
        counts.append(c)
    return counts


def _iter_decode_lines(path: Path) -> Iterator[tuple[int, str, str]]:
    """Yield ``(line_number, uttid, rest)`` of a decode file; ``rest`` may be empty.

    Not ``read_map``: an empty hypothesis is legitimate output (a line with only the id).
    """
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split(maxsplit=1)
            if not parts:
                raise ScoringError(f"{path}:{lineno}: empty line; every line must start with an utterance id")
            yield lineno, parts[0], parts[1].strip() if len(parts) > 1 else ""


def read_decode_file(path: Path, ref_ids, ref_text_path: Path, one_token: bool = False) -> dict[str, str]:
    """Read ``uttid value`` lines, refusing duplicates and ids absent from the reference.

    ``one_token``: the value must be exactly one token (the predicted language).
    """
    values: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for lineno, utt, value in _iter_decode_lines(path):
        if one_token and len(value.split()) != 1:
            raise ScoringError(f"{path}:{lineno}: expected 'uttid predicted_lang' (one language), got {value!r}")
        if utt not in ref_ids:
            raise ScoringError(
                f"{path}:{lineno}: utterance {utt!r} is not in the reference {ref_text_path}; "
                "was this decode dir made from a different data dir?"
            )
        if utt in values:
            raise ScoringError(f"{path}:{lineno}: duplicate utterance {utt!r} (first on line {first_line[utt]})")
        values[utt] = value
        first_line[utt] = lineno
    return values


def read_rtf(path: Path) -> Rtf:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ScoringError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e
    values = {}
    for key in ("audio_seconds", "decode_seconds"):
        value = data.get(key) if isinstance(data, dict) else None
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ScoringError(f"{path}: {key!r} must be a number >= 0, got {value!r}")
        values[key] = float(value)
    if values["audio_seconds"] == 0:
        raise ScoringError(f"{path}: 'audio_seconds' is 0, so no RTF can be computed; was anything decoded?")
    threads = data.get("num_threads")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ScoringError(f"{path}: 'num_threads' must be a positive integer, got {threads!r}")
    return Rtf(values["audio_seconds"], values["decode_seconds"], threads)


def _read_ref_map(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise ScoringError(f"{path}: missing; a reference data dir needs 'text' and 'utt2lang'")
    try:
        return read_map(path)
    except DataDirError as e:
        raise ScoringError(str(e)) from e


_INDIC_NORMALIZERS: dict = {}


def indic_normalize(text: str, lang: str) -> str:
    """IndicNLP's script normaliser for ``lang`` (indic-nlp-library, as Vistaar's scoring uses),
    then ``normalize_text``.  Languages it has no normaliser for (and code-switched
    utterances) get ``normalize_text`` alone."""
    if lang not in _INDIC_NORMALIZERS:
        from indicnlp.normalize.indic_normalize import IndicNormalizerFactory

        try:
            _INDIC_NORMALIZERS[lang] = IndicNormalizerFactory().get_normalizer(lang)
        except (KeyError, ImportError):  # unknown code; Urdu's normaliser needs the optional urduhack
            _INDIC_NORMALIZERS[lang] = None
    normalizer = _INDIC_NORMALIZERS[lang]
    return normalize_text(normalizer.normalize(text) if normalizer is not None else text)


def score_test_set(name: str, ref_dir, decode_dir, indic_norm: bool = False) -> Result:
    """Score one decode dir against its reference data dir (``indic_norm``: see :func:`indic_normalize`)."""
    ref_dir, decode_dir = Path(ref_dir), Path(decode_dir)
    ref_text = _read_ref_map(ref_dir / "text")
    utt2lang = _read_ref_map(ref_dir / "utt2lang")
    for utt in ref_text:
        if utt not in utt2lang:
            raise ScoringError(f"{ref_dir / 'utt2lang'}: no language for utterance {utt!r} of {ref_dir / 'text'}")

    hyp_path = decode_dir / "text"
    if not hyp_path.is_file():
        raise ScoringError(f"{hyp_path}: missing; decode the test set first (or fix the decode dir path)")
    hyps = read_decode_file(hyp_path, ref_text, ref_dir / "text")
    lang_path = decode_dir / "lang"
    predicted = read_decode_file(lang_path, ref_text, ref_dir / "text", one_token=True) if lang_path.is_file() else None

    utts = list(ref_text)
    missing = [u for u in utts if u not in hyps]
    if missing:
        logging.warning(
            "%s: %d of %d reference utterances have no line in %s and are scored as all deletions (e.g. %s)",
            name, len(missing), len(utts), hyp_path, ", ".join(missing[:3]),
        )
    if indic_norm:
        refs = [indic_normalize(ref_text[u], utt2lang[u]) for u in utts]
        outs = [indic_normalize(hyps.get(u, ""), utt2lang[u]) for u in utts]
    else:
        refs = [normalize_text(ref_text[u]) for u in utts]
        outs = [normalize_text(hyps.get(u, "")) for u in utts]
    word_counts = per_utterance_counts([r.split() for r in refs], [h.split() for h in outs])
    char_counts = per_utterance_counts([char_tokens(r) for r in refs], [char_tokens(h) for h in outs])

    result = Result(name, ref_dir=str(ref_dir), decode_dir=str(decode_dir))
    for utt, words, chars in zip(utts, word_counts, char_counts):
        s = Stats(num_utts=1, missing_hyp=int(utt not in hyps), words=words, chars=chars)
        if predicted is not None:
            s.lid_total = 1
            s.lid_missing = int(utt not in predicted)
            s.lid_correct = int(predicted.get(utt) in utt2lang[utt].split())
        result.total.add(s)
        result.per_lang.setdefault(lang_group(utt2lang[utt]), Stats()).add(s)
    if predicted is not None and result.total.lid_missing:
        logging.warning(
            "%s: %d utterances have no prediction in %s and count as LID errors",
            name, result.total.lid_missing, lang_path,
        )
    rtf_path = decode_dir / "rtf.json"
    if rtf_path.is_file():
        result.rtf = read_rtf(rtf_path)
    return result


def _utt_ids(path: Path) -> list[str]:
    """First field of every non-empty line (utterance ids of a wav.scp or text)."""
    with open(path, encoding="utf-8") as f:
        return [line.split(maxsplit=1)[0] for line in f if line.strip()]


def check_whole(result: Result, data_dir) -> None:
    """Record (and warn about) utterances of ``data_dir`` that the scored reference lacks."""
    data_dir = Path(data_dir)
    scp = data_dir / "wav.scp"
    if not scp.is_file():
        raise ScoringError(f"--data_dir {result.name}={data_dir}: no {scp}; pass the data dir the test set's "
                           "reference was made from (run.sh: data/<set>)")
    ids = _utt_ids(scp)
    ref = set(_read_ref_map(Path(result.ref_dir) / "text"))
    result.data_dir, result.data_dir_utts = str(data_dir), len(ids)
    result.unscored = [u for u in ids if u not in ref]
    if result.unscored:
        logging.warning(
            "%s: NOT SCORED WHOLE: %d of the %d utterances of %s are not in the reference %s (e.g. %s), so "
            "these rates are not the whole test set's; test sets must not be filtered (rerun stage 3 for it)",
            result.name, len(result.unscored), len(ids), data_dir, result.ref_dir, ", ".join(result.unscored[:3]),
        )


def incomplete_notes(results: Sequence[Result]) -> list[str]:
    """RESULTS.md lines for the test sets that were not scored whole (none when all were)."""
    return [
        f"- **{r.name} not scored whole**: {r.data_dir_utts - len(r.unscored)} of the {r.data_dir_utts} "
        f"utterances of `{r.data_dir}` ({len(r.unscored)} not in `{r.ref_dir}`, e.g. {', '.join(r.unscored[:3])})"
        for r in results if r.unscored
    ]


def combine(results: Sequence[Result]) -> Result:
    """Micro-average over test sets: sum counts (and RTF seconds) before dividing."""
    overall = Result("overall")
    for r in results:
        overall.total.add(r.total)
        for lang, s in r.per_lang.items():
            overall.per_lang.setdefault(lang, Stats()).add(s)
        if r.rtf:
            if overall.rtf is None:
                overall.rtf = Rtf()
            overall.rtf.audio_seconds += r.rtf.audio_seconds
            overall.rtf.decode_seconds += r.rtf.decode_seconds
    return overall


def parse_test_spec(spec: str) -> tuple[str, str, str]:
    """``name=ref_dir:decode_dir`` -> ``(name, ref_dir, decode_dir)``."""
    name, eq, dirs = spec.partition("=")
    if not eq or not name or dirs.count(":") != 1:
        raise ScoringError(
            f"--test {spec!r}: expected '<name>=<ref_data_dir>:<decode_dir>' "
            "(exactly one ':'; directories containing ':' are not supported)"
        )
    ref_dir, decode_dir = dirs.split(":")
    if not ref_dir or not decode_dir:
        raise ScoringError(f"--test {spec!r}: empty directory in '<name>=<ref_data_dir>:<decode_dir>'")
    return name, ref_dir, decode_dir


def to_json(results: Sequence[Result], overall: Result) -> dict:
    return {
        "conventions": CONVENTIONS,
        "test_sets": {r.name: r.to_json() for r in results},
        "overall": overall.to_json(),
    }


def _fmt(value: Optional[float], digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_tables(results: Sequence[Result], overall: Result) -> str:
    """Summary table (rows = test sets) and an ESPnet-style error-count table."""
    rows = list(results) + ([overall] if len(results) > 1 else [])
    langs = sorted({lang for r in results for lang in r.per_lang}, key=_lang_order)
    header = ["test set", "#utt"]
    for lang in langs:
        header += [f"{lang} CER", f"{lang} WER"]
    header += ["CER", "WER", "LID acc", "RTF"]
    lines = ["|" + "|".join(header) + "|", "|" + "|".join(["---"] * len(header)) + "|"]
    for r in rows:
        cells = [r.name, str(r.total.num_utts)]
        for lang in langs:
            s = r.per_lang.get(lang)
            cells += [_fmt(s.chars.rate_pct()), _fmt(s.words.rate_pct())] if s else ["-", "-"]
        cells += [
            _fmt(r.total.chars.rate_pct()),
            _fmt(r.total.words.rate_pct()),
            _fmt(r.total.lid_acc_pct()),
            _fmt(r.rtf.rtf if r.rtf else None, 4),
        ]
        lines.append("|" + "|".join(cells) + "|")

    detail = [
        "|dataset|Snt|Missing|Wrd|Sub|Del|Ins|WER|Chr|Sub|Del|Ins|CER|",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        groups = [(r.name, r.total)] + [
            (f"{r.name}/{lang}", s) for lang, s in sorted(r.per_lang.items(), key=_lang_order)
        ]
        for label, s in groups:
            w, c = s.words, s.chars
            detail.append(
                f"|{label}|{s.num_utts}|{s.missing_hyp}|{w.ref}|{w.sub}|{w.dele}|{w.ins}|{_fmt(w.rate_pct())}"
                f"|{c.ref}|{c.sub}|{c.dele}|{c.ins}|{_fmt(c.rate_pct())}|"
            )
    return "\n".join(lines) + "\n\n" + "\n".join(detail) + "\n"


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def _git_hash() -> Optional[str]:
    """Short commit hash, with ``+dirty`` when tracked files differ from it."""
    repo = str(Path(__file__).resolve().parent)
    try:
        rev = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return (rev + ("+dirty" if dirty else "")) or None
    except (OSError, subprocess.CalledProcessError):
        return None


def _gpu_names() -> list[str]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, check=True).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]
    except (OSError, subprocess.CalledProcessError):
        return []


def environment(num_threads: Optional[int]) -> dict[str, str]:
    """Hardware and software facts for the RESULTS.md header.

    ``num_threads`` should be the decoding's thread count; without it, torch's default
    in this process is reported (the same as a default decode on this machine).  torch is
    imported only then: the import costs seconds and nothing else here needs it.
    """
    if num_threads is None:
        import torch

        num_threads = torch.get_num_threads()
    gpus = _gpu_names()
    env = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
        "hardware": (
            f"{_cpu_model()}, {len(os.sched_getaffinity(0))} CPU cores, torch threads: {num_threads}, "
            f"GPU: {', '.join(gpus) if gpus else 'none'}"
        ),
        "software": ", ".join(
            [f"python {platform.python_version()}"]
            + [f"{pkg} {importlib.metadata.version(pkg)}" for pkg in ("torch", "espnet", "jiwer")]
        ),
    }
    git = _git_hash()
    if git:
        env["git"] = git
    return env


def model_size(model_file) -> str:
    """Size of an ESPnet checkpoint (a state dict), e.g. ``3.61 M (3,612,345)``.

    Counts every tensor element in the state dict: parameters plus the few buffers ESPnet
    stores there (e.g. normalisation statistics), a negligible difference.
    """
    import torch  # only here: the import costs seconds and scoring itself does not need it

    try:
        state = torch.load(model_file, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as e:
        raise ScoringError(f"{model_file}: cannot load the checkpoint ({e}); pass the trained model's *.pth") from e
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise ScoringError(f"{model_file}: not a state dict of tensors; pass e.g. exp/asr_x/valid.loss.ave.pth")
    n = sum(v.numel() for v in state.values() if isinstance(v, torch.Tensor))
    return f"{n / 1e6:.2f} M ({n:,})"


def results_section(tag: str, tables: str, env: dict[str, str], command: str, config=None, seed=None,
                    model_info: Sequence[tuple[str, str]] = (), notes: Sequence[str] = ()) -> str:
    """One RESULTS.md section (ESPnet recipe style), wrapped in begin/end markers."""
    lines = [_marker(tag, "begin"), f"## {tag}", "", "### Environments", f"- date: `{env['date']}`"]
    if config:
        lines.append(f"- config: `{config}`")
    for key, value in model_info:
        lines.append(f"- {key}: `{value}`")
    if seed is not None:
        lines.append(f"- seed: `{seed}`")
    lines.append(f"- hardware: {env['hardware']}")
    lines.append(f"- software: {env['software']}" + (f", git `{env['git']}`" if "git" in env else ""))
    lines.append(f"- command: `{command}`")
    lines.append(f"- scoring: {CONVENTIONS}")
    lines += ["", "### CER / WER (%), LID accuracy (%), RTF", ""]
    if notes:
        lines += [*notes, ""]
    lines += [tables.rstrip("\n"), _marker(tag, "end")]
    return "\n".join(lines) + "\n"


def _marker(tag: str, which: str) -> str:
    return f"<!-- local/score.py section {which}: {tag} -->"


def update_results_md(path, tag: str, section: str) -> None:
    """Replace the section of ``tag`` in ``path`` in place, or append it; atomic write.

    Other sections and any hand-written text are kept byte for byte. Several
    recipe runs scoring at once (parallel trainings of one recipe) are serialised by
    an exclusive lock on the file's directory, so none of them loses another's
    section between its read and its write.
    """
    path = Path(path)
    lock = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _update_results_md_locked(path, tag, section)
    finally:
        os.close(lock)  # releases the lock


def _update_results_md_locked(path: Path, tag: str, section: str) -> None:
    text = path.read_text(encoding="utf-8") if path.is_file() else "# RESULTS\n"
    begin, end = _marker(tag, "begin"), _marker(tag, "end")
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\n") == begin]
    stops = [i for i, line in enumerate(lines) if line.rstrip("\n") == end]
    if len(starts) > 1 or len(stops) > 1 or len(starts) != len(stops) or (starts and stops[0] < starts[0]):
        where = ", ".join(f"line {i + 1}" for i in sorted(starts + stops))
        raise ScoringError(
            f"{path}: the markers of section {tag!r} are unbalanced ({where}); "
            "fix or delete that section by hand and rerun"
        )
    if starts:
        new = "".join(lines[: starts[0]]) + section + "".join(lines[stops[0] + 1:])
    else:
        new = text + ("" if text.endswith("\n") else "\n") + "\n" + section
    atomic_write_text(path, new)


def _key_value(text: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, value


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test", action="append", required=True, metavar="NAME=REF_DIR:DECODE_DIR",
                        help="a test set to score (repeat for several)")
    parser.add_argument("--data_dir", type=_key_value, action="append", default=[], metavar="NAME=DATA_DIR",
                        help="the data dir test set NAME's reference was made from; utterances of it that the "
                        "reference lacks are reported (log, scores.json, RESULTS.md) as not scored")
    parser.add_argument("--out_json", help="write all scores (counts and rates) here")
    parser.add_argument("--results_md", help="add or replace the section --tag in this RESULTS.md")
    parser.add_argument("--tag", help="model tag; identifies the RESULTS.md section (rerunning replaces it)")
    parser.add_argument("--config", help="training config path, for the RESULTS.md header")
    parser.add_argument("--model_file", help="trained checkpoint (*.pth); its size goes into the RESULTS.md header")
    parser.add_argument("--model_info", type=_key_value, nargs="+", action="extend", default=[],
                        metavar="KEY=VALUE", help="more header lines, e.g. active_params=1.2M encoder=blr_moe")
    parser.add_argument("--seed", type=int, help="training seed, for the RESULTS.md header")
    parser.add_argument("--num_threads", type=int,
                        help="threads used for decoding (default: rtf.json's num_threads, else torch's default)")
    parser.add_argument("--command", help="the command to record in RESULTS.md (default: this script's own "
                        "command line); run.sh passes its own invocation")
    parser.add_argument("--indic_norm", action="store_true",
                        help="pass both sides through IndicNLP's normaliser for each utterance's language first "
                        "(indic-nlp-library; comparable with Vistaar / IndicWhisper numbers)")
    args = parser.parse_args(argv)
    if args.results_md and not args.tag:
        parser.error("--results_md needs --tag (the section to add or replace)")
    if args.tag and ("\n" in args.tag or "-->" in args.tag):
        parser.error(f"--tag {args.tag!r} must be one line without '-->'")

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        specs = [parse_test_spec(s) for s in args.test]
        names = [name for name, _, _ in specs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ScoringError(f"--test names must be unique; repeated: {', '.join(duplicates)}")
        results = [score_test_set(*spec, indic_norm=args.indic_norm) for spec in specs]
        by_name = {r.name: r for r in results}
        for name, data_dir in args.data_dir:
            if name not in by_name:
                raise ScoringError(f"--data_dir {name}={data_dir}: no --test named {name!r}")
            check_whole(by_name[name], data_dir)
    except ScoringError as e:
        parser.exit(1, f"error: {e}\n")
    overall = combine(results)
    scores = to_json(results, overall)
    tables = markdown_tables(results, overall)
    print(tables, end="")

    if args.out_json:
        Path(args.out_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out_json).write_text(json.dumps(scores, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.results_md:
        threads = args.num_threads
        if threads is None:
            threads = next((r.rtf.num_threads for r in results if r.rtf and r.rtf.num_threads), None)
        invocation = sys.argv if argv is None else ["local/score.py", *argv]
        command = args.command or " ".join(shlex.quote(a) for a in invocation)
        try:
            info = []
            if args.model_file:
                info = [("model file", args.model_file), ("model size", model_size(args.model_file))]
            notes = incomplete_notes(results)
            if args.indic_norm:
                notes = ["Both sides IndicNLP-normalised (indic-nlp-library `IndicNormalizerFactory`, per "
                         "utterance language) before the normalisation below.", *notes]
            section = results_section(args.tag, tables, environment(threads), command, config=args.config,
                                      seed=args.seed, model_info=info + args.model_info, notes=notes)
            update_results_md(args.results_md, args.tag, section)
        except ScoringError as e:
            parser.exit(1, f"error: {e}\n")
    return scores


if __name__ == "__main__":
    main()
