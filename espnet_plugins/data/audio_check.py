"""Audio checks of a data dir's ``wav.scp`` (no torch / ESPnet: quick on a login node).

:func:`check_audio` opens every file entry of ``wav.scp``:

* header (always): the file opens as audio (libsndfile, else ``soxi`` for the formats
  only sox reads) and has at least one sample; this catches files that are not audio,
  a corrupt header (e.g. ``RIFF`` followed by garbage) and zero-length audio;
* ``deep=True``: every sample is decoded, which also catches corrupt compressed data
  (flac, mp3), NaN / inf samples (float wav) and reports files that are all zeros
  (digital silence) as warnings. It reads all the audio, so it takes as long as
  reading the corpus once.

Piped entries (ending in ``|``) are never run; they are counted. A truncated wav whose
header claims more samples than the file holds is read as the shorter audio it is, by
libsndfile and by sox alike, so it passes.
"""
from __future__ import annotations

import dataclasses
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import List, Optional

import numpy as np
import soundfile as sf

from espnet_plugins.data.kaldi import DataDirError, PathLike, read_map

BLOCK = 1 << 16  # frames decoded at a time in deep mode (bounded memory for long files)


@dataclasses.dataclass
class AudioReport:
    seconds: float = 0.0  # total duration of the files measured
    files: int = 0  # file entries checked
    piped: int = 0  # piped entries (not run)
    warnings: List[str] = dataclasses.field(default_factory=list)  # 'FILE:LINE: ...' lines


def _error(scp: Path, lineno: int, utt: str, path: str, what: str, check: bool = True) -> DataDirError:
    fix = f"check it with 'soxi {shlex.quote(path)}' and re-export or replace it" if check else "re-export it"
    return DataDirError(
        f"{scp}:{lineno}: {what} (utterance {utt!r}, {path}); {fix}, or drop the utterance from every "
        f"file of the dir"
    )


def _soxi_samples(path: str) -> tuple[Optional[int], Optional[float], str]:
    """``(samples, rate, error)`` from soxi; samples None if soxi fails or is absent."""
    if shutil.which("soxi") is None:
        return None, None, "soxi not installed"
    res = subprocess.run(["soxi", path], capture_output=True, text=True)
    if res.returncode != 0:
        return None, None, res.stderr.strip() or f"soxi exit status {res.returncode}"
    fields = {k.strip(): v for k, v in (line.split(":", 1) for line in res.stdout.splitlines() if ":" in line)}
    rate = float(fields.get("Sample Rate", "0").strip() or 0)
    # 'Duration       : 00:00:00.50 = 8000 samples ~ ...'
    duration = fields.get("Duration", "")
    samples = int(duration.split("=")[1].split()[0]) if "=" in duration else None
    return samples, rate, "" if samples is not None else f"soxi gave no sample count: {res.stdout.strip()}"


def _sox_decode(path: str) -> tuple[Optional[np.ndarray], str]:
    """All samples as float32 (channels mixed to one) through sox, or ``(None, error)``."""
    res = subprocess.run(["sox", "-V1", path, "-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1", "-"],
                         capture_output=True)
    if res.returncode != 0:
        return None, res.stderr.decode(errors="replace").strip() or f"sox exit status {res.returncode}"
    return np.frombuffer(res.stdout, dtype=np.float32), ""


def _decode_stats(path: str, with_sox: bool) -> tuple[int, int, Optional[int], bool]:
    """``(frames decoded, non-finite samples, first non-finite frame, any non-zero sample)``."""
    if with_sox:
        x, err = _sox_decode(path)
        if x is None:
            raise RuntimeError(err)
        blocks = [x[:, None]]
    else:
        blocks = sf.blocks(path, blocksize=BLOCK, dtype="float32", always_2d=True)
    frames, bad, first_bad, nonzero = 0, 0, None, False
    for block in blocks:  # [frames, channels]
        finite = np.isfinite(block)
        if not finite.all():
            if first_bad is None:
                first_bad = frames + int(np.flatnonzero(~finite.all(axis=1))[0])
            bad += int((~finite).sum())
        nonzero = nonzero or bool(np.any(block[finite] != 0))
        frames += block.shape[0]
    return frames, bad, first_bad, nonzero


def check_audio(data_dir: PathLike, deep: bool = False) -> AudioReport:
    """Open every file of ``data_dir/wav.scp``; raise :class:`DataDirError` on the first bad one.

    Run it on a dir that passed :func:`espnet_plugins.data.kaldi.validate_data_dir`
    (ids, paths). See the module docstring for what each level checks.

    Args:
        data_dir: Kaldi data dir.
        deep: decode every sample (NaN / inf, corrupt data; all-zero files are warnings).

    Returns:
        :class:`AudioReport` (durations for the summary line, warnings).
    """
    scp = Path(data_dir) / "wav.scp"
    report = AudioReport()
    # A validated wav.scp has no blank lines, so its n-th entry is on line n.
    for lineno, (utt, path) in enumerate(read_map(scp).items(), 1):
        if path.endswith("|"):
            report.piped += 1
            continue
        report.files += 1
        with_sox = False
        try:
            info = sf.info(path)
            frames, rate = info.frames, info.samplerate
        except (sf.SoundFileError, RuntimeError) as e:
            # sox reads some formats libsndfile does not (the format stage converts with sox)
            frames, rate, sox_err = _soxi_samples(path)
            if frames is None:
                raise _error(scp, lineno, utt, path, f"cannot read the audio header: {e} (soxi: {sox_err})") from None
            with_sox = True
        if frames == 0:
            raise _error(scp, lineno, utt, path, "zero-length audio (a header, no samples)")
        if rate:
            report.seconds += frames / rate
        if not deep:
            continue
        try:
            decoded, bad, first_bad, nonzero = _decode_stats(path, with_sox)
        except (sf.SoundFileError, RuntimeError) as e:
            raise _error(scp, lineno, utt, path, f"the audio samples cannot be decoded: {e}") from None
        if bad:
            raise _error(scp, lineno, utt, path,
                         f"{bad} NaN/inf sample value(s), the first in frame {first_bad}: training on it gives "
                         f"a NaN loss", check=False)
        if decoded == 0 or (not with_sox and decoded < frames):
            raise _error(scp, lineno, utt, path, f"only {decoded} of its {frames} frames could be decoded")
        if not nonzero:
            report.warnings.append(
                f"{scp}:{lineno}: audio of utterance {utt!r} ({path}) is all zeros (digital silence); "
                f"check the export if it should hold speech"
            )
    return report
