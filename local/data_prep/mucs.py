#!/usr/bin/env python3
"""Import MUCS 2021 subtask 1 (multilingual; 8 kHz, upsampled on the fly) into one Kaldi data dir (all requested languages together).

Expected layout (downloaded by hand, as ESPnet's egs2/mucs21_subtask1 arranges it)::

    <root>/<Language>/{train,test}/transcription.txt   # <utt> <transcript>
    <root>/<Language>/{train,test}/audio/<utt>.wav

Example::

    local/data_prep/mucs.py --root /corpora/mucs2021 --langs hi,mr,ta,te --subset test --outdir data/mucs_test

See espnet_plugins/data/indic_corpora.py for the conventions (ids, speakers, audio pipes).
"""

import argparse
import logging
import sys
from pathlib import Path

# Work from any cwd, with or without the repository root on PYTHONPATH.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from espnet_plugins.data.import_corpora import DEFAULT_FS, CorpusError  # noqa: E402
from espnet_plugins.data.indic_corpora import MUCS_SUBSETS, import_mucs  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="dir holding <Language>/{train,test}/")
    parser.add_argument("--langs", required=True, help="comma-separated languages: names (Hindi) or codes (hi)")
    parser.add_argument("--subset", required=True, choices=MUCS_SUBSETS, help="which split to import")
    parser.add_argument("--outdir", required=True, help="output Kaldi data dir (replaced if it exists)")
    parser.add_argument("--max_utts", type=int, help="at most this many utterances per language (first in file order)")
    parser.add_argument("--fs", type=int, default=DEFAULT_FS, help="output sample rate")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    langs = [lang for lang in args.langs.split(",") if lang]
    try:
        n = import_mucs(args.root, langs, args.subset, args.outdir, max_utts=args.max_utts, fs=args.fs)
    except CorpusError as e:
        parser.exit(1, f"error: {e}\n")
    logging.info("wrote %d utterances to %s", n, args.outdir)


if __name__ == "__main__":
    main()
