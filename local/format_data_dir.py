#!/usr/bin/env python3
"""Stage 2: copy a Kaldi data dir into dump/, ready for ESPnet (raw 16 kHz mono 16-bit wav).

- validates the source (nothing in it is ever modified); ``--lang_list`` also checks that
  every language in utt2lang is known;
- auto-fix: maps with Windows line ends (CRLF) or a UTF-8 byte-order mark are accepted and
  written as clean LF / BOM-less copies; the source files stay byte-for-byte unchanged and
  the conversion is logged (``validate_data_dir.py`` and the library reject such files);
- audio that is a pipe, not wav, not 16 kHz, not mono or not 16-bit PCM (e.g. 8 / 44.1 /
  48 kHz, stereo, flac, mp3, 24-bit or float wav) is converted once with sox into
  ``<dst>/wav/``; 16 kHz mono 16-bit wav files are referenced in place;
- audio that cannot be read (corrupt header, not audio, failing pipe) or has zero length
  is an error naming the wav.scp line, the utterance and the path;
- transcripts pass through ``normalize_text`` (the one normaliser training and scoring share);
- writes ``utt2num_samples`` (shape file for audio-only training, e.g. router augmentation).
The destination is built in ``<dst>.tmp`` and renamed, so an interrupted run is redone.
"""
import argparse
import logging
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import soundfile as sf  # noqa: E402

from espnet_plugins.data.kaldi import (  # noqa: E402
    BOM,
    DataDirError,
    read_map,
    utt2spk_to_spk2utt,
    validate_data_dir,
    write_map,
)
from espnet_plugins.text.normalize import normalize_text  # noqa: E402

FS = 16000


def _line_end_fixes(data: bytes) -> list[str]:
    """What the clean copy of a file changes: ``"CRLF"`` and/or ``"BOM"`` (empty: nothing).

    Only UTF-8 text is touched: a binary file someone keeps in the dir is copied as is
    (the validated maps are UTF-8, or validation has already failed).
    """
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return []
    return [name for name, found in (("CRLF", b"\r\n" in data), ("BOM", data.startswith(BOM))) if found]


def _clean_bytes(data: bytes) -> bytes:
    """``data`` with Unix line ends and no leading BOM (the auto-fix of the module docstring)."""
    if not _line_end_fixes(data):
        return data
    return (data[len(BOM):] if data.startswith(BOM) else data).replace(b"\r\n", b"\n")


def _audio_error(src: Path, lineno: int, utt: str, path: str, why: str) -> DataDirError:
    if path.endswith("|"):
        check = f"run the command by hand ('{path[:-1].strip()} > x.wav; soxi x.wav'): it must write wav to stdout"
    else:
        check = f"check it with 'soxi {shlex.quote(path)}' and re-export or replace it"
    return DataDirError(
        f"{src / 'wav.scp'}:{lineno}: cannot read the audio of utterance {utt!r} ({path}): {why}; "
        f"{check}, or drop the utterance"
    )


def _short(stderr: str, limit: int = 300) -> str:
    """sox's (and a pipe's) stderr on one line: the cause, not a page of output."""
    text = "; ".join(line.strip() for line in stderr.splitlines() if line.strip())
    return text if len(text) <= limit else text[:limit] + " ..."


def _needs_conversion(path: str) -> Optional[bool]:
    """True if ``path`` is not 16 kHz mono 16-bit wav; None if libsndfile cannot read it."""
    if path.endswith("|") or not path.lower().endswith(".wav"):
        return True
    try:
        info = sf.info(path)
    except sf.SoundFileError:
        return None  # sox reads some wav variants libsndfile does not; it decides
    return info.samplerate != FS or info.channels != 1 or info.format not in ("WAV", "WAVEX") \
        or info.subtype != "PCM_16"


def _convert(src: str, dst: Path) -> Optional[str]:
    """Convert ``src`` (a file or a Kaldi pipe) to 16 kHz mono 16-bit wav; return sox's error or None."""
    if src.endswith("|"):
        # bash + pipefail: a failing producer must fail the conversion, not give sox empty input
        sox = f"sox -V1 -t wav - -r {FS} -c 1 -b 16 {shlex.quote(str(dst))}"
        cmd = ["bash", "-c", f"set -o pipefail; {src[:-1]} | {sox}"]
    else:
        cmd = ["sox", "-V1", src, "-r", str(FS), "-c", "1", "-b", "16", str(dst)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        return res.stderr.strip() or f"exit status {res.returncode}"
    return None


def format_dir(src: Path, dst: Path, lang_list: Optional[Path] = None) -> None:
    """Validate ``src`` and write its formatted copy to ``dst`` (see the module docstring)."""
    files = [f for f in sorted(src.iterdir()) if f.is_file() and not f.name.startswith(".")]
    fixes = {f.name: _line_end_fixes(f.read_bytes()) for f in files}
    # Errors name the user's files: validate the source, accepting what the copies will fix.
    validate_data_dir(src, require_text=(src / "text").exists(), lang_list=lang_list, allow_crlf=True,
                      allow_bom=True)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        converted = _write_formatted(src, tmp, dst)
    except DataDirError:
        shutil.rmtree(tmp, ignore_errors=True)  # bad data, not an interruption: leave nothing behind
        raise
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)
    for what, done in (("CRLF", "converted Windows line ends (CRLF) to LF"), ("BOM", "removed the UTF-8 BOM")):
        names = [name for name, found in fixes.items() if what in found]
        if names:
            logging.info(f"{src}: {done} in the copies of {', '.join(names)} (source files unchanged)")
    logging.info(f"{src} -> {dst}: {len(read_map(dst / 'wav.scp'))} utterances, {converted} converted to "
                 f"{FS} Hz mono 16-bit wav")


def _write_formatted(src: Path, tmp: Path, dst: Path) -> int:
    """Write the formatted copy of the validated ``src`` into ``tmp``; return the number of converted files."""
    wav = read_map(src / "wav.scp", allow_crlf=True, allow_bom=True)
    out_wav, tmp_wav, num_samples, converted = {}, {}, {}, 0
    # The validated wav.scp has no blank lines, so its n-th entry is on line n.
    for lineno, (utt, path) in enumerate(wav.items(), 1):
        needs = _needs_conversion(path)
        if needs is not False:
            (tmp / "wav").mkdir(exist_ok=True)
            target = tmp / "wav" / f"{utt}.wav"
            err = _convert(path, target)
            if err is not None:
                who = "the pipe" if path.endswith("|") else "sox"
                raise _audio_error(src, lineno, utt, path, f"{who} failed: {_short(err)}")
            try:
                info = sf.info(target)
            except sf.SoundFileError as e:  # e.g. a pipe that wrote nothing sox complained about
                raise _audio_error(src, lineno, utt, path, f"the converted audio is unreadable ({e})") from None
            tmp_wav[utt] = str(target.resolve())
            path = str((dst / "wav" / f"{utt}.wav").resolve())
            converted += 1
        else:
            path = str(Path(path).resolve())
            info = sf.info(path)
        if info.frames == 0:
            raise DataDirError(
                f"{src / 'wav.scp'}:{lineno}: utterance {utt!r} has zero-length audio ({wav[utt]}); "
                f"replace the file or drop the utterance from every file of the dir"
            )
        out_wav[utt], num_samples[utt] = path, str(info.frames)
    # Converted files only reach dst/wav/ with the final rename: validate a wav.scp that points
    # at their tmp/ copies, then write the real one.
    write_map(tmp / "wav.scp", {**out_wav, **tmp_wav})
    write_map(tmp / "utt2num_samples", num_samples)
    rewritten = ("wav.scp", "spk2utt", "utt2num_samples", "text")  # written above / below
    for f in sorted(src.iterdir()):
        if f.is_file() and not f.name.startswith(".") and f.name not in rewritten:
            (tmp / f.name).write_bytes(_clean_bytes(f.read_bytes()))
    if (src / "text").exists():
        text = read_map(src / "text", allow_crlf=True, allow_bom=True)
        write_map(tmp / "text", {u: normalize_text(t) or "<unk>" for u, t in text.items()})
    write_map(tmp / "spk2utt", utt2spk_to_spk2utt(read_map(src / "utt2spk", allow_crlf=True, allow_bom=True)))
    validate_data_dir(tmp, require_text=(tmp / "text").exists())
    write_map(tmp / "wav.scp", out_wav)
    return converted


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", required=True, type=Path)
    p.add_argument("--dst", required=True, type=Path)
    p.add_argument("--lang_list", type=Path, default=None,
                   help="file with one language per line; every language in utt2lang must be in it")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (format_data_dir) %(message)s")
    if (a.dst / "utt2num_samples").exists() and not a.dst.with_name(a.dst.name + ".tmp").exists():
        logging.info(f"{a.dst} exists, skipping")
        return
    try:
        format_dir(a.src, a.dst, a.lang_list)
    except DataDirError as e:  # a user-data problem: the message is the whole story, no traceback
        logging.error(f"{e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
