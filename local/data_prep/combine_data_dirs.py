#!/usr/bin/env python3
"""Combine Kaldi data dirs (wav.scp text utt2spk utt2lang) into one, sorted and validated.

    local/data_prep/combine_data_dirs.py --out data/train data/kathbath_train data/fleurs_train

Utterance ids must be distinct across the inputs (the corpus importers prefix them with
the corpus: kb-, fleurs-, iv-, mucs-).  The output is written atomically (replaced).
"""

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from espnet_plugins.data.import_corpora import CorpusError, _write_validated  # noqa: E402
from espnet_plugins.data.kaldi import DataDirError, Utterance, read_map, validate_data_dir  # noqa: E402


def combine(out, srcs) -> int:
    entries, origin = [], {}
    for src in map(Path, srcs):
        try:
            validate_data_dir(src)
            wav, spk, lang = (read_map(src / n) for n in ("wav.scp", "utt2spk", "utt2lang"))
            text = read_map(src / "text") if (src / "text").is_file() else None
        except DataDirError as e:
            raise CorpusError(str(e)) from e
        for utt, entry in wav.items():
            if utt in origin:
                raise CorpusError(f"{src}: utterance {utt!r} is also in {origin[utt]}; give the corpora distinct "
                                  "id prefixes")
            origin[utt] = src
            entries.append(Utterance(utt_id=utt, wav=entry, spk=spk[utt], lang=lang[utt],
                                     text=None if text is None else text[utt]))
    if not entries:
        raise CorpusError("nothing to combine")
    _write_validated(out, entries)
    return len(entries)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("srcs", nargs="+")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        n = combine(args.out, args.srcs)
    except CorpusError as e:
        parser.exit(1, f"error: {e}\n")
    logging.info("wrote %d utterances from %d dirs to %s", n, len(args.srcs), args.out)


if __name__ == "__main__":
    main()
