#!/usr/bin/env python3
"""Training-set copies for real corpora (run.sh stages 2-3; espnet_plugins/data/perturb.py says how).

    augment_data_dir.py speed      --src data/train --dst data/train_sp --factors 0.9 1.0 1.1
    augment_data_dir.py narrowband --src data/train --dst data/train_nb [--no_mulaw]
    augment_data_dir.py balance    --src dump/raw/train --dst dump/raw/train_bal_T2 --temperature 2 [--seed 1]

speed: ESPnet asr.sh stage 2 (sp<f>-<utt> / sp<f>-<spk> ids, sox speed pipes); narrowband:
an nb-<utt> telephone-band copy (8 kHz, 300-3400 Hz, mu-law) next to the original;
balance: temperature-based language upsampling (bal<k>-<utt> repeats, same audio).
The destination is built in <dst>.tmp and renamed; an existing <dst> is kept (rerun: no-op).
"""
import argparse
import logging
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from espnet_plugins.data.kaldi import DataDirError  # noqa: E402
from espnet_plugins.data.perturb import balance_languages, narrowband, speed_perturb  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    for name in ("speed", "narrowband", "balance"):
        s = sub.add_parser(name)
        s.add_argument("--src", required=True, type=Path)
        s.add_argument("--dst", required=True, type=Path)
        if name == "speed":
            s.add_argument("--factors", type=float, nargs="+", default=[0.9, 1.0, 1.1])
        elif name == "narrowband":
            s.add_argument("--no_mulaw", action="store_true", help="16-bit PCM at 8 kHz instead of G.711 mu-law")
        else:
            s.add_argument("--temperature", type=float, required=True,
                           help="T in q_l ~ p_l^(1/T): 1 = as is, larger = more balanced")
            s.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (augment_data_dir) %(message)s")
    if (a.dst / "wav.scp").is_file():
        logging.info(f"{a.dst} exists, skipping")
        return
    tmp = a.dst.with_name(a.dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if a.mode == "speed":
            n = speed_perturb(a.src, tmp, a.factors)
            logging.info(f"{a.src} -> {a.dst}: {n} utterances (speed factors {' '.join(f'{f:g}' for f in a.factors)})")
        elif a.mode == "narrowband":
            n = narrowband(a.src, tmp, mulaw=not a.no_mulaw)
            logging.info(f"{a.src} -> {a.dst}: {n} utterances (original + telephone band)")
        else:
            summary = balance_languages(a.src, tmp, a.temperature, a.seed)
            rows = ", ".join(f"{lang} {before} -> {after}" for lang, (before, after) in summary.items())
            logging.info(f"{a.src} -> {a.dst}: language balancing T={a.temperature:g}: {rows}")
    except (DataDirError, ValueError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        logging.error(f"{e}")
        sys.exit(1)
    shutil.rmtree(a.dst, ignore_errors=True)
    os.replace(tmp, a.dst)


if __name__ == "__main__":
    main()
