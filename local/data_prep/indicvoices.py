#!/usr/bin/env python3
"""Import IndicVoices (ai4bharat/IndicVoices, gated; parquet with embedded audio) into one Kaldi data dir (all requested languages together).

Expected layout (a copy of the hub repo)::

    <root>/<language>/{train,valid}-*.parquet   # audio_filepath{bytes,path}, text, speaker_id, ...

The embedded audio is written once to --audio_dir/<language>/.

Example::

    local/data_prep/indicvoices.py --root downloads/indicvoices --langs hindi,marathi --subset valid --outdir data/indicvoices_valid

See espnet_plugins/data/indic_corpora.py for the conventions (ids, speakers, audio pipes).
"""

import argparse
import logging
import sys
from pathlib import Path

# Work from any cwd, with or without the repository root on PYTHONPATH.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from espnet_plugins.data.import_corpora import DEFAULT_FS, CorpusError  # noqa: E402
from espnet_plugins.data.indic_corpora import INDICVOICES_SUBSETS, import_indicvoices  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="dir holding <language>/<subset>-*.parquet")
    parser.add_argument("--langs", required=True, help="comma-separated languages: names (hindi) or codes (hi)")
    parser.add_argument("--subset", required=True, choices=INDICVOICES_SUBSETS, help="which split to import")
    parser.add_argument("--outdir", required=True, help="output Kaldi data dir (replaced if it exists)")
    parser.add_argument("--max_utts", type=int, help="at most this many utterances per language (first in file order)")
    parser.add_argument("--fs", type=int, default=DEFAULT_FS, help="output sample rate")
    parser.add_argument("--audio_dir", required=True, help="where the embedded audio files are written")
    parser.add_argument("--text_column", default="text", help="parquet column with the transcript")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    langs = [lang for lang in args.langs.split(",") if lang]
    try:
        n = import_indicvoices(args.root, langs, args.subset, args.outdir, audio_dir=args.audio_dir, text_column=args.text_column, max_utts=args.max_utts, fs=args.fs)
    except CorpusError as e:
        parser.exit(1, f"error: {e}\n")
    logging.info("wrote %d utterances to %s", n, args.outdir)


if __name__ == "__main__":
    main()
