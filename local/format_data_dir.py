#!/usr/bin/env python3
"""Stage 2: copy a Kaldi data dir into dump/, ready for ESPnet (16 kHz mono 16-bit wav or flac).

CLI (stable; recipes call it per set):
    format_data_dir.py --src DIR --dst DIR [--lang_list FILE] [--nj N] [--audio_format wav|flac] [--fs 16000]
--nj N decodes N recordings at a time (processes); the log counts progress. Rerunning
with an existing complete ``--dst`` is a no-op.

- validates the source (nothing in it is ever modified); ``--lang_list`` also checks that
  every language in utt2lang is known;
- auto-fix: maps with Windows line ends (CRLF) or a UTF-8 byte-order mark are accepted and
  written as clean LF / BOM-less copies; the source files stay byte-for-byte unchanged and
  the conversion is logged (``validate_data_dir.py`` and the library reject such files);
- audio that is a pipe, not wav, not 16 kHz, not mono or not 16-bit PCM (e.g. 8 / 44.1 /
  48 kHz, stereo, flac, mp3, m4a, opus, 24-bit or float wav) is decoded once (libsndfile +
  soxr in process; ffmpeg for m4a/mp4/aac/webm/wma; sox for pipes and what libsndfile
  rejects: ``espnet_plugins.data.audio_format``) and written to ``<dst>/wav/`` as
  ``--audio_format`` (flac: ~half the disk); 16 kHz mono 16-bit wav files are referenced in place;
- a ``segments`` file (wav.scp = recordings) is cut from ONE decode per recording into
  per-utterance files; the output has no segments;
- audio that cannot be read (corrupt header, not audio, failing pipe), a segment past the
  end of its recording, or zero-length audio is an error naming the wav.scp (segments)
  line, the utterance and the path;
- transcripts pass through ``normalize_text`` (the one normaliser training and scoring share);
- writes ``utt2num_samples`` (shape file for audio-only training, e.g. router augmentation).
The destination is built in ``<dst>.tmp`` and renamed, so an interrupted run is redone.
"""
import argparse
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from espnet_plugins.data.audio_format import AUDIO_FORMATS, Cut, Job, JobError, describe_entry, run_jobs  # noqa: E402
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


def _job_error(src: Path, err: JobError) -> DataDirError:
    """The FILE:LINE message of a failed job (wav.scp line, or segments line for a cut)."""
    if err.kind == "segment":
        return DataDirError(
            f"{src / err.file}:{err.lineno}: utterance {err.utt!r} ({err.entry}): {err.why}; fix its times or drop "
            f"the segment")
    if err.kind == "empty":
        return DataDirError(
            f"{src / err.file}:{err.lineno}: utterance {err.utt!r} has zero-length audio ({err.entry}); "
            f"replace the file or drop the utterance from every file of the dir"
        )
    return DataDirError(
        f"{src / 'wav.scp'}:{err.lineno}: cannot read the audio of utterance {err.utt!r} ({err.entry}): {err.why}; "
        f"{describe_entry(err.entry)}, or drop the utterance"
    )


def _jobs(src: Path) -> list:
    """One job per recording, in wav.scp order (its n-th entry is on line n: validated, no blank lines)."""
    wav = read_map(src / "wav.scp", allow_crlf=True, allow_bom=True)
    if not (src / "segments").is_file():
        return [Job(utt, path, lineno) for lineno, (utt, path) in enumerate(wav.items(), 1)]
    cuts: dict = {}
    for lineno, (utt, value) in enumerate(read_map(src / "segments", allow_crlf=True, allow_bom=True).items(), 1):
        rec, start, end = value.split()
        cuts.setdefault(rec, []).append(Cut(utt, float(start), None if float(end) == -1 else float(end), lineno))
    return [Job(rec, path, lineno, cuts[rec]) for lineno, (rec, path) in enumerate(wav.items(), 1) if rec in cuts]


def format_dir(src: Path, dst: Path, lang_list: Optional[Path] = None, nj: int = 1, audio_format: str = "wav",
               fs: int = FS) -> None:
    """Validate ``src`` and write its formatted copy to ``dst`` (see the module docstring)."""
    if audio_format not in AUDIO_FORMATS:
        raise ValueError(f"--audio_format must be one of {', '.join(AUDIO_FORMATS)}, got {audio_format!r}")
    files = [f for f in sorted(src.iterdir()) if f.is_file() and not f.name.startswith(".")]
    fixes = {f.name: _line_end_fixes(f.read_bytes()) for f in files}
    # Errors name the user's files: validate the source, accepting what the copies will fix.
    validate_data_dir(src, require_text=(src / "text").exists(), lang_list=lang_list, allow_crlf=True,
                      allow_bom=True, allow_segments=True)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        converted = _write_formatted(src, tmp, dst, nj, audio_format, fs)
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
                 f"{fs} Hz mono 16-bit {audio_format}")


def _write_formatted(src: Path, tmp: Path, dst: Path, nj: int, audio_format: str, fs: int) -> int:
    """Write the formatted copy of the validated ``src`` into ``tmp``; return the number of written audio files."""
    jobs = _jobs(src)
    (tmp / "wav").mkdir()
    final_wav = str((dst / "wav").resolve())
    out_wav, tmp_wav, num_samples = {}, {}, {}
    t0, frames_done, step = time.time(), 0, max(1, len(jobs) // 20)
    logging.info(f"{src}: formatting {len(jobs)} recordings with {nj} job(s)")
    results = run_jobs(jobs, str(tmp / "wav"), final_wav, nj=nj, fs=fs, audio_format=audio_format)
    try:
        for done, res in enumerate(results, 1):
            if isinstance(res, JobError):
                raise _job_error(src, res)
            for out in res:
                out_wav[out.utt], num_samples[out.utt] = out.path, str(out.frames)
                frames_done += out.frames
                if out.path.startswith(final_wav + os.sep):
                    tmp_wav[out.utt] = str(tmp / "wav" / os.path.basename(out.path))
            if done % step == 0 or done == len(jobs):
                elapsed = time.time() - t0
                hours = frames_done / fs / 3600
                logging.info(f"{src}: {done}/{len(jobs)} recordings ({100 * done // len(jobs)} %), {hours:.2f} h of "
                             f"audio, {elapsed:.0f} s ({60 * hours / max(elapsed, 1e-9):.2f} h/min)")
    finally:
        results.close()  # an error stops the pool
    if not tmp_wav:
        (tmp / "wav").rmdir()
    # Converted files only reach dst/wav/ with the final rename: validate a wav.scp that points
    # at their tmp/ copies, then write the real one.
    write_map(tmp / "wav.scp", {**out_wav, **tmp_wav})
    write_map(tmp / "utt2num_samples", num_samples)
    rewritten = ("wav.scp", "spk2utt", "utt2num_samples", "text")  # written above / below
    for f in sorted(src.iterdir()):
        # segments and per-recording maps describe the source's recordings, not the cut utterances
        if f.name == "segments" or f.name.startswith("reco2"):
            continue
        if f.is_file() and not f.name.startswith(".") and f.name not in rewritten:
            (tmp / f.name).write_bytes(_clean_bytes(f.read_bytes()))
    if (src / "text").exists():
        text = read_map(src / "text", allow_crlf=True, allow_bom=True)
        write_map(tmp / "text", {u: normalize_text(t) or "<unk>" for u, t in text.items()})
    write_map(tmp / "spk2utt", utt2spk_to_spk2utt(read_map(src / "utt2spk", allow_crlf=True, allow_bom=True)))
    validate_data_dir(tmp, require_text=(tmp / "text").exists())
    write_map(tmp / "wav.scp", out_wav)
    return len(tmp_wav)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", required=True, type=Path)
    p.add_argument("--dst", required=True, type=Path)
    p.add_argument("--lang_list", type=Path, default=None,
                   help="file with one language per line; every language in utt2lang must be in it")
    p.add_argument("--nj", type=int, default=1, help="recordings decoded at a time (processes)")
    p.add_argument("--audio_format", choices=sorted(AUDIO_FORMATS), default="wav",
                   help="format of the converted / cut audio in <dst>/wav (16-bit PCM either way)")
    p.add_argument("--fs", type=int, default=FS, help="output sampling rate (Hz); 16000 for every preset here")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (format_data_dir) %(message)s")
    if (a.dst / "utt2num_samples").exists() and not a.dst.with_name(a.dst.name + ".tmp").exists():
        logging.info(f"{a.dst} exists, skipping")
        return
    try:
        format_dir(a.src, a.dst, a.lang_list, nj=a.nj, audio_format=a.audio_format, fs=a.fs)
    except DataDirError as e:  # a user-data problem: the message is the whole story, no traceback
        logging.error(f"{e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
