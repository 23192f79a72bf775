"""Decode, resample, cut and write a data dir's audio: the engine of the format stage.

One call of :func:`run_job` handles one recording: it is decoded once to ``fs`` Hz mono
16-bit samples, then written whole (one utterance) or cut into the utterances that a
``segments`` file places in it, so a recording with N segments is decoded once, not N
times. Jobs are independent, so :func:`run_jobs` maps them over a process pool
(``--nj``) and yields results in input order (the first error is the one of the first
bad line, whatever ``nj``).

Decoders, chosen per entry:

* Kaldi pipes (``cmd |``): ``bash -o pipefail -c 'cmd | sox -t wav - ...'``;
* files libsndfile reads (wav, flac, ogg/opus, mp3): in process, resampled with
  ``soxr`` (the SoX resampler as a library: no process per file);
* containers libsndfile cannot open (m4a/mp4/aac, webm, wma, ...): ``ffmpeg``;
* anything else libsndfile rejects: ``sox`` (it reads a few wav variants libsndfile
  does not), and its error is the one reported.

A 16 kHz mono 16-bit wav without segments is not decoded at all: the caller keeps the
original path (``in_place``).
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Tuple

import numpy as np
import soundfile as sf

FFMPEG_EXTS = (".m4a", ".mp4", ".aac", ".3gp", ".amr", ".webm", ".mkv", ".wma", ".ac3")
AUDIO_FORMATS = {"wav": ("WAV", ".wav"), "flac": ("FLAC", ".flac")}
MAX_OVERSHOOT_S = 0.5  # as Kaldi's extract-segments: a segment may end this far past the recording


class AudioDecodeError(Exception):
    """Decoding failed; ``str(e)`` says which decoder failed and its message."""


@dataclasses.dataclass
class Cut:
    utt: str
    start: float
    end: Optional[float]  # None: to the end of the recording (Kaldi's -1)
    lineno: int  # line of the segments file


@dataclasses.dataclass
class Job:
    rec: str  # recording id (the utterance id when there are no segments)
    entry: str  # its wav.scp value: a path or a pipe
    lineno: int  # its wav.scp line
    cuts: Optional[List[Cut]] = None  # None: the whole recording is one utterance, ``rec``


@dataclasses.dataclass
class Output:
    utt: str
    path: str  # where the audio will be after the caller's final rename (or the source, in place)
    frames: int


@dataclasses.dataclass
class JobError:
    """What went wrong, for the caller's FILE:LINE message."""

    kind: str  # "decode" | "empty" | "segment"
    file: str  # the source file the line is in: "wav.scp" or "segments"
    lineno: int
    utt: str
    entry: str
    why: str


def _short(text: str, limit: int = 300) -> str:
    """A decoder's stderr on one line: the cause, not a page of output."""
    text = "; ".join(line.strip() for line in text.splitlines() if line.strip())
    return text if len(text) <= limit else text[:limit] + " ..."


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 32768.0), -32768, 32767).astype(np.int16)


def _run_raw(cmd: List[str], who: str) -> np.ndarray:
    res = subprocess.run(cmd, capture_output=True)
    if res.returncode != 0:
        err = _short(res.stderr.decode("utf-8", "replace")) or f"exit status {res.returncode}"
        raise AudioDecodeError(f"{who} failed: {err}")
    return np.frombuffer(res.stdout, dtype=np.int16)


def _sox_out(fs: int) -> List[str]:
    return ["-t", "raw", "-e", "signed-integer", "-b", "16", "-L", "-c", "1", "-r", str(fs), "-"]


def _decode_sndfile(path: str, fs: int) -> np.ndarray:
    with sf.SoundFile(path) as f:
        if f.samplerate == fs and f.channels == 1:
            return f.read(dtype="int16")
        rate = f.samplerate
        x = f.read(dtype="float32", always_2d=True)
    x = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    if rate != fs and len(x):
        import soxr  # imported here: the validator CLIs import this module's neighbours and stay light

        x = soxr.resample(x, rate, fs)
    return _to_int16(x)


def _decode_ffmpeg(path: str, fs: int) -> np.ndarray:
    if shutil.which("ffmpeg") is None:
        raise AudioDecodeError("ffmpeg is not installed, and it is what reads this format: 'apt-get install ffmpeg' "
                               "(tools/install.sh installs it)")
    return _run_raw(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", path, "-vn", "-ac", "1",
                     "-ar", str(fs), "-f", "s16le", "-acodec", "pcm_s16le", "-"], "ffmpeg")


def decode(entry: str, fs: int = 16000) -> np.ndarray:
    """All samples of a wav.scp entry (file or ``cmd |``) as ``fs`` Hz mono int16.

    Raises :class:`AudioDecodeError` naming the decoder that failed.
    """
    if entry.endswith("|"):
        # pipefail: a failing producer must fail the conversion, not give sox empty input
        sox = " ".join(["sox", "-V1", "-D", "-t", "wav", "-"] + _sox_out(fs))
        return _run_raw(["bash", "-c", f"set -o pipefail; {entry[:-1]} | {sox}"], "the pipe")
    if entry.lower().endswith(FFMPEG_EXTS):
        return _decode_ffmpeg(entry, fs)
    try:
        return _decode_sndfile(entry, fs)
    except (sf.SoundFileError, RuntimeError) as e:
        first = str(e)
    try:
        return _run_raw(["sox", "-V1", "-D", entry] + _sox_out(fs), "sox")
    except AudioDecodeError as e:
        raise AudioDecodeError(f"{e} (libsndfile: {_short(first, 150)})") from None


def in_place(entry: str, fs: int = 16000) -> Optional[int]:
    """Frames of ``entry`` if it is a ``fs`` Hz mono 16-bit PCM wav file (usable as is), else None."""
    if entry.endswith("|") or not entry.lower().endswith(".wav"):
        return None
    try:
        info = sf.info(entry)
    except (sf.SoundFileError, RuntimeError):
        return None  # sox reads some wav variants libsndfile does not; decode() decides
    ok = info.samplerate == fs and info.channels == 1 and info.format in ("WAV", "WAVEX") and info.subtype == "PCM_16"
    return info.frames if ok else None


def run_job(job: Job, tmp_dir: str, final_dir: str, fs: int = 16000, audio_format: str = "wav"):
    """Format one recording; returns a list of :class:`Output` or a :class:`JobError`.

    Written files go to ``tmp_dir/<utt><ext>``; the paths returned name ``final_dir``
    (where the caller moves them). Nothing is written for a job that fails.
    """
    fmt, ext = AUDIO_FORMATS[audio_format]
    if job.cuts is None:
        frames = in_place(job.entry, fs)
        if frames is not None:
            if frames == 0:
                return JobError("empty", "wav.scp", job.lineno, job.rec, job.entry, "zero-length audio")
            return [Output(job.rec, str(Path(job.entry).resolve()), frames)]
    try:
        x = decode(job.entry, fs)
    except AudioDecodeError as e:
        utt = job.rec if job.cuts is None else job.cuts[0].utt
        return JobError("decode", "wav.scp", job.lineno, utt, job.entry, str(e))
    if job.cuts is None:
        pieces = [(job.rec, x, "wav.scp", job.lineno)]
    else:
        pieces = []
        limit = len(x) + int(MAX_OVERSHOOT_S * fs)
        for c in job.cuts:
            b = int(round(c.start * fs))
            e = len(x) if c.end is None else int(round(c.end * fs))
            if b >= len(x) or e > limit:
                return JobError("segment", "segments", c.lineno, c.utt, job.entry,
                                f"segment {c.start}-{'end' if c.end is None else c.end} s lies beyond the end of "
                                f"recording {job.rec!r} ({len(x) / fs:.3f} s)")
            pieces.append((c.utt, x[b:min(e, len(x))], "segments", c.lineno))
    outputs = []
    for utt, samples, file, lineno in pieces:
        if len(samples) == 0:
            return JobError("empty", file, lineno, utt, job.entry, "zero-length audio")
        outputs.append(Output(utt, os.path.join(final_dir, utt + ext), len(samples)))
    for (utt, samples, _, _), out in zip(pieces, outputs):
        sf.write(os.path.join(tmp_dir, utt + ext), samples, fs, format=fmt, subtype="PCM_16")
    return outputs


def _run_packed(args: Tuple[Job, str, str, int, str]):
    return run_job(*args)


def run_jobs(jobs: Iterable[Job], tmp_dir: str, final_dir: str, nj: int = 1, fs: int = 16000,
             audio_format: str = "wav") -> Iterator:
    """``run_job`` over ``jobs`` in ``nj`` processes; results in input order.

    ``nj=1`` runs in this process. Stop iterating (e.g. at the first error) to cancel the
    rest: the pool is terminated when the generator is closed.
    """
    if audio_format not in AUDIO_FORMATS:
        raise ValueError(f"audio_format must be one of {sorted(AUDIO_FORMATS)}, got {audio_format!r}")
    packed = ((job, tmp_dir, final_dir, fs, audio_format) for job in jobs)
    if nj <= 1:
        yield from map(_run_packed, packed)
        return
    # fork: workers inherit the imported modules (no re-import per worker); the parent has no threads
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(nj) as pool:
        yield from pool.imap(_run_packed, packed, chunksize=16)


def describe_entry(entry: str) -> str:
    """How to check an entry by hand, for error messages."""
    if entry.endswith("|"):
        return f"run the command by hand ('{entry[:-1].strip()} > x.wav; soxi x.wav'): it must write wav to stdout"
    if entry.lower().endswith(FFMPEG_EXTS):
        return f"check it with 'ffprobe {shlex.quote(entry)}' and re-export or replace it"
    return f"check it with 'soxi {shlex.quote(entry)}' and re-export or replace it"
