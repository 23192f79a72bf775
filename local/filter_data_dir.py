#!/usr/bin/env python3
"""Stage 3: drop utterances too short / too long for training, or with empty text.

Writes a filtered copy (``--no_filter`` copies everything, for test sets; an existing
copy that lacks utterances is then rewritten) and logs how
many utterances each rule removed ("removed 3 too short (< 0.3 s), 0 too long (> 20 s),
1 with empty text"). Every per-utterance file is subset consistently.

``--min_dur`` must also cover the encoder's subsampling: ESPnet's Conv2dSubsampling (x4)
needs at least 7 feature frames (~0.08 s at a 10 ms hop), x6 needs 11, x8 needs 15; a
shorter utterance fails in training with "too short for subsampling". The 0.3 s default
covers all of them.
"""
import argparse
import logging
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from espnet_plugins.data.kaldi import read_map, utt2spk_to_spk2utt, validate_data_dir, write_map  # noqa: E402

FS = 16000


def _summary(removed: dict[str, int]) -> str:
    """``removed 3 too short (< 0.3 s), 0 too long (> 20 s), 1 with empty text``."""
    return "removed " + ", ".join(f"{n} {reason}" for reason, n in removed.items())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--src", required=True, type=Path)
    p.add_argument("--dst", required=True, type=Path)
    p.add_argument("--min_dur", type=float, default=0.3)
    p.add_argument("--max_dur", type=float, default=20.0)
    p.add_argument("--no_filter", action="store_true")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (filter_data_dir) %(message)s")
    samples = {u: int(n) for u, n in read_map(a.src / "utt2num_samples").items()}
    if (a.dst / "utt2num_samples").exists():
        have = read_map(a.dst / "utt2num_samples")
        if not a.no_filter or have.keys() == samples.keys():
            logging.info(f"{a.dst} exists, skipping")
            return
        # e.g. made by an older run.sh that filtered a valid set that is also a test set
        logging.warning(f"{a.dst} holds {len(have)} of the {len(samples)} utterances of {a.src} but must hold "
                        "every one (--no_filter, a test set); rewriting it")
    text = read_map(a.src / "text") if (a.src / "text").exists() else {}
    keep = set(samples)
    # Reason -> count; the labels carry the thresholds so the log line explains itself.
    short, long_ = f"too short (< {a.min_dur:g} s)", f"too long (> {a.max_dur:g} s)"
    removed = {short: 0, long_: 0, "with empty text": 0}
    if not a.no_filter:
        for u, n in samples.items():
            reason = (short if n < a.min_dur * FS else long_ if n > a.max_dur * FS
                      else "with empty text" if text and text.get(u, "").strip() in ("", "<unk>") else None)
            if reason:
                keep.discard(u)
                removed[reason] += 1
    if not keep:
        raise ValueError(f"{a.src}: filtering removed every utterance ({_summary(removed)}); "
                         f"check --min_dur/--max_dur")
    tmp = a.dst.with_name(a.dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in sorted(a.src.iterdir()):
        if f.name == "spk2utt" or f.name.startswith(".") or f.is_dir():
            continue
        rows = read_map(f)
        write_map(tmp / f.name, {u: v for u, v in rows.items() if u in keep})
    write_map(tmp / "spk2utt", utt2spk_to_spk2utt(read_map(tmp / "utt2spk")))
    validate_data_dir(tmp, require_text=(tmp / "text").exists())
    shutil.rmtree(a.dst, ignore_errors=True)
    os.replace(tmp, a.dst)
    logging.info(f"{a.src} -> {a.dst}: kept {len(keep)}/{len(samples)}; {_summary(removed)}")


if __name__ == "__main__":
    main()
