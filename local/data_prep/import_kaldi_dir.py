#!/usr/bin/env python3
"""Import an existing Kaldi data dir (wav.scp, text, utt2spk, optional segments / utt2lang).

Examples::

    # a monolingual dir: one language for every utterance
    local/data_prep/import_kaldi_dir.py --src /corpora/mucs/hi_train --lang hi \\
        --outdir data/mucs_hi_train --resample

    # a dir that already has utt2lang (e.g. a code-switched set: 'utt1 hi en')
    local/data_prep/import_kaldi_dir.py --src /corpora/cs/test --outdir data/cs_test

The source dir is only read.  Audio that is not 16 kHz mono is an error unless
--resample, which converts it on the fly with a sox pipe in wav.scp.  See
espnet_plugins/data/import_corpora.py for the conventions.
"""

import argparse
import logging
import sys
from pathlib import Path

# Work from any cwd, with or without the repository root on PYTHONPATH.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from espnet_plugins.data.import_corpora import DEFAULT_FS, CorpusError, import_kaldi_dir  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help="source Kaldi data dir")
    parser.add_argument("--outdir", required=True, help="output Kaldi data dir (replaced if it exists)")
    parser.add_argument("--lang", help="language code of every utterance, when --src has no utt2lang")
    parser.add_argument("--resample", action="store_true",
                        help="convert audio that is not --fs Hz mono (and all piped audio) with sox pipes")
    parser.add_argument("--fs", type=int, default=DEFAULT_FS, help="required / output sample rate")
    parser.add_argument("--prefix", default="", help="prepended to utterance and speaker ids, e.g. 'mucs-'")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        n = import_kaldi_dir(args.src, args.outdir, lang=args.lang, resample=args.resample, fs=args.fs,
                             prefix=args.prefix)
    except CorpusError as e:
        parser.exit(1, f"error: {e}\n")
    logging.info("wrote %d utterances to %s", n, args.outdir)


if __name__ == "__main__":
    main()
