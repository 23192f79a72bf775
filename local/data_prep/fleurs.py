#!/usr/bin/env python3
"""Import FLEURS (google/fleurs on the Hugging Face hub) into one Kaldi data dir (all requested languages together).

Expected layout (a copy of the hub repo, audio archives extracted in place)::

    <root>/data/<config>/{train,dev,test}.tsv
    <root>/data/<config>/audio/<split>.tar.gz  ->  audio/<split>/*.wav

Example::

    local/data_prep/fleurs.py --root downloads/fleurs --langs hi_in,mr_in,ta_in,te_in --subset test --outdir data/fleurs_test

See espnet_plugins/data/indic_corpora.py for the conventions (ids, speakers, audio pipes).
"""

import sys
from pathlib import Path

# Work from any cwd, with or without the repository root on PYTHONPATH.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from espnet_plugins.data.indic_corpora import FLEURS_SUBSETS, import_fleurs, importer_main  # noqa: E402


def main(argv=None) -> None:
    importer_main(__doc__, import_fleurs, FLEURS_SUBSETS, root_help="local copy of the hub repo (holds data/<config>/)",
                  langs_help="comma-separated languages: FLEURS configs (hi_in) or Indic codes (hi)", argv=argv)


if __name__ == "__main__":
    main()
