"""Importers and download plans for public multilingual Indic corpora.

Each ``import_*`` function reads one corpus in its *published* layout and writes one Kaldi
data dir (``wav.scp text utt2spk spk2utt utt2lang``, sorted, validated, transcripts
normalised) for a subset and a list of languages, like
:func:`espnet_plugins.data.import_corpora.import_common_voice`:

* Kathbath (AI4Bharat): the tar archives ESPnet's ``egs2/kathbath`` downloads, extracted
  to ``kb_data_{clean,noisy}_m4a/<language>/<split>/{audio/*.m4a,transcription_n2w.txt}``;
* FLEURS (``google/fleurs`` on the hub): ``data/<config>/<split>.tsv`` and
  ``data/<config>/audio/<split>.tar.gz`` extracted beside it;
* IndicVoices (``ai4bharat/IndicVoices``, gated): ``<language>/<split>-*.parquet`` with the
  audio embedded (``audio_filepath.bytes``); the audio is written out once as files;
* MUCS 2021 subtask 1: ``<Language>/<split>/{transcription.txt,audio/*.wav}`` (8 kHz).

Audio that is not 16 kHz mono wav/flac gets a conversion pipe in ``wav.scp`` (ffmpeg for
m4a, sox otherwise), which the recipe's format stage runs once.

Why not lhotse's corpus recipes: its FLEURS recipe streams through the ``datasets`` loader
script (which ``datasets`` 4 no longer runs), it has no Kathbath, IndicVoices or MUCS
recipe, and it writes lhotse manifests, not the Kaldi dirs this toolkit's stages read.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import soundfile

from espnet_plugins.data.import_corpora import (DEFAULT_FS, CorpusError, _check_outdir, _write_validated,
                                                probe_audio, sox_command)
from espnet_plugins.data.kaldi import Utterance
from espnet_plugins.text.normalize import normalize_text

__all__ = ["KATHBATH_LANGS", "KATHBATH_SUBSETS", "KATHBATH_URLS", "FLEURS_LANGS", "FLEURS_INDIC", "FLEURS_SUBSETS",
           "INDICVOICES_LANGS", "INDICVOICES_SUBSETS", "MUCS_LANGS", "MUCS_SUBSETS", "ffmpeg_command",
           "kathbath_archives", "import_kathbath", "import_fleurs", "import_indicvoices", "import_mucs"]

log = logging.getLogger(__name__)
PathLike = Union[str, os.PathLike]

# --- Kathbath ------------------------------------------------------------------------------
KATHBATH_PAGE = "https://github.com/AI4Bharat/IndicSUPERB"
KATHBATH_LANGS = {"bengali": "bn", "gujarati": "gu", "hindi": "hi", "kannada": "kn", "malayalam": "ml",
                  "marathi": "mr", "odia": "or", "punjabi": "pa", "sanskrit": "sa", "tamil": "ta", "telugu": "te",
                  "urdu": "ur"}
# subset -> (release tree, split dir).  The release calls test_unknown "test" (ESPnet's
# egs2/kathbath test sets are test, test_known, test_noisy, test_known_noisy).
KATHBATH_SUBSETS = {"train": ("clean", "train"), "valid": ("clean", "valid"),
                    "test_known": ("clean", "test_known"), "test_unknown": ("clean", "test"),
                    "test_known_noisy": ("noisy", "test_known"), "test_unknown_noisy": ("noisy", "test")}
_KB_BASE = "https://indic-asr-public.objectstore.e2enetworks.net/indic-superb/kathbath"
# The URLs of ESPnet's egs2/kathbath/asr1/local/data.sh; each archive holds every language.
KATHBATH_URLS = {"train": ["clean/train_audio.tar", "clean/transcripts_n2w.tar"],
                 "valid": ["clean/valid_audio.tar", "clean/transcripts_n2w.tar"],
                 "test_known": ["clean/testkn_audio.tar", "clean/transcripts_n2w.tar"],
                 "test_unknown": ["clean/testunk_audio.tar", "clean/transcripts_n2w.tar"],
                 "test_known_noisy": ["noisy/testkn_audio.tar", "noisy/transcripts_n2w.tar"],
                 "test_unknown_noisy": ["noisy/testunk_audio.tar", "noisy/transcripts_n2w.tar"]}


_KB_NAME = re.compile(r"^[^-]+-([^-]+)-[A-Za-z]+$")  # <unique id>-<speaker id>-<gender>
_SAFE_ID = re.compile(r"[^A-Za-z0-9_.-]+")


def kathbath_archives(subsets: Iterable[str], base_url: str = _KB_BASE) -> list[tuple[str, str]]:
    """``[(url, local name)]`` to download for ``subsets`` (each archive once); the local name
    keeps the tree (``clean_train_audio.tar``) because clean and noisy archives share names."""
    out: list[tuple[str, str]] = []
    for subset in subsets:
        if subset not in KATHBATH_URLS:
            raise CorpusError(f"Kathbath subset {subset!r} is not one of {', '.join(KATHBATH_URLS)}")
        for rel in KATHBATH_URLS[subset]:
            item = (f"{base_url.rstrip('/')}/{rel}", rel.replace("/", "_"))
            if item not in out:
                out.append(item)
    return out


def ffmpeg_command(path: PathLike, fs: int = DEFAULT_FS) -> str:
    """``wav.scp`` pipe decoding ``path`` (m4a, opus, ...) with ffmpeg to ``fs`` Hz mono 16-bit wav."""
    return (f"ffmpeg -nostdin -loglevel error -i {shlex.quote(str(path))} -ac 1 -ar {fs} -c:a pcm_s16le "
            "-f wav - |")


def _resolve_langs(langs: Sequence[str], table: dict, corpus: str) -> list[tuple[str, str]]:
    """``[(corpus language name, code)]``: ``langs`` may give names or codes."""
    by_code = {code: name for name, code in table.items()}
    out = []
    for lang in langs:
        if lang in table:
            out.append((lang, table[lang]))
        elif lang in by_code:
            out.append((by_code[lang], lang))
        else:
            raise CorpusError(f"{corpus} has no language {lang!r}; choose from "
                              + ", ".join(f"{code} ({name})" for name, code in table.items()))
    return out


def _read_transcripts(path: Path) -> Iterable[tuple[int, str, str]]:
    """``(line, key, text)`` of a ``<key><whitespace><transcript>`` file."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split(maxsplit=1)
            yield lineno, fields[0], fields[1] if len(fields) > 1 else ""


def _finish(entries: list[Utterance], outdir: PathLike, what: str, empty: int) -> int:
    if empty:
        log.warning("%s: skipped %d utterances whose transcript is empty after normalisation", what, empty)
    if not entries:
        raise CorpusError(f"no utterances found for {what}")
    _write_validated(outdir, entries)
    return len(entries)


def import_kathbath(root: PathLike, langs: Sequence[str], subset: str, outdir: PathLike,
                    max_utts: Optional[int] = None, fs: int = DEFAULT_FS) -> int:
    """Import one Kathbath subset (``KATHBATH_SUBSETS``) of ``langs`` (names or codes).

    ``root`` holds ``kb_data_clean_m4a/`` (and ``kb_data_noisy_m4a/`` for the noisy tests),
    as the published archives extract.  File names are ``<unique id>-<speaker id>-<gender>``
    (AI4Bharat's IndicSUPERB ``utilities/structure.py``): speaker ``kb-<code>-<speaker id>``,
    utterance ``<speaker>-<file stem>``; a name of another shape is its own speaker.  Audio
    is looked up in ``audio/`` (and below it, for copies that nest it per speaker) and
    decoded by ffmpeg pipes (m4a).
    """
    if subset not in KATHBATH_SUBSETS:
        raise CorpusError(f"Kathbath subset {subset!r} is not one of {', '.join(KATHBATH_SUBSETS)}")
    root = Path(root)
    _check_outdir(outdir, root)
    tree, split = KATHBATH_SUBSETS[subset]
    entries: list[Utterance] = []
    empty = 0
    for name, code in _resolve_langs(langs, KATHBATH_LANGS, "Kathbath"):
        split_dir = root / f"kb_data_{tree}_m4a" / name / split
        trans = split_dir / "transcription_n2w.txt"
        if not trans.is_file():
            raise CorpusError(f"{trans}: not found; expected Kathbath's layout kb_data_{tree}_m4a/<language>/"
                              f"<split>/{{audio/*.m4a,transcription_n2w.txt}} under {root}: download and extract "
                              f"the archives (run.sh stage 0, or {KATHBATH_PAGE})")
        n = 0
        seen: dict[str, int] = {}
        nested: Optional[dict] = None
        for lineno, key, text in _read_transcripts(trans):
            if max_utts is not None and n >= max_utts:
                break
            stem = key[:-4] if key.endswith(".m4a") else key
            audio = split_dir / "audio" / f"{stem}.m4a"
            if not audio.is_file():
                if nested is None:
                    nested = {p.name: p for p in (split_dir / "audio").rglob("*.m4a")}
                audio = nested.get(f"{stem}.m4a")
            if audio is None:
                raise CorpusError(f"{trans}:{lineno}: audio {stem}.m4a not found under {split_dir / 'audio'}; is "
                                  "the audio archive extracted into the same tree?")
            if stem in seen:
                raise CorpusError(f"{trans}:{lineno}: {key!r} already listed on line {seen[stem]}")
            seen[stem] = lineno
            norm = normalize_text(text)
            if not norm:
                empty += 1
                continue
            match = _KB_NAME.match(stem)
            spk = f"kb-{code}-{_SAFE_ID.sub('_', match.group(1))}" if match else f"kb-{code}-{stem}"
            utt = f"{spk}-{stem}" if match else spk
            entries.append(Utterance(utt_id=utt, wav=ffmpeg_command(audio.absolute(), fs), spk=spk, lang=code,
                                     text=norm))
            n += 1
        log.info("%s: %d utterances", trans, n)
    return _finish(entries, outdir, f"Kathbath {subset} {list(langs)} in {root}", empty)


# --- FLEURS --------------------------------------------------------------------------------
FLEURS_REPO = "google/fleurs"
FLEURS_SUBSETS = ("train", "dev", "test")
# The FLEURS configs of languages of the Indian subcontinent (code = part before the region).
FLEURS_INDIC = ("as_in", "bn_in", "gu_in", "hi_in", "kn_in", "ml_in", "mr_in", "ne_np", "or_in", "pa_in", "sd_in",
                "ta_in", "te_in", "ur_pk")
FLEURS_LANGS = {cfg: cfg.split("_")[0] for cfg in FLEURS_INDIC}


def _fleurs_config(lang: str) -> str:
    if lang in FLEURS_LANGS or re.fullmatch(r"[a-z]{2,3}(_[a-z]+)*_[a-z0-9]{2,3}", lang):
        return lang  # a config name (any of the 102, e.g. en_us)
    for cfg, code in FLEURS_LANGS.items():
        if code == lang:
            return cfg
    raise CorpusError(f"FLEURS: {lang!r} is neither a config name (e.g. hi_in) nor an Indic code "
                      f"({', '.join(FLEURS_LANGS.values())})")


def fleurs_files(langs: Sequence[str], subsets: Sequence[str]) -> list[str]:
    """Repo paths to download for ``langs`` x ``subsets``."""
    out = []
    for lang in langs:
        cfg = _fleurs_config(lang)
        for subset in subsets:
            out += [f"data/{cfg}/{subset}.tsv", f"data/{cfg}/audio/{subset}.tar.gz"]
    return out


def import_fleurs(root: PathLike, langs: Sequence[str], subset: str, outdir: PathLike,
                  max_utts: Optional[int] = None, fs: int = DEFAULT_FS) -> int:
    """Import FLEURS ``subset`` (train/dev/test) of ``langs`` (configs such as ``hi_in``, or codes).

    ``root`` is a copy of the hub repo (``data/<config>/...``, or ``<config>/...``) with each
    ``audio/<subset>.tar.gz`` extracted into its ``audio/`` dir.  The tsv (no header) holds
    ``id, file, raw transcription, transcription, characters, num_samples, gender``; the raw
    transcription is used (the project's normaliser drops punctuation and case itself).
    FLEURS has no speaker ids: each utterance is its own speaker.  Ids
    ``fleurs-<code>-<file stem>``.
    """
    if subset not in FLEURS_SUBSETS:
        raise CorpusError(f"FLEURS subset {subset!r} is not one of {', '.join(FLEURS_SUBSETS)}")
    root = Path(root)
    _check_outdir(outdir, root)
    entries: list[Utterance] = []
    empty = 0
    for lang in langs:
        cfg = _fleurs_config(lang)
        code = cfg.split("_")[0]
        base = root / "data" / cfg if (root / "data" / cfg).is_dir() else root / cfg
        tsv = base / f"{subset}.tsv"
        if not tsv.is_file():
            raise CorpusError(f"{tsv}: not found; expected a copy of the hub repo {FLEURS_REPO} "
                              f"(data/<config>/{{{','.join(FLEURS_SUBSETS)}}}.tsv and audio/<split>.tar.gz, "
                              "extracted) under --root: run.sh stage 0 downloads it")
        audio_dir = base / "audio"
        index = {p.name: p for p in audio_dir.rglob("*.wav")} if audio_dir.is_dir() else {}
        n = 0
        seen: set[str] = set()
        with open(tsv, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if max_utts is not None and n >= max_utts:
                    break
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                fields = line.split("\t")
                if len(fields) < 4:
                    raise CorpusError(f"{tsv}:{lineno}: {len(fields)} tab-separated fields, expected 7 (id, file, "
                                      "raw transcription, transcription, characters, num_samples, gender)")
                fname = fields[1].strip()
                if fname in seen:
                    log.warning("%s:%d: %s listed twice, keeping the first", tsv, lineno, fname)
                    continue
                seen.add(fname)
                audio = audio_dir / subset / fname
                if not audio.is_file():
                    audio = index.get(Path(fname).name)
                if audio is None:
                    raise CorpusError(f"{tsv}:{lineno}: audio {fname} not found under {audio_dir}; is "
                                      f"audio/{subset}.tar.gz extracted there?")
                norm = normalize_text(fields[2])
                if not norm:
                    empty += 1
                    continue
                utt = f"fleurs-{code}-{Path(fname).stem}"
                rate, channels = probe_audio(audio)
                wav = str(audio.absolute()) if (rate, channels) == (fs, 1) else sox_command(str(audio.absolute()), fs)
                entries.append(Utterance(utt_id=utt, wav=wav, spk=utt, lang=code, text=norm))
                n += 1
        log.info("%s: %d utterances", tsv, n)
    return _finish(entries, outdir, f"FLEURS {subset} {list(langs)} in {root}", empty)


# --- IndicVoices ---------------------------------------------------------------------------
INDICVOICES_REPO = "ai4bharat/IndicVoices"
INDICVOICES_PAGE = "https://huggingface.co/datasets/ai4bharat/IndicVoices"
INDICVOICES_SUBSETS = ("train", "valid")
INDICVOICES_LANGS = {"assamese": "as", "bengali": "bn", "bodo": "brx", "dogri": "doi", "gujarati": "gu",
                     "hindi": "hi", "kannada": "kn", "kashmiri": "ks", "konkani": "kok", "maithili": "mai",
                     "malayalam": "ml", "manipuri": "mni", "marathi": "mr", "nepali": "ne", "odia": "or",
                     "punjabi": "pa", "sanskrit": "sa", "santali": "sat", "sindhi": "sd", "tamil": "ta",
                     "telugu": "te", "urdu": "ur"}
_IV_META = ("speaker_id",)


def _write_atomic_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def import_indicvoices(root: PathLike, langs: Sequence[str], subset: str, outdir: PathLike, audio_dir: PathLike,
                       max_utts: Optional[int] = None, text_column: str = "text", fs: int = DEFAULT_FS) -> int:
    """Import IndicVoices ``subset`` (train/valid) of ``langs`` (names or codes) from parquet.

    ``root`` holds ``<language>/<subset>-*.parquet`` (a copy of the hub repo).  Columns used:
    ``audio_filepath`` (struct ``bytes``, ``path``: the embedded audio file), ``speaker_id`` and
    ``text_column``.  Each clip's bytes are written unchanged to
    ``audio_dir/<language>/<file name>`` (skipped when already there with the same size);
    the parquet is read one row group at a time.  Ids ``iv-<code>-<speaker>-<file stem>``.
    """
    import pyarrow.parquet as pq

    if subset not in INDICVOICES_SUBSETS:
        raise CorpusError(f"IndicVoices subset {subset!r} is not one of {', '.join(INDICVOICES_SUBSETS)}")
    root, audio_dir = Path(root), Path(audio_dir)
    _check_outdir(outdir, root)
    entries: list[Utterance] = []
    empty = 0
    for name, code in _resolve_langs(langs, INDICVOICES_LANGS, "IndicVoices"):
        files = sorted((root / name).glob(f"{subset}-*.parquet"))
        if not files:
            raise CorpusError(f"{root / name}: no {subset}-*.parquet; expected a copy of {INDICVOICES_REPO} "
                              f"(<language>/{subset}-*.parquet); run.sh stage 0 downloads it with your hub "
                              f"login (the dataset is gated: accept its terms at {INDICVOICES_PAGE})")
        out = audio_dir / name
        out.mkdir(parents=True, exist_ok=True)
        n = 0
        for parquet in files:
            pf = pq.ParquetFile(parquet)
            names = pf.schema_arrow.names
            missing = [c for c in ("audio_filepath", text_column, *_IV_META) if c not in names]
            if missing:
                raise CorpusError(f"{parquet}: no column(s) {', '.join(missing)}; columns are {', '.join(names)} "
                                  "(--text_column picks the transcript column)")
            row = 0
            for group in range(pf.num_row_groups):
                if max_utts is not None and n >= max_utts:
                    break
                table = pf.read_row_group(group, columns=["audio_filepath", text_column, *_IV_META])
                for rec in table.to_pylist():
                    row += 1
                    if max_utts is not None and n >= max_utts:
                        break
                    audio = rec["audio_filepath"] or {}
                    data, fname = audio.get("bytes"), audio.get("path") or ""
                    where = f"{parquet} row {row}"
                    if not data or not fname:
                        raise CorpusError(f"{where}: audio_filepath has no embedded bytes or path")
                    norm = normalize_text(rec[text_column] or "")
                    if not norm:
                        empty += 1
                        continue
                    spk = f"iv-{code}-{_SAFE_ID.sub('_', str(rec['speaker_id']))}"
                    utt = f"{spk}-{_SAFE_ID.sub('_', Path(fname).stem)}"
                    target = out / Path(fname).name
                    if not (target.is_file() and target.stat().st_size == len(data)):
                        _write_atomic_bytes(target, data)
                    try:
                        info = soundfile.info(str(target))
                        ok = (int(info.samplerate), int(info.channels)) == (fs, 1)
                    except (RuntimeError, soundfile.LibsndfileError) as e:
                        raise CorpusError(f"{where}: embedded audio {fname} is not readable ({e})") from e
                    wav = str(target.absolute()) if ok else sox_command(str(target.absolute()), fs)
                    entries.append(Utterance(utt_id=utt, wav=wav, spk=spk, lang=code, text=norm))
                    n += 1
        log.info("%s/%s: %d utterances", root / name, subset, n)
    seen: set[str] = set()
    for e in entries:
        if e.utt_id in seen:
            raise CorpusError(f"IndicVoices: utterance id {e.utt_id} occurs twice (same speaker and file name)")
        seen.add(e.utt_id)
    return _finish(entries, outdir, f"IndicVoices {subset} {list(langs)} in {root}", empty)


# --- MUCS 2021 -----------------------------------------------------------------------------
MUCS_PAGE = "https://navana-tech.github.io/MUCS2021/data.html (Hindi, Marathi, Odia: https://www.openslr.org/103/)"
MUCS_SUBSETS = ("train", "test")
MUCS_LANGS = {"Gujarati": "gu", "Hindi": "hi", "Marathi": "mr", "Odia": "or", "Tamil": "ta", "Telugu": "te"}


def import_mucs(root: PathLike, langs: Sequence[str], subset: str, outdir: PathLike,
                max_utts: Optional[int] = None, fs: int = DEFAULT_FS) -> int:
    """Import MUCS 2021 subtask 1 ``subset`` (train/test) of ``langs`` (names or codes).

    ``root`` holds ``<Language>/<subset>/transcription.txt`` (``<utt> <transcript>``) and
    ``audio/<utt>.wav``, the layout of ESPnet's ``egs2/mucs21_subtask1``.  The audio is
    8 kHz: it is upsampled with a sox pipe (the band stays 4 kHz).  No speaker ids: each
    utterance is its own speaker.  Ids ``mucs-<code>-<utt>``.
    """
    if subset not in MUCS_SUBSETS:
        raise CorpusError(f"MUCS subset {subset!r} is not one of {', '.join(MUCS_SUBSETS)}")
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: not found; MUCS 2021 is downloaded by hand from {MUCS_PAGE}; extract it so "
                          "that <root>/<Language>/{train,test}/{transcription.txt,audio/} exist")
    _check_outdir(outdir, root)
    entries: list[Utterance] = []
    empty = 0
    for name, code in _resolve_langs(langs, MUCS_LANGS, "MUCS 2021"):
        split_dir = root / name / subset
        trans = split_dir / "transcription.txt"
        if not trans.is_file():
            raise CorpusError(f"{trans}: not found; expected <root>/<Language>/{subset}/transcription.txt and "
                              f"audio/ (download from {MUCS_PAGE})")
        n = 0
        for lineno, key, text in _read_transcripts(trans):
            if max_utts is not None and n >= max_utts:
                break
            audio = split_dir / "audio" / f"{key}.wav"
            if not audio.is_file():
                raise CorpusError(f"{trans}:{lineno}: audio {audio} does not exist")
            norm = normalize_text(text)
            if not norm:
                empty += 1
                continue
            rate, channels = probe_audio(audio)
            wav = str(audio.absolute()) if (rate, channels) == (fs, 1) else sox_command(str(audio.absolute()), fs)
            utt = f"mucs-{code}-{key}"
            entries.append(Utterance(utt_id=utt, wav=wav, spk=utt, lang=code, text=norm))
            n += 1
        log.info("%s: %d utterances", trans, n)
    return _finish(entries, outdir, f"MUCS {subset} {list(langs)} in {root}", empty)


def importer_main(doc: str, importer, subsets: Sequence[str], root_help: str, langs_help: str,
                  extra_args: Sequence[tuple] = (), argv=None) -> None:
    """The command line every ``local/data_prep/<corpus>.py`` shares: --root --langs --subset
    --outdir [--max_utts --fs], plus ``extra_args`` ((flag, argparse kwargs), ...) passed on
    to ``importer`` as keyword arguments."""
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help=root_help)
    parser.add_argument("--langs", required=True, help=langs_help)
    parser.add_argument("--subset", required=True, choices=subsets, help="which split to import")
    parser.add_argument("--outdir", required=True, help="output Kaldi data dir (replaced if it exists)")
    parser.add_argument("--max_utts", type=int, help="at most this many utterances per language (first in file order)")
    parser.add_argument("--fs", type=int, default=DEFAULT_FS, help="output sample rate")
    for flag, kwargs in extra_args:
        parser.add_argument(flag, **kwargs)
    args = vars(parser.parse_args(argv))

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    langs = [lang for lang in args.pop("langs").split(",") if lang]
    root, subset, outdir = args.pop("root"), args.pop("subset"), args.pop("outdir")
    try:
        n = importer(root, langs, subset, outdir, **args)
    except CorpusError as e:
        parser.exit(1, f"error: {e}\n")
    logging.info("wrote %d utterances to %s", n, outdir)
