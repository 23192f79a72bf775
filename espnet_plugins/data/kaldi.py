"""Reading, writing and validating Kaldi-style data directories.

A data dir is a set of line-oriented ``<key> <value>`` maps (``wav.scp text utt2spk spk2utt
utt2lang`` plus optional ``utt2*`` files).  Kaldi and ESPnet tools assume every map is
sorted by key in C-locale byte order and that all per-utterance maps hold the same ids;
violations give confusing failures far downstream, so :func:`validate_data_dir` checks
them up front and names the offending file and line, with a hint how to fix it.

Files are read as bytes and decoded per line, so that

* bytes that are not UTF-8 are reported with file, line and byte offset (not a bare
  ``UnicodeDecodeError``);
* Windows line ends (``\\r\\n``) and a UTF-8 byte-order mark are errors by default: Python
  would hide them, but shell tools (``cut``, ``sort``, Kaldi binaries) keep the ``\\r`` or
  the BOM in the last field / the first key.  Callers that write clean copies (the recipe's
  format stage) opt in with ``allow_crlf`` / ``allow_bom`` and get them stripped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence, Union

from espnet_plugins.utils.io import atomic_write_text

__all__ = [
    "BOM",
    "DataDirError",
    "Utterance",
    "read_map",
    "write_map",
    "utt2spk_to_spk2utt",
    "write_data_dir",
    "validate_data_dir",
    "read_lang_list",
]

Value = Union[str, Sequence[str]]
PathLike = Union[str, os.PathLike]
BOM = b"\xef\xbb\xbf"  # UTF-8 byte-order mark, written by some Windows editors


class DataDirError(ValueError):
    """A data dir file is malformed or inconsistent; the message names file and line."""


def _c_key(key: str) -> bytes:
    """Sort key matching ``LC_ALL=C sort``: raw UTF-8 bytes."""
    return key.encode("utf-8")


def _decode_lines(path: Path, allow_crlf: bool = False, allow_bom: bool = False) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` without the line end; raise :class:`DataDirError` on bad bytes.

    Checks: UTF-8 (file, line and byte offset of the first bad byte), a BOM at the start
    of the file, a carriage return at the end of a line (Windows line ends) or inside it
    (old Mac line ends: the whole file would look like one line).
    """
    with open(path, "rb") as f:
        offset = 0  # byte offset of the current line in the file
        for lineno, raw in enumerate(f, 1):
            start = offset
            offset += len(raw)
            if lineno == 1 and raw.startswith(BOM):
                if not allow_bom:
                    raise DataDirError(
                        f"{path}:1: file starts with a UTF-8 byte-order mark (BOM, bytes EF BB BF), which "
                        f"would become part of the first id; remove it with "
                        f"\"sed -i '1s/^\\xEF\\xBB\\xBF//' {path}\" (format_data_dir.py strips it in its copy)"
                    )
                raw, start = raw[len(BOM):], start + len(BOM)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                hint = "iconv -f <encoding> -t utf-8"  # <encoding>: e.g. latin1, cp1252, iso-8859-15
                if lineno == 1 and raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
                    hint = "iconv -f utf-16 -t utf-8"  # UTF-16 BOM: e.g. saved as 'Unicode' on Windows
                raise DataDirError(
                    f"{path}:{lineno}: not UTF-8: byte 0x{raw[e.start]:02x} at byte offset {start + e.start} "
                    f"of the file (byte {e.start + 1} of the line); every file must be UTF-8: convert it with "
                    f"'{hint} {path} > {path.name}.utf8' and move the result over the original"
                ) from None
            line = line[:-1] if line.endswith("\n") else line
            if line.endswith("\r"):
                if not allow_crlf:
                    raise DataDirError(
                        f"{path}:{lineno}: Windows line end (CRLF, '\\r\\n'); convert the file to Unix line ends "
                        f"with \"sed -i 's/\\r$//' {path}\" or 'dos2unix {path}' "
                        f"(format_data_dir.py converts its copy automatically)"
                    )
                line = line[:-1]
            if "\r" in line:
                raise DataDirError(
                    f"{path}:{lineno}: carriage return ('\\r') inside a line (old Mac line ends?); convert the "
                    f"file with \"tr '\\r' '\\n' < {path} > {path.name}.unix\" or 'mac2unix {path}'"
                )
            yield lineno, line


def _iter_lines(path: Path, allow_crlf: bool = False, allow_bom: bool = False) -> Iterator[tuple[int, str, str]]:
    """Yield ``(line_number, key, value)``; ``value`` is ``""`` when the line has only a key."""
    for lineno, line in _decode_lines(path, allow_crlf, allow_bom):
        parts = line.split(maxsplit=1)
        if not parts:
            raise DataDirError(
                f"{path}:{lineno}: empty line; every line must be '<key> <value>' "
                f"(delete blank lines with \"sed -i '/^[[:space:]]*$/d' {path}\")"
            )
        yield lineno, parts[0], parts[1].strip() if len(parts) > 1 else ""


def read_map(path: PathLike, allow_crlf: bool = False, allow_bom: bool = False) -> dict[str, str]:
    """Read a ``<key> <value>`` file: the first token is the key, the rest of the line the value.

    Raises :class:`DataDirError` naming file and line for a line without a value, a
    repeated key, bytes that are not UTF-8, a Windows line end (unless ``allow_crlf``: the
    ``\\r`` is stripped) or a leading byte-order mark (unless ``allow_bom``: it is stripped).
    """
    path = Path(path)
    result: dict[str, str] = {}
    for lineno, key, value in _iter_lines(path, allow_crlf, allow_bom):
        if not value:
            raise DataDirError(f"{path}:{lineno}: key {key!r} has no value; expected '<key> <value>'")
        if key in result:
            raise DataDirError(f"{path}:{lineno}: duplicate key {key!r}; keys must be unique")
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


def _check_sorted_unique(path: Path, allow_crlf: bool = False, allow_bom: bool = False) -> dict[str, tuple[int, str]]:
    """Return ``{key: (line, value)}`` after checking C-locale order and unique keys."""
    entries: dict[str, tuple[int, str]] = {}
    previous = None
    for lineno, key, value in _iter_lines(path, allow_crlf, allow_bom):
        if key in entries:
            raise DataDirError(
                f"{path}:{lineno}: duplicate id {key!r} (first on line {entries[key][0]}); ids must be unique: "
                f"remove or rename one of them (in every file of the dir)"
            )
        if previous is not None and _c_key(key) < _c_key(previous):
            raise DataDirError(
                f"{path}:{lineno}: not sorted: {key!r} comes after {previous!r}; "
                f"sort it with 'LC_ALL=C sort {path.name} -o {path.name}' (byte order, not your locale's)"
            )
        entries[key] = (lineno, value)
        previous = key
    return entries


def _check_segments(path: Path, segments: Mapping[str, tuple[int, str]],
                    wav: Mapping[str, tuple[int, str]]) -> None:
    """Each ``segments`` line is ``<utt> <recording in wav.scp> <start> <end>`` with 0 <= start < end (or end -1)."""
    for utt, (lineno, value) in segments.items():
        fields = value.split()
        if len(fields) != 3:
            raise DataDirError(f"{path}:{lineno}: expected '<utt> <recording> <start> <end>' (seconds), got "
                               f"{(utt + ' ' + value).strip()!r}")
        rec, start, end = fields
        try:
            t0, t1 = float(start), float(end)
        except ValueError:
            raise DataDirError(f"{path}:{lineno}: start/end {start!r} {end!r} of {utt!r} are not numbers "
                               f"(seconds)") from None
        if t0 < 0 or (t1 != -1 and t1 <= t0):
            raise DataDirError(f"{path}:{lineno}: bad times {start} {end} for {utt!r}; need 0 <= start < end "
                               f"(or end -1 for the end of the recording)")
        if rec not in wav:
            raise DataDirError(f"{path}:{lineno}: recording {rec!r} of segment {utt!r} is not in wav.scp; add "
                               f"the recording to wav.scp or drop the segment")


def read_lang_list(lang_list: Union[PathLike, Sequence[str]], allow_crlf: bool = True,
                   allow_bom: bool = False) -> list[str]:
    """Languages of a ``lang_list`` file (one per line, blank lines skipped) or of a list.

    Same rules as training's ``--lang_list`` reader (``espnet_plugins.tasks.asr``), which
    strips each line (hence ``allow_crlf``), plus file:line errors for duplicates (training
    rejects them without a line) and for a line with several tokens (training would take
    ``hi en`` as one language name that no utterance matches).
    """
    if isinstance(lang_list, (str, os.PathLike)):
        path = Path(lang_list)
        if not path.is_file():
            raise DataDirError(f"{path}: lang_list not found (a file with one language per line)")
        langs: dict[str, int] = {}
        for lineno, line in _decode_lines(path, allow_crlf, allow_bom):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) > 1:
                raise DataDirError(f"{path}:{lineno}: {line.strip()!r}: one language per line")
            if tokens[0] in langs:
                raise DataDirError(f"{path}:{lineno}: duplicate language {tokens[0]!r} (first on line "
                                   f"{langs[tokens[0]]})")
            langs[tokens[0]] = lineno
        return list(langs)
    langs_list = [str(x) for x in lang_list]
    if len(set(langs_list)) != len(langs_list):
        raise DataDirError(f"lang_list has duplicate languages: {langs_list}")
    return langs_list


def validate_data_dir(
    data_dir: PathLike,
    require_text: bool = True,
    lang_list: Union[PathLike, Sequence[str], None] = None,
    allow_crlf: bool = False,
    allow_bom: bool = False,
    allow_segments: bool = False,
) -> None:
    """Check a data dir and raise :class:`DataDirError` on the first problem found.

    Checks: required files exist; every file is UTF-8 with Unix line ends and no BOM
    (``allow_crlf`` / ``allow_bom`` accept those, for callers that write clean copies);
    every file is sorted (C locale) with unique ids; ``wav.scp``, ``text``, ``utt2spk``,
    ``utt2lang`` and any other ``utt2*`` file hold the same utterance ids; ``spk2utt`` is
    the inverse of ``utt2spk``; no transcript is empty; every language in ``utt2lang`` is
    in ``lang_list`` (a file with one language per line, or a list) when one is given;
    every wav path in ``wav.scp`` exists (piped commands ending in ``|`` are not run).
    Relative wav paths are resolved against the current directory, as Kaldi does.
    Audio content is not opened here (``local/format_data_dir.py`` does).
    ``allow_segments``: a ``segments`` file (``<utt> <recording> <start> <end>``, seconds,
    end ``-1`` = to the end) is accepted; ``wav.scp`` then holds recordings and the
    per-utterance files are checked against the segment ids (the format stage cuts them).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataDirError(f"{data_dir}: not a directory")
    required = ["wav.scp", "utt2spk", "spk2utt", "utt2lang"] + (["text"] if require_text else [])
    for name in required:
        if not (data_dir / name).is_file():
            hint = {
                "spk2utt": "; create it with 'utils/utt2spk_to_spk2utt.pl utt2spk > spk2utt'",
                "utt2lang": "; write one '<utt> <language>' line per utterance, sorted like wav.scp",
                "utt2spk": "; without speaker labels, map every utterance to itself ('<utt> <utt>')",
                "text": "; give the transcripts, or validate an audio-only dir with --no_text",
            }.get(name, "")
            raise DataDirError(f"{data_dir}: missing required file {name!r}{hint}")
    has_segments = (data_dir / "segments").is_file()
    if has_segments and not allow_segments:
        # wav.scp then holds recordings, not utterances: every id check below would fail confusingly
        raise DataDirError(
            f"{data_dir / 'segments'}: data dirs with segments are not supported here; format the dir with "
            f"local/format_data_dir.py (it cuts each recording's segments from one decode) or import it with "
            f"local/data_prep/import_kaldi_dir.py, which cuts the segments into per-utterance audio"
        )
    # the lang_list is read by training, not copied by format: CRLF is harmless there, a BOM is not
    langs = read_lang_list(lang_list) if lang_list is not None else None
    files = {
        p.name: _check_sorted_unique(p, allow_crlf, allow_bom)
        for p in sorted(data_dir.iterdir())
        if p.is_file() and (p.name in required or p.name == "text" or p.name.startswith("utt2")
                            or (has_segments and p.name == "segments"))
    }

    wav = files["wav.scp"]
    utts, id_file = wav, "wav.scp"
    if has_segments:
        utts, id_file = files["segments"], "segments"
        _check_segments(data_dir / "segments", utts, wav)
    mismatch_hint = ("every per-utterance file must list the same ids "
                     "(Kaldi's utils/fix_data_dir.sh keeps only the common ones)")
    for name, entries in files.items():
        if name in ("wav.scp", "spk2utt", "segments"):
            continue
        for utt, (lineno, _) in entries.items():
            if utt not in utts:
                add = "add its audio to wav.scp" if id_file == "wav.scp" else "add its segment to segments"
                raise DataDirError(
                    f"{data_dir / name}:{lineno}: utterance {utt!r} is not in {id_file}; {add} "
                    f"or delete the line; {mismatch_hint}"
                )
        for utt, (lineno, _) in utts.items():
            if utt not in entries:
                raise DataDirError(
                    f"{data_dir / id_file}:{lineno}: utterance {utt!r} has no entry in {name}; add it to {name} "
                    f"or delete the utterance from {id_file}; {mismatch_hint}"
                )
        for utt, (lineno, value) in entries.items():
            if not value:
                what = "empty transcript" if name == "text" else "empty value"
                raise DataDirError(
                    f"{data_dir / name}:{lineno}: {what} for utterance {utt!r}; write it after the id "
                    f"('<utt> <value>') or drop the utterance from every file"
                )

    expected = utt2spk_to_spk2utt({u: v for u, (_, v) in files["utt2spk"].items()})
    for spk, (lineno, value) in files["spk2utt"].items():
        if value.split() != expected.get(spk):
            raise DataDirError(
                f"{data_dir / 'spk2utt'}:{lineno}: speaker {spk!r} does not match utt2spk "
                f"(expected utterances {expected.get(spk)}); regenerate it from utt2spk with "
                f"'utils/utt2spk_to_spk2utt.pl utt2spk > spk2utt'"
            )
    if len(files["spk2utt"]) != len(expected):
        missing = sorted(set(expected) - set(files["spk2utt"]), key=_c_key)
        raise DataDirError(
            f"{data_dir / 'spk2utt'}: speakers {missing[:5]} from utt2spk are missing; regenerate it with "
            f"'utils/utt2spk_to_spk2utt.pl utt2spk > spk2utt'"
        )

    if langs is not None:
        known = set(langs)
        for utt, (lineno, value) in files["utt2lang"].items():
            unknown = [x for x in value.split() if x not in known]  # "hi en": code-switched, both must be known
            if unknown:
                n = sum(unknown[0] in v.split() for _, v in files["utt2lang"].values())
                where = lang_list if isinstance(lang_list, (str, os.PathLike)) else "the lang_list"
                raise DataDirError(
                    f"{data_dir / 'utt2lang'}:{lineno}: language {unknown[0]!r} of utterance {utt!r} is not in "
                    f"{where} (known: {' '.join(langs) or 'none'}); {n} utterance(s) have it: add it to the "
                    f"lang_list (one language per line; a model trained without it cannot use it) or drop these "
                    f"utterances from the data dir"
                )

    for utt, (lineno, path) in wav.items():
        if not path.endswith("|") and not Path(path).is_file():
            raise DataDirError(
                f"{data_dir / 'wav.scp'}:{lineno}: wav file {path!r} of {utt!r} does not exist; fix the path "
                f"(relative paths are taken from the current directory, {os.getcwd()}) or drop the utterance"
            )
