"""Training-data copies for real corpora: speed perturbation, narrowband simulation, language balancing.

All three write a new Kaldi data dir from a validated one and never touch audio: new
entries are sox pipes (or the same paths, for balancing), decoded once by the format
stage (``--nj`` jobs). Ids of the copies get a prefix, so every copy is a distinct
utterance to ESPnet (its readers reject repeated keys).

* :func:`speed_perturb` — ESPnet ``asr.sh`` stage 2 / Kaldi ``perturb_data_dir_speed.sh``:
  for each factor f != 1, utterances ``sp<f>-<utt>`` and speakers ``sp<f>-<spk>`` with
  ``sox ... speed f`` (tempo and pitch), combined with the original (f = 1.0, ids kept);
  ``text``, ``utt2lang`` and the other per-utterance maps are copied; duration maps
  (``utt2dur``, ``utt2num_samples``) are dropped here and by :func:`narrowband` (the
  format stage rewrites them);
  ``segments`` times are divided by f.
* :func:`narrowband` — a telephone-band copy ``nb-<utt>``: 8 kHz, 300-3400 Hz, optional
  G.711 mu-law, back to the original rate, so a 16 kHz model also meets 8 kHz test
  sets (e.g. MUCS 2021) in training.
* :func:`balance_languages` — temperature sampling over languages without dropping data:
  language l with n_l utterances (share p_l) gets weight q_l ∝ p_l^(1/T); its utterances
  are repeated so that its count becomes n_max · q_l / q_max (the largest language keeps
  its n_max, T = 1 changes nothing, T → ∞ equalises). Repeats are ``bal<k>-<utt>`` rows
  pointing at the same audio; the fractional part is a seeded random subset. Why data
  rows and not a sampler: ESPnet's shape-file and scp readers refuse repeated keys, and
  rows work unchanged with every ``batch_type``, SortaGrad, DDP sharding, collect-stats and
  ``max_steps: auto`` (the epoch is longer by exactly the repeats).
"""
from __future__ import annotations

import random
import shlex
from collections import Counter
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional, Sequence

from espnet_plugins.data.kaldi import PathLike, read_map, utt2spk_to_spk2utt, validate_data_dir, write_map

DURATION_MAPS = ("utt2dur", "utt2num_samples", "utt2num_frames")


def _sox_pipe(entry: str, effects: str, out: str = "-t wav") -> str:
    """A wav.scp pipe that applies sox ``effects`` to ``entry`` (a path or a pipe), writing ``out`` audio."""
    if entry.endswith("|"):
        return f"{entry[:-1].strip()} | sox -V1 -D -t wav - {out} - {effects} |"
    return f"sox -V1 -D {shlex.quote(entry)} {out} - {effects} |"


def _speed(factor: float):
    return lambda entry: _sox_pipe(entry, f"speed {_factor_name(factor)}")


def _telephone(mulaw: bool):
    """8 kHz, 300-3400 Hz (, G.711 mu-law), then 16-bit 16 kHz wav again."""
    enc = "-e u-law" if mulaw else "-e signed-integer -b 16"
    back = "sox -V1 -D -t wav - -t wav -r 16000 -e signed-integer -b 16 - |"
    return lambda entry: _sox_pipe(entry, "sinc 300-3400", out=f"-t wav -r 8000 {enc}") + " " + back


def _factor_name(f: float) -> str:
    return f"{f:g}"


def _copy(src: Path, prefix: str, wav_effect: Optional[Callable[[str], str]], time_scale: float = 1.0,
          spk_prefix: bool = True, keep_durations: bool = False) -> Dict[str, Dict[str, str]]:
    """Maps of ``src`` with ids prefixed (``prefix=''``: unchanged), wav.scp entries mapped by ``wav_effect``."""
    maps: Dict[str, Dict[str, str]] = {}
    has_segments = (src / "segments").is_file()
    wav = read_map(src / "wav.scp")
    maps["wav.scp"] = {prefix + k: (wav_effect(v) if wav_effect else v) for k, v in wav.items()}
    utt2spk = read_map(src / "utt2spk")
    maps["utt2spk"] = {prefix + u: (prefix if spk_prefix else "") + s for u, s in utt2spk.items()}
    if has_segments:
        seg = {}
        for u, v in read_map(src / "segments").items():
            rec, start, end = v.split()
            t1 = float(end)
            end_s = "-1" if t1 == -1 else f"{t1 / time_scale:.3f}"
            seg[prefix + u] = f"{prefix}{rec} {float(start) / time_scale:.3f} {end_s}"
        maps["segments"] = seg
    for f in sorted(src.iterdir()):
        name = f.name
        if not f.is_file() or name in ("wav.scp", "utt2spk", "spk2utt", "segments") or \
                (name in DURATION_MAPS and not keep_durations):
            continue
        if name == "text" or name.startswith("utt2"):
            maps[name] = {prefix + u: v for u, v in read_map(f).items()}
        elif name.startswith("spk2") and spk_prefix:
            maps[name] = {prefix + s: v for s, v in read_map(f).items()}
        elif name.startswith("spk2"):
            maps[name] = read_map(f)
    return maps


def _write(dst: PathLike, parts: Iterable[Dict[str, Dict[str, str]]]) -> int:
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    merged: Dict[str, Dict[str, str]] = {}
    for maps in parts:
        for name, mapping in maps.items():
            merged.setdefault(name, {}).update(mapping)
    for name, mapping in merged.items():
        write_map(dst / name, mapping)
    write_map(dst / "spk2utt", utt2spk_to_spk2utt(merged["utt2spk"]))
    validate_data_dir(dst, require_text=(dst / "text").exists(), allow_segments=True)
    return len(merged["utt2spk"])


def speed_perturb(src: PathLike, dst: PathLike, factors: Sequence[float] = (0.9, 1.0, 1.1)) -> int:
    """Write the speed-perturbed copies of ``src`` (and the original, if 1.0 is a factor) to ``dst``."""
    src = Path(src)
    validate_data_dir(src, require_text=(src / "text").exists(), allow_segments=True)
    if not factors or any(f <= 0 for f in factors) or len(set(factors)) != len(factors):
        raise ValueError(f"speed perturbation factors must be distinct positive numbers, got {list(factors)}")
    parts = [_copy(src, "" if f == 1.0 else f"sp{_factor_name(f)}-", None if f == 1.0 else _speed(f), time_scale=f)
             for f in factors]
    return _write(dst, parts)


def narrowband(src: PathLike, dst: PathLike, mulaw: bool = True, keep_original: bool = True) -> int:
    """Write a telephone-band copy (``nb-`` ids, same speakers) of ``src``, with the original if ``keep_original``."""
    src = Path(src)
    validate_data_dir(src, require_text=(src / "text").exists(), allow_segments=True)
    parts = [_copy(src, "nb-", _telephone(mulaw), spk_prefix=False)]
    if keep_original:
        parts.insert(0, _copy(src, "", None, spk_prefix=False))
    return _write(dst, parts)


def language_weights(counts: Dict[str, int], temperature: float) -> Dict[str, float]:
    """q_l ∝ p_l^(1/T), normalised to sum 1."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    total = sum(counts.values())
    raw = {lang: (n / total) ** (1.0 / temperature) for lang, n in counts.items()}
    norm = sum(raw.values())
    return {lang: w / norm for lang, w in raw.items()}


def balance_languages(src: PathLike, dst: PathLike, temperature: float, seed: int = 1) -> Dict[str, tuple]:
    """Write ``src`` plus repeated utterances of the smaller languages to ``dst`` (see the module docstring).

    Returns ``{lang: (utterances before, after)}``. Code-switched utterances (several
    languages in ``utt2lang``) count for their first language.
    """
    src = Path(src)
    validate_data_dir(src, require_text=(src / "text").exists())
    utt2lang = {u: v.split()[0] for u, v in read_map(src / "utt2lang").items()}
    counts = Counter(utt2lang.values())
    q = language_weights(dict(counts), temperature)
    lang_max = max(counts, key=lambda lang: (counts[lang], lang))
    rng = random.Random(seed)
    parts = [_copy(src, "", None, spk_prefix=False, keep_durations=True)]
    extra: Dict[int, list] = {}
    summary = {}
    for lang in sorted(counts):
        utts = sorted(u for u, v in utt2lang.items() if v == lang)
        target = counts[lang_max] * q[lang] / q[lang_max]
        repeats = max(0.0, target / len(utts) - 1.0)  # extra copies per utterance
        whole, frac = int(repeats), repeats - int(repeats)
        chosen = rng.sample(utts, round(frac * len(utts)))
        for k in range(1, whole + 1):
            extra.setdefault(k, []).extend(utts)
        if chosen:
            extra.setdefault(whole + 1, []).extend(chosen)
        summary[lang] = (len(utts), len(utts) * (1 + whole) + len(chosen))
    for k, utts in sorted(extra.items()):
        keep = set(utts)
        maps = _copy(src, f"bal{k}-", None, spk_prefix=False, keep_durations=True)
        per_utt = lambda name: name in ("wav.scp", "text") or name.startswith("utt2")  # noqa: E731
        parts.append({name: {u: v for u, v in m.items() if u.split("-", 1)[1] in keep} if per_utt(name) else m
                      for name, m in maps.items()})
    _write(dst, parts)
    return summary
