#!/usr/bin/env python3
"""Import IndicVoices (ai4bharat/IndicVoices, gated; parquet with embedded audio) into one Kaldi data dir (all requested languages together).

Expected layout (a copy of the hub repo)::

    <root>/<language>/{train,valid}-*.parquet   # audio_filepath{bytes,path}, text, speaker_id, ...

The embedded audio is written once to --audio_dir/<language>/.

Example::

    local/data_prep/indicvoices.py --root downloads/indicvoices --langs hindi,marathi --subset valid --outdir data/indicvoices_valid

See espnet_plugins/data/indic_corpora.py for the conventions (ids, speakers, audio pipes).
"""

import sys
from pathlib import Path

# Work from any cwd, with or without the repository root on PYTHONPATH.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from espnet_plugins.data.indic_corpora import INDICVOICES_SUBSETS, import_indicvoices, importer_main  # noqa: E402


def main(argv=None) -> None:
    importer_main(__doc__, import_indicvoices, INDICVOICES_SUBSETS, root_help="dir holding <language>/<subset>-*.parquet",
                  langs_help="comma-separated languages: names (hindi) or codes (hi)",
                  extra_args=[("--audio_dir", dict(required=True, help="where the embedded audio files are written")),
                    ("--text_column", dict(default="text", help="parquet column with the transcript"))], argv=argv)


if __name__ == "__main__":
    main()
