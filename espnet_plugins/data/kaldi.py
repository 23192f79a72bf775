"""Reading, writing and validating Kaldi-style data directories.

A data dir is a set of line-oriented ``<key> <value>`` maps (``wav.scp text utt2spk spk2utt
utt2lang`` plus optional ``utt2*`` files).  Kaldi and ESPnet tools assume every map is
sorted by key in C-locale byte order and that all per-utterance maps hold the same ids;
violations give confusing failures far downstream, so :func:`validate_data_dir` checks
them up front and names the offending file and line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence, Union

from espnet_plugins.utils.io import atomic_write_text

__all__ = [
    "DataDirError",
    "Utterance",
    "read_map",
    "write_map",
    "utt2spk_to_spk2utt",
    "write_data_dir",
    "validate_data_dir",
]

Value = Union[str, Sequence[str]]


class DataDirError(ValueError):
    """A data dir file is malformed or inconsistent; the message names file and line."""


def _c_key(key: str) -> bytes:
    """Sort key matching ``LC_ALL=C sort``: raw UTF-8 bytes."""
    return key.encode("utf-8")


def _iter_lines(path: Path) -> Iterator[tuple[int, str, str]]:
    """Yield ``(line_number, key, value)``; ``value`` is ``""`` when the line has only a key."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split(maxsplit=1)
            if not parts:
                raise DataDirError(f"{path}:{lineno}: empty line; every line must be '<key> <value>'")
            yield lineno, parts[0], parts[1].strip() if len(parts) > 1 else ""


def read_map(path: Union[str, os.PathLike]) -> dict[str, str]:
    """Read a ``<key> <value>`` file: the first token is the key, the rest of the line the value.

    Raises :class:`DataDirError` naming file and line for a line without a value or a
    repeated key.
    """
    path = Path(path)
    result: dict[str, str] = {}
    for lineno, key, value in _iter_lines(path):
        if not value:
            raise DataDirError(f"{path}:{lineno}: key {key!r} has no value; expected '<key> <value>'")
        if key in result:
            raise DataDirError(f"{path}:{lineno}: duplicate key {key!r}")
        result[key] = value
    return result


def write_map(path: Union[str, os.PathLike], mapping: Mapping[str, Value]) -> None:
    """Write ``mapping`` sorted by key in C-locale byte order, atomically.

    Sequence values (e.g. the utterance list of ``spk2utt``) are joined with spaces.  The
    file is written to a temporary file in the same directory and moved into place with
    ``os.replace``, so a reader never sees a half-written map.
    """
    path = Path(path)
    lines = []
    for key in sorted(mapping, key=_c_key):
        value = mapping[key]
        value = value if isinstance(value, str) else " ".join(value)
        if not key or any(ch.isspace() for ch in key) or not value.strip() or "\n" in value:
            raise ValueError(f"cannot write {path}: entry {key!r} -> {value!r} is not a one-line '<key> <value>'")
        lines.append(f"{key} {value}\n")
    atomic_write_text(path, "".join(lines))


def utt2spk_to_spk2utt(utt2spk: Mapping[str, str]) -> dict[str, list[str]]:
    """Invert ``utt2spk``; each speaker's utterances are listed in C-locale order."""
    spk2utt: dict[str, list[str]] = {}
    for utt in sorted(utt2spk, key=_c_key):
        spk2utt.setdefault(utt2spk[utt], []).append(utt)
    return spk2utt


@dataclass
class Utterance:
    """One row of a data dir.  ``text=None`` for audio-only dirs (no ``text`` file).

    ``extra`` maps a file name (e.g. ``"utt2dur"``) to this utterance's value in it.
    """

    utt_id: str
    wav: str
    spk: str
    lang: str
    text: Union[str, None] = None
    extra: dict[str, str] = field(default_factory=dict)


def write_data_dir(data_dir: Union[str, os.PathLike], entries: Iterable[Utterance]) -> None:
    """Write ``wav.scp [text] utt2spk spk2utt utt2lang`` and every ``extra`` map.

    Either all entries have a transcript or none has (then no ``text`` file is written);
    a mix would produce a dir whose ids differ between files.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    entries = list(entries)
    maps: dict[str, dict[str, str]] = {"wav.scp": {}, "utt2spk": {}, "utt2lang": {}}
    with_text = [e.text is not None for e in entries]
    if any(with_text) and not all(with_text):
        raise ValueError(f"{data_dir}: some utterances have a transcript and some do not")
    if entries and all(with_text):
        maps["text"] = {}
    for e in entries:
        if e.utt_id in maps["wav.scp"]:
            raise ValueError(f"{data_dir}: duplicate utterance id {e.utt_id!r}")
        maps["wav.scp"][e.utt_id] = e.wav
        maps["utt2spk"][e.utt_id] = e.spk
        maps["utt2lang"][e.utt_id] = e.lang
        if "text" in maps:
            maps["text"][e.utt_id] = e.text
        for name, value in e.extra.items():
            maps.setdefault(name, {})[e.utt_id] = value
    for name, mapping in maps.items():
        write_map(data_dir / name, mapping)
    write_map(data_dir / "spk2utt", utt2spk_to_spk2utt(maps["utt2spk"]))


def _check_sorted_unique(path: Path) -> dict[str, tuple[int, str]]:
    """Return ``{key: (line, value)}`` after checking C-locale order and unique keys."""
    entries: dict[str, tuple[int, str]] = {}
    previous = None
    for lineno, key, value in _iter_lines(path):
        if key in entries:
            raise DataDirError(f"{path}:{lineno}: duplicate id {key!r} (first on line {entries[key][0]})")
        if previous is not None and _c_key(key) < _c_key(previous):
            raise DataDirError(
                f"{path}:{lineno}: not sorted: {key!r} comes after {previous!r}; "
                f"sort it with 'LC_ALL=C sort {path.name}'"
            )
        entries[key] = (lineno, value)
        previous = key
    return entries


def validate_data_dir(data_dir: Union[str, os.PathLike], require_text: bool = True) -> None:
    """Check a data dir and raise :class:`DataDirError` on the first problem found.

    Checks: required files exist; every file is sorted (C locale) with unique ids;
    ``wav.scp``, ``text``, ``utt2spk``, ``utt2lang`` and any other ``utt2*`` file hold the
    same utterance ids; ``spk2utt`` is the inverse of ``utt2spk``; no transcript is
    empty; every wav path in ``wav.scp`` exists (piped commands ending in ``|`` are not
    run).  Relative wav paths are resolved against the current directory, as Kaldi does.
    """
    data_dir = Path(data_dir)
    required = ["wav.scp", "utt2spk", "spk2utt", "utt2lang"] + (["text"] if require_text else [])
    for name in required:
        if not (data_dir / name).is_file():
            raise DataDirError(f"{data_dir}: missing required file {name!r}")
    files = {
        p.name: _check_sorted_unique(p)
        for p in sorted(data_dir.iterdir())
        if p.is_file() and (p.name in required or p.name == "text" or p.name.startswith("utt2"))
    }

    wav = files["wav.scp"]
    for name, entries in files.items():
        if name in ("wav.scp", "spk2utt"):
            continue
        for utt, (lineno, _) in entries.items():
            if utt not in wav:
                raise DataDirError(f"{data_dir / name}:{lineno}: utterance {utt!r} is not in wav.scp")
        for utt, (lineno, _) in wav.items():
            if utt not in entries:
                raise DataDirError(f"{data_dir / 'wav.scp'}:{lineno}: utterance {utt!r} has no entry in {name}")
        for utt, (lineno, value) in entries.items():
            if not value:
                what = "empty transcript" if name == "text" else "empty value"
                raise DataDirError(f"{data_dir / name}:{lineno}: {what} for utterance {utt!r}")

    expected = utt2spk_to_spk2utt({u: v for u, (_, v) in files["utt2spk"].items()})
    for spk, (lineno, value) in files["spk2utt"].items():
        if value.split() != expected.get(spk):
            raise DataDirError(
                f"{data_dir / 'spk2utt'}:{lineno}: speaker {spk!r} does not match utt2spk "
                f"(expected utterances {expected.get(spk)}); regenerate it from utt2spk"
            )
    if len(files["spk2utt"]) != len(expected):
        missing = sorted(set(expected) - set(files["spk2utt"]), key=_c_key)
        raise DataDirError(f"{data_dir / 'spk2utt'}: speakers {missing[:5]} from utt2spk are missing")

    for utt, (lineno, path) in wav.items():
        if not path.endswith("|") and not Path(path).is_file():
            raise DataDirError(f"{data_dir / 'wav.scp'}:{lineno}: wav file {path!r} of {utt!r} does not exist")
