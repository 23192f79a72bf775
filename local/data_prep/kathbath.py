#!/usr/bin/env python3
"""Import Kathbath (AI4Bharat IndicSUPERB; clean and noisy test sets) into one Kaldi data dir (all requested languages together).

Expected layout (the published tar archives, extracted as ESPnet's egs2/kathbath does)::

    <root>/kb_data_clean_m4a/<language>/{train,valid,test_known,test}/audio/*.m4a
    <root>/kb_data_clean_m4a/<language>/<split>/transcription_n2w.txt   # <file>.m4a <transcript>
    <root>/kb_data_noisy_m4a/<language>/{test_known,test}/...

Subset test_unknown is the release's ``test`` dir; *_noisy read kb_data_noisy_m4a.

Example::

    local/data_prep/kathbath.py --root downloads/kathbath --langs hindi,marathi,tamil,telugu --subset test_known --outdir data/kathbath_test_known

See espnet_plugins/data/indic_corpora.py for the conventions (ids, speakers, audio pipes).
"""

import argparse
import logging
import sys
from pathlib import Path

# Work from any cwd, with or without the repository root on PYTHONPATH.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from espnet_plugins.data.import_corpora import DEFAULT_FS, CorpusError  # noqa: E402
from espnet_plugins.data.indic_corpora import KATHBATH_SUBSETS, import_kathbath  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="dir holding kb_data_clean_m4a/ (and kb_data_noisy_m4a/)")
    parser.add_argument("--langs", required=True, help="comma-separated languages: names (hindi) or codes (hi)")
    parser.add_argument("--subset", required=True, choices=KATHBATH_SUBSETS, help="which split to import")
    parser.add_argument("--outdir", required=True, help="output Kaldi data dir (replaced if it exists)")
    parser.add_argument("--max_utts", type=int, help="at most this many utterances per language (first in file order)")
    parser.add_argument("--fs", type=int, default=DEFAULT_FS, help="output sample rate")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    langs = [lang for lang in args.langs.split(",") if lang]
    try:
        n = import_kathbath(args.root, langs, args.subset, args.outdir, max_utts=args.max_utts, fs=args.fs)
    except CorpusError as e:
        parser.exit(1, f"error: {e}\n")
    logging.info("wrote %d utterances to %s", n, args.outdir)


if __name__ == "__main__":
    main()
