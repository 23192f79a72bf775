#!/usr/bin/env python3
"""Check a Kaldi-style data dir before the recipe sees it (like Kaldi's validate_data_dir.sh).

    local/validate_data_dir.py data/train [--lang_list data/lang_list] [--no_text] [--deep]

Valid: exit 0 and one summary line on stdout, e.g.
``data/train: OK: 120 utterances, 8 speakers, 3 languages (hi ta te), 0.21 hours``.
Invalid: exit 1 and the first problem on stderr as ``error: <file>:<line>: <what>; <fix>``.
The checks are :func:`espnet_plugins.data.kaldi.validate_data_dir`'s (files, ids, paths)
and :func:`espnet_plugins.data.audio_check.check_audio`'s: every audio header is read
(unreadable / corrupt headers, zero-length audio); ``--deep`` also decodes every sample
(corrupt data, NaN / inf samples; all-zero files are warnings on stderr), which reads the
whole corpus once. Piped entries are not run: they are counted, and left out of the hours.
Hours come from ``utt2num_samples`` when present (16 kHz, as written by the format stage),
else from the audio headers. Nothing is modified.
Imports stay light (no torch / ESPnet), so this is quick to run on a login node.
"""
import argparse
import sys
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from espnet_plugins.data.audio_check import AudioReport, check_audio  # noqa: E402
from espnet_plugins.data.kaldi import DataDirError, read_map, validate_data_dir  # noqa: E402

FS = 16000  # rate of utt2num_samples (format_data_dir.py converts all audio to it)


def summary(data_dir: Path, audio: AudioReport, with_duration: bool = True) -> str:
    """One line describing a valid data dir."""
    wav = read_map(data_dir / "wav.scp")
    spk = set(read_map(data_dir / "utt2spk").values())
    langs = sorted({x for v in read_map(data_dir / "utt2lang").values() for x in v.split()})
    parts = [f"{len(wav)} utterances", f"{len(spk)} speakers", f"{len(langs)} languages ({' '.join(langs)})"]
    if with_duration:
        if (data_dir / "utt2num_samples").is_file():
            parts.append(f"{sum(int(n) for n in read_map(data_dir / 'utt2num_samples').values()) / FS / 3600:.2f} hours")
        elif audio.files:
            parts.append(f"{audio.seconds / 3600:.2f} hours")
        if audio.piped:
            parts.append(f"{audio.piped} piped entries not measured")
    return f"{data_dir}: OK: " + ", ".join(parts)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dir", type=Path)
    p.add_argument("--lang_list", type=Path, default=None,
                   help="file with one language per line; every language in utt2lang must be in it")
    p.add_argument("--no_text", action="store_true", help="audio-only dir: no text file required")
    p.add_argument("--no_duration", action="store_true", help="leave the hours out of the summary")
    p.add_argument("--deep", action="store_true",
                   help="decode every sample: corrupt audio data, NaN/inf samples, all-zero files (slow: reads "
                        "all the audio); without it only the audio headers are read")
    a = p.parse_args(argv)
    try:
        validate_data_dir(a.data_dir, require_text=not a.no_text, lang_list=a.lang_list)
        audio = check_audio(a.data_dir, deep=a.deep)
        for line in audio.warnings:
            print(f"warning: {line}", file=sys.stderr)
        print(summary(a.data_dir, audio, with_duration=not a.no_duration))
    except DataDirError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
