#!/usr/bin/env python3
"""Synthesise the built-in multilingual corpus into Kaldi data dirs (one per split).

Idempotent: a split whose data dir already exists and validates is skipped; a split left
half-written by an interrupted run is synthesised again.  See
espnet_plugins/corpus/indic_synth.py for what is generated and why.
"""

import argparse
import logging
import sys
import time
from pathlib import Path

# Work from any cwd, with or without the repository root on PYTHONPATH.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from espnet_plugins.corpus.indic_synth import load_config, prepare_corpus  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="corpus yaml, e.g. egs/indic_synth/asr1/conf/corpus.yaml")
    parser.add_argument("--datadir", required=True, help="output: one Kaldi data dir per split is created in it")
    parser.add_argument("--wavdir", required=True, help="output: wav files (and the cached word lists)")
    parser.add_argument("--nj", type=int, default=1, help="parallel synthesis processes (output does not depend on it)")
    parser.add_argument("--seed", type=int, default=None, help="override the config's seed")
    args = parser.parse_args(argv)
    if args.nj < 1:
        parser.error("--nj must be >= 1")

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    start = time.time()
    cfg = load_config(args.config, seed=args.seed)
    seconds = prepare_corpus(cfg, args.datadir, args.wavdir, nj=args.nj)
    for name, sec in seconds.items():
        logging.info("synthesised %-16s %7.3f h", name, sec / 3600)
    logging.info("done in %.1f s (seed %d, nj %d)", time.time() - start, cfg.seed, args.nj)


if __name__ == "__main__":
    main()
