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

import sys
from pathlib import Path

# Work from any cwd, with or without the repository root on PYTHONPATH.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from espnet_plugins.data.indic_corpora import KATHBATH_SUBSETS, import_kathbath, importer_main  # noqa: E402


def main(argv=None) -> None:
    importer_main(__doc__, import_kathbath, KATHBATH_SUBSETS, root_help="dir holding kb_data_clean_m4a/ (and kb_data_noisy_m4a/)",
                  langs_help="comma-separated languages: names (hindi) or codes (hi)", argv=argv)


if __name__ == "__main__":
    main()
