#!/usr/bin/env python3
"""Import MUCS 2021 subtask 1 (multilingual; 8 kHz, upsampled on the fly) into one Kaldi data dir (all requested languages together).

Expected layout (downloaded by hand, as ESPnet's egs2/mucs21_subtask1 arranges it)::

    <root>/<Language>/{train,test}/transcription.txt   # <utt> <transcript>
    <root>/<Language>/{train,test}/audio/<utt>.wav

Example::

    local/data_prep/mucs.py --root /corpora/mucs2021 --langs hi,mr,ta,te --subset test --outdir data/mucs_test

See espnet_plugins/data/indic_corpora.py for the conventions (ids, speakers, audio pipes).
"""

import sys
from pathlib import Path

# Work from any cwd, with or without the repository root on PYTHONPATH.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from espnet_plugins.data.indic_corpora import MUCS_SUBSETS, import_mucs, importer_main  # noqa: E402


def main(argv=None) -> None:
    importer_main(__doc__, import_mucs, MUCS_SUBSETS, root_help="dir holding <Language>/{train,test}/",
                  langs_help="comma-separated languages: names (Hindi) or codes (hi)", argv=argv)


if __name__ == "__main__":
    main()
