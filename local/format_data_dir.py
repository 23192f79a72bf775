#!/usr/bin/env python3
"""Stage 2: copy a Kaldi data dir into dump/, ready for ESPnet (raw 16 kHz mono wav).

- validates the source (nothing in it is ever modified);
- audio that is a pipe, not 16 kHz, not mono or not wav is converted once with sox into
  ``<dst>/wav/``; plain 16 kHz mono wav files are referenced in place;
- transcripts pass through ``normalize_text`` (the one normaliser training and scoring share);
- writes ``utt2num_samples`` (shape file for audio-only training, e.g. router augmentation).
The destination is built in ``<dst>.tmp`` and renamed, so an interrupted run is redone.
"""
import argparse
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import soundfile as sf  # noqa: E402

from espnet_plugins.data.kaldi import read_map, utt2spk_to_spk2utt, validate_data_dir, write_map  # noqa: E402
from espnet_plugins.text.normalize import normalize_text  # noqa: E402

FS = 16000


def _needs_conversion(path: str) -> bool:
    if path.endswith("|") or not path.lower().endswith(".wav"):
        return True
    info = sf.info(path)
    return info.samplerate != FS or info.channels != 1


def _convert(src: str, dst: Path) -> None:
    if src.endswith("|"):
        cmd = f"{src[:-1]} | sox -t wav - -r {FS} -c 1 -b 16 {dst}"
    else:
        cmd = f"sox {src!r} -r {FS} -c 1 -b 16 {str(dst)!r}"
    res = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"audio conversion failed: {cmd}\n{res.stderr.strip()}")


def format_dir(src: Path, dst: Path) -> None:
    validate_data_dir(src, require_text=(src / "text").exists())
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    wav = read_map(src / "wav.scp")
    out_wav, num_samples, converted = {}, {}, 0
    for utt, path in wav.items():
        path = path.strip()
        if _needs_conversion(path):
            (tmp / "wav").mkdir(exist_ok=True)
            target = tmp / "wav" / f"{utt}.wav"
            _convert(path, target)
            path = str((dst / "wav" / f"{utt}.wav").resolve())
            info = sf.info(target)
            converted += 1
        else:
            path = str(Path(path).resolve())
            info = sf.info(path)
        if info.frames == 0:
            raise ValueError(f"{src / 'wav.scp'}: utterance {utt!r} has zero-length audio ({path})")
        out_wav[utt], num_samples[utt] = path, str(info.frames)
    write_map(tmp / "wav.scp", out_wav)
    write_map(tmp / "utt2num_samples", num_samples)
    for f in sorted(src.iterdir()):
        if f.is_file() and f.name not in ("wav.scp", "spk2utt", "utt2num_samples", "text") and not f.name.startswith("."):
            shutil.copyfile(f, tmp / f.name)
    if (src / "text").exists():
        write_map(tmp / "text", {u: normalize_text(t) or "<unk>" for u, t in read_map(src / "text").items()})
    write_map(tmp / "spk2utt", utt2spk_to_spk2utt(read_map(src / "utt2spk")))
    validate_data_dir(tmp, require_text=(tmp / "text").exists())
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)
    logging.info(f"{src} -> {dst}: {len(out_wav)} utterances, {converted} converted to {FS} Hz mono wav")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", required=True, type=Path)
    p.add_argument("--dst", required=True, type=Path)
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (format_data_dir) %(message)s")
    if (a.dst / "utt2num_samples").exists() and not a.dst.with_name(a.dst.name + ".tmp").exists():
        logging.info(f"{a.dst} exists, skipping")
        return
    format_dir(a.src, a.dst)


if __name__ == "__main__":
    main()
