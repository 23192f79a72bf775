"""Import downloaded corpora into this toolkit's Kaldi data dirs.

Two importers, each behind a thin CLI in ``local/data_prep/``:

* :func:`import_common_voice` — a Common Voice release (``<cv_root>/<lang>/<subset>.tsv`` +
  ``clips/*.mp3``);
* :func:`import_kaldi_dir` — any Kaldi data dir (``wav.scp text utt2spk``, optional
  ``segments``) plus its own ``utt2lang`` or one language for all utterances.

Both write ``wav.scp text utt2spk spk2utt utt2lang`` through
:mod:`espnet_plugins.data.kaldi` (sorted, validated), with transcripts passed through
:func:`~espnet_plugins.text.normalize.normalize_text`, and deliver audio as 16 kHz mono
16-bit wav: where a source needs converting (mp3, other rates, stereo, segments) the
``wav.scp`` entry is a sox pipe, so nothing is decoded or copied at import time and the
source corpus is only read.  ESPnet's ``sound`` reader cannot open pipes; the recipe's
format stage (or the ``kaldi_ark`` data type, via kaldiio) reads them.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import soundfile

from espnet_plugins.data.kaldi import DataDirError, Utterance, read_map, validate_data_dir, write_data_dir
from espnet_plugins.text.normalize import normalize_text

__all__ = ["CorpusError", "DEFAULT_FS", "CV_SUBSETS", "sox_command", "probe_audio", "import_common_voice",
           "import_kaldi_dir"]

log = logging.getLogger(__name__)

DEFAULT_FS = 16000
CV_SUBSETS = ("train", "dev", "test", "validated")
_CV_REQUIRED_COLUMNS = ("client_id", "path", "sentence")
PathLike = Union[str, os.PathLike]


class CorpusError(ValueError):
    """A source corpus is malformed or unusable; the message names the file and line."""


def sox_command(source: str, fs: Optional[int] = None, trim: Optional[tuple[str, Optional[str]]] = None) -> str:
    """``wav.scp`` pipe that outputs ``source`` as wav on stdout.

    ``source`` is a file path or a Kaldi pipe (a command ending in ``|`` that writes wav).
    ``fs``: also convert to ``fs`` Hz, mono, 16 bit.  ``trim``: ``(start, end)`` seconds,
    ``end=None`` for "to the end of the recording" (Kaldi's ``-1``).
    """
    if source.endswith("|"):
        # -V1: reading wav from a pipe, sox warns on every utterance that it cannot fix the
        # output header's length (readers go by the data actually written); errors still show.
        head = [source[:-1].rstrip(), "| sox -V1 -t wav -"]
    else:
        head = ["sox", shlex.quote(source)]
    conversion = ["-r", str(fs), "-c", "1", "-b", "16"] if fs else []
    effects = []
    if trim:
        start, end = trim
        effects = ["trim", start] + ([f"={end}"] if end is not None else [])
    return " ".join([*head, "-t", "wav", *conversion, "-", *effects, "|"])


def probe_audio(path: PathLike) -> tuple[int, int]:
    """``(sample_rate, channels)`` from the file header: soundfile first, ``soxi`` for formats
    libsndfile cannot read (sox reads e.g. mp3 on every libsndfile version)."""
    try:
        info = soundfile.info(str(path))
        return int(info.samplerate), int(info.channels)
    except (RuntimeError, soundfile.LibsndfileError):
        pass
    try:
        rate = subprocess.run(["soxi", "-r", str(path)], capture_output=True, text=True, check=True).stdout
        channels = subprocess.run(["soxi", "-c", str(path)], capture_output=True, text=True, check=True).stdout
        return int(float(rate)), int(channels)
    except (OSError, subprocess.CalledProcessError, ValueError) as e:
        raise CorpusError(f"cannot read the audio header of {path} with soundfile or soxi ({e})") from e


def _short_hash(text: str) -> str:
    # 12 hex digits = 48 bits: collision-free in practice for Common Voice's ~10^5 speakers.
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def _line_of(path: Path, key: str) -> int:
    """Line number of ``key`` in a Kaldi map (only used to word error messages)."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.split(maxsplit=1)[:1] == [key]:
                return lineno
    return 0


def _check_outdir(outdir: PathLike, source: PathLike) -> None:
    """Refuse an output dir inside the source (never modified) or one that is not a data dir
    (it is replaced as a whole, see :func:`_write_validated`)."""
    outdir, source = Path(outdir).resolve(), Path(source).resolve()
    if outdir == source or source in outdir.parents:
        raise CorpusError(f"--outdir {outdir} is (inside) the source {source}; the source is never modified, "
                          "choose another output dir")
    if outdir.exists() and any(outdir.iterdir()) and not (outdir / "wav.scp").is_file():
        raise CorpusError(f"{outdir}: exists, is not empty and is not a data dir (no wav.scp); "
                          "choose a new or empty --outdir")


def _write_validated(outdir: PathLike, entries: Sequence[Utterance]) -> None:
    """Write ``entries`` as a data dir, validate it, then move it into place.

    Written into a temporary sibling first, so an interrupted or failing import never
    leaves a half-written ``outdir`` and a rerun replaces the old one completely (stale
    files such as an old ``segments`` cannot survive).
    """
    outdir = Path(outdir).absolute()
    outdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=outdir.parent, prefix=f".{outdir.name}.tmp"))
    try:
        write_data_dir(tmp, entries)
        validate_data_dir(tmp, require_text=entries[0].text is not None)
        if outdir.exists():
            shutil.rmtree(outdir)
        os.replace(tmp, outdir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _read_cv_tsv(tsv: Path, cv_lang: str, lang: Optional[str], max_utts: Optional[int], fs: int) -> list[Utterance]:
    clips = tsv.parent / "clips"
    entries: list[Utterance] = []
    seen: dict[str, int] = {}
    empty = 0
    with open(tsv, encoding="utf-8", newline="") as f:
        # Common Voice tsvs are not quoted: sentences may contain bare '"'.
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        missing = [c for c in _CV_REQUIRED_COLUMNS if not header or c not in header]
        if missing:
            raise CorpusError(f"{tsv}:1: header lacks column(s) {', '.join(missing)}; expected a Common Voice "
                              f"tsv header such as 'client_id<TAB>path<TAB>sentence...', got {header}")
        col = {name: i for i, name in enumerate(header)}
        needed = max(col[c] for c in _CV_REQUIRED_COLUMNS) + 1
        for row in reader:
            lineno = reader.line_num
            if max_utts is not None and len(entries) >= max_utts:
                break
            if len(row) < needed:
                raise CorpusError(f"{tsv}:{lineno}: {len(row)} tab-separated fields, expected {len(header)} "
                                  "as in the header; is the line truncated?")
            client, clip, sentence = (row[col[c]].strip() for c in _CV_REQUIRED_COLUMNS)
            if not client or not clip:
                raise CorpusError(f"{tsv}:{lineno}: empty client_id or path")
            text = normalize_text(sentence)
            if not text:
                empty += 1
                continue
            clip_path = (clips / clip).absolute()
            if not clip_path.is_file():
                raise CorpusError(f"{tsv}:{lineno}: clip {clip_path} does not exist; is the release fully "
                                  "extracted (clips/ next to the tsv)?")
            spk = _short_hash(client)
            utt = f"{spk}-{Path(clip).stem}"
            if utt in seen:
                raise CorpusError(f"{tsv}:{lineno}: clip {clip!r} of this speaker already listed on line {seen[utt]}")
            seen[utt] = lineno
            locale = row[col["locale"]].strip() if "locale" in col and col["locale"] < len(row) else ""
            entries.append(Utterance(utt_id=utt, wav=sox_command(str(clip_path), fs), spk=spk,
                                     lang=lang or locale or cv_lang, text=text))
    if empty:
        log.warning("%s: skipped %d sentences that are empty after normalisation", tsv, empty)
    return entries


def import_common_voice(cv_root: PathLike, langs: Sequence[str], subset: str, outdir: PathLike,
                        lang_map: Optional[Mapping[str, str]] = None, max_utts: Optional[int] = None,
                        fs: int = DEFAULT_FS) -> int:
    """Import ``<cv_root>/<lang>/<subset>.tsv`` of every language in ``langs`` into ``outdir``.

    * utterance id ``<speaker>-<clip stem>``, speaker = 12-hex hash of ``client_id``
      (speaker-prefixed ids keep ``utt2spk`` and ``spk2utt`` in the same sort order);
    * ``utt2lang``: ``lang_map[lang]`` if given, else the tsv's ``locale`` column, else the
      directory name;
    * ``wav.scp``: ``sox <clip.mp3> -t wav -r 16000 -c 1 -b 16 - |``;
    * ``max_utts``: at most this many utterances per language, the first in tsv order
      (deterministic); rows whose sentence normalises to nothing are skipped.

    Returns the number of utterances written.
    """
    if subset not in CV_SUBSETS:
        raise CorpusError(f"subset {subset!r} is not one of {', '.join(CV_SUBSETS)}")
    if max_utts is not None and max_utts < 1:
        raise CorpusError(f"max_utts must be >= 1, got {max_utts}")
    cv_root = Path(cv_root)
    if not cv_root.is_dir():
        raise CorpusError(f"{cv_root}: not found; Common Voice is downloaded by hand (licence): get each language "
                          "from https://commonvoice.mozilla.org/datasets and extract it so that "
                          "<cv_root>/<lang>/<subset>.tsv exists")
    _check_outdir(outdir, cv_root)
    lang_map = dict(lang_map or {})
    unknown = sorted(set(lang_map) - set(langs))
    if unknown:
        raise CorpusError(f"lang_map names {unknown}, which are not among the imported languages {list(langs)}")
    entries: list[Utterance] = []
    for cv_lang in langs:
        tsv = cv_root / cv_lang / f"{subset}.tsv"
        if not tsv.is_file():
            raise CorpusError(f"{tsv}: not found; expected the Common Voice layout "
                              f"<cv_root>/<lang>/{{{','.join(CV_SUBSETS)}}}.tsv with clips/ beside it")
        found = _read_cv_tsv(tsv, cv_lang, lang_map.get(cv_lang), max_utts, fs)
        log.info("%s: %d utterances", tsv, len(found))
        entries += found
    if not entries:
        raise CorpusError(f"no utterances found in {cv_root} for {list(langs)} / {subset}")
    _write_validated(outdir, entries)
    return len(entries)


def _read_source_map(path: Path, required: bool) -> Optional[dict[str, str]]:
    if not path.is_file():
        if required:
            raise CorpusError(f"{path}: missing; a Kaldi data dir needs wav.scp and utt2spk")
        return None
    try:
        return read_map(path)
    except DataDirError as e:
        raise CorpusError(str(e)) from e


def _read_segments(path: Path, recordings: Mapping[str, str]) -> dict[str, tuple[str, str, Optional[str]]]:
    """``{utt: (recording, start, end)}``; ``end`` is ``None`` for Kaldi's ``-1``."""
    segments = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if len(fields) != 4:
                raise CorpusError(f"{path}:{lineno}: expected '<utt> <recording> <start> <end>', got {line.strip()!r}")
            utt, rec, start, end = fields
            try:
                t0, t1 = float(start), float(end)
            except ValueError:
                raise CorpusError(f"{path}:{lineno}: start/end {start!r} {end!r} are not numbers (seconds)") from None
            if t0 < 0 or (t1 != -1 and t1 <= t0):
                raise CorpusError(f"{path}:{lineno}: bad times {start}..{end}; need 0 <= start < end (or end -1)")
            if rec not in recordings:
                raise CorpusError(f"{path}:{lineno}: recording {rec!r} is not in wav.scp")
            if utt in segments:
                raise CorpusError(f"{path}:{lineno}: duplicate utterance {utt!r}")
            segments[utt] = (rec, start, None if t1 == -1 else end)
    return segments


def _check_same_ids(src: Path, name: str, mapping: Mapping[str, str], utts: Sequence[str], id_file: str) -> None:
    utt_set = set(utts)
    for key in mapping:
        if key not in utt_set:
            raise CorpusError(f"{src / name}:{_line_of(src / name, key)}: utterance {key!r} is not in {id_file}")
    for utt in utts:
        if utt not in mapping:
            raise CorpusError(f"{src / id_file}:{_line_of(src / id_file, utt)}: utterance {utt!r} has no entry "
                              f"in {src / name}")


def import_kaldi_dir(src: PathLike, outdir: PathLike, lang: Optional[str] = None, resample: bool = False,
                     fs: int = DEFAULT_FS, prefix: str = "") -> int:
    """Import the Kaldi data dir ``src`` into ``outdir`` (``src`` is only read).

    * Language: ``src/utt2lang`` or, if it has none, ``lang`` for every utterance (giving
      both is an error: say which one you mean by removing one).
    * ``wav.scp`` entries may be paths (relative ones are resolved against the current
      directory, as Kaldi does, and written absolute) or pipes ending in ``|``.
    * Paths are probed (header only); a file that is not ``fs`` Hz mono is an error
      unless ``resample``, which wraps it in a sox conversion pipe.  Pipes cannot be
      probed without running them, so with ``resample`` they are always followed by a sox
      conversion (a no-op on audio that is already right).
    * ``segments``: each utterance becomes its own sox ``trim`` pipe, so the output is a
      plain one-entry-per-utterance dir.
    * Transcripts are normalised; utterances whose text normalises to nothing are dropped
      (with a warning).  A dir without ``text`` is imported as audio-only.
    * ``prefix`` is prepended to utterance and speaker ids (to merge corpora whose ids
      collide).

    Returns the number of utterances written.
    """
    src = Path(src)
    if not src.is_dir():
        raise CorpusError(f"{src}: not a directory")
    _check_outdir(outdir, src)
    wav_scp = _read_source_map(src / "wav.scp", required=True)
    utt2spk = _read_source_map(src / "utt2spk", required=True)
    text = _read_source_map(src / "text", required=False)
    utt2lang = _read_source_map(src / "utt2lang", required=False)
    if utt2lang is not None and lang:
        raise CorpusError(f"{src / 'utt2lang'} exists and a language ({lang!r}) was given too; "
                          "drop --lang to keep the dir's own labels, or remove utt2lang from a copy")
    if utt2lang is None and not lang:
        raise CorpusError(f"{src}: has no utt2lang; give the language of all its utterances (--lang <code>)")
    if any(ch.isspace() for ch in prefix):
        raise CorpusError(f"prefix {prefix!r} must not contain whitespace")

    segments = _read_segments(src / "segments", wav_scp) if (src / "segments").is_file() else None
    id_file = "segments" if segments is not None else "wav.scp"
    utts = list(segments if segments is not None else wav_scp)
    for name, mapping in (("utt2spk", utt2spk), ("text", text), ("utt2lang", utt2lang)):
        if mapping is not None:
            _check_same_ids(src, name, mapping, utts, id_file)

    # Per recording: the source to read and whether it must be converted.
    sources: dict[str, tuple[str, bool]] = {}
    for rec, entry in wav_scp.items():
        if entry.endswith("|"):
            sources[rec] = (entry, resample)
            continue
        path = Path(entry).absolute()
        if not path.is_file():
            raise CorpusError(f"{src / 'wav.scp'}:{_line_of(src / 'wav.scp', rec)}: audio file {path} of "
                              f"{rec!r} does not exist (relative paths are taken from the current directory)")
        try:
            rate, channels = probe_audio(path)
        except CorpusError as e:
            raise CorpusError(f"{src / 'wav.scp'}:{_line_of(src / 'wav.scp', rec)}: {e}") from None
        convert = (rate, channels) != (fs, 1)
        if convert and not resample:
            raise CorpusError(f"{src / 'wav.scp'}:{_line_of(src / 'wav.scp', rec)}: {path} is {rate} Hz with "
                              f"{channels} channel(s), expected {fs} Hz mono; rerun with --resample to convert "
                              "it on the fly")
        sources[rec] = (str(path), convert)

    entries = []
    dropped = []
    for utt in utts:
        transcript = None
        if text is not None:
            transcript = normalize_text(text[utt])
            if not transcript:
                dropped.append(utt)
                continue
        if segments is not None:
            rec, start, end = segments[utt]
            source, convert = sources[rec]
            wav = sox_command(source, fs if convert else None, trim=(start, end))
        else:
            source, convert = sources[utt]
            wav = sox_command(source, fs) if convert else source
        entries.append(Utterance(utt_id=prefix + utt, wav=wav, spk=prefix + utt2spk[utt],
                                 lang=" ".join(utt2lang[utt].split()) if utt2lang is not None else lang,
                                 text=transcript))
    if dropped:
        log.warning("%s: dropped %d utterances whose transcript is empty after normalisation (e.g. %s)",
                    src / "text", len(dropped), ", ".join(dropped[:3]))
    if not entries:
        raise CorpusError(f"{src}: no utterances left to import")
    _write_validated(outdir, entries)
    return len(entries)
