#!/usr/bin/env python3
"""Import a Common Voice release into one Kaldi data dir (all requested languages together).

Expected layout (as extracted from the Common Voice download)::

    <cv_root>/<lang>/{train,dev,test,validated}.tsv
    <cv_root>/<lang>/clips/*.mp3

Example::

    local/data_prep/common_voice.py --cv_root downloads/cv-corpus-17.0 \\
        --langs hi,mr,ta,te --subset train --outdir data/cv_train --max_utts 2000

The mp3 clips are not converted here: wav.scp holds sox pipes giving 16 kHz mono 16-bit
wav.  See espnet_plugins/data/import_corpora.py for the conventions.
"""

import argparse
import logging
import sys
from pathlib import Path

# Work from any cwd, with or without the repository root on PYTHONPATH.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from espnet_plugins.data.import_corpora import (  # noqa: E402
    CV_SUBSETS, DEFAULT_FS, CorpusError, import_common_voice,
)


def _lang_map(text: str) -> dict:
    mapping = {}
    for pair in filter(None, text.split(",")):
        cv_lang, eq, code = pair.partition("=")
        if not eq or not cv_lang or not code:
            raise argparse.ArgumentTypeError(f"expected <cv_dir>=<code>[,...], got {pair!r}")
        mapping[cv_lang] = code
    return mapping


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cv_root", required=True, help="directory holding one sub-directory per language")
    parser.add_argument("--langs", required=True, help="comma-separated Common Voice language dirs, e.g. hi,mr,ta,te")
    parser.add_argument("--subset", required=True, choices=CV_SUBSETS, help="which tsv to import")
    parser.add_argument("--outdir", required=True, help="output Kaldi data dir (replaced if it exists)")
    parser.add_argument("--max_utts", type=int, help="at most this many utterances per language (first in tsv order)")
    parser.add_argument("--lang_map", type=_lang_map, default={},
                        help="utt2lang codes for some dirs, e.g. pa-IN=pa (default: the tsv's locale column, "
                             "else the dir name)")
    parser.add_argument("--fs", type=int, default=DEFAULT_FS, help="output sample rate")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    langs = [lang for lang in args.langs.split(",") if lang]
    try:
        n = import_common_voice(args.cv_root, langs, args.subset, args.outdir, lang_map=args.lang_map,
                                max_utts=args.max_utts, fs=args.fs)
    except CorpusError as e:
        parser.exit(1, f"error: {e}\n")
    logging.info("wrote %d utterances to %s", n, args.outdir)


if __name__ == "__main__":
    main()
