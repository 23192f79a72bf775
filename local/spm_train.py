#!/usr/bin/env python3
"""Train a sentencepiece model on a Kaldi ``text`` file (transcripts only, ids dropped).

Usage: spm_train.py --text data/train/text --model_type bpe|unigram --vocab_size 300 --out_prefix dir/bpe
"""
import argparse
import tempfile

import sentencepiece as spm


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--text", required=True)
    p.add_argument("--model_type", default="bpe", choices=["bpe", "unigram"])
    p.add_argument("--vocab_size", type=int, default=300)
    p.add_argument("--character_coverage", type=float, default=1.0)
    p.add_argument("--out_prefix", required=True)
    a = p.parse_args()
    with open(a.text, encoding="utf-8") as f, tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as tmp:
        for line in f:
            parts = line.rstrip("\n").split(maxsplit=1)
            if len(parts) == 2:
                tmp.write(parts[1] + "\n")
        tmp.flush()
        spm.SentencePieceTrainer.train(
            input=tmp.name, model_prefix=a.out_prefix, vocab_size=a.vocab_size, model_type=a.model_type,
            character_coverage=a.character_coverage, input_sentence_size=10**8, unk_surface="<unk>",
            minloglevel=2,
        )


if __name__ == "__main__":
    main()
