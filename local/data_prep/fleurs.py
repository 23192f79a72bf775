#!/usr/bin/env python3
"""Import FLEURS (google/fleurs on the Hugging Face hub) into one Kaldi data dir (all requested languages together).

Expected layout (a copy of the hub repo, audio archives extracted in place)::

    <root>/data/<config>/{train,dev,test}.tsv
    <root>/data/<config>/audio/<split>.tar.gz  ->  audio/<split>/*.wav

Example::

    local/data_prep/fleurs.py --root downloads/fleurs --langs hi_in,mr_in,ta_in,te_in --subset test --outdir data/fleurs_test

See espnet_plugins/data/indic_corpora.py for the conventions (ids, speakers, audio pipes).
"""

import argparse
import logging
import sys
from pathlib import Path

# Work from any cwd, with or without the repository root on PYTHONPATH.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from espnet_plugins.data.import_corpora import DEFAULT_FS, CorpusError  # noqa: E402
from espnet_plugins.data.indic_corpora import FLEURS_SUBSETS, import_fleurs  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="local copy of the hub repo (holds data/<config>/)")
    parser.add_argument("--langs", required=True, help="comma-separated languages: FLEURS configs (hi_in) or Indic codes (hi)")
    parser.add_argument("--subset", required=True, choices=FLEURS_SUBSETS, help="which split to import")
    parser.add_argument("--outdir", required=True, help="output Kaldi data dir (replaced if it exists)")
    parser.add_argument("--max_utts", type=int, help="at most this many utterances per language (first in file order)")
    parser.add_argument("--fs", type=int, default=DEFAULT_FS, help="output sample rate")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    langs = [lang for lang in args.langs.split(",") if lang]
    try:
        n = import_fleurs(args.root, langs, args.subset, args.outdir, max_utts=args.max_utts, fs=args.fs)
    except CorpusError as e:
        parser.exit(1, f"error: {e}\n")
    logging.info("wrote %d utterances to %s", n, args.outdir)


if __name__ == "__main__":
    main()
